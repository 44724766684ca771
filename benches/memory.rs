//! Issue 11's memory measurement: the shared memory a stream of 56-byte
//! tensors holds at window 28, against the bytes actually buffered (a
//! measurement, printed; not timed). The segment's memory is reserved at
//! create (`posix_fallocate`), so what the file holds is what is touched.
//!
//! Prints `BENCH-RESULT memory <name> <segment bytes> <payload bytes>
//! <descriptor bytes> <buffered bytes>` for the stream sized for the window
//! (32 items, the smallest payload: one page) and for a fixed-slot layout
//! like the first version's (one 4 KiB slot per item), computed.

use shmstream::{policy::Fixed, DType, Producer, StreamBuffer, StreamConfig, StreamId, TensorMeta};
use std::os::unix::fs::MetadataExt;

const WINDOW: u64 = 28;
const ITEM: u64 = 56;
const DESCRIPTOR: u64 = 192;
const PAGE: u64 = 4096;

fn main() {
    let prefix = format!("bench-mem-{}-", std::process::id());
    let cfg = StreamConfig::new(StreamId {
        request_id: "bench".into(),
        edge_name: "memory".into(),
        from_partition: "w28".into(),
    })
    .with_prefix(&prefix)
    .with_capacity(WINDOW.next_power_of_two())
    .with_item_bytes(ITEM)
    .with_payload_bytes(PAGE);
    let producer = Producer::create(&cfg).expect("create");
    let mut buffer: StreamBuffer =
        StreamBuffer::open(&cfg, Fixed::new(WINDOW as usize).unwrap()).expect("open");
    let meta = TensorMeta::new(DType::I64, &[7]).unwrap();
    // Stream through it, so every byte it will ever use has been used.
    for round in 0..1000u64 {
        for k in 0..WINDOW {
            let slot = producer.register(&format!("t{k}")).expect("register");
            slot.write(meta, &[(round + k) as u8; ITEM as usize])
                .expect("write");
        }
        let chunk = buffer.pop_chunk().expect("pop");
        assert_eq!(
            chunk.stacked().expect("stacked").strides()[0],
            ITEM as usize
        );
    }
    let path = format!("/dev/shm{}", cfg.segment_name().unwrap());
    let file = std::fs::metadata(&path).expect("segment file");
    let allocated = file.blocks() * 512;
    let buffered = WINDOW * ITEM;
    let descriptors = WINDOW.next_power_of_two() * DESCRIPTOR;
    println!(
        "BENCH-RESULT memory byte_granular {allocated} {} {descriptors} {buffered}",
        buffer.consumer().payload_bytes()
    );
    // The first version: one 4 KiB slot per item, 32 slots.
    let slots = WINDOW.next_power_of_two() * PAGE;
    let old = PAGE + (descriptors.next_multiple_of(PAGE)) + slots;
    println!("BENCH-RESULT memory fixed_slots {old} {slots} {descriptors} {buffered}");
    drop(buffer);
    drop(producer);
}
