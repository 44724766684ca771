//! `StreamSet`: one consumer worker, many streams, one wait. The worker's
//! hub tells it which streams were announced and which have news; it
//! sleeps on one futex for all of them.

use crate::buffer::StreamBuffer;
use crate::config::{StreamConfig, StreamId};
use crate::error::SetupError;
use crate::hub::member::{keep_released, Announcement, Member, Origin, Watched};
use crate::hub::producer::Hub;
use crate::policy::{ChunkPolicy, Policy};
use crate::protocol::hub::{Bitmap, HubMem};
use crate::sync::doorbell::Woke;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the set looks at the liveness of a producer process it cannot
/// watch through a pidfd (one lock test per producer process, not per
/// stream): such a producer killed without a word is reported within about
/// this long. Producers with a pidfd are looked at when it fires.
pub const WATCH_SLICE: Duration = Duration::from_millis(50);

/// Errors of adoption kept at most (the oldest go first).
pub(crate) const MAX_ADOPT_ERRORS: usize = 64;

/// A stream of a [`StreamSet`]: its hub entry and that entry's generation,
/// so a key never names a later stream that reuses the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub(crate) entry: u32,
    pub(crate) gen: u32,
}

impl StreamKey {
    /// The hub entry the stream occupies.
    pub fn entry(&self) -> u32 {
        self.entry
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream {}.{}", self.entry, self.gen)
    }
}

/// Decides the policy of each announced stream: `None` leaves the stream
/// announced but not adopted (for [`StreamSet::add`] later).
pub type Adopter = Box<dyn FnMut(&StreamId) -> Option<Box<dyn ChunkPolicy>> + Send>;

/// The consumer worker's set of streams: adopts the streams producers
/// announce in its hub, and waits for all of them at once.
///
/// [`wait_any`](StreamSet::wait_any) sleeps on one futex and returns the
/// streams that have a chunk ready, failed, or lost their producer: it
/// visits only the hub's bitmap words that changed and the streams they
/// name (O(words + ready)), starting each time one word further, and
/// re-checks the streams it returned last time (a stream with several
/// chunks ready stays ready without a new commit). The result is ordered
/// round-robin by entry, from the one after the entry that came first last
/// time, so serving only the first key of each call starves no stream.
/// Each stream is a [`StreamBuffer`] with its own policy
/// ([`get_mut`](StreamSet::get_mut)).
///
/// An idle set sleeps once on its futex for the whole timeout. A thread
/// of the set polls a pidfd per producer process and wakes it when one
/// ends (the set then tests that producer's lock and reports its streams).
/// Producers it cannot watch so (no pidfd: an old kernel, another pid
/// namespace; in-process hubs) make the sleep go in slices of
/// [`WATCH_SLICE`], with one lock test per producer process between them.
///
/// When a stream whose producer was killed is removed (or the set
/// dropped), its segment is removed too, if its producer lock is free and
/// this process was its consumer.
pub struct StreamSet<E = ()> {
    pub(crate) hub: Arc<HubMem>,
    pub(crate) origin: Origin,
    /// By hub entry.
    pub(crate) members: Vec<Option<Member<E>>>,
    pub(crate) len: usize,
    pub(crate) pending: Vec<Announcement>,
    pub(crate) adopter: Option<Adopter>,
    /// The timeout of adopted streams' `next_chunk`.
    pub(crate) timeout: Option<Duration>,
    /// Keys returned by the last `wait_any`, looked at again first.
    pub(crate) carry: Vec<StreamKey>,
    pub(crate) round: u64,
    /// The entry from which `take_turns` orders the next result.
    first: u32,
    start_word: usize,
    pub(crate) watched: Vec<Watched>,
    /// The thread that polls the producers' pidfds (shared hubs, started
    /// with the first stream; `None` until then, or when it could not
    /// start: then the set slices its sleeps for every producer).
    #[cfg(not(any(loom, miri)))]
    pub(crate) death_watch: Option<crate::os::death_watch::DeathWatch>,
    /// Whether starting `death_watch` was tried already.
    #[cfg(not(any(loom, miri)))]
    pub(crate) death_watch_tried: bool,
    /// Scratch for the attachments the death watch saw end.
    #[cfg(not(any(loom, miri)))]
    pub(crate) ended: Vec<crate::protocol::hub_layout::ProducerId>,
    pub(crate) last_watch: Instant,
    pub(crate) adopt_errors: Vec<(StreamId, SetupError)>,
    pub(crate) scratch: Vec<u32>,
    /// `wait_any` returns when its sleep is interrupted by a signal
    /// handler ([`with_return_on_signal`](StreamSet::with_return_on_signal)).
    return_on_signal: bool,
    /// Set by a [`waker`](StreamSet::waker): the current or next
    /// `wait_any` returns early.
    pub(crate) woken: Arc<AtomicBool>,
}

impl<E> fmt::Debug for StreamSet<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSet")
            .field("hub", &self.hub.name())
            .field("streams", &self.len)
            .field("pending", &self.pending.len())
            .field("producers", &self.watched.len())
            .finish()
    }
}

impl<E> StreamSet<E> {
    fn new(hub: HubMem, origin: Origin) -> Self {
        let entries = hub.entries() as usize;
        StreamSet {
            hub: Arc::new(hub),
            origin,
            members: (0..entries).map(|_| None).collect(),
            len: 0,
            pending: Vec::new(),
            adopter: None,
            timeout: StreamConfig::new(StreamId {
                request_id: "r".into(),
                edge_name: "e".into(),
                from_partition: "p".into(),
            })
            .timeout(),
            carry: Vec::new(),
            round: 0,
            first: 0,
            start_word: 0,
            watched: Vec::new(),
            #[cfg(not(any(loom, miri)))]
            death_watch: None,
            #[cfg(not(any(loom, miri)))]
            death_watch_tried: false,
            #[cfg(not(any(loom, miri)))]
            ended: Vec::new(),
            last_watch: Instant::now(),
            adopt_errors: Vec::new(),
            scratch: Vec::new(),
            return_on_signal: false,
            woken: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Creates the hub of `worker` under `prefix` (see
    /// [`hub_name`](crate::hub_name); mode 0600, reclaiming the hub of a
    /// worker that died) with room for
    /// [`DEFAULT_HUB_ENTRIES`](crate::DEFAULT_HUB_ENTRIES) streams. The hub
    /// is removed when the set is dropped.
    ///
    /// # Errors
    ///
    /// [`SetupError::InvalidName`], [`SetupError::AlreadyExists`] when a
    /// live worker owns the name, [`SetupError::NoSpace`], OS errors.
    #[cfg(not(loom))]
    pub fn create(worker: &str, prefix: &str) -> Result<Self, SetupError> {
        Self::create_with_entries(
            worker,
            prefix,
            crate::protocol::hub_layout::DEFAULT_HUB_ENTRIES,
        )
    }

    /// As [`create`](Self::create), with room for `entries` streams (a
    /// multiple of 64, from [`MIN_HUB_ENTRIES`](crate::MIN_HUB_ENTRIES) to
    /// [`MAX_HUB_ENTRIES`](crate::MAX_HUB_ENTRIES)).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create), and [`SetupError::InvalidConfig`] for
    /// `entries` out of range.
    #[cfg(not(loom))]
    pub fn create_with_entries(
        worker: &str,
        prefix: &str,
        entries: u32,
    ) -> Result<Self, SetupError> {
        let hub = crate::os::hub_segment::create(worker, prefix, entries)?;
        Ok(Self::new(
            hub,
            Origin::Shared {
                worker: worker.to_string(),
                prefix: prefix.to_string(),
            },
        ))
    }

    /// A set whose hub lives in this process (streams from other threads,
    /// through [`hub`](Self::hub)); what loom and Miri run.
    ///
    /// # Errors
    ///
    /// [`SetupError::InvalidConfig`] for `entries` out of range.
    pub fn in_process(entries: u32) -> Result<Self, SetupError> {
        let hub =
            crate::protocol::hub_heap::heap_hub(entries).map_err(SetupError::InvalidConfig)?;
        Ok(Self::new(hub, Origin::Local(Arc::default())))
    }

    /// Adopts every announced stream with a copy of `policy`.
    #[must_use]
    pub fn with_default_policy(self, policy: Policy) -> Self {
        self.with_adopter(Box::new(move |_| Some(Box::new(policy.clone()))))
    }

    /// Adopts announced streams as `adopter` decides (`None`: leave it to
    /// [`add`](Self::add)).
    #[must_use]
    pub fn with_adopter(mut self, adopter: Adopter) -> Self {
        self.adopter = Some(adopter);
        self
    }

    /// The timeout of adopted streams' [`StreamBuffer::next_chunk`]
    /// (default: [`StreamConfig`]'s).
    #[must_use]
    pub fn with_stream_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether the set may start a thread that watches its producer
    /// processes through pidfds (default: true). Without it, an idle set
    /// sleeps in slices of [`WATCH_SLICE`] and tests each producer's lock
    /// between them (what it does anyway where pidfds are not available).
    /// Call it before the first stream is adopted.
    #[must_use]
    pub fn with_death_watch(mut self, on: bool) -> Self {
        #[cfg(not(any(loom, miri)))]
        {
            self.death_watch_tried = !on;
        }
        #[cfg(any(loom, miri))]
        let _ = on;
        self
    }

    /// Whether [`wait_any`](Self::wait_any) returns early, with whatever
    /// is ready (maybe nothing), when a signal handler interrupted its
    /// sleep, as `epoll_wait` does with `EINTR` (default: false, it sleeps
    /// on to its timeout).
    ///
    /// For a caller that must act on signals while it waits: CPython
    /// installs its handlers without `SA_RESTART`, so a SIGINT handled in
    /// the waiting thread ends the futex wait, and the caller can look at
    /// its signal flags and wait again with the time left. A signal the
    /// handler ran for just before the futex call began does not end it
    /// (nothing can tell the two apart without the handler's help): such a
    /// caller should bound its sleep. Only signals delivered to the waiting
    /// thread count; the set's own death-watch thread blocks every signal,
    /// so a process-directed one never goes there.
    #[must_use]
    pub fn with_return_on_signal(mut self, on: bool) -> Self {
        self.return_on_signal = on;
        self
    }

    /// A handle that makes the set's current [`wait_any`](Self::wait_any)
    /// (from another thread), or else its next one, return early with
    /// whatever is ready (maybe nothing): the set's flag is raised and its
    /// hub's bell rung (one futex wake). A binding uses it when another
    /// thread needs the set the waiter holds (a lease handed back, a
    /// look at a stream). Cheap to clone; it does not keep the hub (once
    /// the set is gone it does nothing).
    pub fn waker(&self) -> impl Fn() + Clone + Send + Sync + 'static {
        let hub = Arc::downgrade(&self.hub);
        let woken = self.woken.clone();
        move || {
            // Release, then the bell's Release bump: a waiter whose read of
            // the bell's word sees the bump (Acquire) sees the flag on its
            // re-check; one that read it before sleeps on a stale word, and
            // the futex refuses or the wake ends it.
            woken.store(true, std::sync::atomic::Ordering::Release);
            if let Some(hub) = hub.upgrade() {
                hub.bell().wake();
            }
        }
    }

    /// The hub's name.
    pub fn name(&self) -> &str {
        self.hub.name()
    }

    /// A producer attachment to this set's hub, for streams made in this
    /// process (an in-process set's only way in).
    ///
    /// # Errors
    ///
    /// [`SetupError::TooManyProducers`], and as [`Hub::attach`].
    pub fn hub(&self) -> Result<Hub, SetupError> {
        match &self.origin {
            Origin::Local(local) => Hub::from_mem(self.hub.clone(), Some(local.clone())),
            #[cfg(not(loom))]
            Origin::Shared { worker, prefix } => Hub::attach(worker, prefix),
            #[cfg(loom)]
            Origin::Shared { .. } => unreachable!("under loom every hub is in-process"),
        }
    }

    /// Streams in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set holds no stream.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The keys of every stream in the set (O(entries)).
    pub fn keys(&self) -> Vec<StreamKey> {
        self.members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                m.as_ref().map(|m| StreamKey {
                    entry: i as u32,
                    gen: m.gen,
                })
            })
            .collect()
    }

    fn member(&self, key: StreamKey) -> Option<&Member<E>> {
        self.members
            .get(key.entry as usize)?
            .as_ref()
            .filter(|m| m.gen == key.gen)
    }

    fn member_mut(&mut self, key: StreamKey) -> Option<&mut Member<E>> {
        self.members
            .get_mut(key.entry as usize)?
            .as_mut()
            .filter(|m| m.gen == key.gen)
    }

    /// The stream of `key`.
    pub fn get(&self, key: StreamKey) -> Option<&StreamBuffer<E>> {
        self.member(key).map(|m| &m.buffer)
    }

    /// The stream of `key`, to pop its chunks.
    pub fn get_mut(&mut self, key: StreamKey) -> Option<&mut StreamBuffer<E>> {
        self.member_mut(key).map(|m| &mut m.buffer)
    }

    /// The key of the stream of `id`, if the set holds it (O(entries)).
    pub fn find(&self, id: &StreamId) -> Option<StreamKey> {
        self.keys()
            .into_iter()
            .find(|&k| self.get(k).is_some_and(|b| b.id() == id))
    }

    /// Identities announced in the hub and not adopted (looks at the hub's
    /// announcements first).
    pub fn announced(&mut self) -> Vec<StreamId> {
        self.take_announcements(None);
        self.pending.iter().map(|a| a.id.clone()).collect()
    }

    /// What went wrong adopting announced streams since the last call (at
    /// most the last 64): the stream was announced but could not be opened
    /// (its producer died and its segment went, say).
    pub fn take_adopt_errors(&mut self) -> Vec<(StreamId, SetupError)> {
        std::mem::take(&mut self.adopt_errors)
    }

    /// Adopts the announced stream of `config`'s identity (and prefix)
    /// with `policy`.
    ///
    /// # Errors
    ///
    /// [`SetupError::NotAnnounced`] when no producer announced it (yet),
    /// [`SetupError::WindowExceedsCapacity`], and as
    /// [`StreamBuffer::open`].
    pub fn add(
        &mut self,
        config: &StreamConfig,
        policy: impl ChunkPolicy + 'static,
    ) -> Result<StreamKey, SetupError> {
        self.take_announcements(None);
        let is_local = matches!(self.origin, Origin::Local(_));
        let at = self
            .pending
            .iter()
            .position(|a| a.id == config.id && (is_local || a.prefix == config.prefix()))
            .ok_or_else(|| SetupError::NotAnnounced {
                name: config
                    .segment_name()
                    .unwrap_or_else(|_| config.id.to_string()),
            })?;
        // A policy the stream cannot hold is refused before anything is
        // taken or opened: the announcement stays for a retry. (A stream
        // whose capacity cannot be read is gone: the open below fails and
        // gives its entry back.)
        let window = policy.max_window();
        if let Ok(capacity) = self.capacity_of(&self.pending[at]) {
            if window as u64 > capacity {
                return Err(SetupError::WindowExceedsCapacity { window, capacity });
            }
        }
        let a = self.pending.swap_remove(at);
        self.open_member(a, Box::new(policy))
    }

    /// Removes the stream of `key` from the set and gives its hub entry
    /// back; returns its buffer (dropping it detaches the consumer).
    pub fn remove(&mut self, key: StreamKey) -> Option<StreamBuffer<E>> {
        self.member(key)?;
        let m = self.members[key.entry as usize].take()?;
        self.len -= 1;
        self.hub.retire(key.entry, m.gen, m.by);
        let held = self.remove_if_killed(&m);
        if let Some(at) = self.watched.iter().position(|w| w.id == m.by) {
            let w = &mut self.watched[at];
            w.entries.retain(|&e| e != key.entry);
            if let Some(name) = held {
                keep_released(&mut w.released, name);
            }
            if w.entries.is_empty() && w.released.is_empty() {
                self.unwatch(at);
            }
        }
        Some(m.buffer)
    }

    /// Waits until at least one stream has news and returns those that
    /// do: a chunk ready, an error to report, or a producer gone (the last
    /// two once per stream). Adopts announced streams on the way. Returns
    /// an empty vector when `timeout` passed (`None`: wait for ever).
    ///
    /// For each key, `get_mut(key).next_chunk_timeout(Some(Duration::ZERO))`
    /// gives the chunk, `None` at the end, or the error
    /// ([`StreamError::ProducerGone`](crate::StreamError::ProducerGone), ...).
    ///
    /// It also returns early (empty unless something is ready) after a
    /// [`waker`](Self::waker) call and, with
    /// [`with_return_on_signal`](Self::with_return_on_signal), when a
    /// signal handler interrupted its sleep.
    pub fn wait_any(&mut self, timeout: Option<Duration>) -> Vec<StreamKey> {
        let mut ready = Vec::new();
        self.wait_any_into(timeout, &mut ready);
        ready
    }

    /// As [`wait_any`](Self::wait_any), into `ready` (cleared first), so
    /// a loop allocates nothing.
    pub fn wait_any_into(&mut self, timeout: Option<Duration>, ready: &mut Vec<StreamKey>) {
        ready.clear();
        let start = Instant::now();
        // The sleep was interrupted by a signal handler, and the set
        // returns on signals: one more look, then return.
        let mut last_look = false;
        loop {
            self.collect(ready);
            if !ready.is_empty()
                || last_look
                || self.woken.swap(false, std::sync::atomic::Ordering::Acquire)
            {
                break;
            }
            let left = match timeout {
                Some(t) => match t.checked_sub(start.elapsed()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => break,
                },
                None => None,
            };
            // Slices only while there is a producer to watch; under loom
            // no timeouts at all (a lost wake-up must show as a deadlock).
            let slice = if cfg!(loom) {
                None
            } else if self.sliced() {
                Some(left.map_or(WATCH_SLICE, |l| l.min(WATCH_SLICE)))
            } else {
                left
            };
            let hub = &self.hub;
            let woken = &self.woken;
            let fired = || {
                #[cfg(not(any(loom, miri)))]
                return self.death_watch.as_ref().is_some_and(|w| w.fired());
                #[cfg(any(loom, miri))]
                return false;
            };
            let (_, woke) = hub.bell().sleep_reporting(slice, || {
                (hub.any_pending() || fired() || woken.load(std::sync::atomic::Ordering::Acquire))
                    .then_some(())
            });
            last_look = woke == Woke::Interrupted && self.return_on_signal;
        }
        self.take_turns(ready);
        self.carry.clear();
        self.carry.extend_from_slice(ready);
    }

    /// Orders `ready` round-robin by entry: from the entry after the one
    /// that came first last time, wrapping. A caller that serves only the
    /// first stream of each call serves every stream that stays ready
    /// within as many calls as there are ready streams (streams carried
    /// over from the last call, looked at first, would otherwise come
    /// first again and again). O(k log k) for k ready streams.
    pub(crate) fn take_turns(&mut self, ready: &mut [StreamKey]) {
        let n = self.hub.entries();
        let first = self.first;
        ready.sort_unstable_by_key(|k| (k.entry + n - first) % n);
        if let Some(k) = ready.first() {
            self.first = (k.entry + 1) % n;
        }
    }

    /// One look at everything: announcements, the streams returned last
    /// time, the ready bits, and (every `WATCH_SLICE`) the producers.
    pub(crate) fn collect(&mut self, ready: &mut Vec<StreamKey>) {
        self.round += 1;
        self.take_announcements(Some(ready));
        for k in 0..self.carry.len() {
            let key = self.carry[k];
            if self.member(key).is_some() {
                self.check(key.entry, ready);
            }
        }
        let mut bits = std::mem::take(&mut self.scratch);
        self.hub
            .take(Bitmap::Ready, self.start_word, |entry| bits.push(entry));
        self.start_word = (self.start_word + 1) % self.hub.words();
        for &entry in &bits {
            self.check(entry, ready);
        }
        bits.clear();
        self.scratch = bits;
        // Not under loom: the wall clock would make the model's runs differ
        // (and a heap hub's producers cannot die alone anyway).
        if !cfg!(loom)
            && (self.take_ended() || self.sliced() && self.last_watch.elapsed() >= WATCH_SLICE)
        {
            self.watch(ready);
        }
    }
}

#[cfg(all(test, not(any(loom, miri))))]
mod tests {
    use super::*;
    use crate::hub::member::{keep_released, MAX_RELEASED};
    use crate::protocol::hub_layout::EntryState;

    #[test]
    fn released_names_stay_bounded_and_names_gone_are_forgotten_first() {
        let gone = |i: usize| format!("/sst-unit-released-{}-{i}", std::process::id());
        let mut released = Vec::new();
        for i in 0..MAX_RELEASED {
            keep_released(&mut released, gone(i));
        }
        assert_eq!(released.len(), MAX_RELEASED);
        keep_released(&mut released, gone(MAX_RELEASED));
        assert_eq!(released, [gone(MAX_RELEASED)], "none of them exists");
    }

    #[test]
    fn an_announcement_set_again_and_again_is_pending_once() {
        let mut set: StreamSet = StreamSet::in_process(64).unwrap();
        let hub = set.hub().unwrap();
        let id = StreamId {
            request_id: "r".into(),
            edge_name: "e".into(),
            from_partition: "p".into(),
        };
        let _producer = hub.create_stream(&StreamConfig::new(id.clone())).unwrap();
        let entry = (0..64)
            .find(|&i| matches!(set.hub.state(i), EntryState::Published { .. }))
            .unwrap();
        for _ in 0..100 {
            set.hub.set_bit(Bitmap::Announce, entry);
            assert_eq!(set.announced(), std::slice::from_ref(&id));
        }
        assert_eq!(set.pending.len(), 1);
    }
}
