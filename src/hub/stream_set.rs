//! `StreamSet`: one consumer worker, many streams, one wait. The worker's
//! hub tells it which streams were announced and which have news; it
//! sleeps on one futex for all of them.

use crate::buffer::StreamBuffer;
use crate::config::{StreamConfig, StreamId};
use crate::error::SetupError;
use crate::hub::producer::{Hub, LocalStreams};
use crate::policy::{ChunkPolicy, Policy};
use crate::protocol::hub::{Bitmap, EntryState, HubMem, ProducerId};
use crate::protocol::layout::FLAG_PRODUCER_GONE;
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
const MAX_ADOPT_ERRORS: usize = 64;

/// Names of removed streams kept per live producer process, to remove if
/// it is killed holding them (at about 100 bytes a name, 100 KiB per
/// producer at most).
const MAX_RELEASED: usize = 1024;

/// A stream of a [`StreamSet`]: its hub entry and that entry's generation,
/// so a key never names a later stream that reuses the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    entry: u32,
    gen: u32,
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

/// A boxed policy as a policy.
#[derive(Debug)]
struct Boxed(Box<dyn ChunkPolicy>);

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

/// Where the set's streams come from.
enum Origin {
    /// A hub segment: streams are opened by their announced identity.
    #[cfg_attr(loom, allow(dead_code))]
    Shared { worker: String, prefix: String },
    /// An in-process hub: the consumer halves wait in this table.
    Local(Arc<LocalStreams>),
}

/// An announced stream not adopted yet.
#[derive(Debug)]
struct Announcement {
    entry: u32,
    gen: u32,
    by: ProducerId,
    id: StreamId,
    /// The segment prefix (shared hubs only).
    prefix: String,
}

struct Member<E> {
    gen: u32,
    by: ProducerId,
    buffer: StreamBuffer<E>,
    /// The producer process was found dead (its slot's lock is free).
    producer_dead: bool,
    /// Its departure (or an error) was reported once already.
    reported_end: bool,
    /// The `wait_any` round that last put it in the result.
    round: u64,
    /// The segment prefix (shared hubs only), to name the segment when
    /// its producer died.
    prefix: String,
}

impl<E> Member<E> {
    /// Whether to report the stream: a chunk is ready, or it failed, or
    /// its producer is gone (the last two once).
    fn is_ready(&mut self) -> bool {
        if self.buffer.is_finished() {
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
fn keep_released(released: &mut Vec<String>, name: String) {
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
struct Watched {
    id: ProducerId,
    entries: Vec<u32>,
    /// Segments of streams removed from the set while this producer was
    /// alive and still held them: a producer killed later leaves them
    /// behind, and the set removes them when it finds it dead. At most
    /// `MAX_RELEASED` (then pruned of names already gone, then the oldest
    /// are forgotten).
    released: Vec<String>,
    dead: bool,
    /// The death watch thread polls its pidfd: no need to slice the sleep
    /// for it.
    by_pidfd: bool,
}

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
    hub: Arc<HubMem>,
    origin: Origin,
    /// By hub entry.
    members: Vec<Option<Member<E>>>,
    len: usize,
    pending: Vec<Announcement>,
    adopter: Option<Adopter>,
    /// The timeout of adopted streams' `next_chunk`.
    timeout: Option<Duration>,
    /// Keys returned by the last `wait_any`, looked at again first.
    carry: Vec<StreamKey>,
    round: u64,
    /// The entry from which `take_turns` orders the next result.
    first: u32,
    start_word: usize,
    watched: Vec<Watched>,
    /// The thread that polls the producers' pidfds (shared hubs, started
    /// with the first stream; `None` until then, or when it could not
    /// start: then the set slices its sleeps for every producer).
    #[cfg(not(any(loom, miri)))]
    death_watch: Option<crate::os::hub_segment::DeathWatch>,
    /// Whether starting `death_watch` was tried already.
    #[cfg(not(any(loom, miri)))]
    death_watch_tried: bool,
    /// Scratch for the attachments the death watch saw end.
    #[cfg(not(any(loom, miri)))]
    ended: Vec<ProducerId>,
    last_watch: Instant,
    adopt_errors: Vec<(StreamId, SetupError)>,
    scratch: Vec<u32>,
    /// `wait_any` returns when its sleep is interrupted by a signal
    /// handler ([`with_return_on_signal`](StreamSet::with_return_on_signal)).
    return_on_signal: bool,
    /// Set by a [`waker`](StreamSet::waker): the current or next
    /// `wait_any` returns early.
    woken: Arc<AtomicBool>,
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

impl<E> Drop for StreamSet<E> {
    /// Closes the hub, so that no stream can be announced to this set any
    /// more, and settles every announced stream it never adopted with its
    /// producer (see "hand-over" in docs/design.md): exactly one of the
    /// two removes its segment, whichever goes first. Removes too the
    /// segments of its streams whose producer was killed. A live
    /// producer's segment is never removed.
    fn drop(&mut self) {
        for m in self.members.iter().flatten() {
            self.remove_if_killed(m);
        }
        // A producer alive now removes its own names when it drops them;
        // one killed after this leaves them to `ipc-demo clean`.
        for w in 0..self.watched.len() {
            if !self.hub.producer_alive(self.watched[w].id) {
                Self::remove_released(&mut self.watched[w].released);
            }
        }
        for entry in 0..self.hub.entries() {
            // Every entry, adopted or not, announced or not: a producer
            // between its claim and its publish then fails to publish and
            // removes its stream itself.
            let (gen, by) = match self.hub.close(entry) {
                EntryState::Published { gen, by } => (gen, by),
                // A producer killed between its claim and its publish: what
                // it may have created (a live one fails to publish and
                // removes its stream itself).
                EntryState::Claimed { by, .. } if !self.hub.producer_alive(by) => {
                    if let Ok(Some(identity)) = self.hub.identity(entry) {
                        self.remove_stale(identity);
                    }
                    continue;
                }
                _ => continue,
            };
            if self.members[entry as usize].is_some() {
                continue;
            }
            let Some(a) = self.announcement_of(entry, gen, by) else {
                continue;
            };
            match &self.origin {
                // Nobody will take the consumer half from the table.
                Origin::Local(local) => drop(local.take((entry, gen))),
                #[cfg(not(loom))]
                Origin::Shared { .. } => {
                    // Relaxed: `close`'s Acquire ordered the producer's
                    // store before it.
                    let pid = self
                        .hub
                        .entry(entry)
                        .pid
                        .load(crate::sync::Ordering::Relaxed);
                    if let Ok(name) = StreamConfig::new(a.id)
                        .with_prefix(&a.prefix)
                        .segment_name()
                    {
                        let _ = crate::os::reclaim::close_unadopted(&name, pid);
                    }
                }
                #[cfg(loom)]
                Origin::Shared { .. } => {
                    let _ = a;
                    unreachable!("under loom every hub is in-process")
                }
            }
        }
        // Streams an earlier set of this process let go of (adopted, or
        // closed unadopted) whose producer was killed after that: their
        // live party is gone, this sweep removes them.
        #[cfg(not(loom))]
        if let Origin::Shared { prefix, .. } = &self.origin {
            crate::os::reclaim::remove_orphans(prefix);
        }
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
        Self::create_with_entries(worker, prefix, crate::protocol::hub::DEFAULT_HUB_ENTRIES)
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
        let hub = crate::protocol::hub::heap_hub(entries).map_err(SetupError::InvalidConfig)?;
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

    /// Items the announced stream's ring holds, read without attaching to
    /// it (an attach marks the segment as consumed, and a consumer that
    /// came and went would leave the stream's producer a gone consumer).
    fn capacity_of(&self, a: &Announcement) -> Result<u64, SetupError> {
        match &self.origin {
            Origin::Local(local) => {
                local
                    .capacity((a.entry, a.gen))
                    .ok_or_else(|| SetupError::NotAnnounced {
                        name: a.id.to_string(),
                    })
            }
            #[cfg(not(loom))]
            Origin::Shared { .. } => {
                let name = StreamConfig::new(a.id.clone())
                    .with_prefix(&a.prefix)
                    .segment_name()?;
                crate::os::reclaim::capacity(&name)
            }
            #[cfg(loom)]
            Origin::Shared { .. } => unreachable!("under loom every hub is in-process"),
        }
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

    /// Stops watching the producer at `at` in `watched`.
    fn unwatch(&mut self, at: usize) {
        let w = self.watched.swap_remove(at);
        #[cfg(not(any(loom, miri)))]
        if let (true, Some(watch)) = (w.by_pidfd, &self.death_watch) {
            watch.unwatch(w.id);
        }
        #[cfg(any(loom, miri))]
        let _ = w;
    }

    /// Removes the segment of `m` if its producer died without a word (a
    /// producer that left cleanly set `FLAG_PRODUCER_GONE` and removed its
    /// name, or handed it over: then nothing is done and no system call
    /// made). Only a dead producer's file that this process consumed goes
    /// (see `remove_if_dead_consumed_by`): never a live one, never one
    /// handed over to a consumer yet to come.
    ///
    /// Returns the segment's name when its producer is alive and still
    /// holds it: if it is killed before it drops it, nobody else would
    /// remove it (the set does, when it finds the producer dead).
    fn remove_if_killed(&self, m: &Member<E>) -> Option<String> {
        #[cfg(not(loom))]
        if let Origin::Shared { .. } = self.origin {
            let mem = m.buffer.consumer().ring.mem();
            let left = mem.flags() & FLAG_PRODUCER_GONE != 0;
            if left {
                return None;
            }
            let name = StreamConfig::new(m.buffer.id().clone())
                .with_prefix(&m.prefix)
                .segment_name()
                .ok()?;
            // The segment's own producer lock (one test): the process may
            // be found dead here before the hub's slot lock says so.
            if !m.producer_dead && mem.peer_alive(crate::protocol::ring::Side::Producer) {
                return Some(name);
            }
            let _ = crate::os::reclaim::remove_if_dead_consumed_by(&name, Some(std::process::id()));
        }
        #[cfg(loom)]
        let _ = m;
        None
    }

    /// Removes the segments a producer found dead held when their streams
    /// were removed from the set (only files this process consumed whose
    /// producer is dead: see `remove_if_dead_consumed_by`).
    fn remove_released(released: &mut Vec<String>) {
        #[cfg(not(loom))]
        for name in released.drain(..) {
            let _ = crate::os::reclaim::remove_if_dead_consumed_by(&name, Some(std::process::id()));
        }
        #[cfg(loom)]
        released.clear();
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
    fn take_turns(&mut self, ready: &mut [StreamKey]) {
        let n = self.hub.entries();
        let first = self.first;
        ready.sort_unstable_by_key(|k| (k.entry + n - first) % n);
        if let Some(k) = ready.first() {
            self.first = (k.entry + 1) % n;
        }
    }

    /// One look at everything: announcements, the streams returned last
    /// time, the ready bits, and (every `WATCH_SLICE`) the producers.
    fn collect(&mut self, ready: &mut Vec<StreamKey>) {
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

    /// Removes the segment named by a dead producer's unpublished claim
    /// (shared hubs), if its producer is dead.
    fn remove_stale(&self, identity: [String; 4]) {
        #[cfg(not(loom))]
        if let Origin::Shared { .. } = self.origin {
            crate::os::reclaim::remove_stale(identity);
        }
        #[cfg(loom)]
        let _ = identity;
    }

    /// Whether a live producer is watched by lock tests between sleep
    /// slices (no pidfd for it).
    fn sliced(&self) -> bool {
        self.watched.iter().any(|w| !w.dead && !w.by_pidfd)
    }

    /// Whether the death watch saw a process end since the last call; its
    /// producers are tested in slices from now on, until their locks are
    /// found free (the pidfd may say so a moment before the kernel drops
    /// the lock).
    fn take_ended(&mut self) -> bool {
        #[cfg(not(any(loom, miri)))]
        if let Some(watch) = &self.death_watch {
            let mut ended = std::mem::take(&mut self.ended);
            watch.take_ended(&mut ended);
            let any = !ended.is_empty();
            for id in ended.drain(..) {
                if let Some(w) = self.watched.iter_mut().find(|w| w.id == id) {
                    w.by_pidfd = false;
                }
            }
            self.ended = ended;
            return any;
        }
        false
    }

    /// Has the death watch thread poll the pidfd of the process of `by`
    /// (whose pid `entry` carries); starts the thread on first use. False
    /// when it cannot (an in-process hub, no pidfd, the thread would not
    /// start): the set then tests that producer's lock between slices.
    fn watch_by_pidfd(&mut self, by: ProducerId, entry: u32) -> bool {
        #[cfg(not(any(loom, miri)))]
        if let Origin::Shared { .. } = self.origin {
            if !self.death_watch_tried {
                self.death_watch_tried = true;
                self.death_watch = crate::os::hub_segment::DeathWatch::start(self.hub.clone()).ok();
            }
            let Some(watch) = &self.death_watch else {
                return false;
            };
            // Relaxed: the Acquire load of the entry's published state
            // (in `announcement`) ordered the producer's store before it.
            let pid = self
                .hub
                .entry(entry)
                .pid
                .load(crate::sync::Ordering::Relaxed);
            let hub = &self.hub;
            return watch.watch(by, pid, || hub.producer_alive(by));
        }
        let _ = (by, entry);
        false
    }

    /// Adds the stream of `entry` to `ready` if it has news and is not in
    /// it already.
    fn check(&mut self, entry: u32, ready: &mut Vec<StreamKey>) {
        let round = self.round;
        let Some(m) = self
            .members
            .get_mut(entry as usize)
            .and_then(Option::as_mut)
        else {
            // A bit of an entry we hold no stream for: not adopted yet (the
            // adoption looks at the stream itself) or already removed.
            return;
        };
        if m.round != round && m.is_ready() {
            m.round = round;
            ready.push(StreamKey { entry, gen: m.gen });
        }
    }

    /// Tests the liveness of each producer process the set's streams come
    /// from; the streams of one found dead are reported.
    fn watch(&mut self, ready: &mut Vec<StreamKey>) {
        self.last_watch = Instant::now();
        let mut died = false;
        for w in 0..self.watched.len() {
            if self.watched[w].dead || self.hub.producer_alive(self.watched[w].id) {
                continue;
            }
            self.watched[w].dead = true;
            died = true;
            for k in 0..self.watched[w].entries.len() {
                let entry = self.watched[w].entries[k];
                if let Some(m) = self.members[entry as usize].as_mut() {
                    m.producer_dead = true;
                }
                self.check(entry, ready);
            }
        }
        if died {
            for w in (0..self.watched.len()).rev() {
                if !self.watched[w].dead {
                    continue;
                }
                Self::remove_released(&mut self.watched[w].released);
                if self.watched[w].entries.is_empty() {
                    self.unwatch(w);
                }
            }
            // A producer that died between claiming an entry and
            // publishing it left the entry claimed: free it.
            self.hub
                .sweep_dead_claims(|identity| self.remove_stale(identity));
        }
    }

    /// Takes the hub's announcements: adopts each (when there is an
    /// adopter that wants it; the new stream goes into `ready` if it has
    /// news already) or keeps it pending.
    fn take_announcements(&mut self, mut ready: Option<&mut Vec<StreamKey>>) {
        let mut entries = std::mem::take(&mut self.scratch);
        self.hub
            .take(Bitmap::Announce, 0, |entry| entries.push(entry));
        for &entry in &entries {
            let Some(a) = self.announcement(entry) else {
                continue;
            };
            // Announced once by a correct producer; a bit set again (by a
            // hostile one) must not grow the pending list past one per
            // entry. O(pending), at most the hub's entries.
            if self
                .pending
                .iter()
                .any(|p| p.entry == a.entry && p.gen == a.gen)
            {
                continue;
            }
            let policy = match self.adopter.as_mut() {
                Some(adopt) => adopt(&a.id),
                None => None,
            };
            let Some(policy) = policy else {
                self.pending.push(a);
                continue;
            };
            let id = a.id.clone();
            match self.open_member(a, policy) {
                Ok(key) => {
                    if let Some(ready) = ready.as_deref_mut() {
                        self.check(key.entry, ready);
                    }
                }
                Err(e) => {
                    if self.adopt_errors.len() == MAX_ADOPT_ERRORS {
                        self.adopt_errors.remove(0);
                    }
                    self.adopt_errors.push((id, e));
                }
            }
        }
        entries.clear();
        self.scratch = entries;
    }

    /// Reads the announcement of `entry`, checking everything: `None` for
    /// an entry that is not published, holds a bad identity (it is then
    /// left alone: a correct producer never writes one), or is held
    /// already.
    fn announcement(&self, entry: u32) -> Option<Announcement> {
        let EntryState::Published { gen, by } = self.hub.state(entry) else {
            return None;
        };
        self.announcement_of(entry, gen, by)
    }

    /// As [`announcement`](Self::announcement), for an entry seen
    /// published as `gen` by `by`.
    fn announcement_of(&self, entry: u32, gen: u32, by: ProducerId) -> Option<Announcement> {
        if self.members[entry as usize].is_some() {
            return None;
        }
        let (id, prefix) = match &self.origin {
            Origin::Local(local) => {
                // In-process: the consumer half waits in the table.
                (local.id((entry, gen))?, String::new())
            }
            Origin::Shared { .. } => {
                let [prefix, request_id, edge_name, from_partition] =
                    self.hub.identity(entry).ok()??;
                let id = StreamId {
                    request_id,
                    edge_name,
                    from_partition,
                };
                // The names and prefix must make a valid configuration.
                StreamConfig::new(id.clone())
                    .with_prefix(&prefix)
                    .segment_name()
                    .ok()?;
                (id, prefix)
            }
        };
        Some(Announcement {
            entry,
            gen,
            by,
            id,
            prefix,
        })
    }

    /// Opens an announced stream and makes it a member.
    fn open_member(
        &mut self,
        a: Announcement,
        policy: Box<dyn ChunkPolicy>,
    ) -> Result<StreamKey, SetupError> {
        let buffer = match self.open_buffer(&a, policy) {
            Ok(buffer) => buffer,
            Err(e) => {
                // Nobody will read it: give the entry back.
                self.hub.retire(a.entry, a.gen, a.by);
                return Err(e);
            }
        };
        let w = match self.watched.iter().position(|w| w.id == a.by) {
            Some(w) => w,
            None => {
                let by_pidfd = self.watch_by_pidfd(a.by, a.entry);
                self.watched.push(Watched {
                    id: a.by,
                    entries: Vec::new(),
                    released: Vec::new(),
                    dead: false,
                    by_pidfd,
                });
                self.watched.len() - 1
            }
        };
        self.watched[w].entries.push(a.entry);
        let prefix = a.prefix;
        self.members[a.entry as usize] = Some(Member {
            gen: a.gen,
            by: a.by,
            buffer,
            producer_dead: self.watched[w].dead,
            reported_end: false,
            round: 0,
            prefix,
        });
        self.len += 1;
        let key = StreamKey {
            entry: a.entry,
            gen: a.gen,
        };

        // Its bits may have been taken (and passed over) before it was a
        // member: the next look checks the stream itself.
        self.carry.push(key);
        Ok(key)
    }

    fn open_buffer(
        &self,
        a: &Announcement,
        policy: Box<dyn ChunkPolicy>,
    ) -> Result<StreamBuffer<E>, SetupError> {
        match &self.origin {
            Origin::Local(local) => {
                let (id, mut consumer) =
                    local
                        .take((a.entry, a.gen))
                        .ok_or_else(|| SetupError::NotAnnounced {
                            name: a.id.to_string(),
                        })?;
                consumer.timeout = self.timeout;
                StreamBuffer::new(consumer, id, Boxed(policy)).map_err(|e| e.error)
            }
            #[cfg(not(loom))]
            Origin::Shared { .. } => {
                let config = StreamConfig::new(a.id.clone())
                    .with_prefix(&a.prefix)
                    .with_timeout(self.timeout);
                StreamBuffer::open(&config, Boxed(policy))
            }
            #[cfg(loom)]
            Origin::Shared { .. } => unreachable!("under loom every hub is in-process"),
        }
    }
}

#[cfg(all(test, not(any(loom, miri))))]
mod tests {
    use super::*;

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
