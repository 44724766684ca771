//! The OS side: names, permissions, and opening a segment whose header is
//! wrong in each way gives the specific error.

mod common;

use common::{commit_item, config, unique_prefix, Cleanup};
use shmstream::policy::Sliding;
use shmstream::{Consumer, Producer, SetupError, StreamBuffer};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

fn shm_path(name: &str) -> String {
    format!("/dev/shm{name}")
}

/// Overwrites bytes of a live segment's file at `offset`.
fn poke(name: &str, offset: u64, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

#[test]
fn a_segment_is_private_to_its_user_and_removed_with_its_producer() {
    let prefix = unique_prefix("mode");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let name = cfg.segment_name().unwrap();
    let producer = Producer::create(&cfg).unwrap();
    let meta = std::fs::metadata(shm_path(&name)).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    drop(producer);
    assert!(!std::path::Path::new(&shm_path(&name)).exists());
}

#[test]
fn opening_a_missing_segment_says_so() {
    let prefix = unique_prefix("missing");
    let err = Consumer::open(&config(&prefix, 4, 1024)).unwrap_err();
    assert!(matches!(err, SetupError::NotFound { .. }), "{err}");
}

#[test]
fn a_live_owner_keeps_its_name_and_a_dead_ones_segment_is_reclaimed() {
    let prefix = unique_prefix("owner");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let producer = Producer::create(&cfg).unwrap();
    match Producer::create(&cfg).unwrap_err() {
        SetupError::AlreadyExists { owner_pid, .. } => assert_eq!(owner_pid, std::process::id()),
        e => panic!("{e}"),
    }
    drop(producer);
    // A leftover file nobody holds a lock on: its owner is gone.
    let name = cfg.segment_name().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(shm_path(&name))
        .unwrap()
        .write_all_at(b"stale", 0)
        .unwrap();
    let producer = Producer::create(&cfg).unwrap();
    commit_item(producer.register("t0").unwrap(), 0, 4);
    let mut consumer = Consumer::open(&cfg).unwrap();
    assert_eq!(consumer.poll().unwrap(), 1);
}

#[test]
fn a_symlink_in_the_segments_place_is_never_followed() {
    let prefix = unique_prefix("link");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let name = cfg.segment_name().unwrap();
    let target = std::env::temp_dir().join(format!("{}target", prefix));
    std::fs::write(&target, b"precious").unwrap();
    std::os::unix::fs::symlink(&target, shm_path(&name)).unwrap();
    let err = Producer::create(&cfg).unwrap_err();
    assert!(matches!(err, SetupError::Os { .. }), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    std::fs::remove_file(&target).unwrap();
}

#[test]
fn a_segment_open_to_other_users_is_refused() {
    let prefix = unique_prefix("perm");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let _producer = Producer::create(&cfg).unwrap();
    let name = cfg.segment_name().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(shm_path(&name), std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = Consumer::open(&cfg).unwrap_err();
    assert!(matches!(err, SetupError::ForeignSegment { .. }), "{err}");
    assert!(err.to_string().contains("666"), "{err}");
}

#[test]
fn only_one_consumer_may_attach() {
    let prefix = unique_prefix("two");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let _producer = Producer::create(&cfg).unwrap();
    let _first = Consumer::open(&cfg).unwrap();
    let err = Consumer::open(&cfg).unwrap_err();
    assert!(
        matches!(err, SetupError::ConsumerAlreadyAttached { .. }),
        "{err}"
    );
}

/// Creates a segment, damages `offset` with `bytes`, and returns the error
/// of opening it.
fn open_damaged(tag: &str, offset: u64, bytes: &[u8]) -> SetupError {
    let prefix = unique_prefix(tag);
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let _producer = Producer::create(&cfg).unwrap();
    poke(&cfg.segment_name().unwrap(), offset, bytes);
    Consumer::open(&cfg).unwrap_err()
}

#[test]
fn a_wrong_magic_is_refused() {
    match open_damaged("magic", 0, b"NOTSHMST") {
        SetupError::LayoutMismatch { field, .. } => assert_eq!(field, "magic"),
        e => panic!("{e}"),
    }
    match open_damaged("zero", 0, &[0; 8]) {
        SetupError::NotInitialized { .. } => {}
        e => panic!("{e}"),
    }
}

#[test]
fn a_wrong_version_is_refused() {
    match open_damaged("version", 8, &99u32.to_ne_bytes()) {
        SetupError::LayoutMismatch {
            field,
            expected,
            found,
            ..
        } => {
            assert_eq!(
                (field, expected.as_str(), found.as_str()),
                ("version", "6", "99")
            );
        }
        e => panic!("{e}"),
    }
}

#[test]
fn a_wrong_layout_is_refused() {
    // capacity (offset 16) that is not a power of two
    match open_damaged("cap", 16, &3u64.to_ne_bytes()) {
        SetupError::LayoutMismatch { field, .. } => {
            assert_eq!(field, "capacity, item size or payload size")
        }
        e => panic!("{e}"),
    }
    // a larger capacity than the file holds: its side table would start
    // elsewhere (and its payload too)
    match open_damaged("big", 16, &64u64.to_ne_bytes()) {
        SetupError::LayoutMismatch { field, .. } => assert_eq!(field, "side table offset"),
        e => panic!("{e}"),
    }
    // the side table's offset (496) and entry size (504)
    match open_damaged("side", 496, &(4096u64 + 64 * 4 + 64).to_ne_bytes()) {
        SetupError::LayoutMismatch {
            field,
            expected,
            found,
            ..
        } => assert_eq!(
            (field, expected.as_str(), found.as_str()),
            ("side table offset", "4352", "4416")
        ),
        e => panic!("{e}"),
    }
    match open_damaged("sidesize", 504, &64u32.to_ne_bytes()) {
        SetupError::LayoutMismatch {
            field,
            expected,
            found,
            ..
        } => assert_eq!(
            (field, expected.as_str(), found.as_str()),
            ("side table entry size", "128", "64")
        ),
        e => panic!("{e}"),
    }
    // a default item size (offset 24) beyond the payload
    match open_damaged("item", 24, &8192u64.to_ne_bytes()) {
        SetupError::LayoutMismatch { field, found, .. } => {
            assert_eq!(field, "capacity, item size or payload size");
            assert!(found.contains("8192 bytes by default"), "{found}");
        }
        e => panic!("{e}"),
    }
    // a payload size (offset 64) that disagrees with the file's length
    match open_damaged("payload", 64, &8192u64.to_ne_bytes()) {
        SetupError::LayoutMismatch { field, .. } => assert_eq!(field, "total size"),
        e => panic!("{e}"),
    }
    // the descriptor size this build does not know
    match open_damaged("desc", 32, &128u32.to_ne_bytes()) {
        SetupError::LayoutMismatch { field, .. } => assert_eq!(field, "descriptor size"),
        e => panic!("{e}"),
    }
}

#[test]
fn a_segment_of_another_stream_is_refused() {
    // The stored request id (at offset 104 + 4 bytes of lengths) differs.
    let names_offset = 92 + 12;
    match open_damaged("ident", names_offset, b"qqq") {
        SetupError::IdentityMismatch {
            field,
            expected,
            found,
        } => {
            assert_eq!(
                (field, expected.as_str(), found.as_str()),
                ("request_id", "req", "qqq")
            );
        }
        e => panic!("{e}"),
    }
}

#[test]
fn a_policy_larger_than_the_ring_is_refused_naming_both_numbers() {
    let prefix = unique_prefix("window");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 8, 512);
    let producer = Producer::create(&cfg).unwrap();
    let err = StreamBuffer::<()>::open(&cfg, Sliding::new(16, 4).unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the policy's largest window of 16 items exceeds the ring's capacity of 8 slots"
    );
    // The refusal did not attach: a consumer with a fitting policy can,
    // and the producer does not take it for gone.
    let mut buffer = StreamBuffer::<()>::open(&cfg, Sliding::new(8, 4).unwrap()).unwrap();
    for s in 0..8 {
        commit_item(producer.register(&format!("t{s}")).unwrap(), s, 4);
    }
    let chunk = buffer.pop_chunk().unwrap();
    assert_eq!(
        chunk.ids().collect::<Vec<_>>(),
        ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"]
    );
}

#[test]
fn another_users_segment_is_refused_before_it_is_opened_for_writing() {
    let prefix = unique_prefix("uid");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let _producer = Producer::create(&cfg).unwrap();
    let name = cfg.segment_name().unwrap();
    // Only root can give the file away; elsewhere this case cannot arise.
    let other = other_user();
    if nix::unistd::chown(shm_path(&name).as_str(), Some(other), None).is_err() {
        skipped("not root, cannot make a segment of another user; case not run");
        return;
    }
    let err = Consumer::open(&cfg).unwrap_err();
    assert!(matches!(err, SetupError::ForeignSegment { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("belongs to user {other}")),
        "{err}"
    );
    // Neither is it taken over: the producer's name stays, the live owner
    // is reported.
    assert!(matches!(
        Producer::create(&cfg).unwrap_err(),
        SetupError::ForeignSegment { .. } | SetupError::AlreadyExists { .. }
    ));
}

/// The bytes at `offset` of a segment's file.
fn peek<const N: usize>(name: &str, offset: u64) -> [u8; N] {
    let mut bytes = [0; N];
    std::fs::File::open(shm_path(name))
        .unwrap()
        .read_exact_at(&mut bytes, offset)
        .unwrap();
    bytes
}

#[test]
fn a_segment_of_another_layout_fingerprint_is_refused_naming_both() {
    let prefix = unique_prefix("fingerprint");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let _producer = Producer::create(&cfg).unwrap();
    let name = cfg.segment_name().unwrap();
    // The fingerprint sits after the names (docs/design.md: offset 488).
    let ours = u64::from_ne_bytes(peek(&name, 488));
    assert_ne!(ours, 0, "the producer stored no fingerprint");
    let theirs = ours ^ 0x0100;
    poke(&name, 488, &theirs.to_ne_bytes());
    let err = Consumer::open(&cfg).unwrap_err();
    match &err {
        SetupError::LayoutFingerprintMismatch {
            expected, found, ..
        } => assert_eq!((*expected, *found), (ours, theirs)),
        e => panic!("{e}"),
    }
    let message = err.to_string();
    assert!(message.contains(&format!("{ours:#018x}")), "{message}");
    assert!(message.contains(&format!("{theirs:#018x}")), "{message}");
}

#[test]
fn a_segment_too_large_for_dev_shm_fails_at_create_and_leaves_nothing() {
    let st = nix::sys::statvfs::statvfs("/dev/shm").unwrap();
    if st.blocks() == 0 {
        eprintln!("/dev/shm has no size limit here; case not run");
        return;
    }
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    // The largest slots, and the fewest of them that overflow the free
    // space (a layout this build accepts: at most 1 TiB of payload).
    let slot = shmstream::MAX_PAYLOAD_BYTES;
    let capacity = (free / slot + 1).next_power_of_two();
    if capacity * slot > 1 << 40 {
        eprintln!("/dev/shm has more than 1 TiB free; case not run");
        return;
    }
    let prefix = unique_prefix("nospace");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, capacity, slot);
    let name = cfg.segment_name().unwrap();
    let err = Producer::create(&cfg).unwrap_err();
    match &err {
        SetupError::NoSpace {
            dir,
            needed,
            available,
            ..
        } => {
            assert_eq!(*dir, "/dev/shm");
            assert!(needed > available, "{err}");
            assert!(*needed > capacity * slot, "{err}");
        }
        e => panic!("{e}"),
    }
    let message = err.to_string();
    assert!(message.contains("/dev/shm"), "{message}");
    // Header page, descriptor table rounded up to a page, payload.
    let total = (4096 + capacity * 192).next_multiple_of(4096) + capacity * slot;
    assert!(
        message.contains(&format!("needs {total} bytes")),
        "{message}"
    );
    assert!(!std::path::Path::new(&shm_path(&name)).exists());
    assert!(shmstream::list_segments(&prefix).unwrap().is_empty());
}

#[test]
fn a_segments_memory_is_reserved_when_it_is_created() {
    let prefix = unique_prefix("reserve");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 16, 4096);
    let _producer = Producer::create(&cfg).unwrap();
    let meta = std::fs::metadata(shm_path(&cfg.segment_name().unwrap())).unwrap();
    // ftruncate alone allocates nothing (a sparse file: SIGBUS later on a
    // full /dev/shm); every byte must be backed from the start.
    assert!(
        meta.blocks() * 512 >= meta.len(),
        "{} of {} bytes allocated",
        meta.blocks() * 512,
        meta.len()
    );
}

/// The permissions (`rw-s`, `r--s`, ...) of the mapping holding `addr`.
fn mapping_permissions(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let range = fields.next().unwrap();
        let perms = fields.next().unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let lo = usize::from_str_radix(lo, 16).unwrap();
        let hi = usize::from_str_radix(hi, 16).unwrap();
        if (lo..hi).contains(&addr) {
            return perms.to_string();
        }
    }
    panic!("no mapping holds {addr:#x}");
}

#[test]
fn the_consumer_maps_only_its_control_block_writable() {
    let prefix = unique_prefix("prot");
    let _cleanup = Cleanup(prefix.clone());
    // 4 slots of 1 KiB: header page, table (4 x 192 bytes) rounded to a
    // page, so the payload starts 8192 bytes into the segment.
    let cfg = config(&prefix, 4, 1024);
    let producer = Producer::create(&cfg).unwrap();
    let consumer = Consumer::open(&cfg).unwrap();
    let (payload, len) = consumer.payload_region();
    let payload = payload as usize;
    let header = payload - 8192;
    assert_eq!(mapping_permissions(header), "rw-s", "control block");
    assert_eq!(
        mapping_permissions(header + 4096),
        "r--s",
        "descriptor table"
    );
    // The region covers the payload and its mirror.
    assert_eq!(len, 2 * 4096);
    assert_eq!(mapping_permissions(payload), "r--s", "payload");
    assert_eq!(
        mapping_permissions(payload + len / 2 - 1),
        "r--s",
        "payload end"
    );
    assert_eq!(
        mapping_permissions(payload + len / 2),
        "r--s",
        "payload mirror"
    );
    assert_eq!(mapping_permissions(payload + len - 1), "r--s", "mirror end");
    // The producer writes all of it.
    let (theirs, _) = producer.payload_region();
    assert_eq!(mapping_permissions(theirs as usize), "rw-s");
    assert_eq!(mapping_permissions(theirs as usize - 4096), "rw-s");
}

/// Access modes (`O_RDONLY`, `O_RDWR`) of this process's descriptors of
/// the segment `name`.
fn descriptors_of(name: &str) -> Vec<i32> {
    let target = shm_path(name);
    let mut modes = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if link.to_str() != Some(target.as_str()) {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            entry.file_name().to_str().unwrap()
        ))
        .unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| i32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        modes.push(flags & libc::O_ACCMODE);
    }
    modes.sort();
    modes
}

#[test]
fn the_consumer_keeps_no_descriptor_that_could_resize_the_segment() {
    let prefix = unique_prefix("fds");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let name = cfg.segment_name().unwrap();
    let producer = Producer::create(&cfg).unwrap();
    assert_eq!(descriptors_of(&name), [libc::O_RDWR]);
    let consumer = Consumer::open(&cfg).unwrap();
    // The producer's read-write one, and the consumer's read-only one.
    assert_eq!(descriptors_of(&name), [libc::O_RDONLY, libc::O_RDWR]);
    // The read-only descriptor still holds the consumer's lock: a second
    // consumer is refused, and the producer sees this one alive.
    assert!(matches!(
        Consumer::open(&cfg).unwrap_err(),
        SetupError::ConsumerAlreadyAttached { .. }
    ));
    assert!(shmstream::inspect(&name).unwrap().consumer_alive);
    drop(consumer);
    assert!(!shmstream::inspect(&name).unwrap().consumer_alive);
    drop(producer);
}

#[test]
fn list_segments_shows_only_this_users_segments() {
    let prefix = unique_prefix("owner");
    let _cleanup = Cleanup(prefix.clone());
    let cfg = config(&prefix, 4, 1024);
    let _producer = Producer::create(&cfg).unwrap();
    let mine = cfg.segment_name().unwrap();
    let theirs = format!("/{prefix}theirs");
    std::fs::write(shm_path(&theirs), b"not a segment").unwrap();
    let _theirs_cleanup = RemoveOnDrop(shm_path(&theirs));
    if nix::unistd::chown(shm_path(&theirs).as_str(), Some(other_user()), None).is_err() {
        skipped("not root, cannot make a file of another user; only the own segment is checked");
        assert!(shmstream::list_segments(&prefix).unwrap().contains(&mine));
        return;
    }
    assert_eq!(shmstream::list_segments(&prefix).unwrap(), vec![mine]);
}

/// A user that is not the one running the tests (nobody, unless that is us).
fn other_user() -> nix::unistd::Uid {
    let me = nix::unistd::geteuid().as_raw();
    nix::unistd::Uid::from_raw(if me == 65534 { 65533 } else { 65534 })
}

/// Says that part of a test was skipped where a plain `cargo test` shows
/// it: libtest captures `eprintln!`, not writes to the stderr handle.
fn skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// Removes a file when dropped, also when the test fails.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
