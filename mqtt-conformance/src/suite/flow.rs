//! Flow control (5.0): the broker sends at most the tester's Receive Maximum unacknowledged
//! QoS 1/2 PUBLISH packets and keeps answering other packets when its quota is used up; more
//! PUBLISH packets than the broker's Receive Maximum close the connection; the tester's
//! Maximum Packet Size is respected.

use std::collections::BTreeSet;
use std::num::{NonZeroU16, NonZeroU32};

use mqtt_codec::{
    Packet, PacketType, PubAck, PubComp, PubRec, ReasonCode, SubscriptionOptions, Unsubscribe,
};

use super::TestCase;
use super::qos::{drain, end_session, pump, take, text};
use super::raw::publish_frame;
use crate::conn::{Conn, Received, brief};
use crate::ctx::{Ctx, filter, pid, publish, subscribe};
use crate::ensure;
use crate::outcome::{Failure, Stop, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "flow.receive_maximum_qos1",
            ["MQTT-3.3.4-9", "MQTT-4.9.0-1", "MQTT-4.9.0-2"],
            "with the tester's Receive Maximum 2, at most 2 QoS 1 PUBLISH unacknowledged, at least 1 sent, PUBACK releases more",
            [Qos1],
            false,
            receive_maximum_qos1
        ),
        case!(
            v5,
            "flow.receive_maximum_qos2",
            ["MQTT-3.3.4-9", "MQTT-4.9.0-2"],
            "with Receive Maximum 2, QoS 2 PUBLISH packets answered with PUBREC 0x00 stay counted until PUBCOMP",
            [Qos2],
            false,
            receive_maximum_qos2
        ),
        case!(
            v5,
            "flow.quota_zero_other_packets",
            ["MQTT-3.3.4-10", "MQTT-4.9.0-3"],
            "with the send quota used up, PINGREQ, SUBSCRIBE, UNSUBSCRIBE and a QoS 1 PUBLISH are still answered",
            [Qos1],
            false,
            quota_zero_other_packets
        ),
        case!(
            v5,
            "flow.receive_maximum_exceeded",
            ["MQTT-4.13.1-1"],
            "more unacknowledged QoS 2 PUBLISH packets than the broker's Receive Maximum: DISCONNECT 0x93 (or none) and close",
            [Qos2],
            false,
            receive_maximum_exceeded
        ),
        case!(
            v5,
            "flow.maximum_packet_size",
            ["MQTT-3.1.2-24", "MQTT-3.1.2-25"],
            "a message too large for the tester's Maximum Packet Size is not sent, not resent on resume, and later ones are",
            [Qos1],
            false,
            maximum_packet_size
        ),
    ]
}

/// Connects `name` with Receive Maximum `rm`.
async fn connect_rm(cx: &Ctx, name: &str, rm: u16) -> Result<Conn, Stop> {
    let mut c = cx.connect_packet(name);
    c.properties.receive_maximum = NonZeroU16::new(rm);
    Ok(cx.connect_with(name, c).await?.0)
}

/// Reads PUBLISH packets until nothing comes for the quiet time; PUBREL packets are collected
/// as well (not answered).
async fn gather(cx: &Ctx, conn: &mut Conn) -> Result<(Vec<mqtt_codec::Publish>, Vec<u16>), Stop> {
    let mut pubs = Vec::new();
    let mut rels = Vec::new();
    loop {
        match conn.recv_within(cx.quiet_for()).await? {
            None => return Ok((pubs, rels)),
            Some(Received::Closed) => {
                return Err(Failure::plain("an open connection", "the broker closed it").into());
            }
            Some(Received::Packet(Packet::Publish(p))) => pubs.push(p),
            Some(Received::Packet(Packet::PubRel(r))) => rels.push(r.packet_id.get()),
            Some(Received::Packet(other)) => {
                return Err(Failure::plain("PUBLISH or PUBREL", brief(&other)).into());
            }
        }
    }
}

async fn receive_maximum_qos1(cx: Ctx) -> TestResult {
    let rm = 2usize;
    let total = 6usize;
    let t = cx.topic("rm1");
    let mut sub = connect_rm(&cx, "s", 2).await?;
    sub.sub(&t, 1).await?;
    let mut conn = cx.connect("p").await?;
    let list = (0..total)
        .map(|i| publish(&t, &format!("m{i}"), 1, u16::try_from(i + 1).unwrap_or(1)))
        .collect::<Result<Vec<_>, _>>()?;
    pump(&mut conn, list, usize::from(cx.caps().receive_maximum)).await?;
    let mut unacked: Vec<mqtt_codec::Publish> = Vec::new();
    let mut received = 0usize;
    while received < total {
        let (pubs, _) = gather(&cx, &mut sub).await?;
        received += pubs.len();
        unacked.extend(pubs);
        ensure!(
            unacked.len() <= rm,
            "MQTT-3.3.4-9",
            format!("at most {rm} unacknowledged QoS 1 PUBLISH packets"),
            "{} unacknowledged",
            unacked.len()
        );
        ensure!(
            !unacked.is_empty(),
            "MQTT-4.9.0-1",
            "a non-zero send quota: a PUBLISH sent while none is unacknowledged",
            "nothing within {:?} with {} of {total} messages delivered",
            cx.quiet_for(),
            received
        );
        // Acknowledge the oldest one only.
        let p = unacked.remove(0);
        if let Some(id) = p.packet_id {
            sub.send(PubAck::new(id)).await?;
        }
    }
    for p in &unacked {
        if let Some(id) = p.packet_id {
            sub.send(PubAck::new(id)).await?;
        }
    }
    let extra = drain(&cx, &mut sub, true).await?;
    ensure!(
        extra.is_empty(),
        "MQTT-4.9.0-2",
        format!("{total} messages, each once"),
        "more: {:?}",
        extra.iter().map(text).collect::<Vec<_>>()
    );
    sub.disconnect().await;
    conn.disconnect().await;
    Ok(())
}

async fn receive_maximum_qos2(cx: Ctx) -> TestResult {
    let rm = 2usize;
    let total = 4usize;
    let t = cx.topic("rm2");
    let mut sub = connect_rm(&cx, "s", 2).await?;
    sub.sub(&t, 2).await?;
    let mut conn = cx.connect("p").await?;
    let list = (0..total)
        .map(|i| publish(&t, &format!("m{i}"), 2, u16::try_from(i + 1).unwrap_or(1)))
        .collect::<Result<Vec<_>, _>>()?;
    pump(&mut conn, list, usize::from(cx.caps().receive_maximum)).await?;
    let mut received = 0usize;
    while received < total {
        let (pubs, _) = gather(&cx, &mut sub).await?;
        ensure!(
            !pubs.is_empty() && pubs.len() <= rm,
            "MQTT-4.9.0-2",
            format!("1 to {rm} QoS 2 PUBLISH packets while none is unacknowledged"),
            "{} ({} of {total} delivered before)",
            pubs.len(),
            received
        );
        received += pubs.len();
        let ids: BTreeSet<u16> = pubs
            .iter()
            .filter_map(|p| p.packet_id.map(|i| i.get()))
            .collect();
        for id in &ids {
            sub.send(PubRec::new(pid(*id))).await?;
        }
        // PUBREC 0x00 does not release the quota: only PUBREL packets may come now.
        let (more, rels) = gather(&cx, &mut sub).await?;
        ensure!(
            more.is_empty(),
            "MQTT-3.3.4-9",
            format!("no PUBLISH while {rm} QoS 2 PUBLISH packets await PUBCOMP"),
            "{:?}",
            more.iter()
                .map(|p| brief(&Packet::Publish(p.clone())))
                .collect::<Vec<_>>()
        );
        let rels: BTreeSet<u16> = rels.into_iter().collect();
        ensure!(
            rels == ids,
            "MQTT-4.3.3-4",
            format!("PUBREL for {ids:?}"),
            "PUBREL for {rels:?}"
        );
        for id in &ids {
            sub.send(PubComp::new(pid(*id))).await?;
        }
    }
    let extra = drain(&cx, &mut sub, true).await?;
    ensure!(
        extra.is_empty(),
        "MQTT-4.9.0-2",
        format!("{total} messages, each once"),
        "more: {:?}",
        extra.iter().map(text).collect::<Vec<_>>()
    );
    sub.disconnect().await;
    conn.disconnect().await;
    Ok(())
}

async fn quota_zero_other_packets(cx: Ctx) -> TestResult {
    let (st10, st3) = ("MQTT-3.3.4-10", "MQTT-4.9.0-3");
    let t = cx.topic("qz");
    let mut sub = connect_rm(&cx, "s", 1).await?;
    sub.sub(&t, 1).await?;
    let mut conn = cx.connect("p").await?;
    let list = (0..3)
        .map(|i| publish(&t, &format!("m{i}"), 1, u16::try_from(i + 1).unwrap_or(1)))
        .collect::<Result<Vec<_>, _>>()?;
    pump(&mut conn, list, usize::from(cx.caps().receive_maximum)).await?;
    let (pubs, _) = gather(&cx, &mut sub).await?;
    ensure!(
        pubs.len() == 1,
        "MQTT-4.9.0-2",
        "exactly one PUBLISH with Receive Maximum 1 (quota now zero)",
        "{}",
        pubs.len()
    );
    // The quota is zero: other packets must still be answered.
    sub.send(Packet::PingReq).await?;
    let p = sub.recv(st10, "a PINGRESP").await?;
    ensure!(
        matches!(p, Packet::PingResp),
        st10,
        "PINGRESP while the send quota is zero",
        "{}",
        brief(&p)
    );
    sub.send(subscribe(
        7,
        &cx.topic("other"),
        SubscriptionOptions::default(),
    )?)
    .await?;
    let p = sub.recv(st3, "a SUBACK").await?;
    ensure!(
        p.packet_type() == PacketType::SubAck,
        st3,
        "SUBACK while the send quota is zero",
        "{}",
        brief(&p)
    );
    sub.send(Unsubscribe {
        packet_id: pid(8),
        properties: Default::default(),
        filters: vec![filter(&cx.topic("other"))?],
    })
    .await?;
    let p = sub.recv(st3, "an UNSUBACK").await?;
    ensure!(
        p.packet_type() == PacketType::UnsubAck,
        st3,
        "UNSUBACK while the send quota is zero",
        "{}",
        brief(&p)
    );
    sub.send(publish(&cx.topic("elsewhere"), "x", 1, 9)?)
        .await?;
    let p = sub.recv(st3, "a PUBACK").await?;
    ensure!(
        p.packet_type() == PacketType::PubAck,
        st3,
        "PUBACK for the tester's own QoS 1 PUBLISH while the send quota is zero",
        "{}",
        brief(&p)
    );
    // Release the quota: the other two arrive.
    if let Some(id) = pubs.first().and_then(|p| p.packet_id) {
        sub.send(PubAck::new(id)).await?;
    }
    take(&mut sub, 2, true, "MQTT-4.9.0-2").await?;
    sub.disconnect().await;
    conn.disconnect().await;
    Ok(())
}

async fn receive_maximum_exceeded(cx: Ctx) -> TestResult {
    let st = "MQTT-4.13.1-1";
    let rm = cx.caps().receive_maximum;
    if rm > 4096 {
        return Err(Stop::NotApplicable(format!(
            "the broker's Receive Maximum is {rm}: too many messages to exceed it cheaply"
        )));
    }
    let t = cx.topic("rmx");
    let mut conn = cx.connect("p").await?;
    for i in 1..=rm {
        conn.send(publish(&t, "m", 2, i)?).await?;
    }
    let mut recs = 0u16;
    while recs < rm {
        match conn.recv(st, "PUBREC for each QoS 2 PUBLISH").await? {
            Packet::PubRec(_) => recs += 1,
            other => {
                return Err(Failure::of(st, "PUBREC", brief(&other)).into());
            }
        }
    }
    // One more than the Receive Maximum, none of them completed.
    let extra = rm.saturating_add(1);
    conn.send_raw_lenient(
        &publish_frame(true, 0x04, t.as_bytes(), Some(extra), &[], b"m"),
        "one QoS 2 PUBLISH above the broker's Receive Maximum",
    )
    .await?;
    let code = conn.expect_close(st, None).await?;
    if let Some(c) = code {
        ensure!(
            c == ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
            st,
            "DISCONNECT 0x93 (Receive Maximum exceeded), or none, then the close",
            "DISCONNECT {:#04x}",
            c.0
        );
    }
    Ok(())
}

async fn maximum_packet_size(cx: Ctx) -> TestResult {
    let (st24, st25) = ("MQTT-3.1.2-24", "MQTT-3.1.2-25");
    let t = cx.topic("mps");
    let connect = |clean: bool| {
        let mut c = cx.connect_packet("s");
        c.clean_start = clean;
        c.properties.session_expiry_interval = Some(60);
        c.properties.maximum_packet_size = NonZeroU32::new(128);
        c
    };
    let (mut sub, _) = cx.connect_with("s", connect(true)).await?;
    sub.sub(&t, 1).await?;
    let mut conn = cx.connect("p").await?;
    let big = "x".repeat(400);
    pump(
        &mut conn,
        vec![publish(&t, &big, 1, 1)?, publish(&t, "small", 1, 2)?],
        1,
    )
    .await?;
    // The decoder refuses any packet over 128 bytes (Conn), so what arrives fits.
    let got = take(&mut sub, 1, true, st25).await?;
    ensure!(
        got.first().map(text).as_deref() == Some("small"),
        st24,
        "only the small message (the large one would exceed Maximum Packet Size 128)",
        "{:?}",
        got.iter().map(text).collect::<Vec<_>>()
    );
    let more = drain(&cx, &mut sub, true).await?;
    ensure!(
        more.is_empty(),
        st24,
        "nothing more",
        "{:?}",
        more.iter().map(|p| p.payload.len()).collect::<Vec<_>>()
    );
    sub.drop_abruptly().await;
    let (mut sub, ack) = cx.connect_with("s", connect(false)).await?;
    if !ack.session_present {
        sub.disconnect().await;
        conn.disconnect().await;
        end_session(&cx, "s").await;
        return Err(Stop::NotApplicable(
            "the broker kept no session (Session Present 0 on reconnect): whether the discarded \
             message counts as sent is not observable"
                .into(),
        ));
    }
    let again = drain(&cx, &mut sub, true).await?;
    ensure!(
        again.is_empty(),
        st25,
        "the discarded message treated as sent: not resent on session resume",
        "{:?}",
        again
            .iter()
            .map(|p| format!("{} bytes of payload", p.payload.len()))
            .collect::<Vec<_>>()
    );
    sub.disconnect().await;
    conn.disconnect().await;
    end_session(&cx, "s").await;
    Ok(())
}
