//! Layer 6 of 8, **os**: the protocol's memory in POSIX shared memory on
//! Linux: stream segments (create, open, map twice, reclaim), the hub's
//! segment and its death watch, liveness locks, and segments across
//! `fork`. Uses `protocol`, `config`, `sync` and `error`; never the
//! handles above.

#[cfg(not(miri))]
pub(crate) mod death_watch;
pub(crate) mod fork;
pub(crate) mod header;
pub(crate) mod hub_segment;
pub(crate) mod inspect;
pub(crate) mod lock;
pub(crate) mod mapping;
pub(crate) mod reclaim;
pub(crate) mod segment;
pub(crate) mod shm;
