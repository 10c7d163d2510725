//! Runs the network simulation over many seeds (or replays one) and prints what was
//! done; exits non-zero at the first failing seed, after printing how to replay it.

use clap::Parser;
use std::process::ExitCode;
use tests::sim::{self, Config, Outcome};

/// Deterministic simulation of a cardmesh network: random workload, link faults,
/// damaged sticks, crashes; then every link heals and the invariants are checked.
#[derive(Parser)]
struct Args {
    /// How many seeds to run, starting at --first-seed.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Replay exactly this seed (overrides --seeds).
    #[arg(long)]
    seed: Option<u64>,
    /// Nodes per network, HQ included.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Workload steps per seed.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Cards issued per seed, at most.
    #[arg(long, default_value_t = 8)]
    cards: usize,
    /// Run every seed and list all failures instead of stopping at the first.
    #[arg(long)]
    keep_going: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // RUST_LOG=tests=debug traces every card operation of a replayed seed.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    if args.nodes < 2 {
        eprintln!("--nodes must be at least 2 (HQ and one site)");
        return ExitCode::FAILURE;
    }
    let seeds = match args.seed {
        Some(s) => s..s + 1,
        None => args.first_seed..args.first_seed + args.seeds,
    };
    // A failing seed reports its own panic message; the default hook would print it
    // twice and out of order with the summary.
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::time::Instant::now();
    let mut total = Outcome::default();
    let mut runs = 0u64;
    let mut failed = 0u64;
    for seed in seeds {
        let config = Config {
            seed,
            nodes: args.nodes,
            steps: args.steps,
            cards: args.cards,
        };
        match sim::run(config) {
            Ok(o) => {
                total.tally.add(&o.tally);
                total.acknowledged += o.acknowledged;
                total.entries += o.entries;
                runs += 1;
            }
            Err(f) => {
                eprintln!("{f}");
                failed += 1;
                if !args.keep_going {
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if failed > 0 {
        println!("{failed} seeds failed");
    }
    println!(
        "{runs} seeds passed ({} nodes, {} steps each) in {:.1} s",
        args.nodes,
        args.steps,
        started.elapsed().as_secs_f64()
    );
    println!(
        "{} operations, {} faults, {} acknowledged transactions, {} entries replicated",
        total.tally.ops_total(),
        total.tally.faults_total(),
        total.acknowledged,
        total.entries
    );
    for (k, v) in &total.tally.ops {
        println!("  op     {k:<40} {v}");
    }
    for (k, v) in &total.tally.faults {
        println!("  fault  {k:<40} {v}");
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
