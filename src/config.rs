//! What names a stream and shapes its rings: the identity of SPEC section
//! 4 (`request_id`, `edge_name`, `from_partition`), the item capacity, the
//! default item size and the payload size, and the segment name derived
//! from them.

use crate::error::SetupError;
use crate::protocol::layout::{Geometry, MAX_NAME_LEN};
use std::time::Duration;

pub use crate::protocol::layout::MAX_PREFIX_LEN;
/// The prefix of segment names unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "shmstream-";

/// Which stream this is (SPEC section 4): the request, the graph edge it
/// carries and the partition it comes from. Both processes must name the
/// same identity; the segment stores it and the consumer checks it.
///
/// # Examples
///
/// ```
/// use shmstream::StreamId;
/// let id = StreamId {
///     request_id: "req-7".into(),
///     edge_name: "codec_tokens".into(),
///     from_partition: "talker".into(),
/// };
/// assert_eq!(id.to_string(), "req-7/codec_tokens/talker");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamId {
    /// The request the stream belongs to.
    pub request_id: String,
    /// The graph edge it carries.
    pub edge_name: String,
    /// The partition (model part) it comes from.
    pub from_partition: String,
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.request_id, self.edge_name, self.from_partition
        )
    }
}

/// How a stream is named and sized. Both processes build the same config;
/// the consumer's identity must match the one stored in the segment.
///
/// # Examples
///
/// ```
/// use shmstream::{StreamConfig, StreamId};
/// let cfg = StreamConfig::new(StreamId {
///     request_id: "req-7".into(),
///     edge_name: "codec_tokens".into(),
///     from_partition: "talker".into(),
/// })
/// .with_capacity(256)
/// .with_item_bytes(4096);
/// assert_eq!(cfg.capacity(), 256);
/// assert_eq!(cfg.payload_bytes(), 1 << 20); // 256 x 4096 unless set
/// let big = cfg.clone().with_payload_bytes(1 << 30); // room for 64 MiB tensors
/// assert_eq!(big.payload_bytes(), 1 << 30);
/// assert!(cfg.segment_name().unwrap().starts_with("/shmstream-req-7.codec_tokens.talker-"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    pub(crate) id: StreamId,
    pub(crate) capacity: u64,
    pub(crate) item_bytes: u64,
    pub(crate) payload_bytes: Option<u64>,
    pub(crate) prefix: String,
    pub(crate) timeout: Option<Duration>,
}

impl StreamConfig {
    /// A stream of 1024 items of 4096 bytes by default (a 4 MiB payload),
    /// waiting at most 10 s in its blocking calls, named by its identity.
    #[must_use]
    pub fn new(id: StreamId) -> Self {
        StreamConfig {
            id,
            capacity: 1024,
            item_bytes: 4096,
            payload_bytes: None,
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: Some(Duration::from_secs(10)),
        }
    }

    /// Items the ring holds at most (descriptors): a power of two.
    #[must_use]
    pub fn with_capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Bytes a registration without a size reserves (`register`,
    /// `pre_read_register`); tensors of any other size use the `_sized`
    /// calls. At most the payload size.
    #[must_use]
    pub fn with_item_bytes(mut self, item_bytes: u64) -> Self {
        self.item_bytes = item_bytes;
        self
    }

    /// Bytes of the payload ring where tensors lie back to back: a power of
    /// two, at least a page. Unset, it is `capacity x item_bytes` rounded up
    /// to a power of two (at least a page).
    #[must_use]
    pub fn with_payload_bytes(mut self, payload_bytes: u64) -> Self {
        self.payload_bytes = Some(payload_bytes);
        self
    }

    /// The prefix of the segment's name (letters, digits, `-`, `_`, `.`).
    #[must_use]
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// How long the blocking calls without a timeout argument
    /// ([`register`](crate::Producer::register),
    /// [`next_chunk`](crate::StreamBuffer::next_chunk)) wait before giving
    /// up; `None` waits for ever (a dead peer still ends the wait).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The stream's identity.
    pub fn id(&self) -> &StreamId {
        &self.id
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes a registration without a size reserves.
    pub fn item_bytes(&self) -> u64 {
        self.item_bytes
    }

    /// Bytes of the payload ring (see [`with_payload_bytes`](Self::with_payload_bytes)).
    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes.unwrap_or_else(|| {
            self.capacity
                .saturating_mul(self.item_bytes)
                .checked_next_power_of_two()
                .unwrap_or(u64::MAX)
                .max(crate::protocol::layout::PAGE as u64)
        })
    }

    /// The segment-name prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The wait of the blocking calls without a timeout argument.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    pub(crate) fn names(&self) -> [(&'static str, &str); 3] {
        [
            ("request_id", &self.id.request_id),
            ("edge_name", &self.id.edge_name),
            ("from_partition", &self.id.from_partition),
        ]
    }

    /// Checks names and layout; returns the geometry.
    pub(crate) fn validate(&self) -> Result<Geometry, SetupError> {
        for (field, value) in self.names() {
            check_name(field, value)?;
        }
        if self.prefix.len() > MAX_PREFIX_LEN
            || !self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(SetupError::InvalidName {
                field: "prefix",
                value: self.prefix.clone(),
                reason: format!(
                    "a prefix has at most {MAX_PREFIX_LEN} letters, digits, '-', '_' or '.'"
                ),
            });
        }
        Geometry::new(self.capacity, self.item_bytes, self.payload_bytes())
            .map_err(SetupError::InvalidConfig)
    }

    /// The POSIX shared-memory name of this stream's segment: the prefix, a
    /// readable part of the identity, and a hash of the whole identity (so
    /// distinct identities that sanitise alike still get distinct names).
    ///
    /// # Errors
    ///
    /// [`SetupError::InvalidName`] for an empty, too long or unusable name
    /// or prefix, [`SetupError::InvalidConfig`] for a bad capacity, item
    /// size or payload size.
    pub fn segment_name(&self) -> Result<String, SetupError> {
        self.validate()?;
        let mut readable = String::new();
        for (i, (_, value)) in self.names().iter().enumerate() {
            if i > 0 {
                readable.push('.');
            }
            readable.extend(value.chars().map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            }));
        }
        readable.truncate(48);
        let mut hash = Fnv::new();
        for (_, value) in self.names() {
            hash.write(&(value.len() as u64).to_le_bytes());
            hash.write(value.as_bytes());
        }
        Ok(format!("/{}{}-{:016x}", self.prefix, readable, hash.0))
    }
}

fn check_name(field: &'static str, value: &str) -> Result<(), SetupError> {
    let reason = if value.is_empty() {
        "it is empty".to_string()
    } else if value.len() > MAX_NAME_LEN {
        format!(
            "it is {} bytes long, the limit is {MAX_NAME_LEN}",
            value.len()
        )
    } else if value.contains('/') {
        "it contains '/'".to_string()
    } else if value.contains('\0') {
        "it contains a NUL byte".to_string()
    } else {
        return Ok(());
    };
    Err(SetupError::InvalidName {
        field,
        value: value.to_string(),
        reason,
    })
}

/// FNV-1a, 64 bits: stable across builds and processes, unlike std's
/// hasher, which is what a name both processes derive needs.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> StreamId {
        StreamId {
            request_id: "req-7".into(),
            edge_name: "codec_tokens".into(),
            from_partition: "talker".into(),
        }
    }

    #[test]
    fn a_stream_id_shows_its_three_names_joined_by_slashes() {
        assert_eq!(id().to_string(), "req-7/codec_tokens/talker");
    }

    #[test]
    fn every_setting_reads_back_as_given() {
        let cfg = StreamConfig::new(id())
            .with_capacity(64)
            .with_item_bytes(192)
            .with_prefix("sst-x.")
            .with_timeout(None);
        assert_eq!(cfg.id(), &id());
        assert_eq!(cfg.capacity(), 64);
        assert_eq!(cfg.item_bytes(), 192);
        assert_eq!(cfg.prefix(), "sst-x.");
        assert_eq!(cfg.timeout(), None);
        // 64 x 192 rounded up to a power of two.
        assert_eq!(cfg.payload_bytes(), 16384);
        assert!(cfg.segment_name().unwrap().starts_with("/sst-x.req-7."));
        let defaults = StreamConfig::new(id());
        assert_eq!(defaults.capacity(), 1024);
        assert_eq!(defaults.item_bytes(), 4096);
        assert_eq!(defaults.prefix(), DEFAULT_PREFIX);
        assert_eq!(defaults.timeout(), Some(Duration::from_secs(10)));
    }
}
