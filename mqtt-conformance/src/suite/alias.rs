//! Topic Aliases (5.0): the tester's aliases up to the broker's Topic Alias Maximum are
//! accepted, 0 and above it close the connection, mappings do not outlive a connection; the
//! broker's aliases stay within the tester's Topic Alias Maximum and are absent when it is 0.

use std::num::NonZeroU16;

use mqtt_codec::{Packet, Publish, ReasonCode, TopicName};

use super::TestCase;
use super::qos::{drain, pump, take, text};
use super::raw::publish_frame;
use crate::conn::brief;
use crate::ctx::{Ctx, publish};
use crate::ensure;
use crate::outcome::{Stop, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "alias.client_alias_accepted",
            ["MQTT-3.3.2-12"],
            "Topic Aliases 1 and the broker's maximum are accepted: set with a topic, then used with an empty topic, both delivered on the full topic",
            [TopicAliases, Qos1, Wildcards],
            false,
            client_alias_accepted
        ),
        case!(
            v5,
            "alias.above_maximum",
            ["MQTT-4.13.1-1"],
            "a Topic Alias above the broker's Topic Alias Maximum: DISCONNECT 0x94 (or none) and close",
            [],
            false,
            above_maximum
        ),
        case!(
            v5,
            "alias.zero",
            ["MQTT-4.13.1-1"],
            "a Topic Alias of 0: DISCONNECT 0x81, 0x82 or 0x94 (or none) and close",
            [],
            false,
            alias_zero
        ),
        case!(
            v5,
            "alias.not_carried_over",
            ["MQTT-3.3.2-7"],
            "an alias set on one connection is unknown on the next: an empty topic with it is a Protocol Error",
            [TopicAliases, Qos1],
            false,
            not_carried_over
        ),
        case!(
            v5,
            "alias.server_within_maximum",
            ["MQTT-3.1.2-26", "MQTT-3.3.2-8"],
            "with the tester's Topic Alias Maximum 2, every alias the broker sends is 1 or 2 (never 0) and maps to the right topic",
            [Wildcards],
            false,
            server_within_maximum
        ),
        case!(
            v5,
            "alias.server_none_without_maximum",
            ["MQTT-3.1.2-27"],
            "without a Topic Alias Maximum (or with 0) the broker sends no Topic Alias",
            [],
            false,
            server_none_without_maximum
        ),
    ]
}

/// A QoS 1 PUBLISH with Topic Alias `alias` and `topic` (empty: use the alias).
fn aliased(topic: &str, alias: u16, payload: &str, id: u16) -> Result<Publish, Stop> {
    let mut p = if topic.is_empty() {
        let mut p = publish("x", payload, 1, id)?;
        p.topic = TopicName::empty();
        p
    } else {
        publish(topic, payload, 1, id)?
    };
    p.properties.topic_alias = NonZeroU16::new(alias);
    Ok(p)
}

async fn client_alias_accepted(cx: Ctx) -> TestResult {
    let st = "MQTT-3.3.2-12";
    let max = cx.caps().topic_alias_maximum;
    let mut sub = cx.connect("s").await?;
    sub.sub(&cx.topic("a/#"), 0).await?;
    let mut conn = cx.connect("p").await?;
    let mut aliases = vec![1u16];
    if max > 1 {
        aliases.push(max);
    }
    let mut id = 1;
    for a in aliases {
        let t = cx.topic(&format!("a/{a}"));
        for (topic, payload) in [(t.as_str(), "set"), ("", "use")] {
            conn.send(aliased(topic, a, payload, id)?).await?;
            let ack = conn.recv(st, "a PUBACK").await?;
            let ok = match &ack {
                Packet::PubAck(x) => x.packet_id.get() == id && !x.reason_code.is_error(),
                _ => false,
            };
            ensure!(
                ok,
                st,
                format!("PUBACK {id} (success) for a PUBLISH with Topic Alias {a}"),
                "{}",
                brief(&ack)
            );
            id += 1;
            let got = take(&mut sub, 1, false, st).await?;
            let p = got.first();
            ensure!(
                p.is_some_and(|p| &*p.topic == t.as_str() && text(p) == payload),
                st,
                format!("{payload:?} delivered on {t:?} (Topic Alias {a})"),
                "{:?}",
                p.map(|p| brief(&Packet::Publish(p.clone())))
            );
        }
    }
    conn.disconnect().await;
    sub.disconnect().await;
    Ok(())
}

/// Sends `wire` and expects the close, with at most a DISCONNECT among `codes`.
async fn refused(cx: &Ctx, wire: &[u8], what: &str, st: &'static str, codes: &[u8]) -> TestResult {
    let t = cx.topic("ref");
    let mut sub = cx.connect("s").await?;
    sub.sub(&t, 0).await?;
    let mut conn = cx.connect("p").await?;
    conn.send_raw_lenient(wire, what).await?;
    let code = conn.expect_close(st, None).await?;
    if let Some(c) = code {
        ensure!(
            codes.contains(&c.0),
            st,
            format!(
                "DISCONNECT {}, or none, then the close",
                codes
                    .iter()
                    .map(|c| format!("{c:#04x}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            "DISCONNECT {:#04x}",
            c.0
        );
    }
    let got = drain(cx, &mut sub, false).await?;
    ensure!(
        got.is_empty(),
        st,
        "the refused PUBLISH not delivered",
        "{:?}",
        got.iter().map(text).collect::<Vec<_>>()
    );
    sub.disconnect().await;
    Ok(())
}

async fn above_maximum(cx: Ctx) -> TestResult {
    let max = cx.caps().topic_alias_maximum;
    let Some(alias) = max.checked_add(1) else {
        return Err(Stop::NotApplicable(
            "the broker's Topic Alias Maximum is 65535: no alias is above it".into(),
        ));
    };
    let t = cx.topic("ref");
    let mut props = vec![0x23];
    props.extend_from_slice(&alias.to_be_bytes());
    let wire = publish_frame(true, 0x00, t.as_bytes(), None, &props, b"above");
    refused(
        &cx,
        &wire,
        &format!("PUBLISH with Topic Alias {alias} (maximum {max})"),
        "MQTT-4.13.1-1",
        &[0x94],
    )
    .await
}

async fn alias_zero(cx: Ctx) -> TestResult {
    let t = cx.topic("ref");
    let wire = publish_frame(true, 0x00, t.as_bytes(), None, &[0x23, 0x00, 0x00], b"zero");
    refused(
        &cx,
        &wire,
        "PUBLISH with Topic Alias 0",
        "MQTT-4.13.1-1",
        // The specification names no code for alias 0: Malformed Packet, Protocol Error and
        // Topic Alias invalid all describe it.
        &[0x81, 0x82, 0x94],
    )
    .await
}

async fn not_carried_over(cx: Ctx) -> TestResult {
    let st = "MQTT-3.3.2-7";
    let t = cx.topic("nc");
    let mut sub = cx.connect("s").await?;
    sub.sub(&t, 0).await?;
    // First connection: alias 1 set and used.
    let mut conn = cx.connect("p").await?;
    pump(
        &mut conn,
        vec![aliased(&t, 1, "set", 1)?, aliased("", 1, "use", 2)?],
        1,
    )
    .await?;
    let got = take(&mut sub, 2, false, st).await?;
    ensure!(
        got.iter().all(|p| &*p.topic == t.as_str()),
        st,
        format!("both messages on {t:?} within the first connection"),
        "{:?}",
        got.iter().map(|p| p.topic.to_string()).collect::<Vec<_>>()
    );
    conn.disconnect().await;
    // Second connection, same client: the alias is unknown.
    let mut conn = cx.connect("p").await?;
    let wire = publish_frame(true, 0x00, b"", None, &[0x23, 0x00, 0x01], b"again");
    conn.send_raw_lenient(
        &wire,
        "PUBLISH with an empty topic and Topic Alias 1 of an earlier connection",
    )
    .await?;
    let code = conn.expect_close(st, None).await?;
    if let Some(c) = code {
        ensure!(
            c == ReasonCode::PROTOCOL_ERROR || c == ReasonCode::TOPIC_ALIAS_INVALID,
            st,
            "DISCONNECT 0x82 (Protocol Error) or 0x94, or none, then the close",
            "DISCONNECT {:#04x}",
            c.0
        );
    }
    let more = drain(&cx, &mut sub, false).await?;
    ensure!(
        more.is_empty(),
        st,
        "nothing delivered for an alias of an earlier connection",
        "{:?}",
        more.iter().map(text).collect::<Vec<_>>()
    );
    sub.disconnect().await;
    Ok(())
}

async fn server_within_maximum(cx: Ctx) -> TestResult {
    let st = "MQTT-3.1.2-26";
    let mut c = cx.connect_packet("s");
    c.properties.topic_alias_maximum = Some(2);
    let (mut sub, _) = cx.connect_with("s", c).await?;
    sub.sub(&cx.topic("sa/+"), 0).await?;
    let mut conn = cx.connect("p").await?;
    let mut list = Vec::new();
    for round in 0..3 {
        for i in 0..4 {
            // The payload names the topic it was published to.
            let t = cx.topic(&format!("sa/{i}"));
            list.push(publish(&t, &format!("{t} {round}"), 0, 0)?);
        }
    }
    let n = list.len();
    pump(&mut conn, list, 1).await?;
    // Every PUBLISH that arrives has passed the connection's checks: a Topic Alias above the
    // tester's maximum 2 fails there (MQTT-3.1.2-26), and the decoder refuses a Topic Alias 0
    // (MQTT-3.3.2-8).
    let got = take(&mut sub, n, false, st).await?;
    for p in &got {
        let payload = text(p);
        let topic = payload.split(' ').next().unwrap_or_default();
        ensure!(
            &*p.topic == topic,
            st,
            format!("the message published to {topic:?} delivered on it (aliases resolved)"),
            "on {:?}",
            &*p.topic
        );
    }
    let more = drain(&cx, &mut sub, false).await?;
    sub.disconnect().await;
    conn.disconnect().await;
    if !got
        .iter()
        .chain(more.iter())
        .any(|p| p.properties.topic_alias.is_some())
    {
        return Err(Stop::NotApplicable(
            "the broker sent no Topic Alias (it need not use them): nothing to check against the \
             tester's Topic Alias Maximum"
                .into(),
        ));
    }
    Ok(())
}

async fn server_none_without_maximum(cx: Ctx) -> TestResult {
    let st = "MQTT-3.1.2-27";
    let t = cx.topic("na");
    let mut none = cx.connect("s1").await?;
    none.sub(&t, 0).await?;
    let mut c = cx.connect_packet("s2");
    c.properties.topic_alias_maximum = Some(0);
    let (mut zero, _) = cx.connect_with("s2", c).await?;
    zero.sub(&t, 0).await?;
    let mut conn = cx.connect("p").await?;
    let list = (0..5)
        .map(|i| publish(&t, &format!("m{i}"), 0, 0))
        .collect::<Result<Vec<_>, _>>()?;
    pump(&mut conn, list, 1).await?;
    for (label, sub) in [("absent", &mut none), ("0", &mut zero)] {
        // A Topic Alias fails the connection's guard, which names MQTT-3.1.2-26 (any alias is
        // above a maximum of 0): here it is this test's statement.
        let got = take(sub, 5, false, st).await.map_err(|e| match e {
            Stop::Fail(mut f) if f.statement == Some("MQTT-3.1.2-26") => {
                f.statement = Some(st);
                Stop::Fail(f)
            }
            other => other,
        })?;
        for p in &got {
            ensure!(
                p.properties.topic_alias.is_none() && &*p.topic == t.as_str(),
                st,
                format!("no Topic Alias and the full topic (Topic Alias Maximum {label})"),
                "{}",
                brief(&Packet::Publish(p.clone()))
            );
        }
    }
    none.disconnect().await;
    zero.disconnect().await;
    conn.disconnect().await;
    Ok(())
}
