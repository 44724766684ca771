//! The sender: registers its source buffers with UCX and offers each
//! tensor to a [`Receiver`](crate::Receiver) as an active message whose
//! payload goes by rendezvous, so the receiver fetches the bytes straight
//! into the slot it reserved.
//!
//! A buffer stays registered and untouched until the receiver
//! acknowledges its offer (committed, refused or failed); at most
//! [`SenderOptions::window`] offers and [`SenderOptions::max_bytes`] of
//! buffers are out at once, so a full ring at the receiver (which stops
//! taking offers) stops the sender too.

use crate::error::NetError;
use crate::ucx::{AmData, Context, Endpoint, Event, MemRegion, Worker};
use crate::wire::{self, AckStatus, Message};
use shmstream::{TensorMeta, MAX_ID_LEN};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The sender's settings.
#[derive(Clone, Debug)]
pub struct SenderOptions {
    /// Offers out (not yet acknowledged) at most.
    pub window: usize,
    /// Bytes of registered buffers at most (a tensor larger than this is
    /// refused by [`Sender::send`]).
    pub max_bytes: u64,
    /// How long the sender waits for an acknowledgement (or the
    /// connection) while it has nothing else to do.
    pub stall_timeout: Duration,
    /// Tensors of at least this many bytes go by rendezvous, which the
    /// receiver lands straight in the slot (zero copy); smaller ones are
    /// left to UCX, which sends them eagerly with the offer, and the
    /// receiver copies them into the slot (a copy of a few KiB costs less
    /// than the rendezvous round trips, and on a busy host their wake-ups).
    /// 0: every tensor by rendezvous. Default 8 KiB.
    pub rendezvous_from: u64,
}

impl Default for SenderOptions {
    fn default() -> Self {
        SenderOptions {
            window: 64,
            max_bytes: 512 << 20,
            stall_timeout: Duration::from_secs(10),
            rendezvous_from: 8 << 10,
        }
    }
}

/// What a sender did.
#[derive(Clone, Debug, Default)]
pub struct SendReport {
    /// Tensors offered.
    pub offered: u64,
    /// Tensors the receiver committed.
    pub committed: u64,
    /// Their bytes.
    pub bytes: u64,
    /// From the first offer to the last acknowledgement.
    pub elapsed: Duration,
    /// Buffers registered (each once, then reused).
    pub buffers_registered: u64,
}

impl SendReport {
    /// Bytes per second committed at the receiver.
    pub fn bandwidth(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A registered source buffer.
struct Buffer {
    // Declared first: unregistered before its memory is freed.
    region: MemRegion,
    _mem: Box<[u8]>,
    busy: bool,
}

struct Out {
    buffer: usize,
    /// Kept alive until the send completes (UCX may read it until then).
    _header: Vec<u8>,
    nbytes: u64,
    /// The send request, until it completes.
    request: Option<usize>,
    acked: bool,
}

/// The sending end: one connection to a receiver.
pub struct Sender {
    // Drop order: the endpoint first (fails what is in flight), then the
    // buffers (unregistered), then the worker and the context.
    ep: Endpoint,
    /// The end message's header, alive until the endpoint is closed.
    end_header: Vec<u8>,
    out: HashMap<u64, Out>,
    requests: HashMap<usize, u64>,
    buffers: Vec<Buffer>,
    worker: Rc<Worker>,
    ctx: Rc<Context>,
    opts: SenderOptions,
    next_seq: u64,
    registered_bytes: u64,
    failure: Option<NetError>,
    report: SendReport,
    started: Option<Instant>,
    last_activity: Instant,
    end_sent: bool,
    /// The seq the end went under (the offers' count), once sent.
    end_seq: Option<u64>,
    end_acked: bool,
    unplaced: u64,
}

/// The request map's key for the end message.
const END_SEQ: u64 = u64::MAX;

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("next_seq", &self.next_seq)
            .field("out", &self.out.len())
            .field("buffers", &self.buffers.len())
            .finish()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // Sends still out (an early error): UCX releases each when it ends,
        // which the endpoint's forced close (the first field dropped next)
        // makes happen before the buffers go.
        for (request, _) in self.requests.drain() {
            self.worker.free_request(request);
        }
    }
}

impl Sender {
    /// Connects to a receiver listening at `addr`.
    ///
    /// # Errors
    ///
    /// [`NetError::Unavailable`] without libucx, [`NetError::Ucx`]; a
    /// receiver that is not there shows as [`NetError::PeerFailed`] at the
    /// first [`send`](Self::send) or [`finish`](Self::finish).
    pub fn connect(addr: &SocketAddr, opts: SenderOptions) -> Result<Sender, NetError> {
        let ctx = Context::new()?;
        let worker = Worker::new(&ctx)?;
        worker.set_am_handler(wire::AM_ID)?;
        let ep = Endpoint::connect(&worker, addr)?;
        Ok(Sender {
            ep,
            end_header: Vec::new(),
            out: HashMap::new(),
            requests: HashMap::new(),
            buffers: Vec::new(),
            worker,
            ctx,
            opts,
            next_seq: 0,
            registered_bytes: 0,
            failure: None,
            report: SendReport::default(),
            started: None,
            last_activity: Instant::now(),
            end_sent: false,
            end_seq: None,
            end_acked: false,
            unplaced: 0,
        })
    }

    /// Offers a tensor: `fill` writes its `meta.nbytes()` bytes into a
    /// registered buffer, which stays untouched until the receiver
    /// acknowledges. Waits (progressing UCX, never spinning) while the
    /// window is full.
    ///
    /// # Errors
    ///
    /// [`NetError::TooLarge`] for a tensor over `max_bytes`,
    /// [`NetError::Refused`] when the receiver refused an earlier offer,
    /// [`NetError::PeerFailed`], [`NetError::Stalled`], [`NetError::Ucx`].
    pub fn send(
        &mut self,
        id: &str,
        meta: &TensorMeta,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), NetError> {
        let nbytes = meta.nbytes();
        if nbytes > self.opts.max_bytes {
            return Err(NetError::TooLarge {
                nbytes,
                max: self.opts.max_bytes,
            });
        }
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(NetError::Stream(shmstream::StreamError::BadId {
                len: id.len(),
                max: MAX_ID_LEN,
            }));
        }
        self.started.get_or_insert_with(Instant::now);
        let buffer = self.buffer_for(nbytes)?;
        let mut header = Vec::with_capacity(64);
        wire::encode_offer(&mut header, self.next_seq, id, meta);
        let b = &mut self.buffers[buffer];
        let len = nbytes as usize;
        // SAFETY: the buffer is not busy (no send reads it), so this is
        // its only access; `len` is within its length (buffer_for).
        let data = unsafe { std::slice::from_raw_parts_mut(b.region.addr(), len) };
        fill(data);
        b.busy = true;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.send_raw(header, buffer, nbytes, seq)
    }

    /// Offers a message with the given header and the first `nbytes` of
    /// buffer `buffer`; the buffer stays busy until acknowledged.
    fn send_raw(
        &mut self,
        header: Vec<u8>,
        buffer: usize,
        nbytes: u64,
        seq: u64,
    ) -> Result<(), NetError> {
        let b = &self.buffers[buffer];
        // SAFETY: the first `nbytes` of the buffer are initialised memory
        // owned by it.
        let data = unsafe { std::slice::from_raw_parts(b.region.addr(), nbytes as usize) };
        let rndv = nbytes >= self.opts.rendezvous_from;
        // SAFETY: the header's heap bytes are kept in `self.out` and the
        // buffer stays busy (unwritten, registered) until the send
        // completes and the offer is acknowledged; `region` covers the
        // buffer.
        let r = unsafe {
            self.ep
                .am_send(wire::AM_ID, &header, data, rndv, Some(&b.region))
        }?;
        if let Some(request) = r {
            self.requests.insert(request, seq);
        }
        self.out.insert(
            seq,
            Out {
                buffer,
                _header: header,
                nbytes,
                request: r,
                acked: false,
            },
        );
        self.report.offered += 1;
        Ok(())
    }

    /// Serves the transfers in flight (a rendezvous over tcp needs the
    /// sender's progress) and handles acknowledgements until `deadline`,
    /// sleeping in `poll` on the worker between events: what a paced
    /// sender calls between tensors instead of sleeping.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn progress_until(&mut self, deadline: Instant) -> Result<(), NetError> {
        loop {
            self.pump(false)?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            self.worker
                .wait((deadline - now).min(Duration::from_millis(50)))?;
        }
    }

    /// A free registered buffer of at least `nbytes`, waiting for
    /// acknowledgements while the window or the byte budget is used up.
    fn buffer_for(&mut self, nbytes: u64) -> Result<usize, NetError> {
        let want = nbytes
            .max(4096)
            .next_power_of_two()
            .min(self.opts.max_bytes.max(nbytes));
        loop {
            self.pump(false)?;
            if self.out.len() < self.opts.window {
                // The smallest free buffer that fits.
                let fit = self
                    .buffers
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| !b.busy && b.region.len() as u64 >= nbytes)
                    .min_by_key(|(_, b)| b.region.len())
                    .map(|(i, _)| i);
                if let Some(i) = fit {
                    return Ok(i);
                }
                // Make room in the budget by unregistering free buffers
                // too small for this tensor, then register a new one.
                while self.registered_bytes + want > self.opts.max_bytes {
                    let Some(i) = self.buffers.iter().position(|b| !b.busy) else {
                        break;
                    };
                    let b = self.buffers.swap_remove(i);
                    self.registered_bytes -= b.region.len() as u64;
                    self.renumber(self.buffers.len(), i);
                }
                if self.registered_bytes + want <= self.opts.max_bytes {
                    return self.register(want as usize);
                }
            }
            self.pump(true)?;
        }
    }

    /// After `swap_remove(i)` moved the buffer at `from` to `i`.
    fn renumber(&mut self, from: usize, to: usize) {
        for o in self.out.values_mut() {
            if o.buffer == from {
                o.buffer = to;
            }
        }
    }

    fn register(&mut self, len: usize) -> Result<usize, NetError> {
        let mut mem = vec![0u8; len].into_boxed_slice();
        // SAFETY: the boxed slice's heap memory never moves and is freed
        // only after the region (field order of `Buffer`).
        let region = unsafe { self.ctx.map(mem.as_mut_ptr(), len) }?;
        self.buffers.push(Buffer {
            region,
            _mem: mem,
            busy: false,
        });
        self.registered_bytes += len as u64;
        self.report.buffers_registered += 1;
        Ok(self.buffers.len() - 1)
    }

    /// Handles what arrived; with `block`, waits (in `poll`) for something
    /// to arrive first, failing after the stall timeout.
    fn pump(&mut self, block: bool) -> Result<(), NetError> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        self.worker.progress();
        let mut events = self.worker.take_events();
        if events.is_empty() && block {
            if self.last_activity.elapsed() > self.opts.stall_timeout {
                return Err(NetError::Stalled {
                    secs: self.opts.stall_timeout.as_secs_f64(),
                    in_flight: self.out.len(),
                    offers: self.next_seq,
                });
            }
            self.worker.wait(Duration::from_millis(50))?;
            self.worker.progress();
            events = self.worker.take_events();
        }
        if !events.is_empty() {
            self.last_activity = Instant::now();
        }
        for event in events {
            self.handle(event)?;
        }
        Ok(())
    }

    fn handle(&mut self, event: Event) -> Result<(), NetError> {
        match event {
            Event::SendDone { request, status } => {
                self.worker.free_request(request);
                if let Some(seq) = self.requests.remove(&request) {
                    if seq == END_SEQ {
                        self.end_sent = true;
                        return Ok(());
                    }
                    if status.is_err() {
                        return Err(NetError::PeerFailed {
                            status,
                            in_flight: self.out.len(),
                        });
                    }
                    if let Some(o) = self.out.get_mut(&seq) {
                        o.request = None;
                    }
                    self.retire(seq);
                }
            }
            Event::Am(msg) => {
                if let AmData::Rendezvous(desc) = msg.data {
                    self.worker.release_data(desc);
                }
                match wire::parse(&msg.header, 0, 0) {
                    Ok(Message::Ack {
                        seq,
                        status,
                        message,
                    }) => self.acked(seq, status, message)?,
                    Ok(_) => return Err(NetError::Protocol("the receiver sent an offer".into())),
                    Err(e) => return Err(NetError::Protocol(e.to_string())),
                }
            }
            // The receiver closes once it acknowledged the end: its close
            // may come in the same progress as that acknowledgement.
            Event::EpError(_) if self.end_acked && self.out.is_empty() => {}
            Event::EpError(status) => {
                return Err(NetError::PeerFailed {
                    status,
                    in_flight: self.out.len(),
                })
            }
            Event::ConnRequest(_) | Event::RecvDone { .. } => {}
        }
        Ok(())
    }

    fn acked(&mut self, seq: u64, status: AckStatus, message: String) -> Result<(), NetError> {
        if self.end_seq == Some(seq) && status == AckStatus::Committed {
            self.end_acked = true;
            return Ok(());
        }
        let Some(o) = self.out.get_mut(&seq) else {
            // A refusal of a message whose seq the receiver could not read
            // comes under seq u64::MAX; reported by the next call.
            let e = match status {
                AckStatus::Committed => NetError::Protocol(format!(
                    "an acknowledgement of offer #{seq}, which is not out"
                )),
                _ => NetError::Refused {
                    seq,
                    reason: message,
                },
            };
            self.failure.get_or_insert(e);
            return Ok(());
        };
        o.acked = true;
        match status {
            AckStatus::Committed => {
                self.report.committed += 1;
                self.report.bytes += o.nbytes;
            }
            AckStatus::Refused | AckStatus::Failed => {
                self.failure.get_or_insert(NetError::Refused {
                    seq,
                    reason: message,
                });
            }
        }
        self.retire(seq);
        Ok(())
    }

    /// Frees an offer's buffer once it is both sent and acknowledged.
    fn retire(&mut self, seq: u64) {
        if let Some(o) = self.out.get(&seq) {
            if o.acked && o.request.is_none() {
                let buffer = o.buffer;
                self.out.remove(&seq);
                self.buffers[buffer].busy = false;
            }
        }
    }

    /// Sends the end and waits for every acknowledgement.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn finish(mut self) -> Result<SendReport, NetError> {
        self.end_header = wire::encode_end(self.next_seq);
        self.end_seq = Some(self.next_seq);
        // SAFETY: the header is a field, dropped after the endpoint (whose
        // forced close ends the send) and never changed again.
        let sent = unsafe {
            self.ep
                .am_send(wire::AM_ID, &self.end_header, &[], false, None)
        }?;
        match sent {
            Some(request) => {
                self.requests.insert(request, END_SEQ);
            }
            None => self.end_sent = true,
        }
        // The receiver acknowledges the end after its last commit and
        // closes only then: waiting for that keeps its close from racing
        // the end's own completion here.
        while !self.out.is_empty() || !self.end_sent || !self.end_acked {
            self.pump(true)?;
        }
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        self.report.elapsed = self.started.map(|s| s.elapsed()).unwrap_or_default();
        Ok(self.report.clone())
    }

    /// Sends a raw header (tests of the receiver's validation): `data`
    /// goes as the rendezvous payload, from a registered buffer. With
    /// `placed` false (a header whose seq the receiver cannot read) the
    /// offer retires when its send completes, and the refusal comes
    /// through [`wait_failure`](Self::wait_failure).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    #[doc(hidden)]
    pub fn send_raw_header(
        &mut self,
        header: Vec<u8>,
        data: &[u8],
        placed: bool,
    ) -> Result<u64, NetError> {
        self.started.get_or_insert_with(Instant::now);
        let buffer = self.buffer_for(data.len() as u64)?;
        let b = &mut self.buffers[buffer];
        // SAFETY: a free buffer of at least data.len() bytes (buffer_for),
        // accessed only here until it is sent.
        unsafe { std::slice::from_raw_parts_mut(b.region.addr(), data.len()) }
            .copy_from_slice(data);
        b.busy = true;
        let seq = if placed {
            self.next_seq += 1;
            self.next_seq - 1
        } else {
            // Keys of their own, far from the seqs (and from END_SEQ).
            self.unplaced += 1;
            END_SEQ - self.unplaced
        };
        self.send_raw(header, buffer, data.len() as u64, seq)?;
        if !placed {
            self.report.offered -= 1;
            if let Some(o) = self.out.get_mut(&seq) {
                o.acked = true;
            }
            self.retire(seq);
        }
        Ok(seq)
    }

    /// Waits for the acknowledgement of offer `seq` (tests).
    ///
    /// # Errors
    ///
    /// The receiver's refusal as [`NetError::Refused`], and as
    /// [`send`](Self::send).
    #[doc(hidden)]
    pub fn wait_acked(&mut self, seq: u64) -> Result<(), NetError> {
        while self.out.contains_key(&seq) && self.failure.is_none() {
            self.pump(true)?;
        }
        match self.failure.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Progresses until an error is reported or `timeout` passes (tests).
    #[doc(hidden)]
    pub fn wait_failure(&mut self, timeout: Duration) -> Option<NetError> {
        let deadline = Instant::now() + timeout;
        while self.failure.is_none() && Instant::now() < deadline {
            if let Err(e) = self.pump(true) {
                return Some(e);
            }
        }
        self.failure.take()
    }

    /// The sequence number the next offer gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}
