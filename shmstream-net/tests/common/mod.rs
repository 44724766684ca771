//! Helpers shared by the network tests.

pub mod hostile;
