//! A hostile network peer for the receiver's tests: it speaks the wire
//! format through the public UCX layer, but keeps none of the sender's
//! rules (no window, no order, sizes that lie, junk, a disconnect
//! mid-payload). Test-only: nothing of it ships.

#![allow(dead_code)] // each test binary uses a part

use shmstream::{DType, TensorMeta};
use shmstream_net::ucx::{AmData, Context, Endpoint, Event, MemRegion, Worker};
use shmstream_net::wire::{self, encode_offer, AM_ID};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Sends a peer lets wait in UCX at most.
const MAX_PENDING: usize = 4096;

/// Acknowledgements a peer keeps whole.
const KEPT_ACKS: usize = 1024;

/// The largest payload the peer sends from its default buffer.
pub const MAX_PAYLOAD: usize = 4 << 20;

pub struct Hostile {
    // Drop order: the endpoint (fails what is in flight), the region, the
    // buffer, the worker.
    ep: Option<Endpoint>,
    region: MemRegion,
    _buf: Box<[u8]>,
    /// Headers of sends not yet completed (UCX may read them until then).
    headers: Vec<(usize, Vec<u8>)>,
    worker: Rc<Worker>,
    _ctx: Rc<Context>,
    /// The first `KEPT_ACKS` acknowledgements seen: (seq, status,
    /// message); the peer's own memory is in the measured process too.
    pub acks: Vec<(u64, wire::AckStatus, String)>,
    /// Acknowledgements seen in all.
    pub ack_count: u64,
    /// The endpoint failed (the receiver closed it).
    pub ep_failed: bool,
    /// Sends issued.
    pub sent: u64,
}

impl Hostile {
    pub fn connect(addr: &SocketAddr) -> Hostile {
        Self::with_buffer(addr, MAX_PAYLOAD)
    }

    /// Connects with a registered buffer of `len` bytes to send from.
    pub fn with_buffer(addr: &SocketAddr, len: usize) -> Hostile {
        let ctx = Context::new().unwrap();
        let worker = Worker::new(&ctx).unwrap();
        worker.set_am_handler(AM_ID).unwrap();
        let ep = Endpoint::connect(&worker, addr).unwrap();
        let mut buf = vec![0xa5u8; len].into_boxed_slice();
        // SAFETY: the boxed slice never moves and is freed after the
        // region (field order).
        let region = unsafe { ctx.map(buf.as_mut_ptr(), buf.len()) }.unwrap();
        Hostile {
            ep: Some(ep),
            region,
            _buf: buf,
            headers: Vec::new(),
            worker,
            _ctx: ctx,
            acks: Vec::new(),
            ack_count: 0,
            ep_failed: false,
            sent: 0,
        }
    }

    /// An honest offer header of `n` u8 bytes.
    pub fn offer_header(seq: u64, id: &str, n: u64) -> Vec<u8> {
        let mut h = Vec::new();
        encode_offer(&mut h, seq, id, &TensorMeta::new(DType::U8, &[n]).unwrap());
        h
    }

    /// Sends `header` with the first `len` bytes of the buffer, eagerly
    /// (with the message) or by rendezvous; never waits for the receiver.
    pub fn send(&mut self, header: Vec<u8>, len: usize, eager: bool) {
        assert!(len <= self.region.len());
        // The peer's own sends waiting in UCX are memory of the measured
        // process too: past a few thousand, it lets them go out first.
        while self.headers.len() >= MAX_PENDING && !self.ep_failed {
            self.pump();
            let _ = self.worker.wait(Duration::from_millis(1));
        }
        let Some(ep) = &self.ep else { return };
        // SAFETY: the buffer is registered, never written after creation,
        // and outlives every send (dropped after the endpoint, whose
        // forced close ends them); the header is kept until its send
        // completes.
        let data = unsafe { std::slice::from_raw_parts(self.region.addr(), len) };
        // SAFETY: as above.
        match unsafe { ep.am_send(AM_ID, &header, data, !eager, Some(&self.region)) } {
            Ok(Some(request)) => self.headers.push((request, header)),
            Ok(None) => {}
            Err(_) => self.ep_failed = true,
        }
        self.sent += 1;
    }

    /// Sends an honest offer of `n` bytes under `seq`.
    pub fn offer(&mut self, seq: u64, n: usize, eager: bool) {
        let h = Self::offer_header(seq, &format!("h{seq}"), n as u64);
        self.send(h, n, eager);
    }

    /// Progresses (serving its rendezvous sends and reading
    /// acknowledgements) for `d`.
    pub fn progress_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            self.pump();
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let _ = self
                .worker
                .wait((deadline - now).min(Duration::from_millis(5)));
        }
    }

    /// Progresses until every send completed, the endpoint failed, or
    /// `limit` passed.
    pub fn drain(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.headers.is_empty() && !self.ep_failed && Instant::now() < deadline {
            self.pump();
            let _ = self.worker.wait(Duration::from_millis(5));
        }
    }

    /// Progresses until `pred` holds on the acknowledgements, the
    /// endpoint failed, or `limit` passed; whether `pred` held.
    pub fn wait_acks(
        &mut self,
        limit: Duration,
        pred: impl Fn(&[(u64, wire::AckStatus, String)]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            self.pump();
            if pred(&self.acks) {
                return true;
            }
            if self.ep_failed {
                return false;
            }
            let _ = self.worker.wait(Duration::from_millis(5));
        }
        false
    }

    fn pump(&mut self) {
        self.worker.progress();
        for event in self.worker.take_events() {
            match event {
                Event::SendDone { request, .. } => {
                    self.worker.free_request(request);
                    self.headers.retain(|(r, _)| *r != request);
                }
                Event::Am(msg) => {
                    if let AmData::Rendezvous(desc) = msg.data {
                        self.worker.release_data(desc);
                    }
                    if let Ok(wire::Message::Ack {
                        seq,
                        status,
                        message,
                    }) = wire::parse(&msg.header, 0, 0)
                    {
                        self.ack_count += 1;
                        if self.acks.len() < KEPT_ACKS {
                            self.acks.push((seq, status, message));
                        }
                    }
                }
                Event::EpError(_) => self.ep_failed = true,
                Event::ConnRequest(_) | Event::RecvDone { .. } => {}
            }
        }
    }

    /// Progresses (reading what comes, serving its sends) until `ended`
    /// is set (the receiver's run returned), the endpoint failed, or 30 s
    /// passed: a peer that leaves only when the receiver is done with it.
    pub fn serve_until(&mut self, ended: &AtomicBool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ended.load(Ordering::Acquire) && !self.ep_failed && Instant::now() < deadline {
            self.pump();
            let _ = self.worker.wait(Duration::from_millis(5));
        }
    }

    /// Drops the connection at once (a peer that dies).
    pub fn vanish(&mut self) {
        if let Some(ep) = self.ep.take() {
            ep.close(true, Duration::from_millis(200));
        }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.vanish();
        // Sends still out: UCX releases each when it ends.
        for (request, _) in self.headers.drain(..) {
            self.worker.free_request(request);
        }
    }
}

/// Resident memory now and at its peak since the last [`reset_peak`], in
/// bytes (from /proc/self/status).
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak resident memory (VmHWM) to the current one.
pub fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}
