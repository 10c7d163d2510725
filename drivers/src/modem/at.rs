//! The Hayes AT command set: the commands a host sends, the result codes a modem
//! answers, and [`Modem`], the host's side of a modem on a serial port.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serialport::SerialPort;
use thiserror::Error;

/// One command of an `AT` line (`ATZ`, `ATE0S0=1`, `ATDT5551234`...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `Z`: reset to defaults, hanging up any call.
    Reset,
    /// `En`: echo commands back (1) or not (0).
    Echo(bool),
    /// `H`: hang up.
    HangUp,
    /// `A`: answer a ringing line.
    Answer,
    /// `D`, `DT`, `DP`: dial the number.
    Dial(String),
    /// `O`: back to data mode after `+++`.
    Online,
    /// `Sr=v`: set a register (0 = rings before auto-answer, 12 = escape guard time in
    /// 50ths of a second).
    Set(u8, u8),
}

/// A result code a modem sends to its host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResultCode {
    Ok,
    /// The line is up at this many bit/s; the port now carries data.
    Connect(u32),
    Ring,
    NoCarrier,
    Error,
    NoDialtone,
    Busy,
    NoAnswer,
}

impl ResultCode {
    /// The text a modem sends, without the surrounding CR LF.
    pub fn text(&self) -> String {
        match self {
            ResultCode::Ok => "OK".into(),
            ResultCode::Connect(rate) => format!("CONNECT {rate}"),
            ResultCode::Ring => "RING".into(),
            ResultCode::NoCarrier => "NO CARRIER".into(),
            ResultCode::Error => "ERROR".into(),
            ResultCode::NoDialtone => "NO DIALTONE".into(),
            ResultCode::Busy => "BUSY".into(),
            ResultCode::NoAnswer => "NO ANSWER".into(),
        }
    }

    /// Parses a line from the modem; `None` for anything else (echo, blank lines).
    pub fn parse(line: &str) -> Option<ResultCode> {
        let line = line.trim();
        Some(match line {
            "OK" => ResultCode::Ok,
            "RING" => ResultCode::Ring,
            "NO CARRIER" => ResultCode::NoCarrier,
            "ERROR" => ResultCode::Error,
            "NO DIALTONE" => ResultCode::NoDialtone,
            "BUSY" => ResultCode::Busy,
            "NO ANSWER" => ResultCode::NoAnswer,
            // A bare CONNECT is the 300 bit/s of the original Hayes.
            "CONNECT" => ResultCode::Connect(300),
            _ => {
                let rate = line.strip_prefix("CONNECT ")?;
                let digits: String = rate.chars().take_while(char::is_ascii_digit).collect();
                ResultCode::Connect(digits.parse().ok()?)
            }
        })
    }
}

/// Parses a command line (`AT` and what follows). `None` if it is not an `AT` line or
/// holds a command this modem does not know.
pub fn parse_line(line: &str) -> Option<Vec<Command>> {
    let line = line.trim();
    let upper = line.to_ascii_uppercase();
    let mut rest = upper.strip_prefix("AT")?;
    let mut cmds = Vec::new();
    while let Some(c) = rest.chars().next() {
        // Line noise after a dropped carrier can put any bytes after an "AT".
        rest = &rest[c.len_utf8()..];
        let digits = |rest: &mut &str| -> String {
            let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
            *rest = &rest[n.len()..];
            n
        };
        match c {
            ' ' => {}
            'Z' => {
                digits(&mut rest);
                cmds.push(Command::Reset);
            }
            'E' => cmds.push(Command::Echo(digits(&mut rest) != "0")),
            'H' => {
                digits(&mut rest);
                cmds.push(Command::HangUp);
            }
            'A' => cmds.push(Command::Answer),
            'O' => {
                digits(&mut rest);
                cmds.push(Command::Online);
            }
            'D' => {
                let r = rest.strip_prefix(['T', 'P']).unwrap_or(rest);
                let number: String = r
                    .chars()
                    .filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#'))
                    .collect();
                if number.is_empty() {
                    return None;
                }
                cmds.push(Command::Dial(number));
                // Dialing ends the line.
                rest = "";
            }
            'S' => {
                let reg = digits(&mut rest).parse().ok()?;
                rest = rest.strip_prefix('=')?;
                let value = digits(&mut rest).parse().ok()?;
                cmds.push(Command::Set(reg, value));
            }
            _ => return None,
        }
    }
    Some(cmds)
}

/// What went wrong talking to a modem.
#[derive(Debug, Error)]
pub enum ModemError {
    #[error("modem port {port}: {source}")]
    Open {
        port: String,
        source: serialport::Error,
    },
    #[error("the modem answered {0} to {1}")]
    Refused(String, String),
    #[error("the call failed: {0}")]
    CallFailed(String),
    #[error("the modem did not answer {0} in time")]
    Timeout(String),
    #[error("modem line: {0}")]
    Io(#[from] io::Error),
}

/// The host's side of a Hayes modem on a serial port.
pub struct Modem {
    port: Box<dyn SerialPort>,
    pending: Vec<u8>,
}

impl std::fmt::Debug for Modem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Modem")
            .field("port", &self.port.name())
            .finish()
    }
}

/// How long a command may take to be answered.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// An escape the modem did not take shows as a silent ATH: this long, then try again.
const HANG_UP_TIMEOUT: Duration = Duration::from_secs(2);
const ESCAPE_TRIES: u32 = 3;
/// The escape guard time this host sets (S12, 50ths of a second) and keeps around `+++`.
const GUARD_50THS: u8 = 10;
const GUARD: Duration = Duration::from_millis(GUARD_50THS as u64 * 20 + 50);

impl Modem {
    /// Opens the modem on `path` and resets it: `ATZ`, echo off, a short escape guard.
    pub fn open(path: &str) -> Result<Modem, ModemError> {
        let port = serialport::new(path, 115_200)
            .timeout(Duration::from_millis(20))
            .open()
            .map_err(|source| ModemError::Open {
                port: path.to_string(),
                source,
            })?;
        let mut m = Modem {
            port,
            pending: Vec::new(),
        };
        m.command("ATZ")?;
        m.command(&format!("ATE0S12={GUARD_50THS}"))?;
        Ok(m)
    }

    /// Sends one command line and waits for `OK`.
    pub fn command(&mut self, line: &str) -> Result<(), ModemError> {
        self.command_within(line, COMMAND_TIMEOUT)
    }

    fn command_within(&mut self, line: &str, timeout: Duration) -> Result<(), ModemError> {
        // Whatever came before (the end of a call's data) is not the answer to this.
        self.port
            .clear(serialport::ClearBuffer::Input)
            .map_err(io::Error::from)?;
        self.pending.clear();
        self.send_line(line)?;
        loop {
            match self.result(timeout, line)? {
                ResultCode::Ok => return Ok(()),
                // Unsolicited: a call coming in while the host sets the modem up.
                ResultCode::Ring => {}
                other => return Err(ModemError::Refused(other.text(), line.to_string())),
            }
        }
    }

    fn send_line(&mut self, line: &str) -> Result<(), ModemError> {
        self.port.write_all(line.as_bytes())?;
        self.port.write_all(b"\r")?;
        self.port.flush()?;
        Ok(())
    }

    /// The next result code, skipping echo and blank lines.
    fn result(&mut self, timeout: Duration, what: &str) -> Result<ResultCode, ModemError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n' || *b == b'\r') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                if let Some(code) = ResultCode::parse(&String::from_utf8_lossy(&line)) {
                    return Ok(code);
                }
                continue;
            }
            if Instant::now() >= deadline {
                return Err(ModemError::Timeout(what.to_string()));
            }
            let mut buf = [0u8; 64];
            match self.port.read(&mut buf) {
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Dials `number`; on `CONNECT` returns the line rate in bit/s.
    pub fn dial(&mut self, number: &str, timeout: Duration) -> Result<u32, ModemError> {
        let line = format!("ATDT{number}");
        self.send_line(&line)?;
        match self.result(timeout, &line)? {
            ResultCode::Connect(rate) => Ok(rate),
            other => Err(ModemError::CallFailed(other.text())),
        }
    }

    /// Turns on auto-answer on the first ring (`ATS0=1`).
    pub fn auto_answer(&mut self) -> Result<(), ModemError> {
        self.command("ATS0=1")
    }

    /// Waits for a call to be answered (after [`Modem::auto_answer`]); returns the
    /// line rate. `RING`s are skipped, and so is a `NO CARRIER` left from a call before.
    pub fn wait_for_call(&mut self, timeout: Duration) -> Result<u32, ModemError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.result(left, "an incoming call")? {
                ResultCode::Ring | ResultCode::NoCarrier => {}
                ResultCode::Connect(rate) => return Ok(rate),
                other => return Err(ModemError::CallFailed(other.text())),
            }
        }
    }

    /// Leaves data mode (`+++` between guard times) and hangs up (`ATH`). A line that
    /// already lost its carrier is hung up too.
    pub fn hang_up(&mut self) -> Result<(), ModemError> {
        let mut tries = 0;
        loop {
            tries += 1;
            std::thread::sleep(GUARD);
            self.pending.clear();
            self.port.write_all(b"+++")?;
            self.port.flush()?;
            std::thread::sleep(GUARD);
            // `OK` from the escape, `NO CARRIER` if the line had dropped, or nothing if
            // the modem was in command mode already: the modem ignores what came before
            // `AT`, so ATH settles all three.
            match self.command_within("ATH", HANG_UP_TIMEOUT) {
                // The modem may still have been sending the call's last bytes down the
                // line when `+++` came, so it took the escape (and this ATH) for data:
                // the guard time before the next try is silence it can see.
                Err(ModemError::Timeout(_)) if tries < ESCAPE_TRIES => {}
                other => return other,
            }
        }
    }

    /// The port, for the data phase of a call. Reads time out after 20 ms.
    pub fn port(&mut self) -> &mut Box<dyn SerialPort> {
        &mut self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_parse() {
        assert_eq!(parse_line("ATZ"), Some(vec![Command::Reset]));
        assert_eq!(parse_line("at"), Some(vec![]));
        assert_eq!(
            parse_line("ATE0S0=1 S12=10"),
            Some(vec![
                Command::Echo(false),
                Command::Set(0, 1),
                Command::Set(12, 10)
            ])
        );
        assert_eq!(
            parse_line("ATDT 555-0123"),
            Some(vec![Command::Dial("5550123".into())])
        );
        assert_eq!(
            parse_line("ATD123"),
            Some(vec![Command::Dial("123".into())])
        );
        assert_eq!(parse_line("ATH0"), Some(vec![Command::HangUp]));
        assert_eq!(parse_line("ATA"), Some(vec![Command::Answer]));
        assert_eq!(parse_line("ATO"), Some(vec![Command::Online]));
        assert_eq!(parse_line("ATDT"), None);
        assert_eq!(parse_line("ATS0"), None);
        assert_eq!(parse_line("ATQ"), None);
        assert_eq!(parse_line("hello"), None);
    }

    #[test]
    fn noise_after_at_is_refused_not_a_panic() {
        assert_eq!(parse_line("AT\u{fffd}\u{5b57}Z"), None);
    }

    proptest::proptest! {
        #[test]
        fn any_line_parses_or_is_refused(tail in ".*") {
            let _ = parse_line(&format!("AT{tail}"));
            let _ = ResultCode::parse(&tail);
        }
    }

    #[test]
    fn result_codes_round_trip() {
        for code in [
            ResultCode::Ok,
            ResultCode::Connect(33_600),
            ResultCode::Ring,
            ResultCode::NoCarrier,
            ResultCode::Error,
            ResultCode::NoDialtone,
            ResultCode::Busy,
            ResultCode::NoAnswer,
        ] {
            assert_eq!(ResultCode::parse(&code.text()), Some(code));
        }
        assert_eq!(
            ResultCode::parse("CONNECT 33600/ARQ/V34"),
            Some(ResultCode::Connect(33_600))
        );
        assert_eq!(ResultCode::parse("CONNECT"), Some(ResultCode::Connect(300)));
        assert_eq!(ResultCode::parse("ATZ"), None);
        assert_eq!(ResultCode::parse(""), None);
    }
}
