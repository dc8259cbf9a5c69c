//! The whole suite, in-process, against this workspace's broker (`mqtt-broker` as a library)
//! in two profiles: its defaults, where every test must pass and none be skipped, and a
//! limited one (Maximum QoS 1, no retained messages, no wildcard or shared subscriptions, no
//! Subscription Identifiers, a 1 kB Maximum Packet Size, Topic Alias Maximum 0), where the
//! rules for brokers without those features run instead.
//!
//! This is also the example of the library API: a broker's own `cargo test` can do the same.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use mqtt_broker::{Server, Settings};
use mqtt_conformance::{Options, Verdict};

// The test PKI of mqtt-transport's tests (rcgen at test time): `ca.pem`, `server.pem`,
// `server-key.pem` for localhost and 127.0.0.1.
#[allow(dead_code)]
#[path = "../../mqtt-transport/tests/support/pki.rs"]
mod pki;

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mqtt-conformance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs the suite against a broker with `settings`, over TCP, and over WebSocket and TLS too
/// when `transports`.
async fn run_against(
    mut settings: Settings,
    name: &str,
    transports: bool,
) -> mqtt_conformance::Report {
    let dir = data_dir(name);
    settings.listen = "127.0.0.1:0".into();
    settings.data_dir = dir.join("data");
    settings.sys_interval = 0;
    let pki = pki::write(&dir);
    // Clients must log in (a password file), so that the wrong-password rules run too.
    let passwords = dir.join("passwords");
    mqtt_broker::password::set_password(&passwords, "tester", b"conformance")
        .expect("a password file");
    settings.password_file = Some(passwords);
    // Anonymous clients too: the tests that write a CONNECT byte by byte send no credentials.
    settings.allow_anonymous = true;
    // One topic no client may publish to, for the rules on unauthorized PUBLISH packets.
    let acl = dir.join("acl");
    std::fs::write(&acl, "default allow\ndeny publish mqttconf-denied/#\n").expect("an ACL");
    settings.acl = Some(acl);
    if transports {
        settings.ws_listen = Some("127.0.0.1:0".into());
        settings.tls_listen = Some("127.0.0.1:0".into());
        settings.cert = Some(pki.join("server.pem"));
        settings.key = Some(pki.join("server-key.pem"));
    }
    let server = Server::bind(settings).await.expect("the broker binds");
    let addr = server.local_addr();
    let mut options = Options::new(addr.to_string()).with_credentials("tester", "conformance");
    options.denied_topic = Some("mqttconf-denied/t".into());
    for (kind, at) in server.listeners() {
        match kind {
            "ws" => options.websocket = Some(format!("ws://{at}/mqtt")),
            "tls" => {
                options.tls = Some(format!("localhost:{}", at.port()));
                options.cafile = Some(pki.join("ca.pem"));
            }
            _ => {}
        }
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let report = mqtt_conformance::run(&options)
        .await
        .expect("the run starts");
    let _ = stop.send(());
    let _ = serving.await;
    println!("{}", report.to_table(false));
    let _ = std::fs::remove_dir_all(&dir);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_test_passes_against_the_default_profile() {
    let report = run_against(Settings::default(), "default", true).await;
    let c = report.counts();
    assert_eq!(c.failed, 0, "failed: {:?}", report.failed());
    let not_run: Vec<_> = report
        .tests
        .iter()
        .filter(|t| matches!(t.verdict, Verdict::Skip { .. }))
        .map(|t| t.id.as_str())
        .collect();
    assert!(
        not_run.is_empty(),
        "skipped in the default profile: {not_run:?}"
    );
    assert!(c.passed > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_test_passes_or_is_skipped_against_the_limited_profile() {
    let mut s = Settings::default();
    s.maximum_qos = 1;
    s.retain_available = false;
    s.wildcard_subscriptions = false;
    s.subscription_identifiers = false;
    s.shared_subscriptions = false;
    s.max_packet_size = 1024;
    s.topic_alias_maximum = 0;
    let report = run_against(s, "limited", false).await;
    let c = report.counts();
    assert_eq!(c.failed, 0, "failed: {:?}", report.failed());
    assert!(c.passed > 0);
    // The rules for brokers without these features ran, and passed.
    for id in [
        "v5.qos.maximum_qos_refused",
        "v5.qos.subscribe_above_maximum",
        "v5.retain.not_supported",
        "v5.shared.not_supported",
        "v5.subscribe.no_wildcards_refused",
        "v311.subscribe.no_wildcards_refused",
        "v5.subscribe.no_subscription_ids_refused",
        "v5.will.qos_not_supported",
        "v5.will.retain_not_supported",
        "v5.malformed.packet_too_large",
    ] {
        let t = report.tests.iter().find(|t| t.id == id);
        assert!(
            t.is_some_and(|t| t.verdict == Verdict::Pass),
            "{id}: {:?}",
            t.map(|t| &t.verdict)
        );
    }
}
