//! gRPC transport benchmarks (filled in later).

fn main() {}
