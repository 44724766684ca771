//! A process the launcher starts: its output captured by threads, waited
//! for with a deadline, and killed if the launcher lets go of it early.

use std::io::{self, BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A started process of ours.
#[derive(Debug)]
pub struct Proc {
    /// What it is, for messages ("producer", "consumer", "sender").
    pub role: &'static str,
    child: Child,
    stdout: Option<ChildStdout>,
    stdout_text: Option<JoinHandle<String>>,
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
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start the {role} ({}): {e}", exe.display()),
                )
            })?;
        let stderr_text = child.stderr.take().map(drain);
        let stdout = child.stdout.take();
        Ok(Proc {
            role,
            child,
            stdout,
            stdout_text: None,
            stderr_text,
            status: None,
        })
    }

    /// Reads stdout lines until one starts with `key `; returns the rest
    /// of that line, or `None` when stdout ends first.
    pub fn read_line_starting(&mut self, key: &str) -> Option<String> {
        let stdout = self.stdout.take()?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let mut found = None;
        while reader.read_line(&mut line).ok()? > 0 {
            if let Some(rest) = line
                .trim_end()
                .strip_prefix(key)
                .and_then(|r| r.strip_prefix(' '))
            {
                found = Some(rest.to_string());
                break;
            }
            line.clear();
        }
        self.stdout_text = Some(drain(reader));
        found
    }

    /// Collects stdout in the background from now on.
    pub fn capture_stdout(&mut self) {
        if let Some(stdout) = self.stdout.take() {
            self.stdout_text = Some(drain(stdout));
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

    /// Waits up to `timeout` for it to exit; kills it after that.
    ///
    /// # Errors
    ///
    /// The OS cannot wait or kill.
    pub fn wait_or_kill(&mut self, timeout: Duration) -> io::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.child.kill()?;
                let status = self.child.wait()?;
                self.status = Some(status);
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything it printed on stdout (after it exited).
    pub fn stdout(&mut self) -> String {
        self.capture_stdout();
        self.stdout_text
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    /// Everything it printed on stderr (after it exited).
    pub fn stderr(&mut self) -> String {
        self.stderr_text
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
