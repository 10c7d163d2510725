//! Serial line pairs without hardware: `socat` joins two pseudo-terminals, so a host
//! and a simulated device each open a real tty by path.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Two ttys joined by a `socat` process, which ends when the pair is dropped.
#[derive(Debug)]
pub struct SocatPair {
    child: Child,
    pub a: PathBuf,
    pub b: PathBuf,
}

impl SocatPair {
    /// Starts `socat` with links `DIR/NAME-a` and `DIR/NAME-b`; waits until both exist.
    pub fn start(dir: &Path, name: &str) -> io::Result<SocatPair> {
        let a = dir.join(format!("{name}-a"));
        let b = dir.join(format!("{name}-b"));
        let end = |p: &Path| format!("pty,raw,echo=0,link={}", p.display());
        let child = Command::new("socat")
            .arg(end(&a))
            .arg(end(&b))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run socat: {e}")))?;
        let mut pair = SocatPair { child, a, b };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(pair.a.exists() && pair.b.exists()) {
            if let Some(status) = pair.child.try_wait()? {
                return Err(io::Error::other(format!("socat exited: {status}")));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("socat made no pty links in 5 s"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(pair)
    }

    pub fn a(&self) -> &str {
        self.a.to_str().expect("a UTF-8 path")
    }

    pub fn b(&self) -> &str {
        self.b.to_str().expect("a UTF-8 path")
    }
}

impl Drop for SocatPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
