//! Store benchmarks (placeholder until written).
fn main() {}
