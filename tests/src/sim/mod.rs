//! Deterministic simulation of a whole cardmesh network in one process: HQ and sites
//! with real redb stores (on a RAM disk), one seeded RNG deciding everything, a
//! simulated clock, and links with no sockets (sync sessions driven frame by frame over
//! a line that can lose, double, reorder and cut; sticks as real folders). A run is a
//! random workload with faults, then healing, then the invariants. A failing seed is
//! reported with the command that replays it.
//!
//! - `clock`: the simulated time
//! - `world`: the network, built from the seed; node crash and restart
//! - `reader`: the card reader the customer can pull a card from
//! - `line`: the faulty link between two sync sessions
//! - `model`: what the simulation knows independently of the nodes
//! - `workload`: the operations and faults, step by step
//! - `check`: healing and the invariants

pub mod check;
pub mod clock;
pub mod line;
pub mod model;
pub mod reader;
pub mod workload;
pub mod world;

use model::Tally;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::panic::{self, AssertUnwindSafe};
use workload::Sim;
use world::World;

/// One run's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub seed: u64,
    /// HQ included.
    pub nodes: usize,
    pub steps: usize,
    pub cards: usize,
}

impl Config {
    /// The command that replays this run exactly.
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run -p tests --bin simulate -- --seed {} --nodes {} --steps {} --cards {}",
            self.seed, self.nodes, self.steps, self.cards
        )
    }
}

/// What a passing run did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub tally: Tally,
    pub acknowledged: usize,
    pub entries: u64,
}

/// A failing run: the seed, what broke, and how to replay it.
#[derive(Clone, Debug)]
pub struct Failure {
    pub config: Config,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} failed: {}\nreplay: {}",
            self.config.seed,
            self.message,
            self.config.replay_command()
        )
    }
}

/// Runs one seed: workload, healing, invariants.
pub fn run(config: Config) -> Result<Outcome, Failure> {
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let world = World::build(&mut rng, config.nodes);
        let mut sim = Sim::new(world, rng, config.cards);
        for _ in 0..config.steps {
            sim.step();
        }
        check::heal(&mut sim);
        check::blocked_cards_are_refused_everywhere(&mut sim);
        check::return_cards(&mut sim);
        check::heal(&mut sim);
        check::invariants(&sim);
        Outcome {
            acknowledged: sim.acks.len(),
            entries: sim
                .world
                .hq()
                .version_vector()
                .expect("version vector")
                .iter()
                .map(|(_, s)| *s)
                .sum(),
            tally: sim.tally,
        }
    }));
    result.map_err(|payload| Failure {
        config,
        message: payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic without a message".into()),
    })
}
