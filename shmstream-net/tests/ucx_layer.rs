//! The safe layer under the receiver and sender (`shmstream_net::ucx`):
//! remote keys and one-sided reads (the spike's method (a)), and a
//! listener that takes one sender and rejects a second.

use shmstream::{in_process, StreamConfig, StreamId};
use shmstream_net::ucx::{Context, Endpoint, Event, Listener, Worker};
use shmstream_net::{NetError, Receiver, ReceiverOptions, Sender, SenderOptions};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn events_until(worker: &Rc<Worker>, mut want: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        worker.wait(Duration::from_millis(20)).unwrap();
        worker.progress();
        for e in worker.take_events() {
            let done = want(&e);
            seen.push(e);
            if done {
                return seen;
            }
        }
        assert!(Instant::now() < deadline, "no such event in 10 s: {seen:?}");
    }
}

#[test]
fn a_remote_key_lets_the_peer_read_the_registered_bytes() {
    std::env::set_var("UCX_TLS", "tcp");
    let (addr_tx, addr_rx) = mpsc::channel();
    let (key_tx, key_rx) = mpsc::channel::<(u64, Vec<u8>)>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    // The owner of the bytes: registers them, hands out address and key,
    // and keeps them registered until the reader is done.
    let owner = std::thread::spawn(move || {
        let ctx = Context::new().unwrap();
        let worker = Worker::new(&ctx).unwrap();
        let mut bytes: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        // SAFETY: `bytes` outlives the region (dropped at the end of the
        // closure, after it).
        let region = unsafe { ctx.map(bytes.as_mut_ptr(), bytes.len()) }.unwrap();
        assert!(region.contains(bytes.as_ptr(), 4096));
        assert!(!region.contains(bytes.as_ptr(), 4097));
        let listener = Listener::bind(&worker, &"127.0.0.1:0".parse().unwrap()).unwrap();
        addr_tx.send(listener.local_addr().unwrap()).unwrap();
        let mut ep = None;
        let events = events_until(&worker, |e| matches!(e, Event::ConnRequest(_)));
        for e in events {
            if let Event::ConnRequest(req) = e {
                ep = Some(Endpoint::accept(&worker, req).unwrap());
            }
        }
        key_tx
            .send((region.addr() as u64, region.pack_rkey().unwrap()))
            .unwrap();
        // Progress (a get over tcp needs this side's progress) until done.
        while done_rx.try_recv().is_err() {
            worker.wait(Duration::from_millis(5)).unwrap();
            worker.progress();
            worker.take_events();
        }
        drop(ep);
        drop(region);
        bytes
    });
    let ctx = Context::new().unwrap();
    let worker = Worker::new(&ctx).unwrap();
    let ep = Endpoint::connect(&worker, &addr_rx.recv().unwrap()).unwrap();
    let (remote, packed) = loop {
        worker.progress();
        if let Ok(k) = key_rx.try_recv() {
            break k;
        }
        worker.wait(Duration::from_millis(5)).unwrap();
    };
    // SAFETY: the bytes pack_rkey gave the owner, unchanged.
    let rkey = unsafe { ep.unpack_rkey(&packed) }.unwrap();
    let mut dst = vec![0u8; 4096];
    // SAFETY: `dst` outlives the region and the read (waited for below).
    let region = unsafe { ctx.map(dst.as_mut_ptr(), dst.len()) }.unwrap();
    // SAFETY: `dst` is ours alone, registered, alive until the read's
    // completion below; the key lives to the end.
    let r = unsafe { ep.get(dst.as_mut_ptr(), 4096, remote, &rkey, Some(&region)) }.unwrap();
    if let Some(request) = r {
        let events = events_until(
            &worker,
            |e| matches!(e, Event::SendDone { request: q, .. } if *q == request),
        );
        for e in events {
            if let Event::SendDone { request: q, status } = e {
                assert!(!status.is_err(), "{status}");
                worker.free_request(q);
            }
        }
    }
    done_tx.send(()).unwrap();
    let bytes = owner.join().unwrap();
    assert_eq!(dst, bytes, "the read did not bring the owner's bytes");
    drop(rkey);
    drop(region);
}

#[test]
fn a_second_sender_is_rejected_and_the_first_one_streams_on() {
    std::env::set_var("UCX_TLS", "tcp");
    let cfg = StreamConfig::new(StreamId {
        request_id: format!("two-{}", std::process::id()),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(64)
    .with_payload_bytes(1 << 20);
    let (producer, mut consumer) = in_process(&cfg).unwrap();
    let mut receiver = Receiver::bind(
        &producer,
        &"127.0.0.1:0".parse().unwrap(),
        ReceiverOptions::default(),
    )
    .unwrap();
    let addr = receiver.local_addr().unwrap();
    let senders = std::thread::spawn(move || {
        let meta = shmstream::TensorMeta::new(shmstream::DType::U8, &[64]).unwrap();
        let mut first = Sender::connect(&addr, SenderOptions::default()).unwrap();
        first.send("a", &meta, |b| b.fill(1)).unwrap();
        first.wait_acked(0).unwrap();
        // The second connects while the first is in the middle.
        let opts = SenderOptions {
            stall_timeout: Duration::from_secs(5),
            ..SenderOptions::default()
        };
        let second = Sender::connect(&addr, opts).and_then(|mut s| {
            s.send("x", &meta, |b| b.fill(9))?;
            s.finish()
        });
        first.send("b", &meta, |b| b.fill(2)).unwrap();
        (first.finish().unwrap().committed, second)
    });
    let report = receiver.run().unwrap();
    let (committed, second) = senders.join().unwrap();
    assert_eq!((report.committed, committed), (2, 2));
    match second {
        Err(NetError::PeerFailed { .. }) | Err(NetError::Stalled { .. }) => {}
        other => panic!("the second sender was not refused: {other:?}"),
    }
    assert_eq!(consumer.poll().unwrap(), 2);
    assert_eq!(consumer.item(0).unwrap().id(), "a");
    assert_eq!(consumer.item(1).unwrap().id(), "b");
}
