//! A temporary directory per test, the bound on every wait of the process-level tests, and
//! whether the tests that drive real MQTT programs run (shared by mqtt-broker's and
//! mqtt-session's process-level tests, included with `#[path]`).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

/// How long any one step may take.
pub(crate) const STEP: Duration = Duration::from_secs(10);

/// A fresh, empty directory for one test (under the target directory; removed when dropped).
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("broker-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether the tests that drive real MQTT programs run: `MQTT_INTEROP=1`, which `.ci/run` sets
/// once it has installed them. Without it, one line says that `what` is skipped (straight to
/// the standard error, past the harness's capture, once per test binary) and the tests pass at
/// once; with it, each of `programs` must run, and python3 with paho-mqtt 2.x when `paho`, or
/// the test fails saying what to install.
pub(crate) fn interop_enabled(what: &str, programs: &[&str], paho: bool) -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        if std::env::var_os("MQTT_INTEROP").is_none_or(|v| v != "1") {
            let _ = writeln!(
                std::io::stderr(),
                "{what} skipped: MQTT_INTEROP is not 1, so the real MQTT programs were not \
                 installed by .ci/run (run .ci/run, or install mosquitto, mosquitto-clients and \
                 paho-mqtt 2.x, and export MQTT_INTEROP=1)"
            );
            return false;
        }
        for program in programs {
            // (`--help` exits non-zero for mosquitto's programs: only whether they run
            // matters.)
            if let Err(e) = Command::new(program).arg("--help").output() {
                panic!(
                    "MQTT_INTEROP=1 but {program} cannot be run ({e}): install mosquitto, \
                     mosquitto-clients and coreutils, as .ci/run does"
                );
            }
        }
        if paho {
            let check = Command::new("python3")
                .args([
                    "-c",
                    "import sys, paho.mqtt; sys.exit(paho.mqtt.__version__.split('.')[0] != '2')",
                ])
                .output();
            match check {
                Ok(out) if out.status.success() => {}
                Ok(out) => panic!(
                    "MQTT_INTEROP=1 but python3 has no paho-mqtt 2.x ({}): install it as \
                     .ci/run does (python3 -m pip install 'paho-mqtt>=2,<3')",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => panic!("MQTT_INTEROP=1 but python3 cannot be run: {e}"),
            }
        }
        true
    })
}

/// The lines of a child's output, read by a thread of their own, as they come.
pub(crate) fn line_reader(output: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
