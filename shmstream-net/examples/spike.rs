//! The spike of issue 13: the two receiver-driven ways to land a tensor
//! in memory the receiver owns, measured side by side on the same
//! transport (run with `UCX_TLS=tcp` on loopback):
//!
//! - `get`: the offer (an eager active message) carries the sender's
//!   address and packed remote key; the receiver posts `ucp_get_nbx` into
//!   its registered region;
//! - `am`: the offer is an active message with a rendezvous payload; the
//!   receiver calls `ucp_am_recv_data_nbx` into its region.
//!
//! Each completed landing is acknowledged with a small active message; the
//! sender keeps `WINDOW` offers out. Prints one line per method and size:
//! `spike METHOD SIZE GB/s`. The receiver in `shmstream-net` keeps `am`
//! (see docs/network.md).
//!
//! ```sh
//! UCX_TLS=tcp cargo run --release -p shmstream-net --example spike [MiB_total]
//! ```

use shmstream_net::ucx::{AmData, Context, Endpoint, Event, Listener, Worker};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const AM: u32 = 0x5350;
/// Offers out at most (fewer for sizes of which the region holds fewer).
const WINDOW: usize = 16;
const REGION: usize = 256 << 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Method {
    Get,
    Am,
}

fn receiver(method: Method, size: usize, count: usize, tx: mpsc::Sender<SocketAddr>) {
    let ctx = Context::new().unwrap();
    let worker = Worker::new(&ctx).unwrap();
    worker.set_am_handler(AM).unwrap();
    let mut mem = vec![0u8; REGION].into_boxed_slice();
    // SAFETY: `mem` outlives `region` (dropped first, declared later).
    let region = unsafe { ctx.map(mem.as_mut_ptr(), REGION) }.unwrap();
    let listener = Listener::bind(&worker, &"127.0.0.1:0".parse().unwrap()).unwrap();
    tx.send(listener.local_addr().unwrap()).unwrap();
    let mut ep: Option<Endpoint> = None;
    let mut rkey = None;
    let mut pending: HashMap<usize, u64> = HashMap::new();
    let (mut done, mut next_slot) = (0usize, 0usize);
    let slots = REGION / size;
    let mut acks: Vec<Vec<u8>> = Vec::new();
    while done < count {
        worker.wait(Duration::from_millis(50)).unwrap();
        worker.progress();
        for event in worker.take_events() {
            let mut landed = None;
            match event {
                Event::ConnRequest(req) => ep = Some(Endpoint::accept(&worker, req).unwrap()),
                Event::Am(msg) => {
                    let seq = u64::from_le_bytes(msg.header[..8].try_into().unwrap());
                    let dst = region.addr().wrapping_add(next_slot % slots * size);
                    next_slot += 1;
                    let r = match (method, msg.data) {
                        (Method::Am, AmData::Rendezvous(desc)) => {
                            // SAFETY: a distinct slot of the registered region.
                            unsafe { worker.recv_data(desc, dst, size, Some(&region)) }.unwrap()
                        }
                        (Method::Get, AmData::Eager(_)) => {
                            let e = ep.as_ref().unwrap();
                            // SAFETY: the spike's own sender packed these bytes.
                            let key = rkey.get_or_insert_with(|| {
                                unsafe { e.unpack_rkey(&msg.header[16..]) }.unwrap()
                            });
                            let remote = u64::from_le_bytes(msg.header[8..16].try_into().unwrap());
                            // SAFETY: as above; the key lives to the end.
                            unsafe { e.get(dst, size, remote, key, Some(&region)) }.unwrap()
                        }
                        (m, d) => panic!("{m:?} got {d:?}"),
                    };
                    match r {
                        Some(req) => {
                            pending.insert(req, seq);
                        }
                        None => landed = Some(seq),
                    }
                }
                Event::RecvDone {
                    request, status, ..
                }
                | Event::SendDone { request, status } => {
                    assert!(!status.is_err(), "{status}");
                    if let Some(seq) = pending.remove(&request) {
                        worker.free_request(request);
                        landed = Some(seq);
                    } else {
                        worker.free_request(request); // an ack
                    }
                }
                Event::EpError(s) => panic!("receiver: {s}"),
            }
            if let Some(seq) = landed {
                done += 1;
                let h = seq.to_le_bytes().to_vec();
                // SAFETY: the header is kept in `acks` to the end.
                let r = unsafe { ep.as_ref().unwrap().am_send(AM, &h, &[], false, None) }.unwrap();
                if r.is_some() {
                    acks.push(h);
                }
            }
        }
    }
    // Let the last acknowledgements go out.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(200) {
        worker.progress();
        for e in worker.take_events() {
            if let Event::SendDone { request, .. } = e {
                worker.free_request(request);
            }
        }
        std::thread::yield_now();
    }
    drop(ep);
    drop(rkey);
    drop(region);
    drop(mem);
}

fn sender(method: Method, size: usize, count: usize, addr: SocketAddr) -> f64 {
    let window = WINDOW.min(REGION / size);
    let ctx = Context::new().unwrap();
    let worker = Worker::new(&ctx).unwrap();
    worker.set_am_handler(AM).unwrap();
    let mut mem = vec![7u8; size * window].into_boxed_slice();
    // SAFETY: `mem` outlives `region`.
    let region = unsafe { ctx.map(mem.as_mut_ptr(), size * window) }.unwrap();
    let packed = region.pack_rkey().unwrap();
    let ep = Endpoint::connect(&worker, &addr).unwrap();
    let mut headers: HashMap<usize, Vec<u8>> = HashMap::new();
    let (mut sent, mut acked) = (0usize, 0usize);
    let start = Instant::now();
    while acked < count {
        while sent < count && sent - acked < window {
            let slot = sent % window;
            let src = region.addr().wrapping_add(slot * size);
            let mut h = (sent as u64).to_le_bytes().to_vec();
            let r = match method {
                Method::Am => {
                    // SAFETY: the slot is not reused before its ack.
                    let data = unsafe { std::slice::from_raw_parts(src, size) };
                    // SAFETY: header kept in `headers` until completion.
                    unsafe { ep.am_send(AM, &h, data, true, Some(&region)) }.unwrap()
                }
                Method::Get => {
                    h.extend_from_slice(&(src as u64).to_le_bytes());
                    h.extend_from_slice(&packed);
                    // SAFETY: as above, an eager header only.
                    unsafe { ep.am_send(AM, &h, &[], false, None) }.unwrap()
                }
            };
            if let Some(r) = r {
                headers.insert(r, h);
            }
            sent += 1;
        }
        worker.wait(Duration::from_millis(50)).unwrap();
        worker.progress();
        for event in worker.take_events() {
            match event {
                Event::Am(_) => acked += 1,
                Event::SendDone { request, status } => {
                    assert!(!status.is_err(), "{status}");
                    headers.remove(&request);
                    worker.free_request(request);
                }
                Event::EpError(s) => panic!("sender: {s}"),
                _ => {}
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(ep);
    drop(region);
    drop(mem);
    (count * size) as f64 / secs / 1e9
}

fn main() {
    let total_mib: usize = std::env::args()
        .nth(1)
        .map_or(512, |a| a.parse().expect("MiB"));
    for size in [64 << 10, 2 << 20, 64 << 20] {
        for method in [Method::Get, Method::Am] {
            let count = (total_mib << 20) / size;
            let count = count.max(4);
            let (tx, rx) = mpsc::channel();
            let r = std::thread::spawn(move || receiver(method, size, count, tx));
            let addr = rx.recv().unwrap();
            let gbs = sender(method, size, count, addr);
            r.join().unwrap();
            println!("spike {method:?} {size} {gbs:.3} GB/s");
        }
    }
}
