//! In-process entry points for the fuzz targets (`fuzz/`) and for the test
//! that replays their corpora (`tests/fuzz_corpus.rs`): every input surface
//! a person or a peer hands the tools, run on arbitrary bytes.
//!
//! Each entry point takes raw bytes. Input that starts with [`TEXT`] is
//! read as text after it (the readable seeds: a trace, a policy name, a
//! JSON configuration); any other input is decoded with `arbitrary` into a
//! structured value (events with dtypes, shapes and data; policy kinds with
//! keys and values; names and sizes), which is then written out as the
//! text the tools read. Either way the text goes through the tools' own
//! code, and each entry point panics when an invariant breaks:
//!
//! - [`replay_trace`]: the trace interpreter of `ipc-demo replay` on an
//!   in-process stream. Any trace ends in `Ok` or an error naming its line
//!   (never a panic or an allocation past the stated limits); the printed
//!   chunks are consistent (indices 0, 1, 2..., offsets that never go
//!   back, context within the window, one list of values per item,
//!   nothing after the final chunk).
//! - [`policy_name`]: `Policy::from_str`. A parsed policy prints as a name
//!   that parses back to the same policy and prints the same; its windows
//!   stay within `max_window` as it advances; a stream cut by it ends.
//! - [`stream_config`]: `StreamConfig` names and sizes (item capacity,
//!   default item size, payload size or its default). `segment_name`
//!   accepts exactly the documented configurations and gives a valid POSIX
//!   name; an accepted small configuration makes a working in-process
//!   stream of exactly that size, through which an item of the default
//!   size and then one filling the whole payload pass. Also the tools' own
//!   `--shape`, `--sizes` (size suffixes, cycles, random ranges) and
//!   seconds parsers.
//! - [`wire_header`]: the offer header decoder of `--source ucx`
//!   ([`shmstream_net::wire::parse`]). A decoded offer is within the
//!   limits and encodes back to the same bytes; a refusal names a field.
//!
//! Only in builds with the `fuzzing` feature (fuzz/ and this crate's
//! tests enable it): the tools themselves carry none of it. One file per
//! target.

mod config;
mod policy;
mod replay;
mod wire;

pub use config::{stream_config, ConfigInput};
pub use policy::{policy_name, PolicyInput};
pub use replay::{replay_trace, TraceInput};
pub use wire::{wire_frame, wire_header};

/// The marker of a text input.
pub const TEXT: &[u8] = b"#text\n";

/// The text after [`TEXT`], or `None` for a structured input.
fn text(data: &[u8]) -> Option<&[u8]> {
    data.strip_prefix(TEXT)
}
