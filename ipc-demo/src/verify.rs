//! The consumer's checks of every chunk: its index, its start offset
//! (against a model of the policy), its context items, every item's id,
//! size (when the sizes are known) and bytes, and at the end the count of
//! items and of final chunks.

use crate::item::{parse_id, still, stored_checksum, verify};
use crate::sizes::SizeMix;
use hdrhistogram::Histogram;
use shmstream::policy::{ChunkPolicy, Policy};
use shmstream::StreamChunk;
use std::collections::VecDeque;

/// What a stream of chunks showed so far, checked chunk by chunk.
#[derive(Debug)]
pub struct Verifier {
    /// A copy of the consumer's policy, told the same advances: it predicts
    /// where each chunk starts.
    model: Policy,
    next_start: u64,
    /// End of the shown items, counting primed ones (what `context_items` is
    /// measured against).
    shown_until: u64,
    /// End of the items actually delivered: below it an item is not new.
    seen_until: u64,
    /// Stored checksums of the delivered items from position `sums_from`
    /// on: a later window that shows them again must still hold them.
    sums: VecDeque<u64>,
    sums_from: u64,
    /// The size of every item, when known, and its seed.
    sizes: Option<(SizeMix, u64)>,
    /// Chunks checked.
    pub chunks: u64,
    /// Chunks marked final.
    pub final_chunks: u64,
    /// Chunks without items.
    pub empty_chunks: u64,
    /// Items re-shown as context.
    pub context_items: u64,
    /// Windows read as one stacked view.
    pub stacked_windows: u64,
    /// Windows read item by item.
    pub unstacked_windows: u64,
    /// Bytes of distinct items.
    pub bytes: u64,
    /// Item bytes read in place to verify them.
    pub bytes_verified: u64,
    /// Commit-to-chunk latency of the distinct items that carry a stamp,
    /// ns: a histogram of fixed size ([`new_latency_histogram`]), so a
    /// consumer's memory does not grow with the stream.
    pub latencies: Histogram<u64>,
    /// The earliest commit stamp seen.
    pub first_commit_ns: Option<u64>,
}

/// The largest latency the histogram tells apart: an hour, in ns.
pub const MAX_LATENCY_NS: u64 = 3_600 * 1_000_000_000;

/// A latency histogram from 1 ns to [`MAX_LATENCY_NS`] with 3 significant
/// digits (0.1 %): its bucket array is allocated once, about 250 KiB, and
/// never resized.
pub fn new_latency_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid bounds");
    h.auto(false);
    h
}

impl Verifier {
    /// A verifier for a stream cut by `policy`.
    pub fn new(policy: &Policy) -> Self {
        Verifier {
            model: policy.clone(),
            next_start: 0,
            shown_until: policy.primed() as u64,
            seen_until: 0,
            sums: VecDeque::new(),
            sums_from: 0,
            sizes: None,
            chunks: 0,
            final_chunks: 0,
            empty_chunks: 0,
            context_items: 0,
            stacked_windows: 0,
            unstacked_windows: 0,
            bytes: 0,
            bytes_verified: 0,
            latencies: new_latency_histogram(),
            first_commit_ns: None,
        }
    }

    /// Also checks that item `seq` is `sizes.size(seq, seed)` bytes.
    #[must_use]
    pub fn with_sizes(mut self, sizes: SizeMix, seed: u64) -> Self {
        self.sizes = Some((sizes, seed));
        self
    }

    /// Keeps no latencies (a histogram of one bucket, a few bytes instead
    /// of about 250 KiB): for a worker of many streams, which reports none.
    #[must_use]
    pub fn without_latencies(mut self) -> Self {
        let mut h = Histogram::new_with_bounds(1, 2, 1).expect("valid bounds");
        h.auto(false);
        self.latencies = h;
        self
    }

    /// Checksums kept to re-check items shown again: at most a window's
    /// worth, whatever the length of the stream.
    pub fn retained(&self) -> usize {
        self.sums.len()
    }

    /// Distinct items delivered so far.
    pub fn items(&self) -> u64 {
        self.seen_until
    }

    /// Checks one chunk, popped when the clock read `visible_ns`.
    ///
    /// # Errors
    ///
    /// A sentence naming the chunk and what is wrong with it.
    pub fn check(&mut self, chunk: &StreamChunk<'_>, visible_ns: u64) -> Result<(), String> {
        let index = chunk.chunk_index();
        let start = chunk.start_offset();
        let len = chunk.len() as u64;
        let at = || format!("chunk {index} [{start}..{})", start + len);
        if self.final_chunks > 0 {
            return Err(format!("{} comes after the final chunk", at()));
        }
        if index != self.chunks {
            return Err(format!("{}: expected chunk index {}", at(), self.chunks));
        }
        if start != self.next_start {
            return Err(format!(
                "{}: the policy's stride puts it at offset {}",
                at(),
                self.next_start
            ));
        }
        let context = self.shown_until.saturating_sub(start).min(len);
        if chunk.context_items() as u64 != context {
            return Err(format!(
                "{}: {} context items, but {context} of its items were shown before",
                at(),
                chunk.context_items()
            ));
        }
        while self.sums_from < start && self.sums.pop_front().is_some() {
            self.sums_from += 1;
        }
        self.check_items(chunk, visible_ns)
            .map_err(|e| format!("{}: {e}", at()))?;
        // The model: a full window advances by the stride, anything else is
        // the flush at the end (every item shown, all passed).
        let advance = if len > 0 && len == self.model.window() as u64 {
            self.model.stride() as u64
        } else {
            len
        };
        self.model.register_chunk(advance as usize);
        self.next_start = start + advance;
        self.shown_until = self.shown_until.max(start + len);
        self.seen_until = self.seen_until.max(start + len);
        self.chunks += 1;
        self.context_items += context;
        self.final_chunks += chunk.is_final() as u64;
        self.empty_chunks += (len == 0) as u64;
        Ok(())
    }

    /// Every item: its size is its own (when the sizes are known). Every
    /// new item: its id names its position, its bytes are that item, intact
    /// (read whole, whatever its size); it gives a latency sample. Every
    /// item shown before: its bytes still hold it.
    fn check_items(&mut self, chunk: &StreamChunk<'_>, visible_ns: u64) -> Result<(), String> {
        let start = chunk.start_offset();
        let first_new = self.seen_until.saturating_sub(start) as usize;
        for (i, id) in chunk.ids().enumerate().skip(first_new) {
            let position = start + i as u64;
            if parse_id(id) != Some(position) {
                return Err(format!(
                    "item {position} has id {id:?}, expected \"s{position}\""
                ));
            }
        }
        let mut check = |i: usize, bytes: &[u8]| -> Result<(), String> {
            let position = start + i as u64;
            if let Some((mix, seed)) = &self.sizes {
                let expected = mix.size(position, *seed);
                if bytes.len() as u64 != expected {
                    return Err(format!(
                        "item {position} is {} bytes, expected {expected}",
                        bytes.len()
                    ));
                }
            }
            if position < self.seen_until {
                self.bytes_verified += bytes.len().min(16) as u64;
                let seen = self.sums.get((position - self.sums_from) as usize).copied();
                return still(bytes, position, seen.unwrap_or(0));
            }
            self.bytes_verified += bytes.len() as u64;
            let stamp = verify(bytes, position)?;
            self.sums.push_back(stored_checksum(bytes));
            self.bytes += bytes.len() as u64;
            if let Some(ts) = stamp {
                // Past an hour it counts as an hour: the histogram never grows.
                self.latencies
                    .saturating_record(visible_ns.saturating_sub(ts));
                self.first_commit_ns = Some(self.first_commit_ns.map_or(ts, |f| f.min(ts)));
            }
            Ok(())
        };
        if let Some(view) = chunk.stacked() {
            // The window as one tensor [n, *shape], in place.
            for i in 0..view.len() {
                check(i, view.item(i).expect("i < len"))?;
            }
            self.stacked_windows += 1;
        } else if !chunk.is_empty() {
            for (i, item) in chunk.items().enumerate() {
                check(i, item.bytes())?;
            }
            self.unstacked_windows += 1;
        }
        Ok(())
    }

    /// The end: exactly one final chunk (none under continue-after-done),
    /// and `expected` items when given.
    ///
    /// # Errors
    ///
    /// A sentence saying what is missing.
    pub fn finish(&self, continue_after_done: bool) -> Result<(), String> {
        let want = if continue_after_done { 0 } else { 1 };
        if self.final_chunks != want {
            return Err(format!(
                "{} final chunks, expected {want}",
                self.final_chunks
            ));
        }
        Ok(())
    }
}
