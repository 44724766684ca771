//! Signals to the launcher alone (not its process group), as a supervisor
//! sends them: SIGTERM, SIGINT and SIGHUP are forwarded, the launcher says
//! how far the stream got and exits with 128 + the signal; SIGKILL leaves
//! the children to the kernel's parent-death signal. Either way no child
//! survives and no segment is left, within 2 s. The same in the network
//! mode (`--source ucx`: sender, producer, consumer) and the many-streams
//! mode (8 streams through a hub, 2 producers: no hub left either), and
//! for the producer and the consumer run on their own.

mod common;
use common::*;
use std::io::BufReader;
use std::time::{Duration, Instant};

/// The liveness bound of the issue: everything gone within 2 s.
const GONE_WITHIN: Duration = Duration::from_secs(2);

/// A process as /proc shows it: pid and start time (a reused pid has
/// another start time).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Pid {
    pid: i32,
    start: u64,
}

/// State, parent and start time of `pid`, from /proc/PID/stat.
fn stat(pid: i32) -> Option<(char, i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let fields: Vec<&str> = text[text.rfind(')')? + 2..].split(' ').collect();
    Some((
        fields[0].chars().next()?,
        fields[1].parse().ok()?,
        fields[19].parse().ok()?,
    ))
}

fn children_of(parent: i32) -> Vec<Pid> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some((_, ppid, start)) = stat(pid) {
            if ppid == parent {
                found.push(Pid { pid, start });
            }
        }
    }
    found
}

/// Running: the same process (same start time), not a zombie.
fn alive(p: Pid) -> bool {
    matches!(stat(p.pid), Some((state, _, start)) if start == p.start && !"ZX".contains(state))
}

/// Kills (SIGKILL) the processes it holds that still run, so a failing
/// test leaves none behind. Declared after the scope, so it drops first
/// and the scope then removes the segments.
struct Reaper(Vec<Pid>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for &p in &self.0 {
            if alive(p) {
                // SAFETY: kill has no memory effects; the pid was checked
                // to be the same process just before.
                unsafe { libc::kill(p.pid, libc::SIGKILL) };
            }
        }
    }
}

/// Polls `done` every 10 ms until it holds or `limit` passes; whether it held.
fn within(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the consumer released an item of at least `streams` segments
/// of `scope`.
fn flowing(scope: &Scope, streams: usize) -> bool {
    let Ok(names) = shmstream::list_segments(&scope.prefix) else {
        return false;
    };
    names
        .iter()
        .filter(|name| shmstream::inspect(name).is_ok_and(|s| s.released > 0))
        .count()
        >= streams
}

/// How the launcher is run: the arguments added to an endless stream
/// (10^8 items a stream at 20000/s), and the children it starts.
#[derive(Clone, Copy)]
struct Mode {
    args: &'static [&'static str],
    children: usize,
    producers: usize,
    streams: usize,
}

/// One producer and one consumer.
const PAIR: Mode = Mode {
    args: &[],
    children: 2,
    producers: 1,
    streams: 1,
};
/// The network mode: a sender offers the tensors over UCX (tcp on
/// loopback) to the producer's receiver; three processes.
const UCX: Mode = Mode {
    args: &["--source", "ucx"],
    children: 3,
    producers: 1,
    streams: 1,
};
/// The many-streams mode: 8 streams through one hub, 2 producers and one
/// consumer.
const MANY: Mode = Mode {
    args: &["--streams", "8", "--producers", "2"],
    children: 3,
    producers: 2,
    streams: 8,
};

/// Starts the launcher in `mode` and waits until all its children run and
/// items flow in every stream (so every producer has items to report).
fn launcher(scope: &mut Scope, reaper: &mut Reaper, mode: Mode) -> (usize, i32) {
    if mode.args.contains(&"ucx") {
        // Children inherit it: UCX's tcp transport, as in tests/ucx.rs.
        std::env::set_var("UCX_TLS", "tcp");
    }
    let prefix = scope.prefix.clone();
    let mut args = vec![
        "--prefix",
        prefix.as_str(),
        "--items",
        "100000000",
        "--rate",
        "20000",
        "--no-progress",
        "--json",
    ];
    args.extend(mode.args);
    let i = scope.spawn(DEMO, &args);
    let pid = scope.child(i).id() as i32;
    let started = within(Duration::from_secs(30), || {
        let children = children_of(pid);
        for c in &children {
            if !reaper.0.contains(c) {
                reaper.0.push(*c);
            }
        }
        children.len() == mode.children && flowing(scope, mode.streams)
    });
    assert!(started, "the launcher did not get its children streaming");
    (i, pid)
}

/// Sends `signal` to the launcher alone; checks that its children and the
/// segments (and hub) are gone within 2 s, then returns the launcher's
/// output.
fn signal_launcher(signal: libc::c_int, mode: Mode) -> (std::process::Output, String) {
    let mut scope = Scope::new("lsig");
    let mut reaper = Reaper(Vec::new());
    let (i, pid) = launcher(&mut scope, &mut reaper, mode);
    let children = reaper.0.clone();
    assert_eq!(children.len(), mode.children, "{children:?}");
    // SAFETY: sends a signal to our own unreaped child.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let gone = within(GONE_WITHIN, || {
        !children.iter().any(|&c| alive(c)) && scope.leftovers().is_empty()
    });
    let still: Vec<Pid> = children.iter().copied().filter(|&c| alive(c)).collect();
    assert!(
        gone,
        "after {GONE_WITHIN:?}: children alive {still:?}, segments {:?}",
        scope.leftovers()
    );
    let out = scope.wait(i);
    let err = text(&out.stderr);
    scope.assert_no_leftovers();
    (out, err)
}

fn assert_interrupted(signal: libc::c_int, name: &str, mode: Mode) {
    let (out, err) = signal_launcher(signal, mode);
    assert_eq!(out.status.code(), Some(128 + signal), "{err}");
    let summary = err
        .lines()
        .find(|l| l.starts_with("ipc-demo: interrupted by"))
        .unwrap_or_else(|| panic!("no summary in {err:?}"));
    assert!(
        summary.starts_with(&format!("ipc-demo: interrupted by {name} after ")),
        "{summary}"
    );
    if mode.producers == 1 && mode.children == 2 {
        assert!(summary.contains(" of 100000000 items"), "{summary}");
    }
    // Each producer said how far it got (N > 0: items flowed) and that it
    // removed its segments.
    let prefix = format!("ipc-producer: interrupted by {name} after ");
    let producers: Vec<&str> = err.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(producers.len(), mode.producers, "{err}");
    for line in producers {
        let n: u64 = line[prefix.len()..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line:?}"));
        assert!(n > 0, "{line}");
        assert!(line.contains("removed"), "{line}");
    }
    assert!(
        err.contains(&format!("ipc-consumer: interrupted by {name} after ")),
        "{err}"
    );
}

fn assert_killed(mode: Mode) {
    // The children get SIGTERM from the kernel when the launcher dies, so
    // the producers still remove their segments (checked too).
    let (out, _) = signal_launcher(libc::SIGKILL, mode);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL));
}

#[test]
fn sigterm_to_the_launcher_stops_the_pair_and_removes_the_segment() {
    assert_interrupted(libc::SIGTERM, "SIGTERM", PAIR);
}

#[test]
fn sigint_to_the_launcher_alone_stops_the_pair_and_removes_the_segment() {
    assert_interrupted(libc::SIGINT, "SIGINT", PAIR);
}

#[test]
fn sighup_to_the_launcher_stops_the_pair_and_removes_the_segment() {
    assert_interrupted(libc::SIGHUP, "SIGHUP", PAIR);
}

#[test]
fn sigkill_of_the_launcher_ends_its_children() {
    assert_killed(PAIR);
}

#[test]
fn sigterm_to_a_network_launcher_stops_sender_producer_and_consumer() {
    assert_interrupted(libc::SIGTERM, "SIGTERM", UCX);
}

#[test]
fn sigint_to_a_network_launcher_stops_sender_producer_and_consumer() {
    assert_interrupted(libc::SIGINT, "SIGINT", UCX);
}

#[test]
fn sigkill_of_a_network_launcher_ends_its_three_children() {
    assert_killed(UCX);
}

#[test]
fn sigterm_to_a_many_streams_launcher_stops_every_process_and_removes_the_hub() {
    assert_interrupted(libc::SIGTERM, "SIGTERM", MANY);
}

#[test]
fn sigint_to_a_many_streams_launcher_stops_every_process_and_removes_the_hub() {
    assert_interrupted(libc::SIGINT, "SIGINT", MANY);
}

#[test]
fn sigkill_of_a_many_streams_launcher_ends_its_children_and_removes_the_hub() {
    assert_killed(MANY);
}

#[test]
fn the_pair_run_by_hand_reports_and_cleans_on_signals() {
    let mut scope = Scope::new("psig");
    let mut reaper = Reaper(Vec::new());
    let prefix = scope.prefix.clone();
    let common = [
        "--prefix",
        prefix.as_str(),
        "--request-id",
        "byhand",
        "--timeout",
        "30",
    ];
    let mut producer_args = common.to_vec();
    producer_args.extend(["--items", "100000000", "--rate", "20000"]);
    let p = scope.spawn(PRODUCER, &producer_args);
    let mut stdout = BufReader::new(scope.child(p).stdout.take().unwrap());
    line_after(&mut stdout, "segment");
    let c = scope.spawn(CONSUMER, &common);
    for i in [p, c] {
        let pid = scope.child(i).id() as i32;
        reaper.0.push(Pid {
            pid,
            start: stat(pid).unwrap().2,
        });
    }
    assert!(
        within(Duration::from_secs(30), || flowing(&scope, 1)),
        "no item flowed"
    );
    // SAFETY: signals to our own unreaped children.
    assert_eq!(unsafe { libc::kill(reaper.0[1].pid, libc::SIGINT) }, 0);
    let consumer = scope.wait(c);
    let said = text(&consumer.stderr);
    assert_eq!(consumer.status.code(), Some(130), "{said}");
    let n: u64 = said
        .trim()
        .strip_prefix("ipc-consumer: interrupted by SIGINT after ")
        .and_then(|r| r.strip_suffix(" items"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said:?}"));
    assert!(n > 0, "{said}");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(reaper.0[0].pid, libc::SIGHUP) }, 0);
    let producer = scope.wait(p);
    let said = text(&producer.stderr);
    assert_eq!(producer.status.code(), Some(129), "{said}");
    assert!(said.contains("; segment removed"), "{said}");
    scope.assert_no_leftovers();
}
