//! The broker binary (`mqtt-broker`, built by cargo before the integration tests) as a child
//! process, for the process-level tests. The broker is started on `--listen 127.0.0.1:0` and
//! the address it prints is read back (and those of the TLS and WebSocket listeners that the
//! extra arguments ask for, printed as `listening on ADDR (tls)`); every wait is bounded by [`STEP`], and the process is
//! killed when its handle drops, so a failure never hangs the run. The including test declares
//! `support/tempdir.rs` as `mod tempdir` too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) use crate::tempdir::{STEP, TempDir};

use std::time::{Duration, Instant};

/// The broker binary (cargo builds it before the integration tests).
pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mqtt-broker"))
}

/// A running broker. Dropping it kills the process.
pub(crate) struct Broker {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// The other listeners' addresses, by transport (`tls`, `ws`, `wss`).
    pub(crate) listeners: Vec<(String, SocketAddr)>,
    /// The "restored … sessions and … retained messages …" line.
    pub(crate) restored: String,
    log: PathBuf,
}

impl Broker {
    /// Starts the broker on a free loopback port (`--listen 127.0.0.1:0`: it prints the one it
    /// got) with `dir/data` as its data directory, and waits until it listens.
    pub(crate) fn start(dir: &TempDir) -> Self {
        Self::start_with(dir, &[])
    }

    /// [`Broker::start`] with more command-line arguments (`--acl FILE`, limits…).
    pub(crate) fn start_with(dir: &TempDir, extra: &[&str]) -> Self {
        Self::start_wrapped(dir, &[], extra)
    }

    /// [`Broker::start_with`] through `wrapper` (a command line the broker's own is appended
    /// to, which must `exec` it: the process is the broker's); empty for none.
    pub(crate) fn start_wrapped(dir: &TempDir, wrapper: &[&str], extra: &[&str]) -> Self {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let log = dir.path().join(format!(
            "broker-{}.log",
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        let mut command = match wrapper {
            [] => Command::new(binary()),
            [program, args @ ..] => {
                let mut c = Command::new(program);
                c.args(args).arg(binary());
                c
            }
        };
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(extra)
            .env("RUST_LOG", "debug")
            // Plain log lines, searched by `wait_for_log`.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn the broker");
        let stdout = child.stdout.take().unwrap();
        let rx = crate::tempdir::line_reader(stdout);
        // The listeners besides plain TCP that the arguments ask for, each printed on a line of
        // its own after the plain one.
        let others = extra
            .iter()
            .filter(|a| ["--tls-listen", "--ws-listen", "--wss-listen"].contains(a))
            .count();
        let mut restored = String::new();
        let mut addr = None;
        let mut listeners = Vec::new();
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(addr) = addr
                && listeners.len() == others
            {
                return Self {
                    child,
                    addr,
                    listeners,
                    restored,
                    log,
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("restored ") => restored = line,
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("listening on ") {
                        match rest.trim().split_once(' ') {
                            None => addr = Some(rest.trim().parse().expect("a socket address")),
                            Some((a, kind)) => listeners.push((
                                kind.trim_matches(['(', ')']).to_owned(),
                                a.parse().expect("a socket address"),
                            )),
                        }
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the broker did not start listening:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
        }
    }

    /// The address of its listener for `transport` (`tls`, `ws`, `wss`).
    pub(crate) fn listener(&self, transport: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(t, _)| t == transport)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {transport} listener: {:?}", self.listeners))
    }

    /// The process id (to send it signals).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// What it logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many log lines contain every one of `needles`.
    pub(crate) fn log_count(&self, needles: &[&str]) -> usize {
        self.log()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .count()
    }

    /// Waits (at most [`STEP`]) until `count` log lines contain every one of `needles`.
    pub(crate) fn wait_for_log(&self, needles: &[&str], count: usize) {
        let deadline = Instant::now() + STEP;
        while self.log_count(needles) < count {
            assert!(
                Instant::now() < deadline,
                "the broker did not log {count} line(s) with {needles:?} within {STEP:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: no chance to save anything.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and the exit status once it has stopped (within [`STEP`]).
    #[allow(dead_code)] // not every test that includes this file stops the broker gracefully
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        // `kill` through `sh`: a builtin there, wherever the binary is (or is not).
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {}", self.child.id()))
            .status()
            .expect("run sh -c kill");
        assert!(status.success());
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the broker did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
