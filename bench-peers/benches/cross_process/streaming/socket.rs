//! The Unix-socket streaming peer, buffered on both sides.

use super::Stream;
use crate::common::{connect, reap, socket_peer, touch, Aligned};
use criterion::black_box;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Child;

/// A Unix socket, buffered on both sides (64 KiB): each batch is a count,
/// the records, and a one-byte acknowledgement.
pub(crate) struct SocketStream {
    writer: BufWriter<UnixStream>,
    source: Aligned,
    child: Child,
}

impl Stream for SocketStream {
    fn start(size: usize) -> Self {
        let (stream, child) = socket_peer("stream", "socket-read", &size.to_string());
        SocketStream {
            writer: BufWriter::with_capacity(65536, stream),
            source: Aligned::new(size),
            child,
        }
    }
    fn send_batch(&mut self, items: u64) {
        self.writer.write_all(&items.to_le_bytes()).expect("write");
        for _ in 0..items {
            self.writer.write_all(self.source.bytes()).expect("write");
        }
        self.writer.flush().expect("flush");
        let mut ack = [0u8; 1];
        self.writer.get_mut().read_exact(&mut ack).expect("ack");
    }
    fn stop(mut self) {
        self.writer.write_all(&0u64.to_le_bytes()).expect("write");
        self.writer.flush().expect("flush");
        reap(self.child);
    }
}

pub(crate) fn child_socket_read(arg: &str) {
    let (path, size) = arg.split_once(',').unwrap();
    let size: usize = size.parse().unwrap();
    let stream = connect(path);
    let mut ack_end = stream.try_clone().expect("clone");
    let mut reader = BufReader::with_capacity(65536, stream);
    let mut record = vec![0u8; size];
    let mut sink = 0u64;
    loop {
        let mut count = [0u8; 8];
        reader.read_exact(&mut count).expect("read");
        let items = u64::from_le_bytes(count);
        if items == 0 {
            break;
        }
        for _ in 0..items {
            reader.read_exact(&mut record).expect("read");
            sink = sink.wrapping_add(touch(&record));
        }
        ack_end.write_all(&[1]).expect("ack");
    }
    black_box(sink);
}
