//! The modules of `shmstream-net` form no circle (issue 22): the check of
//! `ipc-demo/tests/layering.rs`, run on this crate's `src`.

#[path = "../../ipc-demo/tests/layering.rs"]
mod layering;
