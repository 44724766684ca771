//! A small safe layer over the UCP calls of [`ucx_sys`]: a context, one
//! worker per side, a listener or a client endpoint, registered memory,
//! active messages and their requests.
//!
//! Everything runs on one thread. UCX calls back only from inside
//! [`Worker::progress`]; every callback here just pushes an [`Event`] onto
//! the worker's queue ([`Worker::take_events`]), so no callback touches the
//! stream and no callback can re-enter the caller.

use crate::error::NetError;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::fmt;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::ptr;
use std::rc::Rc;
use std::time::Duration;
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

/// A pending connection request; accept it with [`Endpoint::accept`] or
/// reject it with [`Listener::reject`].
#[derive(Debug)]
pub struct ConnRequest(ucp_conn_request_h);

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
    /// Still at the sender: fetch it with [`Worker::recv_data`] straight
    /// into its destination, or drop it with [`Worker::release_data`].
    Rendezvous(DataDesc),
    /// Came with the message (eager), copied here.
    Eager(Vec<u8>),
    /// Came with the message, but longer than
    /// [`Worker::set_max_eager_copy`]: not copied (only its length is
    /// known, [`AmMessage::length`]).
    Discarded,
}

/// UCX's descriptor of a rendezvous payload, kept past its callback (the
/// handler returned `UCS_INPROGRESS`). Exactly one of
/// [`Worker::recv_data`] and [`Worker::release_data`] consumes it.
#[derive(Debug)]
pub struct DataDesc(*mut c_void);

/// What the callbacks share with the worker: the queue they fill, and the
/// longest eager payload worth copying out of UCX's buffer.
struct Events {
    queue: RefCell<VecDeque<Event>>,
    max_eager_copy: Cell<usize>,
}

/// A UCP context: the library, its configuration (the `UCX_*` environment,
/// so `UCX_TLS` and `UCX_NET_DEVICES` choose the transports) and the
/// features asked for.
pub struct Context {
    ucp: &'static Ucp,
    handle: ucp_context_h,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

fn check(what: &'static str, status: ucs_status_t) -> Result<(), NetError> {
    if status == ucs_status_t::UCS_OK {
        Ok(())
    } else {
        Err(NetError::Ucx { what, status })
    }
}

impl Context {
    /// Loads UCX and creates a context with active messages, remote memory
    /// access and wake-up events.
    ///
    /// # Errors
    ///
    /// [`NetError::Unavailable`] without libucx, [`NetError::Ucx`] when UCX
    /// refuses (a bad `UCX_*` variable, say).
    pub fn new() -> Result<Rc<Context>, NetError> {
        let ucp = ucx_sys::ucp().map_err(NetError::Unavailable)?;
        let mut config = ptr::null_mut();
        // SAFETY: null prefix and file name ask for the defaults and the
        // environment; `config` receives a handle released below.
        check("ucp_config_read", unsafe {
            ucp.ucp_config_read(ptr::null(), ptr::null(), &mut config)
        })?;
        // SAFETY: an all-zero ucp_params_t is valid (null pointers, no
        // callbacks); field_mask names the only fields UCX reads.
        let mut params: ucp_params_t = unsafe { MaybeUninit::zeroed().assume_init() };
        params.field_mask = u64::from(ucp_params_field::UCP_PARAM_FIELD_FEATURES);
        params.features = u64::from(
            ucp_feature::UCP_FEATURE_AM
                | ucp_feature::UCP_FEATURE_RMA
                | ucp_feature::UCP_FEATURE_WAKEUP,
        );
        let mut handle = ptr::null_mut();
        // SAFETY: `params` and `config` are valid for the call (UCX copies
        // what it keeps); `ucp_init` is this call with the header's version.
        let status = unsafe {
            ucp.ucp_init_version(UCP_API_MAJOR, UCP_API_MINOR, &params, config, &mut handle)
        };
        // SAFETY: `config` came from ucp_config_read and is released once.
        unsafe { ucp.ucp_config_release(config) };
        check("ucp_init", status)?;
        Ok(Rc::new(Context { ucp, handle }))
    }

    /// Registers `len` bytes at `addr` with every transport of the context
    /// (`ucp_mem_map`): pinned and keyed for the NIC on RDMA transports.
    ///
    /// # Safety
    ///
    /// `addr .. addr + len` must stay mapped while the returned
    /// [`MemRegion`] lives (it unregisters on drop).
    ///
    /// # Errors
    ///
    /// [`NetError::Ucx`] when UCX cannot register the range.
    pub unsafe fn map(self: &Rc<Self>, addr: *mut u8, len: usize) -> Result<MemRegion, NetError> {
        // SAFETY: all-zero is a valid ucp_mem_map_params_t.
        let mut params: ucp_mem_map_params_t = unsafe { MaybeUninit::zeroed().assume_init() };
        params.field_mask = u64::from(
            ucp_mem_map_params_field::UCP_MEM_MAP_PARAM_FIELD_ADDRESS
                | ucp_mem_map_params_field::UCP_MEM_MAP_PARAM_FIELD_LENGTH,
        );
        params.address = addr.cast();
        params.length = len;
        let mut memh = ptr::null_mut();
        // SAFETY: the context is alive (self); the caller keeps the range
        // mapped for the region's life.
        check("ucp_mem_map", unsafe {
            self.ucp.ucp_mem_map(self.handle, &params, &mut memh)
        })?;
        Ok(MemRegion {
            ctx: Rc::clone(self),
            memh,
            addr,
            len,
        })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: every worker and region holds an Rc of this context, so
        // none is left when it drops; the handle is cleaned up once.
        unsafe { self.ucp.ucp_cleanup(self.handle) };
    }
}

/// A registered memory range (`ucp_mem_map`), unregistered on drop.
pub struct MemRegion {
    ctx: Rc<Context>,
    memh: ucp_mem_h,
    addr: *mut u8,
    len: usize,
}

impl fmt::Debug for MemRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemRegion")
            .field("addr", &self.addr)
            .field("len", &self.len)
            .finish()
    }
}

impl MemRegion {
    /// The first byte of the range.
    pub fn addr(&self) -> *mut u8 {
        self.addr
    }

    /// Bytes registered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `[ptr, ptr + len)` lies inside the range.
    pub fn contains(&self, ptr: *const u8, len: usize) -> bool {
        let start = self.addr as usize;
        let p = ptr as usize;
        p >= start
            && p.checked_add(len)
                .is_some_and(|end| end <= start + self.len)
    }
}

impl MemRegion {
    /// The remote key of the range, packed for a peer
    /// ([`Endpoint::unpack_rkey`]) that reads it with [`Endpoint::get`].
    ///
    /// # Errors
    ///
    /// [`NetError::Ucx`].
    pub fn pack_rkey(&self) -> Result<Vec<u8>, NetError> {
        let mut buf = ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: live context and handle; UCX allocates the buffer,
        // released below after the copy.
        check("ucp_rkey_pack", unsafe {
            self.ctx
                .ucp
                .ucp_rkey_pack(self.ctx.handle, self.memh, &mut buf, &mut len)
        })?;
        // SAFETY: UCX wrote `len` bytes at `buf`.
        let out = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }.to_vec();
        // SAFETY: `buf` came from ucp_rkey_pack and is released once.
        unsafe { self.ctx.ucp.ucp_rkey_buffer_release(buf) };
        Ok(out)
    }
}

impl Drop for MemRegion {
    fn drop(&mut self) {
        // SAFETY: the handle came from ucp_mem_map on this live context and
        // is unmapped once; requests using it are finished or cancelled by
        // their owners before (the receiver drops its transfers first).
        unsafe { self.ctx.ucp.ucp_mem_unmap(self.ctx.handle, self.memh) };
    }
}

/// A UCP worker: the progress engine of one thread, with the queue its
/// callbacks fill.
pub struct Worker {
    ctx: Rc<Context>,
    handle: ucp_worker_h,
    efd: RawFd,
    /// Boxed so its address, handed to UCX as callback argument, is stable.
    events: Box<Events>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("queued_events", &self.events.queue.borrow().len())
            .finish()
    }
}

impl Worker {
    /// A single-threaded worker of `ctx`.
    ///
    /// # Errors
    ///
    /// [`NetError::Ucx`].
    pub fn new(ctx: &Rc<Context>) -> Result<Rc<Worker>, NetError> {
        // SAFETY: all-zero is a valid ucp_worker_params_t.
        let mut params: ucp_worker_params_t = unsafe { MaybeUninit::zeroed().assume_init() };
        params.field_mask = u64::from(ucp_worker_params_field::UCP_WORKER_PARAM_FIELD_THREAD_MODE);
        params.thread_mode = ucs_thread_mode_t_UCS_THREAD_MODE_SINGLE;
        let mut handle = ptr::null_mut();
        // SAFETY: live context, valid params.
        check("ucp_worker_create", unsafe {
            ctx.ucp.ucp_worker_create(ctx.handle, &params, &mut handle)
        })?;
        let mut efd = -1;
        // SAFETY: live worker; efd receives the worker's event fd, owned by
        // UCX (not closed here).
        let status = unsafe { ctx.ucp.ucp_worker_get_efd(handle, &mut efd) };
        let worker = Worker {
            ctx: Rc::clone(ctx),
            handle,
            efd,
            events: Box::new(Events {
                queue: RefCell::new(VecDeque::new()),
                max_eager_copy: Cell::new(usize::MAX),
            }),
        };
        check("ucp_worker_get_efd", status)?;
        Ok(Rc::new(worker))
    }

    fn ucp(&self) -> &'static Ucp {
        self.ctx.ucp
    }

    fn events_arg(&self) -> *mut c_void {
        (&*self.events as *const Events).cast_mut().cast()
    }

    /// Runs UCX's progress once (callbacks push events); how many
    /// operations progressed.
    pub fn progress(&self) -> u32 {
        // SAFETY: live worker, called from its own thread (the worker is
        // neither Send nor Sync); no callback calls progress.
        unsafe { self.ucp().ucp_worker_progress(self.handle) }
    }

    /// Eager payloads longer than `bytes` are not copied out of UCX's
    /// buffer: they arrive as [`AmData::Discarded`] with their length. A
    /// receiver sets its stream's payload capacity, which no tensor it
    /// takes exceeds, so a peer's oversized eager message costs no copy
    /// (UCX itself still assembles it whole before the callback).
    pub fn set_max_eager_copy(&self, bytes: usize) {
        self.events.max_eager_copy.set(bytes);
    }

    /// The events queued by callbacks so far.
    pub fn take_events(&self) -> VecDeque<Event> {
        std::mem::take(&mut *self.events.queue.borrow_mut())
    }

    /// Progresses until something happens or `timeout` passes, sleeping
    /// in `poll` on the worker's event fd (never spinning): spins through
    /// progress a few times, then arms the fd and sleeps.
    ///
    /// # Errors
    ///
    /// [`NetError::Ucx`] when arming fails, [`NetError::Io`] when `poll`
    /// does.
    pub fn wait(&self, timeout: Duration) -> Result<(), NetError> {
        for _ in 0..16 {
            if self.progress() > 0 || !self.events.queue.borrow().is_empty() {
                return Ok(());
            }
        }
        // SAFETY: live worker on its thread.
        let status = unsafe { self.ucp().ucp_worker_arm(self.handle) };
        if status == ucs_status_t::UCS_ERR_BUSY {
            return Ok(()); // events arrived meanwhile: progress again
        }
        check("ucp_worker_arm", status)?;
        let mut pfd = libc::pollfd {
            fd: self.efd,
            events: libc::POLLIN,
            revents: 0,
        };
        // ppoll: a timeout below a millisecond still sleeps (poll's would
        // round to 0 and turn a paced caller's wait into a spin).
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: one valid pollfd and timespec for the call's duration;
        // a null signal mask leaves the caller's unchanged.
        let n = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(NetError::Io {
                    what: "poll on the UCX worker's event fd",
                    error: e,
                });
            }
        }
        Ok(())
    }

    /// Registers the active-message handler `id`: each message becomes an
    /// [`Event::Am`]; rendezvous data is kept for [`recv_data`](Self::recv_data).
    ///
    /// # Errors
    ///
    /// [`NetError::Ucx`].
    pub fn set_am_handler(&self, id: u32) -> Result<(), NetError> {
        // SAFETY: all-zero is a valid ucp_am_handler_param_t.
        let mut param: ucp_am_handler_param_t = unsafe { MaybeUninit::zeroed().assume_init() };
        param.field_mask = u64::from(
            ucp_am_handler_param_field::UCP_AM_HANDLER_PARAM_FIELD_ID
                | ucp_am_handler_param_field::UCP_AM_HANDLER_PARAM_FIELD_FLAGS
                | ucp_am_handler_param_field::UCP_AM_HANDLER_PARAM_FIELD_CB
                | ucp_am_handler_param_field::UCP_AM_HANDLER_PARAM_FIELD_ARG,
        );
        param.id = id;
        param.flags = ucp_am_cb_flags::UCP_AM_FLAG_WHOLE_MSG;
        param.cb = Some(am_cb);
        param.arg = self.events_arg();
        // SAFETY: live worker; `arg` points to the boxed queue, which lives
        // as long as the worker (destroyed first in Drop).
        check("ucp_worker_set_am_recv_handler", unsafe {
            self.ucp()
                .ucp_worker_set_am_recv_handler(self.handle, &param)
        })
    }

    /// Starts receiving a rendezvous payload straight into `dst`
    /// (`ucp_am_recv_data_nbx`). `Ok(None)`: done already; `Ok(Some(r))`:
    /// an [`Event::RecvDone`] with request `r` follows.
    ///
    /// # Safety
    ///
    /// `dst .. dst + len` must be writable, written by nobody else, and
    /// stay mapped until the receive completes (its event) or the worker
    /// is destroyed; `memh`, when given, must cover it.
    ///
    /// # Errors
    ///
    /// [`NetError::Ucx`] when the receive cannot start (the descriptor is
    /// consumed all the same).
    pub unsafe fn recv_data(
        &self,
        desc: DataDesc,
        dst: *mut u8,
        len: usize,
        memh: Option<&MemRegion>,
    ) -> Result<Option<usize>, NetError> {
        // SAFETY: all-zero is a valid ucp_request_param_t.
        let mut param: ucp_request_param_t = unsafe { MaybeUninit::zeroed().assume_init() };
        param.op_attr_mask =
            ucp_op_attr_t::UCP_OP_ATTR_FIELD_CALLBACK | ucp_op_attr_t::UCP_OP_ATTR_FIELD_USER_DATA;
        param.cb.recv_am = Some(recv_cb);
        param.user_data = self.events_arg();
        if let Some(region) = memh {
            param.op_attr_mask |= ucp_op_attr_t::UCP_OP_ATTR_FIELD_MEMH;
            param.memh = region.memh;
        }
        // SAFETY: the descriptor came from this worker's AM callback and is
        // consumed here once; the caller guarantees the destination.
        let r = unsafe {
            self.ucp()
                .ucp_am_recv_data_nbx(self.handle, desc.0, dst.cast(), len, &param)
        };
        request_result("ucp_am_recv_data_nbx", r)
    }

    /// Drops a rendezvous payload without receiving it.
    pub fn release_data(&self, desc: DataDesc) {
        // SAFETY: the descriptor came from this worker's AM callback, which
        // returned UCS_INPROGRESS, and is consumed here once.
        unsafe { self.ucp().ucp_am_data_release(self.handle, desc.0) };
    }

    /// Frees a request handle: one that completed (its event arrived), or
    /// one still running, which UCX then releases when it ends (its event
    /// must then be ignored).
    pub fn free_request(&self, request: usize) {
        // SAFETY: `request` is a handle a `_nbx` call of this worker
        // returned, freed once by its owner (ucp_request_free accepts a
        // request still in progress and releases it on completion).
        unsafe { self.ucp().ucp_request_free(request as *mut c_void) };
    }

    /// Asks UCX to cancel an outstanding request; its completion event
    /// still follows (with `UCS_ERR_CANCELED`).
    pub fn cancel_request(&self, request: usize) {
        // SAFETY: `request` is an outstanding handle of this worker.
        unsafe {
            self.ucp()
                .ucp_request_cancel(self.handle, request as *mut c_void)
        };
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: endpoints and listeners hold an Rc of the worker, so
        // none is left when it drops; destroying the
        // worker completes its outstanding requests, whose callbacks push
        // onto the queue, still alive here.
        unsafe { self.ucp().ucp_worker_destroy(self.handle) };
    }
}

fn request_result(what: &'static str, r: ucs_status_ptr_t) -> Result<Option<usize>, NetError> {
    if r.is_null() {
        Ok(None)
    } else if ptr_is_err(r) {
        Err(NetError::Ucx {
            what,
            status: ptr_status(r),
        })
    } else {
        Ok(Some(r as usize))
    }
}

/// Pushes onto the queue behind `arg` (a `*const Events`).
///
/// # Safety
///
/// `arg` must be the `events_arg()` of a live worker, called on its thread
/// from inside progress (no borrow of the queue is live then).
unsafe fn push(arg: *mut c_void, event: Event) {
    // SAFETY: per the contract, `arg` points to the worker's boxed queue.
    let events = unsafe { &*(arg as *const Events) };
    events.queue.borrow_mut().push_back(event);
}

unsafe extern "C" fn am_cb(
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

unsafe extern "C" fn recv_cb(
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

unsafe extern "C" fn send_cb(request: *mut c_void, status: ucs_status_t, user_data: *mut c_void) {
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

unsafe extern "C" fn err_cb(arg: *mut c_void, _ep: ucp_ep_h, status: ucs_status_t) {
    // SAFETY: arg is the worker's events_arg; called from progress.
    unsafe { push(arg, Event::EpError(status)) };
}

unsafe extern "C" fn conn_cb(req: ucp_conn_request_h, arg: *mut c_void) {
    // SAFETY: arg is the worker's events_arg; called from progress.
    unsafe { push(arg, Event::ConnRequest(ConnRequest(req))) };
}

fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in.
            unsafe { ptr::write(ptr::addr_of_mut!(storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { ptr::write(ptr::addr_of_mut!(storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(sin6.sin6_port))))
        }
        _ => None,
    }
}

/// A listening socket address (`ucp_listener_create`); each client's
/// request arrives as [`Event::ConnRequest`].
pub struct Listener {
    worker: Rc<Worker>,
    handle: ucp_listener_h,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.local_addr())
            .finish()
    }
}

impl Listener {
    /// Listens on `addr` (port 0: a free port, see [`local_addr`](Self::local_addr)).
    ///
    /// # Errors
    ///
    /// [`NetError::Ucx`] (the address is in use, not local, ...).
    pub fn bind(worker: &Rc<Worker>, addr: &SocketAddr) -> Result<Listener, NetError> {
        let (storage, len) = sockaddr(addr);
        // SAFETY: all-zero is a valid ucp_listener_params_t.
        let mut params: ucp_listener_params_t = unsafe { MaybeUninit::zeroed().assume_init() };
        params.field_mask = u64::from(
            ucp_listener_params_field::UCP_LISTENER_PARAM_FIELD_SOCK_ADDR
                | ucp_listener_params_field::UCP_LISTENER_PARAM_FIELD_CONN_HANDLER,
        );
        params.sockaddr = ucs_sock_addr_t {
            addr: ptr::addr_of!(storage).cast(),
            addrlen: len,
        };
        params.conn_handler = ucp_listener_conn_handler_t {
            cb: Some(conn_cb),
            arg: worker.events_arg(),
        };
        let mut handle = ptr::null_mut();
        // SAFETY: live worker; the address is read during the call; the
        // callback argument outlives the listener (it borrows the worker).
        check("ucp_listener_create", unsafe {
            worker
                .ucp()
                .ucp_listener_create(worker.handle, &params, &mut handle)
        })?;
        Ok(Listener {
            worker: Rc::clone(worker),
            handle,
        })
    }

    /// The address bound, with the port the OS chose.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        // SAFETY: all-zero is a valid ucp_listener_attr_t.
        let mut attr: ucp_listener_attr_t = unsafe { MaybeUninit::zeroed().assume_init() };
        attr.field_mask = u64::from(ucp_listener_attr_field::UCP_LISTENER_ATTR_FIELD_SOCKADDR);
        // SAFETY: live listener; attr is written by the call.
        let status = unsafe { self.worker.ucp().ucp_listener_query(self.handle, &mut attr) };
        if status != ucs_status_t::UCS_OK {
            return None;
        }
        // SAFETY: bindgen's sockaddr_storage and libc's are the same C type.
        let storage: &libc::sockaddr_storage =
            unsafe { &*(ptr::addr_of!(attr.sockaddr) as *const libc::sockaddr_storage) };
        from_sockaddr(storage)
    }

    /// Refuses a connection request (a second sender).
    pub fn reject(&self, req: ConnRequest) {
        // SAFETY: the request came from this listener's callback and is
        // consumed once.
        unsafe { self.worker.ucp().ucp_listener_reject(self.handle, req.0) };
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // SAFETY: live listener, destroyed once, before its worker.
        unsafe { self.worker.ucp().ucp_listener_destroy(self.handle) };
    }
}

/// A peer's remote key, unpacked on an endpoint; destroyed on drop.
pub struct RemoteKey {
    ucp: &'static Ucp,
    handle: ucp_rkey_h,
}

impl fmt::Debug for RemoteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteKey").finish_non_exhaustive()
    }
}

impl Drop for RemoteKey {
    fn drop(&mut self) {
        // SAFETY: the key came from ucp_ep_rkey_unpack and is destroyed
        // once; callers of `get` keep it alive until their reads complete.
        unsafe { self.ucp.ucp_rkey_destroy(self.handle) };
    }
}

/// A connection to the peer, with error handling on (a failed peer or
/// link becomes an [`Event::EpError`] and fails the requests in flight).
pub struct Endpoint {
    worker: Rc<Worker>,
    handle: ucp_ep_h,
    closed: bool,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("closed", &self.closed)
            .finish()
    }
}

impl Endpoint {
    fn create(worker: &Rc<Worker>, mut params: ucp_ep_params_t) -> Result<Endpoint, NetError> {
        params.field_mask |= u64::from(
            ucp_ep_params_field::UCP_EP_PARAM_FIELD_ERR_HANDLER
                | ucp_ep_params_field::UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
        );
        params.err_mode = ucp_err_handling_mode_t::UCP_ERR_HANDLING_MODE_PEER;
        params.err_handler = ucp_err_handler_t {
            cb: Some(err_cb),
            arg: worker.events_arg(),
        };
        let mut handle = ptr::null_mut();
        // SAFETY: live worker, valid params (addresses read during the call).
        check("ucp_ep_create", unsafe {
            worker
                .ucp()
                .ucp_ep_create(worker.handle, &params, &mut handle)
        })?;
        Ok(Endpoint {
            worker: Rc::clone(worker),
            handle,
            closed: false,
        })
    }

    /// Connects to a listener at `addr`.
    ///
    /// # Errors
    ///
    /// [`NetError::Ucx`]; an address nobody listens on fails later, as an
    /// [`Event::EpError`].
    pub fn connect(worker: &Rc<Worker>, addr: &SocketAddr) -> Result<Endpoint, NetError> {
        let (storage, len) = sockaddr(addr);
        // SAFETY: all-zero is a valid ucp_ep_params_t.
        let mut params: ucp_ep_params_t = unsafe { MaybeUninit::zeroed().assume_init() };
        params.field_mask = u64::from(
            ucp_ep_params_field::UCP_EP_PARAM_FIELD_FLAGS
                | ucp_ep_params_field::UCP_EP_PARAM_FIELD_SOCK_ADDR,
        );
        params.flags = ucp_ep_params_flags_field::UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
        params.sockaddr = ucs_sock_addr_t {
            addr: ptr::addr_of!(storage).cast(),
            addrlen: len,
        };
        Self::create(worker, params)
    }

    /// Accepts a connection request from the worker's listener.
    ///
    /// # Errors
    ///
    /// [`NetError::Ucx`].
    pub fn accept(worker: &Rc<Worker>, req: ConnRequest) -> Result<Endpoint, NetError> {
        // SAFETY: all-zero is a valid ucp_ep_params_t.
        let mut params: ucp_ep_params_t = unsafe { MaybeUninit::zeroed().assume_init() };
        params.field_mask = u64::from(ucp_ep_params_field::UCP_EP_PARAM_FIELD_CONN_REQUEST);
        params.conn_request = req.0;
        Self::create(worker, params)
    }

    /// Sends an active message to handler `id` with `header` and `data`
    /// (`rndv`: force the rendezvous protocol, so the receiver fetches the
    /// data into its own memory; otherwise force the eager one, the data
    /// travelling with the header). `Ok(None)`: sent already; `Ok(Some(r))`:
    /// an [`Event::SendDone`] with request `r` follows.
    ///
    /// # Safety
    ///
    /// `header` and `data` must stay valid and unchanged until the send
    /// completes (its event) or the worker is destroyed; `memh`, when
    /// given, must cover `data`.
    ///
    /// # Errors
    ///
    /// [`NetError::Ucx`].
    pub unsafe fn am_send(
        &self,
        id: u32,
        header: &[u8],
        data: &[u8],
        rndv: bool,
        memh: Option<&MemRegion>,
    ) -> Result<Option<usize>, NetError> {
        // SAFETY: all-zero is a valid ucp_request_param_t.
        let mut param: ucp_request_param_t = unsafe { MaybeUninit::zeroed().assume_init() };
        param.op_attr_mask = ucp_op_attr_t::UCP_OP_ATTR_FIELD_CALLBACK
            | ucp_op_attr_t::UCP_OP_ATTR_FIELD_USER_DATA
            | ucp_op_attr_t::UCP_OP_ATTR_FIELD_FLAGS;
        param.flags = if rndv {
            ucp_send_am_flags::UCP_AM_SEND_FLAG_RNDV
        } else {
            ucp_send_am_flags::UCP_AM_SEND_FLAG_EAGER
        };
        param.cb.send = Some(send_cb);
        param.user_data = self.worker.events_arg();
        if let Some(region) = memh {
            param.op_attr_mask |= ucp_op_attr_t::UCP_OP_ATTR_FIELD_MEMH;
            param.memh = region.memh;
        }
        // SAFETY: live endpoint; the caller keeps header and data valid.
        let r = unsafe {
            self.worker.ucp().ucp_am_send_nbx(
                self.handle,
                id,
                header.as_ptr().cast(),
                header.len(),
                data.as_ptr().cast(),
                data.len(),
                &param,
            )
        };
        request_result("ucp_am_send_nbx", r)
    }

    /// Unpacks a peer's packed remote key for [`get`](Self::get).
    ///
    /// # Safety
    ///
    /// `packed` must be exactly the bytes a peer's
    /// [`MemRegion::pack_rkey`] produced: UCX 1.13 does not validate them
    /// (64 bytes of `0xff` crash it with SIGSEGV), which is one reason the
    /// receiver does not take remote keys from the network at all
    /// (docs/network.md).
    ///
    /// # Errors
    ///
    /// [`NetError::Ucx`] when UCX cannot use the key on this endpoint's
    /// transports.
    pub unsafe fn unpack_rkey(&self, packed: &[u8]) -> Result<RemoteKey, NetError> {
        let mut rkey = ptr::null_mut();
        // SAFETY: live endpoint; `packed` is read during the call only and
        // is a packed key by the caller's contract.
        check("ucp_ep_rkey_unpack", unsafe {
            self.worker
                .ucp()
                .ucp_ep_rkey_unpack(self.handle, packed.as_ptr().cast(), &mut rkey)
        })?;
        Ok(RemoteKey {
            ucp: self.worker.ucp(),
            handle: rkey,
        })
    }

    /// Reads `len` bytes of the peer's memory at `remote` (covered by
    /// `rkey`) into `dst` (`ucp_get_nbx`). `Ok(None)`: done already;
    /// `Ok(Some(r))`: an [`Event::SendDone`] with request `r` follows.
    ///
    /// # Safety
    ///
    /// As [`Worker::recv_data`] for `dst`; `rkey` must stay alive until
    /// the read completes.
    ///
    /// # Errors
    ///
    /// [`NetError::Ucx`].
    pub unsafe fn get(
        &self,
        dst: *mut u8,
        len: usize,
        remote: u64,
        rkey: &RemoteKey,
        memh: Option<&MemRegion>,
    ) -> Result<Option<usize>, NetError> {
        // SAFETY: all-zero is a valid ucp_request_param_t.
        let mut param: ucp_request_param_t = unsafe { MaybeUninit::zeroed().assume_init() };
        param.op_attr_mask =
            ucp_op_attr_t::UCP_OP_ATTR_FIELD_CALLBACK | ucp_op_attr_t::UCP_OP_ATTR_FIELD_USER_DATA;
        param.cb.send = Some(send_cb);
        param.user_data = self.worker.events_arg();
        if let Some(region) = memh {
            param.op_attr_mask |= ucp_op_attr_t::UCP_OP_ATTR_FIELD_MEMH;
            param.memh = region.memh;
        }
        // SAFETY: live endpoint and key; the caller guarantees `dst`.
        let r = unsafe {
            self.worker
                .ucp()
                .ucp_get_nbx(self.handle, dst.cast(), len, remote, rkey.handle, &param)
        };
        request_result("ucp_get_nbx", r)
    }

    /// Closes the endpoint, flushing (or with `force`, failing) what is in
    /// flight, progressing the worker for at most `timeout`.
    pub fn close(mut self, force: bool, timeout: Duration) {
        self.close_inner(force, timeout);
    }

    fn close_inner(&mut self, force: bool, timeout: Duration) {
        if self.closed {
            return;
        }
        self.closed = true;
        // SAFETY: all-zero is a valid ucp_request_param_t.
        let mut param: ucp_request_param_t = unsafe { MaybeUninit::zeroed().assume_init() };
        if force {
            param.op_attr_mask = ucp_op_attr_t::UCP_OP_ATTR_FIELD_FLAGS;
            param.flags = ucp_ep_close_flags_t::UCP_EP_CLOSE_FLAG_FORCE;
        }
        // SAFETY: live endpoint, closed once; it is not used afterwards.
        let r = unsafe { self.worker.ucp().ucp_ep_close_nbx(self.handle, &param) };
        if r.is_null() || ptr_is_err(r) {
            return;
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            // SAFETY: `r` is the close request, not yet freed.
            let status = unsafe { self.worker.ucp().ucp_request_check_status(r) };
            if status != ucs_status_t::UCS_INPROGRESS || std::time::Instant::now() >= deadline {
                // Freed either way: UCX releases an unfinished one when it
                // completes.
                self.worker.free_request(r as usize);
                return;
            }
            let _ = self.worker.wait(Duration::from_millis(10));
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.close_inner(true, Duration::from_millis(200));
    }
}
