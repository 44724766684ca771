//! A small safe layer over the UCP calls of [`ucx_sys`]: a context, one
//! worker per side, a listener or a client endpoint, registered memory,
//! active messages and their requests.
//!
//! Everything runs on one thread. UCX calls back only from inside
//! [`Worker::progress`]; every callback here just pushes an [`Event`] onto
//! the worker's queue ([`Worker::take_events`]), so no callback touches the
//! stream and no callback can re-enter the caller.

mod context;
mod endpoint;
mod event;
mod listener;
mod status;
mod worker;

pub use context::*;
pub use endpoint::*;
pub use event::*;
pub use listener::*;
pub use worker::*;
