//! The errors of the crate: one enum for setting a stream up (the OS side,
//! validation of a segment), one for the running stream. Every message is a
//! sentence that names what was wrong and, where there is one, the limit.

use std::fmt;
use std::io;
use std::time::Duration;

/// Creating, opening or configuring a stream failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SetupError {
    /// A name of the stream's identity (or the segment prefix) is unusable.
    InvalidName {
        /// Which name (`"request_id"`, `"edge_name"`, ...).
        field: &'static str,
        /// The name as given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A layout parameter is out of range.
    InvalidConfig(String),
    /// The policy's largest window does not fit in the ring.
    WindowExceedsCapacity {
        /// The policy's largest window.
        window: usize,
        /// The ring's capacity.
        capacity: u64,
    },
    /// A live process already owns a segment of that name.
    AlreadyExists {
        /// The segment's name.
        name: String,
        /// The owner's process id as recorded in the segment (0 when the
        /// owner had not recorded it yet: it is still creating the segment).
        owner_pid: u32,
    },
    /// No segment of that name exists (yet, or any more).
    NotFound {
        /// The segment's name.
        name: String,
    },
    /// The segment belongs to another user or is open to other users.
    ForeignSegment {
        /// The segment's name.
        name: String,
        /// What was wrong with its owner or mode.
        reason: String,
    },
    /// The segment is not (yet) a fully initialised shmstream segment.
    NotInitialized {
        /// The segment's name.
        name: String,
    },
    /// The segment is not a shmstream segment of this version or layout.
    LayoutMismatch {
        /// The segment's name.
        name: String,
        /// Which field disagreed.
        field: &'static str,
        /// What this process expects (or the limit).
        expected: String,
        /// What the segment holds.
        found: String,
    },
    /// The segment was written by a build of shmstream whose shared layout
    /// differs from this one's (see `docs/design.md`, the layout
    /// fingerprint); producer and consumer must agree on every byte.
    LayoutFingerprintMismatch {
        /// The segment's name.
        name: String,
        /// This build's fingerprint.
        expected: u64,
        /// The fingerprint stored in the segment.
        found: u64,
    },
    /// The shared-memory file system has too little free space for the
    /// segment; creating it anyway would crash the process (SIGBUS) at the
    /// first write to a page that could not be allocated.
    NoSpace {
        /// The segment's name.
        name: String,
        /// Where the segment lives (`/dev/shm`).
        dir: &'static str,
        /// Bytes the segment needs.
        needed: u64,
        /// Bytes free there when it was tried.
        available: u64,
    },
    /// The segment was made for another stream.
    IdentityMismatch {
        /// Which field of the identity differs.
        field: &'static str,
        /// The name this process asked for.
        expected: String,
        /// The name stored in the segment.
        found: String,
    },
    /// Another consumer process already reads this stream.
    ConsumerAlreadyAttached {
        /// The segment's name.
        name: String,
    },
    /// The worker hub has no free entry for another stream: every entry
    /// holds a stream its consumer has not removed yet.
    HubFull {
        /// The hub's name.
        name: String,
        /// How many streams the hub holds at most.
        entries: u32,
    },
    /// Every producer slot of the worker hub is taken by a live process.
    TooManyProducers {
        /// The hub's name.
        name: String,
        /// How many producer processes may attach at once.
        max: usize,
    },
    /// The worker that owns the hub is gone (its process died or dropped
    /// its stream set); nobody would read a stream announced there.
    WorkerGone {
        /// The hub's name.
        name: String,
    },
    /// No producer announced a stream of that identity in the hub (yet),
    /// or it was adopted already.
    NotAnnounced {
        /// The stream's segment name.
        name: String,
    },
    /// An operating-system call failed.
    Os {
        /// What was being done.
        op: &'static str,
        /// The segment's name.
        name: String,
        /// The error the OS gave.
        source: io::Error,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::InvalidName {
                field,
                value,
                reason,
            } => write!(f, "the {field} {value:?} cannot be used: {reason}"),
            SetupError::InvalidConfig(what) => write!(f, "invalid stream configuration: {what}"),
            SetupError::WindowExceedsCapacity { window, capacity } => write!(
                f,
                "the policy's largest window of {window} items exceeds the ring's capacity of {capacity} slots"
            ),
            SetupError::AlreadyExists { name, owner_pid: 0 } => write!(
                f,
                "segment {name} already exists and its owner, a process still setting it up, is alive"
            ),
            SetupError::AlreadyExists { name, owner_pid } => write!(
                f,
                "segment {name} already exists and its owner, process {owner_pid}, is alive"
            ),
            SetupError::NotFound { name } => write!(f, "no segment named {name} exists"),
            SetupError::ForeignSegment { name, reason } => {
                write!(f, "segment {name} is refused: {reason}")
            }
            SetupError::NotInitialized { name } => write!(
                f,
                "segment {name} is not an initialised shmstream segment (its producer may still be creating it)"
            ),
            SetupError::LayoutMismatch {
                name,
                field,
                expected,
                found,
            } => write!(
                f,
                "segment {name} has an unusable {field}: expected {expected}, found {found}"
            ),
            SetupError::LayoutFingerprintMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "segment {name} was laid out by a different build of shmstream: its layout fingerprint is {found:#018x}, this build's is {expected:#018x} (producer and consumer must be built from the same layout)"
            ),
            SetupError::NoSpace {
                name,
                dir,
                needed,
                available,
            } => write!(
                f,
                "segment {name} needs {needed} bytes of shared memory but {dir} has only {available} bytes free; enlarge {dir} (docker run --shm-size) or choose a smaller item capacity or payload size in bytes"
            ),
            SetupError::IdentityMismatch {
                field,
                expected,
                found,
            } => write!(
                f,
                "the segment belongs to another stream: its {field} is {found:?}, not {expected:?}"
            ),
            SetupError::ConsumerAlreadyAttached { name } => {
                write!(f, "segment {name} already has a consumer attached")
            }
            SetupError::HubFull { name, entries } => write!(
                f,
                "worker hub {name} is full: all {entries} stream entries are in use (remove finished streams from the stream set, or create the hub with more entries)"
            ),
            SetupError::TooManyProducers { name, max } => write!(
                f,
                "worker hub {name} already has {max} producer processes attached, the limit"
            ),
            SetupError::WorkerGone { name } => write!(
                f,
                "the worker of hub {name} is gone: its consumer process died or dropped its stream set"
            ),
            SetupError::NotAnnounced { name } => write!(
                f,
                "no producer announced stream {name} in the hub (or it was adopted already)"
            ),
            SetupError::Os { op, name, source } => {
                write!(f, "could not {op} segment {name}: {source}")
            }
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What a full ring ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Item slots (descriptors): `capacity` items wait for the consumer.
    Items,
    /// Payload bytes: the waiting items' bytes fill the payload ring.
    PayloadBytes,
}

/// Longest [`AbandonReason`] text, in bytes: what an abandoned slot's
/// unused shape words hold (the descriptor's 8 u32 dims and the side
/// entry's 8 u64 wide dims; docs/design.md, "An abandoned slot's reason").
/// A longer text is cut at the last char boundary within it.
pub const MAX_REASON_LEN: usize = 96;

/// Why a producer gave up a position: a status code (a transfer engine's
/// or UCX's status, say; 0 when there is none) and a text of at most
/// [`MAX_REASON_LEN`] bytes. The consumer's
/// [`StreamError::Abandoned`] carries it.
///
/// # Examples
///
/// ```
/// use shmstream::{AbandonReason, MAX_REASON_LEN};
/// let r = AbandonReason::new(-1, "engine read failed");
/// assert_eq!((r.code(), r.text()), (-1, "engine read failed"));
/// assert_eq!(r.to_string(), "engine read failed (status -1)");
/// // Cut on a char boundary: 95 bytes of 'x' and no half of 'é'.
/// let long = format!("{}é", "x".repeat(MAX_REASON_LEN - 1));
/// assert_eq!(AbandonReason::new(0, &long).text().len(), MAX_REASON_LEN - 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AbandonReason(
    /// `None` when neither a code nor a text was given: a word, so an
    /// error or a slot without a reason stays as small as before.
    Option<Box<GivenReason>>,
);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GivenReason {
    code: i32,
    /// At most `MAX_REASON_LEN` bytes (cut in `new`).
    text: String,
}

impl AbandonReason {
    /// A reason with `code` and `text`, the text cut to at most
    /// [`MAX_REASON_LEN`] bytes at a char boundary.
    pub fn new(code: i32, text: &str) -> AbandonReason {
        let mut end = text.len().min(MAX_REASON_LEN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if code == 0 && end == 0 {
            return AbandonReason(None);
        }
        AbandonReason(Some(Box::new(GivenReason {
            code,
            text: text[..end].to_string(),
        })))
    }

    /// The status code (0: none given).
    pub fn code(&self) -> i32 {
        self.0.as_ref().map_or(0, |r| r.code)
    }

    /// The text (empty: none given).
    pub fn text(&self) -> &str {
        self.0.as_ref().map_or("", |r| &r.text)
    }

    /// Whether neither a code nor a text was given (a slot dropped without
    /// a reason).
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl fmt::Display for AbandonReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code(), self.text()) {
            (0, "") => write!(f, "no reason given"),
            (0, text) => write!(f, "{text}"),
            (code, "") => write!(f, "status {code}"),
            (code, text) => write!(f, "{text} (status {code})"),
        }
    }
}

impl From<&str> for AbandonReason {
    fn from(text: &str) -> AbandonReason {
        AbandonReason::new(0, text)
    }
}

/// An operation on a running stream failed. The stream itself is left
/// intact unless the variant says the peer is gone or the memory is corrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// The ring has no room for the registration until the consumer
    /// releases some: every item slot waits, or the payload bytes do.
    Full {
        /// Which of the two ran out.
        resource: Resource,
        /// Its capacity (items, or payload bytes).
        capacity: u64,
    },
    /// The wait ended before the condition held; the call can be retried.
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        waited: Duration,
    },
    /// The producer already signalled done.
    AfterDone,
    /// The consumer process is gone (it dropped its handle or died).
    ConsumerGone,
    /// The producer process is gone without signalling done.
    ProducerGone,
    /// A tensor id is empty or longer than the descriptor holds.
    BadId {
        /// The id's length in bytes.
        len: usize,
        /// The largest length accepted.
        max: usize,
    },
    /// `pre_read_register` with an id that is registered and not yet put.
    DuplicateId {
        /// The id.
        id: String,
    },
    /// `put` with an id that is not registered, or already put.
    UnknownId {
        /// The id.
        id: String,
    },
    /// A tensor larger than the bytes reserved for it.
    TooLarge {
        /// The tensor's size.
        nbytes: u64,
        /// Bytes reserved at registration.
        reserved: u64,
    },
    /// A registration larger than the whole payload ring.
    ExceedsPayload {
        /// Bytes asked for.
        nbytes: u64,
        /// The payload ring's size.
        payload_bytes: u64,
    },
    /// The bytes handed in disagree with the shape.
    SizeMismatch {
        /// Bytes given.
        given: u64,
        /// Bytes the dtype and shape call for.
        expected: u64,
    },
    /// More dimensions than a descriptor holds.
    TooManyDims {
        /// Dimensions given.
        ndim: usize,
        /// The limit.
        max: usize,
    },
    /// The shape's byte count overflows 64 bits.
    ShapeOverflow,
    /// A dtype name that does not exist.
    UnknownDType {
        /// The name given.
        name: String,
    },
    /// The producer gave up a registered slot without committing it.
    Abandoned {
        /// Stream position of the slot.
        position: u64,
        /// Its id.
        id: String,
        /// Why, as the producer said ([`AbandonReason::is_empty`] when it
        /// only dropped the slot).
        reason: AbandonReason,
    },
    /// `wait_drained` while a registered position is neither committed nor
    /// abandoned: the consumer could never release it.
    Unpublished {
        /// The oldest such position.
        position: u64,
    },
    /// [`Producer::commit_many`](crate::Producer::commit_many) was handed
    /// a slot that another producer (another stream) registered.
    ForeignSlot {
        /// The slot's position in its own stream.
        position: u64,
    },
    /// Shared memory holds a value no correct peer writes.
    Corrupt(String),
    /// `pop_chunk` when `has_chunk_ready()` is false.
    NotReady,
    /// An in-process stream could not move to a bigger ring (`grow`); it
    /// is left as it was.
    NotGrown {
        /// Why, with the numbers.
        why: String,
    },
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Full {
                resource: Resource::Items,
                capacity,
            } => write!(
                f,
                "the ring is full: all {capacity} item slots are waiting for the consumer"
            ),
            StreamError::Full {
                resource: Resource::PayloadBytes,
                capacity,
            } => write!(
                f,
                "the ring is full: its {capacity} payload bytes are waiting for the consumer"
            ),
            StreamError::Timeout { what, waited } => {
                write!(f, "gave up waiting for {what} after {waited:?}")
            }
            StreamError::AfterDone => {
                write!(f, "the producer already signalled done; nothing more can be registered")
            }
            StreamError::ConsumerGone => write!(f, "the consumer process is gone"),
            StreamError::ProducerGone => {
                write!(f, "the producer process died before signalling done")
            }
            StreamError::BadId { len, max } => write!(
                f,
                "a tensor id must be 1 to {max} bytes long, this one has {len}"
            ),
            StreamError::DuplicateId { id } => {
                write!(f, "tensor id {id:?} is already registered and not yet put")
            }
            StreamError::UnknownId { id } => {
                write!(f, "tensor id {id:?} is not registered (or was already put)")
            }
            StreamError::TooLarge { nbytes, reserved } => write!(
                f,
                "a tensor of {nbytes} bytes does not fit in the {reserved} bytes reserved for it; register it with its size (register_sized / pre_read_register_sized)"
            ),
            StreamError::ExceedsPayload {
                nbytes,
                payload_bytes,
            } => write!(
                f,
                "a tensor of {nbytes} bytes exceeds the whole payload ring of {payload_bytes} bytes; configure a larger one (StreamConfig::with_payload_bytes)"
            ),
            StreamError::SizeMismatch { given, expected } => write!(
                f,
                "{given} bytes were given but the dtype and shape call for {expected}"
            ),
            StreamError::TooManyDims { ndim, max } => {
                write!(f, "a tensor of {ndim} dimensions exceeds the limit of {max}")
            }
            StreamError::ShapeOverflow => {
                write!(f, "the shape's byte count does not fit in 64 bits")
            }
            StreamError::UnknownDType { name } => write!(
                f,
                "unknown dtype {name:?}; accepted: bool, u8, i8, i16, u16, i32, u32, i64, u64, f16, bf16, f32, f64"
            ),
            StreamError::Abandoned {
                position,
                id,
                reason,
            } if reason.is_empty() => write!(
                f,
                "the producer dropped tensor {id:?} at position {position} without committing it"
            ),
            StreamError::Abandoned {
                position,
                id,
                reason,
            } => write!(
                f,
                "the producer gave up tensor {id:?} at position {position} without committing it: {reason}"
            ),
            StreamError::Unpublished { position } => write!(
                f,
                "position {position} is registered but neither committed nor abandoned, so the stream cannot drain; commit or drop its slot (or put its id) first"
            ),
            StreamError::ForeignSlot { position } => write!(
                f,
                "the slot at position {position} was registered by another producer; commit it through that producer"
            ),
            StreamError::Corrupt(what) => write!(f, "shared memory is corrupt: {what}"),
            StreamError::NotReady => write!(f, "no chunk is ready; check has_chunk_ready() first"),
            StreamError::NotGrown { why } => write!(f, "the stream cannot grow: {why}"),
        }
    }
}

impl std::error::Error for StreamError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn an_abandon_reason_is_cut_on_a_char_boundary_and_says_what_was_given() {
        for pad in 0..4 {
            let text = format!("{}{}", "x".repeat(MAX_REASON_LEN - 3 + pad), "€€");
            let reason = AbandonReason::new(0, &text);
            assert!(text.starts_with(reason.text()));
            // At most one char (3 bytes) short of the limit.
            assert!(
                (MAX_REASON_LEN - 2..=MAX_REASON_LEN).contains(&reason.text().len()),
                "{pad}"
            );
        }
        assert_eq!(AbandonReason::new(1, "short").text(), "short");
        assert_eq!(AbandonReason::default().to_string(), "no reason given");
        assert!(AbandonReason::default().is_empty());
        assert_eq!(AbandonReason::new(0, "gone").to_string(), "gone");
        assert_eq!(AbandonReason::new(-25, "").to_string(), "status -25");
        assert!(!AbandonReason::new(-25, "").is_empty());
        assert!(!AbandonReason::new(0, "x").is_empty());
        assert_eq!(
            AbandonReason::new(-1, "read failed").to_string(),
            "read failed (status -1)"
        );
        assert_eq!(AbandonReason::from("x"), AbandonReason::new(0, "x"));
        assert_eq!(AbandonReason::new(0, ""), AbandonReason::default());
        // A reason costs the error a word: it is no larger than before.
        assert_eq!(std::mem::size_of::<AbandonReason>(), 8);
        assert!(std::mem::size_of::<StreamError>() <= 40);
    }

    /// The sentences users see for the errors they meet most: each names
    /// what ran out or went wrong, the numbers involved and the way out.
    #[test]
    fn stream_error_messages_name_the_cause_and_the_remedy() {
        let cases = [
            (
                StreamError::Full {
                    resource: Resource::Items,
                    capacity: 8,
                },
                "the ring is full: all 8 item slots are waiting for the consumer",
            ),
            (
                StreamError::Full {
                    resource: Resource::PayloadBytes,
                    capacity: 4096,
                },
                "the ring is full: its 4096 payload bytes are waiting for the consumer",
            ),
            (
                StreamError::Timeout {
                    what: "data from the producer",
                    waited: Duration::from_millis(5),
                },
                "gave up waiting for data from the producer after 5ms",
            ),
            (
                StreamError::AfterDone,
                "the producer already signalled done; nothing more can be registered",
            ),
            (StreamError::ConsumerGone, "the consumer process is gone"),
            (
                StreamError::ProducerGone,
                "the producer process died before signalling done",
            ),
            (
                StreamError::BadId { len: 65, max: 64 },
                "a tensor id must be 1 to 64 bytes long, this one has 65",
            ),
            (
                StreamError::DuplicateId { id: "t0".into() },
                "tensor id \"t0\" is already registered and not yet put",
            ),
            (
                StreamError::UnknownId { id: "t9".into() },
                "tensor id \"t9\" is not registered (or was already put)",
            ),
            (
                StreamError::TooLarge {
                    nbytes: 100,
                    reserved: 64,
                },
                "a tensor of 100 bytes does not fit in the 64 bytes reserved for it; register it with its size (register_sized / pre_read_register_sized)",
            ),
            (
                StreamError::ExceedsPayload {
                    nbytes: 8192,
                    payload_bytes: 4096,
                },
                "a tensor of 8192 bytes exceeds the whole payload ring of 4096 bytes; configure a larger one (StreamConfig::with_payload_bytes)",
            ),
            (
                StreamError::SizeMismatch {
                    given: 3,
                    expected: 4,
                },
                "3 bytes were given but the dtype and shape call for 4",
            ),
            (
                StreamError::TooManyDims { ndim: 9, max: 8 },
                "a tensor of 9 dimensions exceeds the limit of 8",
            ),
            (
                StreamError::ShapeOverflow,
                "the shape's byte count does not fit in 64 bits",
            ),
            (
                StreamError::Abandoned {
                    position: 3,
                    id: "t3".into(),
                    reason: AbandonReason::default(),
                },
                "the producer dropped tensor \"t3\" at position 3 without committing it",
            ),
            (
                StreamError::Abandoned {
                    position: 3,
                    id: "t3".into(),
                    reason: AbandonReason::new(-1, "engine read failed"),
                },
                "the producer gave up tensor \"t3\" at position 3 without committing it: engine read failed (status -1)",
            ),
            (
                StreamError::Unpublished { position: 2 },
                "position 2 is registered but neither committed nor abandoned, so the stream cannot drain; commit or drop its slot (or put its id) first",
            ),
            (
                StreamError::Corrupt("flags word 0x80 has unknown bits 0x80".into()),
                "shared memory is corrupt: flags word 0x80 has unknown bits 0x80",
            ),
            (
                StreamError::NotReady,
                "no chunk is ready; check has_chunk_ready() first",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message, "{error:?}");
        }
    }

    #[test]
    fn setup_error_messages_name_the_segment_and_the_way_out() {
        let cases = [
            (
                SetupError::AlreadyExists {
                    name: "/s".into(),
                    owner_pid: 0,
                },
                "segment /s already exists and its owner, a process still setting it up, is alive",
            ),
            (
                SetupError::AlreadyExists {
                    name: "/s".into(),
                    owner_pid: 42,
                },
                "segment /s already exists and its owner, process 42, is alive",
            ),
            (
                SetupError::NotFound { name: "/s".into() },
                "no segment named /s exists",
            ),
            (
                SetupError::NoSpace {
                    name: "/s".into(),
                    dir: "/dev/shm",
                    needed: 100,
                    available: 10,
                },
                "segment /s needs 100 bytes of shared memory but /dev/shm has only 10 bytes free; enlarge /dev/shm (docker run --shm-size) or choose a smaller item capacity or payload size in bytes",
            ),
            (
                SetupError::WindowExceedsCapacity {
                    window: 32,
                    capacity: 16,
                },
                "the policy's largest window of 32 items exceeds the ring's capacity of 16 slots",
            ),
            (
                SetupError::HubFull {
                    name: "/h".into(),
                    entries: 64,
                },
                "worker hub /h is full: all 64 stream entries are in use (remove finished streams from the stream set, or create the hub with more entries)",
            ),
            (
                SetupError::WorkerGone { name: "/h".into() },
                "the worker of hub /h is gone: its consumer process died or dropped its stream set",
            ),
            (
                SetupError::ConsumerAlreadyAttached { name: "/s".into() },
                "segment /s already has a consumer attached",
            ),
            (
                SetupError::IdentityMismatch {
                    field: "edge_name",
                    expected: "a".into(),
                    found: "b".into(),
                },
                "the segment belongs to another stream: its edge_name is \"b\", not \"a\"",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message, "{error:?}");
            assert!(error.source().is_none(), "{error:?}");
        }
    }

    #[test]
    fn an_os_error_keeps_the_os_cause_as_its_source() {
        let error = SetupError::Os {
            op: "open",
            name: "/s".into(),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert!(
            error.to_string().starts_with("could not open segment /s: "),
            "{error}"
        );
        let source = error.source().expect("the OS error is the source");
        let io = source.downcast_ref::<io::Error>().expect("an io::Error");
        assert_eq!(io.raw_os_error(), Some(libc::EACCES));
    }
}
