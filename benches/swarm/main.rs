//! Placeholder until the benchmark driver lands.
fn main() {}
