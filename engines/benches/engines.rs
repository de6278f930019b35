//! Benchmarks of the engine backends (written in a later step).

fn main() {}
