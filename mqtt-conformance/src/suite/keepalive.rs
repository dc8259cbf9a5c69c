//! Keep Alive and PINGREQ: the broker closes a silent connection after one and a half times
//! the Keep Alive (or the Server Keep Alive it sends), and answers every PINGREQ.

use std::time::Duration;

use mqtt_codec::{Packet, PacketType};
use tokio::time::Instant;

use super::TestCase;
use super::connect::{briefs, check_server_disconnects, until_close};
use crate::ctx::Ctx;
use crate::ensure;
use crate::outcome::{Stop, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "keepalive.timeout",
            ["MQTT-3.1.2-22", "MQTT-3.2.2-22"],
            "Keep Alive 1 s on 6 connections: PINGREQs keep each open; after its last, silence closes it at 1.5 s (the Server Keep Alive's, if sent)",
            [],
            false,
            timeout
        ),
        case!(
            v311,
            "keepalive.timeout",
            ["MQTT-3.1.2-24"],
            "Keep Alive 1 s on 6 connections: PINGREQs keep each open; after its last, silence closes it at 1.5 s",
            [],
            false,
            timeout
        ),
        case!(
            v5,
            "keepalive.pingresp",
            ["MQTT-3.12.4-1"],
            "every PINGREQ gets a PINGRESP",
            [],
            false,
            pingresp
        ),
        case!(
            v311,
            "keepalive.pingresp",
            ["MQTT-3.12.4-1"],
            "every PINGREQ gets a PINGRESP",
            [],
            false,
            pingresp
        ),
    ]
}

/// The longest Server Keep Alive the test waits out (seconds): longer ones would make it slow.
const LONGEST: u16 = 2;

/// How many connections the timeout test watches, their last packets a Keep Alive apart: a
/// broker that checks Keep Alive on a coarse periodic scan (mosquitto's runs every few
/// seconds) closes some of them late whatever the phase of its scan, so the verdict does not
/// depend on when the test happens to start.
const WATCHED: u32 = 6;

async fn timeout(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-3.1.2-22"
    } else {
        "MQTT-3.1.2-24"
    };
    let watched = (0..WATCHED).map(|i| watch_one(&cx, st, i));
    let results = futures_util::future::join_all(watched).await;
    let mut late = Vec::new();
    let mut closes = Vec::new();
    for r in results {
        match r? {
            Watched::OnTime(after) => closes.push(format!("{after:.1?}")),
            Watched::Late(evidence) => late.push(evidence),
            Watched::NotApplicable(why) => return Err(Stop::NotApplicable(why)),
            Watched::Skip(why) => return Err(Stop::Skip(why)),
        }
    }
    if let Some(first) = late.first() {
        return Err(crate::Failure::of(
            first.0,
            format!(
                "every idle connection closed by 1.5 x its Keep Alive (+1 s tolerance) after its last packet ({WATCHED} connections, last packets a Keep Alive apart)"
            ),
            format!(
                "{} of {WATCHED} late: {}; on time: [{}]",
                late.len(),
                late.iter().map(|l| l.1.as_str()).collect::<Vec<_>>().join("; "),
                closes.join(", ")
            ),
        )
        .into());
    }
    Ok(())
}

enum Watched {
    OnTime(Duration),
    Late((&'static str, String)),
    NotApplicable(String),
    Skip(String),
}

/// One connection with Keep Alive 1: PINGREQs half a Keep Alive apart (they keep it open),
/// the last `i` Keep Alives later than the first connection's, then silence; the
/// broker must close it not before 1 x and by 1.5 x the Keep Alive (+1 s tolerance).
async fn watch_one(cx: &Ctx, st: &'static str, i: u32) -> Result<Watched, Stop> {
    let name = format!("k{i}");
    let mut c = cx.connect_packet(&name);
    c.keep_alive = 1;
    let (mut conn, ack) = cx.connect_with(&name, c).await?;
    let (keep_alive, st) = match ack.properties.server_keep_alive {
        Some(0) => {
            return Ok(Watched::NotApplicable(
                "the broker's Server Keep Alive is 0: it never closes an idle connection".into(),
            ));
        }
        Some(s) if s > LONGEST => {
            return Ok(Watched::Skip(format!(
                "the broker's Server Keep Alive is {s} s: too long to wait out"
            )));
        }
        Some(s) => (s, "MQTT-3.1.2-22"),
        None if cx.v5() => (1, "MQTT-3.2.2-22"),
        None => (1, st),
    };
    let ka = Duration::from_secs(u64::from(keep_alive));
    // PINGREQs every half Keep Alive: two, and two more per connection before this one (the
    // stagger), so that each connection's last packet comes a Keep Alive after the previous
    // one's.
    for _ in 0..2 + 2 * i {
        tokio::time::sleep(ka / 2).await;
        conn.send(Packet::PingReq).await?;
        conn.expect_type(PacketType::PingResp, st).await?;
    }
    let last = Instant::now();
    let limit = ka * 3 / 2 + Duration::from_secs(1);
    let got = match until_close(&mut conn, st, limit).await {
        Ok(got) => got,
        Err(Stop::Fail(f)) if f.statement == Some(st) => {
            return Ok(Watched::Late((st, format!("[{name}] {}", f.observed))));
        }
        Err(e) => return Err(e),
    };
    let after = last.elapsed();
    ensure!(
        after >= ka,
        st,
        format!("the close 1.5 x {keep_alive} s after the last packet (not before {keep_alive} s)"),
        "[{name}] closed after {after:?}"
    );
    if cx.v5() {
        check_server_disconnects(&got)?;
    }
    ensure!(
        got.iter().all(|p| matches!(p, Packet::Disconnect(_))),
        st,
        "nothing but a DISCONNECT before the close",
        "{}",
        briefs(&got)
    );
    Ok(Watched::OnTime(after))
}

async fn pingresp(cx: Ctx) -> TestResult {
    let mut conn = cx.connect("p").await?;
    for _ in 0..3 {
        conn.send(Packet::PingReq).await?;
        conn.expect_type(PacketType::PingResp, "MQTT-3.12.4-1")
            .await?;
    }
    // Two at once get two.
    conn.send(Packet::PingReq).await?;
    conn.send(Packet::PingReq).await?;
    conn.expect_type(PacketType::PingResp, "MQTT-3.12.4-1")
        .await?;
    conn.expect_type(PacketType::PingResp, "MQTT-3.12.4-1")
        .await?;
    conn.disconnect().await;
    Ok(())
}
