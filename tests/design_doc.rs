//! docs/design.md's layout tables, held to the code so that the document
//! cannot drift again (it gave the segment header as 496 bytes when the
//! code had 512). Every row of the tables of fixed offsets is compared with
//! the code's field (offset and size from `offset_of!` and the field's
//! type, through `shmstream::fuzzing::layout`), the geometry rows with the
//! geometry functions for several capacities, the table of sizes with
//! `size_of`/`align_of`, the limits in the text with the public constants,
//! and every value a row states (`version = 3`, the magic, the descriptor's
//! words and bit fields) with the bytes of a real segment and a real hub,
//! and the table of lock bytes with the locks a live segment holds.

mod common;

use common::{config, unique_prefix, Cleanup};
use shmstream::fuzzing::layout::{self, Field};
use shmstream::{DType, Producer, StreamSet, TensorMeta};
use std::os::unix::fs::FileExt;

const DOC: &str = include_str!("../docs/design.md");

/// A markdown table: the heading it stands under (with the line that
/// leads into it when that line ends in `:`, as `"The hub segment: an
/// entry"`), its column names and its cells.
#[derive(Debug)]
struct Table {
    key: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

fn tables() -> Vec<Table> {
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut lead = None;
    let mut lines = DOC.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_string();
            lead = None;
        } else if line.starts_with('|') {
            let columns = cells(line);
            lines.next(); // the `| --- |` line
            let mut rows = Vec::new();
            while let Some(row) = lines.next_if(|l| l.starts_with('|')) {
                rows.push(cells(row));
            }
            let key = match lead.take() {
                Some(lead) => format!("{heading}: {lead}"),
                None => heading.clone(),
            };
            out.push(Table { key, columns, rows });
        } else if !line.trim().is_empty() {
            lead = line.trim().strip_suffix(':').map(str::to_lowercase);
        }
    }
    out
}

/// The one table of offsets under `name` (its heading may go on with
/// `" (..."`).
fn offsets_table(name: &str) -> Table {
    let mut found: Vec<Table> = tables()
        .into_iter()
        .filter(|t| t.key == name || t.key.starts_with(&format!("{name} (")))
        .filter(|t| t.columns.first().map(String::as_str) == Some("offset"))
        .collect();
    assert_eq!(found.len(), 1, "tables of offsets under {name:?}");
    found.pop().unwrap()
}

/// The heading a table of offsets stands under, as written.
fn heading_of(name: &str) -> String {
    offsets_table(name).key
}

/// Every decimal number in `s`, in order (`2^20` gives 2 and 20).
fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect()
}

/// The number after `label` in `s` (`"capacity x "` in `"capacity x 64
/// bytes"`): where the text states it.
fn number_after(s: &str, label: &str) -> u64 {
    let at = s
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} not in {s:?}"));
    numbers(&s[at + label.len()..])[0]
}

/// A size cell: a number, `N each`, `A x B` (numbers or `W`, `E`,
/// `capacity`), optionally `, padded to M`.
fn size(cell: &str, vars: &[(&str, u64)]) -> Option<u64> {
    let cell = cell.replace('`', "");
    let (expr, pad) = match cell.split_once(", padded to ") {
        Some((e, p)) => (e.to_string(), Some(p.trim().parse::<u64>().unwrap())),
        None => (cell.clone(), None),
    };
    let value = |t: &str| {
        let t = t.trim();
        t.parse::<u64>()
            .ok()
            .or_else(|| vars.iter().find(|(n, _)| *n == t).map(|(_, v)| *v))
    };
    let expr = expr.trim_end_matches(" each");
    let n = match expr.split_once(" x ") {
        Some((a, b)) => value(a)? * value(b)?,
        None => value(expr)?,
    };
    Some(pad.map_or(n, |p| n.next_multiple_of(p)))
}

/// A row with a fixed offset and size: offset, size, the field (and notes).
type Fixed = (u64, u64, String);

/// The rows with fixed offsets, one per field (`32, 40, 48 | 8 each` is
/// three), and the rest (offsets `then` or computed sizes), in order.
fn split_rows(table: &Table) -> (Vec<Fixed>, Vec<Vec<String>>) {
    let mut fixed = Vec::new();
    let mut rest = Vec::new();
    for row in &table.rows {
        let offsets = numbers(&row[0]);
        let fixed_size = size(&row[1], &[]);
        match (offsets.is_empty() || row[0] == "then", fixed_size) {
            (false, Some(size)) if rest.is_empty() => {
                for offset in offsets {
                    fixed.push((offset, size, row[2..].join(" | ")));
                }
            }
            _ => rest.push(row.clone()),
        }
    }
    (fixed, rest)
}

fn assert_fields(name: &str, code: &[Field], doc: &[Fixed]) {
    for (i, (f, (offset, size, text))) in code.iter().zip(doc).enumerate() {
        assert_eq!(
            (*offset, *size),
            (f.offset, f.size),
            "{name}, row {i} ({text}): the code has the field {:?} at {} with {} bytes",
            f.word,
            f.offset,
            f.size
        );
        assert!(
            text.to_lowercase().contains(f.word),
            "{name}, row {i} at {offset}: {text:?} does not name the field {:?}",
            f.word
        );
    }
    assert_eq!(
        code.len(),
        doc.len(),
        "{name}: the code has {} fields, the table {} rows of fixed offsets",
        code.len(),
        doc.len()
    );
}

#[test]
fn every_fixed_offset_and_size_in_the_tables_is_the_code_s() {
    for name in [
        "Header page",
        "Descriptor table",
        "Side table",
        "The hub segment",
        "The hub segment: an entry",
    ] {
        let table = offsets_table(name);
        let (fixed, _) = split_rows(&table);
        assert_fields(name, &layout::table(name).unwrap(), &fixed);
    }
}

#[test]
fn the_table_of_sizes_is_the_code_s() {
    let table = tables()
        .into_iter()
        .find(|t| t.columns.first().map(String::as_str) == Some("struct"))
        .expect("a table of struct sizes");
    let mut documented: Vec<(String, u64, u64)> = table
        .rows
        .iter()
        .map(|r| {
            let name = r[0].replace('`', "");
            let name = name.split_whitespace().next().unwrap().to_string();
            (name, r[1].parse().unwrap(), r[2].parse().unwrap())
        })
        .collect();
    let mut code: Vec<(String, u64, u64)> = layout::structs()
        .into_iter()
        .map(|(n, s, a)| (n.to_string(), s as u64, a as u64))
        .collect();
    documented.sort();
    code.sort();
    assert_eq!(documented, code, "(struct, bytes, alignment)");
}

#[test]
fn the_segment_geometry_in_the_headings_is_the_code_s() {
    let header = heading_of("Header page");
    let descriptors = heading_of("Descriptor table");
    let side = heading_of("Side table");
    let page = numbers(&header)[0];
    let descriptor_bytes = number_after(&descriptors, "capacity x ");
    let table_at = number_after(&descriptors, "from offset ");
    let side_bytes = number_after(&side, "capacity x ");
    assert!(side.contains("right after the descriptor table"), "{side}");
    // The header page's rows about the same geometry.
    let rows = offsets_table("Header page").rows;
    let row = |word: &str| {
        rows.iter()
            .find(|r| r[2].contains(word))
            .unwrap_or_else(|| panic!("no row {word:?}"))
            .clone()
    };
    assert_eq!(
        number_after(&row("side table offset")[3], "capacity x "),
        descriptor_bytes
    );
    assert!(row("payload offset")[3].contains("side table end rounded up to a page"));
    for capacity in [
        1,
        2,
        8,
        1000u64.next_power_of_two(),
        shmstream::MAX_CAPACITY,
    ] {
        let (desc_at, side_at, payload_at, total) = layout::segment_offsets(capacity);
        assert_eq!(desc_at, table_at, "capacity {capacity}");
        assert_eq!(side_at, table_at + capacity * descriptor_bytes);
        assert_eq!(
            payload_at,
            (side_at + capacity * side_bytes).next_multiple_of(page)
        );
        assert_eq!(total, payload_at + page, "one page of payload");
    }
}

#[test]
fn the_hub_geometry_rows_are_the_code_s() {
    let table = offsets_table("The hub segment");
    let (_, rest) = split_rows(&table);
    for entries in [64u32, 128, 1024, 4096] {
        let vars = [("E", entries as u64), ("W", entries as u64 / 64)];
        let (ready, announce, first_entry, total) = layout::hub_offsets(entries);
        let mut end = 0u64;
        let mut offsets = Vec::new();
        for row in &rest {
            if row[0].is_empty() && row[1].is_empty() {
                assert!(row[2].contains("rounded up to a page"), "{row:?}");
                assert_eq!(end.next_multiple_of(4096), total, "E = {entries}");
                continue;
            }
            let at = if row[0] == "then" {
                end
            } else {
                numbers(&row[0])[0]
            };
            end = at + size(&row[1], &vars).unwrap_or_else(|| panic!("size of {row:?}"));
            offsets.push(at);
        }
        assert_eq!(offsets, [ready, announce, first_entry], "E = {entries}");
    }
}

#[test]
fn the_limits_in_the_text_are_the_code_s() {
    let header = offsets_table("Header page").rows;
    let note = |word: &str| {
        header
            .iter()
            .find(|r| r[2].contains(word))
            .unwrap_or_else(|| panic!("no row {word:?}"))[3]
            .clone()
    };
    assert_eq!(
        1u64 << number_after(&note("capacity"), "at most 2^"),
        shmstream::MAX_CAPACITY
    );
    let payload = note("payload bytes");
    assert_eq!(numbers(&payload)[0], 4096);
    assert_eq!(
        1u64 << number_after(&payload, ".. 2^"),
        shmstream::MAX_PAYLOAD_BYTES
    );
    assert_eq!(
        number_after(&note("lengths"), "at most "),
        shmstream::MAX_NAME_LEN as u64
    );
    // The hub: its limits, and where the strings of an entry lie.
    let hub = DOC
        .split("### The hub segment")
        .nth(1)
        .expect("the hub segment");
    let limits = numbers(&hub[hub.find("`E` entries").unwrap()..]);
    assert_eq!(
        limits[..4],
        [
            64,
            shmstream::MIN_HUB_ENTRIES as u64,
            shmstream::MAX_HUB_ENTRIES as u64,
            shmstream::DEFAULT_HUB_ENTRIES as u64
        ]
    );
    assert_eq!(
        number_after(hub, "worker name: 1 to "),
        shmstream::MAX_WORKER_LEN as u64
    );
    let strings = offsets_table("The hub segment: an entry")
        .rows
        .into_iter()
        .find(|r| r[2].contains("strings"))
        .unwrap();
    let (p, n) = (
        shmstream::MAX_PREFIX_LEN as u64,
        shmstream::MAX_NAME_LEN as u64,
    );
    assert_eq!(
        numbers(&strings[2]),
        [0, p, p + n, p + 2 * n, p, n, n, n],
        "{strings:?}"
    );
}

/// The bytes of the file behind a shared-memory name.
fn file(name: &str) -> std::fs::File {
    std::fs::File::open(format!("/dev/shm{name}")).unwrap()
}

fn read(f: &std::fs::File, at: u64, size: u64) -> u64 {
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b[..size as usize], at).unwrap();
    match size {
        4 => u32::from_ne_bytes(b[..4].try_into().unwrap()) as u64,
        8 => u64::from_ne_bytes(b),
        other => panic!("a value of {other} bytes"),
    }
}

/// Every row of `table` that states its value (`version = 3`, a magic in
/// quotes) against the bytes of `f`, from `base`. Returns how many.
fn check_stated_values(table: &Table, f: &std::fs::File) -> usize {
    let (fixed, _) = split_rows(table);
    let mut checked = 0;
    for (offset, size, text) in fixed {
        let field = text.split(" | ").next().unwrap();
        if let Some((_, value)) = field.split_once(" = ") {
            let value = numbers(value)[0];
            assert_eq!(read(f, offset, size), value, "{field}");
            checked += 1;
        } else if let Some(magic) = field.split('"').nth(1) {
            let magic = magic.replace("\\0", "\0");
            let mut b = vec![0u8; size as usize];
            f.read_exact_at(&mut b, offset).unwrap();
            assert_eq!(b, magic.as_bytes(), "{field}");
            checked += 1;
        }
    }
    checked
}

#[test]
fn every_value_a_row_states_is_in_a_real_segment_and_hub() {
    let prefix = unique_prefix("doc");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 8, 512);
    let producer = Producer::create(&cfg).unwrap();
    let f = file(&cfg.segment_name().unwrap());
    assert_eq!(check_stated_values(&offsets_table("Header page"), &f), 9);
    drop(producer);

    let set = StreamSet::<()>::create("doc", &prefix).unwrap();
    let f = file(&shmstream::hub_name("doc", &prefix).unwrap());
    assert_eq!(
        check_stated_values(&offsets_table("The hub segment"), &f),
        6
    );
    drop(set);
}

/// The offset of the row whose field starts with `word`.
fn offset_of(table: &Table, word: &str) -> u64 {
    let row = table
        .rows
        .iter()
        .find(|r| r[2].starts_with(word))
        .unwrap_or_else(|| panic!("{}: no row {word:?}", table.key));
    numbers(&row[0])[0]
}

/// `(low, high)` of every `N-M` bit range in `s`, in order.
fn bit_ranges(s: &str) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let words: Vec<&str> = s
        .split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .collect();
    for w in words {
        if let Some((a, b)) = w.split_once('-') {
            if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                out.push((a, b));
            }
        }
    }
    out
}

#[test]
fn a_real_descriptor_and_side_entry_read_as_the_tables_say() {
    let prefix = unique_prefix("docd");
    let _cleanup = Cleanup(prefix.clone());
    let capacity = 8;
    let cfg = config(&prefix, capacity, 512);
    let producer = Producer::create(&cfg).unwrap();
    // Position 0: a narrow [8] u64 tensor; position 1: a wide one (a dim
    // past 32 bits next to a zero one: no bytes).
    let narrow = TensorMeta::new(DType::U64, &[8]).unwrap();
    producer
        .register("t0")
        .unwrap()
        .write(narrow, &[7u8; 64])
        .unwrap();
    let wide = TensorMeta::new(DType::U8, &[1 << 33, 0]).unwrap();
    producer
        .register("wide-one")
        .unwrap()
        .write(wide, &[])
        .unwrap();
    let f = file(&cfg.segment_name().unwrap());

    let header = offsets_table("Header page");
    let descriptors = read(&f, offset_of(&header, "descriptor table offset"), 8);
    let side = read(&f, offset_of(&header, "side table offset"), 8);
    let payload_at = read(&f, offset_of(&header, "payload offset"), 8);
    let total = read(&f, offset_of(&header, "total bytes"), 8);
    let (d0, s0, p0, t0) = layout::segment_offsets(capacity);
    assert_eq!((descriptors, side, payload_at), (d0, s0, p0));
    assert_eq!(total, t0 - 4096 + cfg.payload_bytes(), "{t0}");
    assert_eq!(
        read(&f, offset_of(&header, "`registered`"), 8),
        2,
        "registered"
    );

    let table = offsets_table("Descriptor table");
    let desc_bytes = number_after(&heading_of("Descriptor table"), "capacity x ");
    let at =
        |position: u64, word: &str| descriptors + position * desc_bytes + offset_of(&table, word);
    assert_eq!(read(&f, at(0, "`seq`"), 8), 1);
    assert_eq!(read(&f, at(1, "`seq`"), 8), 2);
    assert_eq!(read(&f, at(0, "offset:"), 8), 0);
    // `register` reserves the default item bytes; the next item follows.
    assert_eq!(read(&f, at(0, "len:"), 8), 512);
    assert_eq!(read(&f, at(1, "offset:"), 8), 512);
    assert_eq!(read(&f, at(0, "nbytes"), 4), 64);
    assert_eq!(read(&f, at(0, "8 dims"), 4), 8);
    // The info word's bit fields, as the row numbers them.
    let info_row = &table
        .rows
        .iter()
        .find(|r| r[2].starts_with("status"))
        .unwrap()[2];
    let ranges = bit_ranges(info_row);
    assert_eq!(ranges.len(), 4, "{info_row}");
    let fields = |word: u64| -> Vec<u64> {
        ranges
            .iter()
            .map(|&(lo, hi)| (word >> lo) & ((1u64 << (hi - lo + 1)) - 1))
            .collect()
    };
    let committed = numbers(info_row.split("committed").next().unwrap());
    let committed = *committed.last().unwrap();
    assert_eq!(
        fields(read(&f, at(0, "status"), 4)),
        [committed, DType::U64.code() as u64, 1, 2],
        "status, dtype, ndim, id length of [8] u64 \"t0\""
    );
    assert_eq!(
        fields(read(&f, at(1, "status"), 4)),
        [committed, DType::U8.code() as u64, 2, 8]
    );
    // The wide marker, and the side entry.
    let nbytes_row = &table
        .rows
        .iter()
        .find(|r| r[2].starts_with("nbytes"))
        .unwrap()[2];
    let marker = nbytes_row.split('`').nth(1).unwrap().replace('_', "");
    let marker = u64::from_str_radix(marker.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(read(&f, at(1, "nbytes"), 4), marker);
    let side_table = offsets_table("Side table");
    let side_bytes = number_after(&heading_of("Side table"), "capacity x ");
    let side_at =
        |position: u64, word: &str| side + position * side_bytes + offset_of(&side_table, word);
    let mut id = [0u8; 8];
    f.read_exact_at(&mut id, side_at(1, "the id")).unwrap();
    assert_eq!(&id, b"wide-one");
    assert_eq!(read(&f, side_at(1, "a wide"), 8), 1 << 33);
    assert_eq!(read(&f, side_at(1, "a wide") + 8, 8), 0);
    drop(producer);
}

/// The lock on `byte` of `f` that a write lock from another description
/// would meet: `"read"`, `"write"` or `None`.
fn lock_on(f: &std::fs::File, byte: i64) -> Option<&'static str> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero `flock` is a valid value of the C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = byte;
    fl.l_len = 1;
    // SAFETY: F_OFD_GETLK reads and writes the `flock`, which outlives it.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    assert_eq!(rc, 0, "F_OFD_GETLK");
    match fl.l_type as i32 {
        libc::F_RDLCK => Some("read"),
        libc::F_WRLCK => Some("write"),
        _ => None,
    }
}

#[test]
fn the_lock_table_is_what_a_live_segment_holds() {
    let table = tables()
        .into_iter()
        .find(|t| t.columns.first().map(String::as_str) == Some("byte"))
        .expect("the table of lock bytes");
    let prefix = unique_prefix("docl");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 8, 512);
    let producer = Producer::create(&cfg).unwrap();
    let f = file(&cfg.segment_name().unwrap());
    let consumer = shmstream::Consumer::open(&cfg).unwrap();
    // What a live producer and consumer hold, by the table: every row but
    // a reclaimer's and those held only "while it" does something.
    let mut expected: [Option<&str>; 8] = [None; 8];
    for row in &table.rows {
        let byte = numbers(&row[0])[0] as usize;
        if row[1].starts_with("a reclaimer") || row[1].contains("while it ") {
            continue;
        }
        assert_eq!(expected[byte], None, "two holders of byte {byte} at once");
        expected[byte] = Some(if row[2] == "write" { "write" } else { "read" });
    }
    for (byte, kind) in expected.iter().enumerate() {
        assert_eq!(lock_on(&f, byte as i64), *kind, "byte {byte}");
    }
    // The consumer's go with it, the producer's stays.
    drop(consumer);
    assert_eq!(lock_on(&f, 0), expected[0]);
    for byte in 1..8 {
        assert_eq!(lock_on(&f, byte), None, "byte {byte}");
    }
    drop(producer);
}
