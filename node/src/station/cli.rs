//! `cardmesh station check`: for installers and scripts, the `[station]` section of
//! config.toml checked and every device on it asked, without running the node (which
//! holds the ports while it runs).

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use cardmesh_drivers::dispenser::Dispenser;
use cardmesh_drivers::dispenser::driver::DartDispenser;
use cardmesh_drivers::printer::SerialPrinter;
use clap::{Args, Subcommand};

use super::config;

#[derive(Args)]
pub struct StationArgs {
    #[arg(long, default_value = "cardmesh-data", global = true)]
    data: PathBuf,
    #[command(subcommand)]
    command: StationCommand,
}

#[derive(Subcommand)]
pub enum StationCommand {
    /// Check the station config and ask each pump its state: one line per fuelling
    /// point and one for the printer; fails if a device does not answer. Run it with
    /// the node stopped.
    Check,
}

pub fn run(args: StationArgs) -> Result<()> {
    match args.command {
        StationCommand::Check => check(&args.data),
    }
}

fn check(data: &Path) -> Result<()> {
    let config = config::load(data)?.ok_or_else(|| {
        anyhow!(
            "{} has no [station] section: this node runs no fuel station",
            data.join(crate::config::FILE).display()
        )
    })?;
    let mut failed = 0;
    for (i, p) in config.devices.points.iter().enumerate() {
        let nozzles: Vec<String> = p
            .nozzles
            .iter()
            .map(|n| format!("{}={}", n.nozzle.get(), n.grade))
            .collect();
        let reader = config.readers.get(i).map_or_else(
            || "no reader configured".into(),
            |r| format!("reader {r:?}"),
        );
        let state = match DartDispenser::open(p).and_then(|mut d| d.status()) {
            Ok(s) => s.to_string(),
            Err(e) => {
                failed += 1;
                format!("NOT ANSWERING: {e}")
            }
        };
        println!(
            "point {}: terminal {}, {} at {} baud, address {:#04x}, nozzles {}, {reader}: {state}",
            i + 1,
            config.terminals[i],
            p.port,
            p.baud,
            p.address,
            nozzles.join(" ")
        );
    }
    if let Some(pr) = &config.devices.printer {
        let state = match SerialPrinter::open(pr) {
            Ok(_) => "port open".to_string(),
            Err(e) => {
                failed += 1;
                format!("NOT AVAILABLE: {e}")
            }
        };
        println!(
            "printer: {} at {} baud, {} columns: {state}",
            pr.port, pr.baud, pr.width
        );
    }
    println!("most one fill may cost: {}", config.max_fill);
    if failed > 0 {
        bail!("{failed} station device(s) did not answer: check cables, power and config.toml");
    }
    Ok(())
}
