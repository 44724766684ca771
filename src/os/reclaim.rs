//! Removing names: a dead producer's segment (reclaimed under its locks,
//! never a live or starting producer's), a segment handed over by a hub
//! stream's producer, the orphans a worker's hub leaves.

use crate::config::StreamConfig;
use crate::error::SetupError;
use crate::os::header::{open_checked, open_same_for_writing, HeaderPage};
use crate::os::lock::{lock_state, take_lock, Lock, LOCK_BYTE_PRODUCER, LOCK_BYTE_RECLAIM};
use crate::os::shm::{
    c_name, io_err, list_segments, names_file, open_existing, os_err, read_consumer_pid, read_pid,
};
use crate::protocol::handover::{Close, WORKER_CLOSED};
use nix::sys::mman::shm_unlink;
use std::os::fd::OwnedFd;
/// How often `create` and `remove_if_dead` start over when another process
/// is creating or reclaiming the same name at the same moment. Each retry
/// follows a step of that other process (it unlinked or created the name),
/// so a handful suffices; the bound only keeps a pathological storm of
/// creators and cleaners from looping forever.
pub(crate) const CLAIM_ATTEMPTS: u32 = 1000;

/// What became of an existing name that a creator or cleaner looked at.
pub(crate) enum Reclaim {
    /// A producer holds the file's lock: alive (or starting), with the pid
    /// it recorded (0 if not yet).
    Alive(u32),
    /// Its producer was dead; this call unlinked the name.
    Removed,
    /// Another reclaimer is checking this file right now.
    Busy,
    /// The name is gone or leads to another file by now: look again.
    Changed,
}

/// Removes `name` if the producer of the file it leads to is dead, without
/// ever removing a live or starting producer's file: the dead file is
/// locked (read lock on the producer byte, which a producer's write lock
/// excludes both ways; write lock on the reclaim byte, which excludes
/// other reclaimers), and only then is the name checked to still lead to
/// it (device and inode) and unlinked. Nothing can put another file under
/// the name between check and unlink: that takes unlinking this one, which
/// only a holder of these locks does.
pub(crate) fn reclaim(name: &str) -> Result<Reclaim, SetupError> {
    reclaim_consumed_by(name, None)
}

/// As [`reclaim`]; with `consumer` set, the dead file is removed only if
/// its `consumer_pid` word holds that pid (checked under the locks): a
/// file that consumer attached to, never one handed over to a consumer yet
/// to come (`HANDED_OVER`) nor one nobody attached to.
pub(crate) fn reclaim_consumed_by(
    name: &str,
    consumer: Option<u32>,
) -> Result<Reclaim, SetupError> {
    let Some((checked, _len)) = open_existing(name)? else {
        return Ok(Reclaim::Changed);
    };
    // A look first, needing no write access: the common case is a live
    // producer.
    match lock_state(&checked, LOCK_BYTE_PRODUCER)
        .map_err(|e| io_err("test the lock of", name, e))?
    {
        Some(Lock::Write) => return Ok(Reclaim::Alive(read_pid(&checked))),
        Some(Lock::Read) => return Ok(Reclaim::Busy),
        None => {}
    }
    // The reclaim lock is a write lock: open for writing, now that the
    // owner checks passed, and make sure it is still the same file.
    let Some(fd) = open_same_for_writing(&checked, name)? else {
        return Ok(Reclaim::Changed);
    };
    let lock_err = |e| io_err("lock", name, e);
    if !take_lock(&fd, Lock::Write, LOCK_BYTE_RECLAIM).map_err(lock_err)? {
        return Ok(Reclaim::Busy);
    }
    if !take_lock(&fd, Lock::Read, LOCK_BYTE_PRODUCER).map_err(lock_err)? {
        // A producer locked it since the look: one that was starting.
        return Ok(Reclaim::Alive(read_pid(&fd)));
    }
    if !names_file(name, &fd)? {
        return Ok(Reclaim::Changed);
    }
    // A file whose worker closed without adopting it is nobody's to read
    // either, once its producer is dead.
    let found = read_consumer_pid(&fd);
    if consumer.is_some_and(|pid| found != Some(pid) && found != Some(WORKER_CLOSED)) {
        // Dead, but not the file that consumer read: not its to remove.
        return Ok(Reclaim::Busy);
    }
    match shm_unlink(c_name(name).as_c_str()) {
        Ok(()) => Ok(Reclaim::Removed),
        Err(nix::Error::ENOENT) => Ok(Reclaim::Changed),
        Err(e) => Err(os_err("remove", name)(e)),
    }
    // `fd` closes here, releasing both locks after the unlink.
}

/// Removes `name`, which the producer of the file behind `checked` (a
/// descriptor of it that passed the owner checks) handed over to us: the
/// exchange on `consumer_pid` made it ours, so its producer's lock is not
/// asked (the producer may still be closing its descriptor). Under the
/// reclaim lock (byte 2, which every reclaimer takes before it unlinks),
/// the name is checked to still lead to that file and then unlinked:
/// nobody can put another file under the name in between. Returns whether
/// it removed the name.
pub(crate) fn remove_handed_over(name: &str, checked: &OwnedFd) -> Result<bool, SetupError> {
    let Some(fd) = open_same_for_writing(checked, name)? else {
        return Ok(false);
    };
    let lock_err = |e| io_err("lock", name, e);
    // Another reclaimer holds it for a moment (and backs off: our file's
    // producer may still hold its lock, or is dead and then it removes
    // the name itself): try again, yielding.
    let mut locked = false;
    for _ in 0..CLAIM_ATTEMPTS {
        if take_lock(&fd, Lock::Write, LOCK_BYTE_RECLAIM).map_err(lock_err)? {
            locked = true;
            break;
        }
        std::thread::yield_now();
    }
    if !locked || !names_file(name, &fd)? {
        return Ok(false);
    }
    match shm_unlink(c_name(name).as_c_str()) {
        Ok(()) => Ok(true),
        Err(nix::Error::ENOENT) => Ok(false),
        Err(e) => Err(os_err("remove", name)(e)),
    }
    // `fd` closes here, releasing the lock after the unlink.
}

/// Removes the segment a hub entry's identity names (prefix, request_id,
/// edge_name, from_partition) if its producer is dead: what a producer
/// killed between claiming the entry and publishing it may have created.
pub(crate) fn remove_stale(identity: [String; 4]) {
    let [prefix, request_id, edge_name, from_partition] = identity;
    let id = crate::config::StreamId {
        request_id,
        edge_name,
        from_partition,
    };
    if let Ok(name) = StreamConfig::new(id).with_prefix(&prefix).segment_name() {
        let _ = remove_if_dead(&name);
    }
}

/// Whether `name` exists (an error opening it counts as existing).
pub(crate) fn exists(name: &str) -> bool {
    !matches!(open_existing(name), Ok(None))
}

/// Removes every stream segment under `prefix` (except hubs, named
/// `<prefix>hub-...`) whose producer is dead and which this process
/// consumed or whose worker closed without adopting it: what producers
/// killed after a worker's set let go of their streams leave behind. Never
/// a live producer's file, nor one handed over to a worker yet to adopt it.
/// Returns how many it removed. O(files in /dev/shm).
pub(crate) fn remove_orphans(prefix: &str) -> usize {
    let Ok(names) = list_segments(prefix) else {
        return 0;
    };
    let hubs = format!("/{prefix}hub-");
    names
        .iter()
        .filter(|name| !name.starts_with(&hubs))
        .filter(|name| remove_if_dead_consumed_by(name, Some(std::process::id())).unwrap_or(false))
        .count()
}

/// Items the ring of segment `name` holds, from its checked header,
/// without attaching.
///
/// # Errors
///
/// As opening a segment.
pub(crate) fn capacity(name: &str) -> Result<u64, SetupError> {
    let (_fd, header, _page) = open_checked(name)?;
    Ok(header.geometry.capacity)
}

/// The worker's side of the hand-over when its set goes without having
/// adopted the announced stream `name` of the producer `producer_pid`
/// (see `handover.rs`): marks the segment `WORKER_CLOSED` so that its
/// producer removes the name itself when it goes, or, if the producer
/// went first and handed the name over, removes it; a producer found dead
/// (killed) after the mark leaves its name to `remove_if_dead`, here. A
/// file of another producer under the name by now is left alone. Returns
/// whether this call removed the name.
///
/// # Errors
///
/// OS errors; a missing name is `Ok(false)`.
pub(crate) fn close_unadopted(name: &str, producer_pid: u32) -> Result<bool, SetupError> {
    let (fd, header, _page) = match open_checked(name) {
        Ok(opened) => opened,
        Err(SetupError::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    if header.producer_pid != producer_pid {
        return Ok(false);
    }
    let Some(writable) = open_same_for_writing(&fd, name)? else {
        return Ok(false);
    };
    let page = HeaderPage::map_with(&writable, name, libc::PROT_READ | libc::PROT_WRITE)?;
    drop(writable);
    match crate::protocol::handover::worker_closes(page.consumer_pid()) {
        Close::WorkerRemoves => remove_handed_over(name, &fd),
        Close::ProducerRemoves => remove_if_dead(name),
        Close::NotOurs => Ok(false),
    }
}

/// Whether [`remove_if_dead`] would remove `name` now: no process holds
/// its producer's lock (the same test, without the reclaim lock and
/// without removing anything). It reads no header, so it answers alike for
/// a segment of another layout version or with a damaged header, as the
/// removal itself does. A name that is gone, or one another cleaner is
/// checking at this moment, is `false`. The answer can be outdated by the
/// time it is read: a starting producer takes the lock after creating the
/// file.
///
/// # Errors
///
/// As opening a segment (another user's file, an OS error).
pub fn is_dead(name: &str) -> Result<bool, SetupError> {
    let Some((checked, _len)) = open_existing(name)? else {
        return Ok(false);
    };
    let state = lock_state(&checked, LOCK_BYTE_PRODUCER)
        .map_err(|e| io_err("test the lock of", name, e))?;
    Ok(state.is_none())
}

/// Removes the segment `name` if its producer is dead; returns whether it
/// did. A live segment, or another user's, is never removed, nor one whose
/// producer is starting: the file is locked and checked to be the one the
/// name leads to before the name is removed (see `reclaim`).
///
/// # Errors
///
/// As opening a segment, except that a missing one is `Ok(false)`.
pub fn remove_if_dead(name: &str) -> Result<bool, SetupError> {
    remove_if_dead_consumed_by(name, None)
}

/// As [`remove_if_dead`], removing only a file whose consumer is `pid`
/// (see `reclaim_consumed_by`): what a hub worker calls for a stream it
/// read whose producer was killed, which can never take a segment handed
/// over to a consumer that has not opened it yet.
pub(crate) fn remove_if_dead_consumed_by(
    name: &str,
    consumer: Option<u32>,
) -> Result<bool, SetupError> {
    for _ in 0..CLAIM_ATTEMPTS {
        match reclaim_consumed_by(name, consumer)? {
            Reclaim::Removed => return Ok(true),
            // Another reclaimer is at it: not removed by this call.
            Reclaim::Alive(_) | Reclaim::Busy => return Ok(false),
            // Gone, or another file under the name by now: look again.
            Reclaim::Changed => {
                if open_existing(name)?.is_none() {
                    return Ok(false);
                }
            }
        }
    }
    Ok(false)
}
