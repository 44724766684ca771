//! Nothing here: the benches are under `benches/`.
