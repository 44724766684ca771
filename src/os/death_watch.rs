//! The stream set's death watch: a thread that waits on the pidfds of the
//! producer processes attached to the worker's hub and tells the set which
//! attachments ended (a producer killed without a word).

use crate::protocol::hub::HubMem;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// Watches the producer processes of a worker's streams without waking the
/// worker: a thread that sleeps in `poll` on a pidfd per producer
/// attachment (and an eventfd for its orders) and, when a pidfd becomes
/// readable (its process ended), sets `fired` and wakes the worker's bell.
/// The worker then runs its usual lock test (`StreamSet::watch`), which
/// decides; a pidfd only says when to look. So an idle worker sleeps once
/// for its whole timeout, and a killed producer is noticed at once.
///
/// Not under Miri (no pidfd, no poll): the set slices its sleep there.
#[cfg(not(miri))]
#[derive(Debug)]
pub(crate) struct DeathWatch {
    shared: std::sync::Arc<WatchShared>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The hub file's device and inode, to recognise it among a process's
    /// open files.
    hub_file: (u64, u64),
}

#[cfg(not(miri))]
#[derive(Debug)]
pub(crate) struct WatchShared {
    hub: std::sync::Arc<HubMem>,
    /// Written (1) for every order; the thread polls it.
    control: OwnedFd,
    orders: std::sync::Mutex<Vec<Order>>,
    /// A watched process ended since the worker last looked.
    fired: std::sync::atomic::AtomicBool,
    /// The attachments whose processes ended, for the worker to take.
    ended: std::sync::Mutex<Vec<crate::protocol::hub_layout::ProducerId>>,
}

#[cfg(not(miri))]
#[derive(Debug)]
pub(crate) enum Order {
    Watch(crate::protocol::hub_layout::ProducerId, OwnedFd),
    Unwatch(crate::protocol::hub_layout::ProducerId),
    Stop,
}

#[cfg(not(miri))]
impl DeathWatch {
    /// Starts the thread for `hub` (the worker's own hub).
    pub(crate) fn start(hub: std::sync::Arc<HubMem>) -> io::Result<DeathWatch> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(format!("/dev/shm{}", hub.name()))?;
        // SAFETY: eventfd takes two integers and returns a new descriptor
        // (or -1), which we own from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let control = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let shared = std::sync::Arc::new(WatchShared {
            hub,
            control,
            orders: std::sync::Mutex::new(Vec::new()),
            fired: std::sync::atomic::AtomicBool::new(false),
            ended: std::sync::Mutex::new(Vec::new()),
        });
        // The thread is born with every signal blocked (it inherits the
        // mask of the thread that creates it): a process-directed signal
        // (SIGINT) then never lands in it, but in a thread that can take
        // it, such as a worker asleep in `wait_any` with
        // `with_return_on_signal` (CPython's main thread).
        // SAFETY: sigfillset fills a local set; pthread_sigmask swaps this
        // thread's mask with locals only, and the old mask is put back
        // right after the spawn (signals that came meanwhile stay pending
        // and are delivered then).
        let old_mask = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            old
        };
        let spawned = std::thread::Builder::new()
            .name("shmstream-watch".into())
            .spawn({
                let shared = shared.clone();
                move || shared.run()
            });
        // SAFETY: restores the mask saved above, from a local.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()) };
        let thread = spawned?;
        Ok(DeathWatch {
            shared,
            thread: Some(thread),
            hub_file: (meta.dev(), meta.ino()),
        })
    }

    /// Watches the process `pid` of the attachment `id`, if it can be
    /// watched this way: its pidfd opens (Linux 5.3 and later, a pid of
    /// this pid namespace), the process behind it has the hub open (the
    /// pid is this namespace's view of the producer, not the number a
    /// producer in another namespace recorded), and `alive` then says the
    /// attachment still holds its lock: the process the pidfd names lived
    /// as long as that lock, so the pid was not reused in between. Returns
    /// false when it cannot (the caller then tests the lock in slices).
    pub(crate) fn watch(
        &self,
        id: crate::protocol::hub_layout::ProducerId,
        pid: u32,
        alive: impl FnOnce() -> bool,
    ) -> bool {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor (or -1), which we own from here on.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
        if fd < 0 {
            return false;
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let pidfd =
            unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as std::os::fd::RawFd) };
        if !has_open(pid, self.hub_file) || !alive() {
            return false;
        }
        self.order(Order::Watch(id, pidfd));
        true
    }

    /// Stops watching the attachment `id` (its streams all left the set).
    pub(crate) fn unwatch(&self, id: crate::protocol::hub_layout::ProducerId) {
        self.order(Order::Unwatch(id));
    }

    /// The attachments whose processes ended since the last call (no
    /// longer watched: the caller tests their locks until they are free;
    /// the kernel may drop the locks a moment after the pidfd says so).
    pub(crate) fn take_ended(&self, ended: &mut Vec<crate::protocol::hub_layout::ProducerId>) {
        if self
            .shared
            .fired
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            ended.append(&mut self.shared.ended.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Whether a watched process ended since the last `take_fired`.
    pub(crate) fn fired(&self) -> bool {
        self.shared.fired.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn order(&self, order: Order) {
        self.shared
            .orders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(order);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a local buffer of 8 bytes to our
        // eventfd. It cannot block (EFD_NONBLOCK) and fails only when the
        // counter is near overflow, when the thread has a wake-up pending
        // anyway.
        unsafe { libc::write(self.shared.control.as_raw_fd(), one.as_ptr().cast(), 8) };
    }
}

#[cfg(not(miri))]
impl Drop for DeathWatch {
    fn drop(&mut self) {
        self.order(Order::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(not(miri))]
impl WatchShared {
    /// The thread: sleeps in `poll` until an order comes or a watched
    /// process ends.
    fn run(&self) {
        let mut watched: Vec<(crate::protocol::hub_layout::ProducerId, OwnedFd)> = Vec::new();
        let mut fds: Vec<libc::pollfd> = Vec::new();
        loop {
            fds.clear();
            fds.extend(
                std::iter::once(self.control.as_raw_fd())
                    .chain(watched.iter().map(|(_, fd)| fd.as_raw_fd()))
                    .map(|fd| libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    }),
            );
            // SAFETY: `fds` holds `fds.len()` initialised pollfd values
            // that outlive the call; the descriptors are ours and open.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                // EINTR (or ENOMEM): look again.
                continue;
            }
            // Ended processes first: their indices are those of `watched`
            // as it was polled.
            let mut ended = false;
            for i in (1..fds.len()).rev() {
                if fds[i].revents != 0 {
                    let (id, _) = watched.swap_remove(i - 1);
                    self.ended
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(id);
                    ended = true;
                }
            }
            if ended {
                // SeqCst, then the bell's Release bump: a worker that reads
                // the bumped word sees `fired`, one that read it before
                // fails its futex wait or is woken by the FUTEX_WAKE.
                self.fired.store(true, std::sync::atomic::Ordering::SeqCst);
                self.hub.bell().wake();
            }
            if fds[0].revents != 0 {
                let mut count = [0u8; 8];
                // SAFETY: reads 8 bytes into a local buffer of 8 bytes from
                // our non-blocking eventfd.
                unsafe { libc::read(self.control.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
                let orders =
                    std::mem::take(&mut *self.orders.lock().unwrap_or_else(|e| e.into_inner()));
                for order in orders {
                    match order {
                        Order::Watch(id, fd) => watched.push((id, fd)),
                        Order::Unwatch(id) => watched.retain(|(w, _)| *w != id),
                        Order::Stop => return,
                    }
                }
            }
        }
    }
}

/// Whether process `pid` has the file `(dev, ino)` open (looks through
/// `/proc/<pid>/fd`; false when it cannot look).
#[cfg(not(miri))]
pub(crate) fn has_open(pid: libc::pid_t, (dev, ino): (u64, u64)) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.flatten().any(|entry| {
        // `metadata` follows the link to the open file itself.
        std::fs::metadata(entry.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino)
    })
}
