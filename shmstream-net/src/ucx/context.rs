//! The UCP context and memory registered with it.

use crate::error::NetError;
use crate::ucx::status::check;
use std::fmt;
use std::mem::MaybeUninit;
use std::ptr;
use std::rc::Rc;
use ucx_sys::*;

/// A UCP context: the library, its configuration (the `UCX_*` environment,
/// so `UCX_TLS` and `UCX_NET_DEVICES` choose the transports) and the
/// features asked for.
pub struct Context {
    pub(crate) ucp: &'static Ucp,
    pub(crate) handle: ucp_context_h,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
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
    pub(crate) memh: ucp_mem_h,
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
    /// ([`Endpoint::unpack_rkey`](super::Endpoint::unpack_rkey)) that reads it with [`Endpoint::get`](super::Endpoint::get).
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
