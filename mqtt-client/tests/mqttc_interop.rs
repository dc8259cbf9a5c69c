//! Interoperability of `mqttc` (`examples/mqttc.rs`, the command-line client on this crate)
//! with a real broker: Debian's `mosquitto` 2.0, started by each test on its own free loopback
//! port, with `mosquitto_sub` / `mosquitto_pub` (mosquitto-clients) as the peer
//! that cross-checks — issue 4's scenarios, over MQTT 5.0 and 3.1.1: connect; QoS 0, 1 and 2
//! from our publisher to our subscriber (and to mosquitto_sub, and from mosquitto_pub); a
//! session resumed with Clean Start 0; wills (killed client, normal DISCONNECT, Will Delay).
//!
//! mosquitto logs every packet (`log_type all`) to a file: the tests read the wire from it
//! (Clean Start, DUP, QoS and Packet Identifiers of what our client sends and acknowledges)
//! and wait on it (a subscription is acknowledged, a connection has ended) instead of
//! sleeping.
//!
//! Gated like `tests/interop.rs`: `.ci/run` installs mosquitto and mosquitto-clients, then
//! exports `MQTT_INTEROP=1`; with it every test runs and fails when a program is missing;
//! without it they pass at once, after one line saying they were skipped. Every wait is
//! bounded and every child process (broker and clients) is killed when its handle drops.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(clippy::disallowed_methods)] // real processes on a real clock: the tests wait for them

#[path = "../../mqtt-broker/tests/support/tempdir.rs"]
mod tempdir;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proc::Proc;
use tempdir::{STEP, TempDir};

/// Whether the tests run: `MQTT_INTEROP=1` (set by `.ci/run` once it has installed
/// mosquitto and mosquitto-clients). Then a missing program fails the test; otherwise one line
/// says they are skipped.
fn interop_enabled() -> bool {
    tempdir::interop_enabled(
        "client interop tests",
        &["mosquitto", "mosquitto_sub", "mosquitto_pub", "stdbuf"],
        false,
    )
}

#[path = "support/example_binary.rs"]
mod example_binary;
#[allow(dead_code)]
#[path = "../../mqtt-broker/tests/support/proc.rs"]
mod proc;

/// `mqttc`, built first if it is missing or older than its sources.
fn client_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| example_binary::locate("mqttc", "examples/mqttc.rs"))
}

/// The protocol version a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    V5,
    V311,
}

impl V {
    /// `--protocol` of mqttc.
    fn ours(self) -> &'static str {
        match self {
            V::V5 => "5",
            V::V311 => "3.1.1",
        }
    }

    /// `-V` of mosquitto_pub / mosquitto_sub.
    fn mosquitto(self) -> &'static str {
        match self {
            V::V5 => "mqttv5",
            V::V311 => "mqttv311",
        }
    }

    /// The protocol mosquitto logs for a connection (its own numbering: `p5` for 5.0, `p2`
    /// for 3.1.1).
    fn level(self) -> &'static str {
        match self {
            V::V5 => "p5",
            V::V311 => "p2",
        }
    }
}

/// A running mosquitto on a free loopback port, logging everything to a file. Killed when
/// dropped.
struct Mosquitto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Mosquitto {
    /// Starts it with a temporary configuration and waits until it listens.
    fn start(dir: &TempDir) -> Self {
        for attempt in 0..5 {
            // A free port (released at once: another process may take it meanwhile, then
            // mosquitto cannot bind and the next attempt takes another).
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let conf = dir.path().join(format!("mosquitto-{attempt}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                     log_dest stderr\nlog_type all\n"
                ),
            )
            .unwrap();
            // (Its standard error, not a `log_dest file`: mosquitto started as root drops to
            // the `mosquitto` user before it opens a log file, and could not write this one.)
            let log = dir.path().join(format!("mosquitto-{attempt}.log"));
            let mut child = Command::new("mosquitto")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("spawn mosquitto");
            let deadline = Instant::now() + STEP;
            loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains(" running") {
                    return Self { child, port, log };
                }
                if let Some(status) = child.try_wait().unwrap() {
                    if text.contains("in use") {
                        break;
                    }
                    panic!("mosquitto exited ({status}) at start:\n{text}");
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("mosquitto did not start within {STEP:?}:\n{text}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("mosquitto found no free port in 5 attempts");
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log lines containing every one of `needles`.
    fn lines(&self, needles: &[&str]) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| needles.iter().all(|n| line.contains(n)))
            .map(str::to_owned)
            .collect()
    }

    /// Waits (at most [`STEP`]) until `count` log lines contain every one of `needles`.
    fn wait_for(&self, needles: &[&str], count: usize) {
        let deadline = Instant::now() + STEP;
        while self.lines(needles).len() < count {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not log {count} line(s) with {needles:?} within {STEP:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The Packet Identifiers of the log lines with every one of `needles`, in order: the
    /// `mN` of a PUBLISH (`(d0, q1, r0, m3, 't', …)`), the `Mid: N` of an acknowledgement.
    fn mids(&self, needles: &[&str]) -> Vec<u16> {
        self.lines(needles)
            .iter()
            .map(|line| {
                let rest = line
                    .split_once("(Mid: ")
                    .or_else(|| line.split_once(", m"))
                    .unwrap_or_else(|| panic!("no packet identifier in {line:?}"))
                    .1;
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().unwrap()
            })
            .collect()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scenario's world: its directory and its broker.
struct Ctx {
    dir: TempDir,
    broker: Mosquitto,
    v: V,
}

impl Ctx {
    /// `mqttc` as `id`, with the global `options` and the subcommand `command`.
    fn ours(&self, id: &str, options: &[&str], command: &[&str]) -> Proc {
        let mut c = Command::new(client_binary());
        c.args([
            "--connect",
            &self.broker.addr(),
            "--protocol",
            self.v.ours(),
        ])
        .args(["--id", id])
        .args(options)
        .args(command);
        Proc::spawn(self.dir.path(), &format!("client {id}"), c).0
    }

    /// `mqttc`'s `sub`, returned once mosquitto has sent its SUBACK.
    fn ours_sub(&self, id: &str, options: &[&str], command: &[&str]) -> Proc {
        let before = self.subacks(id);
        let sub = self.ours(id, options, &[&["sub"], command].concat());
        self.broker
            .wait_for(&[&format!("Sending SUBACK to {id}")], before + 1);
        sub
    }

    /// `mqttc`'s `pub`, to completion.
    fn ours_pub(&self, id: &str, options: &[&str], command: &[&str]) -> Proc {
        let mut p = self.ours(id, options, &[&["pub"], command].concat());
        p.expect_quiet_success();
        p
    }

    fn subacks(&self, id: &str) -> usize {
        self.broker
            .lines(&[&format!("Sending SUBACK to {id}")])
            .len()
    }

    /// `mosquitto_sub` printing `QOS TOPIC PAYLOAD` per message, returned once subscribed.
    fn mosquitto_sub(&self, id: &str, args: &[&str]) -> Proc {
        let before = self.subacks(id);
        let mut c = Command::new("stdbuf");
        c.args(["-oL", "mosquitto_sub", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.broker.port.to_string(),
                "-V",
                self.v.mosquitto(),
            ])
            .args(["-i", id, "-F", "%q %t %p", "-W", "30"])
            .args(args);
        let sub = Proc::spawn(self.dir.path(), &format!("mosquitto_sub {id}"), c).0;
        self.broker
            .wait_for(&[&format!("Sending SUBACK to {id}")], before + 1);
        sub
    }

    /// `mosquitto_pub` to completion.
    fn mosquitto_pub(&self, id: &str, topic: &str, payload: &str, qos: u8) {
        let mut c = Command::new("mosquitto_pub");
        c.args(["-h", "127.0.0.1", "-p", &self.broker.port.to_string()])
            .args([
                "-V",
                self.v.mosquitto(),
                "-i",
                id,
                "-t",
                topic,
                "-m",
                payload,
            ])
            .args(["-q", &qos.to_string()]);
        Proc::spawn(self.dir.path(), &format!("mosquitto_pub {id}"), c)
            .0
            .expect_quiet_success();
    }

    /// Waits until mosquitto has handled the end of `id`'s `n`th connection, however it ended.
    fn wait_gone(&self, id: &str, n: usize) {
        self.broker.wait_for(&[&format!("Client {id} ")], n);
    }
}

/// Runs `scenario` for `v` on a fresh mosquitto.
fn run(name: &str, v: V, scenario: fn(&Ctx)) {
    if !interop_enabled() {
        return;
    }
    let dir = TempDir::new(&format!("client-{name}-{v:?}"));
    let broker = Mosquitto::start(&dir);
    let ctx = Ctx { dir, broker, v };
    scenario(&ctx);
}

// ---- connect ----

fn connect(ctx: &Ctx) {
    let p = ctx.ours_pub("conn", &["--keep-alive", "7"], &["-t", "c/t", "-m", "x"]);
    assert!(
        p.stderr().contains("connected (session present: false)"),
        "{}",
        p.describe()
    );
    // CONNECT as asked: the version's protocol level, Clean Start 1, Keep Alive 7; then a
    // normal DISCONNECT, after which mosquitto says "disconnected" (not "closed its
    // connection", as for a dropped one).
    let level = ctx.v.level();
    ctx.broker
        .wait_for(&[&format!("as conn ({level}, c1, k7)")], 1);
    ctx.broker.wait_for(&["Sending CONNACK to conn (0, 0)"], 1);
    ctx.broker.wait_for(&["Received DISCONNECT from conn"], 1);
    ctx.broker.wait_for(&["Client conn disconnected."], 1);
    if ctx.v == V::V5 {
        // An empty Client Identifier: mosquitto assigns one and the client reports it.
        let p = ctx.ours_pub("", &[], &["-t", "c/t", "-m", "x"]);
        assert!(
            p.stderr().contains("assigned client identifier: auto-"),
            "{}",
            p.describe()
        );
    }
}

#[test]
fn connect_v5() {
    run("connect", V::V5, connect);
}

// v3.1.1 [MQTT-7.1.2-1] [MQTT-7.0.0-2]: the client engine over TCP, with mosquitto as it is
// (no extension needed on either side).
#[test]
fn connect_v311() {
    run("connect", V::V311, connect);
}

// ---- publish and subscribe at QoS 0, 1 and 2 ----

/// Our publisher twice (`--count 2`) then mosquitto_pub once, all at `qos`; our subscriber and
/// mosquitto_sub (both at `qos`) each receive exactly those three, in order.
fn pubsub(ctx: &Ctx, qos: u8) {
    let q = qos.to_string();
    let mut ours = ctx.ours_sub(
        "our-sub",
        &[],
        &["-t", "t/q", "-q", &q, "-v", "--count", "3"],
    );
    let mut theirs = ctx.mosquitto_sub("their-sub", &["-t", "t/q", "-q", &q, "-C", "3"]);
    let payload = format!("ours-{qos}");
    ctx.ours_pub(
        "our-pub",
        &[],
        &["-t", "t/q", "-m", &payload, "-q", &q, "--count", "2"],
    );
    ctx.mosquitto_pub("their-pub", "t/q", &format!("theirs-{qos}"), qos);

    assert_eq!(
        ours.take(3),
        [
            format!("t/q ours-{qos}"),
            format!("t/q ours-{qos}"),
            format!("t/q theirs-{qos}")
        ]
    );
    ours.expect_quiet_success();
    assert_eq!(
        theirs.take(3),
        [
            format!("{qos} t/q ours-{qos}"),
            format!("{qos} t/q ours-{qos}"),
            format!("{qos} t/q theirs-{qos}")
        ]
    );
    theirs.expect_quiet_success();
    ctx.wait_gone("our-sub", 1);

    // What our publisher sent: two PUBLISH at the QoS, DUP 0, with a Packet Identifier each
    // (two different ones) when QoS > 0.
    let sent = ctx
        .broker
        .lines(&["Received PUBLISH from our-pub (d0, q", ", r0, m"]);
    assert_eq!(sent.len(), 2, "{}", ctx.broker.log());
    assert!(
        sent.iter()
            .all(|l| l.contains(&format!("(d0, q{qos}, r0, m"))),
        "{sent:?}"
    );
    let pub_mids = ctx.broker.mids(&["Received PUBLISH from our-pub"]);
    // What mosquitto sent our subscriber, and what it acknowledged.
    let to_sub = ctx.broker.mids(&["Sending PUBLISH to our-sub"]);
    assert_eq!(to_sub.len(), 3);
    match qos {
        0 => assert_eq!(pub_mids, [0, 0]),
        1 => {
            // v5 [MQTT-4.3.2-1] [MQTT-4.3.2-2] v3.1.1 [MQTT-4.3.2-1]
            assert!(pub_mids[0] != 0 && pub_mids[1] != 0 && pub_mids[0] != pub_mids[1]);
            // v5 [MQTT-4.3.2-4] [MQTT-4.6.0-2] v3.1.1 [MQTT-4.3.2-2] [MQTT-4.6.0-2]
            let acked = ctx.broker.mids(&["Received PUBACK from our-sub"]);
            assert_eq!(acked, to_sub, "{}", ctx.broker.log());
        }
        _ => {
            // v5 [MQTT-4.3.3-1] [MQTT-4.3.3-2] v3.1.1 [MQTT-4.3.3-1]
            assert!(pub_mids[0] != 0 && pub_mids[1] != 0 && pub_mids[0] != pub_mids[1]);
            // v5 [MQTT-4.3.3-4] [MQTT-4.6.0-4] v3.1.1 [MQTT-4.3.3-1] [MQTT-4.6.0-4]
            let released = ctx.broker.mids(&["Received PUBREL from our-pub"]);
            assert_eq!(released, pub_mids, "{}", ctx.broker.log());
            // v5 [MQTT-4.3.3-8] [MQTT-4.6.0-3] v3.1.1 [MQTT-4.3.3-2] [MQTT-4.6.0-3]
            let received = ctx.broker.mids(&["Received PUBREC from our-sub"]);
            assert_eq!(received, to_sub, "{}", ctx.broker.log());
            // v5 [MQTT-4.3.3-11] v3.1.1 [MQTT-4.3.3-2]
            let completed = ctx.broker.mids(&["Received PUBCOMP from our-sub"]);
            assert_eq!(completed, to_sub, "{}", ctx.broker.log());
        }
    }
}

#[test]
fn qos0_v5() {
    run("qos0", V::V5, |ctx| pubsub(ctx, 0));
}

#[test]
fn qos0_v311() {
    run("qos0", V::V311, |ctx| pubsub(ctx, 0));
}

#[test]
fn qos1_v5() {
    run("qos1", V::V5, |ctx| pubsub(ctx, 1));
}

#[test]
fn qos1_v311() {
    run("qos1", V::V311, |ctx| pubsub(ctx, 1));
}

#[test]
fn qos2_v5() {
    run("qos2", V::V5, |ctx| pubsub(ctx, 2));
}

#[test]
fn qos2_v311() {
    run("qos2", V::V311, |ctx| pubsub(ctx, 2));
}

// ---- session resume ----

/// A subscriber with a persistent session leaves; messages at QoS 1 and 2 are published
/// meanwhile (by our client and by mosquitto_pub); it comes back with Clean Start 0, the
/// session is present, and it receives them, in order.
fn session_resume(ctx: &Ctx) {
    let persistent = ["--no-clean-start", "--session-expiry", "60"];
    let sub_args = ["-t", "r/t", "-q", "2", "--count"];
    let mut first = ctx.ours_sub("resumer", &persistent, &[&sub_args[..], &["1"]].concat());
    ctx.mosquitto_pub("prime", "r/t", "first", 1);
    assert_eq!(first.take(1), ["first"]);
    first.expect_quiet_success();
    assert!(
        first
            .stderr()
            .contains("connected (session present: false)"),
        "{}",
        first.describe()
    );
    ctx.broker.wait_for(&["Client resumer disconnected."], 1);

    ctx.ours_pub("p1", &[], &["-t", "r/t", "-m", "off-1", "-q", "1"]);
    ctx.ours_pub("p2", &[], &["-t", "r/t", "-m", "off-2", "-q", "2"]);
    ctx.mosquitto_pub("p3", "r/t", "off-3", 2);

    let mut again = ctx.ours(
        "resumer",
        &persistent,
        &[&["sub"], &sub_args[..], &["3"]].concat(),
    );
    assert_eq!(again.take(3), ["off-1", "off-2", "off-3"]);
    again.expect_quiet_success();
    assert!(
        again.stderr().contains("connected (session present: true)"),
        "{}",
        again.describe()
    );
    // Both connections had Clean Start 0.
    let level = ctx.v.level();
    ctx.broker
        .wait_for(&[&format!("as resumer ({level}, c0, k60)")], 2);
    // The queued messages went out at the QoS they were published with (the subscription
    // asked for 2); our client acknowledged each.
    let queued = ctx.broker.lines(&["Sending PUBLISH to resumer (d0, q"]);
    assert_eq!(queued.len(), 4, "{}", ctx.broker.log());
    for (line, q) in queued.iter().skip(1).zip([1, 2, 2]) {
        assert!(line.contains(&format!("(d0, q{q}, r0, m")), "{line}");
    }
    ctx.broker.wait_for(&["Received PUBACK from resumer"], 2);
    ctx.broker.wait_for(&["Received PUBCOMP from resumer"], 2);
}

#[test]
fn session_resume_v5() {
    run("resume", V::V5, session_resume);
}

#[test]
fn session_resume_v311() {
    run("resume", V::V311, session_resume);
}

// ---- wills ----

/// One client with a will leaves with a normal DISCONNECT (its will is discarded), another is
/// SIGKILLed (its will is published); our subscriber and mosquitto_sub receive the second
/// will only: a marker published after it arrives next.
fn will(ctx: &Ctx) {
    let mut watch = ctx.ours_sub(
        "watch",
        &[],
        &["-t", "w/#", "-q", "1", "-v", "--count", "2"],
    );
    let mut theirs = ctx.mosquitto_sub("their-watch", &["-t", "w/#", "-q", "1", "-C", "2"]);

    let polite_will = [
        "--will-topic",
        "w/polite",
        "--will-message",
        "polite-will",
        "--will-qos",
        "1",
    ];
    ctx.ours_pub(
        "polite",
        &polite_will,
        &["-t", "x/y", "-m", "hi", "-q", "1"],
    );
    ctx.broker
        .wait_for(&["Will message specified (11 bytes) (r0, q1)"], 1);
    ctx.broker.wait_for(&["Client polite disconnected."], 1);

    let victim_will = [
        "--will-topic",
        "w/victim",
        "--will-message",
        "victim-will",
        "--will-qos",
        "1",
    ];
    let mut victim = ctx.ours_sub("victim", &victim_will, &["-t", "x/z"]);
    ctx.broker
        .wait_for(&["Will message specified (11 bytes) (r0, q1)"], 2);
    victim.kill();

    assert_eq!(
        watch.next_line(),
        "w/victim victim-will",
        "{}",
        ctx.broker.log()
    );
    assert_eq!(theirs.next_line(), "1 w/victim victim-will");
    ctx.mosquitto_pub("marker", "w/marker", "marker", 1);
    assert_eq!(watch.next_line(), "w/marker marker");
    assert_eq!(theirs.next_line(), "1 w/marker marker");
    watch.expect_quiet_success();
    theirs.expect_quiet_success();
}

#[test]
fn will_v5() {
    run("will", V::V5, will);
}

#[test]
fn will_v311() {
    run("will", V::V311, will);
}

/// 5.0: a will with a Will Delay Interval of 2 s (and a session that outlives it) is published
/// about 2 s after the client is SIGKILLed, not at once.
#[test]
fn will_delay_v5() {
    run("will-delay", V::V5, |ctx| {
        let mut watch = ctx.ours_sub(
            "watch",
            &[],
            &["-t", "w/#", "-q", "1", "-v", "--count", "1"],
        );
        let mut victim = ctx.ours_sub(
            "delayed",
            &[
                "--will-topic",
                "w/delayed",
                "--will-message",
                "late",
                "--will-delay",
                "2",
                "--session-expiry",
                "60",
            ],
            &["-t", "x/z"],
        );
        let killed = Instant::now();
        victim.kill();
        ctx.wait_gone("delayed", 1);
        assert_eq!(watch.next_line(), "w/delayed late");
        let elapsed = killed.elapsed();
        // mosquitto checks will delays once a second: the will comes between 1 and 3 s late.
        assert!(
            elapsed >= Duration::from_millis(1000),
            "the will came {elapsed:?} after the kill, before its 2 s delay:\n{}",
            ctx.broker.log()
        );
        watch.expect_quiet_success();
    });
}
