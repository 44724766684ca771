//! iceoryx2 publish-subscribe both ways, `[u8; 64]` samples, loaned
//! and written in place, receivers spinning on `receive`.

use crate::common::{first_word, prefix_of, reap, spawn, STOP};
use crate::latency::RoundTrip;
use iceoryx2::prelude::*;
use std::hint::spin_loop;
use std::process::Child;
use std::time::Duration;

type Pub = iceoryx2::port::publisher::Publisher<ipc::Service, [u8; 64], ()>;
type Sub = iceoryx2::port::subscriber::Subscriber<ipc::Service, [u8; 64], ()>;

pub(crate) struct Ends {
    _node: Node<ipc::Service>,
    publisher: Pub,
    subscriber: Sub,
}

pub(crate) fn ends(prefix: &str, out: &str, inn: &str) -> Ends {
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .expect("iceoryx2 node");
    let service = |name: &str| {
        node.service_builder(&ServiceName::new(&format!("{prefix}{name}")).expect("name"))
            .publish_subscribe::<[u8; 64]>()
            .open_or_create()
            .expect("iceoryx2 service")
    };
    let publisher = service(out)
        .publisher_builder()
        .create()
        .expect("publisher");
    let subscriber = service(inn)
        .subscriber_builder()
        .create()
        .expect("subscriber");
    Ends {
        _node: node,
        publisher,
        subscriber,
    }
}

impl Ends {
    pub(crate) fn send(&self, msg: &[u8; 64]) {
        let sample = self.publisher.loan_uninit().expect("loan");
        let sample = sample.write_payload(*msg);
        sample.send().expect("send");
    }
    pub(crate) fn recv(&self) -> [u8; 64] {
        loop {
            if let Some(sample) = self.subscriber.receive().expect("receive") {
                return *sample;
            }
            spin_loop();
        }
    }
}

pub(crate) struct Iceoryx2 {
    ends: Ends,
    child: Child,
}

impl RoundTrip for Iceoryx2 {
    fn start() -> Self {
        let prefix = prefix_of(std::process::id());
        let ends = ends(&prefix, "ping", "pong");
        let child = spawn("iceoryx2-echo", &prefix);
        // Wait until the child's publisher and subscriber are connected.
        let mut msg = [0u8; 64];
        msg[..8].copy_from_slice(&0u64.to_le_bytes());
        loop {
            ends.send(&msg);
            std::thread::sleep(Duration::from_millis(5));
            if let Some(s) = ends.subscriber.receive().expect("receive") {
                if first_word(&*s) == 0 {
                    break;
                }
            }
        }
        while ends.subscriber.receive().expect("receive").is_some() {}
        Iceoryx2 { ends, child }
    }
    fn round_trip(&mut self, seq: u64) {
        let mut msg = [0u8; 64];
        msg[..8].copy_from_slice(&seq.to_le_bytes());
        self.ends.send(&msg);
        while first_word(&self.ends.recv()) != seq {}
    }
    fn stop(self) {
        let mut msg = [0u8; 64];
        msg[..8].copy_from_slice(&STOP.to_le_bytes());
        self.ends.send(&msg);
        reap(self.child);
    }
}

pub(crate) fn child_echo(prefix: &str) {
    let ends = ends(prefix, "pong", "ping");
    loop {
        let msg = ends.recv();
        if first_word(&msg) == STOP {
            return;
        }
        ends.send(&msg);
    }
}
