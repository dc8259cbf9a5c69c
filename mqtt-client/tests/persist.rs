//! The client's store (`Options::store`): a publishing process SIGKILLed at random points and
//! restarted with its store. Every message whose `publish` resolved (stored) arrives, QoS 2
//! ones exactly once, and a restart never publishes a stored message as a new one. The store
//! is locked while a client has it open, and belongs to one Client Identifier.
//! v5 [MQTT-4.3.3-10] [MQTT-4.4.0-1]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(clippy::disallowed_methods)] // real processes on a real clock: the test kills them

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mqtt_client::{Client, Error, Event, ProtocolVersion, QoS};
use support::*;

/// The environment variable that makes `child_publisher` publish:
/// `URL STORE VERSION ATTEMPT START COUNT`.
const PUBLISHER_ENV: &str = "MQTT_CLIENT_TEST_PUBLISHER";

/// Not a test: the body of a publishing child process. It publishes messages `START..COUNT`
/// (even: QoS 1, odd: QoS 2; payload `INDEX-aATTEMPT`), printing `stored PAYLOAD` once each
/// `publish` resolved, then `done` once every one is acknowledged.
#[test]
fn child_publisher() {
    let Ok(spec) = std::env::var(PUBLISHER_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split(' ').collect();
    let [url, store, version, attempt, start, count] = parts[..] else {
        panic!("bad {PUBLISHER_ENV}: {spec}");
    };
    let version = if version == "5" {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    let (start, count): (usize, usize) = (start.parse().unwrap(), count.parse().unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut o = persistent(options(url, "persist-pub", version));
        o.store = Some(store.into());
        let (client, _events) = Client::connect(o).await.unwrap();
        let mut out = std::io::stdout();
        let mut deliveries = Vec::new();
        for i in start..count {
            let qos = if i % 2 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            let payload = format!("{i}-a{attempt}");
            let mut d = client
                .publish("persist/t", payload.clone(), qos, false)
                .await
                .unwrap();
            // Durable from here: the restarted process must deliver it.
            d.stored().await.unwrap();
            writeln!(out, "stored {payload}").unwrap();
            out.flush().unwrap();
            deliveries.push(d);
        }
        for d in deliveries {
            assert_delivered(d.await.unwrap());
        }
        // Messages restored from the store have no Delivery: wait for their flows too (a
        // QoS 2 message that mosquitto has not seen the PUBREL of is not delivered yet).
        client.flush().await.unwrap();
        writeln!(out, "done").unwrap();
        out.flush().unwrap();
        client.disconnect().await.unwrap();
    });
}

/// Runs one publishing process; kills it after `kill_after` if given. Returns the payloads it
/// said were stored and whether it finished.
fn run_publisher(
    url: &str,
    store: &Path,
    version: ProtocolVersion,
    attempt: usize,
    start: usize,
    count: usize,
    kill_after: Option<Duration>,
) -> (Vec<String>, bool) {
    let v = if version == ProtocolVersion::V5 {
        "5"
    } else {
        "3.1.1"
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_publisher",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            PUBLISHER_ENV,
            format!("{url} {} {v} {attempt} {start} {count}", store.display()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut stored = Vec::new();
        let mut done = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // (The test harness's "test child_publisher ... " may begin the first line.)
            if let Some((_, p)) = line.split_once("stored ") {
                stored.push(p.to_owned());
            } else if line.ends_with("done") {
                done = true;
            }
        }
        (stored, done)
    });
    match kill_after {
        Some(after) => {
            std::thread::sleep(after);
            let _ = child.kill();
        }
        None => {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while child.try_wait().unwrap().is_none() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the last publisher did not finish"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let _ = child.wait();
    reader.join().unwrap()
}

/// The publishing processes against the broker at `url` (the subscriber is in this process).
async fn sigkilled_publisher(url: &str, version: ProtocolVersion, tag: &str) {
    const COUNT: usize = 300;
    let dir = temp_dir(&format!("persist-{tag}"));
    let url = url.to_owned();
    let (sub, mut events) =
        Client::connect(persistent(options(&url, &format!("{tag}-sub"), version)))
            .await
            .unwrap();
    sub.subscribe("persist/#", QoS::ExactlyOnce).await.unwrap();
    let store = dir.join("client.redb");
    let seed = fastrand_seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut stored_all: Vec<String> = Vec::new();
    let mut next = 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Four killed processes, at random moments, then one that runs to the end.
        let kill_after = (attempt <= 4).then(|| Duration::from_millis(rng.u64(30..250)));
        let (u, st) = (url.clone(), store.clone());
        let (stored, done) = tokio::task::spawn_blocking(move || {
            run_publisher(&u, &st, version, attempt, next, COUNT, kill_after)
        })
        .await
        .unwrap();
        if let Some(last) = stored.last() {
            next = last.split('-').next().unwrap().parse::<usize>().unwrap() + 1;
        }
        stored_all.extend(stored);
        if done || next >= COUNT {
            if kill_after.is_none() {
                break;
            }
            // Finished before the kill: one last process flushes whatever remains.
            if next >= COUNT {
                let (url, store) = (url.clone(), store.clone());
                let (_, done) = tokio::task::spawn_blocking(move || {
                    run_publisher(&url, &store, version, attempt + 1, COUNT, COUNT, None)
                })
                .await
                .unwrap();
                assert!(done);
                break;
            }
        }
    }
    // Every stored message arrives; QoS 2 ones (odd indices) once; nothing is new.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let wanted = stored_all.len();
    let got_all = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let have = stored_all.iter().filter(|p| seen.contains_key(*p)).count();
            if have == wanted {
                return;
            }
            match events.recv().await {
                Some(Event::Message(m)) => {
                    *seen
                        .entry(String::from_utf8(m.payload.to_vec()).unwrap())
                        .or_default() += 1;
                }
                Some(_) => {}
                None => panic!("the subscriber stopped"),
            }
        }
    })
    .await;
    // Anything else still on its way (duplicates would show here).
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        if let Event::Message(m) = e {
            *seen
                .entry(String::from_utf8(m.payload.to_vec()).unwrap())
                .or_default() += 1;
        }
    }
    let missing: Vec<_> = stored_all
        .iter()
        .filter(|p| !seen.contains_key(*p))
        .collect();
    assert!(
        got_all.is_ok() && missing.is_empty(),
        "seed {seed}: {} stored messages never arrived: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    for (payload, n) in &seen {
        let index: usize = payload.split('-').next().unwrap().parse().unwrap();
        if index % 2 == 1 {
            assert_eq!(
                *n, 1,
                "seed {seed}: QoS 2 message {payload} arrived {n} times"
            );
        }
    }
    eprintln!(
        "{tag}: seed {seed}, {attempt} processes, {} messages stored, {} distinct arrived",
        stored_all.len(),
        seen.len()
    );
    sub.disconnect().await.unwrap();
}

fn fastrand_seed() -> u64 {
    std::env::var("MQTT_CLIENT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_3_3_10_a_publisher_sigkilled_at_random_points_resumes_from_its_store() {
    let dir = temp_dir("persist-broker");
    let broker = OurBroker::tcp(&dir).await;
    sigkilled_publisher(&broker.url(), ProtocolVersion::V5, "p5").await;
    sigkilled_publisher(&broker.url(), ProtocolVersion::V3_1_1, "p311").await;
    broker.stop().await;
}

/// The same against mosquitto (which is not restarted here: only the publisher dies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_4_3_3_10_a_publisher_sigkilled_at_random_points_resumes_against_mosquitto() {
    let dir = temp_dir("persist-mosquitto");
    let Some(mosquitto) = Mosquitto::start(&dir).await else {
        return;
    };
    sigkilled_publisher(&mosquitto.url(), ProtocolVersion::V5, "m5").await;
    sigkilled_publisher(&mosquitto.url(), ProtocolVersion::V3_1_1, "m311").await;
}

/// The store is locked while a client has it open, and serves one Client Identifier.
#[tokio::test]
async fn the_store_is_locked_and_belongs_to_one_client() {
    let dir = temp_dir("store-lock");
    let broker = OurBroker::tcp(&dir.join("broker")).await;
    let store = dir.join("client.redb");
    let mut o = persistent(options(&broker.url(), "owner", ProtocolVersion::V5));
    o.store = Some(store.clone());
    let (first, _events) = Client::connect(o.clone()).await.unwrap();
    let second = Client::connect(o.clone()).await;
    assert!(
        matches!(&second, Err(Error::Store(e)) if e.contains("already in use")),
        "{second:?}"
    );
    first.disconnect().await.unwrap();
    // Released once the first client stopped.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (again, _events) = Client::connect(o.clone()).await.unwrap();
    again.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut other = persistent(options(&broker.url(), "someone-else", ProtocolVersion::V5));
    other.store = Some(store);
    let refused = Client::connect(other).await;
    assert!(
        matches!(&refused, Err(Error::Store(e)) if e.contains("owner")),
        "{refused:?}"
    );
    broker.stop().await;
}
