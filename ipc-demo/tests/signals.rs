//! Signals to the launcher alone (not its process group), as a supervisor
//! sends them: SIGTERM, SIGINT and SIGHUP are forwarded, the launcher says
//! how far the stream got and exits with 128 + the signal; SIGKILL leaves
//! the children to the kernel's parent-death signal. Either way no child
//! survives and no segment is left, within 2 s. The same for the
//! producer and the consumer run on their own.

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

/// Items the consumer released in the one segment of `scope`, if any.
fn released(scope: &Scope) -> Option<u64> {
    let names = shmstream::list_segments(&scope.prefix).ok()?;
    let name = names.first()?;
    Some(shmstream::inspect(name).ok()?.released)
}

/// Starts the launcher on an endless stream (10^8 items at 20000/s) and
/// waits until both children run and items flow.
fn launcher(scope: &mut Scope, reaper: &mut Reaper) -> (usize, i32) {
    let prefix = scope.prefix.clone();
    let args = [
        "--prefix",
        prefix.as_str(),
        "--items",
        "100000000",
        "--rate",
        "20000",
        "--no-progress",
        "--json",
    ];
    let i = scope.spawn(DEMO, &args);
    let pid = scope.child(i).id() as i32;
    let started = within(Duration::from_secs(30), || {
        let children = children_of(pid);
        for c in &children {
            if !reaper.0.contains(c) {
                reaper.0.push(*c);
            }
        }
        children.len() == 2 && released(scope).is_some_and(|n| n > 0)
    });
    assert!(started, "the launcher did not get its pair streaming");
    (i, pid)
}

/// Sends `signal` to the launcher alone; checks that its children and the
/// segment are gone within 2 s, then returns the launcher's output.
fn signal_launcher(signal: libc::c_int) -> (std::process::Output, String) {
    let mut scope = Scope::new("lsig");
    let mut reaper = Reaper(Vec::new());
    let (i, pid) = launcher(&mut scope, &mut reaper);
    let children = reaper.0.clone();
    assert_eq!(children.len(), 2, "{children:?}");
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

fn assert_interrupted(signal: libc::c_int, name: &str) {
    let (out, err) = signal_launcher(signal);
    assert_eq!(out.status.code(), Some(128 + signal), "{err}");
    let summary = err
        .lines()
        .find(|l| l.starts_with("ipc-demo: interrupted by"))
        .unwrap_or_else(|| panic!("no summary in {err:?}"));
    assert!(
        summary.starts_with(&format!("ipc-demo: interrupted by {name} after ")),
        "{summary}"
    );
    assert!(summary.contains(" of 100000000 items"), "{summary}");
    // The children said how far they got, and the producer that it
    // removed its segment.
    assert!(
        err.contains(&format!("ipc-producer: interrupted by {name} after "))
            && err.contains("; segment removed"),
        "{err}"
    );
    assert!(
        err.contains(&format!("ipc-consumer: interrupted by {name} after ")),
        "{err}"
    );
}

#[test]
fn sigterm_to_the_launcher_stops_the_pair_and_removes_the_segment() {
    assert_interrupted(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_to_the_launcher_alone_stops_the_pair_and_removes_the_segment() {
    assert_interrupted(libc::SIGINT, "SIGINT");
}

#[test]
fn sighup_to_the_launcher_stops_the_pair_and_removes_the_segment() {
    assert_interrupted(libc::SIGHUP, "SIGHUP");
}

#[test]
fn sigkill_of_the_launcher_ends_its_children() {
    // The children get SIGTERM from the kernel when the launcher dies, so
    // the producer still removes its segment (checked too).
    let (out, _) = signal_launcher(libc::SIGKILL);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL));
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
        within(Duration::from_secs(30), || released(&scope)
            .is_some_and(|n| n > 0)),
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
