//! docs/design.md's "Bounded by design" table: every test it names exists
//! somewhere in the workspace (a `fn` of a Rust test or a `def` of a Python
//! one), every row names at least one, and the hub sizes it states are the
//! hub geometry's. The network rows' numbers are held by
//! shmstream-net/tests/docs.rs.

use shmstream::fuzzing::layout;
use std::path::Path;

const DOC: &str = include_str!("../docs/design.md");

/// The section from `## {title}` to the next `## ` heading.
fn section(title: &str) -> &'static str {
    let start = DOC
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("docs/design.md has no section {title:?}"));
    let rest = &DOC[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

/// The table's body rows, as cells.
fn rows() -> Vec<Vec<String>> {
    section("Bounded by design")
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The test names of a cell: its `code` spans that are snake_case names
/// (a command such as `scripts/soak.sh --lifecycle` is not one).
fn test_names(cell: &str) -> Vec<&str> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.contains('_')
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect()
}

/// Every source file of the workspace (Rust and Python), build output and
/// virtual environments left out.
fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            let skipped = name.starts_with('.') || name.starts_with("target") || name == "corpus";
            if !skipped {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") || name.ends_with(".py") {
            out.push(std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
}

#[test]
fn every_row_names_tests_that_exist() {
    let rows = rows();
    assert!(rows.len() >= 15, "the table lost rows: {}", rows.len());
    let mut files = Vec::new();
    sources(Path::new(env!("CARGO_MANIFEST_DIR")), &mut files);
    let defined = |name: &str| {
        files
            .iter()
            .any(|f| f.contains(&format!("fn {name}(")) || f.contains(&format!("def {name}(")))
    };
    for row in &rows {
        assert_eq!(row.len(), 5, "a row of five columns: {row:?}");
        let tests = test_names(&row[4]);
        assert!(!tests.is_empty(), "the row of {:?} names no test", row[0]);
        for test in tests {
            assert!(
                defined(test),
                "the row of {:?} names {test}, which no file defines",
                row[0]
            );
        }
    }
}

#[test]
fn the_hub_sizes_stated_are_the_geometrys() {
    let row = rows()
        .into_iter()
        .find(|r| r[0].starts_with("hub entries"))
        .expect("a row for the hub entries");
    for entries in [64, 1024, 4096] {
        let total = layout::hub_offsets(entries).3;
        // Grouped by thousands with spaces, as the table writes them.
        let digits = total.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(' ');
            }
            grouped.push(c);
        }
        assert!(
            row[2].contains(&format!("{grouped} B")),
            "the hub of {entries} entries is {total} bytes; the row says {:?}",
            row[2]
        );
    }
}
