//! The listener side: bind, accept or reject connection requests; socket
//! addresses to and from their C form.

use crate::error::NetError;
use crate::ucx::event::{conn_cb, ConnRequest};
use crate::ucx::status::check;
use crate::ucx::worker::Worker;
use std::fmt;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::ptr;
use std::rc::Rc;
use ucx_sys::*;

pub(crate) fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
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

pub(crate) fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
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
/// request arrives as [`Event::ConnRequest`](super::Event::ConnRequest).
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
