//! One process, two threads: a sender offers tensors over UCX's tcp
//! transport on loopback, the receiver lands them in an in-process stream.

use shmstream::{in_process, DType, StreamConfig, StreamId, TensorMeta};
use shmstream_net::{NetError, Receiver, ReceiverOptions, Sender, SenderOptions};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

/// A receiver for `producer` on a loopback port of its own, and its address.
fn listen(producer: &shmstream::Producer) -> (Receiver<'_>, SocketAddr) {
    let receiver = Receiver::bind(
        producer,
        &"127.0.0.1:0".parse().unwrap(),
        ReceiverOptions::default(),
    )
    .unwrap();
    let addr = receiver.local_addr().unwrap();
    (receiver, addr)
}

fn config(name: &str, capacity: u64, payload: u64) -> StreamConfig {
    StreamConfig::new(StreamId {
        request_id: format!("net-{name}-{}", std::process::id()),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(capacity)
    .with_payload_bytes(payload)
}

fn tcp() {
    std::env::set_var("UCX_TLS", "tcp");
}

fn pattern(seq: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (seq as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
}

/// Spawns a sender of `sizes` (bytes, u8 tensors) to `addr`.
fn spawn_sender(
    addr: SocketAddr,
    sizes: Vec<u64>,
) -> std::thread::JoinHandle<Result<u64, NetError>> {
    std::thread::spawn(move || {
        let mut sender = Sender::connect(&addr, SenderOptions::default())?;
        for (seq, &n) in sizes.iter().enumerate() {
            let meta = TensorMeta::new(DType::U8, &[n]).unwrap();
            sender.send(&format!("t{seq}"), &meta, |b| pattern(seq as u64, b))?;
        }
        Ok(sender.finish()?.committed)
    })
}

#[test]
fn offered_tensors_land_in_their_slots_in_order() {
    tcp();
    let sizes: Vec<u64> = (0..200)
        .map(|i| [56u64, 4096, 65536, 1 << 20][i % 4])
        .collect();
    let total: u64 = sizes.iter().sum();
    let (producer, mut consumer) = in_process(&config("order", 256, 64 << 20)).unwrap();
    let (mut receiver, addr) = listen(&producer);
    let sender = spawn_sender(addr, sizes.clone());
    let report = receiver.run().unwrap();
    assert_eq!(sender.join().unwrap().unwrap(), sizes.len() as u64);
    assert_eq!(report.committed, sizes.len() as u64);
    assert_eq!(report.bytes, total);
    // 64 KiB and 1 MiB by rendezvous straight into the slot; 56 B and
    // 4 KiB eagerly with the offer, copied in (SenderOptions::rendezvous_from).
    assert_eq!(report.zero_copy, sizes.len() as u64 / 2);
    assert_eq!(report.copied, sizes.len() as u64 / 2);
    assert!(report.highest_end <= report.region_len);
    assert!(report.refused.is_empty());
    assert_eq!(consumer.poll().unwrap(), sizes.len() as u64);
    for (seq, &n) in sizes.iter().enumerate() {
        let item = consumer.item(seq as u64).unwrap();
        assert_eq!(item.id(), format!("t{seq}"));
        let mut want = vec![0u8; n as usize];
        pattern(seq as u64, &mut want);
        assert!(item.bytes() == &want[..], "tensor {seq} differs");
    }
}

#[test]
fn a_full_ring_stops_the_sender_until_the_consumer_releases() {
    tcp();
    let n = 300u64;
    let (producer, mut consumer) = in_process(&config("full", 8, 1 << 20)).unwrap();
    let (mut receiver, addr) = listen(&producer);
    let sender = spawn_sender(addr, vec![65536; n as usize]);
    // The consumer drains on a thread of its own, slowly enough for the
    // ring to fill.
    let (tx, rx) = mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut seen = 0u64;
        while seen < n {
            let avail = consumer.poll().unwrap();
            for i in 0..avail {
                let item = consumer.item(i).unwrap();
                let mut want = vec![0u8; 65536];
                pattern(seen + i, &mut want);
                assert!(item.bytes() == &want[..], "tensor {} differs", seen + i);
            }
            consumer.consume(avail);
            seen += avail;
            if avail == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        tx.send(seen).unwrap();
    });
    let report = receiver.run().unwrap();
    assert_eq!(sender.join().unwrap().unwrap(), n);
    assert_eq!(rx.recv().unwrap(), n);
    drain.join().unwrap();
    assert_eq!(report.committed, n);
    assert!(report.ring_full_waits > 0, "an 8-item ring never filled");
}

/// Sends `n` u8 tensors of 4 KiB named by `id(seq)`.
fn spawn_named_sender(
    addr: SocketAddr,
    n: u64,
    id: fn(u64) -> String,
) -> std::thread::JoinHandle<Result<u64, NetError>> {
    std::thread::spawn(move || {
        let mut sender = Sender::connect(&addr, SenderOptions::default())?;
        let meta = TensorMeta::new(DType::U8, &[4096]).unwrap();
        for seq in 0..n {
            sender.send(&id(seq), &meta, |b| pattern(seq, b))?;
        }
        Ok(sender.finish()?.committed)
    })
}

#[test]
fn the_id_set_stays_within_the_ring_and_the_commit_count_is_live() {
    // An 8-item ring, 300 tensors whose ids come back every 16: each id
    // left the ring before it comes again, so none is a duplicate, and the
    // receiver holds at most 8 ids (it used to keep every id of the
    // stream, refusing these and growing with it).
    tcp();
    let n = 300u64;
    let (producer, mut consumer) = in_process(&config("ids", 8, 1 << 20)).unwrap();
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut receiver = Receiver::bind(
        &producer,
        &"127.0.0.1:0".parse().unwrap(),
        ReceiverOptions::default(),
    )
    .unwrap();
    receiver.count_commits_in(&counter);
    let addr = receiver.local_addr().unwrap();
    let sender = spawn_named_sender(addr, n, |seq| format!("t{}", seq % 16));
    let live = counter.clone();
    let drain = std::thread::spawn(move || {
        let mut seen = 0u64;
        let mut live_at_half = None;
        while seen < n {
            let avail = consumer.poll().unwrap();
            for i in 0..avail {
                assert_eq!(
                    consumer.item(i).unwrap().id(),
                    format!("t{}", (seen + i) % 16)
                );
            }
            if live_at_half.is_none() && seen >= n / 2 {
                // The receiver is still running (the rest waits for room):
                // the counter already shows what it committed.
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while live.load(std::sync::atomic::Ordering::Relaxed) < seen
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                live_at_half = Some(live.load(std::sync::atomic::Ordering::Relaxed));
            }
            consumer.consume(avail);
            seen += avail;
            if avail == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        (seen, live_at_half.unwrap())
    });
    let report = receiver.run().unwrap();
    // Exactly the ring's 8: the last ids admitted, not the stream's 16.
    assert_eq!(receiver.ids_held(), 8);
    assert_eq!(sender.join().unwrap().unwrap(), n);
    let (seen, live_at_half) = drain.join().unwrap();
    assert_eq!(seen, n);
    assert!(
        (n / 2..n).contains(&live_at_half),
        "{live_at_half} commits counted while the stream ran"
    );
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert_eq!(report.committed, n);
    assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), n);
}

#[test]
fn an_id_still_in_the_ring_is_a_duplicate() {
    // The consumer holds every item: "a" is still in the ring when it
    // comes again, and is refused; the stream goes on.
    tcp();
    let (producer, mut consumer) = in_process(&config("dup", 8, 1 << 20)).unwrap();
    let (mut receiver, addr) = listen(&producer);
    let sender = spawn_named_sender(addr, 3, |seq| ["a", "b", "a"][seq as usize].into());
    let report = receiver.run().unwrap();
    assert!(
        sender.join().unwrap().is_err(),
        "the duplicate was not refused"
    );
    assert_eq!(report.committed, 2);
    assert_eq!(report.refused.total(), 1);
    assert_eq!(report.refused.count("id"), 1);
    let refusal = report.refused.sample().next().unwrap();
    assert_eq!(refusal.field, "id");
    assert!(refusal.detail.contains("duplicate"), "{refusal:?}");
    assert_eq!(consumer.poll().unwrap(), 2);
}
