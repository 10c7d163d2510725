//! The DART-style dispenser driver: one fuelling point on one serial port (the
//! `serialport` crate), configured from the station's config.
//!
//! Each call is one request and one reply. Before a request the driver drops whatever
//! is left in the input buffer, and it ignores replies whose sequence number is not the
//! request's, so after a damaged or cut-off frame (a typed error) the next call works.
//! Nothing is retried here: a command whose reply was lost may or may not have been
//! applied, and only a fresh [`Dispenser::status`] tells.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serialport::{ClearBuffer, DataBits, SerialPort, StopBits};

use super::dart::{self, Address, Block, Command, DartError, Frame, Kind, Splitter};
use super::{
    AuthorizedPrices, Dispenser, DispenserError, DispenserStatus, GradePrices, NozzleConfig,
    Preset, authorized_prices,
};

/// Parity of the line (DART pumps run 8N1 or 8O1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity.
    #[default]
    None,
    /// Odd parity.
    Odd,
    /// Even parity.
    Even,
}

impl From<Parity> for serialport::Parity {
    fn from(p: Parity) -> serialport::Parity {
        match p {
            Parity::None => serialport::Parity::None,
            Parity::Odd => serialport::Parity::Odd,
            Parity::Even => serialport::Parity::Even,
        }
    }
}

fn default_baud() -> u32 {
    9600
}

fn default_timeout_ms() -> u64 {
    500
}

/// One fuelling point as the station's config describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DartConfig {
    /// The serial port, e.g. `/dev/ttyUSB3` (one port of the hub per point).
    pub port: String,
    /// Line speed.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Parity.
    #[serde(default)]
    pub parity: Parity,
    /// The pump's DART address, 0x50..=0x6F.
    pub address: u8,
    /// Nozzles and their grades.
    pub nozzles: Vec<NozzleConfig>,
    /// How long to wait for a reply.
    #[serde(default = "default_timeout_ms")]
    pub reply_timeout_ms: u64,
}

/// A fuelling point driven over DART.
pub struct DartDispenser {
    port: Box<dyn SerialPort>,
    address: Address,
    nozzles: Vec<NozzleConfig>,
    timeout: Duration,
    seq: u8,
}

impl std::fmt::Debug for DartDispenser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DartDispenser")
            .field("port", &self.port.name())
            .field("address", &self.address)
            .finish()
    }
}

impl DartDispenser {
    /// Opens the point's port as configured.
    pub fn open(cfg: &DartConfig) -> Result<DartDispenser, DispenserError> {
        let timeout = Duration::from_millis(cfg.reply_timeout_ms);
        let port = serialport::new(&cfg.port, cfg.baud)
            .parity(cfg.parity.into())
            .data_bits(DataBits::Eight)
            .stop_bits(StopBits::One)
            .timeout(timeout)
            .open()
            .map_err(|e| DispenserError::Open {
                port: cfg.port.clone(),
                reason: e.to_string(),
            })?;
        DartDispenser::from_port(port, cfg)
    }

    /// A driver on an already opened port (`cfg.port` is not opened again).
    pub fn from_port(
        port: Box<dyn SerialPort>,
        cfg: &DartConfig,
    ) -> Result<DartDispenser, DispenserError> {
        let address =
            Address::new(cfg.address).map_err(|e| DispenserError::Config(e.to_string()))?;
        if cfg.nozzles.is_empty() {
            return Err(DispenserError::Config(format!(
                "fuelling point at {} has no nozzles",
                cfg.port
            )));
        }
        let mut seen = Vec::new();
        for n in &cfg.nozzles {
            if seen.contains(&n.nozzle) {
                return Err(DispenserError::Config(format!(
                    "nozzle {} is listed twice for {}",
                    n.nozzle.get(),
                    cfg.port
                )));
            }
            seen.push(n.nozzle);
        }
        Ok(DartDispenser {
            port,
            address,
            nozzles: cfg.nozzles.clone(),
            timeout: Duration::from_millis(cfg.reply_timeout_ms),
            seq: 0,
        })
    }

    /// Sends one frame and returns the pump's reply to it.
    fn exchange(&mut self, kind: Kind, blocks: Vec<Block>) -> Result<Frame, DispenserError> {
        self.seq = (self.seq + 1) & 0x0F;
        let req = Frame {
            address: self.address,
            kind,
            seq: self.seq,
            blocks,
        };
        self.port
            .clear(ClearBuffer::Input)
            .map_err(io::Error::from)?;
        self.port.write_all(&dart::encode(&req))?;
        self.port.flush()?;
        let deadline = Instant::now() + self.timeout;
        let mut sp = Splitter::new();
        let mut buf = [0u8; 64];
        loop {
            let n = match self.port.read(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    0
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            for &b in &buf[..n] {
                let Some(raw) = sp.push(b) else { continue };
                let reply = dart::decode(&raw?)?;
                if reply.address != self.address {
                    return Err(DispenserError::WrongAddress {
                        expected: self.address.get(),
                        got: reply.address.get(),
                    });
                }
                // A late reply to an earlier request: skip it.
                if reply.seq == self.seq {
                    return Ok(reply);
                }
            }
            if Instant::now() >= deadline {
                return match sp.clear() {
                    0 => Err(DispenserError::Timeout(self.address.get())),
                    got => Err(DartError::Truncated { got }.into()),
                };
            }
        }
    }

    fn command(&mut self, what: &'static str, blocks: Vec<Block>) -> Result<(), DispenserError> {
        let reply = self.exchange(Kind::Data, blocks)?;
        match reply.kind {
            Kind::Ack => Ok(()),
            Kind::Nak => Err(DispenserError::Refused(what)),
            k => Err(DispenserError::Unexpected(k)),
        }
    }
}

impl Dispenser for DartDispenser {
    fn nozzles(&self) -> &[NozzleConfig] {
        &self.nozzles
    }

    fn status(&mut self) -> Result<DispenserStatus, DispenserError> {
        let reply = self.exchange(Kind::Poll, Vec::new())?;
        if reply.kind != Kind::Data {
            return Err(DispenserError::Unexpected(reply.kind));
        }
        let point = dart::parse_status(&reply.blocks)?;
        let grade = point.nozzle.and_then(|n| {
            self.nozzles
                .iter()
                .find(|c| c.nozzle == n)
                .map(|c| c.grade.clone())
        });
        Ok(DispenserStatus { point, grade })
    }

    fn reset(&mut self) -> Result<(), DispenserError> {
        self.command("reset", vec![Command::Reset.block()])
    }

    fn authorize(
        &mut self,
        preset: Preset,
        prices: &GradePrices,
    ) -> Result<AuthorizedPrices, DispenserError> {
        let priced = authorized_prices(&self.nozzles, prices);
        if priced.0.is_empty() {
            return Err(DispenserError::NoPricedNozzle);
        }
        let wire: Vec<_> = priced.0.iter().map(|(c, p)| (c.nozzle, *p)).collect();
        self.reset()?;
        self.command("authorize", dart::authorize_blocks(&wire, preset))?;
        Ok(priced)
    }

    fn stop(&mut self) -> Result<(), DispenserError> {
        self.command("stop", vec![Command::Stop.block()])
    }
}
