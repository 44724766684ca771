//! What a stream set keeps of each stream and each producer process: its
//! members (an adopted stream's buffer and liveness), announcements not
//! adopted yet, the producers it watches, the names it released.

use crate::buffer::StreamBuffer;
use crate::config::StreamId;
use crate::hub::producer::LocalStreams;
use crate::policy::ChunkPolicy;
use crate::protocol::hub_layout::ProducerId;
use crate::protocol::layout::FLAG_PRODUCER_GONE;
use std::sync::Arc;

/// Names of removed streams kept per live producer process, to remove if
/// it is killed holding them (at about 100 bytes a name, 100 KiB per
/// producer at most).
pub(crate) const MAX_RELEASED: usize = 1024;

/// Where the set's streams come from.
pub(crate) enum Origin {
    /// A hub segment: streams are opened by their announced identity.
    #[cfg_attr(loom, allow(dead_code))]
    Shared { worker: String, prefix: String },
    /// An in-process hub: the consumer halves wait in this table.
    Local(Arc<LocalStreams>),
}

/// An announced stream not adopted yet.
#[derive(Debug)]
pub(crate) struct Announcement {
    pub(crate) entry: u32,
    pub(crate) gen: u32,
    pub(crate) by: ProducerId,
    pub(crate) id: StreamId,
    /// The segment prefix (shared hubs only).
    pub(crate) prefix: String,
}

pub(crate) struct Member<E> {
    pub(crate) gen: u32,
    pub(crate) by: ProducerId,
    pub(crate) buffer: StreamBuffer<E>,
    /// The producer process was found dead (its slot's lock is free).
    pub(crate) producer_dead: bool,
    /// Its departure (or an error) was reported once already.
    pub(crate) reported_end: bool,
    /// The `wait_any` round that last put it in the result.
    pub(crate) round: u64,
    /// The segment prefix (shared hubs only), to name the segment when
    /// its producer died.
    pub(crate) prefix: String,
}

impl<E> Member<E> {
    /// Whether to report the stream: a chunk is ready, or it failed, or
    /// its producer is gone (the last two once). A quiet stream (only the
    /// same empty chunk left, one taken) has nothing new: it is not
    /// reported again, or a continue-after-done stream would keep
    /// `wait_any` returning at once for ever.
    pub(crate) fn is_ready(&mut self) -> bool {
        if self.buffer.is_finished() || self.buffer.is_quiet() {
            return false;
        }
        let news = match self.buffer.has_chunk_ready() {
            Ok(true) => return true,
            Err(_) => true,
            Ok(false) => {
                self.producer_dead
                    || self.buffer.consumer().ring.mem().flags() & FLAG_PRODUCER_GONE != 0
            }
        };
        if news && !self.reported_end {
            self.reported_end = true;
            return true;
        }
        false
    }
}

/// Remembers `name`, a removed stream's segment its live producer still
/// holds. At the bound, names gone since (their producer dropped them) are
/// forgotten, then the oldest, down to half the bound: so a prune (one
/// `shm_open` per name) comes at most once per `MAX_RELEASED / 2` pushes.
/// A producer killed holding a forgotten name leaves it to `ipc-demo
/// clean`.
pub(crate) fn keep_released(released: &mut Vec<String>, name: String) {
    if released.len() >= MAX_RELEASED {
        #[cfg(not(loom))]
        released.retain(|n| crate::os::reclaim::exists(n));
        if released.len() > MAX_RELEASED / 2 {
            let extra = released.len() - MAX_RELEASED / 2;
            released.drain(..extra);
        }
    }
    released.push(name);
}

/// A producer process the set watches, with the entries of its streams.
#[derive(Debug)]
pub(crate) struct Watched {
    pub(crate) id: ProducerId,
    pub(crate) entries: Vec<u32>,
    /// Segments of streams removed from the set while this producer was
    /// alive and still held them: a producer killed later leaves them
    /// behind, and the set removes them when it finds it dead. At most
    /// `MAX_RELEASED` (then pruned of names already gone, then the oldest
    /// are forgotten).
    pub(crate) released: Vec<String>,
    pub(crate) dead: bool,
    /// The death watch thread polls its pidfd: no need to slice the sleep
    /// for it.
    pub(crate) by_pidfd: bool,
}

/// A boxed policy as a policy.
#[derive(Debug)]
pub(crate) struct Boxed(pub(crate) Box<dyn ChunkPolicy>);

impl ChunkPolicy for Boxed {
    fn is_ready(&self, available: usize) -> bool {
        self.0.is_ready(available)
    }
    fn window(&self) -> usize {
        self.0.window()
    }
    fn stride(&self) -> usize {
        self.0.stride()
    }
    fn register_chunk(&mut self, advanced: usize) {
        self.0.register_chunk(advanced)
    }
    fn continue_after_done(&self) -> bool {
        self.0.continue_after_done()
    }
    fn primed(&self) -> usize {
        self.0.primed()
    }
    fn max_window(&self) -> usize {
        self.0.max_window()
    }
}
