//! The consumer's step, the same for one stream (`consume`) and for many
//! (`many`): take the next chunk of a stream and verify it ([`take`]),
//! with a verifier for the consumer's settings ([`verifier`]).

use crate::clock::monotonic_ns;
use crate::consume_args::ConsumeArgs;
use crate::verify::Verifier;
use shmstream::{StreamBuffer, StreamError};
use std::time::Duration;

/// A verifier for one stream of these settings.
pub(crate) fn verifier(args: &ConsumeArgs) -> Verifier {
    let verifier = Verifier::new(&args.policy);
    match &args.sizes {
        Some(sizes) => verifier.with_sizes(sizes.clone(), args.seed),
        None => verifier,
    }
}

/// What [`take`] found.
pub(crate) enum Next {
    /// A chunk, verified.
    Chunk,
    /// The end of the stream (a final chunk was taken before, or a
    /// `continue` policy's first empty chunk after the end).
    End,
    /// No chunk ready yet (only when `now`).
    NotYet,
}

/// Takes the next chunk of `buffer` and verifies it: waiting for it
/// (the stream's timeout), or only when one is ready (`now`).
pub(crate) fn take(
    buffer: &mut StreamBuffer,
    verifier: &mut Verifier,
    first_pop_ns: &mut Option<u64>,
    now: bool,
) -> Result<Next, String> {
    let next = if now {
        buffer.next_chunk_timeout(Some(Duration::ZERO))
    } else {
        buffer.next_chunk()
    };
    let Some(chunk) = (match next {
        Err(StreamError::Timeout { .. }) if now => return Ok(Next::NotYet),
        other => other.map_err(|e| after(verifier, e))?,
    }) else {
        return Ok(Next::End);
    };
    let visible = monotonic_ns();
    first_pop_ns.get_or_insert(visible);
    verifier.check(&chunk, visible)?;
    // Under continue-after-done the stream offers empty chunks for
    // ever once everything was shown: the first one ends it here.
    let endless = chunk.is_empty() && !chunk.is_final();
    drop(chunk);
    if endless {
        if !buffer.consumer().is_all_in() {
            return Err("an empty chunk came before the stream was all in".into());
        }
        return Ok(Next::End);
    }
    Ok(Next::Chunk)
}

fn after(verifier: &Verifier, e: shmstream::StreamError) -> String {
    format!(
        "after {} items in {} chunks: {e}",
        verifier.items(),
        verifier.chunks
    )
}
