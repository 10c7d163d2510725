//! A connected pair of pseudo-terminals made by socat, as a serial cable between the
//! code under test and a simulated device. socat is killed when the pair is dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PtyPair {
    child: Child,
    /// The host's end (the node opens this like /dev/ttyS0).
    pub host: PathBuf,
    /// The device's end (the simulator opens this).
    pub device: PathBuf,
    _dir: tempfile::TempDir,
}

impl PtyPair {
    pub fn new() -> PtyPair {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("ttyHost");
        let device = dir.path().join("ttyDevice");
        let child = Command::new("socat")
            .arg("-d")
            .arg(format!("pty,raw,echo=0,link={}", host.display()))
            .arg(format!("pty,raw,echo=0,link={}", device.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is needed for the serial tests: apt-get install socat");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(host.exists() && device.exists()) {
            assert!(
                Instant::now() < deadline,
                "socat did not create the pty links"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        PtyPair {
            child,
            host,
            device,
            _dir: dir,
        }
    }

    pub fn open_device(&self) -> Box<dyn serialport::SerialPort> {
        serialport::new(self.device.to_str().unwrap(), 9600)
            .timeout(Duration::from_millis(20))
            .open()
            .unwrap()
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        // Only our own socat child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
