//! A child process for the interoperability tests (mosquitto_pub/sub, paho, the client
//! example): its standard output is read line by line by a thread, its standard error goes to
//! a file, every wait is bounded by [`STEP`](crate::broker_process::STEP), and it is killed
//! when dropped, so a failure never hangs the run. Included by `interop.rs` and
//! `client_interop.rs` (each declares `broker_process` too).

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::tempdir::STEP;

/// A running child process. See the module documentation.
pub(crate) struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    transcript: Vec<String>,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `command` (named `name` in messages), its standard error in a file under `dir`;
    /// returns its standard input too (dropping it closes it).
    pub(crate) fn spawn(
        dir: &Path,
        name: &str,
        mut command: Command,
    ) -> (Self, Option<ChildStdin>) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let stderr = dir.join(format!(
            "{name}-{}.stderr",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let lines = crate::tempdir::line_reader(stdout);
        let proc = Self {
            name: name.to_owned(),
            child,
            lines,
            transcript: Vec::new(),
            stderr,
        };
        (proc, stdin)
    }

    /// Its name in messages.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// What it wrote to its standard error so far.
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// What it printed, for failure messages.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{}'s output:\n{}\n{}'s standard error:\n{}",
            self.name,
            self.transcript.join("\n"),
            self.name,
            self.stderr()
        )
    }

    /// The next line of output (panics after [`STEP`] without one, or at its end).
    pub(crate) fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(STEP) {
            Ok(line) => {
                self.transcript.push(line.clone());
                line
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "no output from {} within {STEP:?}\n{}",
                    self.name,
                    self.describe()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait();
                panic!(
                    "{} ended ({status}) while more output was expected\n{}",
                    self.name,
                    self.describe()
                )
            }
        }
    }

    /// The next `n` lines.
    pub(crate) fn take(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.next_line()).collect()
    }

    /// Waits (at most [`STEP`]) for it to exit.
    pub(crate) fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {STEP:?}\n{}",
                    self.name,
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for it to exit and expects success; returns the lines it printed that nobody
    /// read.
    pub(crate) fn expect_success(&mut self) -> Vec<String> {
        let status = self.wait();
        let mut extra = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.transcript.push(line.clone());
            extra.push(line);
        }
        assert!(
            status.success(),
            "{} failed ({status})\n{}",
            self.name,
            self.describe()
        );
        extra
    }

    /// [`Proc::expect_success`], and no output left unread.
    pub(crate) fn expect_quiet_success(&mut self) {
        let extra = self.expect_success();
        assert!(
            extra.is_empty(),
            "{} printed more than expected: {extra:?}\n{}",
            self.name,
            self.describe()
        );
    }

    /// SIGKILL: its connection drops without a DISCONNECT.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (through `sh`, whose `kill` is a builtin).
    pub(crate) fn terminate(&mut self) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {}", self.child.id()))
            .status()
            .expect("run sh -c kill");
        assert!(status.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
