//! # shmstream-net
//!
//! Network ingress for a [`shmstream`] stream over [UCX](https://openucx.org):
//! the process that creates the stream (the producer) runs a [`Receiver`],
//! a remote process runs a [`Sender`], and each tensor the sender offers
//! lands **straight in the slot** the receiver reserved for it in the
//! shared-memory ring, with no staging buffer:
//!
//! 1. the sender registers its buffers (`ucp_mem_map`) and sends, for each
//!    tensor, an active message whose header is the offer (seq, id, dtype,
//!    shape, nbytes; [`wire`]) and whose payload goes by rendezvous;
//! 2. the receiver, which registered the stream's whole payload region
//!    once, validates the offer, reserves the next position with the
//!    tensor's size, and calls `ucp_am_recv_data_nbx` into the slot (an
//!    RDMA read on InfiniBand/RoCE, a streamed receive on TCP);
//! 3. when that receive completes the slot is committed and the sender
//!    acknowledged; completions come in any order, commits with them.
//!
//! Transports are UCX's own choice, steered by `UCX_TLS` and
//! `UCX_NET_DEVICES` (`UCX_TLS=tcp` on a box without RDMA). The library is
//! loaded at run time ([`ucx_sys::ucp`]): nothing here needs UCX to build.
//! `docs/network.md` has the flow, the faults, and the numbers.

#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod budget;
mod error;
mod options;
mod receiver;
mod recent_ids;
mod refusals;
mod reorder;
mod sender;
pub mod ucx;
pub mod wire;

pub use error::{NetError, OfferError};
pub use options::{
    ReceiveReport, ReceiverOptions, ACK_ENTRY_BYTES, DEFAULT_MAX_REORDER_BYTES, MAX_REORDER,
    MAX_UNSENT_ACK_BYTES,
};
pub use receiver::Receiver;
pub use refusals::{Refusals, REFUSAL_SAMPLE};
pub use reorder::REORDER_ENTRY_BYTES;
pub use sender::{SendReport, Sender, SenderOptions};
