#![no_main]

// The harness holds every target; this one uses one of them.
#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::stick_segment(data));
