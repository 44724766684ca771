//! docs/network.md's "Bounded memory" states numbers and names tests:
//! each number is the code's, each test exists, so the table cannot drift.

use shmstream_net::wire::{encode_ack, AckStatus};
use shmstream_net::{
    ReceiverOptions, SenderOptions, ACK_ENTRY_BYTES, DEFAULT_MAX_REORDER_BYTES, MAX_REORDER,
    MAX_UNSENT_ACK_BYTES, REFUSAL_SAMPLE, REORDER_ENTRY_BYTES,
};

fn read(rel: &str) -> String {
    let path = format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The section of `doc` from the heading `title` to the next `## `.
fn section<'a>(doc: &'a str, title: &str) -> &'a str {
    let start = doc
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("no section {title:?}"));
    let rest = &doc[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

#[test]
fn the_bounded_memory_table_states_the_codes_numbers() {
    let doc = read("../docs/network.md");
    let table = section(&doc, "Bounded memory");
    let stated = [
        (
            format!(
                "`DEFAULT_MAX_REORDER_BYTES` = {DEFAULT_MAX_REORDER_BYTES} bytes ({} MiB)",
                DEFAULT_MAX_REORDER_BYTES / MIB
            ),
            DEFAULT_MAX_REORDER_BYTES % MIB == 0,
        ),
        (
            format!("`REORDER_ENTRY_BYTES` = {REORDER_ENTRY_BYTES} bytes"),
            true,
        ),
        (
            format!("`REFUSAL_SAMPLE` = {REFUSAL_SAMPLE} refusals"),
            true,
        ),
        (
            format!(
                "`MAX_UNSENT_ACK_BYTES` = {MAX_UNSENT_ACK_BYTES} bytes ({} MiB)",
                MAX_UNSENT_ACK_BYTES / MIB
            ),
            MAX_UNSENT_ACK_BYTES % MIB == 0,
        ),
        (format!("`ACK_ENTRY_BYTES` = {ACK_ENTRY_BYTES} bytes"), true),
        (
            format!(
                "(at most `max_in_flight`, {}",
                ReceiverOptions::default().max_in_flight
            ),
            true,
        ),
        (
            format!("first and last `REFUSAL_SAMPLE` = {REFUSAL_SAMPLE}"),
            true,
        ),
        (format!("({} at most", 2 * REFUSAL_SAMPLE), true),
    ];
    for (text, exact) in &stated {
        assert!(exact, "{text}: not a whole number of MiB");
        assert!(
            table.contains(text.as_str()),
            "docs/network.md's table lacks {text:?}"
        );
    }
    assert_eq!(
        ReceiverOptions::default().max_reorder_bytes,
        DEFAULT_MAX_REORDER_BYTES
    );
    // The longest acknowledgement header, as stated.
    let longest = encode_ack(0, AckStatus::Refused, &"x".repeat(4096)).len();
    assert!(
        table.contains(&format!("its header (<= {longest} bytes)")),
        "{longest}"
    );
    // "16 MiB by default" in the flow, and MAX_REORDER as a distance.
    assert!(doc.contains(&format!(
        "(`max_reorder_bytes`, {} MiB by default",
        DEFAULT_MAX_REORDER_BYTES / MIB
    )));
    assert!(doc.contains(&format!(
        "`MAX_REORDER` = {MAX_REORDER} only refuses a `seq`"
    )));
    assert!(
        !doc.contains("reorder\n  buffer of at most `MAX_REORDER`")
            && !doc.contains("buffer of at most `MAX_REORDER`"),
        "docs/network.md still says MAX_REORDER bounds the buffer"
    );
}

#[test]
fn an_honest_sender_stays_far_below_the_bounds_as_stated() {
    let doc = read("../docs/network.md");
    let table = section(&doc, "Bounded memory");
    let s = SenderOptions::default();
    let waiting = s.window as u64 * (s.rendezvous_from + REORDER_ENTRY_BYTES);
    let stated = format!(
        "default window ({} offers) and eager tensors below {} KiB it keeps at most {} x ({} KiB + {} KiB)\n= {} KiB waiting",
        s.window,
        s.rendezvous_from / KIB,
        s.window,
        s.rendezvous_from / KIB,
        REORDER_ENTRY_BYTES / KIB,
        waiting / KIB
    );
    let flat = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat(table).contains(&flat(&stated)),
        "the table lacks {stated:?}"
    );
    assert!(waiting * 16 < DEFAULT_MAX_REORDER_BYTES);
    // With --rendezvous-from 128K: 64 x 130 KiB, about 8.1 MiB, half the bound.
    let raised = s.window as u64 * (128 * KIB + REORDER_ENTRY_BYTES);
    assert!(flat(table).contains(&format!(
        "{} x {} KiB = {:.1} MiB",
        s.window,
        (128 * KIB + REORDER_ENTRY_BYTES) / KIB,
        raised as f64 / MIB as f64
    )));
    assert!(raised < DEFAULT_MAX_REORDER_BYTES);
    // At most a window of acknowledgements unread, each at most 1044 + 256.
    let longest = encode_ack(0, AckStatus::Refused, &"x".repeat(4096)).len() as u64;
    assert!(s.window as u64 * (longest + ACK_ENTRY_BYTES) < MAX_UNSENT_ACK_BYTES);
}

#[test]
fn every_test_the_table_names_exists() {
    let doc = read("../docs/network.md");
    let table = section(&doc, "Bounded memory");
    let tests = read("tests/adversarial.rs");
    let mut named = 0;
    for row in table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| ---"))
    {
        let last = row.trim_end_matches('|').rsplit('|').next().unwrap();
        for name in last.split('`').skip(1).step_by(2) {
            if name == "test" {
                continue;
            }
            named += 1;
            assert!(
                tests.contains(&format!("fn {name}()")),
                "docs/network.md names a test {name:?} that tests/adversarial.rs lacks"
            );
        }
    }
    assert!(named >= 7, "{named} tests named");
}

#[test]
fn the_design_docs_bounded_table_states_the_network_numbers() {
    let doc = read("../docs/design.md");
    let table = section(&doc, "Bounded by design");
    let max_in_flight = ReceiverOptions::default().max_in_flight;
    for stated in [
        format!("default {} MiB per stream", DEFAULT_MAX_REORDER_BYTES / MIB),
        format!("eager bytes + {REORDER_ENTRY_BYTES} B"),
        format!("the first and last {REFUSAL_SAMPLE} refusals"),
        format!("| {} MiB |", MAX_UNSENT_ACK_BYTES / MIB),
        format!("`max_in_flight` ({max_in_flight})"),
    ] {
        assert!(
            table.contains(&stated),
            "docs/design.md's bounded-by-design table does not say {stated:?}"
        );
    }
}
