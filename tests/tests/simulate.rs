//! The network simulation over a few hundred small seeds (see `tests::sim`): each seed
//! is a network of HQ and sites with a random workload, link faults, damaged sticks and
//! crashes, healed and then checked. `cargo run -p tests --bin simulate` runs more.

use tests::sim::{self, Config};

/// Seeds in CI: small networks and short runs, so the whole set stays well under two
/// minutes in a debug build on 2 cores.
const SEEDS: u64 = 100;

#[test]
fn every_seed_converges_and_keeps_the_money_invariants() {
    let mut ops = 0;
    let mut faults = 0;
    for seed in 0..SEEDS {
        let config = Config {
            seed,
            nodes: 3 + (seed % 2) as usize,
            steps: 25,
            cards: 4,
        };
        match sim::run(config) {
            Ok(o) => {
                ops += o.tally.ops_total();
                faults += o.tally.faults_total();
            }
            Err(f) => panic!("{f}"),
        }
    }
    assert!(
        ops > SEEDS * 8,
        "the workload did too little: {ops} operations"
    );
    assert!(faults > SEEDS * 2, "too few faults were injected: {faults}");
}
