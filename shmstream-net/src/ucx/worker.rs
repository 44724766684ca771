//! One side's worker: progress, events, active-message handler and the
//! receives and sends it runs.

use crate::error::NetError;
use crate::ucx::context::{Context, MemRegion};
use crate::ucx::event::{am_cb, recv_cb, DataDesc, Event, Events};
use crate::ucx::status::{check, request_result};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::c_void;
use std::fmt;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::ptr;
use std::rc::Rc;
use std::time::Duration;
use ucx_sys::*;

/// A UCP worker: the progress engine of one thread, with the queue its
/// callbacks fill.
pub struct Worker {
    ctx: Rc<Context>,
    pub(crate) handle: ucp_worker_h,
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

    pub(crate) fn ucp(&self) -> &'static Ucp {
        self.ctx.ucp
    }

    pub(crate) fn events_arg(&self) -> *mut c_void {
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
    /// buffer: they arrive as [`AmData::Discarded`](super::AmData::Discarded) with their length. A
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
