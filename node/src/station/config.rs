//! The `[station]` section of a node's `config.toml`. The devices are the drivers'
//! [`FuelStationConfig`] (fuelling points with port, line settings, DART address and
//! the grade of each nozzle; the receipt printer with header and footer), written at the
//! top of the section; the node adds what only it knows: the POS terminal and the card
//! reader of each fuelling point, and the most one fill may cost.
//!
//! ```toml
//! [station]
//! terminals = ["000000000301", "000000000302"]   # one per fuelling point, in order
//! readers = ["ACS ACR122U 00 00", "ACS ACR122U 01 00"]  # PC/SC reader of each point
//! max_fill = "800.00"                            # default 1000.00
//!
//! [[station.points]]
//! port = "/dev/ttyUSB0"
//! baud = 9600
//! parity = "odd"
//! address = 0x50
//! nozzles = [{ nozzle = 1, grade = "92" }, { nozzle = 2, grade = "95" }]
//!
//! [station.printer]
//! port = "/dev/ttyS1"
//! header = ["中石化第一加油站", "No. 1 Station"]
//! footer = ["谢谢惠顾 Thank you"]
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use cardmesh_drivers::dispenser::driver::{DartConfig, Parity};
use cardmesh_drivers::dispenser::point::MAX_8_DIGITS;
use cardmesh_drivers::dispenser::{NozzleConfig, NozzleNumber};
use cardmesh_drivers::printer::PrinterConfig;
use cardmesh_drivers::station::FuelStationConfig;
use cardmesh_model::{Money, TerminalId};
use serde::Deserialize;

use super::StationError;

/// What one fill costs at most when the config does not say.
pub const DEFAULT_MAX_FILL: Money = Money::from_fen(100_000);

/// A station as its node runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StationConfig {
    /// Fuelling points and printer.
    pub devices: FuelStationConfig,
    /// The POS terminal of each fuelling point, in the order of `devices.points`.
    pub terminals: Vec<TerminalId>,
    /// The PC/SC card reader of each fuelling point (part of its name); empty when the
    /// caller hands the readers in (tests, the demo).
    pub readers: Vec<String>,
    /// The most one fill may cost (the grey lock's limit without a customer preset).
    pub max_fill: Money,
}

impl StationConfig {
    /// One fuelling point (DART address 0x50, 9600 baud, no parity) on `pump`, nozzle
    /// `i + 1` selling `grades[i]`, a 32-column receipt printer on `printer`, the POS
    /// terminal `terminal`, and the card reader handed in by the caller: a station on
    /// simulated devices, as the demo's forecourt and the station tests run one.
    pub fn one_point(
        pump: &str,
        printer: &str,
        grades: &[&str],
        (header, footer): (&str, &str),
        terminal: TerminalId,
    ) -> StationConfig {
        let nozzles = grades
            .iter()
            .zip(1..)
            .map(|(grade, n)| NozzleConfig {
                nozzle: NozzleNumber::new(n).expect("at most 8 nozzles"),
                grade: grade.parse().expect("a valid product id"),
            })
            .collect();
        StationConfig {
            devices: FuelStationConfig {
                points: vec![DartConfig {
                    port: pump.into(),
                    baud: 9600,
                    parity: Parity::None,
                    address: 0x50,
                    nozzles,
                    reply_timeout_ms: 300,
                }],
                printer: Some(PrinterConfig {
                    port: printer.into(),
                    baud: 9600,
                    header: vec![header.into()],
                    footer: vec![footer.into()],
                    width: 32,
                }),
            },
            terminals: vec![terminal],
            readers: Vec::new(),
            max_fill: DEFAULT_MAX_FILL,
        }
    }
}

#[derive(Deserialize)]
struct File {
    station: Option<Section>,
}

#[derive(Deserialize)]
struct Section {
    #[serde(flatten)]
    devices: FuelStationConfig,
    terminals: Vec<String>,
    #[serde(default)]
    readers: Vec<String>,
    max_fill: Option<String>,
}

/// Parses the `[station]` section of a config file's text, if there is one; `path`
/// only names the file in errors.
pub fn parse(text: &str, path: &str) -> Result<Option<StationConfig>, StationError> {
    let invalid = |message: String| StationError::Config {
        path: path.to_string(),
        message,
    };
    let file: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let Some(s) = file.station else {
        return Ok(None);
    };
    s.devices
        .validate()
        .map_err(|e| invalid(format!("station: {e}")))?;
    let points = s.devices.points.len();
    if s.terminals.len() != points {
        return Err(invalid(format!(
            "station.terminals lists {} terminals for {points} fuelling points: give one per point, in order",
            s.terminals.len()
        )));
    }
    let mut terminals = Vec::new();
    for t in &s.terminals {
        let id: TerminalId = t
            .parse()
            .map_err(|e| invalid(format!("station.terminals: {t:?}: {e}")))?;
        if terminals.contains(&id) {
            return Err(invalid(format!(
                "station.terminals: terminal {t} is listed twice: each fuelling point needs its own"
            )));
        }
        terminals.push(id);
    }
    if !s.readers.is_empty() && s.readers.len() != points {
        return Err(invalid(format!(
            "station.readers lists {} readers for {points} fuelling points: give one per point, in order",
            s.readers.len()
        )));
    }
    if s.readers.iter().collect::<BTreeSet<_>>().len() != s.readers.len() {
        return Err(invalid(
            "station.readers: a card reader is listed twice: each fuelling point needs its own"
                .into(),
        ));
    }
    let max_fill = match &s.max_fill {
        None => DEFAULT_MAX_FILL,
        Some(m) => {
            let m: Money = m
                .parse()
                .map_err(|e| invalid(format!("station.max_fill: {e}")))?;
            if !(1..=MAX_8_DIGITS).contains(&m.fen()) {
                return Err(invalid(format!(
                    "station.max_fill {m} is out of range (0.01 to 999999.99)"
                )));
            }
            m
        }
    };
    Ok(Some(StationConfig {
        devices: s.devices,
        terminals,
        readers: s.readers,
        max_fill,
    }))
}

/// Reads the `[station]` section of `config.toml` in the data folder; no file or no
/// section means this node runs no station.
pub fn load(data: &Path) -> Result<Option<StationConfig>, StationError> {
    let path = data.join(crate::config::FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StationError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardmesh_drivers::dispenser::driver::Parity;

    const TWO_POINTS: &str = r#"
[sync]
interval_secs = 30

[station]
terminals = ["000000000301", "000000000302"]
readers = ["Virtual PCD 00 00", "Virtual PCD 00 01"]
max_fill = "800.00"

[[station.points]]
port = "/dev/ttyUSB0"
parity = "odd"
address = 0x50
nozzles = [{ nozzle = 1, grade = "92" }, { nozzle = 2, grade = "95" }]

[[station.points]]
port = "/dev/ttyUSB1"
address = 0x51
nozzles = [{ nozzle = 1, grade = "0-diesel" }]

[station.printer]
port = "/dev/ttyS1"
header = ["第一加油站"]
footer = ["谢谢惠顾"]
"#;

    #[test]
    fn a_station_section_is_read_with_its_devices() {
        let c = parse(TWO_POINTS, "c").unwrap().unwrap();
        assert_eq!(c.devices.points.len(), 2);
        assert_eq!(c.devices.points[0].parity, Parity::Odd);
        assert_eq!(c.devices.points[0].baud, 9600);
        assert_eq!(c.devices.points[1].address, 0x51);
        assert_eq!(c.devices.points[1].nozzles[0].grade.to_string(), "0-diesel");
        assert_eq!(c.terminals[1].to_string(), "000000000302");
        assert_eq!(c.readers[0], "Virtual PCD 00 00");
        assert_eq!(c.max_fill, Money::from_fen(80_000));
        let printer = c.devices.printer.unwrap();
        assert_eq!(printer.header, vec!["第一加油站".to_string()]);
        assert_eq!(printer.width, 32);
    }

    #[test]
    fn no_section_is_no_station() {
        assert_eq!(parse("[sync]\ninterval_secs = 5\n", "c").unwrap(), None);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |text: String| parse(&text, "c").unwrap_err().to_string();
        let e = err(TWO_POINTS.replace(", \"000000000302\"]", "]"));
        assert!(e.contains("1 terminals for 2 fuelling points"), "{e}");
        let e = err(TWO_POINTS.replace("000000000302", "000000000301"));
        assert!(e.contains("listed twice"), "{e}");
        let e = err(TWO_POINTS.replace("Virtual PCD 00 01", "Virtual PCD 00 00"));
        assert!(e.contains("reader is listed twice"), "{e}");
        let e = err(TWO_POINTS.replace("\"800.00\"", "\"lots\""));
        assert!(e.contains("station.max_fill"), "{e}");
        let e = err(TWO_POINTS.replace("\"800.00\"", "\"0\""));
        assert!(e.contains("out of range"), "{e}");
        let e = err(TWO_POINTS
            .replace("0x51", "0x50")
            .replace("ttyUSB1", "ttyUSB0"));
        assert!(e.contains("listed twice"), "{e}");
        let e = err(TWO_POINTS.replace("0x51", "0x71"));
        assert!(e.contains("0x71"), "{e}");
    }
}
