//! `mqttc`'s transport flags against this repository's broker (in the test process, with TLS,
//! WebSocket and secure WebSocket listeners and a test CA): `--cafile` (mqtts://, trusting that
//! CA), `--ws PATH` (ws://), both (wss://), and what it says when the server cannot be trusted
//! or the CA file cannot be read. Not gated: it needs no program from outside the workspace.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(clippy::disallowed_methods)] // a real process on a real clock

mod support;

#[path = "support/example_binary.rs"]
mod example_binary;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;

use support::{OurBroker, Pki, settings, temp_dir, within};

/// `mqttc`, built first if it is missing or older than its sources.
fn mqttc() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| example_binary::locate("mqttc", "examples/mqttc.rs"))
}

/// Runs `mqttc ARGS` to its end (killed if it outlives [`support::STEP`]).
async fn run(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(mqttc())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    within(&format!("mqttc {args:?}"), child.wait_with_output())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A broker with TCP, TLS, WebSocket and secure WebSocket listeners, its certificate signed
/// by the test CA in `dir`.
async fn broker(dir: &Path) -> (OurBroker, Pki) {
    let pki = Pki::new(dir);
    let mut s = settings(dir, "127.0.0.1:0");
    s.tls_listen = Some("127.0.0.1:0".to_owned());
    s.ws_listen = Some("127.0.0.1:0".to_owned());
    s.wss_listen = Some("127.0.0.1:0".to_owned());
    s.cert = Some(pki.path("server.pem"));
    s.key = Some(pki.path("server-key.pem"));
    (OurBroker::start(s).await, pki)
}

/// One retained QoS 1 message published over TLS (`--cafile`), one over WebSocket (`--ws`),
/// both received by a subscriber over secure WebSocket (`--cafile` and `--ws`), in 5.0 and
/// in 3.1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cafile_and_ws_flags_select_the_transport() {
    let dir = temp_dir("mqttc-transports");
    let (broker, pki) = broker(&dir).await;
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let tls = format!("localhost:{}", broker.listener("tls").port());
    let ws = format!("127.0.0.1:{}", broker.listener("ws").port());
    let wss = format!("localhost:{}", broker.listener("wss").port());
    for protocol in ["5", "3.1.1"] {
        let topic = |t: &str| format!("{protocol}/{t}");
        let (over_tls, over_ws) = (topic("tls"), topic("ws"));
        let p = run(&[
            "--connect",
            &tls,
            "--cafile",
            ca,
            "--protocol",
            protocol,
            "--id",
            "p-tls",
            "pub",
            "-t",
            &over_tls,
            "-m",
            "sent over TLS",
            "-q",
            "1",
            "-r",
        ])
        .await;
        assert!(p.status.success(), "pub over TLS: {}", text(&p.stderr));
        assert!(text(&p.stderr).contains("connected"), "{}", text(&p.stderr));
        let p = run(&[
            "--connect",
            &ws,
            "--ws",
            "/mqtt",
            "--protocol",
            protocol,
            "--id",
            "p-ws",
            "pub",
            "-t",
            &over_ws,
            "-m",
            "sent over WebSocket",
            "-q",
            "1",
            "-r",
        ])
        .await;
        assert!(
            p.status.success(),
            "pub over WebSocket: {}",
            text(&p.stderr)
        );
        let filter = topic("#");
        let s = run(&[
            "--connect",
            &wss,
            "--cafile",
            ca,
            "--ws",
            "/mqtt",
            "--protocol",
            protocol,
            "--id",
            "s-wss",
            "sub",
            "-t",
            &filter,
            "-q",
            "1",
            "-v",
            "--count",
            "2",
        ])
        .await;
        assert!(s.status.success(), "sub over wss: {}", text(&s.stderr));
        let mut lines: Vec<String> = text(&s.stdout).lines().map(str::to_owned).collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                format!("{over_tls} sent over TLS"),
                format!("{over_ws} sent over WebSocket"),
            ],
            "the subscriber's output"
        );
    }
    broker.stop().await;
}

/// A server certificate that the given CA did not sign, a CA file that does not exist, and
/// TLS without `--cafile` (the system's roots, which do not hold the test CA): mqttc refuses
/// the connection, says why on standard error and exits with failure. Nothing reaches the
/// broker: a subscriber over plain TCP afterwards finds no retained message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_or_unreadable_cafile_fails_the_run() {
    let dir = temp_dir("mqttc-untrusted");
    let (broker, pki) = broker(&dir).await;
    let tls = format!("localhost:{}", broker.listener("tls").port());
    let untrusted = pki.path("untrusted.pem");
    let missing = dir.join("no-such-ca.pem");
    let tls_url = format!("mqtts://{tls}");
    let cases: [(&str, Vec<&str>); 3] = [
        (
            "a CA that did not sign the server's certificate",
            vec!["--connect", &tls, "--cafile", untrusted.to_str().unwrap()],
        ),
        (
            "a CA file that does not exist",
            vec!["--connect", &tls, "--cafile", missing.to_str().unwrap()],
        ),
        ("the system's roots only", vec!["--connect", &tls_url]),
    ];
    for (what, mut args) in cases {
        args.extend(["pub", "-t", "never", "-m", "x", "-q", "1", "-r"]);
        let p = run(&args).await;
        let stderr = text(&p.stderr);
        assert!(!p.status.success(), "{what}: mqttc succeeded: {stderr}");
        assert!(!stderr.trim().is_empty(), "{what}: no reason given");
        assert!(!stderr.contains("connected"), "{what}: {stderr}");
        if what.contains("does not exist") {
            assert!(
                stderr.contains("no-such-ca.pem"),
                "{what}: names the file: {stderr}"
            );
        } else {
            assert!(
                stderr.contains("TLS handshake") && stderr.contains("UnknownIssuer"),
                "{what}: the certificate is refused: {stderr}"
            );
        }
    }
    // Nothing was published: a retained message would arrive at once, before the one
    // published now.
    let plain = broker.addr.to_string();
    let p = run(&[
        "--connect",
        &plain,
        "pub",
        "-t",
        "never",
        "-m",
        "later",
        "-r",
    ])
    .await;
    assert!(p.status.success(), "{}", text(&p.stderr));
    let s = run(&["--connect", &plain, "sub", "-t", "never", "--count", "1"]).await;
    assert_eq!(text(&s.stdout), "later\n");
    broker.stop().await;
}
