//! Interoperability of the broker (`mqtt-broker`) with real clients: Debian's
//! `mosquitto_sub` / `mosquitto_pub` (mosquitto-clients 2.0) and paho-mqtt 2.x for Python
//! (driven through `tests/interop/paho_client.py`), over MQTT 5.0 and 3.1.1 — issue 5's
//! scenarios: persistent sessions, Clean Start / Clean Session 1, Session Expiry, wills (on a
//! killed client, not after a normal DISCONNECT, Will Delay) and retained messages.
//!
//! Every scenario runs twice: as is (`plain::…`), and with the broker SIGKILLed and restarted
//! on the same data directory between its steps (`broker_killed_between_steps::…`), so what
//! the clients see must not depend on the broker staying up.
//!
//! The clients are installed by `.ci/run`, which then exports `MQTT_INTEROP=1`: with it every
//! test runs and fails when a client is missing; without it they pass at once, after one line
//! saying they were skipped (the README's test command must pass on a machine without them).
//! Each test has its own data directory and broker port; every wait is bounded (a child's
//! output, a process's exit, a line of the broker's log) and every child process is killed
//! when its handle drops, so a failure never hangs the run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(clippy::disallowed_methods)] // real processes on a real clock: the tests wait for them

#[allow(dead_code)] // this test uses part of it
#[path = "support/broker_process.rs"]
mod broker_process;
#[allow(dead_code)]
#[path = "support/proc.rs"]
mod proc;
#[allow(dead_code)]
#[path = "support/tempdir.rs"]
mod tempdir;

use std::collections::VecDeque;
use std::io::Write;
use std::process::{ChildStdin, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use broker_process::{Broker, STEP, TempDir};
use proc::Proc;
use serde_json::{Value, json};

/// The paho-mqtt driver.
const PAHO_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/paho_client.py");

/// Whether the interop tests run: `MQTT_INTEROP=1` (set by `.ci/run` once it has installed the
/// clients). Then a missing client fails the test; otherwise one line says they are skipped.
fn interop_enabled() -> bool {
    tempdir::interop_enabled(
        "interop tests",
        &["mosquitto_sub", "mosquitto_pub", "stdbuf"],
        true,
    )
}

/// The protocol version a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    V5,
    V311,
}

impl V {
    fn mosquitto(self) -> &'static str {
        match self {
            V::V5 => "mqttv5",
            V::V311 => "mqttv311",
        }
    }

    fn paho(self) -> &'static str {
        match self {
            V::V5 => "5",
            V::V311 => "3.1.1",
        }
    }
}

/// An application message as a client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    topic: String,
    payload: String,
    qos: u8,
    retain: bool,
}

fn msg(topic: &str, payload: &str, qos: u8, retain: bool) -> Msg {
    Msg {
        topic: topic.to_owned(),
        payload: payload.to_owned(),
        qos,
        retain,
    }
}

/// One scenario's world: its directory, its broker, and whether the broker is killed and
/// restarted between the steps.
struct Ctx {
    dir: TempDir,
    broker: Option<Broker>,
    restart: bool,
}

impl Ctx {
    fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("a running broker")
    }

    fn port(&self) -> String {
        self.broker().port()
    }

    /// Between two steps of a scenario: when it runs with broker kills, SIGKILL the broker
    /// and start it again on the same data directory (a new port). Returns whether it did.
    fn between_steps(&mut self) -> bool {
        if self.restart {
            self.broker.take().expect("a running broker").kill();
            self.broker = Some(Broker::start(&self.dir));
        }
        self.restart
    }

    /// After a restart, the broker says how much it restored.
    fn assert_restored(&self, sessions: usize, retained: usize) {
        if self.restart {
            let expected = format!("restored {sessions} sessions and {retained} retained messages");
            let restored = &self.broker().restored;
            assert!(restored.starts_with(&expected), "{restored}");
        }
    }

    /// The broker's log lines saying that `client_id`'s connection ended, normally
    /// (`graceful`, a DISCONNECT 0x00) or not.
    fn disconnect_lines(client_id: &str, graceful: bool) -> [String; 3] {
        [
            "client disconnected".to_owned(),
            format!("client_id=\"{client_id}\""),
            format!("graceful={graceful}"),
        ]
    }

    /// How many times the broker logged that `client_id`'s connection ended (as `graceful`).
    fn disconnects(&self, client_id: &str, graceful: bool) -> usize {
        let needles = Self::disconnect_lines(client_id, graceful);
        self.broker()
            .log_count(&needles.each_ref().map(String::as_str))
    }

    /// Runs `action`, then waits until the broker has handled the end of `client_id`'s
    /// connection (as `graceful`) that it causes.
    fn until_disconnected<T>(
        &self,
        client_id: &str,
        graceful: bool,
        action: impl FnOnce() -> T,
    ) -> T {
        let n = self.disconnects(client_id, graceful);
        let result = action();
        let needles = Self::disconnect_lines(client_id, graceful);
        self.broker()
            .wait_for_log(&needles.each_ref().map(String::as_str), n + 1);
        result
    }

    /// How many sessions of `client_id` the broker logged as ended.
    fn sessions_ended(&self, client_id: &str) -> usize {
        self.broker()
            .log_count(&["session ended", &format!("client_id=\"{client_id}\"")])
    }

    fn wills_published(&self) -> usize {
        self.broker().log_count(&["will published"])
    }
}

/// Runs `scenario` on a fresh broker (with broker kills between its steps when `restart`).
fn run(name: &str, restart: bool, scenario: fn(&mut Ctx)) {
    if !interop_enabled() {
        return;
    }
    let dir = TempDir::new(name);
    let broker = Broker::start(&dir);
    let mut ctx = Ctx {
        dir,
        broker: Some(broker),
        restart,
    };
    scenario(&mut ctx);
}

/// Something that receives application messages.
trait Receiver {
    /// The next message (panics after [`STEP`] without one).
    fn recv(&mut self) -> Msg;
}

/// Publishes a unique non-retained marker on `topic` (with mosquitto_pub, 5.0, QoS 1) and
/// returns what `sub` received before it. A broker sends one client its messages in order,
/// so anything still due to `sub` when the marker was published (a queued message, a retained
/// message of its subscription, a will) is in the answer: it is "nothing else was delivered"
/// without sleeping.
fn before_marker(ctx: &Ctx, sub: &mut dyn Receiver, topic: &str) -> Vec<Msg> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let marker = format!("marker-{}", N.fetch_add(1, Ordering::Relaxed));
    mosquitto_pub(ctx, V::V5, topic, Some(&marker), 1, false);
    let mut before = Vec::new();
    loop {
        let m = sub.recv();
        if m.payload == marker {
            assert_eq!(m.topic, topic);
            return before;
        }
        before.push(m);
    }
}

// ---- mosquitto-clients ----

/// `mosquitto_pub` to completion (QoS 1: it exits once the PUBACK came); `None` is a
/// zero-length payload (`-n`).
fn mosquitto_pub(ctx: &Ctx, v: V, topic: &str, payload: Option<&str>, qos: u8, retain: bool) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let id = format!("mosquitto-pub-{}", N.fetch_add(1, Ordering::Relaxed));
    let mut command = Command::new("mosquitto_pub");
    command
        .args(["-h", "127.0.0.1", "-p", &ctx.port(), "-V", v.mosquitto()])
        .args(["-i", &id, "-q", &qos.to_string(), "-t", topic]);
    match payload {
        Some(p) => command.args(["-m", p]),
        None => command.arg("-n"),
    };
    if retain {
        command.arg("-r");
    }
    let (mut proc, _) = Proc::spawn(ctx.dir.path(), "mosquitto_pub", command);
    proc.expect_success();
}

/// A running `mosquitto_sub` (through `stdbuf -oL`, so that its output comes line by line),
/// with `-d` (debug lines tell when it is subscribed) and each message printed as
/// `MSG <retain> <qos> <topic> <payload>`.
struct MosquittoSub {
    id: String,
    proc: Proc,
    inbox: VecDeque<Msg>,
}

impl MosquittoSub {
    /// Starts it with `args` (options, `-t` topics) and returns at once.
    fn spawn(ctx: &Ctx, v: V, id: &str, args: &[&str]) -> Self {
        let mut command = Command::new("stdbuf");
        command
            .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", &ctx.port()])
            .args(["-V", v.mosquitto(), "-i", id, "-d"])
            .args(["-F", "MSG %r %q %t %p"])
            // Its own bound, in case it outlives the test.
            .args(["-W", "60"])
            .args(args);
        let (proc, _) = Proc::spawn(ctx.dir.path(), &format!("mosquitto_sub {id}"), command);
        Self {
            id: id.to_owned(),
            proc,
            inbox: VecDeque::new(),
        }
    }

    /// Starts it and waits until its subscription is acknowledged.
    fn start(ctx: &Ctx, v: V, id: &str, args: &[&str]) -> Self {
        let mut sub = Self::spawn(ctx, v, id, args);
        loop {
            let line = sub.proc.next_line();
            if let Some(m) = Self::parse(&line) {
                sub.inbox.push_back(m);
            } else if line.starts_with("Subscribed (mid") {
                return sub;
            }
        }
    }

    fn parse(line: &str) -> Option<Msg> {
        let mut parts = line.strip_prefix("MSG ")?.splitn(4, ' ');
        let retain = parts.next()? == "1";
        let qos = parts.next()?.parse().ok()?;
        let topic = parts.next()?.to_owned();
        let payload = parts.next().unwrap_or("").to_owned();
        Some(Msg {
            topic,
            payload,
            qos,
            retain,
        })
    }

    /// SIGKILL, then waits until the broker has handled the dropped connection.
    fn kill(mut self, ctx: &Ctx) {
        ctx.until_disconnected(&self.id, false, || self.proc.kill());
    }
}

impl Receiver for MosquittoSub {
    fn recv(&mut self) -> Msg {
        if let Some(m) = self.inbox.pop_front() {
            return m;
        }
        loop {
            let line = self.proc.next_line();
            if let Some(m) = Self::parse(&line) {
                return m;
            }
        }
    }
}

/// `mosquitto_sub -E` to completion: connects, subscribes, and leaves with a normal
/// DISCONNECT once subscribed (so a session it asked to keep is kept). Returns when the
/// broker has handled the disconnection.
fn mosquitto_sub_and_leave(ctx: &Ctx, v: V, id: &str, args: &[&str]) {
    ctx.until_disconnected(id, true, || {
        let mut sub = MosquittoSub::spawn(ctx, v, id, &[args, &["-E"]].concat());
        sub.proc.expect_success();
    });
}

// ---- paho-mqtt ----

/// A will for a paho client.
#[derive(Debug, Clone, Copy)]
struct Will {
    topic: &'static str,
    payload: &'static str,
    qos: u8,
    retain: bool,
    /// Will Delay Interval (5.0).
    delay: Option<u32>,
}

/// How a paho client connects.
#[derive(Debug, Clone, Copy)]
struct PahoOptions {
    version: V,
    /// Clean Start (5.0) / Clean Session (3.1.1).
    clean: bool,
    /// Session Expiry Interval (5.0); absent is 0.
    session_expiry: Option<u32>,
    will: Option<Will>,
    /// User Name and Password.
    login: Option<(&'static str, &'static str)>,
}

fn paho_v5(clean: bool, session_expiry: Option<u32>) -> PahoOptions {
    PahoOptions {
        version: V::V5,
        clean,
        session_expiry,
        will: None,
        login: None,
    }
}

fn paho_v311(clean: bool) -> PahoOptions {
    PahoOptions {
        version: V::V311,
        clean,
        session_expiry: None,
        will: None,
        login: None,
    }
}

/// A paho-mqtt client process (`tests/interop/paho_client.py`): one network connection,
/// commands on its standard input, JSON events on its output.
struct Paho {
    id: String,
    proc: Proc,
    stdin: ChildStdin,
    inbox: VecDeque<Msg>,
}

impl Paho {
    /// Connects; returns the client and the CONNACK's Session Present.
    fn connect(ctx: &Ctx, id: &str, options: PahoOptions) -> (Self, bool) {
        let (client, ack) = Self::try_connect(ctx, id, options);
        assert_eq!(ack["reason_code"], 0, "{}", client.proc.describe());
        let present = ack["session_present"].as_bool().unwrap();
        (client, present)
    }

    /// A CONNECT the broker refuses: its reason code (paho reports a 3.1.1 return code as the
    /// 5.0 reason code of the same meaning: 4 is 0x86, 5 is 0x87).
    fn connect_refused(ctx: &Ctx, id: &str, options: PahoOptions) -> u64 {
        let (mut client, ack) = Self::try_connect(ctx, id, options);
        let code = ack["reason_code"].as_u64().unwrap();
        assert_ne!(code, 0, "{}", client.proc.describe());
        client.proc.wait();
        code
    }

    /// Starts the client; returns it and its CONNACK event.
    fn try_connect(ctx: &Ctx, id: &str, options: PahoOptions) -> (Self, Value) {
        let mut command = Command::new("python3");
        command
            .arg(PAHO_CLIENT)
            .args(["--port", &ctx.port(), "--id", id])
            .args(["--version", options.version.paho()])
            .args(["--clean", if options.clean { "1" } else { "0" }])
            .args(["--timeout", &STEP.as_secs().to_string()])
            .env("PYTHONUNBUFFERED", "1");
        if let Some(expiry) = options.session_expiry {
            command.args(["--session-expiry", &expiry.to_string()]);
        }
        if let Some((user, password)) = options.login {
            command.args(["--username", user, "--password", password]);
        }
        if let Some(will) = options.will {
            command
                .args(["--will-topic", will.topic, "--will-payload", will.payload])
                .args(["--will-qos", &will.qos.to_string()]);
            if will.retain {
                command.arg("--will-retain");
            }
            if let Some(delay) = will.delay {
                command.args(["--will-delay", &delay.to_string()]);
            }
        }
        let (proc, stdin) = Proc::spawn(ctx.dir.path(), &format!("paho {id}"), command);
        let mut client = Self {
            id: id.to_owned(),
            proc,
            stdin: stdin.unwrap(),
            inbox: VecDeque::new(),
        };
        let ack = client.event("connack");
        (client, ack)
    }

    fn command(&mut self, command: &Value) {
        let line = format!("{command}\n");
        if let Err(e) = self.stdin.write_all(line.as_bytes()) {
            panic!(
                "{}: cannot send {line}: {e}\n{}",
                self.proc.name(),
                self.proc.describe()
            );
        }
    }

    /// The next event named `name`; messages on the way are kept for [`Receiver::recv`].
    fn event(&mut self, name: &str) -> Value {
        assert_ne!(name, "message", "messages are read with `recv`");
        loop {
            let line = self.proc.next_line();
            let event: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: {e}: {line}", self.proc.name()));
            match event["event"].as_str() {
                Some(e) if e == name => return event,
                Some("message") => self.inbox.push_back(Self::message(&event)),
                _ => panic!(
                    "{}: expected {name}, got {line}\n{}",
                    self.proc.name(),
                    self.proc.describe()
                ),
            }
        }
    }

    fn message(event: &Value) -> Msg {
        Msg {
            topic: event["topic"].as_str().unwrap().to_owned(),
            payload: event["payload"].as_str().unwrap().to_owned(),
            qos: u8::try_from(event["qos"].as_u64().unwrap()).unwrap(),
            retain: event["retain"].as_bool().unwrap(),
        }
    }

    /// SUBSCRIBE; the SUBACK's reason codes (granted QoS).
    fn subscribe(&mut self, filter: &str, qos: u8) -> Vec<u64> {
        self.command(&json!({"cmd": "sub", "filter": filter, "qos": qos}));
        let ack = self.event("suback");
        ack["reason_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect()
    }

    /// PUBLISH, and (QoS 1/2) its acknowledgement.
    fn publish(&mut self, topic: &str, payload: &str, qos: u8, retain: bool) {
        self.command(
            &json!({"cmd": "pub", "topic": topic, "payload": payload, "qos": qos, "retain": retain}),
        );
        self.event("published");
    }

    /// DISCONNECT (0x00 Normal disconnection), then waits until the broker has handled it.
    fn disconnect(mut self, ctx: &Ctx) {
        let id = self.id.clone();
        ctx.until_disconnected(&id, true, || {
            self.command(&json!({"cmd": "disconnect"}));
            self.event("disconnected");
            self.proc.expect_success();
        });
    }

    /// SIGKILL, then waits until the broker has handled the dropped connection.
    fn kill(mut self, ctx: &Ctx) {
        ctx.until_disconnected(&self.id, false, || self.proc.kill());
    }
}

impl Receiver for Paho {
    fn recv(&mut self) -> Msg {
        if let Some(m) = self.inbox.pop_front() {
            return m;
        }
        let line = self.proc.next_line();
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: {e}: {line}", self.proc.name()));
        assert_eq!(
            event["event"],
            "message",
            "{}: expected a message, got {line}\n{}",
            self.proc.name(),
            self.proc.describe()
        );
        Self::message(&event)
    }
}

// ---- the scenarios ----

/// Every scenario, as is and with broker kills between its steps.
macro_rules! scenarios {
    ($($scenario:ident),* $(,)?) => {
        mod plain {
            $(
                #[test]
                fn $scenario() {
                    super::run(stringify!($scenario), false, super::$scenario);
                }
            )*
        }
        mod broker_killed_between_steps {
            $(
                #[test]
                fn $scenario() {
                    super::run(stringify!($scenario), true, super::$scenario);
                }
            )*
        }
    };
}

scenarios!(
    v5_session_resumed_by_paho,
    v5_session_resumed_by_mosquitto,
    v311_session_resumed,
    v5_clean_start_discards_the_session,
    v311_clean_session_discards_the_session,
    v5_session_expiry_0_ends_the_session_at_disconnect,
    v5_session_expiry_elapses,
    v5_will_on_a_killed_client_is_kept_retained,
    v311_will_on_a_killed_client_is_kept_retained,
    v5_no_will_after_a_normal_disconnect,
    v311_no_will_after_a_disconnect,
    v5_will_after_disconnect_with_will_message,
    v5_will_delay_is_honoured,
    v5_no_will_when_reconnected_within_the_delay,
    v5_clean_start_publishes_a_delayed_will_at_once,
    v5_retained_messages_replaced_and_cleared,
    v311_retained_messages_replaced_and_cleared,
);

const SESSION: Option<u32> = Some(300);

// v5 [MQTT-3.1.2-5] [MQTT-3.1.2-23] [MQTT-3.2.2-2] [MQTT-3.2.2-3]: paho with Clean Start 1
// and Session Expiry 300 subscribes and disconnects; mosquitto_pub publishes meanwhile; paho
// back with Clean Start 0 has its session (Session Present 1) and the messages, in order.
fn v5_session_resumed_by_paho(ctx: &mut Ctx) {
    let (mut sub, present) = Paho::connect(ctx, "sub", paho_v5(true, SESSION));
    assert!(!present);
    assert_eq!(sub.subscribe("t/#", 1), [1]);
    sub.disconnect(ctx);
    mosquitto_pub(ctx, V::V5, "t/1", Some("one"), 1, false);
    mosquitto_pub(ctx, V::V5, "t/2", Some("two"), 1, false);

    ctx.between_steps();
    ctx.assert_restored(1, 0);
    let (mut sub, present) = Paho::connect(ctx, "sub", paho_v5(false, SESSION));
    assert!(present);
    assert_eq!(sub.recv(), msg("t/1", "one", 1, false));
    assert_eq!(sub.recv(), msg("t/2", "two", 1, false));
    assert!(before_marker(ctx, &mut sub, "t/marker").is_empty());
    sub.disconnect(ctx);
}

// v5 [MQTT-3.1.2-5] [MQTT-3.1.2-6] [MQTT-3.1.2-23]: mosquitto_sub -c -x 300 (Clean Start 0 on a
// new client: a new session) subscribes at QoS 2 and leaves; paho publishes at QoS 1 and 2
// meanwhile; mosquitto_sub back with -c, subscribing to another topic only, gets both from
// the stored session, each at its QoS.
fn v5_session_resumed_by_mosquitto(ctx: &mut Ctx) {
    mosquitto_sub_and_leave(
        ctx,
        V::V5,
        "sub",
        &["-c", "-x", "300", "-q", "2", "-t", "t/#"],
    );
    let (mut publisher, _) = Paho::connect(ctx, "pub", paho_v5(true, None));
    publisher.publish("t/1", "one", 1, false);
    publisher.publish("t/2", "two", 2, false);
    publisher.disconnect(ctx);

    ctx.between_steps();
    ctx.assert_restored(1, 0);
    let mut sub = MosquittoSub::spawn(
        ctx,
        V::V5,
        "sub",
        &["-c", "-x", "300", "-q", "2", "-t", "elsewhere", "-C", "2"],
    );
    assert_eq!(sub.recv(), msg("t/1", "one", 1, false));
    assert_eq!(sub.recv(), msg("t/2", "two", 2, false));
    sub.proc.expect_success();
}

// v3.1.1 [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.2.2-2]: mosquitto_sub -c (Clean Session 0)
// subscribes at QoS 2 and leaves; paho publishes at QoS 1 and 2 meanwhile; paho back with
// Clean Session 0 has the session (Session Present 1) and the messages, in order.
fn v311_session_resumed(ctx: &mut Ctx) {
    mosquitto_sub_and_leave(ctx, V::V311, "sub", &["-c", "-q", "2", "-t", "t/#"]);
    let (mut publisher, _) = Paho::connect(ctx, "pub", paho_v311(true));
    publisher.publish("t/1", "one", 1, false);
    publisher.publish("t/2", "two", 2, false);
    publisher.disconnect(ctx);

    ctx.between_steps();
    ctx.assert_restored(1, 0);
    let (mut sub, present) = Paho::connect(ctx, "sub", paho_v311(false));
    assert!(present);
    assert_eq!(sub.recv(), msg("t/1", "one", 1, false));
    assert_eq!(sub.recv(), msg("t/2", "two", 2, false));
    assert!(before_marker(ctx, &mut sub, "t/marker").is_empty());
    sub.disconnect(ctx);
}

// v5 [MQTT-3.1.2-4] [MQTT-3.2.2-2]: paho back with Clean Start 1 starts afresh (Session
// Present 0): neither the old subscription nor what was queued for it is there.
fn v5_clean_start_discards_the_session(ctx: &mut Ctx) {
    let (mut sub, _) = Paho::connect(ctx, "sub", paho_v5(true, SESSION));
    assert_eq!(sub.subscribe("t/#", 1), [1]);
    sub.disconnect(ctx);
    mosquitto_pub(ctx, V::V5, "t/1", Some("stale"), 1, false);

    ctx.between_steps();
    ctx.assert_restored(1, 0);
    let (mut sub, present) = Paho::connect(ctx, "sub", paho_v5(true, SESSION));
    assert!(!present);
    // Without a subscription nothing would come anyway: subscribe again, then the marker.
    assert_eq!(sub.subscribe("t/#", 1), [1]);
    assert!(before_marker(ctx, &mut sub, "t/marker").is_empty());
    sub.disconnect(ctx);
}

// v3.1.1 [MQTT-3.1.2-6] [MQTT-3.2.2-3]: mosquitto_sub without -c (Clean Session 1) discards the
// session mosquitto_sub -c left, with what was queued for it; its own session ends with its
// connection, so paho with Clean Session 0 then finds none (Session Present 0).
fn v311_clean_session_discards_the_session(ctx: &mut Ctx) {
    mosquitto_sub_and_leave(ctx, V::V311, "sub", &["-c", "-q", "1", "-t", "t/#"]);
    let (mut publisher, _) = Paho::connect(ctx, "pub", paho_v311(true));
    publisher.publish("t/1", "stale", 1, false);
    publisher.disconnect(ctx);

    ctx.between_steps();
    ctx.assert_restored(1, 0);
    let mut sub = MosquittoSub::start(ctx, V::V311, "sub", &["-q", "1", "-t", "t/#"]);
    assert!(before_marker(ctx, &mut sub, "t/marker").is_empty());
    sub.kill(ctx);

    ctx.between_steps();
    ctx.assert_restored(0, 0);
    let (sub, present) = Paho::connect(ctx, "sub", paho_v311(false));
    assert!(!present);
    sub.disconnect(ctx);
}

// v5 [MQTT-4.1.0-2] [MQTT-3.1.2-6] [MQTT-3.2.2-3]: mosquitto_sub -c -x 0 (Clean Start 0,
// Session Expiry 0): the session ends when the connection does; paho with Clean Start 0 finds
// none (Session Present 0) and nothing published meanwhile.
fn v5_session_expiry_0_ends_the_session_at_disconnect(ctx: &mut Ctx) {
    mosquitto_sub_and_leave(
        ctx,
        V::V5,
        "sub",
        &["-c", "-x", "0", "-q", "1", "-t", "t/#"],
    );
    mosquitto_pub(ctx, V::V5, "t/1", Some("lost"), 1, false);

    ctx.between_steps();
    ctx.assert_restored(0, 0);
    let (mut sub, present) = Paho::connect(ctx, "sub", paho_v5(false, SESSION));
    assert!(!present);
    assert_eq!(sub.subscribe("t/#", 1), [1]);
    assert!(before_marker(ctx, &mut sub, "t/marker").is_empty());
    sub.disconnect(ctx);
}

// v5 [MQTT-4.1.0-2] [MQTT-3.1.2-23]: mosquitto_sub -c -x 2: the session is kept, with a message
// queued for it, for 2 s after the disconnection and not after (across a broker kill, the
// restored broker ends it at the persisted time); paho with Clean Start 0 then finds nothing.
fn v5_session_expiry_elapses(ctx: &mut Ctx) {
    let start = Instant::now();
    mosquitto_sub_and_leave(
        ctx,
        V::V5,
        "sub",
        &["-c", "-x", "2", "-q", "1", "-t", "t/#"],
    );
    mosquitto_pub(ctx, V::V5, "t/1", Some("expired"), 1, false);
    if start.elapsed() < Duration::from_millis(1500) {
        assert_eq!(ctx.sessions_ended("sub"), 0);
    }

    ctx.between_steps();
    ctx.broker()
        .wait_for_log(&["session ended", "client_id=\"sub\""], 1);
    assert!(
        start.elapsed() >= Duration::from_millis(1990),
        "the session ended after {:?}",
        start.elapsed()
    );
    let (mut sub, present) = Paho::connect(ctx, "sub", paho_v5(false, SESSION));
    assert!(!present);
    assert_eq!(sub.subscribe("t/#", 1), [1]);
    assert!(before_marker(ctx, &mut sub, "t/marker").is_empty());
    sub.disconnect(ctx);
}

const WILL: Will = Will {
    topic: "w/dev",
    payload: "dev is gone",
    qos: 1,
    retain: true,
    delay: None,
};

// v5 [MQTT-3.1.2-8] [MQTT-3.1.2-15] [MQTT-3.3.1-12] [MQTT-3.3.1-9]: paho with a retained QoS 1
// will is SIGKILLed: mosquitto_sub, subscribed, gets the will (RETAIN 0 on an established
// subscription without Retain As Published); a later paho subscriber gets it as retained.
fn v5_will_on_a_killed_client_is_kept_retained(ctx: &mut Ctx) {
    let mut live = MosquittoSub::start(ctx, V::V5, "live", &["-q", "1", "-t", "w/#"]);
    let mut options = paho_v5(true, None);
    options.will = Some(WILL);
    let (dev, _) = Paho::connect(ctx, "dev", options);
    dev.kill(ctx);
    assert_eq!(live.recv(), msg("w/dev", "dev is gone", 1, false));
    drop(live);

    ctx.between_steps();
    ctx.assert_restored(0, 1);
    let (mut late, _) = Paho::connect(ctx, "late", paho_v5(true, None));
    assert_eq!(late.subscribe("w/#", 1), [1]);
    assert_eq!(late.recv(), msg("w/dev", "dev is gone", 1, true));
    late.disconnect(ctx);
}

// v3.1.1 [MQTT-3.1.2-8] [MQTT-3.1.2-17] [MQTT-3.3.1-9]
// v3.1.1 [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8]
// mosquitto_sub with a retained QoS 1 will (--will-retain) is SIGKILLed: paho, subscribed,
// gets the will with RETAIN 0; a later mosquitto_sub gets it with RETAIN 1.
fn v311_will_on_a_killed_client_is_kept_retained(ctx: &mut Ctx) {
    let (mut live, _) = Paho::connect(ctx, "live", paho_v311(true));
    assert_eq!(live.subscribe("w/#", 1), [1]);
    let dev = MosquittoSub::start(
        ctx,
        V::V311,
        "dev",
        &[
            "-t",
            "cmd/dev",
            "--will-topic",
            "w/dev",
            "--will-payload",
            "dev is gone",
            "--will-qos",
            "1",
            "--will-retain",
        ],
    );
    dev.kill(ctx);
    assert_eq!(live.recv(), msg("w/dev", "dev is gone", 1, false));
    live.disconnect(ctx);

    ctx.between_steps();
    ctx.assert_restored(0, 1);
    let mut late = MosquittoSub::start(ctx, V::V311, "late", &["-q", "1", "-t", "w/#"]);
    assert_eq!(late.recv(), msg("w/dev", "dev is gone", 1, true));
}

// v5 [MQTT-3.1.2-8]: the broker is SIGKILLed while paho, with a retained will and a session,
// is connected: its connection ended without a DISCONNECT, so the restarted broker publishes
// the will, which a later mosquitto_sub gets as retained.
#[test]
fn v5_will_published_when_the_broker_is_killed_under_its_client() {
    run("will-broker-killed", true, |ctx| {
        let mut options = paho_v5(true, SESSION);
        options.will = Some(WILL);
        let (_dev, _) = Paho::connect(ctx, "dev", options);

        ctx.between_steps();
        // (Restoring published the will: it is retained by the time the broker listens.)
        ctx.assert_restored(1, 1);
        let mut late = MosquittoSub::start(ctx, V::V5, "late", &["-q", "1", "-t", "w/#"]);
        assert_eq!(late.recv(), msg("w/dev", "dev is gone", 1, true));
        assert_eq!(ctx.wills_published(), 1);
    });
}

// v5 [MQTT-3.1.2-10] [MQTT-3.14.4-3]: paho with a retained will (and a session) leaves with
// DISCONNECT 0x00: mosquitto_sub, subscribed, gets no will, and neither does a later paho
// subscriber (no retained will), even after a broker kill.
fn v5_no_will_after_a_normal_disconnect(ctx: &mut Ctx) {
    let mut live = MosquittoSub::start(ctx, V::V5, "live", &["-q", "1", "-t", "w/#"]);
    let mut options = paho_v5(true, SESSION);
    options.will = Some(WILL);
    let (dev, _) = Paho::connect(ctx, "dev", options);
    dev.disconnect(ctx);
    assert!(before_marker(ctx, &mut live, "w/marker").is_empty());
    drop(live);

    ctx.between_steps();
    ctx.assert_restored(1, 0);
    let (mut late, _) = Paho::connect(ctx, "late", paho_v5(true, None));
    assert_eq!(late.subscribe("w/#", 1), [1]);
    assert!(before_marker(ctx, &mut late, "w/marker").is_empty());
    late.disconnect(ctx);
    assert_eq!(ctx.wills_published(), 0);
}

// v3.1.1 [MQTT-3.1.2-10] [MQTT-3.14.4-3]: mosquitto_sub -c -E with a retained will leaves with
// a DISCONNECT: paho, subscribed, gets no will, and neither does a later mosquitto_sub.
fn v311_no_will_after_a_disconnect(ctx: &mut Ctx) {
    let (mut live, _) = Paho::connect(ctx, "live", paho_v311(true));
    assert_eq!(live.subscribe("w/#", 1), [1]);
    mosquitto_sub_and_leave(
        ctx,
        V::V311,
        "dev",
        &[
            "-c",
            "-t",
            "cmd/dev",
            "--will-topic",
            "w/dev",
            "--will-payload",
            "dev is gone",
            "--will-qos",
            "1",
            "--will-retain",
        ],
    );
    assert!(before_marker(ctx, &mut live, "w/marker").is_empty());
    live.disconnect(ctx);

    ctx.between_steps();
    ctx.assert_restored(1, 0);
    let mut late = MosquittoSub::start(ctx, V::V311, "late", &["-q", "1", "-t", "w/#"]);
    assert!(before_marker(ctx, &mut late, "w/marker").is_empty());
    assert_eq!(ctx.wills_published(), 0);
}

// v5 [MQTT-3.1.2-8] [MQTT-3.1.2-15]: mosquitto_sub stops on SIGTERM with DISCONNECT 0x04
// (Disconnect with Will Message), which is not a normal disconnection: its will is published
// (and retained, for a later subscriber).
fn v5_will_after_disconnect_with_will_message(ctx: &mut Ctx) {
    let (mut live, _) = Paho::connect(ctx, "live", paho_v5(true, None));
    assert_eq!(live.subscribe("w/#", 1), [1]);
    let mut dev = MosquittoSub::start(
        ctx,
        V::V5,
        "dev",
        &[
            "-t",
            "cmd/dev",
            "--will-topic",
            "w/dev",
            "--will-payload",
            "dev is gone",
            "--will-qos",
            "1",
            "--will-retain",
        ],
    );
    // The broker closes it as not graceful (0x04 is no normal disconnection).
    ctx.until_disconnected("dev", false, || {
        dev.proc.terminate();
        let _ = dev.proc.wait();
    });
    assert_eq!(live.recv(), msg("w/dev", "dev is gone", 1, false));
    live.disconnect(ctx);

    ctx.between_steps();
    ctx.assert_restored(0, 1);
    let mut late = MosquittoSub::start(ctx, V::V5, "late", &["-q", "1", "-t", "w/#"]);
    assert_eq!(late.recv(), msg("w/dev", "dev is gone", 1, true));
}

/// A will with a Will Delay Interval of `delay` seconds.
fn delayed_will(delay: u32) -> PahoOptions {
    let mut options = paho_v5(true, SESSION);
    options.will = Some(Will {
        delay: Some(delay),
        ..WILL
    });
    options
}

// v5 [MQTT-3.1.2-8]: paho with Session Expiry 300 and a will delayed 2 s is SIGKILLed: the will
// comes 2 s later, not before (across a broker kill too: the restored broker keeps the time).
fn v5_will_delay_is_honoured(ctx: &mut Ctx) {
    let mut live = MosquittoSub::start(ctx, V::V5, "live", &["-q", "1", "-t", "w/#"]);
    let (dev, _) = Paho::connect(ctx, "dev", delayed_will(2));
    let killed = Instant::now();
    dev.kill(ctx);
    if killed.elapsed() < Duration::from_millis(1500) {
        assert_eq!(ctx.wills_published(), 0);
    }

    if ctx.between_steps() {
        ctx.assert_restored(1, 0);
        live = MosquittoSub::start(ctx, V::V5, "live", &["-q", "1", "-t", "w/#"]);
        if killed.elapsed() < Duration::from_millis(1500) {
            assert_eq!(ctx.wills_published(), 0);
        }
    }
    let got = live.recv();
    let after = killed.elapsed();
    assert!(
        after >= Duration::from_secs(2),
        "the will came after {after:?}"
    );
    // (RETAIN 0 when it came on the live subscription; 1 if the restart took longer than the
    // delay and the subscription came after the will.)
    assert_eq!(
        (got.topic.as_str(), got.payload.as_str(), got.qos),
        ("w/dev", "dev is gone", 1)
    );
    assert_eq!(ctx.wills_published(), 1);
}

// v5 [MQTT-3.1.3-9] [MQTT-3.1.2-5]: paho with a will delayed 3 s is SIGKILLed and comes back
// (Clean Start 0) within the delay: the session is there and the will is never sent (not even
// as a retained message for a subscriber that came after a broker kill).
fn v5_no_will_when_reconnected_within_the_delay(ctx: &mut Ctx) {
    let mut live = MosquittoSub::start(ctx, V::V5, "live", &["-q", "1", "-t", "w/#"]);
    let (dev, _) = Paho::connect(ctx, "dev", delayed_will(3));
    let killed = Instant::now();
    dev.kill(ctx);

    if ctx.between_steps() {
        ctx.assert_restored(1, 0);
        live = MosquittoSub::start(ctx, V::V5, "live", &["-q", "1", "-t", "w/#"]);
    }
    let (dev, present) = Paho::connect(ctx, "dev", paho_v5(false, SESSION));
    assert!(present);
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "too slow to test: reconnected {:?} after the kill",
        killed.elapsed()
    );
    // Past the delay (and a margin), nothing came.
    std::thread::sleep(Duration::from_millis(3300).saturating_sub(killed.elapsed()));
    assert!(before_marker(ctx, &mut live, "w/marker").is_empty());
    dev.disconnect(ctx);
    assert_eq!(ctx.wills_published(), 0);
}

// v5 [MQTT-3.1.2-8] [MQTT-3.1.2-4]: paho with a will delayed 60 s is SIGKILLed and comes back
// with Clean Start 1: the old session ends, and with it the delay: the will is published now.
fn v5_clean_start_publishes_a_delayed_will_at_once(ctx: &mut Ctx) {
    let mut live = MosquittoSub::start(ctx, V::V5, "live", &["-q", "1", "-t", "w/#"]);
    let (dev, _) = Paho::connect(ctx, "dev", delayed_will(60));
    dev.kill(ctx);

    if ctx.between_steps() {
        ctx.assert_restored(1, 0);
        live = MosquittoSub::start(ctx, V::V5, "live", &["-q", "1", "-t", "w/#"]);
    }
    assert_eq!(ctx.wills_published(), 0);
    let (dev, present) = Paho::connect(ctx, "dev", paho_v5(true, SESSION));
    assert!(!present);
    assert_eq!(live.recv(), msg("w/dev", "dev is gone", 1, false));
    dev.disconnect(ctx);
}

// v5 [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-7] [MQTT-3.3.1-8] [MQTT-3.3.1-9]: mosquitto_pub
// retains "first" then "second" on r/1 (replaced), retains r/2 then clears it with an empty
// retained message, and publishes r/1 once without RETAIN (which changes nothing): a later
// paho subscriber to r/# gets exactly r/1 "second", retained.
fn v5_retained_messages_replaced_and_cleared(ctx: &mut Ctx) {
    mosquitto_pub(ctx, V::V5, "r/1", Some("first"), 1, true);
    mosquitto_pub(ctx, V::V5, "r/1", Some("second"), 1, true);
    mosquitto_pub(ctx, V::V5, "r/2", Some("doomed"), 1, true);
    mosquitto_pub(ctx, V::V5, "r/2", None, 1, true);
    mosquitto_pub(ctx, V::V5, "r/1", Some("passing"), 1, false);

    ctx.between_steps();
    ctx.assert_restored(0, 1);
    let (mut late, _) = Paho::connect(ctx, "late", paho_v5(true, None));
    assert_eq!(late.subscribe("r/#", 1), [1]);
    assert_eq!(
        before_marker(ctx, &mut late, "r/marker"),
        [msg("r/1", "second", 1, true)]
    );
    late.disconnect(ctx);
}

// v3.1.1 [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8]
// v3.1.1 [MQTT-3.3.1-10] [MQTT-3.3.1-11] [MQTT-3.3.1-12]
// The same with paho publishing and a later mosquitto_sub.
fn v311_retained_messages_replaced_and_cleared(ctx: &mut Ctx) {
    let (mut publisher, _) = Paho::connect(ctx, "pub", paho_v311(true));
    publisher.publish("r/1", "first", 1, true);
    publisher.publish("r/1", "second", 1, true);
    publisher.publish("r/2", "doomed", 1, true);
    publisher.publish("r/2", "", 1, true);
    publisher.publish("r/1", "passing", 1, false);
    publisher.disconnect(ctx);

    ctx.between_steps();
    ctx.assert_restored(0, 1);
    let mut late = MosquittoSub::start(ctx, V::V311, "late", &["-q", "1", "-t", "r/#"]);
    assert_eq!(
        before_marker(ctx, &mut late, "r/marker"),
        [msg("r/1", "second", 1, true)]
    );
}

// ---- the ACL, with real clients ----

// v5 [MQTT-3.9.3-1] [MQTT-3.8.4-6], v3.1.1 [MQTT-3.9.3-2]: the Paho interoperability suite's ACL
// (`default allow`, `deny subscribe test/nosubscribe`). mosquitto_sub on `#` (5.0) and on
// `test/#` (3.1.1) are granted and never receive `test/nosubscribe`; a subscription to the
// denied topic itself is refused (0x87 / 0x80), as mosquitto does.
#[test]
fn acl_wide_filters_are_granted_and_the_denied_topic_is_withheld() {
    if !interop_enabled() {
        return;
    }
    let dir = TempDir::new("acl-wide-filters");
    let acl = dir.path().join("acl.txt");
    std::fs::write(&acl, "default allow\ndeny subscribe test/nosubscribe\n").unwrap();
    let broker = Broker::start_with(&dir, &["--acl", acl.to_str().unwrap()]);
    let ctx = Ctx {
        dir,
        broker: Some(broker),
        restart: false,
    };
    let mut all = MosquittoSub::start(&ctx, V::V5, "all", &["-q", "1", "-t", "#"]);
    let mut test = MosquittoSub::start(&ctx, V::V311, "test", &["-q", "1", "-t", "test/#"]);
    mosquitto_pub(&ctx, V::V5, "test/nosubscribe", Some("hidden"), 1, false);
    mosquitto_pub(&ctx, V::V311, "test/nosubscribe", Some("hidden"), 1, true);
    mosquitto_pub(&ctx, V::V5, "test/visible", Some("shown"), 1, false);
    assert_eq!(
        before_marker(&ctx, &mut all, "test/marker"),
        [msg("test/visible", "shown", 1, false)]
    );
    assert_eq!(test.recv(), msg("test/visible", "shown", 1, false));
    assert!(test.recv().payload.starts_with("marker-"));

    // The retained message on the denied topic is withheld from a new wide subscription too.
    mosquitto_pub(&ctx, V::V5, "test/kept", Some("kept"), 1, true);
    let mut late = MosquittoSub::start(&ctx, V::V5, "late", &["-q", "1", "-t", "test/#"]);
    assert_eq!(
        before_marker(&ctx, &mut late, "test/marker"),
        [msg("test/kept", "kept", 1, true)]
    );

    for v in [V::V5, V::V311] {
        let id = format!("denied-{}", v.mosquitto());
        let mut denied = MosquittoSub::spawn(&ctx, v, &id, &["-q", "1", "-t", "test/nosubscribe"]);
        let status = denied.proc.wait();
        let stderr = denied.proc.stderr();
        assert!(
            stderr.contains("All subscription requests were denied"),
            "{status:?}: {stderr}"
        );
    }
    all.proc.kill();
    test.proc.kill();
    late.proc.kill();
}

// ---- password authentication, with real clients ----

/// mosquitto_pub with a User Name and Password: whether it succeeded, and its standard error.
fn mosquitto_pub_as(ctx: &Ctx, v: V, login: Option<(&str, &str)>, topic: &str) -> (bool, String) {
    let mut command = Command::new("mosquitto_pub");
    command
        .args(["-h", "127.0.0.1", "-p", &ctx.port(), "-V", v.mosquitto()])
        .args(["-q", "1", "-t", topic, "-m", "from mosquitto_pub"]);
    if let Some((user, password)) = login {
        command.args(["-u", user, "-P", password]);
    }
    let (mut proc, _) = Proc::spawn(ctx.dir.path(), "mosquitto_pub", command);
    let ok = proc.wait().success();
    (ok, proc.stderr())
}

// v3.1.1 [MQTT-7.0.0-2]: stock mosquitto clients and paho, no extension.
// v5 [MQTT-3.1.4-2]: a password file written by mosquitto_passwd and
// by `mqtt-broker passwd`; mosquitto_pub/sub and paho, both versions, with the right password,
// a wrong one, none, and a User Name alone; the ACL's `user` block holds for the
// authenticated user only.
#[test]
fn passwords_and_per_user_acl_with_real_clients() {
    if !interop_enabled() {
        return;
    }
    let dir = TempDir::new("passwords");
    let file = dir.path().join("passwd");
    let written = Command::new("mosquitto_passwd")
        .arg("-c")
        .arg("-b")
        .arg(&file)
        .args(["alice", "alice pw"])
        .status()
        .unwrap();
    assert!(written.success());
    let written = Command::new(broker_process::binary())
        .arg("passwd")
        .arg(&file)
        .args(["bob", "bob pw"])
        .output()
        .unwrap();
    assert!(written.status.success(), "{written:?}");
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "default deny\nuser alice\nallow both private/#\nuser *\nallow both public/#\n",
    )
    .unwrap();
    let broker = Broker::start_with(
        &dir,
        &[
            "--password-file",
            file.to_str().unwrap(),
            "--acl",
            acl.to_str().unwrap(),
        ],
    );
    let ctx = Ctx {
        dir,
        broker: Some(broker),
        restart: false,
    };

    for v in [V::V5, V::V311] {
        // alice (mosquitto_passwd's hash) reads private/; bob (argon2id) may not subscribe.
        let id = format!("alice-{}", v.mosquitto());
        let mut alice = MosquittoSub::start(
            &ctx,
            v,
            &id,
            &[
                "-q",
                "1",
                "-t",
                "private/#",
                "-u",
                "alice",
                "-P",
                "alice pw",
            ],
        );
        let (ok, stderr) = mosquitto_pub_as(&ctx, v, Some(("bob", "bob pw")), "public/x");
        assert!(ok, "{stderr}");
        let (ok, stderr) = mosquitto_pub_as(&ctx, v, Some(("alice", "alice pw")), "private/x");
        assert!(ok, "{stderr}");
        assert_eq!(
            alice.recv(),
            msg("private/x", "from mosquitto_pub", 1, false)
        );
        alice.proc.kill();

        let denied = MosquittoSub::spawn(
            &ctx,
            v,
            &format!("bob-{}", v.mosquitto()),
            &["-q", "1", "-t", "private/#", "-u", "bob", "-P", "bob pw"],
        );
        let mut denied = denied;
        let status = denied.proc.wait();
        assert!(
            denied
                .proc
                .stderr()
                .contains("All subscription requests were denied"),
            "{status:?}: {}",
            denied.proc.stderr()
        );

        // Refused: a wrong password, an unknown user, no User Name, a User Name alone.
        for login in [
            Some(("alice", "wrong")),
            Some(("mallory", "alice pw")),
            None,
        ] {
            let (ok, stderr) = mosquitto_pub_as(&ctx, v, login, "public/x");
            assert!(!ok, "{login:?} was let in");
            let expected = if login.is_none() {
                "not authori"
            } else {
                "user name or password"
            };
            assert!(
                stderr.to_lowercase().contains(expected),
                "{login:?}: {stderr}"
            );
        }
    }

    // paho, both versions.
    for options in [paho_v5(true, None), paho_v311(true)] {
        let mut good = options;
        good.login = Some(("bob", "bob pw"));
        let (mut bob, _) = Paho::connect(&ctx, "paho-bob", good);
        assert_eq!(bob.subscribe("public/#", 1), [1]);
        bob.disconnect(&ctx);
        let mut wrong = options;
        wrong.login = Some(("bob", "alice pw"));
        assert_eq!(Paho::connect_refused(&ctx, "paho-wrong", wrong), 0x86);
        assert_eq!(Paho::connect_refused(&ctx, "paho-anon", options), 0x87);
    }
}
