//! The worker hub from Python (issue 12), the consumer's side:
//! `_StreamSet` (the consumer worker's Rust `StreamSet` behind a mutex)
//! and `StreamKey`.
//!
//! A stream of the set is read through an ordinary `_Buffer` whose
//! [`Shared`] lives in the set (`Home::Set`, the set's state in
//! [`SetCore`], both in `shared.rs`): its chunks, leases and views are
//! those of any stream. The producer's way in is `_Hub` (`hub.rs`).

use crate::buffer::python_object;
use crate::buffer::PyStreamBuffer;
use crate::chunk::{capture, Chunk};
use crate::errors::{raise, setup_err, stream_err};
use crate::locks::lock;
use crate::policy::{error_slot, policy_arg, raise_policy_error, AnyPolicy};
use crate::shared::{SetCore, SetState, Shared, Waker};
use crate::timeout::seconds;
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use shmstream::{StreamConfig, StreamError, StreamId, StreamSet};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The longest single sleep of `StreamSet.wait_any`. The sleep ends at
/// once when SIGINT is handled in the waiting thread (the core set returns
/// on signals; CPython's handlers have no `SA_RESTART`), and the binding
/// then calls `check_signals`. A signal handled after that check but before
/// the futex call starts, or one that never interrupts this thread
/// (`_thread.interrupt_main`, which sends no signal; a SIGINT that another
/// thread, not blocking it, took), is only seen when this slice ends: so
/// Ctrl-C is immediate but for that window, where it is at most this late,
/// and an idle worker wakes once a second at most.
pub(crate) const BACKSTOP: Duration = Duration::from_secs(1);

/// Which stream of a `StreamSet`: its hub entry and that entry's
/// generation (a key never names a later stream of the same entry).
#[pyclass(module = "shmstream", name = "StreamKey", frozen, eq, hash)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PyStreamKey(pub(crate) shmstream::StreamKey);

#[pymethods]
impl PyStreamKey {
    /// The hub entry the stream occupies.
    #[getter]
    fn entry(&self) -> u32 {
        self.0.entry()
    }

    fn __repr__(&self) -> String {
        // "stream 3.1": entry 3, generation 1.
        format!(
            "StreamKey({})",
            self.0.to_string().trim_start_matches("stream ")
        )
    }
}

pub(crate) fn stream_id(request_id: String, edge_name: String, from_partition: String) -> StreamId {
    StreamId {
        request_id,
        edge_name,
        from_partition,
    }
}

fn id_tuple<'py>(py: Python<'py>, id: &StreamId) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            id.request_id.as_str(),
            id.edge_name.as_str(),
            id.from_partition.as_str(),
        ],
    )
}

pub(crate) fn closed(py: Python<'_>, name: &str) -> PyErr {
    raise(py, "StreamError", format!("stream set {name} is closed"))
}

fn no_key(key: &PyStreamKey) -> PyErr {
    PyKeyError::new_err(format!(
        "{} is not in the set (removed, or never adopted)",
        key.0
    ))
}

/// The consumer worker's stream set (wrapped by `shmstream.StreamSet`).
#[pyclass(module = "shmstream._shmstream", name = "_StreamSet", frozen)]
#[derive(Debug)]
pub(crate) struct PyStreamSet {
    pub(crate) core: Arc<SetCore>,
}

impl PyStreamSet {
    /// The buffer object of `key` (one `Shared` per stream).
    fn buffer_of(
        &self,
        st: &mut SetState,
        key: shmstream::StreamKey,
        id: StreamId,
    ) -> PyStreamBuffer {
        let id_of = id.clone();
        let shared = match st.handles.get(&key).and_then(Weak::upgrade) {
            Some(s) => s,
            None => {
                let s = Shared::in_set(self.core.clone(), key, id);
                st.handles.insert(key, Arc::downgrade(&s));
                s
            }
        };
        let adopted = lock(&self.core.policy_objects)
            .get(&id_of)
            .map(|(name, o)| {
                (
                    name.clone(),
                    o.as_ref().map(|o| Python::attach(|py| o.clone_ref(py))),
                )
            });
        let (policy, policy_object) = match adopted {
            Some(a) => a,
            None => (
                st.policies
                    .get(&key)
                    .or(self.core.default_policy.as_ref())
                    .cloned()
                    .unwrap_or_default(),
                None,
            ),
        };
        PyStreamBuffer {
            shared,
            producer: None,
            policy,
            edges: Mutex::new(VecDeque::new()),
            policy_error: Some(self.core.policy_error.clone()),
            policy_object,
        }
    }
}

#[pymethods]
impl PyStreamSet {
    /// Creates the hub of `worker` (removed again when the set is closed
    /// or collected).
    #[staticmethod]
    #[pyo3(signature = (worker, prefix=None, default_policy=None, entries=None))]
    fn create(
        py: Python<'_>,
        worker: &str,
        prefix: Option<String>,
        default_policy: Option<Bound<'_, PyAny>>,
        entries: Option<u32>,
    ) -> PyResult<Self> {
        let prefix = prefix.unwrap_or_else(|| shmstream::DEFAULT_PREFIX.to_string());
        let policy_error = error_slot();
        let policy_objects = Arc::new(Mutex::new(HashMap::new()));
        let mut factory = None;
        let policy = match &default_policy {
            None => None,
            Some(p) if p.is_instance_of::<pyo3::types::PyString>() => {
                Some(policy_arg(py, p, &policy_error)?)
            }
            // A factory (the Python side wraps a Python policy's class
            // into one): called with each announced stream's identity, it
            // returns a name, a Python policy (each stream its own: a policy
            // has state), or None (the stream waits for `add`).
            Some(p) => {
                let name = match p.getattr("__qualname__") {
                    Ok(n) => format!("factory:{n}"),
                    Err(_) => "factory".to_string(),
                };
                factory = Some((p.clone().unbind(), name));
                None
            }
        };
        let hub_id = stream_id(format!("hub-{worker}"), String::new(), String::new());
        let made = py.detach(|| match entries {
            Some(n) => StreamSet::create_with_entries(worker, &prefix, n),
            None => StreamSet::create(worker, &prefix),
        });
        // Returns on signals: `wait_any` sleeps for the whole timeout and
        // still sees Ctrl-C at once (see `BACKSTOP`).
        let mut set = made
            .map_err(|e| setup_err(py, &hub_id, &e))?
            .with_return_on_signal(true);
        let waker = set.waker();
        let mut default_policy = None;
        if let Some((AnyPolicy::Named(p), name)) = policy {
            default_policy = Some(name);
            set = set.with_default_policy(p);
        }
        if let Some((factory, name)) = factory {
            default_policy = Some(name);
            let (error, objects) = (policy_error.clone(), policy_objects.clone());
            set = set.with_adopter(Box::new(move |id| {
                Python::attach(|py| {
                    let ident = (&id.request_id, &id.edge_name, &id.from_partition);
                    let made = factory.bind(py).call1(ident).and_then(|obj| {
                        if obj.is_none() {
                            return Ok(None);
                        }
                        let (policy, name) = policy_arg(py, &obj, &error)?;
                        Ok(Some((policy, name, python_object(&obj))))
                    });
                    match made {
                        Ok(Some((policy, name, obj))) => {
                            lock(&objects).insert(id.clone(), (name, obj));
                            Some(Box::new(policy) as Box<dyn shmstream::policy::ChunkPolicy>)
                        }
                        Ok(None) => None,
                        Err(e) => {
                            lock(&error).get_or_insert(e);
                            None
                        }
                    }
                })
            }));
        }
        Ok(PyStreamSet {
            core: Arc::new(SetCore {
                name: set.name().to_string(),
                state: Mutex::new(SetState {
                    set: Some(set),
                    handles: HashMap::new(),
                    parked: Vec::new(),
                    policies: HashMap::new(),
                }),
                pending: Mutex::new(Vec::new()),
                prefix,
                default_policy,
                waker: Waker(Box::new(waker)),
                policy_error,
                policy_objects,
            }),
        })
    }

    /// Waits (GIL released) until a stream has news; `[]` when `timeout`
    /// seconds passed (None: for ever). One sleep for the whole timeout
    /// (at most `BACKSTOP`): it ends early when a signal handler ran in
    /// this thread (Ctrl-C: `check_signals` raises KeyboardInterrupt) or
    /// another thread needs the set, and goes on with the time left.
    #[pyo3(signature = (timeout=None))]
    fn wait_any(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Vec<PyStreamKey>> {
        let timeout = seconds(py, timeout)?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(BACKSTOP),
                None => BACKSTOP,
            };
            let keys = py.detach(|| {
                // A plain lock: `state()` would wake this very wait.
                let mut st = lock(&self.core.state);
                self.core.drain(&mut st);
                st.set.as_mut().map(|s| s.wait_any(Some(slice)))
            });
            raise_policy_error(Some(&self.core.policy_error))?;
            let Some(keys) = keys else {
                return Err(closed(py, &self.core.name));
            };
            if !keys.is_empty() {
                return Ok(keys.into_iter().map(PyStreamKey).collect());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Vec::new());
            }
            py.check_signals()?;
        }
    }

    /// Adopts the announced stream of that identity with `policy`.
    #[pyo3(signature = (request_id, edge_name, from_partition, policy, prefix=None))]
    fn add(
        &self,
        py: Python<'_>,
        request_id: String,
        edge_name: String,
        from_partition: String,
        policy: &Bound<'_, PyAny>,
        prefix: Option<String>,
    ) -> PyResult<PyStreamKey> {
        let (parsed, name) = policy_arg(py, policy, &self.core.policy_error)?;
        let id = stream_id(request_id, edge_name, from_partition);
        let object = python_object(policy);
        let cfg = StreamConfig::new(id.clone())
            .with_prefix(prefix.as_deref().unwrap_or(&self.core.prefix));
        // Python (the errors) only once the set's lock is let go: a
        // collection there may run code that needs the set.
        let added = {
            let mut st = self.core.locked(py);
            match st.set.as_mut() {
                None => None,
                Some(set) => {
                    let r = py.detach(|| set.add(&cfg, parsed));
                    if let Ok(key) = r {
                        st.policies.insert(key, name.clone());
                        let mut objects = lock(&self.core.policy_objects);
                        match object {
                            Some(obj) => objects.insert(id.clone(), (name.clone(), Some(obj))),
                            None => objects.remove(&id),
                        };
                    }
                    Some(r)
                }
            }
        };
        match added {
            None => Err(closed(py, &self.core.name)),
            Some(r) => {
                raise_policy_error(Some(&self.core.policy_error))?;
                r.map(PyStreamKey).map_err(|e| setup_err(py, &id, &e))
            }
        }
    }

    /// Takes the stream out of the set; its buffer (chunks still held stay
    /// valid). KeyError if it is not in the set.
    fn remove(&self, py: Python<'_>, key: &Bound<'_, PyStreamKey>) -> PyResult<PyStreamBuffer> {
        let key = *key.get();
        let mut st = self.core.locked(py);
        let id = st
            .member(key.0)
            .map(|b| b.id().clone())
            .ok_or_else(|| no_key(&key))?;
        // Make sure there is a handle, so the buffer is parked for it.
        let out = self.buffer_of(&mut st, key.0, id);
        st.take_out(key.0);
        Ok(out)
    }

    /// Takes the stream out of the set and drops it unless Python holds it.
    fn discard(&self, py: Python<'_>, key: &Bound<'_, PyStreamKey>) -> bool {
        let key = *key.get();
        self.core.locked(py).take_out(key.0).is_some()
    }

    /// The buffer of the stream `key` (KeyError if it is not in the set).
    fn buffer(&self, py: Python<'_>, key: &Bound<'_, PyStreamKey>) -> PyResult<PyStreamBuffer> {
        let key = *key.get();
        let mut st = self.core.locked(py);
        let id = st
            .member(key.0)
            .map(|b| b.id().clone())
            .ok_or_else(|| no_key(&key))?;
        Ok(self.buffer_of(&mut st, key.0, id))
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyStreamKey>) -> bool {
        let key = *key.get();
        self.core.locked(py).member(key.0).is_some()
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        let st = self.core.locked(py);
        st.set.as_ref().map_or(0, |s| s.len())
    }

    /// The keys of every stream in the set.
    fn keys(&self, py: Python<'_>) -> Vec<PyStreamKey> {
        let st = self.core.locked(py);
        st.keys().into_iter().map(PyStreamKey).collect()
    }

    /// The key of the stream of that identity, or None.
    fn find(
        &self,
        py: Python<'_>,
        request_id: String,
        edge_name: String,
        from_partition: String,
    ) -> Option<PyStreamKey> {
        let id = stream_id(request_id, edge_name, from_partition);
        let st = self.core.locked(py);
        st.set.as_ref()?.find(&id).map(PyStreamKey)
    }

    /// `(request_id, edge_name, from_partition)` of each stream announced
    /// and not adopted.
    fn announced<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let ids = {
            let mut st = self.core.locked(py);
            st.set.as_mut().map(|s| s.announced()).unwrap_or_default()
        };
        ids.iter().map(|id| id_tuple(py, id)).collect()
    }

    /// `((request_id, edge_name, from_partition), exception)` for each
    /// announced stream that could not be adopted since the last call.
    fn take_adopt_errors<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Vec<(Bound<'py, PyTuple>, Py<PyAny>)>> {
        let errors = {
            let mut st = self.core.locked(py);
            st.set
                .as_mut()
                .map(|s| s.take_adopt_errors())
                .unwrap_or_default()
        };
        errors
            .iter()
            .map(|(id, e)| {
                Ok((
                    id_tuple(py, id)?,
                    setup_err(py, id, e).into_value(py).into_any(),
                ))
            })
            .collect()
    }

    /// The hub's segment name.
    #[getter]
    fn name(&self) -> &str {
        &self.core.name
    }

    #[getter]
    fn prefix(&self) -> &str {
        &self.core.prefix
    }

    /// The policy of adopted streams (None: `add` only).
    #[getter]
    fn default_policy(&self) -> Option<&str> {
        self.core.default_policy.as_deref()
    }

    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.core.locked(py).set.is_none()
    }

    /// Removes every stream and the hub (streams Python holds stay
    /// readable until dropped).
    fn close(&self, py: Python<'_>) {
        let mut st = self.core.locked(py);
        for key in st.keys() {
            st.take_out(key);
        }
        let set = st.set.take();
        drop(st);
        // An event loop's wait armed on the hub's bell holds no lock a
        // close would ring for: ring it (it then finds the set closed).
        (self.core.waker.0)();
        py.detach(|| drop(set));
    }
}

/// The next chunk of `buffer` if one is ready now; None when none is (or
/// the final chunk was popped); the stream's error (`ProducerGone`, ...)
/// once the chunks before it are out. What `StreamSet.ready_chunks` pops
/// with, without an exception per empty look.
#[pyfunction]
fn _ready_chunk(py: Python<'_>, buffer: &Bound<'_, PyStreamBuffer>) -> PyResult<Option<Chunk>> {
    let shared = &buffer.get().shared;
    // A quiet stream (only the same empty chunk left, one taken: the
    // core's `StreamBuffer::is_quiet`) has nothing new: the iteration ends.
    let popped = shared.with(py, |b| {
        if b.is_quiet() {
            return Ok(None);
        }
        match b.next_lease_timeout(Some(std::time::Duration::ZERO)) {
            Ok(Some(lease)) => Ok(Some(capture(b, lease))),
            Ok(None) | Err(StreamError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    });
    raise_policy_error(buffer.get().policy_error.as_ref())?;
    match popped {
        Ok(p) => Ok(p.map(|p| Chunk::new(shared, p))),
        Err(e) => Err(stream_err(py, &shared.id, &e)),
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_ready_chunk, m)?)?;
    m.add_class::<PyStreamSet>()?;
    m.add_class::<PyStreamKey>()?;
    Ok(())
}
