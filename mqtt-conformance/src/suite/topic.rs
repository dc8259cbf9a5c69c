//! Topic Names and Topic Filters: wildcard matching (`+`, `#`, the parent level), invalid
//! filters and wildcards in Topic Names refused, empty names and filters, `$` topics not
//! matched by wildcards, and matching without normalization (U+FEFF kept, no Unicode
//! normalization or case folding).

use mqtt_codec::Packet;

use super::TestCase;
use super::raw::{publish_frame, subscribe_frame};
use super::subscribe::{drain, fail, list, next_pub, no_pub, put, refused, sub_ok};
use crate::ctx::Ctx;
use crate::ensure;
use crate::outcome::{Stop, TestResult};

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "topic.bom_kept",
            ["MQTT-1.5.4-3"],
            "a Topic Name with U+FEFF (EF BB BF) inside matches only its exact filter and is delivered unchanged",
            [Qos1],
            false,
            bom_kept
        ),
        case!(
            v311,
            "topic.bom_kept",
            ["MQTT-1.5.3-3"],
            "a Topic Name with U+FEFF (EF BB BF) inside matches only its exact filter and is delivered unchanged",
            [Qos1],
            false,
            bom_kept
        ),
        case!(
            v5,
            "topic.no_normalization",
            ["MQTT-4.7.3-4"],
            "matching compares bytes: the NFD form or other case of a subscribed topic does not match; an unassigned code point does",
            [Qos1],
            false,
            no_normalization
        ),
        case!(
            v311,
            "topic.no_normalization",
            ["MQTT-4.7.3-4"],
            "matching compares bytes: the NFD form or other case of a subscribed topic does not match; an unassigned code point does",
            [Qos1],
            false,
            no_normalization
        ),
        case!(
            v5,
            "topic.wildcard_matching",
            ["MQTT-3.3.2-3", "MQTT-4.5.0-1"],
            "+ matches exactly one level (also the first, and an empty one), # any number including the parent; only matching topics are delivered",
            [Wildcards, Qos1],
            false,
            matching
        ),
        case!(
            v311,
            "topic.wildcard_matching",
            ["MQTT-3.3.2-3", "MQTT-4.5.0-1"],
            "+ matches exactly one level (also the first, and an empty one), # any number including the parent; only matching topics are delivered",
            [Wildcards, Qos1],
            false,
            matching
        ),
        case!(
            v5,
            "topic.invalid_filters",
            ["MQTT-4.7.1-1", "MQTT-4.7.1-2"],
            "filters with # not last or not a whole level, or + not a whole level, are refused (SUBACK failure or close)",
            [],
            false,
            invalid_filters
        ),
        case!(
            v311,
            "topic.invalid_filters",
            ["MQTT-4.7.1-2", "MQTT-4.7.1-3"],
            "filters with # not last or not a whole level, or + not a whole level, are refused (SUBACK 0x80 or close)",
            [],
            false,
            invalid_filters
        ),
        case!(
            v5,
            "topic.wildcard_in_topic_name",
            ["MQTT-3.3.2-2", "MQTT-4.7.0-1"],
            "a PUBLISH to a Topic Name with + or # closes the connection and is not delivered",
            [],
            false,
            wildcard_in_name
        ),
        case!(
            v311,
            "topic.wildcard_in_topic_name",
            ["MQTT-3.3.2-2", "MQTT-4.7.1-1"],
            "a PUBLISH to a Topic Name with + or # closes the connection and is not delivered",
            [],
            false,
            wildcard_in_name
        ),
        case!(
            v5,
            "topic.empty",
            ["MQTT-4.7.3-1"],
            "an empty Topic Filter is refused (SUBACK failure or close); an empty Topic Name without alias closes the connection",
            [],
            false,
            empty
        ),
        case!(
            v311,
            "topic.empty",
            ["MQTT-4.7.3-1"],
            "an empty Topic Filter is refused (SUBACK 0x80 or close); an empty Topic Name closes the connection",
            [],
            false,
            empty
        ),
        case!(
            v5,
            "topic.dollar_not_matched",
            ["MQTT-4.7.2-1"],
            "a message on a $ topic reaches its exact subscriber but not a filter starting with +",
            [Wildcards, Qos1],
            false,
            dollar
        ),
        case!(
            v311,
            "topic.dollar_not_matched",
            ["MQTT-4.7.2-1"],
            "a message on a $ topic reaches its exact subscriber but not a filter starting with +",
            [Wildcards, Qos1],
            false,
            dollar
        ),
        case!(
            v5,
            "topic.dollar_not_matched_by_hash",
            ["MQTT-4.7.2-1"],
            "a subscriber to # and +/# gets no message on a $ topic ($SYS or one published) that an exact or $SYS/# subscriber gets",
            [Wildcards],
            true,
            sys
        ),
        case!(
            v311,
            "topic.dollar_not_matched_by_hash",
            ["MQTT-4.7.2-1"],
            "a subscriber to # and +/# gets no message on a $ topic ($SYS or one published) that an exact or $SYS/# subscriber gets",
            [Wildcards],
            true,
            sys
        ),
    ]
}

/// The test's prefix without its first level (`run/index`), for filters starting with `+`.
fn rest(cx: &Ctx) -> String {
    let p = cx.topic_prefix();
    p.split_once('/').map(|(_, r)| r.to_owned()).unwrap_or(p)
}

async fn bom_kept(cx: Ctx) -> TestResult {
    let st = if cx.v5() {
        "MQTT-1.5.4-3"
    } else {
        "MQTT-1.5.3-3"
    };
    let bom = cx.topic("t/\u{FEFF}x");
    let plain = cx.topic("t/x");
    let mut s = cx.connect("s").await?;
    sub_ok(&mut s, &[&bom], 0).await?;
    let mut o = cx.connect("o").await?;
    sub_ok(&mut o, &[&plain], 0).await?;
    let mut p = cx.connect("p").await?;
    put(&mut p, &bom, "bom", 1, false, 1).await?;
    let m = next_pub(&mut s, st, "the message on the topic with U+FEFF").await?;
    ensure!(
        m.topic.as_bytes() == bom.as_bytes(),
        st,
        format!("the Topic Name bytes unchanged, EF BB BF included: {bom:?}"),
        "{:?}",
        &*m.topic
    );
    no_pub(
        &cx,
        &mut o,
        st,
        "nothing for the filter without U+FEFF (the character not stripped)",
    )
    .await?;
    s.disconnect().await;
    o.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn no_normalization(cx: Ctx) -> TestResult {
    let st = "MQTT-4.7.3-4";
    let nfc = cx.topic("n/\u{00e9}");
    let nfd = cx.topic("n/e\u{0301}");
    let upper = cx.topic("n/\u{00c9}");
    let unassigned = cx.topic("u/\u{0378}");
    let mut s = cx.connect("s").await?;
    sub_ok(&mut s, &[&nfc, &unassigned], 0).await?;
    let mut p = cx.connect("p").await?;
    put(&mut p, &nfd, "nfd", 1, false, 1).await?;
    put(&mut p, &upper, "upper", 1, false, 2).await?;
    no_pub(
        &cx,
        &mut s,
        st,
        "nothing for the NFD form or the upper case of the subscribed topic",
    )
    .await?;
    put(&mut p, &nfc, "nfc", 1, false, 3).await?;
    put(&mut p, &unassigned, "u", 1, false, 4).await?;
    let mut got = vec![next_pub(&mut s, st, "the message on the exact topic").await?];
    got.push(next_pub(&mut s, st, "the message on the topic with U+0378").await?);
    got.extend(drain(&mut s, cx.quiet_for()).await?);
    let topics: Vec<&[u8]> = got.iter().map(|m| m.topic.as_bytes()).collect();
    ensure!(
        topics == [nfc.as_bytes(), unassigned.as_bytes()],
        st,
        "the two messages on the exact topics, with their bytes unchanged",
        "{}",
        list(&got)
    );
    s.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn matching(cx: Ctx) -> TestResult {
    let t = |s: &str| cx.topic(s);
    // Filters, with + at the first level too.
    let filters = [
        t("a/+/c"),
        t("x/#"),
        t("m/+"),
        format!("+/{}/f/+", rest(&cx)),
    ];
    let mut s = cx.connect("s").await?;
    let fs: Vec<&str> = filters.iter().map(String::as_str).collect();
    sub_ok(&mut s, &fs, 0).await?;
    let matching = [
        t("a/b/c"),
        t("x"),
        t("x/y"),
        t("x/y/z"),
        t("m/"),
        t("m/b"),
        t("f/g"),
    ];
    let not_matching = [
        t("a/b/d"),
        t("a/b/c/d"),
        t("a/c"),
        t("m/b/c"),
        t("m"),
        t("xx"),
        t("f/g/h"),
    ];
    let mut p = cx.connect("p").await?;
    for (id, topic) in (1..).zip(not_matching.iter().chain(matching.iter())) {
        put(&mut p, topic, "x", 1, false, id).await?;
    }
    let mut got = Vec::new();
    for _ in 0..matching.len() {
        match next_pub(&mut s, "MQTT-3.3.2-3", "a message for each matching topic").await {
            Ok(m) => got.push(m),
            Err(_) => break,
        }
    }
    got.extend(drain(&mut s, cx.quiet_for()).await?);
    for m in &got {
        ensure!(
            matching.iter().any(|t| t.as_str() == &*m.topic),
            "MQTT-3.3.2-3",
            "only Topic Names that match a subscribed filter",
            "{}",
            list(&got)
        );
    }
    // Every matching message reaches the matching subscription (the syntax rules of the
    // wildcards are topic.invalid_filters').
    for topic in &matching {
        let n = got.iter().filter(|m| &*m.topic == topic.as_str()).count();
        ensure!(
            n == 1,
            "MQTT-4.5.0-1",
            format!("one message on {topic}, which a subscribed filter matches"),
            "{}",
            list(&got)
        );
    }
    s.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn invalid_filters(cx: Ctx) -> TestResult {
    let v5 = cx.v5();
    let (st_hash, st_plus) = if v5 {
        ("MQTT-4.7.1-1", "MQTT-4.7.1-2")
    } else {
        ("MQTT-4.7.1-2", "MQTT-4.7.1-3")
    };
    let codes: &[u8] = if v5 { &[] } else { &[0x80] };
    for (f, st) in [
        (cx.topic("a/#/b"), st_hash),
        (cx.topic("a#"), st_hash),
        (cx.topic("#/"), st_hash),
        (cx.topic("a+/b"), st_plus),
        (cx.topic("b+"), st_plus),
        (cx.topic("+a/b"), st_plus),
    ] {
        let mut c = cx.connect("s").await?;
        c.send_raw(
            &subscribe_frame(v5, 0x82, 1, &[], &[(f.as_bytes(), 0)]),
            &format!("SUBSCRIBE {f:?}"),
        )
        .await?;
        refused(
            &mut c,
            Some(st),
            1,
            codes,
            &format!("the invalid filter {f:?}"),
        )
        .await?;
        if !c.is_closed() {
            c.disconnect().await;
        }
    }
    Ok(())
}

/// The connection must close (a DISCONNECT before, if any, with a failure code).
async fn closes(c: &mut crate::Conn, st: &'static str, what: &str) -> TestResult {
    let code = c.expect_close(st, None).await?;
    if let Some(code) = code {
        ensure!(
            code.is_error(),
            st,
            format!(
                "{what}: the connection closed, after at most a DISCONNECT with a failure code"
            ),
            "DISCONNECT {:#04x}",
            code.0
        );
    }
    Ok(())
}

async fn wildcard_in_name(cx: Ctx) -> TestResult {
    let v5 = cx.v5();
    let mut w = cx.connect("w").await?;
    sub_ok(&mut w, &[&cx.topic("w/x")], 0).await?;
    let wild = cx.caps().wildcard_subscriptions;
    if wild {
        sub_ok(&mut w, &[&cx.topic("w/#")], 0).await?;
    }
    for (name, st) in [
        (
            cx.topic("w/+"),
            if v5 { "MQTT-4.7.0-1" } else { "MQTT-4.7.1-1" },
        ),
        (cx.topic("w/#"), "MQTT-3.3.2-2"),
    ] {
        let mut p = cx.connect("p").await?;
        p.send_raw_lenient(
            &publish_frame(v5, 0, name.as_bytes(), None, &[], b"wild"),
            &format!("PUBLISH to {name:?}"),
        )
        .await?;
        closes(&mut p, st, &format!("a PUBLISH to {name:?}")).await?;
    }
    no_pub(
        &cx,
        &mut w,
        "MQTT-3.3.2-2",
        "no delivery of a message to a Topic Name with wildcards",
    )
    .await?;
    w.disconnect().await;
    Ok(())
}

async fn empty(cx: Ctx) -> TestResult {
    let v5 = cx.v5();
    let st = "MQTT-4.7.3-1";
    let mut c = cx.connect("s").await?;
    c.send_raw(
        &subscribe_frame(v5, 0x82, 1, &[], &[(b"", 0)]),
        "SUBSCRIBE to an empty filter",
    )
    .await?;
    let codes: &[u8] = if v5 { &[] } else { &[0x80] };
    refused(&mut c, Some(st), 1, codes, "the empty Topic Filter").await?;
    if !c.is_closed() {
        c.disconnect().await;
    }
    let mut p = cx.connect("p").await?;
    p.send_raw_lenient(
        &publish_frame(v5, 0, b"", None, &[], b"x"),
        "PUBLISH with an empty Topic Name",
    )
    .await?;
    closes(
        &mut p,
        st,
        "a PUBLISH with an empty Topic Name and no Topic Alias",
    )
    .await?;
    Ok(())
}

async fn dollar(cx: Ctx) -> TestResult {
    let st = "MQTT-4.7.2-1";
    let name = format!("${}/x", cx.topic_prefix());
    let mut e = cx.connect("e").await?;
    sub_ok(&mut e, &[&name], 0).await?;
    let mut w = cx.connect("w").await?;
    sub_ok(
        &mut w,
        &[&format!("+/{}/x", rest(&cx)), &format!("+/{}/#", rest(&cx))],
        0,
    )
    .await?;
    let mut p = cx.connect("p").await?;
    // A broker may keep clients from publishing to $ topics (4.7.2): then nothing to observe.
    if let Err(Stop::Fail(f)) = put(&mut p, &name, "dollar", 1, false, 1).await {
        return Err(Stop::Skip(format!(
            "the broker does not take a PUBLISH to {name:?}: {}",
            f.observed
        )));
    }
    let got = match next_pub(&mut e, st, "the message on the $ topic").await {
        Ok(m) => vec![m],
        Err(_) => Vec::new(),
    };
    if got.is_empty() {
        return Err(Stop::Skip(format!(
            "the broker does not deliver a client's message on {name:?} to its exact subscriber"
        )));
    }
    no_pub(
        &cx,
        &mut w,
        st,
        "nothing for filters starting with + from a topic starting with $",
    )
    .await?;
    e.disconnect().await;
    w.disconnect().await;
    p.disconnect().await;
    Ok(())
}

async fn sys(cx: Ctx) -> TestResult {
    let st = "MQTT-4.7.2-1";
    let name = format!("${}/x", cx.topic_prefix());
    let mut w = cx.connect("w").await?;
    sub_ok(&mut w, &["#", "+/#"], 0).await?;
    let mut e = cx.connect("e").await?;
    sub_ok(&mut e, &["$SYS/#", &name], 0).await?;
    // A message on a $ topic: the test's own (if the broker takes it from a client), or
    // any $SYS message the broker publishes.
    let mut p = cx.connect("p").await?;
    let _ = put(&mut p, &name, "dollar", 1, false, 1).await;
    let seen = match e.recv_within(cx.answer_within()).await? {
        Some(crate::Received::Packet(Packet::Publish(m))) => m.topic.to_string(),
        _ => {
            return Err(Stop::Skip(format!(
                "no message on a $ topic ({name:?} or $SYS/#) within {:?} to check against",
                cx.answer_within()
            )));
        }
    };
    let got = drain(&mut w, cx.quiet_for()).await?;
    let dollar: Vec<_> = got
        .iter()
        .filter(|m| m.topic.starts_with('$'))
        .cloned()
        .collect();
    if !dollar.is_empty() {
        return Err(fail(
            Some(st),
            format!(
                "no message on a $ topic for # or +/# (a $SYS/# or exact subscriber got {seen:?})"
            ),
            list(&dollar),
        ));
    }
    e.disconnect().await;
    w.disconnect().await;
    if !p.is_closed() {
        p.disconnect().await;
    }
    Ok(())
}
