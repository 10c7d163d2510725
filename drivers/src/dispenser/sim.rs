//! A dispenser simulator: a [`FuellingPoint`] answering the DART-style protocol on a
//! serial port (the far end of a pty pair), driven from tests and the demo as a customer
//! and a faulty pump would: lift a nozzle, pump at a rate or by an exact volume, hang
//! up, fault, and damage its next reply on the line.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use cardmesh_model::Quantity;
use serialport::SerialPort;

use super::dart::{self, Address, Command, Frame, HostData, Kind, Splitter};
use super::point::{Authorization, FuellingPoint, NozzlePrice, PointError, PointStatus, Preset};

/// How the simulator damages its next reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// One bit of the CRC flipped.
    Crc,
    /// Only the first half of the frame is sent.
    Truncate,
}

struct Flow {
    rate_ml_per_s: i64,
    since: Instant,
    delivered: i64,
}

struct State {
    point: FuellingPoint,
    flow: Option<Flow>,
    /// Replies to let through first, and the damage to the one after.
    damage: Option<(u32, Damage)>,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A simulated DART pump on its own thread until dropped.
pub struct DispenserSimulator {
    state: Shared,
    line_errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DispenserSimulator {
    /// Serves fuelling point `address` with `nozzles` nozzles on `port`. The port's read
    /// timeout is the tick of the flow and sets how fast `drop` returns (20 ms is good).
    pub fn spawn(
        mut port: Box<dyn SerialPort>,
        address: Address,
        nozzles: u8,
    ) -> Result<DispenserSimulator, PointError> {
        let state: Shared = Arc::new(Mutex::new(State {
            point: FuellingPoint::new(nozzles)?,
            flow: None,
            damage: None,
        }));
        let line_errors = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, errs, stop2) = (state.clone(), line_errors.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut sp = Splitter::new();
            let mut buf = [0u8; 64];
            while !stop2.load(Ordering::Relaxed) {
                flow_tick(&mut lock(&st));
                let n = match port.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // A quiet line: a frame left unfinished will never be finished.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                        ) =>
                    {
                        if sp.clear() > 0 {
                            errs.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    }
                    Err(_) => return,
                };
                for &b in &buf[..n] {
                    let Some(raw) = sp.push(b) else { continue };
                    let frame = match raw.and_then(|r| dart::decode(&r)) {
                        Ok(f) if f.address == address => f,
                        // Another pump's frame on a shared line: not ours to answer.
                        Ok(_) => continue,
                        Err(_) => {
                            errs.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    let mut s = lock(&st);
                    flow_tick(&mut s);
                    let reply = answer(&mut s, &frame);
                    let mut bytes = dart::encode(&reply);
                    let damage = match s.damage {
                        Some((0, d)) => {
                            s.damage = None;
                            Some(d)
                        }
                        Some((n, d)) => {
                            s.damage = Some((n - 1, d));
                            None
                        }
                        None => None,
                    };
                    match damage {
                        Some(Damage::Crc) => {
                            let i = bytes.len() - 3;
                            bytes[i] ^= 0x01;
                            // Keep the damaged byte from becoming an SF or DLE.
                            if bytes[i] == dart::SF || bytes[i] == dart::DLE {
                                bytes[i] ^= 0x02;
                            }
                        }
                        Some(Damage::Truncate) => bytes.truncate(bytes.len() / 2),
                        None => {}
                    }
                    drop(s);
                    if port.write_all(&bytes).and_then(|()| port.flush()).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(DispenserSimulator {
            state,
            line_errors,
            stop,
            thread: Some(thread),
        })
    }

    /// The customer lifts nozzle `n`.
    pub fn lift(&self, n: u8) -> Result<(), PointError> {
        lock(&self.state).point.lift(n)
    }

    /// The customer hangs the nozzle up.
    pub fn hang_up(&self) -> Result<(), PointError> {
        let mut s = lock(&self.state);
        flow_tick(&mut s);
        s.flow = None;
        s.point.hang_up()
    }

    /// Delivers `ml` at once (less if a preset is reached).
    pub fn pump(&self, ml: i64) -> Result<Quantity, PointError> {
        lock(&self.state).point.pump(ml)
    }

    /// Starts fuel flowing at `ml_per_s` until hung up, stopped, faulted or the preset.
    pub fn start_flow(&self, ml_per_s: i64) {
        lock(&self.state).flow = Some(Flow {
            rate_ml_per_s: ml_per_s,
            since: Instant::now(),
            delivered: 0,
        });
    }

    /// The pump faults with alarm `code` (e.g. a pulser or motor fault).
    pub fn fault(&self, code: u8) {
        let mut s = lock(&self.state);
        flow_tick(&mut s);
        s.flow = None;
        s.point.fault(code);
    }

    /// Damages the next reply on the line.
    pub fn damage_next_reply(&self, d: Damage) {
        self.damage_reply(0, d);
    }

    /// Lets `skip` replies through, then damages the next one.
    pub fn damage_reply(&self, skip: u32, d: Damage) {
        lock(&self.state).damage = Some((skip, d));
    }

    /// The pump's own view.
    pub fn status(&self) -> PointStatus {
        lock(&self.state).point.status()
    }

    /// Damaged or cut-off frames received so far.
    pub fn line_errors(&self) -> u64 {
        self.line_errors.load(Ordering::Relaxed)
    }
}

impl Drop for DispenserSimulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A panic in the simulator thread has already been reported by the runtime.
            let _ = t.join();
        }
    }
}

/// Delivers what the flow rate owes since it started; a refused delivery (stopped,
/// preset reached, nozzle hung up) ends the flow.
fn flow_tick(s: &mut State) {
    let Some(f) = s.flow.as_mut() else { return };
    let due_total = i64::try_from(f.since.elapsed().as_millis()).unwrap_or(i64::MAX / 2)
        * f.rate_ml_per_s
        / 1000;
    let due = due_total - f.delivered;
    if due <= 0 {
        return;
    }
    match s.point.pump(due) {
        Ok(q) if q.milli() == due => f.delivered += due,
        _ => s.flow = None,
    }
}

fn answer(s: &mut State, req: &Frame) -> Frame {
    let kind = match req.kind {
        Kind::Poll => {
            return Frame {
                address: req.address,
                kind: Kind::Data,
                seq: req.seq,
                blocks: dart::status_blocks(&s.point.status(), s.point.is_reset()),
            };
        }
        Kind::Data => match dart::parse_host_data(&req.blocks) {
            Ok(d) => {
                if apply(&mut s.point, d) {
                    Kind::Ack
                } else {
                    Kind::Nak
                }
            }
            Err(_) => Kind::Nak,
        },
        _ => Kind::Nak,
    };
    Frame {
        address: req.address,
        kind,
        seq: req.seq,
        blocks: Vec::new(),
    }
}

/// Applies a host DATA frame to a copy and keeps it only if every part was accepted,
/// so a NAK means nothing changed.
fn apply(point: &mut FuellingPoint, d: HostData) -> bool {
    let mut p = point.clone();
    let preset = match (d.preset_amount, d.preset_volume) {
        (Some(m), None) => Some(Preset::Amount(m)),
        (None, Some(q)) => Some(Preset::Volume(q)),
        (None, None) => None,
        (Some(_), Some(_)) => return false,
    };
    if d.prices.len() != d.nozzles.len() {
        return false;
    }
    let prices: Vec<NozzlePrice> = d
        .nozzles
        .iter()
        .zip(&d.prices)
        .map(|(n, pr)| NozzlePrice {
            nozzle: *n,
            price: *pr,
        })
        .collect();
    for c in d.commands {
        let r = match c {
            Command::ReturnStatus => Ok(()),
            Command::Reset => p.reset(),
            Command::Stop => p.stop(),
            Command::Authorize => match preset {
                Some(preset) => p.authorize(Authorization {
                    prices: prices.clone(),
                    preset,
                }),
                None => return false,
            },
        };
        if r.is_err() {
            return false;
        }
    }
    *point = p;
    true
}
