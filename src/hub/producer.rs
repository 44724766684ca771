//! The producer's side of a worker hub: [`Hub`] attaches to a worker's hub
//! and creates streams that announce themselves there and mark themselves
//! ready at every commit, so the worker waits once for all its streams
//! ([`StreamSet`](crate::StreamSet)).

use crate::config::{StreamConfig, StreamId};
use crate::consumer::Consumer;
use crate::error::SetupError;
use crate::producer::Producer;
use crate::protocol::hub::{Attachment, Bitmap, HubMem};
use crate::protocol::hub_layout::MAX_HUB_PRODUCERS;
use crate::protocol::wake::Wake;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// The consumer halves of in-process hub streams, waiting for the set to
/// adopt them (by entry and generation). A std mutex: nothing under it
/// touches an atomic, so loom never switches threads while it is held.
#[derive(Debug, Default)]
pub(crate) struct LocalStreams {
    waiting: Mutex<HashMap<(u32, u32), (StreamId, Consumer)>>,
}

impl LocalStreams {
    pub(crate) fn put(&self, key: (u32, u32), id: StreamId, consumer: Consumer) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.insert(key, (id, consumer));
    }

    pub(crate) fn id(&self, key: (u32, u32)) -> Option<StreamId> {
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.get(&key).map(|(id, _)| id.clone())
    }

    /// The ring capacity of a waiting stream, leaving it in the table.
    pub(crate) fn capacity(&self, key: (u32, u32)) -> Option<u64> {
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.get(&key).map(|(_, consumer)| consumer.capacity())
    }

    pub(crate) fn take(&self, key: (u32, u32)) -> Option<(StreamId, Consumer)> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.remove(&key)
    }
}

/// A producer's attachment to a worker's hub. Streams made with
/// [`create_stream`](Hub::create_stream) are announced to the worker (it
/// learns of them without scanning `/dev/shm`) and mark themselves ready
/// in the hub at every commit, `signal_done` and departure.
///
/// The attachment holds one of the hub's [`MAX_HUB_PRODUCERS`] producer
/// slots (and its liveness lock) until it and every stream created through
/// it are dropped. `Hub` is `Send` and `Sync`: threads may create streams
/// through one attachment.
///
/// # Examples
///
/// ```
/// use shmstream::{policy::Policy, DType, StreamConfig, StreamId, StreamSet, TensorMeta};
/// use std::time::Duration;
/// let mut set = StreamSet::<()>::in_process(64)
///     .unwrap()
///     .with_default_policy("fixed:size=1".parse::<Policy>().unwrap());
/// let hub = set.hub().unwrap();
/// let cfg = StreamConfig::new(StreamId { request_id: "req-1".into(), edge_name: "codec".into(), from_partition: "talker".into() });
/// let producer = hub.create_stream(&cfg).unwrap();
/// producer.register("t0").unwrap().write(TensorMeta::new(DType::U8, &[1]).unwrap(), &[7]).unwrap();
/// let ready = set.wait_any(Some(Duration::from_secs(5)));
/// assert_eq!(ready.len(), 1);
/// let chunk = set.get_mut(ready[0]).unwrap().pop_chunk().unwrap();
/// assert_eq!(chunk.item(0).unwrap().bytes(), &[7]);
/// ```
pub struct Hub {
    attachment: Arc<Attachment>,
    /// In-process hubs: where the consumer halves wait for the set.
    local: Option<Arc<LocalStreams>>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("name", &self.attachment.hub.name())
            .field("slot", &self.attachment.id.slot)
            .field("in_process", &self.local.is_some())
            .finish()
    }
}

impl Hub {
    /// Attaches to the hub of `worker` under `prefix` (see
    /// [`hub_name`](crate::hub_name)), which the worker's
    /// [`StreamSet::create`](crate::StreamSet::create) made.
    ///
    /// # Errors
    ///
    /// [`SetupError::NotFound`] (no such hub yet), [`SetupError::WorkerGone`],
    /// [`SetupError::TooManyProducers`], [`SetupError::ForeignSegment`],
    /// [`SetupError::LayoutMismatch`] and the other checks of a segment's
    /// header, and OS errors.
    #[cfg(not(loom))]
    pub fn attach(worker: &str, prefix: &str) -> Result<Hub, SetupError> {
        let mem = crate::os::hub_segment::attach(worker, prefix)?;
        Hub::from_mem(Arc::new(mem), None)
    }

    pub(crate) fn from_mem(
        hub: Arc<HubMem>,
        local: Option<Arc<LocalStreams>>,
    ) -> Result<Hub, SetupError> {
        let id = hub.attach_producer(std::process::id()).ok_or_else(|| {
            SetupError::TooManyProducers {
                name: hub.name().to_string(),
                max: MAX_HUB_PRODUCERS,
            }
        })?;
        Ok(Hub {
            attachment: Arc::new(Attachment::new(hub, id)),
            local,
        })
    }

    /// The hub's name.
    pub fn name(&self) -> &str {
        self.attachment.hub.name()
    }

    /// Creates a stream for the worker (its segment, as
    /// [`Producer::create`], or an in-process pair for an in-process hub),
    /// claims a hub entry for it and announces it. Every commit, abandoned
    /// slot, `signal_done` and the producer's drop then mark it ready in
    /// the hub.
    ///
    /// # Errors
    ///
    /// [`SetupError::WorkerGone`] when the worker died or its set is going,
    /// [`SetupError::HubFull`] when every entry holds a stream, and as
    /// [`Producer::create`]. A stream refused so leaves no segment behind.
    pub fn create_stream(&self, config: &StreamConfig) -> Result<Producer, SetupError> {
        let hub = &self.attachment.hub;
        if !hub.owner_alive() {
            return Err(SetupError::WorkerGone {
                name: hub.name().to_string(),
            });
        }
        config.validate()?;
        // No entry to claim: the hub is full, or its worker's set is going
        // and closed them all.
        let full = || {
            if hub.closed() {
                SetupError::WorkerGone {
                    name: hub.name().to_string(),
                }
            } else {
                SetupError::HubFull {
                    name: hub.name().to_string(),
                    entries: hub.entries(),
                }
            }
        };
        let gone = || SetupError::WorkerGone {
            name: hub.name().to_string(),
        };
        let me = self.attachment.id;
        let pid = std::process::id();
        match &self.local {
            Some(local) => {
                let (producer, consumer) = crate::open::in_process(config)?;
                let (entry, gen) = self.attachment.claim(|_| {}).ok_or_else(full)?;
                local.put((entry, gen), config.id.clone(), consumer);
                hub.clear_identity(entry);
                self.wire(&producer, entry);
                if !hub.publish(entry, gen, me, pid) {
                    // The set went and closed the entry: it will never look
                    // in the table for this stream.
                    drop(local.take((entry, gen)));
                    return Err(gone());
                }
                Ok(producer)
            }
            None => self.create_shared(config, full, gone, pid),
        }
    }

    #[cfg(not(loom))]
    fn create_shared(
        &self,
        config: &StreamConfig,
        full: impl FnOnce() -> SetupError,
        gone: impl FnOnce() -> SetupError,
        pid: u32,
    ) -> Result<Producer, SetupError> {
        let hub = &self.attachment.hub;
        // The entry first, with the stream's identity, then the segment:
        // a producer killed anywhere before it publishes leaves a claimed
        // entry naming what it may have created, which the next claimer of
        // the entry or the worker (when it finds the producer dead, and
        // when its set goes) removes if its producer is dead.
        let (entry, gen) = self
            .attachment
            .claim(crate::os::reclaim::remove_stale)
            .ok_or_else(full)?;
        let me = self.attachment.id;
        let id = &config.id;
        hub.write_identity(
            entry,
            [
                config.prefix(),
                &id.request_id,
                &id.edge_name,
                &id.from_partition,
            ],
        );
        // Handed over: a producer that finishes and goes before the worker
        // adopted the stream leaves the segment to it (nothing is lost).
        // Created before the entry is published, so a published entry
        // always names an initialised segment.
        let mem = match crate::os::segment::create_with(config, true) {
            Ok((mem, _name)) => mem,
            Err(e) => {
                hub.unclaim(entry, gen, me);
                return Err(e);
            }
        };
        let producer = Producer::from_ring(
            crate::protocol::ring_producer::ProducerRing::new(mem),
            config.timeout,
        );
        self.wire(&producer, entry);
        if !hub.publish(entry, gen, me, pid) {
            // The worker's set closed the entry first (it is going): the
            // stream is nobody's to adopt, so dropping it removes its name
            // rather than handing it over.
            producer.ring.borrow().mem().cancel_hand_over();
            return Err(gone());
        }
        Ok(producer)
    }

    #[cfg(loom)]
    fn create_shared(
        &self,
        _config: &StreamConfig,
        _full: impl FnOnce() -> SetupError,
        _gone: impl FnOnce() -> SetupError,
        _pid: u32,
    ) -> Result<Producer, SetupError> {
        unreachable!("under loom every hub is in-process")
    }

    fn wire(&self, producer: &Producer, entry: u32) {
        producer.ring.borrow_mut().set_notifier(Box::new(Notifier {
            attachment: self.attachment.clone(),
            entry,
        }));
    }
}

/// What a hub stream's producer calls when it publishes (a commit, an
/// abandoned slot, done, its departure): sets the stream's ready bit and
/// wakes the worker if it sleeps. The ring's wake hook, implemented by the
/// hub so that the protocol below never names the hub above it.
#[derive(Debug)]
struct Notifier {
    attachment: Arc<Attachment>,
    entry: u32,
}

impl Wake for Notifier {
    #[inline]
    fn notify(&self) {
        self.attachment.hub.set_bit(Bitmap::Ready, self.entry);
    }

    fn worker_alive(&self) -> bool {
        self.attachment.hub.owner_alive()
    }
}
