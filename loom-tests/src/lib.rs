//! loom model checks of the shmstream ring live in `tests/`; build them with `RUSTFLAGS="--cfg loom"`.
