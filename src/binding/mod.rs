//! Beside the layers, **binding**: the shared layer of every language
//! binding (Python now, a C API later): the checked conversions a binding
//! makes of its caller's numbers (timeouts, dtype names, shapes, byte
//! counts) before it calls the public API. It uses only the public types
//! (`protocol`'s `DType`/`TensorMeta`, `error`) and nothing uses it but
//! the bindings and the `py_args` fuzz target.
//!
//! - [`timeout`]: seconds as a float to a wait (`None`: for ever);
//! - [`tensor_meta`] and [`check_nbytes`]: a dtype name and a shape to
//!   [`TensorMeta`](crate::TensorMeta), and an array's byte count against it;
//! - [`wait_slice`]: the longest single wait of a call that waits up to a
//!   timeout in slices (to look for Ctrl-C between them).
//!
//! ```
//! use shmstream::binding::{check_nbytes, tensor_meta, timeout, wait_slice, MAX_TIMEOUT_SECS};
//! use std::time::Duration;
//! assert_eq!(timeout(Some(0.25)).unwrap(), Some(Duration::from_millis(250)));
//! assert_eq!(timeout(Some(f64::INFINITY)).unwrap(), None); // for ever
//! assert_eq!(timeout(Some(1e30)).unwrap(), None); // past MAX_TIMEOUT_SECS: for ever
//! assert!(timeout(Some(f64::NAN)).is_err() && timeout(Some(-1.0)).is_err());
//! let meta = tensor_meta("f32", &[2, 3]).unwrap();
//! assert_eq!(check_nbytes(&meta, 24).unwrap(), 24);
//! assert!(check_nbytes(&meta, 25).is_err() && tensor_meta("f31", &[1]).is_err());
//! let slice = Duration::from_millis(50);
//! assert_eq!(wait_slice(Some(Duration::from_millis(120)), slice), Duration::from_millis(40));
//! assert_eq!(wait_slice(None, slice), slice);
//! # let _ = MAX_TIMEOUT_SECS;
//! ```

mod args;

pub use args::{check_nbytes, tensor_meta, timeout, wait_slice, BadTimeout, MAX_TIMEOUT_SECS};
