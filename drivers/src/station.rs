//! A fuel station's devices as its config lists them: the fuelling points (one serial
//! port each, on the station's 8- or 16-port hub) and the receipt printer. Checked as a
//! whole before any port is opened, so a typo is reported by name instead of as a
//! pump that never answers.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dispenser::driver::{DartConfig, DartDispenser};
use crate::dispenser::{Dispenser, DispenserError};
use crate::printer::PrinterConfig;

/// The station's devices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuelStationConfig {
    /// Fuelling points, numbered from 1 in this order on the dashboard.
    pub points: Vec<DartConfig>,
    /// The receipt printer, if any.
    #[serde(default)]
    pub printer: Option<PrinterConfig>,
}

/// A station config that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StationConfigError {
    /// No fuelling point.
    #[error("the station config lists no fuelling point")]
    NoPoints,
    /// Two devices on one port.
    #[error(
        "serial port {0} is listed twice: each fuelling point and the printer need a port of their own"
    )]
    PortTwice(String),
    /// A point's address is outside 0x50..=0x6F.
    #[error("fuelling point {point} has address {address:#04x}: DART addresses run 0x50 to 0x6f")]
    BadAddress {
        /// 1-based point number.
        point: usize,
        /// The address.
        address: u8,
    },
    /// A point without nozzles, or a nozzle listed twice.
    #[error("fuelling point {point}: {why}")]
    Nozzles {
        /// 1-based point number.
        point: usize,
        /// What is wrong.
        why: String,
    },
    /// A reply timeout of 0 or over 10 s.
    #[error("fuelling point {point}: reply timeout {ms} ms is out of range (1 to 10000)")]
    Timeout {
        /// 1-based point number.
        point: usize,
        /// The timeout.
        ms: u64,
    },
    /// A receipt narrower than a label and an amount.
    #[error("printer width {0} is out of range (24 to 64 columns)")]
    PrinterWidth(usize),
}

impl FuelStationConfig {
    /// Checks the config as a whole.
    pub fn validate(&self) -> Result<(), StationConfigError> {
        if self.points.is_empty() {
            return Err(StationConfigError::NoPoints);
        }
        let mut ports = BTreeSet::new();
        for (i, p) in self.points.iter().enumerate() {
            let point = i + 1;
            if !ports.insert(p.port.as_str()) {
                return Err(StationConfigError::PortTwice(p.port.clone()));
            }
            if !(0x50..=0x6F).contains(&p.address) {
                return Err(StationConfigError::BadAddress {
                    point,
                    address: p.address,
                });
            }
            if p.nozzles.is_empty() {
                return Err(StationConfigError::Nozzles {
                    point,
                    why: "no nozzles".into(),
                });
            }
            let mut seen = BTreeSet::new();
            for n in &p.nozzles {
                if !seen.insert(n.nozzle) {
                    return Err(StationConfigError::Nozzles {
                        point,
                        why: format!("nozzle {} is listed twice", n.nozzle.get()),
                    });
                }
            }
            if !(1..=10_000).contains(&p.reply_timeout_ms) {
                return Err(StationConfigError::Timeout {
                    point,
                    ms: p.reply_timeout_ms,
                });
            }
        }
        if let Some(pr) = &self.printer {
            if ports.contains(pr.port.as_str()) {
                return Err(StationConfigError::PortTwice(pr.port.clone()));
            }
            if !(24..=64).contains(&pr.width) {
                return Err(StationConfigError::PrinterWidth(pr.width));
            }
        }
        Ok(())
    }

    /// Opens every fuelling point's driver, in config order.
    pub fn open_points(&self) -> Result<Vec<Box<dyn Dispenser + Send>>, DispenserError> {
        self.validate()
            .map_err(|e| DispenserError::Config(e.to_string()))?;
        self.points
            .iter()
            .map(|p| DartDispenser::open(p).map(|d| Box::new(d) as Box<dyn Dispenser + Send>))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispenser::driver::Parity;
    use crate::dispenser::{NozzleConfig, NozzleNumber};
    use cardmesh_model::ids::ProductId;

    fn point(port: &str, address: u8) -> DartConfig {
        DartConfig {
            port: port.into(),
            baud: 9600,
            parity: Parity::Odd,
            address,
            nozzles: vec![NozzleConfig {
                nozzle: NozzleNumber::new(1).unwrap(),
                grade: ProductId::new("92").unwrap(),
            }],
            reply_timeout_ms: 500,
        }
    }

    fn station() -> FuelStationConfig {
        FuelStationConfig {
            points: vec![point("/dev/ttyUSB0", 0x50), point("/dev/ttyUSB1", 0x50)],
            printer: Some(PrinterConfig {
                port: "/dev/ttyS0".into(),
                baud: 9600,
                header: vec!["第一加油站".into()],
                footer: Vec::new(),
                width: 32,
            }),
        }
    }

    #[test]
    fn a_hub_with_one_point_per_port_is_valid() {
        station().validate().unwrap();
    }

    #[test]
    fn mistakes_are_named() {
        let mut s = station();
        s.points[1].port = "/dev/ttyUSB0".into();
        assert_eq!(
            s.validate(),
            Err(StationConfigError::PortTwice("/dev/ttyUSB0".into()))
        );
        let mut s = station();
        s.printer.as_mut().unwrap().port = "/dev/ttyUSB1".into();
        assert!(matches!(
            s.validate(),
            Err(StationConfigError::PortTwice(_))
        ));
        let mut s = station();
        s.points[1].address = 0x70;
        assert_eq!(
            s.validate(),
            Err(StationConfigError::BadAddress {
                point: 2,
                address: 0x70
            })
        );
        let mut s = station();
        let n = s.points[0].nozzles[0].clone();
        s.points[0].nozzles.push(n);
        assert!(
            matches!(s.validate(), Err(StationConfigError::Nozzles { point: 1, ref why }) if why.contains("twice"))
        );
        let mut s = station();
        s.points[0].reply_timeout_ms = 0;
        assert!(matches!(
            s.validate(),
            Err(StationConfigError::Timeout { point: 1, ms: 0 })
        ));
        assert_eq!(
            FuelStationConfig {
                points: Vec::new(),
                printer: None
            }
            .validate(),
            Err(StationConfigError::NoPoints)
        );
    }

    #[test]
    fn opening_a_missing_port_names_it() {
        let e = station().open_points().err().unwrap();
        assert!(e.to_string().contains("/dev/ttyUSB0"), "{e}");
    }
}
