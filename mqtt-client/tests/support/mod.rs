//! What the client's tests share: this repository's broker (in the test process, or in a child
//! process that a test can SIGKILL), mosquitto (a child process; with `MQTT_INTEROP=1`, set by
//! `.ci/run`, a missing mosquitto fails the test, without it the case is skipped with a line
//! saying so), a test PKI, and helpers.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mqtt_client::{Error, Event, Options, ProtocolVersion, Reconnect};

/// Within this, or the test fails.
pub const STEP: Duration = Duration::from_secs(20);

pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mqtt-client-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Options for `url` with quick reconnection (50 ms doubling to 500 ms).
pub fn options(url: &str, id: &str, version: ProtocolVersion) -> Options {
    let mut o = Options::new(url, id).unwrap().protocol(version);
    o.reconnect = quick_reconnect();
    o.session.keep_alive = 30;
    o
}

pub fn quick_reconnect() -> Reconnect {
    let mut r = Reconnect::default();
    r.initial_delay = Duration::from_millis(50);
    r.max_delay = Duration::from_millis(500);
    r
}

/// A persistent session: Clean Start 0 on reconnection (5.0: Session Expiry 300 s; 3.1.1:
/// Clean Session 0 always).
pub fn persistent(mut o: Options) -> Options {
    if o.session.protocol == ProtocolVersion::V5 {
        o.session.session_expiry_interval = 300;
    } else {
        o.session.clean_start = false;
    }
    o
}

/// The next message event (other events are skipped).
pub async fn next_message(events: &mut mqtt_client::Events) -> mqtt_client::Message {
    loop {
        match within("a message", events.recv()).await {
            Some(Event::Message(m)) => return m,
            Some(_) => {}
            None => panic!("the event stream ended"),
        }
    }
}

/// Waits for an event matching `f`, returning it.
pub async fn wait_for(
    events: &mut mqtt_client::Events,
    what: &str,
    f: impl Fn(&Event) -> bool,
) -> Event {
    within(what, async {
        loop {
            match events.recv().await {
                Some(e) if f(&e) => return e,
                Some(_) => {}
                None => panic!("{what}: the event stream ended"),
            }
        }
    })
    .await
}

pub fn is_connected(e: &Event) -> bool {
    matches!(e, Event::Connected { .. })
}

/// A publication's outcome is a delivery: a success code, or PUBCOMP 0x92 (the server had
/// completed the flow before; see `Delivery`).
pub fn assert_delivered(code: mqtt_client::ReasonCode) {
    assert!(
        !code.is_error() || code == mqtt_client::ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        "{code:?}"
    );
}

pub fn assert_closed<T: std::fmt::Debug>(r: Result<T, Error>) {
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
}

// ---- this repository's broker, in the test process ------------------------------------------

pub struct OurBroker {
    pub addr: SocketAddr,
    pub listeners: Vec<(&'static str, SocketAddr)>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl OurBroker {
    /// On a free port (or `settings.listen` as given), with `settings`.
    pub async fn start(settings: mqtt_broker::Settings) -> Self {
        let server = mqtt_broker::Server::bind(settings).await.unwrap();
        let addr = server.local_addr();
        let listeners = server.listeners();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            listeners,
            shutdown: Some(tx),
            task,
        }
    }

    /// Plain TCP on a free port, data in `dir`.
    pub async fn tcp(dir: &Path) -> Self {
        Self::start(settings(dir, "127.0.0.1:0")).await
    }

    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {name} listener: {:?}", self.listeners))
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

pub fn settings(dir: &Path, listen: &str) -> mqtt_broker::Settings {
    let mut settings = mqtt_broker::Settings::default();
    settings.listen = listen.to_owned();
    settings.data_dir = dir.to_path_buf();
    settings
}

// ---- this repository's broker, in a child process --------------------------------------------

/// The environment variable that makes [`child_broker_main`] run a broker.
pub const CHILD_ENV: &str = "MQTT_CLIENT_TEST_BROKER";

/// Runs a broker when this test binary was started as a child broker (`CHILD_ENV` =
/// `PORT DIR`); call it from a `#[test]` named `child_broker`.
pub fn child_broker_main() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (port, dir) = spec.split_once(' ').unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let broker = OurBroker::start(settings(Path::new(dir), &format!("127.0.0.1:{port}"))).await;
        println!("listening on {}", broker.addr);
        std::future::pending::<()>().await;
    });
}

/// This repository's broker in a child process (this test binary again, running its
/// `child_broker` test), so that a test can SIGKILL it.
pub struct ChildBroker {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl ChildBroker {
    pub async fn start(port: u16, dir: &Path) -> Self {
        let exe = std::env::current_exe().unwrap();
        for _ in 0..100 {
            let mut child = Command::new(&exe)
                .args(["--exact", "child_broker", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, format!("{port} {}", dir.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            for _ in 0..100 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Self {
                        child,
                        port,
                        dir: dir.to_path_buf(),
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The port was not free yet (or the broker failed): try again.
            let _ = child.kill();
            let _ = child.wait();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the child broker did not start");
    }

    /// SIGKILL: no shutdown, no flush beyond what the broker committed.
    pub fn kill(mut self) -> (u16, PathBuf) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.port, self.dir.clone())
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- mosquitto ----------------------------------------------------------------------------------

pub struct Mosquitto {
    child: Child,
    pub addr: SocketAddr,
    conf: PathBuf,
}

fn mosquitto_program() -> Option<&'static str> {
    let program = ["mosquitto", "/usr/sbin/mosquitto"]
        .into_iter()
        .find(|p| Command::new(p).arg("-h").output().is_ok());
    if program.is_none() {
        assert!(
            std::env::var_os("MQTT_INTEROP").is_none(),
            "MQTT_INTEROP is set and mosquitto is not installed"
        );
        eprintln!("mosquitto not installed: the mosquitto case is skipped");
    }
    program
}

impl Mosquitto {
    /// mosquitto on a free port, saving its state in `dir` (on SIGTERM).
    pub async fn start(dir: &Path) -> Option<Self> {
        mosquitto_program()?;
        // mosquitto started as root drops to the `mosquitto` user, which must be able to write
        // its database here.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.join("mosquitto.conf");
            std::fs::write(
                &conf,
                format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                     persistence_location {}/\nmax_queued_messages 10000\nmax_inflight_messages 0\n\
                     log_dest file {}/mosquitto.log\nlog_type all\n",
                    dir.display(),
                    dir.display()
                ),
            )
            .unwrap();
            if let Some(m) = Self::run(&conf, port).await {
                return Some(m);
            }
        }
        panic!("mosquitto did not start");
    }

    async fn run(conf: &Path, port: u16) -> Option<Self> {
        let program = mosquitto_program()?;
        let mut child = Command::new(program)
            .arg("-c")
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Some(Self {
                    child,
                    addr,
                    conf: conf.to_path_buf(),
                });
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// SIGTERM (mosquitto saves its state then), wait, and start again on the same port.
    pub async fn restart(mut self) -> Self {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
        let conf = self.conf.clone();
        let port = self.addr.port();
        for _ in 0..100 {
            if let Some(m) = Self::run(&conf, port).await {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("mosquitto did not start again");
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- a test PKI ---------------------------------------------------------------------------------

#[path = "../../../mqtt-transport/tests/support/pki.rs"]
mod pki;

/// The test PKI of `mqtt-transport/tests/support/pki.rs`: a CA, a server certificate for
/// `localhost` / 127.0.0.1, a client certificate, as PEM files in `dir`.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: pki::write(dir),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}
