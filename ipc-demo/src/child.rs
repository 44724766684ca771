//! A process the launcher starts: its output captured by threads, waited
//! for with a deadline, and killed if the launcher lets go of it early.
//!
//! Each child asks the kernel for SIGTERM when the launcher dies
//! (`PR_SET_PDEATHSIG`, set between fork and exec), so a launcher killed
//! with SIGKILL leaves no child running. Right after setting it the child
//! checks that its parent is still the launcher: a launcher that died
//! before the request would otherwise never send the signal.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked exits: the
//! launcher starts its children from its main thread, which lives until
//! the process ends.

use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What [`Proc::line_starting`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// The rest of the line that starts with the key.
    Found(String),
    /// Stdout ended without such a line.
    Ended,
    /// Not yet: ask again.
    Pending,
}

/// A started process of ours.
#[derive(Debug)]
pub struct Proc {
    /// What it is, for messages ("producer", "consumer", "sender").
    pub role: &'static str,
    child: Child,
    /// Stdout, line by line, read by a thread from the start.
    stdout_lines: Receiver<String>,
    /// Lines received by [`take_lines_starting`](Self::take_lines_starting)
    /// that it did not take, in order, before those still in the channel.
    kept: Vec<String>,
    stderr_text: Option<JoinHandle<String>>,
    status: Option<ExitStatus>,
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = r.read_to_string(&mut text);
        text
    })
}

impl Proc {
    /// Starts `exe` with `args`, stdin closed, stdout and stderr captured.
    ///
    /// # Errors
    ///
    /// The program cannot be started.
    pub fn spawn(role: &'static str, exe: &std::path::Path, args: &[String]) -> io::Result<Proc> {
        let launcher = std::process::id() as libc::pid_t;
        let mut command = Command::new(exe);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: between fork and exec the closure only makes the
        // async-signal-safe calls prctl and getppid, and builds errors from
        // raw OS codes (no allocation).
        unsafe {
            command.pre_exec(move || {
                let term = libc::SIGTERM as libc::c_ulong;
                if libc::prctl(libc::PR_SET_PDEATHSIG, term, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The launcher may have died before the request: then the
                // signal will never come, so do not start at all.
                if libc::getppid() != launcher {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot start the {role} ({}): {e}", exe.display()),
            )
        })?;
        let stderr_text = child.stderr.take().map(drain);
        let (send, stdout_lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if send.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Proc {
            role,
            child,
            stdout_lines,
            kept: Vec::new(),
            stderr_text,
            status: None,
        })
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `wait` for a stdout line starting with `key `; gives the
    /// rest of that line. Lines before it are dropped.
    pub fn line_starting(&mut self, key: &str, wait: Duration) -> Line {
        // Kept lines first: those before a match are dropped, as below.
        if let Some(i) = self.kept.iter().position(|l| rest_of(l, key).is_some()) {
            let line = self.kept.drain(..=i).next_back().unwrap_or_default();
            return Line::Found(rest_of(&line, key).unwrap_or_default());
        }
        self.kept.clear();
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout_lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = rest_of(&line, key) {
                        return Line::Found(rest);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Line::Pending,
                Err(RecvTimeoutError::Disconnected) => return Line::Ended,
            }
        }
    }

    /// Takes, without waiting, the rest of every stdout line that arrived
    /// so far and starts with `key ` (a child's progress lines); the other
    /// lines stay, in order, for [`stdout`](Self::stdout).
    pub fn take_lines_starting(&mut self, key: &str) -> Vec<String> {
        let mut taken = Vec::new();
        while let Ok(line) = self.stdout_lines.try_recv() {
            match rest_of(&line, key) {
                Some(rest) => taken.push(rest),
                None => self.kept.push(line),
            }
        }
        taken
    }

    /// Sends `signal` to it, unless it was already reaped (then its pid
    /// may belong to another process).
    ///
    /// # Errors
    ///
    /// The OS refuses.
    pub fn signal(&mut self, signal: libc::c_int) -> io::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        // SAFETY: kill has no memory effects; the pid is our unreaped child.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until `deadline` at most; its status if it exited.
    ///
    /// # Errors
    ///
    /// The OS cannot wait.
    pub fn wait_until(&mut self, deadline: Instant) -> io::Result<Option<ExitStatus>> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether it has exited (and how), without waiting.
    ///
    /// # Errors
    ///
    /// The OS cannot tell.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Kills it (SIGKILL) unless it already exited, and reaps it.
    ///
    /// # Errors
    ///
    /// The OS cannot kill or wait.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.child.kill()?;
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }

    /// Everything it printed on stdout not taken by
    /// [`line_starting`](Self::line_starting) (after it exited).
    pub fn stdout(&mut self) -> String {
        // Ends when the reader saw the end of stdout.
        let mut lines = std::mem::take(&mut self.kept);
        lines.extend(self.stdout_lines.iter());
        lines.join("\n")
    }

    /// Everything it printed on stderr (after it exited).
    pub fn stderr(&mut self) -> String {
        self.stderr_text
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

/// The rest of `line` after `key` and a space.
fn rest_of(line: &str, key: &str) -> Option<String> {
    let rest = line.trim_end().strip_prefix(key)?.strip_prefix(' ')?;
    Some(rest.to_string())
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
