//! What a UCX callback saw ([`Event`]) and the callbacks themselves: each
//! only pushes an event onto its worker's queue.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::fmt;
use ucx_sys::*;

/// What a callback saw, in the order UCX called back.
#[derive(Debug)]
pub enum Event {
    /// A client asks to connect (listener side).
    ConnRequest(ConnRequest),
    /// The endpoint failed (peer gone, link down, timeout).
    EpError(ucs_status_t),
    /// An active message arrived.
    Am(AmMessage),
    /// A receive of active-message data into our memory completed.
    RecvDone {
        /// The request handle `ucp_am_recv_data_nbx` returned.
        request: usize,
        /// How it ended.
        status: ucs_status_t,
        /// Bytes received.
        length: usize,
    },
    /// A send completed.
    SendDone {
        /// The request handle `ucp_am_send_nbx` returned.
        request: usize,
        /// How it ended.
        status: ucs_status_t,
    },
}

/// A pending connection request; accept it with [`Endpoint::accept`](super::Endpoint::accept) or
/// reject it with [`Listener::reject`](super::Listener::reject).
#[derive(Debug)]
pub struct ConnRequest(pub(crate) ucp_conn_request_h);

/// An arrived active message.
pub struct AmMessage {
    /// Its header, copied out of UCX's buffer.
    pub header: Vec<u8>,
    /// Bytes of data the sender offers.
    pub length: usize,
    /// The data: still at the sender (rendezvous) or already here.
    pub data: AmData,
}

impl fmt::Debug for AmMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmMessage")
            .field("header_len", &self.header.len())
            .field("length", &self.length)
            .field("rendezvous", &matches!(self.data, AmData::Rendezvous(_)))
            .finish()
    }
}

/// Where an active message's data is.
#[derive(Debug)]
pub enum AmData {
    /// Still at the sender: fetch it with [`Worker::recv_data`](super::Worker::recv_data) straight
    /// into its destination, or drop it with [`Worker::release_data`](super::Worker::release_data).
    Rendezvous(DataDesc),
    /// Came with the message (eager), copied here.
    Eager(Vec<u8>),
    /// Came with the message, but longer than
    /// [`Worker::set_max_eager_copy`](super::Worker::set_max_eager_copy): not copied (only its length is
    /// known, [`AmMessage::length`]).
    Discarded,
}

/// UCX's descriptor of a rendezvous payload, kept past its callback (the
/// handler returned `UCS_INPROGRESS`). Exactly one of
/// [`Worker::recv_data`](super::Worker::recv_data) and [`Worker::release_data`](super::Worker::release_data) consumes it.
#[derive(Debug)]
pub struct DataDesc(pub(crate) *mut c_void);

/// What the callbacks share with the worker: the queue they fill, and the
/// longest eager payload worth copying out of UCX's buffer.
pub(crate) struct Events {
    pub(crate) queue: RefCell<VecDeque<Event>>,
    pub(crate) max_eager_copy: Cell<usize>,
}

pub(crate) unsafe extern "C" fn am_cb(
    arg: *mut c_void,
    header: *const c_void,
    header_length: usize,
    data: *mut c_void,
    length: usize,
    param: *const ucp_am_recv_param_t,
) -> ucs_status_t {
    // SAFETY: UCX passes valid `param` for the callback's duration.
    let attr = unsafe { (*param).recv_attr };
    let header = if header_length == 0 || header.is_null() {
        Vec::new()
    } else {
        // SAFETY: UCX guarantees `header_length` readable bytes at `header`
        // during the callback; they are copied before it returns.
        unsafe { std::slice::from_raw_parts(header.cast::<u8>(), header_length) }.to_vec()
    };
    let rndv = attr & u64::from(ucp_am_recv_attr_t::UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
    let (data, status) = if rndv {
        (
            AmData::Rendezvous(DataDesc(data)),
            ucs_status_t::UCS_INPROGRESS,
        )
    } else {
        // SAFETY: `arg` is the events_arg given at registration (the boxed
        // `Events` of a live worker), read on the worker's thread.
        let max = unsafe { &*(arg as *const Events) }.max_eager_copy.get();
        let data = if length > max {
            AmData::Discarded
        } else if length == 0 || data.is_null() {
            AmData::Eager(Vec::new())
        } else {
            // SAFETY: eager data: `length` readable bytes during the
            // callback, copied before it returns (UCS_OK: UCX frees them).
            AmData::Eager(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), length) }.to_vec())
        };
        (data, ucs_status_t::UCS_OK)
    };
    // SAFETY: `arg` is the events_arg given at registration, and UCX calls
    // this only from inside progress on the worker's thread.
    unsafe {
        push(
            arg,
            Event::Am(AmMessage {
                header,
                length,
                data,
            }),
        )
    };
    status
}

pub(crate) unsafe extern "C" fn recv_cb(
    request: *mut c_void,
    status: ucs_status_t,
    length: usize,
    user_data: *mut c_void,
) {
    // SAFETY: user_data is the worker's events_arg; called from progress.
    unsafe {
        push(
            user_data,
            Event::RecvDone {
                request: request as usize,
                status,
                length,
            },
        )
    };
}

pub(crate) unsafe extern "C" fn send_cb(
    request: *mut c_void,
    status: ucs_status_t,
    user_data: *mut c_void,
) {
    // SAFETY: user_data is the worker's events_arg; called from progress.
    unsafe {
        push(
            user_data,
            Event::SendDone {
                request: request as usize,
                status,
            },
        )
    };
}

pub(crate) unsafe extern "C" fn err_cb(arg: *mut c_void, _ep: ucp_ep_h, status: ucs_status_t) {
    // SAFETY: arg is the worker's events_arg; called from progress.
    unsafe { push(arg, Event::EpError(status)) };
}

pub(crate) unsafe extern "C" fn conn_cb(req: ucp_conn_request_h, arg: *mut c_void) {
    // SAFETY: arg is the worker's events_arg; called from progress.
    unsafe { push(arg, Event::ConnRequest(ConnRequest(req))) };
}

/// Pushes onto the queue behind `arg` (a `*const Events`).
///
/// # Safety
///
/// `arg` must be the `events_arg()` of a live worker, called on its thread
/// from inside progress (no borrow of the queue is live then).
pub(crate) unsafe fn push(arg: *mut c_void, event: Event) {
    // SAFETY: per the contract, `arg` points to the worker's boxed queue.
    let events = unsafe { &*(arg as *const Events) };
    events.queue.borrow_mut().push_back(event);
}
