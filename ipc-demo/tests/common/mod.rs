//! Helpers of the end-to-end tests: the real binaries, a unique segment
//! prefix per test with a guard that removes whatever the test left, and
//! child processes with deadlines.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const DEMO: &str = env!("CARGO_BIN_EXE_ipc-demo");
pub const PRODUCER: &str = env!("CARGO_BIN_EXE_ipc-producer");
pub const CONSUMER: &str = env!("CARGO_BIN_EXE_ipc-consumer");

/// No single command of a test may take longer.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A test's own segment prefix. On drop it kills the test's children and
/// removes every segment with its prefix, so a failing test cleans too.
pub struct Scope {
    pub prefix: String,
    children: Vec<Child>,
}

impl Scope {
    pub fn new(tag: &str) -> Scope {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("ipct-{tag}-{}-{n}-", std::process::id());
        assert!(prefix.len() <= 32, "prefix {prefix} too long");
        Scope {
            prefix,
            children: Vec::new(),
        }
    }

    /// Segments in /dev/shm with this test's prefix.
    pub fn leftovers(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
            .expect("/dev/shm")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        names.sort();
        names
    }

    pub fn assert_no_leftovers(&self) {
        assert_eq!(
            self.leftovers(),
            Vec::<String>::new(),
            "segments left behind"
        );
    }

    /// Starts `bin` with `args` (stdout and stderr piped); the scope kills
    /// it if the test ends first.
    pub fn spawn(&mut self, bin: &str, args: &[&str]) -> usize {
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        self.children.push(child);
        self.children.len() - 1
    }

    pub fn child(&mut self, i: usize) -> &mut Child {
        &mut self.children[i]
    }

    /// Waits for child `i` (killing it at the deadline) and collects its output.
    pub fn wait(&mut self, i: usize) -> Output {
        let child = &mut self.children[i];
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let status = wait_deadline(child);
        Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for name in self.leftovers() {
            let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
        }
    }
}

fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

fn wait_deadline(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("a child ran past {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `bin` to the end (with a deadline), optionally feeding `stdin`.
pub fn run(bin: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    if let Some(text) = stdin {
        let mut input = child.stdin.take().unwrap();
        let text = text.to_string();
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut input, text.as_bytes());
        });
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_deadline(&mut child);
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JSON object on the last non-empty line of `stdout`.
pub fn json(stdout: &[u8]) -> serde_json::Value {
    let text = text(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {text:?}"))
}

/// Reads `reader`'s lines until one starts with `key `; returns the rest.
pub fn line_after(reader: &mut BufReader<ChildStdout>, key: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "stdout ended before a line starting with {key:?}");
        if let Some(rest) = line
            .trim_end()
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix(' '))
        {
            return rest.to_string();
        }
    }
}

/// Checks a consumer report: every item, nothing lost, one final chunk
/// (none for a continue-after-done policy), nothing copied.
pub fn assert_complete(report: &serde_json::Value, items: u64, finals: u64) {
    assert_eq!(report["items"], items, "{report}");
    assert_eq!(report["expected_items"], items, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["final_chunks"], finals, "{report}");
    assert_eq!(report["bytes_copied"], 0, "{report}");
}

/// Asserts a failed command said exactly one line on stderr, holding each
/// of `words`, and nothing on stdout.
pub fn assert_one_line_error(out: &Output, words: &[&str]) {
    assert!(!out.status.success(), "it succeeded: {}", text(&out.stdout));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {err:?}");
    for w in words {
        assert!(lines[0].contains(w), "{:?} does not say {w:?}", lines[0]);
    }
}
