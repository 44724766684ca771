//! A peer that forks: its child inherits the segment's descriptor, and
//! with it the open file description that carries the liveness lock. The
//! handle belongs to the process that made it: a child that lives on must
//! not keep a killed peer "alive", and a child that drops its copy must not
//! end or remove the stream (docs/design.md, "Liveness and cleanup").

mod common;

use common::{commit_item, config, unique_prefix, Cleanup};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{fork, ForkResult, Pid};
use shmstream::{hub_name, inspect_hub, Consumer, Hub, Producer, StreamError, StreamSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "SHMSTREAM_FORK_ROLE";
const PREFIX: &str = "SHMSTREAM_FORK_PREFIX";
const WORKER: &str = "fork-worker";

/// What the design promises is one sleep slice (20 ms) plus the kernel's
/// teardown of the dead process; this only guards against a hang on a
/// loaded machine.
const DETECTION_LIMIT: Duration = Duration::from_secs(2);
/// How long a waiter waits for a death it must see (a hang before the fix).
const WAIT: Duration = Duration::from_secs(3);

/// The child process (and the grandchild it forked, if any): both killed on
/// drop, so a failing test leaves no process behind.
struct Family {
    child: Child,
    grandchild: Option<Pid>,
}

impl Drop for Family {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = self.grandchild {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

/// Spawns this binary's `child_entry` in `role`; returns once the child
/// printed `ready` (and its grandchild's pid, if it forked one to live on).
fn spawn_ready(role: &str, prefix: &str) -> Family {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(PREFIX, prefix)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let grandchild = loop {
        match lines.next() {
            // libtest may print "test child_entry ... " on the same line first.
            Some(Ok(line)) if line.contains("ready") => {
                let pid = line.rsplit("ready").next().unwrap().trim();
                break pid.parse().ok().map(Pid::from_raw);
            }
            Some(Ok(_)) => continue,
            other => panic!("child ended before it was ready: {other:?}"),
        }
    };
    Family { child, grandchild }
}

fn kill9(family: &mut Family) -> Instant {
    let pid = Pid::from_raw(family.child.id() as i32);
    kill(pid, Signal::SIGKILL).unwrap();
    let _ = family.child.wait();
    Instant::now()
}

fn cfg(prefix: &str) -> shmstream::StreamConfig {
    config(prefix, 8, 512).with_timeout(None)
}

/// Forks; the new process runs `body` and exits without unwinding or
/// running the parent's destructors. Returns the child's pid.
fn fork_running(body: impl FnOnce()) -> Pid {
    // SAFETY: the child only runs `body` (sleeps, or drops a handle: what
    // a forked worker does) and `_exit`s; glibc's malloc is fork-safe.
    match unsafe { fork() }.unwrap() {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            body();
            // SAFETY: ends the forked process at once.
            unsafe { libc::_exit(0) }
        }
    }
}

/// Not a test of its own: the body of the child process.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let prefix = std::env::var(PREFIX).unwrap();
    match role.as_str() {
        // Commits five items, forks a child that lives on (holding every
        // descriptor it inherited), then sleeps until killed.
        "producer-forks" => {
            let producer = Producer::create(&cfg(&prefix)).unwrap();
            for s in 0..5 {
                commit_item(producer.register(&format!("t{s}")).unwrap(), s, 8);
            }
            let grandchild = fork_running(|| std::thread::sleep(Duration::from_secs(30)));
            println!("ready {grandchild}");
            std::thread::sleep(Duration::from_secs(60));
            drop(producer);
        }
        // Commits five items, forks a child that drops its copy of the
        // producer (as a forked worker that exits cleanly does) and exits;
        // then sleeps until killed.
        "producer-forks-and-drops" => {
            let producer = Producer::create(&cfg(&prefix)).unwrap();
            for s in 0..5 {
                commit_item(producer.register(&format!("t{s}")).unwrap(), s, 8);
            }
            let mut copy = Some(producer);
            let grandchild = fork_running(|| drop(copy.take()));
            nix::sys::wait::waitpid(grandchild, None).unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
            drop(copy);
        }
        // Attaches to the worker's hub and creates a stream through it,
        // forks a child that drops its copies of both (as a forked worker
        // that exits cleanly does) and exits; then sleeps until killed.
        "hub-producer-forks-and-drops" => {
            let hub = Hub::attach(WORKER, &prefix).unwrap();
            let producer = hub.create_stream(&cfg(&prefix)).unwrap();
            commit_item(producer.register("t0").unwrap(), 0, 8);
            let mut copies = Some((hub, producer));
            let grandchild = fork_running(|| drop(copies.take()));
            nix::sys::wait::waitpid(grandchild, None).unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(60));
            drop(copies);
        }
        // Attaches, forks a child that lives on, reads nothing until killed.
        "consumer-forks" => {
            let consumer = Consumer::open(&cfg(&prefix)).unwrap();
            let grandchild = fork_running(|| std::thread::sleep(Duration::from_secs(30)));
            println!("ready {grandchild}");
            std::thread::sleep(Duration::from_secs(60));
            drop(consumer);
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_killed_producer_whose_forked_child_lives_on_is_reported_gone() {
    let prefix = unique_prefix("fp");
    let _cleanup = Cleanup(prefix.clone());
    let mut family = spawn_ready("producer-forks", &prefix);
    assert!(
        family.grandchild.is_some(),
        "the child forked no grandchild"
    );
    let mut consumer = Consumer::open(&cfg(&prefix)).unwrap();
    assert_eq!(consumer.poll().unwrap(), 5);
    let killed_at = kill9(&mut family);
    let result = consumer.wait_for(6, Some(WAIT));
    let took = killed_at.elapsed();
    assert_eq!(
        result.unwrap_err(),
        StreamError::ProducerGone,
        "the producer was killed {took:?} ago while its forked child lives on"
    );
    println!("producer death noticed after {took:?}");
    assert!(took < DETECTION_LIMIT, "took {took:?}");
    // What it completed is still there.
    assert_eq!(consumer.poll().unwrap(), 5);
}

#[test]
fn a_killed_consumer_whose_forked_child_lives_on_is_reported_gone() {
    let prefix = unique_prefix("fc");
    let _cleanup = Cleanup(prefix.clone());
    let producer = Producer::create(&cfg(&prefix)).unwrap();
    let mut family = spawn_ready("consumer-forks", &prefix);
    assert!(
        family.grandchild.is_some(),
        "the child forked no grandchild"
    );
    for s in 0..8 {
        commit_item(producer.register(&format!("t{s}")).unwrap(), s, 8);
    }
    let killed_at = kill9(&mut family);
    let result = producer.register_timeout("t8", Some(WAIT)).map(|_| ());
    let took = killed_at.elapsed();
    assert_eq!(
        result.unwrap_err(),
        StreamError::ConsumerGone,
        "the consumer was killed {took:?} ago while its forked child lives on"
    );
    println!("consumer death noticed after {took:?}");
    assert!(took < DETECTION_LIMIT, "took {took:?}");
}

#[test]
fn a_forked_childs_copy_of_a_producer_neither_ends_nor_removes_the_stream() {
    let prefix = unique_prefix("fd");
    let _cleanup = Cleanup(prefix.clone());
    let name = cfg(&prefix).segment_name().unwrap();
    let mut family = spawn_ready("producer-forks-and-drops", &prefix);
    // The child's copy went (its process exited); the producer did not.
    assert!(
        shmstream::list_segments(&prefix).unwrap().contains(&name),
        "the forked child's drop removed the live producer's segment"
    );
    let mut consumer = Consumer::open(&cfg(&prefix)).unwrap();
    assert_eq!(consumer.poll().unwrap(), 5);
    let short = consumer.wait_for(6, Some(Duration::from_millis(200)));
    assert!(
        matches!(short, Err(StreamError::Timeout { .. })),
        "the live producer's stream ended: {short:?}"
    );
    // The real producer's death is still seen.
    let killed_at = kill9(&mut family);
    assert_eq!(
        consumer.wait_for(6, Some(WAIT)).unwrap_err(),
        StreamError::ProducerGone
    );
    assert!(killed_at.elapsed() < DETECTION_LIMIT);
}

#[test]
fn a_forked_childs_copy_of_a_hub_attachment_keeps_the_parents_producer_slot() {
    let prefix = unique_prefix("fh");
    let _cleanup = Cleanup(prefix.clone());
    let name = hub_name(WORKER, &prefix).unwrap();
    let _set: StreamSet = StreamSet::create(WORKER, &prefix).unwrap();
    let mut family = spawn_ready("hub-producer-forks-and-drops", &prefix);
    let child = family.child.id();
    // The grandchild dropped its copy of the attachment and exited: the
    // producer slot is still the child's (its lock was not released).
    let holders = inspect_hub(&name).unwrap().producer_pids;
    assert_eq!(
        holders,
        [child],
        "a forked child's drop of its Hub copy let go of the parent's producer slot"
    );
    // The real attachment's death still frees it.
    kill9(&mut family);
    let deadline = Instant::now() + DETECTION_LIMIT;
    while !inspect_hub(&name).unwrap().producer_pids.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the killed producer's slot stayed held"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_fork_after_a_segment_went_leaves_what_reuses_its_addresses_alone() {
    let prefix = unique_prefix("fa");
    let _cleanup = Cleanup(prefix.clone());
    // Something else of this process takes the addresses a segment had
    // (another test's mapping may take them first: then again).
    let (page, len) = (0..20)
        .find_map(|_| {
            let producer = Producer::create(&cfg(&prefix)).unwrap();
            let (payload, len) = producer.payload_region();
            drop(producer);
            // SAFETY: MAP_FIXED_NOREPLACE maps only where nothing is
            // mapped (the segment's reservation is gone), else fails.
            let page = unsafe {
                libc::mmap(
                    payload.cast(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            (page == payload.cast()).then_some((page, len))
        })
        .expect("a dropped segment's addresses were always taken first");
    // SAFETY: our own fresh mapping of `len` bytes.
    let bytes = unsafe { std::slice::from_raw_parts_mut(page.cast::<u8>(), len) };
    bytes.fill(0xa5);
    // A forked child must find them as they are: the segment went, its
    // range is no longer the fork handler's to replace.
    let child = fork_running(|| {
        let intact = bytes.iter().all(|&b| b == 0xa5);
        // SAFETY: ends the forked process at once, with the verdict.
        unsafe { libc::_exit(if intact { 0 } else { 1 }) }
    });
    let status = nix::sys::wait::waitpid(child, None).unwrap();
    // SAFETY: unmaps our own mapping; `bytes` is not used after this.
    unsafe { libc::munmap(page, len) };
    assert_eq!(
        status,
        nix::sys::wait::WaitStatus::Exited(child, 0),
        "the forked child found the memory at a dropped segment's addresses replaced"
    );
}
