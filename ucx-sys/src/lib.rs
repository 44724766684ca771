//! # ucx-sys
//!
//! The UCP calls of [UCX](https://openucx.org) that `shmstream-net` uses,
//! as raw FFI.
//!
//! - [`bindings`] is generated once by `generate.sh` (bindgen against
//!   Debian's `libucx-dev` 1.13.1 headers) and committed: building needs
//!   neither libclang nor the UCX headers.
//! - The library is **loaded at run time** ([`ucp`]), from `libucp.so.0`
//!   (Debian package `libucx0`), so a workspace build, and every program
//!   that never touches the network, works on a machine without UCX. The
//!   `ucs_*` calls resolve through `libucp`'s own dependency on `libucs`.
//! - `ucp_init` is a static inline in `ucp.h`; call
//!   [`ucp_init_version`](bindings::Ucp::ucp_init_version) with
//!   [`UCP_API_MAJOR`] and
//!   [`UCP_API_MINOR`] instead.
//! - `ucs_status_t` is a newtype over `i8` (the C enum is packed), with its
//!   values as associated constants ([`ucs_status_t::UCS_OK`], ...);
//!   [`status_string`] gives UCX's sentence for one.
//! - The pointer-or-status macros of `ucs/type/status.h` are the functions
//!   [`ptr_is_err`] and [`ptr_status`].

#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

/// The generated bindings (see `generate.sh`); do not edit.
#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    missing_docs,
    missing_debug_implementations,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]
pub mod bindings;

pub use bindings::*;
use std::ffi::CStr;
use std::fmt;
use std::sync::OnceLock;

/// The file names tried, in order: the runtime library's soname (what
/// `libucx0` installs), then the development symlink.
pub const LIBRARY_NAMES: [&str; 2] = ["libucp.so.0", "libucp.so"];

/// The loaded library was missing or incomplete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    /// What the loader said, for each file tried or the first symbol
    /// missing.
    pub detail: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UCX is not available: {}; install the Debian package libucx0 \
             (apt-get install libucx0, UCX 1.13 or later)",
            self.detail
        )
    }
}

impl std::error::Error for LoadError {}

static UCP: OnceLock<Result<Ucp, LoadError>> = OnceLock::new();

/// The UCP library, loaded on the first call (and only once per process).
///
/// # Errors
///
/// [`LoadError`] naming the package to install when `libucp.so.0` cannot
/// be loaded, or lacks one of the calls the bindings declare (an older
/// UCX than 1.13). Every later call returns the same error.
pub fn ucp() -> Result<&'static Ucp, LoadError> {
    UCP.get_or_init(|| load(&LIBRARY_NAMES))
        .as_ref()
        .map_err(Clone::clone)
}

/// Loads the first of `names` that loads and checks that it has every
/// call of the bindings.
///
/// # Errors
///
/// As [`ucp`].
pub fn load(names: &[&str]) -> Result<Ucp, LoadError> {
    let mut tried = Vec::new();
    for name in names {
        // SAFETY: loading libucp runs its ELF constructors (UCX's global
        // initialisation: configuration parsing, memory hooks), which have
        // no preconditions on the caller; the same happens when a program
        // links UCX directly.
        match unsafe { Ucp::new(name) } {
            Ok(ucp) => {
                check_symbols(&ucp).map_err(|missing| LoadError {
                    detail: format!("{name} has no symbol {missing} (UCX older than 1.13?)"),
                })?;
                return Ok(ucp);
            }
            Err(e) => tried.push(format!("{name}: {e}")),
        }
    }
    Err(LoadError {
        detail: format!("cannot load {}", tried.join("; ")),
    })
}

/// The first declared call the library lacks, so that the generated
/// wrappers (which `expect` each symbol) never panic after [`load`].
fn check_symbols(ucp: &Ucp) -> Result<(), &'static str> {
    macro_rules! check {
        ($($f:ident),* $(,)?) => {
            $( if ucp.$f.is_err() { return Err(stringify!($f)); } )*
        };
    }
    check!(
        ucs_status_string,
        ucp_config_read,
        ucp_config_release,
        ucp_config_modify,
        ucp_get_version_string,
        ucp_init_version,
        ucp_cleanup,
        ucp_worker_create,
        ucp_worker_destroy,
        ucp_worker_progress,
        ucp_worker_get_efd,
        ucp_worker_wait,
        ucp_worker_arm,
        ucp_worker_signal,
        ucp_listener_create,
        ucp_listener_destroy,
        ucp_listener_query,
        ucp_listener_reject,
        ucp_ep_create,
        ucp_ep_close_nbx,
        ucp_mem_map,
        ucp_mem_unmap,
        ucp_rkey_pack,
        ucp_rkey_buffer_release,
        ucp_ep_rkey_unpack,
        ucp_rkey_destroy,
        ucp_get_nbx,
        ucp_am_send_nbx,
        ucp_am_recv_data_nbx,
        ucp_am_data_release,
        ucp_worker_set_am_recv_handler,
        ucp_request_check_status,
        ucp_request_cancel,
        ucp_request_free,
        ucp_worker_flush_nbx,
    );
    Ok(())
}

/// UCX's sentence for `status` ("Input/output error", ...), or the number
/// when the library cannot be loaded.
pub fn status_string(status: ucs_status_t) -> String {
    match ucp() {
        Ok(ucp) => {
            // SAFETY: ucs_status_string accepts any value and returns a
            // pointer to a static NUL-terminated string ("Unknown error"
            // for values it does not know), never null.
            let s = unsafe { CStr::from_ptr(ucp.ucs_status_string(status)) };
            s.to_string_lossy().into_owned()
        }
        Err(_) => format!("UCX status {}", status.0),
    }
}

/// `UCS_PTR_IS_ERR`: whether a `ucs_status_ptr_t` carries an error status
/// (the values from `UCS_ERR_LAST` to -1, cast to a pointer).
pub fn ptr_is_err(ptr: ucs_status_ptr_t) -> bool {
    ptr as usize >= ucs_status_t::UCS_ERR_LAST.0 as isize as usize
}

/// `UCS_PTR_STATUS`: `UCS_OK` for null, the error for an error pointer,
/// `UCS_INPROGRESS` for a request handle.
pub fn ptr_status(ptr: ucs_status_ptr_t) -> ucs_status_t {
    let raw = ptr as isize;
    if ptr.is_null() {
        ucs_status_t::UCS_OK
    } else if ptr_is_err(ptr) {
        ucs_status_t(raw as i8)
    } else {
        ucs_status_t::UCS_INPROGRESS
    }
}

impl ucs_status_t {
    /// Whether this is an error (negative) status.
    pub fn is_err(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for ucs_status_t {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", status_string(*self), self.0)
    }
}

/// `ucp_dt_make_contig(1)`: a contiguous buffer of bytes, the default
/// datatype of the `_nbx` calls.
pub const UCP_DATATYPE_CONTIG_BYTES: ucp_datatype_t = 1 << 3; // (1 << UCP_DATATYPE_SHIFT) | UCP_DATATYPE_CONTIG (0)
