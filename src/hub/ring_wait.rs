//! A standalone stream's waits made by an event loop (issue 25), as
//! `StreamSet::look_or_arm` makes a set's: one look, and when it finds
//! nothing, a sleeper announced on the bell the other side already rings
//! (the data bell for a buffer's chunk, the space bell for a producer's
//! room or drain), exactly as the sync waits announce one before they
//! sleep (`protocol/wait.rs`), and a [`BellWait`] for the caller to wait on.
//! The look takes nothing (no pop, no reservation): a wait given up (a
//! cancelled `await`) leaves nothing behind.

use crate::buffer::StreamBuffer;
use crate::consumer::Consumer;
use crate::error::StreamError;
use crate::hub::bell_wait::{BellAt, BellWait};
use crate::producer::Producer;
use crate::protocol::ring_consumer::{producer_gone, Snapshot};
use crate::protocol::ring_producer::{consumer_gone, load_released};
use std::sync::atomic::Ordering;

impl Consumer {
    /// One look, as `wait_until` with a zero timeout; when `ready` refuses
    /// it, a sleeper announced on the data bell. `Ok(None)`: `ready` held.
    fn look_or_arm(
        &mut self,
        mut ready: impl FnMut(Snapshot) -> bool,
    ) -> Result<Option<BellWait>, StreamError> {
        self.ring.release();
        let at = BellAt::ring(self.ring.mem(), |c| &c.data_bell);
        let ring = &mut self.ring;
        // As the sync wait: what the producer completed before it left is
        // still delivered.
        let mut look = || -> Option<Result<Snapshot, StreamError>> {
            match ring.poll() {
                Ok(s) if ready(s) => return Some(Ok(s)),
                Err(e) => return Some(Err(e)),
                Ok(_) => {}
            }
            if !producer_gone(ring.mem()) {
                return None;
            }
            Some(match ring.poll() {
                Ok(s) if ready(s) => Ok(s),
                Ok(_) => Err(StreamError::ProducerGone),
                Err(e) => Err(e),
            })
        };
        let found = match look() {
            Some(found) => found,
            None => match at.arm(None, look) {
                Ok(found) => found,
                Err(wait) => return Ok(Some(wait)),
            },
        };
        self.last = found?;
        Ok(None)
    }
}

impl<E> StreamBuffer<E> {
    /// For a wait made elsewhere (an event loop's): one look, as
    /// [`wait_chunk`](Self::wait_chunk) with a zero timeout. `Ok(None)`: a
    /// chunk is ready, or the stream is finished (pop it); otherwise a
    /// [`BellWait`] on the stream's data bell, which every commit and the
    /// producer's `done` or departure wake. It pops nothing.
    ///
    /// # Errors
    ///
    /// As [`wait_chunk`](Self::wait_chunk): [`StreamError::ProducerGone`]
    /// (the producer died with the stream unfinished), a corrupt ring.
    pub fn look_or_arm(&mut self) -> Result<Option<BellWait>, StreamError> {
        if self.chunker.finished() {
            return Ok(None);
        }
        let chunker = &self.chunker;
        self.consumer
            .look_or_arm(|s| chunker.is_ready(s.available as usize, s.all_in))
    }
}

impl Producer {
    /// For a wait made elsewhere (an event loop's): one look, as
    /// [`wait_room`](Self::wait_room) with a zero timeout. `Ok(None)`: a
    /// registration of `nbytes` fits now; otherwise a [`BellWait`] on the
    /// ring's space bell, which every release and the consumer's departure
    /// wake. It reserves nothing.
    ///
    /// # Errors
    ///
    /// As [`wait_room`](Self::wait_room) but the timeout.
    pub fn room_or_arm(&self, nbytes: u64) -> Result<Option<BellWait>, StreamError> {
        let mut ring = self.ring.borrow_mut();
        let at = BellAt::ring(ring.mem(), |c| &c.space_bell);
        let mut look = || -> Option<Result<(), StreamError>> {
            match ring.fits(nbytes) {
                Ok(None) => return Some(Ok(())),
                Err(e) => return Some(Err(e)),
                Ok(Some(_)) => {}
            }
            if !consumer_gone(ring.mem()) {
                return None;
            }
            Some(match ring.fits(nbytes) {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err(StreamError::ConsumerGone),
                Err(e) => Err(e),
            })
        };
        let found = match look() {
            Some(found) => found,
            None => match at.arm(None, look) {
                Ok(found) => found,
                Err(wait) => return Ok(Some(wait)),
            },
        };
        found.map(|()| None)
    }

    /// For a wait made elsewhere (an event loop's): one look, as
    /// [`wait_drained`](Self::wait_drained) with a zero timeout. `Ok(None)`:
    /// the consumer released every item registered; otherwise a
    /// [`BellWait`] on the ring's space bell.
    ///
    /// # Errors
    ///
    /// As [`wait_drained`](Self::wait_drained) but the timeout, and
    /// [`StreamError::Unpublished`] for a position still open.
    pub fn drained_or_arm(&self) -> Result<Option<BellWait>, StreamError> {
        let mut ring = self.ring.borrow_mut();
        let next = ring.registered();
        let open = ring.oldest_open();
        if open < next {
            return Err(StreamError::Unpublished { position: open });
        }
        let mem = ring.mem();
        let at = BellAt::ring(mem, |c| &c.space_bell);
        // A consumer that released everything and then left is a normal
        // end, as in the sync wait.
        let look = || -> Option<Result<(), StreamError>> {
            match load_released(mem, 0, open) {
                Ok(released) if released == next => Some(Ok(())),
                Err(e) => Some(Err(e)),
                Ok(_) if consumer_gone(mem) => {
                    Some(if mem.control().released.load(Ordering::Acquire) == next {
                        Ok(())
                    } else {
                        Err(StreamError::ConsumerGone)
                    })
                }
                Ok(_) => None,
            }
        };
        let found = match look() {
            Some(found) => found,
            None => match at.arm(None, look) {
                Ok(found) => found,
                Err(wait) => return Ok(Some(wait)),
            },
        };
        found.map(|()| None)
    }
}
