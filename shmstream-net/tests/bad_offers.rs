//! Offers that break a rule: each is refused with an error naming its
//! field and limit, and the stream goes on intact (the consumer sees
//! exactly the good tensors, in order, with their bytes).

use shmstream::{in_process, DType, StreamConfig, StreamId, TensorMeta};
use shmstream_net::wire::{encode_offer, AM_ID};
use shmstream_net::{NetError, Receiver, ReceiverOptions, Sender, SenderOptions};
use std::time::Duration;

fn offer(seq: u64, id: &str, dtype: DType, shape: &[u64]) -> Vec<u8> {
    let mut h = Vec::new();
    encode_offer(&mut h, seq, id, &TensorMeta::new(dtype, shape).unwrap());
    h
}

fn refused(r: Result<(), NetError>) -> String {
    match r {
        Err(NetError::Refused { reason, .. }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn good(sender: &mut Sender, id: &str) {
    let meta = TensorMeta::new(DType::U8, &[16]).unwrap();
    sender.send(id, &meta, |b| b.fill(id.len() as u8)).unwrap();
}

#[test]
fn each_bad_field_is_refused_by_name_and_the_stream_stays_intact() {
    std::env::set_var("UCX_TLS", "tcp");
    assert_eq!(AM_ID, 0x5348);
    let cfg = StreamConfig::new(StreamId {
        request_id: format!("bad-{}", std::process::id()),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(64)
    .with_payload_bytes(1 << 20);
    let (producer, mut consumer) = in_process(&cfg).unwrap();
    let opts = ReceiverOptions {
        stall_timeout: Duration::from_secs(20),
        ..ReceiverOptions::default()
    };
    let mut receiver = Receiver::bind(&producer, &"127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let addr = receiver.local_addr().unwrap();
    let sender = std::thread::spawn(move || {
        let mut s = Sender::connect(&addr, SenderOptions::default()).unwrap();
        let mut reasons = Vec::new();
        good(&mut s, "a");
        // nbytes that disagrees with dtype x shape (f32 x [4] is 16).
        let mut h = offer(s.next_seq(), "b", DType::F32, &[4]);
        h[16..24].copy_from_slice(&17u64.to_le_bytes());
        let seq = s.send_raw_header(h, &[0; 17], true).unwrap();
        reasons.push(refused(s.wait_acked(seq)));
        // Larger than the payload ring (1 MiB).
        let h = offer(s.next_seq(), "c", DType::U8, &[2 << 20]);
        let seq = s.send_raw_header(h, &vec![0; 2 << 20], true).unwrap();
        reasons.push(refused(s.wait_acked(seq)));
        // A payload shorter than nbytes.
        let h = offer(s.next_seq(), "d", DType::U8, &[16]);
        let seq = s.send_raw_header(h, &[0; 8], true).unwrap();
        reasons.push(refused(s.wait_acked(seq)));
        // An unknown dtype code.
        let mut h = offer(s.next_seq(), "e", DType::U8, &[16]);
        h[24] = 200;
        let seq = s.send_raw_header(h, &[0; 16], true).unwrap();
        reasons.push(refused(s.wait_acked(seq)));
        // Nine dimensions.
        let mut h = offer(s.next_seq(), "f", DType::U8, &[16]);
        h[25] = 9;
        let seq = s.send_raw_header(h, &[0; 16], true).unwrap();
        reasons.push(refused(s.wait_acked(seq)));
        // A duplicate id.
        let h = offer(s.next_seq(), "a", DType::U8, &[16]);
        let seq = s.send_raw_header(h, &[0; 16], true).unwrap();
        reasons.push(refused(s.wait_acked(seq)));
        good(&mut s, "bb");
        // Headers whose seq cannot be trusted: refused without a place.
        let mut h = offer(s.next_seq(), "g", DType::U8, &[16]);
        h[0] = b'X';
        s.send_raw_header(h, &[0; 16], false).unwrap();
        reasons.push(refused(
            s.wait_failure(Duration::from_secs(10)).map_or(Ok(()), Err),
        ));
        let mut h = offer(s.next_seq(), "h", DType::U8, &[16]);
        h[4] = 7;
        s.send_raw_header(h, &[0; 16], false).unwrap();
        reasons.push(refused(
            s.wait_failure(Duration::from_secs(10)).map_or(Ok(()), Err),
        ));
        // A seq offered before.
        let h = offer(0, "i", DType::U8, &[16]);
        s.send_raw_header(h, &[0; 16], false).unwrap();
        reasons.push(refused(
            s.wait_failure(Duration::from_secs(10)).map_or(Ok(()), Err),
        ));
        good(&mut s, "ccc");
        let report = s.finish().unwrap();
        (reasons, report.committed)
    });
    let report = receiver.run().unwrap();
    let (reasons, committed) = sender.join().unwrap();
    let expect = [
        ("field nbytes", "is 16 bytes"),
        ("field nbytes", "capacity of 1048576 bytes"),
        ("field length", "the payload is 8 bytes"),
        ("field dtype", "unknown dtype code 200"),
        ("field shape", "the limit is 8"),
        ("field id", "duplicate"),
        ("field magic", "expected \"SHMN\""),
        ("field version", "this receiver speaks 1"),
        ("field seq", "offered before"),
    ];
    assert_eq!(reasons.len(), expect.len(), "{reasons:#?}");
    for (reason, (field, limit)) in reasons.iter().zip(expect) {
        assert!(
            reason.contains(field) && reason.contains(limit),
            "{reason:?} lacks {field:?}/{limit:?}"
        );
    }
    assert_eq!(report.refused.total(), expect.len() as u64);
    assert_eq!(report.refused.sample().count(), expect.len());
    assert_eq!((report.committed, committed), (3, 3));
    // The stream: exactly the good tensors, in order, whole.
    assert_eq!(consumer.poll().unwrap(), 3);
    for (i, id) in ["a", "bb", "ccc"].iter().enumerate() {
        let item = consumer.item(i as u64).unwrap();
        assert_eq!(item.id(), *id);
        assert_eq!(item.bytes(), &[id.len() as u8; 16][..]);
    }
    assert_eq!(
        producer.registered(),
        3,
        "a refused offer reserved a position"
    );
}
