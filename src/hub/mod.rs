//! Layer 8 of 8, **hub**: many streams and one wake-up per consumer
//! worker: [`Hub`](producer::Hub), a producer's attachment that creates
//! announced streams, and [`StreamSet`](stream_set::StreamSet), the
//! worker's set with `wait_any`. Built from the handles, `os` and
//! `protocol`; nothing in the crate below uses it.

mod adopt;
pub(crate) mod bell_wait;
mod member;
pub(crate) mod producer;
mod ring_wait;
pub(crate) mod stream_set;
mod watch;
