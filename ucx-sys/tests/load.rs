//! Loading the library at run time.

#[test]
fn a_missing_library_is_an_error_naming_the_debian_package() {
    let Err(e) = ucx_sys::load(&["libucp-does-not-exist.so.0"]) else {
        panic!("a library that does not exist loaded");
    };
    let text = e.to_string();
    assert!(text.contains("libucx0"), "{text}");
    assert!(text.contains("libucp-does-not-exist.so.0"), "{text}");
}

#[test]
fn the_system_library_loads_and_names_its_statuses() {
    let ucp = match ucx_sys::ucp() {
        Ok(ucp) => ucp,
        // scripts/deps-apt.sh installs libucx0 before the tests run.
        Err(e) => panic!("{e}"),
    };
    // SAFETY: ucp_get_version_string returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(ucp.ucp_get_version_string()) };
    assert!(version.to_str().unwrap().starts_with("1."), "{version:?}");
    let s = ucx_sys::status_string(ucx_sys::ucs_status_t::UCS_ERR_NO_MEMORY);
    assert!(s.to_lowercase().contains("memory"), "{s}");
}

#[test]
fn status_pointers_decode_like_the_c_macros() {
    use ucx_sys::{ptr_is_err, ptr_status, ucs_status_t};
    let null = std::ptr::null_mut();
    assert!(!ptr_is_err(null));
    assert_eq!(ptr_status(null), ucs_status_t::UCS_OK);
    let err = ucs_status_t::UCS_ERR_CANCELED.0 as isize as *mut std::ffi::c_void;
    assert!(ptr_is_err(err));
    assert_eq!(ptr_status(err), ucs_status_t::UCS_ERR_CANCELED);
    let last = ucs_status_t::UCS_ERR_LAST.0 as isize as *mut std::ffi::c_void;
    assert!(ptr_is_err(last));
    let below = (ucs_status_t::UCS_ERR_LAST.0 as isize - 1) as *mut std::ffi::c_void;
    assert!(!ptr_is_err(below));
    let req = 0x1000 as *mut std::ffi::c_void;
    assert!(!ptr_is_err(req));
    assert_eq!(ptr_status(req), ucs_status_t::UCS_INPROGRESS);
    assert!(ucs_status_t::UCS_ERR_IO_ERROR.is_err());
    assert!(!ucs_status_t::UCS_INPROGRESS.is_err());
}
