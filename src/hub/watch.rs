//! A stream set's watch over its producers' liveness (pidfds, lock tests
//! in slices), the removal of killed producers' segments, and the settling
//! of every stream with its producer when the set goes.

#[cfg(not(loom))]
use crate::config::StreamConfig;
use crate::hub::member::{Member, Origin};
use crate::hub::stream_set::{StreamKey, StreamSet};
use crate::protocol::hub_layout::{EntryState, ProducerId};
#[cfg(not(loom))]
use crate::protocol::layout::FLAG_PRODUCER_GONE;
use std::time::Instant;

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
    /// Stops watching the producer at `at` in `watched`.
    pub(crate) fn unwatch(&mut self, at: usize) {
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
    pub(crate) fn remove_if_killed(&self, m: &Member<E>) -> Option<String> {
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
    pub(crate) fn sliced(&self) -> bool {
        self.watched.iter().any(|w| !w.dead && !w.by_pidfd)
    }

    /// Whether the death watch saw a process end since the last call; its
    /// producers are tested in slices from now on, until their locks are
    /// found free (the pidfd may say so a moment before the kernel drops
    /// the lock).
    pub(crate) fn take_ended(&mut self) -> bool {
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
    pub(crate) fn watch_by_pidfd(&mut self, by: ProducerId, entry: u32) -> bool {
        #[cfg(not(any(loom, miri)))]
        if let Origin::Shared { .. } = self.origin {
            if !self.death_watch_tried {
                self.death_watch_tried = true;
                self.death_watch = crate::os::death_watch::DeathWatch::start(self.hub.clone()).ok();
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
    pub(crate) fn check(&mut self, entry: u32, ready: &mut Vec<StreamKey>) {
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
    pub(crate) fn watch(&mut self, ready: &mut Vec<StreamKey>) {
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
}
