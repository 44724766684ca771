//! UCX status codes and request handles, to results naming the call.

use crate::error::NetError;
use ucx_sys::*;

pub(crate) fn check(what: &'static str, status: ucs_status_t) -> Result<(), NetError> {
    if status == ucs_status_t::UCS_OK {
        Ok(())
    } else {
        Err(NetError::Ucx { what, status })
    }
}

pub(crate) fn request_result(
    what: &'static str,
    r: ucs_status_ptr_t,
) -> Result<Option<usize>, NetError> {
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
