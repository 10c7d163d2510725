//! A modem simulator for tests and benchmarks: a phone exchange of Hayes modems, each
//! answering AT commands on one end of a serial line (a pty pair) while its host holds
//! the other end. A call connects two modems by number; the line then carries bytes at
//! the connect rate (10 bits a byte: start, 8 data, stop), and can be made noisy (bit
//! flips) or dropped (carrier loss, both hosts hear `NO CARRIER`).
//!
//! [`Switchboard`] is the pure state of the exchange (time comes from the caller);
//! [`Exchange`] runs it with one thread per modem pumping bytes between the port and
//! the switchboard.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serialport::SerialPort;

use super::at::{Command, ResultCode, parse_line};

/// How the exchange's lines behave.
#[derive(Clone, Copy, Debug)]
pub struct LineConfig {
    /// Bits per second once connected (`CONNECT <rate>`).
    pub rate: u32,
    /// Time between two `RING`s (6 s on a real line; shorter keeps tests quick).
    pub ring_interval: Duration,
    /// Rings without an answer before the caller gets `NO ANSWER`.
    pub max_rings: u32,
    /// Modem training between the answer and `CONNECT`.
    pub train_time: Duration,
}

impl LineConfig {
    /// A V.34 line at 33.6 kbit/s with short rings and training.
    pub const V34: LineConfig = LineConfig {
        rate: 33_600,
        ring_interval: Duration::from_millis(200),
        max_rings: 10,
        train_time: Duration::from_millis(300),
    };
}

/// Trouble injected on connected lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Chance that a byte carried has one bit flipped.
    pub byte_error_rate: f64,
    /// Drop the carrier of the next call after it carried this many bytes (both ways);
    /// applies once.
    pub drop_after_bytes: Option<u64>,
}

/// What the exchange carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExchangeStats {
    pub calls: u64,
    /// Data bytes carried over connected lines, both ways.
    pub bytes_carried: u64,
    pub bytes_corrupted: u64,
    pub carriers_dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    Idle,
    Dialing {
        to: String,
    },
    Ringing {
        from: String,
        rings: u32,
        next: Instant,
    },
    Training {
        peer: String,
        until: Instant,
    },
    Online {
        peer: String,
    },
    /// In a call, but taking commands after `+++`.
    OnlineCommand {
        peer: String,
    },
}

#[derive(Debug)]
struct Line {
    mode: Mode,
    echo: bool,
    auto_answer: u8,
    guard: Duration,
    typed: Vec<u8>,
    to_host: Vec<u8>,
    credit: f64,
    credit_at: Option<Instant>,
    last_input: Option<Instant>,
    /// `+` signs held back in data mode, and when the last came: maybe an escape.
    plus: Option<(u8, Instant)>,
}

impl Line {
    fn new() -> Line {
        Line {
            mode: Mode::Idle,
            echo: true,
            auto_answer: 0,
            guard: Duration::from_secs(1),
            typed: Vec::new(),
            to_host: Vec::new(),
            credit: 0.0,
            credit_at: None,
            last_input: None,
            plus: None,
        }
    }

    fn say(&mut self, code: ResultCode) {
        self.to_host.extend_from_slice(b"\r\n");
        self.to_host.extend_from_slice(code.text().as_bytes());
        self.to_host.extend_from_slice(b"\r\n");
    }

    fn peer(&self) -> Option<&str> {
        match &self.mode {
            Mode::Dialing { to: p }
            | Mode::Ringing { from: p, .. }
            | Mode::Training { peer: p, .. }
            | Mode::Online { peer: p }
            | Mode::OnlineCommand { peer: p } => Some(p),
            Mode::Idle => None,
        }
    }
}

/// Largest burst a modem takes from its host at once: a modem's small buffer.
const MAX_CREDIT: f64 = 32.0;

/// The pure state of a phone exchange of modems.
#[derive(Debug)]
pub struct Switchboard {
    config: LineConfig,
    faults: Faults,
    rng: u64,
    lines: BTreeMap<String, Line>,
    stats: ExchangeStats,
    call_bytes: u64,
}

impl Switchboard {
    pub fn new(config: LineConfig) -> Switchboard {
        Switchboard {
            config,
            faults: Faults::default(),
            rng: 0x9E37_79B9_7F4A_7C15,
            lines: BTreeMap::new(),
            stats: ExchangeStats::default(),
            call_bytes: 0,
        }
    }

    /// Installs a modem answering on `number`.
    pub fn install(&mut self, number: &str) {
        self.lines.insert(number.to_string(), Line::new());
    }

    /// Sets the faults on connected lines; `seed` makes the noise repeatable.
    pub fn set_faults(&mut self, faults: Faults, seed: u64) {
        self.faults = faults;
        self.rng = seed | 1;
    }

    pub fn stats(&self) -> ExchangeStats {
        self.stats
    }

    /// Whether `number`'s modem is in a call with its line up.
    pub fn is_online(&self, number: &str) -> bool {
        matches!(
            self.lines.get(number).map(|l| &l.mode),
            Some(Mode::Online { .. } | Mode::OnlineCommand { .. })
        )
    }

    fn line(&mut self, number: &str) -> &mut Line {
        self.lines
            .get_mut(number)
            .expect("a modem installed on this number")
    }

    /// How many bytes `number`'s host may hand its modem now: in data mode, what the
    /// line rate allows since the last call; in command mode, any reasonable amount.
    pub fn read_budget(&mut self, number: &str, now: Instant) -> usize {
        let rate = f64::from(self.config.rate) / 10.0;
        let line = self.line(number);
        if !matches!(line.mode, Mode::Online { .. }) {
            line.credit_at = None;
            return 256;
        }
        let since = line.credit_at.map_or(Duration::ZERO, |t| now - t);
        line.credit_at = Some(now);
        line.credit = (line.credit + since.as_secs_f64() * rate).min(MAX_CREDIT);
        line.credit as usize
    }

    /// Bytes from `number`'s host.
    pub fn host_input(&mut self, number: &str, bytes: &[u8], now: Instant) {
        let mut at = 0;
        while at < bytes.len() {
            let line = self.line(number);
            if matches!(line.mode, Mode::Online { .. }) {
                at += self.data_input(number, &bytes[at..], now);
            } else {
                self.command_input(number, bytes[at], now);
                at += 1;
            }
        }
        if !bytes.is_empty() {
            self.line(number).last_input = Some(now);
        }
    }

    /// Takes bytes in data mode until the call leaves data mode; returns how many.
    fn data_input(&mut self, number: &str, bytes: &[u8], now: Instant) -> usize {
        let line = self.line(number);
        let Mode::Online { peer } = line.mode.clone() else {
            return 0;
        };
        let quiet_before = line.last_input.is_none_or(|t| now - t >= line.guard);
        let held = line.plus.map_or(0, |(n, _)| n);
        if bytes.iter().all(|b| *b == b'+')
            && held as usize + bytes.len() <= 3
            && (held > 0 || quiet_before)
        {
            line.plus = Some((held + bytes.len() as u8, now));
            line.credit -= bytes.len() as f64;
            return bytes.len();
        }
        line.plus = None;
        line.credit -= bytes.len() as f64;
        let mut data = vec![b'+'; held as usize];
        data.extend_from_slice(bytes);
        self.carry(number, &peer, data);
        bytes.len()
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: repeatable noise for a given seed.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn carry(&mut self, from: &str, to: &str, mut data: Vec<u8>) {
        if self.faults.byte_error_rate > 0.0 {
            for b in &mut data {
                let roll = (self.next_random() >> 11) as f64 / (1u64 << 53) as f64;
                if roll < self.faults.byte_error_rate {
                    *b ^= 1 << (self.next_random() % 8);
                    self.stats.bytes_corrupted += 1;
                }
            }
        }
        self.stats.bytes_carried += data.len() as u64;
        self.call_bytes += data.len() as u64;
        self.line(to).to_host.extend_from_slice(&data);
        if self
            .faults
            .drop_after_bytes
            .is_some_and(|n| self.call_bytes >= n)
        {
            self.faults.drop_after_bytes = None;
            self.drop_carrier(from);
        }
    }

    /// Cuts `number`'s call: both modems say `NO CARRIER` and go back to command mode.
    pub fn drop_carrier(&mut self, number: &str) {
        let Some(peer) = self.line(number).peer().map(str::to_string) else {
            return;
        };
        self.stats.carriers_dropped += 1;
        for n in [number.to_string(), peer] {
            let line = self.line(&n);
            line.mode = Mode::Idle;
            line.plus = None;
            line.say(ResultCode::NoCarrier);
        }
    }

    fn command_input(&mut self, number: &str, byte: u8, now: Instant) {
        let line = self.line(number);
        match line.mode.clone() {
            Mode::Dialing { to } => {
                // Any key aborts a dial.
                line.mode = Mode::Idle;
                line.say(ResultCode::NoCarrier);
                self.line(&to).mode = Mode::Idle;
                return;
            }
            Mode::Training { .. } => return,
            _ => {}
        }
        if line.echo {
            line.to_host.push(byte);
        }
        if byte != b'\r' {
            if byte != b'\n' {
                line.typed.push(byte);
            }
            return;
        }
        let typed = std::mem::take(&mut line.typed);
        let typed = String::from_utf8_lossy(&typed).to_ascii_uppercase();
        // A modem listens for `AT` and ignores whatever came before it: the tail of a
        // call's data, or `+++` after the carrier dropped.
        let Some(start) = typed.rfind("AT") else {
            return;
        };
        let Some(cmds) = parse_line(&typed[start..]) else {
            line.say(ResultCode::Error);
            return;
        };
        let mut answer = Some(ResultCode::Ok);
        for cmd in cmds {
            answer = self.execute(number, cmd, now);
            if answer.as_ref().is_none_or(|a| *a != ResultCode::Ok) {
                break;
            }
        }
        if let Some(a) = answer {
            self.line(number).say(a);
        }
    }

    /// Runs one command; the result code to send now, if any (a dial or an answer
    /// reports later).
    fn execute(&mut self, number: &str, cmd: Command, now: Instant) -> Option<ResultCode> {
        let line = self.line(number);
        let in_call = matches!(line.mode, Mode::OnlineCommand { .. });
        Some(match cmd {
            Command::Reset => {
                if in_call {
                    self.hang_up(number);
                }
                let line = self.line(number);
                let to_host = std::mem::take(&mut line.to_host);
                // The phone keeps ringing through a reset.
                let mode = std::mem::replace(&mut line.mode, Mode::Idle);
                *line = Line::new();
                line.to_host = to_host;
                if matches!(mode, Mode::Ringing { .. }) {
                    line.mode = mode;
                }
                ResultCode::Ok
            }
            Command::Echo(on) => {
                line.echo = on;
                ResultCode::Ok
            }
            Command::Set(0, rings) => {
                line.auto_answer = rings;
                ResultCode::Ok
            }
            Command::Set(12, fiftieths) => {
                line.guard = Duration::from_millis(u64::from(fiftieths) * 20);
                ResultCode::Ok
            }
            Command::Set(..) => ResultCode::Ok,
            Command::HangUp => {
                if in_call {
                    self.hang_up(number);
                }
                ResultCode::Ok
            }
            Command::Online => match line.mode.clone() {
                Mode::OnlineCommand { peer } => {
                    line.mode = Mode::Online { peer };
                    ResultCode::Connect(self.config.rate)
                }
                _ => ResultCode::NoCarrier,
            },
            Command::Answer => match line.mode.clone() {
                Mode::Ringing { from, .. } => {
                    self.answer(number, &from, now);
                    return None;
                }
                _ => ResultCode::NoCarrier,
            },
            Command::Dial(to) => {
                if !matches!(line.mode, Mode::Idle) {
                    return Some(ResultCode::Error);
                }
                if to == number || !self.lines.contains_key(&to) {
                    return Some(ResultCode::NoCarrier);
                }
                if !matches!(self.line(&to).mode, Mode::Idle) {
                    return Some(ResultCode::Busy);
                }
                self.line(number).mode = Mode::Dialing { to: to.clone() };
                self.line(&to).mode = Mode::Ringing {
                    from: number.to_string(),
                    rings: 0,
                    next: now,
                };
                return None;
            }
        })
    }

    fn hang_up(&mut self, number: &str) {
        if let Some(peer) = self.line(number).peer().map(str::to_string) {
            let p = self.line(&peer);
            p.mode = Mode::Idle;
            p.plus = None;
            p.say(ResultCode::NoCarrier);
        }
        self.line(number).mode = Mode::Idle;
    }

    fn answer(&mut self, callee: &str, caller: &str, now: Instant) {
        let until = now + self.config.train_time;
        self.line(callee).mode = Mode::Training {
            peer: caller.to_string(),
            until,
        };
        self.line(caller).mode = Mode::Training {
            peer: callee.to_string(),
            until,
        };
    }

    /// Moves time on: rings, answers, connects, escapes after their guard time.
    pub fn tick(&mut self, now: Instant) {
        let numbers: Vec<String> = self.lines.keys().cloned().collect();
        let cfg = self.config;
        for n in numbers {
            let rate = cfg.rate;
            let line = self.line(&n);
            match line.mode.clone() {
                Mode::Ringing { from, rings, next } if now >= next => {
                    if rings >= cfg.max_rings {
                        line.mode = Mode::Idle;
                        let caller = self.line(&from);
                        caller.mode = Mode::Idle;
                        caller.say(ResultCode::NoAnswer);
                        continue;
                    }
                    line.say(ResultCode::Ring);
                    let rings = rings + 1;
                    if line.auto_answer > 0 && rings >= u32::from(line.auto_answer) {
                        self.answer(&n, &from, now);
                    } else {
                        line.mode = Mode::Ringing {
                            from,
                            rings,
                            next: now + cfg.ring_interval,
                        };
                    }
                }
                Mode::Training { peer, until } if now >= until => {
                    line.mode = Mode::Online { peer };
                    line.last_input = None;
                    line.say(ResultCode::Connect(rate));
                    if self.line(&n).peer().is_some_and(|p| p < n.as_str()) {
                        // Count each call once, from the side that connects second.
                        self.stats.calls += 1;
                        self.call_bytes = 0;
                    }
                }
                Mode::Online { peer } => {
                    if let Some((3, at)) = line.plus
                        && now - at >= line.guard
                    {
                        line.plus = None;
                        line.mode = Mode::OnlineCommand { peer };
                        line.say(ResultCode::Ok);
                    }
                }
                _ => {}
            }
        }
    }

    /// What `number`'s modem has for its host.
    pub fn take_output(&mut self, number: &str) -> Vec<u8> {
        std::mem::take(&mut self.line(number).to_host)
    }
}

/// A running exchange: modems on serial ports, one pump thread each.
pub struct Exchange {
    board: Arc<Mutex<Switchboard>>,
    stop: Arc<AtomicBool>,
    pumps: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("modems", &self.pumps.len())
            .finish()
    }
}

/// How long a pump waits for its host before moving time on.
const PUMP_TICK: Duration = Duration::from_millis(2);

impl Exchange {
    pub fn new(config: LineConfig) -> Exchange {
        Exchange {
            board: Arc::new(Mutex::new(Switchboard::new(config))),
            stop: Arc::new(AtomicBool::new(false)),
            pumps: Vec::new(),
        }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Switchboard> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts a modem with phone number `number` on the serial port at `path` (the
    /// modem's end of the line; its host opens the other end).
    pub fn install(&mut self, number: &str, path: &str) -> io::Result<()> {
        let mut port = serialport::new(path, 115_200)
            .timeout(PUMP_TICK)
            .open()
            .map_err(|e| io::Error::other(format!("modem port {path}: {e}")))?;
        self.board().install(number);
        let (board, stop, number) = (self.board.clone(), self.stop.clone(), number.to_string());
        self.pumps.push(thread::spawn(move || {
            pump(&board, &stop, &number, port.as_mut());
        }));
        Ok(())
    }

    pub fn set_faults(&self, faults: Faults, seed: u64) {
        self.board().set_faults(faults, seed);
    }

    /// Cuts whatever call `number` is in.
    pub fn drop_carrier(&self, number: &str) {
        self.board().drop_carrier(number);
    }

    pub fn is_online(&self, number: &str) -> bool {
        self.board().is_online(number)
    }

    pub fn stats(&self) -> ExchangeStats {
        self.board().stats()
    }
}

fn pump(board: &Mutex<Switchboard>, stop: &AtomicBool, number: &str, port: &mut dyn SerialPort) {
    let lock = || board.lock().unwrap_or_else(PoisonError::into_inner);
    let mut buf = [0u8; 256];
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let budget = lock().read_budget(number, Instant::now()).min(buf.len());
        let got = if budget == 0 {
            thread::sleep(PUMP_TICK);
            0
        } else {
            match port.read(&mut buf[..budget]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => 0,
                Err(_) => return,
            }
        };
        {
            let mut b = lock();
            let now = Instant::now();
            b.host_input(number, &buf[..got], now);
            b.tick(now);
            out.extend(b.take_output(number));
        }
        if !out.is_empty() {
            match port.write(&out) {
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for p in self.pumps.drain(..) {
            // A panic in a pump has already been reported by the runtime.
            let _ = p.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> (Switchboard, Instant) {
        let mut b = Switchboard::new(LineConfig::V34);
        b.install("100");
        b.install("200");
        b.install("300");
        (b, Instant::now())
    }

    fn type_line(b: &mut Switchboard, n: &str, line: &str, now: Instant) -> String {
        b.host_input(n, format!("{line}\r").as_bytes(), now);
        String::from_utf8(b.take_output(n)).unwrap()
    }

    fn connect(b: &mut Switchboard, t: &mut Instant) {
        type_line(b, "100", "ATE0", *t);
        type_line(b, "200", "ATE0", *t);
        assert_eq!(type_line(b, "200", "ATS0=1", *t), "\r\nOK\r\n");
        assert_eq!(type_line(b, "100", "ATDT200", *t), "");
        b.tick(*t);
        assert_eq!(b.take_output("200"), b"\r\nRING\r\n");
        *t += LineConfig::V34.train_time;
        b.tick(*t);
        assert_eq!(b.take_output("100"), b"\r\nCONNECT 33600\r\n");
        assert_eq!(b.take_output("200"), b"\r\nCONNECT 33600\r\n");
    }

    #[test]
    fn commands_answer_ok_or_error_with_echo_until_e0() {
        let (mut b, t) = board();
        assert_eq!(type_line(&mut b, "100", "AT", t), "AT\r\r\nOK\r\n");
        assert_eq!(type_line(&mut b, "100", "ATE0", t), "ATE0\r\r\nOK\r\n");
        assert_eq!(type_line(&mut b, "100", "ATZ", t), "\r\nOK\r\n");
        assert_eq!(type_line(&mut b, "100", "ATQ9", t), "ATQ9\r\r\nERROR\r\n");
        assert_eq!(type_line(&mut b, "100", "+++ATH", t), "+++ATH\r\r\nOK\r\n");
        assert_eq!(
            type_line(&mut b, "100", "\x01\x7e garbage", t),
            "\x01\x7e garbage\r"
        );
    }

    #[test]
    fn dial_rings_the_callee_which_answers_with_ata() {
        let (mut b, mut t) = board();
        type_line(&mut b, "200", "ATE0", t);
        type_line(&mut b, "100", "ATE0", t);
        assert_eq!(type_line(&mut b, "100", "ATDT200", t), "");
        for _ in 0..2 {
            b.tick(t);
            assert_eq!(b.take_output("200"), b"\r\nRING\r\n");
            t += LineConfig::V34.ring_interval;
        }
        assert_eq!(type_line(&mut b, "200", "ATA", t), "");
        b.tick(t + LineConfig::V34.train_time);
        assert!(b.is_online("100") && b.is_online("200"));
        assert_eq!(b.take_output("100"), b"\r\nCONNECT 33600\r\n");
    }

    #[test]
    fn unknown_numbers_busy_lines_and_unanswered_calls_fail() {
        let (mut b, mut t) = board();
        type_line(&mut b, "100", "ATE0", t);
        type_line(&mut b, "300", "ATE0", t);
        assert_eq!(type_line(&mut b, "100", "ATDT999", t), "\r\nNO CARRIER\r\n");
        type_line(&mut b, "100", "ATDT200", t);
        assert_eq!(type_line(&mut b, "300", "ATDT200", t), "\r\nBUSY\r\n");
        for _ in 0..=LineConfig::V34.max_rings {
            b.tick(t);
            t += LineConfig::V34.ring_interval;
        }
        assert_eq!(b.take_output("100"), b"\r\nNO ANSWER\r\n");
        assert!(!b.is_online("200"));
    }

    #[test]
    fn data_is_throttled_to_the_line_rate() {
        let (mut b, mut t) = board();
        connect(&mut b, &mut t);
        assert_eq!(b.read_budget("100", t), 0);
        t += Duration::from_millis(5);
        // 33600 bit/s, 10 bits a byte: 16.8 bytes in 5 ms.
        assert_eq!(b.read_budget("100", t), 16);
        b.host_input("100", &[7; 16], t);
        assert_eq!(b.take_output("200"), vec![7; 16]);
        t += Duration::from_secs(1);
        assert_eq!(b.read_budget("100", t), MAX_CREDIT as usize);
    }

    #[test]
    fn escape_then_ath_hangs_up_and_the_peer_hears_no_carrier() {
        let (mut b, mut t) = board();
        type_line(&mut b, "100", "ATS12=10", t);
        connect(&mut b, &mut t);
        t += Duration::from_secs(2);
        // `+++` glued to data is data.
        b.host_input("100", b"a+++", t);
        assert_eq!(b.take_output("200"), b"a+++");
        t += Duration::from_secs(2);
        b.host_input("100", b"+++", t);
        b.tick(t + Duration::from_millis(100));
        assert!(
            b.take_output("100").is_empty(),
            "still within the guard time"
        );
        b.tick(t + Duration::from_secs(1));
        assert_eq!(b.take_output("100"), b"\r\nOK\r\n");
        assert_eq!(type_line(&mut b, "100", "ATH", t), "\r\nOK\r\n");
        assert_eq!(b.take_output("200"), b"\r\nNO CARRIER\r\n");
        assert!(!b.is_online("200"));
    }

    #[test]
    fn a_dropped_carrier_tells_both_hosts() {
        let (mut b, mut t) = board();
        b.set_faults(
            Faults {
                byte_error_rate: 0.0,
                drop_after_bytes: Some(10),
            },
            1,
        );
        connect(&mut b, &mut t);
        b.host_input("100", &[1; 12], t);
        assert_eq!(
            b.take_output("200"),
            [&[1; 12][..], b"\r\nNO CARRIER\r\n"].concat()
        );
        assert_eq!(b.take_output("100"), b"\r\nNO CARRIER\r\n");
        assert_eq!(b.stats().carriers_dropped, 1);
        // Back in command mode, and the next call is not dropped.
        connect(&mut b, &mut t);
        b.host_input("100", &[1; 20], t);
        assert_eq!(b.take_output("200"), vec![1; 20]);
    }

    #[test]
    fn noise_flips_bits_at_about_the_set_rate() {
        let (mut b, mut t) = board();
        b.set_faults(
            Faults {
                byte_error_rate: 0.01,
                drop_after_bytes: None,
            },
            42,
        );
        connect(&mut b, &mut t);
        b.host_input("100", &[0u8; 100_000], t);
        let got = b.take_output("200");
        let flipped = got.iter().filter(|x| **x != 0).count();
        assert!((700..1300).contains(&flipped), "{flipped}");
        assert!(got.iter().all(|x| x.count_ones() <= 1));
        assert_eq!(b.stats().bytes_corrupted, flipped as u64);
    }
}
