//! Tensors over TCP: `ipc-demo send` to `ipc-producer --source tcp`, whose
//! socket reads land straight in reservations of each tensor's size.

mod common;
use common::*;
use std::io::BufReader;

#[test]
fn a_tcp_stream_over_loopback_arrives_whole() {
    let mut scope = Scope::new("tcp");
    let prefix = scope.prefix.clone();
    let ident = ["--prefix", prefix.as_str(), "--request-id", "tcp-pair"];
    let mut producer_args = ident.to_vec();
    producer_args.extend(["--source", "tcp", "--listen", "127.0.0.1:0"]);
    let producer = scope.spawn(PRODUCER, &producer_args);
    let mut stdout = BufReader::new(scope.child(producer).stdout.take().unwrap());
    let segment = line_after(&mut stdout, "segment");
    let addr = line_after(&mut stdout, "listening");
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let mut consumer_args = ident.to_vec();
    consumer_args.extend([
        "--items",
        "2500",
        "--json",
        "--policy",
        "left-context:chunk=10,context=2",
    ]);
    let consumer = scope.spawn(CONSUMER, &consumer_args);
    let sent = run(
        DEMO,
        &["send", "--to", &addr, "--items", "2500", "--shape", "2x7"],
        None,
    );
    assert!(sent.status.success(), "send: {}", text(&sent.stderr));
    let consumed = scope.wait(consumer);
    assert!(
        consumed.status.success(),
        "consumer: {}",
        text(&consumed.stderr)
    );
    let report = json(&consumed.stdout);
    assert_complete(&report, 2500, 1);
    assert_eq!(report["bytes"], 2500 * 112);
    assert_eq!(report["segment"], segment);
    let produced = scope.wait(producer);
    assert!(
        produced.status.success(),
        "producer: {}",
        text(&produced.stderr)
    );
    scope.assert_no_leftovers();
}

#[test]
fn the_launcher_runs_a_tcp_source_too() {
    let scope = Scope::new("tcprun");
    let out = run(
        DEMO,
        &[
            "--source",
            "tcp",
            "--items",
            "1200",
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
fn tensors_of_mixed_sizes_arrive_over_tcp() {
    let scope = Scope::new("tcpmix");
    let out = run(
        DEMO,
        &[
            "--source",
            "tcp",
            "--sizes",
            "56,64K,0,3",
            "--items",
            "600",
            "--prefix",
            &scope.prefix,
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = json(&out.stdout);
    assert_complete(&report, 600, 1);
    assert_eq!(report["bytes"], 150 * (56 + 65536 + 3));
    scope.assert_no_leftovers();
}

#[test]
fn a_frame_larger_than_the_payload_stops_the_producer_with_a_message() {
    let mut scope = Scope::new("tcpbig");
    let prefix = scope.prefix.clone();
    let producer = scope.spawn(
        PRODUCER,
        &[
            "--prefix",
            &prefix,
            "--source",
            "tcp",
            "--listen",
            "127.0.0.1:0",
            "--capacity",
            "64",
            "--item-bytes",
            "64",
            "--payload-bytes",
            "4K",
        ],
    );
    let mut stdout = BufReader::new(scope.child(producer).stdout.take().unwrap());
    let addr = line_after(&mut stdout, "listening");
    let _ = run(
        DEMO,
        &["send", "--to", &addr, "--items", "3", "--shape", "1000"],
        None,
    );
    let out = scope.wait(producer);
    assert_one_line_error(
        &out,
        &[
            "frame 0",
            "8000 bytes",
            "exceeds the payload ring of 4K (4096 bytes)",
            "--payload-bytes",
        ],
    );
    scope.assert_no_leftovers();
}
