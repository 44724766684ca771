//! What can go wrong on the network path, each as a sentence.

use shmstream::{AbandonReason, StreamError};
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
    /// The offers waiting for their turn (ahead of a missing `seq`, or for
    /// room in the ring) would hold more bytes than the receiver's bound:
    /// the stream is ended (its transfers abandoned), the process and its
    /// other streams go on.
    ReorderFull {
        /// Which stream ("the stream received on ADDR").
        stream: String,
        /// The offer that would have passed the bound.
        seq: u64,
        /// Its tensor id, when it could be read.
        id: Option<String>,
        /// The next seq the receiver was waiting for.
        next_seq: u64,
        /// Offers held then.
        waiting: usize,
        /// Bytes held with that offer.
        held: u64,
        /// The bound (`ReceiverOptions::max_reorder_bytes`).
        limit: u64,
    },
    /// The sender leaves more acknowledgements unread than the bound (it
    /// floods without progressing): the stream is ended as above.
    AcksUnread {
        /// Which stream.
        stream: String,
        /// Bytes of acknowledgements waiting to be sent.
        held: u64,
        /// The bound (`MAX_UNSENT_ACK_BYTES`).
        limit: u64,
    },
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
            NetError::ReorderFull {
                stream,
                seq,
                id,
                next_seq,
                waiting,
                held,
                limit,
            } => {
                write!(f, "{stream}: offer #{seq}")?;
                if let Some(id) = id {
                    write!(f, " of tensor {id:?}")?;
                }
                write!(
                    f,
                    " would make the {waiting} offers waiting for #{next_seq} (missing, or waiting for room) hold \
                     {held} bytes, over the receiver's bound of {limit} bytes (ReceiverOptions::max_reorder_bytes); \
                     the stream is ended"
                )
            }
            NetError::AcksUnread {
                stream,
                held,
                limit,
            } => write!(
                f,
                "{stream}: the sender leaves {held} bytes of acknowledgements unread, over the receiver's \
                 bound of {limit} bytes (MAX_UNSENT_ACK_BYTES); the stream is ended"
            ),
            NetError::TooLarge { nbytes, max } => {
                write!(f, "a tensor of {nbytes} bytes exceeds the sender's limit of {max} bytes")
            }
        }
    }
}

impl std::error::Error for NetError {}

impl NetError {
    /// What the consumer is told about a tensor this error ended before it
    /// arrived: UCX's status as the code and its text, in a few words (the
    /// consumer's error names the tensor and its position already).
    pub(crate) fn abandon_reason(&self) -> AbandonReason {
        match self {
            NetError::PeerFailed { status, .. } => {
                ucx_reason("the connection to the sender failed", *status)
            }
            NetError::TransferFailed { status, .. } => {
                ucx_reason("the UCX receive failed", *status)
            }
            NetError::Ucx { what, status } => ucx_reason(&format!("{what} failed"), *status),
            other => AbandonReason::new(0, &format!("the receiver stopped: {other}")),
        }
    }
}

/// `what`, then UCX's text for `status`; the status is the code.
pub(crate) fn ucx_reason(what: &str, status: ucs_status_t) -> AbandonReason {
    AbandonReason::new(
        i32::from(status.0),
        &format!("{what}: {}", ucx_sys::status_string(status)),
    )
}

impl From<StreamError> for NetError {
    fn from(e: StreamError) -> Self {
        NetError::Stream(e)
    }
}
