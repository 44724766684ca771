//! What names a stream and shapes its ring: the identity of SPEC section 4
//! (`request_id`, `edge_name`, `from_partition`), capacity, slot size, and
//! the segment name derived from them.

use crate::error::SetupError;
use crate::layout::{Geometry, MAX_NAME_LEN};
use std::time::Duration;

/// Longest segment-name prefix.
pub const MAX_PREFIX_LEN: usize = 32;
/// The prefix of segment names unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "shmstream-";

/// How a stream is named and sized. Both processes build the same config;
/// the consumer's identity must match the one stored in the segment.
///
/// # Examples
///
/// ```
/// use shmstream::StreamConfig;
/// let cfg = StreamConfig::new("req-7", "codec_tokens", "talker")
///     .capacity(256)
///     .slot_bytes(4096);
/// assert!(cfg.segment_name().unwrap().starts_with("/shmstream-req-7.codec_tokens.talker-"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    pub(crate) request_id: String,
    pub(crate) edge_name: String,
    pub(crate) from_partition: String,
    pub(crate) capacity: u64,
    pub(crate) slot_bytes: u64,
    pub(crate) prefix: String,
    pub(crate) timeout: Option<Duration>,
}

impl StreamConfig {
    /// A stream of 1024 slots of 4096 bytes, named by its identity.
    pub fn new(request_id: &str, edge_name: &str, from_partition: &str) -> Self {
        StreamConfig {
            request_id: request_id.to_string(),
            edge_name: edge_name.to_string(),
            from_partition: from_partition.to_string(),
            capacity: 1024,
            slot_bytes: 4096,
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: Some(Duration::from_secs(10)),
        }
    }

    /// Slots in the ring: a power of two.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Bytes per slot: a multiple of 64, and capacity x slot size a
    /// multiple of the 4096-byte page.
    pub fn slot_bytes(mut self, slot_bytes: u64) -> Self {
        self.slot_bytes = slot_bytes;
        self
    }

    /// The prefix of the segment's name (letters, digits, `-`, `_`, `.`).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// How long blocking calls (`register`, `next_chunk`'s default) wait
    /// before giving up; `None` waits for ever (a dead peer still ends it).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The request id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The graph edge's name.
    pub fn edge_name(&self) -> &str {
        &self.edge_name
    }

    /// The partition the stream comes from.
    pub fn from_partition(&self) -> &str {
        &self.from_partition
    }

    /// The configured capacity.
    pub fn get_capacity(&self) -> u64 {
        self.capacity
    }

    /// The configured slot size.
    pub fn get_slot_bytes(&self) -> u64 {
        self.slot_bytes
    }

    /// The configured wait timeout.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    pub(crate) fn names(&self) -> [(&'static str, &str); 3] {
        [
            ("request_id", &self.request_id),
            ("edge_name", &self.edge_name),
            ("from_partition", &self.from_partition),
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
        Geometry::new(self.capacity, self.slot_bytes).map_err(SetupError::InvalidConfig)
    }

    /// The POSIX shared-memory name of this stream's segment: the prefix, a
    /// readable part of the identity, and a hash of the whole identity (so
    /// distinct identities that sanitise alike still get distinct names).
    ///
    /// # Errors
    ///
    /// The names are refused as in [`validate`](Self::validate).
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
