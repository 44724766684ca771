//! An endpoint (a client's connection or an accepted one), its sends and
//! RDMA reads, and the remote keys they use.

use crate::error::NetError;
use crate::ucx::context::MemRegion;
use crate::ucx::event::{err_cb, send_cb, ConnRequest};
use crate::ucx::listener::sockaddr;
use crate::ucx::status::{check, request_result};
use crate::ucx::worker::Worker;
use std::fmt;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::ptr;
use std::rc::Rc;
use std::time::Duration;
use ucx_sys::*;

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
/// link becomes an [`Event::EpError`](super::Event::EpError) and fails the requests in flight).
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
    /// [`Event::EpError`](super::Event::EpError).
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
    /// an [`Event::SendDone`](super::Event::SendDone) with request `r` follows.
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
    /// `Ok(Some(r))`: an [`Event::SendDone`](super::Event::SendDone) with request `r` follows.
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
