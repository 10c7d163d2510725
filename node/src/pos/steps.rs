//! Named steps of the card operations where a crash test stops the process. With
//! `CARDMESH_POS_STOP_AT=<step>` set, the process announces the step on stderr and
//! waits there for its SIGKILL; without it a step costs one comparison.

use std::io::Write;

/// The environment variable naming the step to stop at.
pub const STOP_AT_ENV: &str = "CARDMESH_POS_STOP_AT";

/// Where the process stops, if anywhere.
#[derive(Clone, Debug, Default)]
pub struct Stops(Option<String>);

impl Stops {
    /// Reads [`STOP_AT_ENV`].
    pub fn from_env() -> Stops {
        Stops(std::env::var(STOP_AT_ENV).ok())
    }

    /// Stops here (forever) if this is the named step.
    pub fn at(&self, step: &str) {
        if self.0.as_deref() == Some(step) {
            let mut err = std::io::stderr();
            // The test waits for this line; a failed write only delays its timeout.
            let _ = writeln!(err, "cardmesh: stopped at step {step}");
            let _ = err.flush();
            loop {
                std::thread::park();
            }
        }
    }
}
