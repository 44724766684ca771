//! Tensors over the network: `ipc-demo send --transport ucx` offers them
//! to `ipc-producer --source ucx`, whose receiver lands each one straight
//! in its slot, and `ipc-consumer` reads the stream: three processes, on
//! loopback and across two network namespaces, over UCX's tcp transport.

mod common;
use common::*;
use std::io::BufReader;
use std::process::Command;
use std::time::{Duration, Instant};

fn tcp_transport() {
    // Children inherit it: UCX's tcp transport, as on a box without RDMA.
    std::env::set_var("UCX_TLS", "tcp");
}

/// A size mix skewed small, 56 B to 4 MiB: per 1000 items 700 x 56 B,
/// 200 x 512 B, 80 x 4 KiB, 17 x 64 KiB, 2 x 1 MiB and 1 x 4 MiB (7.7 MB
/// per 1000), shuffled by a fixed permutation.
fn size_mix() -> String {
    let sizes: Vec<&str> = [
        ("56", 700),
        ("512", 200),
        ("4K", 80),
        ("64K", 17),
        ("1M", 2),
        ("4M", 1),
    ]
    .iter()
    .flat_map(|&(s, n)| vec![s; n])
    .collect();
    // A fixed shuffle (multiplicative stride coprime with 1000).
    let n = sizes.len();
    let shuffled: Vec<&str> = (0..n).map(|i| sizes[(i * 387 + 11) % n]).collect();
    shuffled.join(",")
}

/// The numbers of the producer's `ucx landed N transfers (Z zero-copy, C
/// copied), B bytes at offsets LO..HI of the L-byte payload mapping` line.
fn landed(stdout: &str) -> (u64, u64, u64, u64, u64) {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ucx landed "))
        .unwrap_or_else(|| panic!("no 'ucx landed' line: {stdout:?}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    // transfers, zero-copy, copied, bytes, lo, hi, mapping, ...
    let (n, zero, _copied, _bytes, lo, hi, mapping) = (
        nums[0], nums[1], nums[2], nums[3], nums[4], nums[5], nums[6],
    );
    assert!(lo <= hi, "{line}");
    (n, zero, lo, hi, mapping)
}

#[test]
fn a_hundred_thousand_tensors_of_mixed_sizes_arrive_in_order_in_place() {
    tcp_transport();
    const ITEMS: u64 = 100_000;
    let sizes = size_mix();
    let mut scope = Scope::new("ucx");
    let prefix = scope.prefix.clone();
    let ident = ["--prefix", prefix.as_str(), "--request-id", "ucx-mix"];
    let mut producer_args = ident.to_vec();
    producer_args.extend([
        "--source",
        "ucx",
        "--listen",
        "127.0.0.1:0",
        "--capacity",
        "1024",
        "--payload-bytes",
        "64M",
    ]);
    let producer = scope.spawn(PRODUCER, &producer_args);
    let mut stdout = BufReader::new(scope.child(producer).stdout.take().unwrap());
    let segment = line_after(&mut stdout, "segment");
    let addr = line_after(&mut stdout, "listening");
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let items = ITEMS.to_string();
    let mut consumer_args = ident.to_vec();
    consumer_args.extend([
        "--items",
        &items,
        "--sizes",
        &sizes,
        "--json",
        "--policy",
        "fixed:size=16",
    ]);
    let consumer = scope.spawn(CONSUMER, &consumer_args);
    let sent = run(
        DEMO,
        &[
            "send",
            "--transport",
            "ucx",
            "--to",
            &addr,
            "--items",
            &items,
            "--sizes",
            &sizes,
        ],
        None,
    );
    assert!(sent.status.success(), "send: {}", text(&sent.stderr));
    let said = text(&sent.stdout);
    assert!(
        said.starts_with(&format!("sent {ITEMS} tensors, ")),
        "{said}"
    );
    let consumed = scope.wait(consumer);
    assert!(
        consumed.status.success(),
        "consumer: {}",
        text(&consumed.stderr)
    );
    // Every item, in registration order (each carries its sequence number
    // and a checksum the consumer verified in place: a slot published
    // before its transfer completed would fail it).
    let report = json(&consumed.stdout);
    assert_complete(&report, ITEMS, 1);
    assert_eq!(report["segment"], segment);
    let rest: String = std::io::read_to_string(stdout.into_inner()).unwrap();
    let produced = scope.wait(producer);
    assert!(
        produced.status.success(),
        "producer: {}",
        text(&produced.stderr)
    );
    // Each transfer landed inside the ring's mapping: the 64 KiB to 4 MiB
    // tensors (20 in 1000) by UCX's rendezvous straight into their slots,
    // the smaller ones eagerly with their offers, copied in by the
    // receiver (`send --rendezvous-from`, 8 KiB).
    let (n, zero_copy, lo, hi, mapping) = landed(&rest);
    assert_eq!(n, ITEMS, "{rest}");
    assert_eq!(zero_copy, ITEMS / 1000 * 20, "{rest}");
    assert!(
        hi <= mapping && lo < hi,
        "landed at {lo}..{hi} of a {mapping}-byte mapping"
    );
    assert!(mapping >= 64 << 20, "{rest}");
    scope.assert_no_leftovers();
}

#[test]
fn the_launcher_runs_sender_receiver_and_consumer() {
    tcp_transport();
    let scope = Scope::new("ucxrun");
    let out = run(
        DEMO,
        &[
            "--source",
            "ucx",
            "--items",
            "1200",
            "--sizes",
            "56,64K,1M",
            "--prefix",
            &scope.prefix,
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_complete(&json(&out.stdout), 1200, 1);
    scope.assert_no_leftovers();
}

#[test]
fn listen_without_the_ucx_source_and_the_ucx_source_without_listen_are_refused() {
    let out = run(PRODUCER, &["--listen", "127.0.0.1:0"], None);
    assert_one_line_error(&out, &["--listen", "--source ucx"]);
    let out = run(PRODUCER, &["--source", "ucx"], None);
    assert_one_line_error(&out, &["--source ucx", "--listen"]);
    let out = run(
        PRODUCER,
        &["--source", "tcp", "--listen", "127.0.0.1:0"],
        None,
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("tcp"), "{}", text(&out.stderr));
}

/// Two network namespaces joined by a veth pair, removed on drop (also
/// when the test fails).
struct Netns {
    a: String,
    b: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `ip` ({e}): install iproute2 (scripts/deps-apt.sh)")
    });
    assert!(
        out.status.success(),
        "`ip {}` failed: {} (the netns test needs root and iproute2; it does not skip)",
        args.join(" "),
        text(&out.stderr)
    );
}

impl Netns {
    fn new(tag: u32) -> Netns {
        let ns = Netns {
            a: format!("shmn-a-{tag}"),
            b: format!("shmn-b-{tag}"),
        };
        let (va, vb) = (format!("shva{tag}"), format!("shvb{tag}"));
        // Left by a run that was killed before its guard ran (same pid).
        for n in [&ns.a, &ns.b] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
        ip(&["netns", "add", &ns.a]);
        ip(&["netns", "add", &ns.b]);
        ip(&[
            "link", "add", &va, "netns", &ns.a, "type", "veth", "peer", "name", &vb, "netns", &ns.b,
        ]);
        for (n, v, addr) in [(&ns.a, &va, "10.213.0.1/30"), (&ns.b, &vb, "10.213.0.2/30")] {
            ip(&["-n", n, "addr", "add", addr, "dev", v]);
            ip(&["-n", n, "link", "set", v, "up"]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        // UCX's tcp transport skips a device until it is running (carrier
        // up: "device is not enabled"), which takes a moment after `up`.
        let deadline = Instant::now() + Duration::from_secs(10);
        for (n, v) in [(&ns.a, &va), (&ns.b, &vb)] {
            loop {
                let out = Command::new("ip")
                    .args(["-n", n, "-o", "link", "show", v])
                    .output()
                    .unwrap();
                let line = text(&out.stdout);
                if line.contains("LOWER_UP") && line.contains("state UP") {
                    break;
                }
                assert!(Instant::now() < deadline, "{v} never came up: {line}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        ns
    }

    fn exec<'a>(&'a self, ns: &'a str, bin: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["netns", "exec", ns, bin];
        v.extend_from_slice(args);
        v
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and so the pair.
        for n in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

#[test]
fn a_stream_across_namespaces_survives_nothing_half_read_when_the_link_goes_down() {
    tcp_transport();
    let tag = std::process::id() % 100_000;
    let ns = Netns::new(tag);
    let mut scope = Scope::new("ucxns");
    let prefix = scope.prefix.clone();

    // First the whole stream across the veth.
    let ident = ["--prefix", prefix.as_str(), "--request-id", "ucx-ns1"];
    let mut pargs = ident.to_vec();
    pargs.extend(["--source", "ucx", "--listen", "10.213.0.1:0"]);
    let producer = scope.spawn("ip", &ns.exec(&ns.a, PRODUCER, &pargs));
    let mut stdout = BufReader::new(scope.child(producer).stdout.take().unwrap());
    line_after(&mut stdout, "segment");
    let addr = line_after(&mut stdout, "listening");
    assert!(addr.starts_with("10.213.0.1:"), "{addr}");
    let mut cargs = ident.to_vec();
    cargs.extend(["--items", "3000", "--sizes", "56,4K,64K", "--json"]);
    let consumer = scope.spawn(CONSUMER, &cargs);
    let send = [
        "send",
        "--to",
        addr.as_str(),
        "--items",
        "3000",
        "--sizes",
        "56,4K,64K",
    ];
    let sent = run("ip", &ns.exec(&ns.b, DEMO, &send), None);
    assert!(sent.status.success(), "send: {}", text(&sent.stderr));
    let consumed = scope.wait(consumer);
    assert!(
        consumed.status.success(),
        "consumer: {}",
        text(&consumed.stderr)
    );
    assert_complete(&json(&consumed.stdout), 3000, 1);
    let produced = scope.wait(producer);
    assert!(
        produced.status.success(),
        "producer: {}",
        text(&produced.stderr)
    );

    // Then a paced stream, and the link goes down in the middle of it.
    let ident = [
        "--prefix",
        prefix.as_str(),
        "--request-id",
        "ucx-ns2",
        "--timeout",
        "3",
    ];
    let mut pargs = ident.to_vec();
    pargs.extend(["--source", "ucx", "--listen", "10.213.0.1:0"]);
    let producer = scope.spawn("ip", &ns.exec(&ns.a, PRODUCER, &pargs));
    let mut stdout = BufReader::new(scope.child(producer).stdout.take().unwrap());
    line_after(&mut stdout, "segment");
    let addr = line_after(&mut stdout, "listening");
    let mut cargs = ident.to_vec();
    cargs.extend(["--items", "100000", "--sizes", "64K", "--json"]);
    let consumer = scope.spawn(CONSUMER, &cargs);
    let send = [
        "send",
        "--to",
        addr.as_str(),
        "--items",
        "100000",
        "--sizes",
        "64K",
        "--rate",
        "2000",
        "--stall-timeout",
        "3",
    ];
    let sender = scope.spawn("ip", &ns.exec(&ns.b, DEMO, &send));
    std::thread::sleep(Duration::from_millis(1500));
    let down = Instant::now();
    ip(&["-n", &ns.a, "link", "set", &format!("shva{tag}"), "down"]);
    let produced = scope.wait(producer);
    let noticed = down.elapsed();
    let said = text(&produced.stderr);
    assert!(
        !produced.status.success(),
        "the producer did not fail: {said}"
    );
    assert!(
        said.contains("receiving over UCX")
            && (said.contains("nothing arrived or completed")
                || said.contains("connection to the peer failed")),
        "{said}"
    );
    // Bounded: the stall timeout (3 s) plus the abort, not TCP's minutes.
    assert!(
        noticed < Duration::from_secs(20),
        "noticed after {noticed:?}"
    );
    let rest: String = std::io::read_to_string(stdout.into_inner()).unwrap();
    let (landed_n, _, _, _, _) = landed(&rest);
    assert!(
        landed_n > 0,
        "nothing landed before the link went down: {rest}"
    );
    let consumed = scope.wait(consumer);
    let complaint = text(&consumed.stderr);
    eprintln!("link down after 1.5 s; the producer noticed in {noticed:?}: {said}the consumer: {complaint}");
    assert!(!consumed.status.success(), "the consumer did not fail");
    assert!(
        complaint.contains("producer") || complaint.contains("abandoned"),
        "not a clear error: {complaint}"
    );
    // Every item it saw verified: no half-read slot was published.
    assert!(
        !complaint.contains("checksum") && !complaint.contains("corrupt"),
        "{complaint}"
    );
    let sent = scope.wait(sender);
    assert!(!sent.status.success(), "the sender did not fail");
    drop(scope);
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "segments left behind: {left:?}");
}
