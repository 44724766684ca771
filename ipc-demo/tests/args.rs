//! Bad input: one clear line on stderr and a non-zero exit, before any
//! segment is made; and `--help` that names the defaults.

mod common;
use common::*;
use std::net::TcpListener;

#[test]
fn bad_arguments_give_one_line_and_a_non_zero_exit() {
    let scope = Scope::new("args");
    let p = scope.prefix.as_str();
    let cases: [(&str, Vec<&str>, &[&str]); 18] = [
        (
            DEMO,
            vec!["--policy", "wobbly:size=3"],
            &["--policy", "unknown chunk policy `wobbly`"],
        ),
        (
            DEMO,
            vec!["--policy", "sliding:window=4,stride=9"],
            &["stride 9"],
        ),
        (
            DEMO,
            vec!["--items", "0"],
            &["--items", "must be at least 1"],
        ),
        (
            DEMO,
            vec!["--dtype", "q8"],
            &["--dtype", "unknown dtype \"q8\""],
        ),
        (
            DEMO,
            vec!["--capacity", "1000"],
            &["--capacity", "must be a power of two from 1 to 1048576"],
        ),
        // The size flags: each error names the flag and the limit.
        (
            DEMO,
            vec!["--payload-bytes", "5000"],
            &["--payload-bytes", "power of two from 4K", "1T"],
        ),
        (
            DEMO,
            vec!["--item-bytes", "64X"],
            &["--item-bytes", "\"64X\" is not a byte size"],
        ),
        (
            DEMO,
            vec!["--item-bytes", "2G"],
            &["--item-bytes", "at most 1G"],
        ),
        (
            DEMO,
            vec!["--sizes", "56,2G"],
            &["--sizes", "2G bytes is more than the limit of 1G"],
        ),
        (
            DEMO,
            vec!["--sizes", "random:2M..1M"],
            &["--sizes", "the smallest size exceeds the largest"],
        ),
        // A window of the policy does not fit the payload given.
        (
            DEMO,
            vec!["--sizes", "56,1M", "--payload-bytes", "8M"],
            &[
                "policy sliding:window=28,stride=7 shows up to 28 items",
                "more than --payload-bytes 8M",
                "raise --payload-bytes to 16M",
            ],
        ),
        (
            DEMO,
            vec![
                "--shape",
                "1000",
                "--payload-bytes",
                "4K",
                "--policy",
                "fixed:size=1",
            ],
            &["one item of i64[1000]", "8063 bytes", "--payload-bytes 4K"],
        ),
        (
            DEMO,
            vec!["--item-bytes", "8M", "--payload-bytes", "4M"],
            &["--item-bytes 8M exceeds the payload ring of 4M"],
        ),
        (
            PRODUCER,
            vec!["--sizes", "8M", "--payload-bytes", "4M"],
            &["the largest item would need", "--payload-bytes 4M"],
        ),
        (
            DEMO,
            vec!["--policy", "fixed:size=2048"],
            &["2048 items", "--capacity 1024"],
        ),
        (
            PRODUCER,
            vec!["--items", "0"],
            &["--items", "must be at least 1"],
        ),
        (
            PRODUCER,
            vec!["--source", "ucx"],
            &["--source ucx needs --listen"],
        ),
        (CONSUMER, vec!["--policy", "ramp:first=4"], &["--policy"]),
    ];
    for (bin, mut args, words) in cases {
        args.extend(["--prefix", p]);
        let out = run(bin, &args, None);
        assert_one_line_error(&out, words);
    }
    scope.assert_no_leftovers();
}

#[test]
fn an_unreachable_address_is_one_line() {
    // A port that was just free: nobody listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let to = format!("127.0.0.1:{port}");
    let out = run(DEMO, &["send", "--to", &to, "--items", "3"], None);
    assert_one_line_error(&out, &["sending to", &to, "connection to the peer failed"]);
    let out = run(
        DEMO,
        &["send", "--to", "no-such-host.invalid:9", "--items", "3"],
        None,
    );
    assert_one_line_error(&out, &["cannot resolve"]);
    let out = run(
        PRODUCER,
        &[
            "--source",
            "ucx",
            "--listen",
            "256.0.0.1:0",
            "--prefix",
            "ipct-unreach-",
        ],
        None,
    );
    assert_one_line_error(&out, &["cannot resolve", "256.0.0.1:0"]);
}

#[test]
fn a_consumer_without_a_producer_gives_up_in_time() {
    let scope = Scope::new("nobody");
    let out = run(
        CONSUMER,
        &["--prefix", &scope.prefix, "--open-timeout", "0.2"],
        None,
    );
    assert_one_line_error(
        &out,
        &["cannot open the stream within 200ms", "no segment named"],
    );
    scope.assert_no_leftovers();
}

#[test]
fn help_names_every_default() {
    for (bin, args, defaults) in [
        (
            DEMO,
            vec!["--help"],
            vec![
                "[default: 100000]",
                "[default: sliding:window=28,stride=7]",
                "[default: 1024]",
                "[default: 4096]",
                "--payload-bytes",
                "--sizes",
                "inspect",
                "replay",
            ],
        ),
        (
            PRODUCER,
            vec!["--help"],
            vec![
                "[default: 8]",
                "[default: i64]",
                "[default: codec_tokens]",
                "[default: talker]",
            ],
        ),
        (
            CONSUMER,
            vec!["--help"],
            vec!["[default: sliding:window=28,stride=7]", "--open-timeout"],
        ),
        (
            DEMO,
            vec!["replay", "--help"],
            vec![
                "--policy",
                "--capacity",
                "--item-bytes",
                "--payload-bytes",
                "--values",
            ],
        ),
        (DEMO, vec!["clean", "--help"], vec!["--dry-run"]),
    ] {
        let out = run(bin, &args, None);
        assert!(out.status.success());
        let help = text(&out.stdout);
        for d in defaults {
            assert!(help.contains(d), "{bin} {args:?}: no {d:?} in\n{help}");
        }
    }
}
