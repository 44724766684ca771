//! The launcher's live progress: the consumer reports its running latency
//! percentiles (`consume --progress`, about every 0.5 s) on the stdout the
//! launcher reads, and the launcher shows them; `--progress-lines` prints
//! the bar's text as lines so that a test (or a log) can read it.

mod common;
use common::*;
use ipc_demo::progress::Progress;

/// `(p50, p99)` in ns from a bar text's `p50 850 ns p99 12.3 µs`.
fn bar_latency(line: &str) -> Option<(f64, f64)> {
    let ns = |at: &str| -> Option<f64> {
        let rest = &line[line.find(at)? + at.len()..];
        let mut words = rest.split_whitespace();
        let x: f64 = words.next()?.parse().ok()?;
        let unit = match words.next()?.trim_end_matches(',') {
            "ns" => 1.0,
            "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            _ => return None,
        };
        Some(x * unit)
    };
    Some((ns("p50 ")?, ns("p99 ")?))
}

#[test]
fn the_bar_shows_the_consumers_running_p50_and_p99() {
    let scope = Scope::new("prog");
    // 2.5 s of items at 4000/s: four or five reports.
    let out = run(
        DEMO,
        &[
            "--prefix",
            &scope.prefix,
            "--json",
            "--progress-lines",
            "--items",
            "10000",
            "--rate",
            "4000",
        ],
        None,
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "ipc-demo failed: {err}");
    // The report still reads (the progress lines are not part of it).
    let report = json(&out.stdout);
    assert_complete(&report, 10000, 1);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("progress ")).collect();
    assert!(lines.len() >= 2, "fewer than 2 progress lines: {err}");
    let mut last_released = 0;
    for line in &lines {
        let (p50, p99) = bar_latency(line).unwrap_or_else(|| panic!("no p50/p99 in {line:?}"));
        assert!(0.0 < p50 && p50 <= p99 && p99 < 1e9, "{line}");
        let released: u64 = line["progress ".len()..]
            .split('/')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(released >= last_released && released <= 10000, "{line}");
        last_released = released;
    }
    // The bar's numbers are the consumer's: within the final report's
    // range of the same histogram.
    let max = report["latency"]["max_ns"].as_f64().unwrap();
    let (_, p99) = bar_latency(lines[lines.len() - 1]).unwrap();
    assert!(p99 <= max * 1.01, "{p99} > max {max}");
    scope.assert_no_leftovers();
}

#[test]
fn the_consumer_reports_progress_only_when_asked() {
    for progress in [true, false] {
        let mut scope = Scope::new("progc");
        let prefix = scope.prefix.clone();
        let common = ["--prefix", &prefix, "--items", "6000"];
        let mut producer = vec!["produce"];
        producer.extend(common);
        producer.extend(["--rate", "4000"]);
        let mut consumer = vec!["consume", "--json"];
        consumer.extend(common);
        if progress {
            consumer.push("--progress");
        }
        let p = scope.spawn(DEMO, &producer);
        let c = scope.spawn(DEMO, &consumer);
        let out = scope.wait(c);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(scope.wait(p).status.success());
        let stdout = text(&out.stdout);
        let reports: Vec<Progress> = stdout
            .lines()
            .filter_map(|l| Progress::parse(l.strip_prefix("progress ")?))
            .collect();
        // The report is still the last line.
        assert_complete(&json(&out.stdout), 6000, 1);
        if !progress {
            assert_eq!(stdout.lines().count(), 1, "{stdout}");
            continue;
        }
        // 1.5 s at one line per 0.5 s: two or three, every one well formed.
        let lines = stdout
            .lines()
            .filter(|l| l.starts_with("progress "))
            .count();
        assert_eq!(lines, reports.len(), "{stdout}");
        assert!(reports.len() >= 2, "{stdout}");
        let mut items = 0;
        for r in &reports {
            let (p50, p99) = r.latency.expect("56-byte items carry a time stamp");
            assert!(0 < p50 && p50 <= p99, "{r:?}");
            assert!(r.items > items && r.items <= 6000, "{r:?}");
            items = r.items;
        }
        scope.assert_no_leftovers();
    }
}
