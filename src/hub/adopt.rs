//! A stream set's adoption: taking the hub's announcements, opening each
//! announced stream (its segment or the in-process table) and its buffer
//! with the adopter's policy.

use crate::buffer::StreamBuffer;
use crate::config::{StreamConfig, StreamId};
use crate::error::SetupError;
use crate::hub::member::{Announcement, Boxed, Member, Origin, Watched};
use crate::hub::stream_set::{StreamKey, StreamSet, MAX_ADOPT_ERRORS};
use crate::policy::ChunkPolicy;
use crate::protocol::hub::Bitmap;
use crate::protocol::hub_layout::{EntryState, ProducerId};

impl<E> StreamSet<E> {
    /// Takes the hub's announcements: adopts each (when there is an
    /// adopter that wants it; the new stream goes into `ready` if it has
    /// news already) or keeps it pending.
    pub(crate) fn take_announcements(&mut self, mut ready: Option<&mut Vec<StreamKey>>) {
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
    pub(crate) fn announcement_of(
        &self,
        entry: u32,
        gen: u32,
        by: ProducerId,
    ) -> Option<Announcement> {
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
    pub(crate) fn open_member(
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

    /// Items the announced stream's ring holds, read without attaching to
    /// it (an attach marks the segment as consumed, and a consumer that
    /// came and went would leave the stream's producer a gone consumer).
    pub(crate) fn capacity_of(&self, a: &Announcement) -> Result<u64, SetupError> {
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
}
