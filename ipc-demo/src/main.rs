//! Placeholder until the ipc-demo binaries land.
fn main() {}
