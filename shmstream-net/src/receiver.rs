//! The receiver: runs in the producer process, accepts one sender, and
//! lands each offered tensor straight in the slot it reserves for it.
//!
//! For each offer, in the sender's order (`seq`), it validates the header
//! ([`crate::wire::parse`]), reserves the next position of the stream with
//! the tensor's size ([`Producer::try_register_sized`]), and has UCX receive
//! the rendezvous payload at `region_base + slot.payload_offset()`
//! (`ucp_am_recv_data_nbx` into the payload region registered once with
//! `ucp_mem_map`). The slot is committed when that receive completes, so
//! completions, and commits, come in any order, and nothing is visible to
//! the consumer before its bytes are all there. A refused offer touches
//! nothing; a failed transfer abandons its position (the consumer reports
//! it), and the receiver stops with an error.
//!
//! Flow control: offers are admitted only while the ring has room; the
//! others wait, unreceived, at the sender, whose buffers stay registered
//! until the receiver acknowledges them.

use crate::budget::ByteBudget;
use crate::error::{ucx_reason, NetError, OfferError};
use crate::options::{
    ReceiveReport, ReceiverOptions, ACK_ENTRY_BYTES, MAX_REORDER, MAX_UNSENT_ACK_BYTES,
};
use crate::recent_ids::RecentIds;
use crate::reorder::Reorder;
use crate::ucx::{AmData, Context, DataDesc, Endpoint, Event, Listener, MemRegion, Worker};
use crate::wire::{self, AckStatus, Message, Offer};
use shmstream::{AbandonReason, Producer, Slot, StreamError};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What [`Receiver::admit_one`] did.
enum Admitted {
    /// Took the next offer (started or refused it).
    Done,
    /// The next offer waits for room in the ring or for a transfer slot.
    Blocked,
    /// The next offer in order has not arrived.
    Nothing,
}

/// An offer as it arrived, waiting for its turn. A refused one keeps only
/// its error: its payload was released on arrival.
enum Queued {
    Valid(Offer, AmData),
    Refused(OfferError),
}

/// A transfer in flight: the slot it lands in, held until completion.
struct Transfer<'p> {
    slot: Slot<'p>,
    offer: Offer,
}

/// The receiving end of a stream's network ingress.
pub struct Receiver<'p> {
    // Field order is drop order: the endpoint first (a forced close fails
    // the requests in flight), then the transfers (their slots abandon
    // their positions), then the region, the listener and the worker, and
    // last the slots of receives UCX had not ended (`unended`).
    ep: Option<Endpoint>,
    in_flight: HashMap<usize, Transfer<'p>>,
    queued: Reorder<Queued>,
    /// Acknowledgement headers until their sends complete.
    acks: HashMap<usize, Vec<u8>>,
    /// Their bytes plus `ACK_ENTRY_BYTES` each; the stream ends past
    /// `MAX_UNSENT_ACK_BYTES`.
    ack_bytes: ByteBudget,
    region: MemRegion,
    listener: Listener,
    worker: Rc<Worker>,
    _ctx: Rc<Context>,
    /// Transfers abort() gave up on whose receives UCX has not ended, by
    /// request: their slots are held (not abandoned) until UCX ends them
    /// or, this field being dropped after `worker`, the worker is
    /// destroyed (which ends every receive).
    unended: HashMap<usize, Transfer<'p>>,
    producer: &'p Producer,
    opts: ReceiverOptions,
    /// Names the stream in errors: "the stream received on ADDR".
    stream: String,
    next_seq: u64,
    end: Option<u64>,
    /// The ids of the last tensors admitted, as many as the ring holds.
    ids: RecentIds,
    /// Counts each commit as it happens (for a signal handler's report).
    progress: Option<&'p AtomicU64>,
    report: ReceiveReport,
    failure: Option<NetError>,
}

impl fmt::Debug for Receiver<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("listening", &self.listener.local_addr())
            .field("next_seq", &self.next_seq)
            .field("in_flight", &self.in_flight.len())
            .field("queued", &self.queued.len())
            .finish()
    }
}

impl Drop for Receiver<'_> {
    fn drop(&mut self) {
        // Receives UCX had not ended: handed back to UCX, which releases
        // each when it ends (the worker's destruction, after this, ends
        // them); their slots are dropped only after that (field order).
        for request in self.unended.keys() {
            self.worker.free_request(*request);
        }
    }
}

impl<'p> Receiver<'p> {
    /// Registers the producer's payload region with UCX and listens on
    /// `addr` (port 0: a free port, see [`local_addr`](Self::local_addr)).
    ///
    /// # Errors
    ///
    /// [`NetError::Unavailable`] without libucx, [`NetError::Ucx`] when the
    /// region cannot be registered or the address not bound.
    pub fn bind(
        producer: &'p Producer,
        addr: &SocketAddr,
        opts: ReceiverOptions,
    ) -> Result<Receiver<'p>, NetError> {
        let ctx = Context::new()?;
        let worker = Worker::new(&ctx)?;
        worker.set_am_handler(wire::AM_ID)?;
        // No offer longer than the payload ring is taken: its bytes are
        // not worth a copy.
        worker.set_max_eager_copy(usize::try_from(producer.payload_bytes()).unwrap_or(usize::MAX));
        let (base, len) = producer.payload_region();
        // SAFETY: the payload region is mapped as long as the producer
        // lives, and the receiver borrows the producer ('p), so the region
        // (dropped with the receiver) never outlives the mapping.
        let region = unsafe { ctx.map(base, len) }?;
        let listener = Listener::bind(&worker, addr)?;
        let stream = format!(
            "the stream received on {}",
            listener.local_addr().unwrap_or(*addr)
        );
        Ok(Receiver {
            ep: None,
            in_flight: HashMap::new(),
            queued: Reorder::new(opts.max_reorder_bytes),
            acks: HashMap::new(),
            ack_bytes: ByteBudget::new(MAX_UNSENT_ACK_BYTES),
            stream,
            report: ReceiveReport {
                lowest_offset: u64::MAX,
                region_len: len as u64,
                ..ReceiveReport::default()
            },
            region,
            listener,
            worker,
            _ctx: ctx,
            unended: HashMap::new(),
            producer,
            opts,
            next_seq: 0,
            end: None,
            ids: RecentIds::new(usize::try_from(producer.capacity()).unwrap_or(usize::MAX)),
            progress: None,
            failure: None,
        })
    }

    /// The address the listener is bound to, with the port the OS chose.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr()
    }

    /// Receives the sender's stream to its end: every offer committed or
    /// refused. The caller signals done on the producer afterwards.
    ///
    /// # Errors
    ///
    /// [`NetError::NoSender`], [`NetError::PeerFailed`] (the link or the
    /// sender failed), [`NetError::TransferFailed`], [`NetError::Stalled`],
    /// [`NetError::Stream`] (the consumer is gone, say). On every error
    /// the transfers in flight are cancelled and their positions
    /// abandoned: no half-written slot is ever committed.
    pub fn run(&mut self) -> Result<ReceiveReport, NetError> {
        match self.serve() {
            Ok(()) => {
                // The end is acknowledged too (under the seq `count`, which
                // no offer has): the sender closes first, then this side.
                if let Some(count) = self.end {
                    self.ack(count, AckStatus::Committed, "end");
                }
                self.flush_acks();
                if let Some(ep) = self.ep.take() {
                    ep.close(false, Duration::from_secs(1));
                }
                if self.report.committed == 0 {
                    self.report.lowest_offset = 0;
                }
                Ok(self.report.clone())
            }
            Err(e) => {
                self.abort(&e);
                Err(e)
            }
        }
    }

    /// Adds 1 to `counter` at each commit, as it happens: a signal
    /// handler (or another thread) reads how many tensors are in the
    /// stream so far while [`run`](Self::run) is still going.
    pub fn count_commits_in(&mut self, counter: &'p AtomicU64) {
        self.progress = Some(counter);
    }

    /// How many ids the receiver holds to refuse duplicates: at most the
    /// ring's item capacity, however long the stream.
    pub fn ids_held(&self) -> usize {
        self.ids.len()
    }

    /// The report so far (also after an error).
    pub fn report(&self) -> &ReceiveReport {
        &self.report
    }

    /// Transfers given up on (the run ended with an error) whose receives
    /// UCX has not ended yet: their slots are held, neither committed nor
    /// abandoned, so nothing else is reserved in their bytes, until UCX
    /// ends them or the receiver is dropped (then the consumer sees them
    /// abandoned).
    pub fn transfers_unended(&self) -> usize {
        self.unended.len()
    }

    /// Bytes the receiver holds now for the peer: offers waiting for their
    /// turn (as charged against
    /// [`max_reorder_bytes`](ReceiverOptions::max_reorder_bytes)) and
    /// acknowledgements not yet sent. Their peaks are in the report.
    pub fn bytes_held(&self) -> u64 {
        self.queued.held() + self.ack_bytes.held()
    }

    fn serve(&mut self) -> Result<(), NetError> {
        let started = Instant::now();
        let mut connected_at = None;
        let mut last_activity = Instant::now();
        loop {
            self.worker.progress();
            let events = self.worker.take_events();
            let active = !events.is_empty();
            for event in events {
                self.handle(event)?;
            }
            if let Some(e) = self.failure.take() {
                return Err(e);
            }
            if self.ep.is_some() && connected_at.is_none() {
                connected_at = Some(Instant::now());
            }
            let blocked = self.admit()?;
            if let Some(e) = self.failure.take() {
                return Err(e);
            }
            if let Some(at) = connected_at {
                self.report.elapsed = at.elapsed();
            }
            if self.finished() {
                return Ok(());
            }
            if active {
                last_activity = Instant::now();
                continue;
            }
            if connected_at.is_none() {
                if started.elapsed() > self.opts.accept_timeout {
                    return Err(NetError::NoSender {
                        secs: self.opts.accept_timeout.as_secs_f64(),
                    });
                }
            } else if (!blocked || !self.in_flight.is_empty())
                && last_activity.elapsed() > self.opts.stall_timeout
            {
                return Err(NetError::Stalled {
                    secs: self.opts.stall_timeout.as_secs_f64(),
                    in_flight: self.in_flight.len(),
                    offers: self.next_seq,
                });
            }
            if blocked && self.in_flight.is_empty() {
                // Only the consumer can make room: sleep on the ring's
                // futex (a short timeout keeps UCX progressing).
                self.wait_for_room()?;
            } else {
                let t = if blocked { 1 } else { 50 };
                self.worker.wait(Duration::from_millis(t))?;
            }
        }
    }

    fn finished(&self) -> bool {
        self.end == Some(self.next_seq) && self.queued.is_empty() && self.in_flight.is_empty()
    }

    fn handle(&mut self, event: Event) -> Result<(), NetError> {
        match event {
            Event::ConnRequest(req) => {
                if self.ep.is_some() {
                    self.listener.reject(req); // one sender per stream
                } else {
                    self.ep = Some(Endpoint::accept(&self.worker, req)?);
                }
            }
            Event::EpError(status) => {
                return Err(NetError::PeerFailed {
                    status,
                    in_flight: self.in_flight.len(),
                })
            }
            Event::Am(msg) => self.arrived(msg.header, msg.length, msg.data)?,
            Event::RecvDone {
                request,
                status,
                length,
            } => self.completed(request, status, length)?,
            Event::SendDone { request, .. } => {
                if let Some(header) = self.acks.remove(&request) {
                    self.ack_bytes.credit(ack_cost(&header));
                    self.worker.free_request(request);
                }
            }
        }
        Ok(())
    }

    fn arrived(&mut self, header: Vec<u8>, length: usize, data: AmData) -> Result<(), NetError> {
        let capacity = self.producer.payload_bytes();
        match wire::parse(&header, length, capacity) {
            Ok(Message::Offer(offer)) => {
                let seq = offer.seq;
                self.enqueue(seq, Queued::Valid(offer, data));
            }
            Ok(Message::End { count }) => {
                self.release(data);
                if self.end.is_some() || count < self.next_seq {
                    return Err(NetError::Protocol(format!(
                        "an end after {count} offers, but {} were taken (or a second end)",
                        self.next_seq
                    )));
                }
                self.end = Some(count);
            }
            Ok(Message::Ack { .. }) => {
                self.release(data);
                return Err(NetError::Protocol(
                    "the sender sent an acknowledgement".into(),
                ));
            }
            Err(e) => {
                // Nothing of a refused offer is received: its payload goes
                // now, whatever its claimed or real size.
                self.release(data);
                match e.seq {
                    // A readable seq keeps its place in the order.
                    Some(seq) => self.enqueue(seq, Queued::Refused(e)),
                    _ => self.refuse(e),
                }
            }
        }
        Ok(())
    }

    fn enqueue(&mut self, seq: u64, q: Queued) {
        let problem = if seq < self.next_seq || self.queued.contains(seq) {
            Some(format!("{seq} was offered before"))
        } else if seq - self.next_seq >= MAX_REORDER {
            Some(format!(
                "{seq} is {} ahead of the next expected {}, the limit is {MAX_REORDER}",
                seq - self.next_seq,
                self.next_seq
            ))
        } else {
            None
        };
        let q = match problem {
            None => q,
            Some(detail) => {
                let id = match q {
                    Queued::Valid(o, d) => {
                        self.release(d);
                        Some(o.id)
                    }
                    Queued::Refused(e) => e.id,
                };
                self.refuse(OfferError {
                    seq: Some(seq),
                    id,
                    field: "seq",
                    detail,
                });
                return;
            }
        };
        let payload = match &q {
            Queued::Valid(_, AmData::Eager(bytes)) => bytes.len() as u64,
            _ => 0,
        };
        if let Err((q, over)) = self.queued.insert(seq, q, payload) {
            self.report.reorder_peak_bytes = self.queued.peak();
            let id = match q {
                Queued::Valid(o, d) => {
                    self.release(d);
                    Some(o.id)
                }
                Queued::Refused(e) => e.id,
            };
            let e = NetError::ReorderFull {
                stream: self.stream.clone(),
                seq,
                id,
                next_seq: self.next_seq,
                waiting: self.queued.len(),
                held: over.held,
                limit: over.limit,
            };
            self.ack(seq, AckStatus::Refused, &e.to_string());
            self.failure.get_or_insert(e);
            return;
        }
        self.report.reorder_peak_bytes = self.queued.peak();
    }

    fn release(&self, data: AmData) {
        if let AmData::Rendezvous(desc) = data {
            self.worker.release_data(desc);
        }
    }

    /// Starts the transfers of the queued offers in order while the ring
    /// has room; whether it stopped for want of room.
    fn admit(&mut self) -> Result<bool, NetError> {
        loop {
            match self.admit_one(None)? {
                Admitted::Done => {}
                Admitted::Blocked => return Ok(true),
                Admitted::Nothing => return Ok(false),
            }
        }
    }

    /// Takes the next offer in order, if it is there: refuses it, or
    /// reserves its slot (waiting up to `wait` for room) and starts its
    /// transfer.
    fn admit_one(&mut self, wait: Option<Duration>) -> Result<Admitted, NetError> {
        if self.queued.first_seq() != Some(self.next_seq) {
            return Ok(Admitted::Nothing);
        }
        if self.in_flight.len() >= self.opts.max_in_flight {
            return Ok(Admitted::Blocked);
        }
        let Some((seq, q, cost)) = self.queued.pop_first() else {
            return Ok(Admitted::Nothing);
        };
        let (offer, data) = match q {
            Queued::Refused(e) => {
                self.next_seq += 1;
                self.refuse(e);
                return Ok(Admitted::Done);
            }
            Queued::Valid(offer, data) => (offer, data),
        };
        if self.ids.contains(&offer.id) {
            let e = OfferError {
                seq: Some(seq),
                id: Some(offer.id),
                field: "id",
                detail: "a duplicate: a tensor of that id is still in flight or in the ring".into(),
            };
            return Ok(self.pass_over(data, e));
        }
        let nbytes = offer.meta.nbytes();
        let reserved = match wait {
            None => self.producer.try_register_sized(&offer.id, nbytes),
            // Sleeps on the ring's futex until the consumer makes room.
            Some(t) => self
                .producer
                .register_sized_timeout(&offer.id, nbytes, Some(t)),
        };
        match reserved {
            Ok(slot) => {
                self.next_seq += 1;
                self.start(slot, offer, data)?;
                Ok(Admitted::Done)
            }
            Err(StreamError::Full { .. }) | Err(StreamError::Timeout { .. }) => {
                self.report.ring_full_waits += 1;
                self.queued.put_back(seq, Queued::Valid(offer, data), cost);
                Ok(Admitted::Blocked)
            }
            Err(StreamError::BadId { len, max }) => {
                let e = OfferError {
                    seq: Some(seq),
                    id: Some(offer.id),
                    field: "id",
                    detail: format!("{len} bytes, the limit is {max}"),
                };
                Ok(self.pass_over(data, e))
            }
            Err(e) => {
                self.release(data);
                Err(e.into())
            }
        }
    }

    /// Passes over a refused offer in its turn: its seq is used up, its
    /// data released, the refusal reported and acknowledged.
    fn pass_over(&mut self, data: AmData, e: OfferError) -> Admitted {
        self.next_seq += 1;
        self.release(data);
        self.refuse(e);
        Admitted::Done
    }

    /// Reports a refusal and acknowledges it under the seq it claimed.
    fn refuse(&mut self, e: OfferError) {
        let seq = e.seq.unwrap_or(u64::MAX);
        self.ack(seq, AckStatus::Refused, &e.to_string());
        self.report.refused.push(e);
    }

    /// Lands `offer` in `slot`: a rendezvous receive straight into the
    /// slot, or a copy of eager bytes.
    fn start(&mut self, mut slot: Slot<'p>, offer: Offer, data: AmData) -> Result<(), NetError> {
        self.ids.insert(&offer.id);
        let len = offer.meta.nbytes() as usize;
        let offset = slot.payload_offset();
        // In bounds: the offset is below payload_bytes and a reservation
        // of `len` bytes from it lies in the mapping (mirror included);
        // checked all the same before UCX is told to write there.
        let dst = self.region.addr().wrapping_add(offset as usize);
        if !self.region.contains(dst, len) {
            self.release(data);
            slot.abandon_with(AbandonReason::from(
                "the receiver's slot lies outside its payload mapping",
            ));
            return Err(NetError::Protocol(format!(
                "slot at offset {offset} + {len} bytes lies outside the {}-byte payload mapping",
                self.region.len()
            )));
        }
        self.report.lowest_offset = self.report.lowest_offset.min(offset);
        self.report.highest_end = self.report.highest_end.max(offset + len as u64);
        match data {
            AmData::Eager(bytes) => {
                self.report.copied += 1;
                slot.payload_mut()[..len].copy_from_slice(&bytes[..len]);
                self.commit(slot, offer)
            }
            AmData::Rendezvous(desc) => {
                self.report.zero_copy += 1;
                self.receive_into(slot, offer, desc, dst, len)
            }
            // Longer than the payload ring, so refused by `wire::parse`
            // before: never here.
            AmData::Discarded => {
                slot.abandon_with(AbandonReason::from(
                    "the offer's eager payload was too long to copy",
                ));
                Err(NetError::Protocol(format!(
                    "offer #{} came with an eager payload too long to copy",
                    offer.seq
                )))
            }
        }
    }

    fn receive_into(
        &mut self,
        slot: Slot<'p>,
        offer: Offer,
        desc: DataDesc,
        dst: *mut u8,
        len: usize,
    ) -> Result<(), NetError> {
        // SAFETY: `dst .. dst + len` is the reservation of `slot`, inside
        // the registered region (checked by the caller): nobody else
        // writes it (the slot handle is its only writer, held in
        // `in_flight` until the receive completes), the consumer does not
        // read it before the commit, and the mapping lives as long as the
        // producer this receiver borrows. On an error the endpoint's
        // forced close or the worker's destruction ends the receive before
        // the slot is dropped (field order of `Receiver`).
        match unsafe { self.worker.recv_data(desc, dst, len, Some(&self.region)) } {
            Ok(None) => self.commit(slot, offer),
            Ok(Some(request)) => {
                self.in_flight.insert(request, Transfer { slot, offer });
                Ok(())
            }
            Err(NetError::Ucx { status, .. }) => {
                slot.abandon_with(ucx_reason("the UCX receive failed", status));
                self.ack(offer.seq, AckStatus::Failed, &status.to_string());
                Err(NetError::TransferFailed {
                    id: offer.id,
                    status,
                })
            }
            Err(e) => Err(e),
        }
    }

    fn completed(
        &mut self,
        request: usize,
        status: ucx_sys::ucs_status_t,
        length: usize,
    ) -> Result<(), NetError> {
        let Some(Transfer { slot, offer }) = self.in_flight.remove(&request) else {
            // A receive abort() gave up on: UCX is done with its slot now.
            if let Some(transfer) = self.unended.remove(&request) {
                self.worker.free_request(request);
                // Abandoned with the reason abort() set: why it gave up.
                drop(transfer.slot);
            }
            return Ok(());
        };
        self.worker.free_request(request);
        if status != ucx_sys::ucs_status_t::UCS_OK || length as u64 != offer.meta.nbytes() {
            let status = if status == ucx_sys::ucs_status_t::UCS_OK {
                ucx_sys::ucs_status_t::UCS_ERR_MESSAGE_TRUNCATED
            } else {
                status
            };
            // Never published half written; the consumer is told UCX's word.
            slot.abandon_with(ucx_reason("the UCX receive failed", status));
            self.ack(offer.seq, AckStatus::Failed, &status.to_string());
            return Err(NetError::TransferFailed {
                id: offer.id,
                status,
            });
        }
        self.commit(slot, offer)
    }

    fn commit(&mut self, slot: Slot<'p>, offer: Offer) -> Result<(), NetError> {
        let nbytes = offer.meta.nbytes();
        match slot.commit(offer.meta) {
            Ok(()) => {
                self.report.committed += 1;
                self.report.bytes += nbytes;
                if let Some(counter) = self.progress {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                self.ack(offer.seq, AckStatus::Committed, "");
                Ok(())
            }
            // The reservation is the offer's own size, so a refusal means
            // a bug; the returned slot is dropped (abandoned).
            Err(refused) => Err(NetError::Stream(refused.error)),
        }
    }

    fn ack(&mut self, seq: u64, status: AckStatus, message: &str) {
        let Some(ep) = &self.ep else { return };
        let header = wire::encode_ack(seq, status, message);
        if let Err(over) = self.ack_bytes.charge(ack_cost(&header)) {
            // Not sent: the stream ends (the peer does not read them).
            if self.failure.is_none() {
                self.failure = Some(NetError::AcksUnread {
                    stream: self.stream.clone(),
                    held: over.held,
                    limit: over.limit,
                });
            }
            return;
        }
        // SAFETY: the header is kept in `self.acks` until its send
        // completes (or the endpoint is closed and the worker destroyed).
        match unsafe { ep.am_send(wire::AM_ID, &header, &[], false, None) } {
            Ok(Some(request)) => {
                self.report.ack_peak_bytes = self.ack_bytes.peak();
                self.acks.insert(request, header);
            }
            // Sent already: nothing held.
            Ok(None) => self.ack_bytes.credit(ack_cost(&header)),
            // The endpoint is failing: its error event ends the run.
            Err(_) => self.ack_bytes.credit(ack_cost(&header)),
        }
    }

    fn wait_for_room(&mut self) -> Result<(), NetError> {
        // A short wait keeps UCX progressing (acknowledgements, new
        // offers) while the consumer drains.
        self.admit_one(Some(Duration::from_millis(5)))?;
        Ok(())
    }

    fn flush_acks(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.acks.is_empty() && Instant::now() < deadline {
            for event in self.worker.take_events() {
                if let Event::SendDone { request, .. } = event {
                    if let Some(header) = self.acks.remove(&request) {
                        self.ack_bytes.credit(ack_cost(&header));
                        self.worker.free_request(request);
                    }
                }
            }
            if self.acks.is_empty() {
                break;
            }
            let _ = self.worker.wait(Duration::from_millis(10));
        }
    }

    /// Ends every transfer in flight: the endpoint is closed by force, the
    /// slots of the receives UCX then ends are dropped, which abandons
    /// their positions (with `cause`'s reason: the consumer learns why),
    /// the others are held in `unended`, and queued offers are released.
    fn abort(&mut self, cause: &NetError) {
        let reason = cause.abandon_reason();
        for transfer in self.in_flight.values_mut() {
            transfer.slot.set_abandon_reason(reason.clone());
        }
        if let Some(ep) = self.ep.take() {
            ep.close(true, Duration::from_millis(500));
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        while !self.in_flight.is_empty() && Instant::now() < deadline {
            for event in self.worker.take_events() {
                if let Event::RecvDone { request, .. } = event {
                    if self.in_flight.remove(&request).is_some() {
                        self.worker.free_request(request);
                    }
                }
            }
            let _ = self.worker.wait(Duration::from_millis(10));
        }
        // Receives UCX has not ended: a forced close does not end a
        // rendezvous receive on UCX 1.13 (seen in every run of
        // tests/adversarial.rs's vanishing peer), so UCX may still write
        // into their slots. Each keeps its slot, neither committed nor
        // abandoned, until UCX reports the receive ended (`completed`) or
        // the worker is destroyed (`unended` is dropped after it): no
        // other reservation can get those bytes before.
        for (request, transfer) in self.in_flight.drain() {
            self.worker.cancel_request(request);
            self.unended.insert(request, transfer);
        }
        for (request, _) in self.acks.drain() {
            self.worker.free_request(request);
        }
        self.ack_bytes.clear();
        while let Some((_, q, _)) = self.queued.pop_first() {
            if let Queued::Valid(_, d) = q {
                self.release(d);
            }
        }
    }
}

/// What an acknowledgement waiting to be sent is charged: its header and
/// `ACK_ENTRY_BYTES`.
fn ack_cost(header: &[u8]) -> u64 {
    header.len() as u64 + ACK_ENTRY_BYTES
}

#[cfg(test)]
mod tests {
    use super::{ack_cost, ACK_ENTRY_BYTES};

    #[test]
    fn an_acknowledgement_is_charged_its_header_and_its_entry() {
        assert_eq!(ack_cost(&[0; 20]), 20 + ACK_ENTRY_BYTES);
        assert_eq!(ack_cost(&[]), ACK_ENTRY_BYTES);
        assert_eq!(ACK_ENTRY_BYTES, 256);
    }
}
