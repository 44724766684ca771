//! What can go wrong on the network path, each as a sentence.

use shmstream::StreamError;
use std::fmt;
use ucx_sys::{ucs_status_t, LoadError};

/// An offer the receiver refused before touching the stream: which field
/// was wrong and the limit it broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferError {
    /// The offer's sequence number (`None` when the header was too broken
    /// to carry one).
    pub seq: Option<u64>,
    /// The tensor id, when it could be read.
    pub id: Option<String>,
    /// The header field at fault: `header`, `magic`, `version`, `kind`,
    /// `seq`, `id`, `dtype`, `shape`, `nbytes`, `length`.
    pub field: &'static str,
    /// What was wrong, with the limit.
    pub detail: String,
}

impl fmt::Display for OfferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offer")?;
        if let Some(seq) = self.seq {
            write!(f, " #{seq}")?;
        }
        if let Some(id) = &self.id {
            write!(f, " of tensor {id:?}")?;
        }
        write!(f, " refused: field {}: {}", self.field, self.detail)
    }
}

impl std::error::Error for OfferError {}

/// An error of the sender or the receiver.
#[derive(Debug)]
pub enum NetError {
    /// libucp cannot be loaded (names the Debian package to install).
    Unavailable(LoadError),
    /// A UCX call failed.
    Ucx {
        /// The call.
        what: &'static str,
        /// Its status.
        status: ucs_status_t,
    },
    /// A system call failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        error: std::io::Error,
    },
    /// An address that does not parse or resolve.
    Address(String),
    /// The stream refused an operation.
    Stream(StreamError),
    /// The peer or the link failed (UCX's endpoint error).
    PeerFailed {
        /// UCX's status for it.
        status: ucs_status_t,
        /// Transfers in flight then (their slots were abandoned).
        in_flight: usize,
    },
    /// A transfer into a slot failed; its position was abandoned.
    TransferFailed {
        /// The tensor id.
        id: String,
        /// UCX's status.
        status: ucs_status_t,
    },
    /// Nothing arrived or completed for longer than the stall timeout
    /// while the stream was not finished.
    Stalled {
        /// The timeout, in seconds.
        secs: f64,
        /// Transfers in flight (their slots were abandoned).
        in_flight: usize,
        /// Offers received so far.
        offers: u64,
    },
    /// No sender connected in time.
    NoSender {
        /// Seconds waited.
        secs: f64,
    },
    /// The receiver refused an offer (the sender's view; the receiver
    /// reports an [`OfferError`] and goes on).
    Refused {
        /// The offer's sequence number.
        seq: u64,
        /// The receiver's sentence.
        reason: String,
    },
    /// A message that breaks the protocol (an acknowledgement of an offer
    /// never made, a second end, ...).
    Protocol(String),
    /// A sender's tensor no buffer can hold.
    TooLarge {
        /// Its bytes.
        nbytes: u64,
        /// The limit.
        max: u64,
    },
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Unavailable(e) => e.fmt(f),
            NetError::Ucx { what, status } => write!(f, "{what} failed: {status}"),
            NetError::Io { what, error } => write!(f, "{what}: {error}"),
            NetError::Address(s) => write!(f, "bad address: {s}"),
            NetError::Stream(e) => write!(f, "the stream refused: {e}"),
            NetError::PeerFailed { status, in_flight } => write!(
                f,
                "the connection to the peer failed ({status}); {in_flight} transfers in flight were abandoned, none published"
            ),
            NetError::TransferFailed { id, status } => write!(
                f,
                "the transfer of tensor {id:?} failed ({status}); its position was abandoned"
            ),
            NetError::Stalled {
                secs,
                in_flight,
                offers,
            } => write!(
                f,
                "nothing arrived or completed for {secs:.1} s (the stall timeout) after {offers} offers; \
                 {in_flight} transfers in flight were abandoned, none published"
            ),
            NetError::NoSender { secs } => write!(f, "no sender connected within {secs:.1} s"),
            NetError::Refused { seq, reason } => {
                write!(f, "the receiver refused offer #{seq}: {reason}")
            }
            NetError::Protocol(s) => write!(f, "protocol error: {s}"),
            NetError::TooLarge { nbytes, max } => {
                write!(f, "a tensor of {nbytes} bytes exceeds the sender's limit of {max} bytes")
            }
        }
    }
}

impl std::error::Error for NetError {}

impl From<StreamError> for NetError {
    fn from(e: StreamError) -> Self {
        NetError::Stream(e)
    }
}
