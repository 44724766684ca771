//! Lifecycle stress of the worker hub (issue 21): producer processes
//! create, fill, finish and drop streams in a random order; the worker
//! adopts some as they are announced and adds the others by identity (after
//! a refused `add` whose window the stream cannot hold), reads every item,
//! removes what ended, and now and then drops its `StreamSet` and makes a
//! new one while producers live; producers are SIGKILLed at random moments.
//! Afterwards /dev/shm holds nothing under the test's prefix and the
//! worker's RSS is flat.
//!
//! CI runs 1,000 streams with 4 kills and 3 set restarts (a few seconds);
//! `scripts/soak.sh --lifecycle` runs 10,000 or more
//! (`SHMSTREAM_LIFECYCLE_STREAMS`, `SHMSTREAM_LIFECYCLE_KILLS`,
//! `SHMSTREAM_LIFECYCLE_RESTARTS`, `SHMSTREAM_LIFECYCLE_SEED`).

#![cfg(not(miri))]

mod common;

use common::{mix, unique_prefix, Cleanup};
use shmstream::policy::Policy;
use shmstream::{
    DType, Hub, Producer, SetupError, StreamConfig, StreamError, StreamId, StreamSet, TensorMeta,
};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROLE: &str = "SHMSTREAM_LC_ROLE";
const PREFIX: &str = "SHMSTREAM_LC_PREFIX";
const CHILD: &str = "SHMSTREAM_LC_CHILD";
const STREAMS: &str = "SHMSTREAM_LC_STREAMS";
const WORKER: &str = "lifecycle";
const CAPACITY: u64 = 8;
/// Streams a producer keeps open at once.
const LIVE: usize = 12;
/// Producer processes at once.
const CHILDREN: usize = 2;
const PATIENCE: Duration = Duration::from_secs(120);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(prefix: &str, child: u64, stream: u64) -> StreamConfig {
    StreamConfig::new(StreamId {
        request_id: format!("r{child}-{stream}"),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_prefix(prefix)
    .with_capacity(CAPACITY)
    .with_item_bytes(64)
    .with_timeout(Some(Duration::from_secs(5)))
}

fn attach(prefix: &str) -> Hub {
    let start = Instant::now();
    loop {
        match Hub::attach(WORKER, prefix) {
            Ok(hub) => return hub,
            // No hub, a dead one, or one the worker is making.
            Err(
                SetupError::NotFound { .. }
                | SetupError::WorkerGone { .. }
                | SetupError::NotInitialized { .. },
            ) if start.elapsed() < PATIENCE => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("{e}"),
        }
    }
}

/// Not a test of its own: the body of the producer processes. Prints a
/// line per stream created.
#[test]
fn child_entry() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    let prefix = std::env::var(PREFIX).unwrap();
    let child: u64 = std::env::var(CHILD).unwrap().parse().unwrap();
    let streams: u64 = std::env::var(STREAMS).unwrap().parse().unwrap();
    let mut hub = attach(&prefix);
    // Each with whether it said done.
    let mut live: Vec<(Producer, bool)> = Vec::new();
    let mut created = 0u64;
    let mut turn = child << 32;
    while created < streams || !live.is_empty() {
        turn += 1;
        let r = mix(turn);
        let pick = (r >> 8) as usize % live.len().max(1);
        match r % 10 {
            0..=2 if created < streams && live.len() < LIVE => {
                match hub.create_stream(&config(&prefix, child, created)) {
                    Ok(p) => {
                        live.push((p, false));
                        created += 1;
                        println!("created");
                    }
                    // The worker's set is being made anew: attach to the
                    // next one (this stream is tried again).
                    Err(SetupError::WorkerGone { .. }) => {
                        drop(std::mem::replace(&mut hub, attach(&prefix)));
                    }
                    Err(SetupError::HubFull { .. }) => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            3..=6 if !live.is_empty() && !live[pick].1 => {
                let p = &live[pick].0;
                let seq = p.registered();
                let sent = p.try_register(&format!("t{seq}")).and_then(|slot| {
                    let meta = TensorMeta::new(DType::U64, &[1]).unwrap();
                    slot.write(meta, &seq.to_le_bytes()).map_err(|e| e.error)
                });
                match sent {
                    Ok(()) | Err(StreamError::Full { .. }) => {}
                    // Its worker's set went, or the worker removed it.
                    Err(StreamError::ConsumerGone) => drop(live.swap_remove(pick)),
                    Err(e) => panic!("{e}"),
                }
            }
            7 if !live.is_empty() => {
                live[pick].0.signal_done();
                live[pick].1 = true;
            }
            8 | 9 if !live.is_empty() => drop(live.swap_remove(pick)),
            _ => {}
        }
        if turn % 64 == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// A producer process and the streams it said it created.
struct ProducerProcess {
    child: Child,
    /// Streams it is to create.
    streams: u64,
    created: Arc<AtomicU64>,
}

impl Drop for ProducerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(prefix: &str, child: u64, streams: u64, kill_at: u64) -> ProducerProcess {
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE, "producer")
        .env(PREFIX, prefix)
        .env(CHILD, child.to_string())
        .env(STREAMS, streams.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let created = Arc::new(AtomicU64::new(0));
    let out = process.stdout.take().unwrap();
    let counter = created.clone();
    let pid = nix::unistd::Pid::from_raw(process.id() as i32);
    // Counts its streams as it says them, and kills it the moment it said
    // the `kill_at`-th (it is alive then: it has more to make, and it is
    // not reaped before it ends).
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            match line {
                Ok(l) if l.trim_end().ends_with("created") => {
                    if counter.fetch_add(1, Ordering::Relaxed) + 1 == kill_at {
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    ProducerProcess {
        child: process,
        streams,
        created,
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn fixed(size: usize) -> Policy {
    format!("fixed:size={size}").parse().unwrap()
}

fn new_set(prefix: &str) -> StreamSet {
    // Adopts three streams in four as they are announced; the fourth is
    // left for `add`.
    StreamSet::create(WORKER, prefix)
        .unwrap()
        .with_adopter(Box::new(|id: &StreamId| {
            let n: u64 = id.request_id[1..]
                .split('-')
                .map(|x| x.parse::<u64>().unwrap())
                .fold(0, |a, x| a * 1_000_003 + x);
            (mix(n) % 4 != 0).then(|| Box::new(fixed(1)) as Box<dyn shmstream::policy::ChunkPolicy>)
        }))
        .with_stream_timeout(Some(Duration::ZERO))
}

#[derive(Default, Debug)]
struct Counts {
    adopted_or_added: u64,
    refused_adds: u64,
    items: u64,
    finished: u64,
    producer_gone: u64,
    restarts: u64,
    kills: u64,
}

/// Reads what each reported stream has; removes the ones that ended.
fn serve(
    set: &mut StreamSet,
    prefix: &str,
    next: &mut HashMap<StreamId, u64>,
    counts: &mut Counts,
) {
    for key in set.wait_any(Some(Duration::from_millis(2))) {
        let buffer = set.get_mut(key).unwrap();
        let id = buffer.id().clone();
        let ended = loop {
            match buffer.next_chunk_timeout(Some(Duration::ZERO)) {
                Ok(Some(chunk)) => {
                    for item in chunk.items() {
                        let seq = next.entry(id.clone()).or_insert(0);
                        assert_eq!(item.id(), format!("t{seq}"), "{id}");
                        assert_eq!(item.bytes(), &seq.to_le_bytes(), "{id}");
                        *seq += 1;
                        counts.items += 1;
                    }
                }
                Ok(None) => {
                    counts.finished += 1;
                    break true;
                }
                Err(StreamError::Timeout { .. }) => break false,
                Err(StreamError::ProducerGone) => {
                    counts.producer_gone += 1;
                    break true;
                }
                Err(e) => panic!("{id}: {e}"),
            }
        };
        if ended {
            set.remove(key).unwrap();
            next.remove(&id);
        }
    }
    // The streams the adopter left: a window too wide first (refused,
    // nothing changes), then one that fits.
    for id in set.announced() {
        let cfg = StreamConfig::new(id.clone()).with_prefix(prefix);
        match set.add(&cfg, fixed(CAPACITY as usize + 1)) {
            Err(SetupError::WindowExceedsCapacity { .. }) => counts.refused_adds += 1,
            // Its producer was killed and its segment is gone.
            Err(SetupError::NotFound { .. }) => continue,
            other => panic!("{id}: a too wide window gave {other:?}"),
        }
        match set.add(&cfg, fixed(1)) {
            Ok(_) => counts.adopted_or_added += 1,
            Err(SetupError::NotFound { .. }) => {}
            Err(e) => panic!("{id}: {e}"),
        }
    }
}

#[test]
fn streams_created_and_closed_in_random_order_with_kills_and_restarts_leave_nothing() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    let total = env_u64("SHMSTREAM_LIFECYCLE_STREAMS", 1000);
    let kills = env_u64("SHMSTREAM_LIFECYCLE_KILLS", 4);
    let restarts = env_u64("SHMSTREAM_LIFECYCLE_RESTARTS", 3);
    let seed = env_u64("SHMSTREAM_LIFECYCLE_SEED", 21);
    // Every other producer of the first 2 x kills is killed: enough
    // producers for that, each making a batch.
    let batch = (total / (2 * kills + 2)).clamp(20, 500);
    let prefix = unique_prefix("lc");
    let _cleanup = Cleanup(prefix.clone());
    let started = Instant::now();
    let mut set = new_set(&prefix);
    let mut next = HashMap::new();
    let mut counts = Counts::default();
    let mut children: Vec<ProducerProcess> = Vec::new();
    let (mut spawned, mut planned, mut created_done) = (0u64, 0u64, 0u64);
    let mut rss_early = None;
    let created_now = |done: u64, children: &[ProducerProcess]| {
        done + children
            .iter()
            .map(|c| c.created.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    while planned < total || !children.is_empty() {
        assert!(started.elapsed() < PATIENCE * 5, "stuck: {counts:?}");
        // Keep CHILDREN producers running until `total` streams are planned.
        while children.len() < CHILDREN && planned < total {
            let streams = batch.min(total - planned);
            let r = mix(seed ^ spawned);
            let kill_at = if spawned % 2 == 0 && spawned < 2 * kills {
                1 + r % (streams * 3 / 4).max(1)
            } else {
                u64::MAX
            };
            children.push(spawn(&prefix, spawned, streams, kill_at));
            spawned += 1;
            planned += streams;
        }
        serve(&mut set, &prefix, &mut next, &mut counts);
        // Kill, or reap.
        let mut k = 0;
        while k < children.len() {
            let c = &mut children[k];
            let Some(status) = c.child.try_wait().unwrap() else {
                k += 1;
                continue;
            };
            use std::os::unix::process::ExitStatusExt;
            let made = c.created.load(Ordering::Relaxed);
            if status.signal() == Some(libc::SIGKILL) {
                counts.kills += 1;
                // What it did not create is planned again (its reader
                // thread may lag a line behind: a stream more, at worst).
                planned -= c.streams - made.min(c.streams);
                created_done += made;
            } else {
                assert!(status.success(), "a producer failed: {status}");
                // It made them all (its reader thread may lag behind).
                created_done += c.streams;
            }
            children.swap_remove(k);
        }
        // Drop the set and make a new one while producers live, spread
        // over the run.
        let now = created_now(created_done, &children);
        if counts.restarts < restarts && now * (restarts + 1) >= total * (counts.restarts + 1) {
            drop(set);
            set = new_set(&prefix);
            next.clear();
            counts.restarts += 1;
        }
        if rss_early.is_none() && now >= total / 4 {
            rss_early = Some(rss_kib());
        }
    }
    // Every producer is gone: what remains reports its end.
    let deadline = Instant::now() + PATIENCE;
    while !set.is_empty() || !set.announced().is_empty() {
        assert!(Instant::now() < deadline, "streams never ended: {counts:?}");
        serve(&mut set, &prefix, &mut next, &mut counts);
    }
    let rss_end = rss_kib();
    let errors = set.take_adopt_errors();
    drop(set);
    let left = shmstream::list_segments(&prefix).unwrap();
    let early = rss_early.unwrap_or(rss_end);
    println!(
        "{created_done} streams from {spawned} producer processes in {:.1?}: {counts:?}; \
         worker RSS {early} KiB after a quarter, {rss_end} KiB at the end",
        started.elapsed()
    );
    let info: Vec<_> = left.iter().take(5).map(|n| shmstream::inspect(n)).collect();
    assert!(
        left.is_empty(),
        "left in /dev/shm: {} names, e.g. {info:#?}",
        left.len()
    );
    assert!(
        errors.is_empty(),
        "adoption errors: {:?}",
        &errors[..errors.len().min(3)]
    );
    // A kill misses only a producer that ended before its reader thread
    // read its line (a very loaded machine).
    assert!(
        counts.kills * 2 >= kills,
        "{} of {kills} kills landed",
        counts.kills
    );
    assert!(
        created_done + 2 * kills >= total,
        "{created_done} of {total} streams"
    );
    assert!(counts.refused_adds > 0 && counts.adopted_or_added > 0);
    // Flat: a bound, not a speed (allocator and page-cache noise).
    let margin = (early / 10).max(8192);
    assert!(
        rss_end <= early + margin,
        "worker RSS grew from {early} KiB to {rss_end} KiB (margin {margin} KiB)"
    );
}
