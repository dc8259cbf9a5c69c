//! Malformed packets and protocol errors: reserved fixed-header flags, reserved packet types,
//! Variable Byte Integers, lengths beyond the packet, ill-formed UTF-8 and U+0000, CONNECT
//! flags that contradict the payload, Packet Identifier 0, empty SUBSCRIBE and UNSUBSCRIBE,
//! reserved subscription option bits, bad properties, and packets over the broker's Maximum
//! Packet Size.
//!
//! The codec refuses to encode such packets, so they are written byte by byte with the small
//! builder of the [`raw`](super::raw) module ([`frame`], [`put_str`], the `p_*` property
//! helpers).

use bytes::Bytes;
use mqtt_codec::{Packet, QoS, ReasonCode, Will};

use super::TestCase;
use super::raw::{
    connect_frame, frame, lstr, p_byte, p_pair, p_str, p_u32, publish_frame, put_props, put_str,
    subscribe_frame,
};
use crate::conn::{Conn, Received, brief};
use crate::ctx::{Ctx, topic};
use crate::ensure;
use crate::outcome::{Failure, Stop, TestResult};

// ---------------------------------------------------------------------------------------------
// The raw packet builder (the rest is in the raw module).

/// An UNSUBSCRIBE with first byte `first`, Packet Identifier `id` and `filters`.
fn unsubscribe_frame(v5: bool, first: u8, id: u16, filters: &[&[u8]]) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    if v5 {
        put_props(&mut b, &[]);
    }
    for f in filters {
        put_str(&mut b, f);
    }
    frame(first, &b)
}

// ---------------------------------------------------------------------------------------------
// Expected reactions.

/// What the broker may send before it closes the connection (5.0).
#[derive(Clone, Copy)]
pub(super) enum Reply {
    /// Nothing, or a DISCONNECT with an error Reason Code (0x80 or above).
    AnyError,
    /// Nothing, or a DISCONNECT with this Reason Code.
    IfAny(ReasonCode),
    /// A DISCONNECT with this Reason Code.
    Must(ReasonCode),
}

/// The broker must close `conn`, sending at most the DISCONNECT `reply` allows.
pub(super) async fn closes(conn: &mut Conn, statement: &'static str, reply: Reply) -> TestResult {
    let code = conn.expect_close(statement, None).await?;
    match (reply, code) {
        (Reply::AnyError, Some(c)) => ensure!(
            c.is_error(),
            statement,
            "the connection closed, after at most a DISCONNECT with an error Reason Code",
            "a packet with Reason Code {:#04x} before the close",
            c.0
        ),
        (Reply::IfAny(r), Some(c)) => ensure!(
            c == r,
            statement,
            format!(
                "the connection closed, after at most a DISCONNECT {:#04x}",
                r.0
            ),
            "Reason Code {:#04x} before the close",
            c.0
        ),
        (Reply::Must(r), c) => ensure!(
            c == Some(r),
            statement,
            format!("a DISCONNECT {:#04x}, then the close", r.0),
            "{}",
            c.map_or_else(
                || "a close without DISCONNECT".to_owned(),
                |c| format!("Reason Code {:#04x} before the close", c.0)
            )
        ),
        _ => {}
    }
    Ok(())
}

/// Opens a connection, sends the CONNECT `wire` and requires the broker to close the
/// connection without accepting it: in 5.0 at most a CONNACK with an error Reason Code first,
/// in 3.1.1 no CONNACK at all (statement MQTT-3.1.4-1 of 3.1.1).
pub(super) async fn refuses_connect(
    cx: &Ctx,
    label: &str,
    wire: &[u8],
    what: &str,
    statement: &'static str,
) -> TestResult {
    let mut conn = cx.open(label).await?;
    conn.send_raw_lenient(wire, what).await?;
    let code = conn.expect_close(statement, None).await?;
    if let Some(c) = code {
        ensure!(
            c.0 != 0,
            statement,
            format!("{what} refused (the connection closed)"),
            "CONNACK 0x00 (accepted)"
        );
        if cx.v5() {
            ensure!(
                c.is_error(),
                statement,
                "the connection closed, after at most a CONNACK with an error Reason Code",
                "CONNACK {:#04x}",
                c.0
            );
        } else {
            ensure!(
                false,
                "MQTT-3.1.4-1",
                format!("{what}: the connection closed without a CONNACK"),
                "CONNACK {:#04x} before the close",
                c.0
            );
        }
    }
    Ok(())
}

/// Connects client `label`, sends `wire` and requires the close `reply` allows.
async fn after_connect_closes(
    cx: &Ctx,
    label: &str,
    wire: &[u8],
    what: &str,
    statement: &'static str,
    reply: Reply,
) -> TestResult {
    let mut conn = cx.connect(label).await?;
    conn.send_raw_lenient(wire, what).await?;
    closes(&mut conn, statement, reply).await
}

/// A client subscribed to `f` (QoS 0), or `None` when `f` has a wildcard and the broker has no
/// wildcard subscriptions.
async fn watcher(cx: &Ctx, f: &str) -> Result<Option<Conn>, Stop> {
    if (f.contains('#') || f.contains('+')) && !cx.caps().wildcard_subscriptions {
        return Ok(None);
    }
    let mut w = cx.connect("w").await?;
    w.sub(f, 0).await?;
    Ok(Some(w))
}

/// The watcher must receive nothing.
async fn nothing_delivered(w: Option<Conn>, statement: &'static str, what: &str) -> TestResult {
    if let Some(mut w) = w {
        w.expect_quiet(statement, &format!("no delivery of {what}"), None)
            .await?;
        w.disconnect().await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The tests.

pub(super) fn tests() -> Vec<TestCase> {
    vec![
        case!(
            v5,
            "malformed.pubrel_flags",
            ["MQTT-3.6.1-1", "MQTT-2.1.3-1", "MQTT-4.13.1-1"],
            "PUBREL with fixed-header flags 0000 or 0011 closes the connection, no PUBCOMP",
            [],
            false,
            pubrel_flags
        ),
        case!(
            v311,
            "malformed.pubrel_flags",
            ["MQTT-3.6.1-1", "MQTT-2.2.2-1", "MQTT-2.2.2-2"],
            "PUBREL with fixed-header flags 0000 or 0011 closes the connection, no PUBCOMP",
            [],
            false,
            pubrel_flags
        ),
        case!(
            v5,
            "malformed.subscribe_flags",
            ["MQTT-3.8.1-1", "MQTT-2.1.3-1", "MQTT-4.13.1-1"],
            "SUBSCRIBE with fixed-header flags 0000 or 1111 closes the connection, no SUBACK",
            [],
            false,
            subscribe_flags
        ),
        case!(
            v311,
            "malformed.subscribe_flags",
            ["MQTT-3.8.1-1", "MQTT-2.2.2-1", "MQTT-2.2.2-2"],
            "SUBSCRIBE with fixed-header flags 0000 or 1111 closes the connection, no SUBACK",
            [],
            false,
            subscribe_flags
        ),
        case!(
            v5,
            "malformed.unsubscribe_flags",
            ["MQTT-3.10.1-1", "MQTT-2.1.3-1", "MQTT-4.13.1-1"],
            "UNSUBSCRIBE with fixed-header flags 0000 or 1011 closes the connection, no UNSUBACK",
            [],
            false,
            unsubscribe_flags
        ),
        case!(
            v311,
            "malformed.unsubscribe_flags",
            ["MQTT-3.10.1-1", "MQTT-2.2.2-1", "MQTT-2.2.2-2"],
            "UNSUBSCRIBE with fixed-header flags 0000 or 1011 closes the connection, no UNSUBACK",
            [],
            false,
            unsubscribe_flags
        ),
        case!(
            v5,
            "malformed.other_flags",
            ["MQTT-2.1.3-1", "MQTT-4.13.1-1"],
            "CONNECT, PUBACK, PUBREC, PUBCOMP, PINGREQ with non-zero fixed-header flags close the connection",
            [],
            false,
            other_flags
        ),
        case!(
            v311,
            "malformed.other_flags",
            ["MQTT-2.2.2-1", "MQTT-2.2.2-2"],
            "CONNECT, PUBACK, PUBREC, PUBCOMP, PINGREQ with non-zero fixed-header flags close the connection",
            [],
            false,
            other_flags
        ),
        case!(
            v5,
            "malformed.disconnect_flags",
            ["MQTT-3.14.1-1"],
            "DISCONNECT 0xE1 gets DISCONNECT 0x81 and the close, and the Will is published",
            [],
            false,
            disconnect_flags
        ),
        case!(
            v311,
            "malformed.disconnect_flags",
            ["MQTT-3.14.1-1"],
            "DISCONNECT 0xE1 closes the connection as an error: the Will is published",
            [],
            false,
            disconnect_flags
        ),
        case!(
            v5,
            "malformed.packet_type_0",
            ["MQTT-4.13.1-1"],
            "a packet of the reserved type 0 closes the connection",
            [],
            false,
            packet_type_reserved
        ),
        case!(
            v311,
            "malformed.packet_type_reserved",
            ["MQTT-4.8.0-1"],
            "packets of the reserved types 0 and 15 close the connection",
            [],
            false,
            packet_type_reserved
        ),
        case!(
            v5,
            "malformed.vbi_not_minimal",
            ["MQTT-1.5.5-1", "MQTT-4.13.1-1"],
            "a Remaining Length or Property Length not in the fewest bytes closes the connection",
            [],
            false,
            vbi_not_minimal
        ),
        case!(
            v5,
            "malformed.vbi_five_bytes",
            ["MQTT-4.13.1-1"],
            "a Remaining Length of five bytes closes the connection",
            [],
            false,
            vbi_five_bytes
        ),
        case!(
            v311,
            "malformed.vbi_five_bytes",
            ["MQTT-4.8.0-1"],
            "a Remaining Length of five bytes closes the connection",
            [],
            false,
            vbi_five_bytes
        ),
        case!(
            v5,
            "malformed.topic_length_beyond_packet",
            ["MQTT-3.3.2-1", "MQTT-4.13.1-1"],
            "a PUBLISH whose Topic Name length runs past the packet closes the connection",
            [],
            false,
            topic_length_beyond
        ),
        case!(
            v311,
            "malformed.topic_length_beyond_packet",
            ["MQTT-3.3.2-1"],
            "a PUBLISH whose Topic Name length runs past the packet closes the connection",
            [],
            false,
            topic_length_beyond
        ),
        case!(
            v5,
            "malformed.property_length_beyond_packet",
            ["MQTT-4.13.1-1"],
            "a PUBLISH whose Property Length runs past the packet closes the connection",
            [],
            false,
            property_length_beyond
        ),
        case!(
            v5,
            "malformed.topic_invalid_utf8",
            ["MQTT-1.5.4-1", "MQTT-3.3.2-1", "MQTT-4.13.1-1"],
            "PUBLISH topics with a surrogate, an overlong NUL or 0xFF close the connection, not delivered",
            [],
            false,
            topic_invalid_utf8
        ),
        case!(
            v311,
            "malformed.topic_invalid_utf8",
            ["MQTT-1.5.3-1", "MQTT-3.3.2-1"],
            "PUBLISH topics with a surrogate, an overlong NUL or 0xFF close the connection, not delivered",
            [],
            false,
            topic_invalid_utf8
        ),
        case!(
            v5,
            "malformed.publish_topic_wildcard",
            ["MQTT-3.3.2-2", "MQTT-4.13.1-1"],
            "PUBLISH to a topic with + or # closes the connection and is not delivered",
            [],
            false,
            publish_topic_wildcard
        ),
        case!(
            v311,
            "malformed.publish_topic_wildcard",
            ["MQTT-3.3.2-2", "MQTT-4.7.1-1"],
            "PUBLISH to a topic with + or # closes the connection and is not delivered",
            [],
            false,
            publish_topic_wildcard
        ),
        case!(
            v5,
            "malformed.empty_topic",
            ["MQTT-4.7.3-1", "MQTT-4.13.1-1"],
            "PUBLISH with an empty topic and no Topic Alias closes the connection, not delivered",
            [],
            false,
            empty_topic
        ),
        case!(
            v311,
            "malformed.empty_topic",
            ["MQTT-4.7.3-1", "MQTT-4.8.0-1"],
            "PUBLISH with an empty topic closes the connection and is not delivered",
            [],
            false,
            empty_topic
        ),
        case!(
            v5,
            "malformed.topic_null",
            ["MQTT-1.5.4-2", "MQTT-4.7.3-2"],
            "a PUBLISH topic with U+0000 closes the connection and is not delivered",
            [],
            false,
            topic_null
        ),
        case!(
            v311,
            "malformed.topic_null",
            ["MQTT-1.5.3-2", "MQTT-4.7.3-2"],
            "a PUBLISH topic with U+0000 closes the connection and is not delivered",
            [],
            false,
            topic_null
        ),
        case!(
            v5,
            "malformed.subscribe_filter_invalid",
            [
                "MQTT-3.8.3-1",
                "MQTT-1.5.4-1",
                "MQTT-1.5.4-2",
                "MQTT-4.7.3-2"
            ],
            "SUBSCRIBE filters with ill-formed UTF-8 or U+0000 close the connection, no SUBACK",
            [],
            false,
            subscribe_filter_invalid
        ),
        case!(
            v311,
            "malformed.subscribe_filter_invalid",
            [
                "MQTT-3.8.3-1",
                "MQTT-1.5.3-1",
                "MQTT-1.5.3-2",
                "MQTT-4.7.3-2"
            ],
            "SUBSCRIBE filters with ill-formed UTF-8 or U+0000 close the connection, no SUBACK",
            [],
            false,
            subscribe_filter_invalid
        ),
        case!(
            v5,
            "malformed.unsubscribe_filter_invalid",
            ["MQTT-3.10.3-1", "MQTT-1.5.4-1"],
            "an UNSUBSCRIBE filter with ill-formed UTF-8 closes the connection, no UNSUBACK",
            [],
            false,
            unsubscribe_filter_invalid
        ),
        case!(
            v311,
            "malformed.unsubscribe_filter_invalid",
            ["MQTT-3.10.3-1", "MQTT-1.5.3-1"],
            "an UNSUBSCRIBE filter with ill-formed UTF-8 closes the connection, no UNSUBACK",
            [],
            false,
            unsubscribe_filter_invalid
        ),
        case!(
            v5,
            "malformed.client_id_invalid_utf8",
            ["MQTT-3.1.3-4", "MQTT-1.5.4-1", "MQTT-3.1.4-1"],
            "a CONNECT whose Client Identifier is ill-formed UTF-8 is refused",
            [],
            false,
            client_id_invalid_utf8
        ),
        case!(
            v311,
            "malformed.client_id_invalid_utf8",
            ["MQTT-3.1.3-4", "MQTT-1.5.3-1", "MQTT-3.1.4-1"],
            "a CONNECT whose Client Identifier is ill-formed UTF-8 is refused without CONNACK",
            [],
            false,
            client_id_invalid_utf8
        ),
        case!(
            v5,
            "malformed.will_topic_invalid_utf8",
            ["MQTT-3.1.3-11", "MQTT-3.1.4-1"],
            "a CONNECT whose Will Topic is ill-formed UTF-8 is refused",
            [],
            false,
            will_topic_invalid_utf8
        ),
        case!(
            v311,
            "malformed.will_topic_invalid_utf8",
            ["MQTT-3.1.3-10", "MQTT-3.1.4-1"],
            "a CONNECT whose Will Topic is ill-formed UTF-8 is refused without CONNACK",
            [],
            false,
            will_topic_invalid_utf8
        ),
        case!(
            v5,
            "malformed.username_invalid_utf8",
            ["MQTT-3.1.3-12", "MQTT-3.1.4-1"],
            "a CONNECT whose User Name is ill-formed UTF-8 is refused",
            [],
            false,
            username_invalid_utf8
        ),
        case!(
            v311,
            "malformed.username_invalid_utf8",
            ["MQTT-3.1.3-11", "MQTT-3.1.4-1"],
            "a CONNECT whose User Name is ill-formed UTF-8 is refused without CONNACK",
            [],
            false,
            username_invalid_utf8
        ),
        case!(
            v5,
            "malformed.user_property_invalid_utf8",
            ["MQTT-1.5.7-1", "MQTT-4.13.1-1", "MQTT-3.1.4-1"],
            "a User Property with ill-formed UTF-8 closes the connection (PUBLISH) or is refused (CONNECT)",
            [],
            false,
            user_property_invalid_utf8
        ),
        case!(
            v5,
            "malformed.response_topic_invalid_utf8",
            ["MQTT-3.3.2-13", "MQTT-4.13.1-1"],
            "a PUBLISH whose Response Topic is ill-formed UTF-8 closes the connection",
            [],
            false,
            response_topic_invalid_utf8
        ),
        case!(
            v5,
            "malformed.content_type_invalid_utf8",
            ["MQTT-3.3.2-19", "MQTT-4.13.1-1"],
            "a PUBLISH whose Content Type is ill-formed UTF-8 closes the connection",
            [],
            false,
            content_type_invalid_utf8
        ),
        case!(
            v5,
            "malformed.will_without_fields",
            ["MQTT-3.1.2-9", "MQTT-3.1.4-1"],
            "a CONNECT with Will Flag 1 and no Will Properties, Topic or Payload is refused",
            [],
            false,
            will_without_fields
        ),
        case!(
            v311,
            "malformed.will_without_fields",
            ["MQTT-3.1.2-9", "MQTT-3.1.4-1"],
            "a CONNECT with Will Flag 1 and no Will Topic or Message is refused without CONNACK",
            [],
            false,
            will_without_fields
        ),
        case!(
            v5,
            "malformed.will_qos_without_will",
            ["MQTT-3.1.2-11", "MQTT-3.1.4-1"],
            "a CONNECT with Will Flag 0 and Will QoS 1 or 2 is refused",
            [],
            false,
            will_qos_without_will
        ),
        case!(
            v311,
            "malformed.will_qos_without_will",
            ["MQTT-3.1.2-13", "MQTT-3.1.2-11", "MQTT-3.1.4-1"],
            "a CONNECT with Will Flag 0 and Will QoS 1 or 2 is refused without CONNACK",
            [],
            false,
            will_qos_without_will
        ),
        case!(
            v5,
            "malformed.will_qos_3",
            ["MQTT-3.1.2-12", "MQTT-3.1.4-1"],
            "a CONNECT with Will QoS 3 is refused; Will QoS 0 to the broker's maximum are accepted",
            [],
            false,
            will_qos_3
        ),
        case!(
            v311,
            "malformed.will_qos_3",
            ["MQTT-3.1.2-14", "MQTT-3.1.4-1"],
            "a CONNECT with Will QoS 3 is refused without CONNACK; Will QoS 0 to the broker's maximum are accepted",
            [],
            false,
            will_qos_3
        ),
        case!(
            v5,
            "malformed.will_retain_without_will",
            ["MQTT-3.1.2-13", "MQTT-3.1.4-1"],
            "a CONNECT with Will Flag 0 and Will Retain 1 is refused",
            [],
            false,
            will_retain_without_will
        ),
        case!(
            v311,
            "malformed.will_retain_without_will",
            ["MQTT-3.1.2-15", "MQTT-3.1.2-11", "MQTT-3.1.4-1"],
            "a CONNECT with Will Flag 0 and Will Retain 1 is refused without CONNACK",
            [],
            false,
            will_retain_without_will
        ),
        case!(
            v311,
            "malformed.will_fields_without_will",
            ["MQTT-3.1.2-11", "MQTT-3.1.4-1"],
            "a CONNECT with Will Flag 0 but a Will Topic and Message in the payload is refused",
            [],
            false,
            will_fields_without_will
        ),
        case!(
            v5,
            "malformed.username_flag_0_present",
            ["MQTT-3.1.2-16", "MQTT-3.1.4-1"],
            "a CONNECT with User Name Flag 0 and a User Name in the payload is refused",
            [],
            false,
            username_flag_0_present
        ),
        case!(
            v311,
            "malformed.username_flag_0_present",
            ["MQTT-3.1.2-18", "MQTT-3.1.4-1"],
            "a CONNECT with User Name Flag 0 and a User Name in the payload is refused",
            [],
            false,
            username_flag_0_present
        ),
        case!(
            v5,
            "malformed.username_flag_1_missing",
            ["MQTT-3.1.2-17", "MQTT-3.1.4-1"],
            "a CONNECT with User Name Flag 1 and no User Name is refused",
            [],
            false,
            username_flag_1_missing
        ),
        case!(
            v311,
            "malformed.username_flag_1_missing",
            ["MQTT-3.1.2-19", "MQTT-3.1.4-1"],
            "a CONNECT with User Name Flag 1 and no User Name is refused without CONNACK",
            [],
            false,
            username_flag_1_missing
        ),
        case!(
            v5,
            "malformed.password_flag_0_present",
            ["MQTT-3.1.2-18", "MQTT-3.1.4-1"],
            "a CONNECT with Password Flag 0 and a Password in the payload is refused",
            [],
            false,
            password_flag_0_present
        ),
        case!(
            v311,
            "malformed.password_flag_0_present",
            ["MQTT-3.1.2-20", "MQTT-3.1.4-1"],
            "a CONNECT with Password Flag 0 and a Password in the payload is refused",
            [],
            false,
            password_flag_0_present
        ),
        case!(
            v5,
            "malformed.password_flag_1_missing",
            ["MQTT-3.1.2-19", "MQTT-3.1.4-1"],
            "a CONNECT with Password Flag 1 and no Password is refused",
            [],
            false,
            password_flag_1_missing
        ),
        case!(
            v311,
            "malformed.password_flag_1_missing",
            ["MQTT-3.1.2-21", "MQTT-3.1.4-1"],
            "a CONNECT with Password Flag 1 and no Password is refused without CONNACK",
            [],
            false,
            password_flag_1_missing
        ),
        case!(
            v311,
            "malformed.password_without_username",
            ["MQTT-3.1.2-22", "MQTT-3.1.4-1"],
            "a CONNECT with User Name Flag 0 and Password Flag 1 is refused",
            [],
            false,
            password_without_username
        ),
        case!(
            v5,
            "malformed.connect_no_client_id",
            ["MQTT-3.1.3-3", "MQTT-3.1.4-1"],
            "a CONNECT whose payload has no Client Identifier field is refused",
            [],
            false,
            connect_no_client_id
        ),
        case!(
            v311,
            "malformed.connect_no_client_id",
            ["MQTT-3.1.3-3", "MQTT-3.1.4-1"],
            "a CONNECT whose payload has no Client Identifier field is refused without CONNACK",
            [],
            false,
            connect_no_client_id
        ),
        case!(
            v5,
            "malformed.connect_bad_format",
            ["MQTT-3.1.4-1"],
            "CONNECTs with a truncated field, a property past the end, property 0x7F or a duplicate Session Expiry are refused",
            [],
            false,
            connect_bad_format
        ),
        case!(
            v311,
            "malformed.connect_bad_format",
            ["MQTT-3.1.4-1"],
            "CONNECTs with a truncated Client Identifier or trailing bytes are refused without CONNACK",
            [],
            false,
            connect_bad_format
        ),
        case!(
            v5,
            "malformed.packet_id_zero",
            ["MQTT-4.13.1-1"],
            "SUBSCRIBE, UNSUBSCRIBE and QoS 1 PUBLISH with Packet Identifier 0 close the connection",
            [],
            false,
            packet_id_zero
        ),
        case!(
            v311,
            "malformed.packet_id_zero",
            ["MQTT-4.8.0-1"],
            "SUBSCRIBE, UNSUBSCRIBE and QoS 1 PUBLISH with Packet Identifier 0 close the connection",
            [],
            false,
            packet_id_zero
        ),
        case!(
            v5,
            "malformed.subscribe_no_filters",
            ["MQTT-3.8.3-2", "MQTT-4.13.1-1"],
            "a SUBSCRIBE with no Topic Filter closes the connection, no SUBACK",
            [],
            false,
            subscribe_no_filters
        ),
        case!(
            v311,
            "malformed.subscribe_no_filters",
            ["MQTT-3.8.3-3", "MQTT-4.8.0-1"],
            "a SUBSCRIBE with no Topic Filter closes the connection, no SUBACK",
            [],
            false,
            subscribe_no_filters
        ),
        case!(
            v5,
            "malformed.unsubscribe_no_filters",
            ["MQTT-3.10.3-2", "MQTT-4.13.1-1"],
            "an UNSUBSCRIBE with no Topic Filter closes the connection, no UNSUBACK",
            [],
            false,
            unsubscribe_no_filters
        ),
        case!(
            v311,
            "malformed.unsubscribe_no_filters",
            ["MQTT-3.10.3-2", "MQTT-4.8.0-1"],
            "an UNSUBSCRIBE with no Topic Filter closes the connection, no UNSUBACK",
            [],
            false,
            unsubscribe_no_filters
        ),
        case!(
            v5,
            "malformed.subscription_options_reserved",
            ["MQTT-3.8.3-5", "MQTT-4.13.1-1"],
            "subscription options with bit 6 or 7 set, or Retain Handling 3, close the connection",
            [],
            false,
            subscription_options_reserved
        ),
        case!(
            v311,
            "malformed.subscription_options_reserved",
            ["MQTT-4.8.0-1"],
            "a requested QoS byte with reserved bits set closes the connection, no SUBACK",
            [],
            false,
            subscription_options_reserved
        ),
        case!(
            v5,
            "malformed.duplicate_property",
            ["MQTT-4.13.1-1"],
            "a PUBLISH with the Payload Format Indicator or Message Expiry Interval twice closes the connection",
            [],
            false,
            duplicate_property
        ),
        case!(
            v5,
            "malformed.property_not_allowed",
            ["MQTT-4.13.1-1"],
            "a Session Expiry Interval in PUBLISH, a Topic Alias in SUBSCRIBE close the connection",
            [],
            false,
            property_not_allowed
        ),
        case!(
            v5,
            "malformed.unknown_property",
            ["MQTT-4.13.1-1"],
            "a PUBLISH with the unknown property 0x7F closes the connection, not delivered",
            [],
            false,
            unknown_property
        ),
        case!(
            v5,
            "malformed.subscription_id_in_publish",
            ["MQTT-3.3.4-6", "MQTT-4.13.1-1"],
            "a PUBLISH from the client with a Subscription Identifier closes the connection, not delivered",
            [],
            false,
            subscription_id_in_publish
        ),
        case!(
            v5,
            "malformed.payload_format_invalid",
            ["MQTT-3.3.2-4"],
            "Payload Format Indicator 1 with ill-formed UTF-8: refused with 0x99, or forwarded with the indicator unaltered",
            [Qos1],
            false,
            payload_format_invalid
        ),
        case!(
            v5,
            "malformed.packet_too_large",
            ["MQTT-4.13.1-1"],
            "a packet over the broker's Maximum Packet Size closes the connection (DISCONNECT 0x95 if any)",
            [SmallMaximumPacketSize],
            false,
            packet_too_large
        ),
    ]
}

/// The connections of a loop get labels `a0`, `a1`, ...
fn label(i: usize) -> String {
    format!("a{i}")
}

async fn pubrel_flags(cx: Ctx) -> TestResult {
    let v5 = cx.v5();
    for (i, first) in [0x60u8, 0x63].into_iter().enumerate() {
        let mut body = 1u16.to_be_bytes().to_vec();
        if v5 {
            body.push(0x00);
        }
        let wire = frame(first, &body);
        after_connect_closes(
            &cx,
            &label(i),
            &wire,
            &format!("PUBREL with first byte {first:#04x}"),
            "MQTT-3.6.1-1",
            Reply::AnyError,
        )
        .await?;
    }
    Ok(())
}

async fn subscribe_flags(cx: Ctx) -> TestResult {
    let f = cx.topic("s");
    for (i, first) in [0x80u8, 0x8F].into_iter().enumerate() {
        let wire = subscribe_frame(cx.v5(), first, 1, &[], &[(f.as_bytes(), 0)]);
        after_connect_closes(
            &cx,
            &label(i),
            &wire,
            &format!("SUBSCRIBE with first byte {first:#04x}"),
            "MQTT-3.8.1-1",
            Reply::AnyError,
        )
        .await?;
    }
    Ok(())
}

async fn unsubscribe_flags(cx: Ctx) -> TestResult {
    let f = cx.topic("s");
    for (i, first) in [0xA0u8, 0xAB].into_iter().enumerate() {
        let wire = unsubscribe_frame(cx.v5(), first, 1, &[f.as_bytes()]);
        after_connect_closes(
            &cx,
            &label(i),
            &wire,
            &format!("UNSUBSCRIBE with first byte {first:#04x}"),
            "MQTT-3.10.1-1",
            Reply::AnyError,
        )
        .await?;
    }
    Ok(())
}

async fn other_flags(cx: Ctx) -> TestResult {
    let close_rule = if cx.v5() {
        "MQTT-2.1.3-1"
    } else {
        "MQTT-2.2.2-2"
    };
    // Every case is tried; the failure lists those the broker did not close on.
    let mut missed = Vec::new();
    // CONNECT 0x11: the first packet of a connection.
    let id = cx.client_id("c");
    let mut bad = connect_frame(&cx, 0x02, &[], &lstr(id.as_bytes()));
    if let Some(b) = bad.first_mut() {
        *b = 0x11;
    }
    let mut conn = cx.open("c").await?;
    conn.send_raw_lenient(&bad, "CONNECT with first byte 0x11")
        .await?;
    match conn.expect_close(close_rule, None).await {
        Ok(Some(c)) if c.0 == 0 => missed.push("CONNECT 0x11: CONNACK 0x00".to_owned()),
        Ok(_) => {}
        Err(Stop::Fail(f)) => missed.push(format!("CONNECT 0x11: {}", f.observed)),
        Err(other) => return Err(other),
    }
    // The others after a CONNACK; the acknowledgements are for an identifier not in use.
    let v5 = cx.v5();
    let ack = |first: u8| {
        let mut body = 7u16.to_be_bytes().to_vec();
        if v5 {
            body.push(0x00);
        }
        frame(first, &body)
    };
    let cases: [(Vec<u8>, &str); 5] = [
        (ack(0x42), "PUBACK 0x42"),
        (ack(0x58), "PUBREC 0x58"),
        (ack(0x71), "PUBCOMP 0x71"),
        (vec![0xC1, 0x00], "PINGREQ 0xC1"),
        (vec![0xC8, 0x00], "PINGREQ 0xC8"),
    ];
    for (i, (wire, what)) in cases.iter().enumerate() {
        let what_sent = format!("{what} (reserved flags set)");
        match after_connect_closes(
            &cx,
            &label(i),
            wire,
            &what_sent,
            close_rule,
            Reply::AnyError,
        )
        .await
        {
            Ok(()) => {}
            Err(Stop::Fail(f)) => missed.push(format!("{what}: {}", f.observed)),
            Err(other) => return Err(other),
        }
    }
    ensure!(
        missed.is_empty(),
        close_rule,
        "the connection closed on every packet with reserved fixed-header flags set",
        "{}",
        missed.join("; ")
    );
    Ok(())
}

async fn disconnect_flags(cx: Ctx) -> TestResult {
    let will_topic = cx.topic("will");
    let mut w = cx.connect("w").await?;
    w.sub(&will_topic, 0).await?;
    let mut c = cx.connect_packet("a");
    c.will = Some(Will {
        topic: topic(&will_topic)?,
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let (mut conn, _) = cx.connect_with("a", c).await?;
    conn.send_raw_lenient(&[0xE1, 0x00], "DISCONNECT with first byte 0xE1")
        .await?;
    let reply = if cx.v5() {
        Reply::Must(ReasonCode::MALFORMED_PACKET)
    } else {
        Reply::AnyError
    };
    closes(&mut conn, "MQTT-3.14.1-1", reply).await?;
    let p = w.publish("MQTT-3.14.1-1").await.map_err(|e| match e {
        Stop::Fail(f) => Stop::Fail(Failure::of(
            "MQTT-3.14.1-1",
            "the Will published: a DISCONNECT with reserved flags set is not a normal disconnect",
            f.observed,
        )),
        other => other,
    })?;
    ensure!(
        &*p.topic == will_topic.as_str() && p.payload.as_ref() == b"gone",
        "MQTT-3.14.1-1",
        "the Will (payload \"gone\") on the Will Topic",
        "{}",
        brief(&Packet::Publish(p.clone()))
    );
    w.disconnect().await;
    Ok(())
}

async fn packet_type_reserved(cx: Ctx) -> TestResult {
    let (rule, types): (&'static str, &[u8]) = if cx.v5() {
        ("MQTT-4.13.1-1", &[0x00])
    } else {
        ("MQTT-4.8.0-1", &[0x00, 0xF0])
    };
    for (i, first) in types.iter().enumerate() {
        after_connect_closes(
            &cx,
            &label(i),
            &[*first, 0x00],
            &format!("a packet of reserved type {}", first >> 4),
            rule,
            Reply::AnyError,
        )
        .await?;
    }
    Ok(())
}

async fn vbi_not_minimal(cx: Ctx) -> TestResult {
    // PINGREQ with Remaining Length 0 in two bytes.
    after_connect_closes(
        &cx,
        "a0",
        &[0xC0, 0x80, 0x00],
        "PINGREQ with Remaining Length 0x80 0x00",
        "MQTT-1.5.5-1",
        Reply::AnyError,
    )
    .await?;
    // PUBLISH with Remaining Length in two bytes where one is enough.
    let t = cx.topic("t");
    let good = publish_frame(true, 0, t.as_bytes(), None, &[], b"x");
    let mut body = good.get(2..).unwrap_or_default().to_vec();
    let n = u8::try_from(body.len()).unwrap_or(0);
    let mut wire = vec![0x30, n | 0x80, 0x00];
    wire.append(&mut body);
    after_connect_closes(
        &cx,
        "a1",
        &wire,
        "PUBLISH with its Remaining Length in 2 bytes",
        "MQTT-1.5.5-1",
        Reply::AnyError,
    )
    .await?;
    // PUBLISH with Property Length 0 in two bytes.
    let mut b = lstr(t.as_bytes());
    b.extend_from_slice(&[0x80, 0x00]);
    b.push(b'x');
    after_connect_closes(
        &cx,
        "a2",
        &frame(0x30, &b),
        "PUBLISH with Property Length 0x80 0x00",
        "MQTT-1.5.5-1",
        Reply::AnyError,
    )
    .await
}

async fn vbi_five_bytes(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-4.13.1-1"
    } else {
        "MQTT-4.8.0-1"
    };
    // A Remaining Length of 5 bytes: at most 4 are allowed (section 1.5.5 / 2.2.3).
    after_connect_closes(
        &cx,
        "a",
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x01, b't'],
        "PUBLISH with a 5-byte Remaining Length",
        rule,
        Reply::AnyError,
    )
    .await
}

async fn topic_length_beyond(cx: Ctx) -> TestResult {
    // A Topic Name length of 64 in a packet with 5 bytes left.
    let mut b = vec![0x00, 0x40, b'a', b'/', b'b'];
    if cx.v5() {
        b.push(0x00);
    }
    after_connect_closes(
        &cx,
        "a",
        &frame(0x30, &b),
        "PUBLISH whose Topic Name length (64) runs past the packet",
        "MQTT-3.3.2-1",
        Reply::AnyError,
    )
    .await
}

async fn property_length_beyond(cx: Ctx) -> TestResult {
    let t = cx.topic("t");
    let mut b = lstr(t.as_bytes());
    b.push(0x20); // Property Length 32, with 3 bytes left
    b.extend_from_slice(&[0x01, 0x00, b'x']);
    after_connect_closes(
        &cx,
        "a",
        &frame(0x30, &b),
        "PUBLISH whose Property Length (32) runs past the packet",
        "MQTT-4.13.1-1",
        Reply::AnyError,
    )
    .await
}

/// Ill-formed UTF-8: an encoded surrogate, an overlong NUL, a byte never in UTF-8.
const BAD_UTF8: [&[u8]; 3] = [&[0xED, 0xA0, 0x80], &[0xC0, 0x80], &[0xFF]];

async fn topic_invalid_utf8(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-1.5.4-1"
    } else {
        "MQTT-1.5.3-1"
    };
    let w = watcher(&cx, &cx.topic("#")).await?;
    for (i, bad) in BAD_UTF8.iter().enumerate() {
        let mut t = cx.topic("u").into_bytes();
        t.extend_from_slice(bad);
        let wire = publish_frame(cx.v5(), 0, &t, None, &[], b"x");
        after_connect_closes(
            &cx,
            &label(i),
            &wire,
            &format!("PUBLISH with ill-formed UTF-8 {bad:02x?} in its topic"),
            rule,
            Reply::AnyError,
        )
        .await?;
    }
    nothing_delivered(w, rule, "a PUBLISH with an ill-formed topic").await
}

async fn publish_topic_wildcard(cx: Ctx) -> TestResult {
    let w = watcher(&cx, &cx.topic("#")).await?;
    for (i, name) in ["a/+", "a/#", "+"].into_iter().enumerate() {
        let t = cx.topic(name);
        let wire = publish_frame(cx.v5(), 0, t.as_bytes(), None, &[], b"x");
        after_connect_closes(
            &cx,
            &label(i),
            &wire,
            &format!("PUBLISH to {t:?}"),
            "MQTT-3.3.2-2",
            Reply::AnyError,
        )
        .await?;
    }
    nothing_delivered(w, "MQTT-3.3.2-2", "a PUBLISH to a topic with a wildcard").await
}

async fn empty_topic(cx: Ctx) -> TestResult {
    let w = watcher(&cx, &cx.topic("#")).await?;
    let wire = publish_frame(cx.v5(), 0, b"", None, &[], b"x");
    // A Protocol Error (section 3.3.2.1) with no specific Reason Code: 0x82 or, say, 0x90.
    after_connect_closes(
        &cx,
        "a",
        &wire,
        "PUBLISH with an empty Topic Name and no Topic Alias",
        "MQTT-4.7.3-1",
        Reply::AnyError,
    )
    .await?;
    nothing_delivered(w, "MQTT-4.7.3-1", "a PUBLISH with an empty topic").await
}

async fn topic_null(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-1.5.4-2"
    } else {
        "MQTT-1.5.3-2"
    };
    let w = watcher(&cx, &cx.topic("#")).await?;
    let t = format!("{}\0b", cx.topic("a"));
    let wire = publish_frame(cx.v5(), 0, t.as_bytes(), None, &[], b"x");
    // The stimulus breaks two rules, the UTF-8 string's and the Topic Name's (MQTT-4.7.3-2):
    // the close is the reaction to both, so it asserts MQTT-4.7.3-2 too, with or without a
    // watcher (none when the broker has no wildcard subscriptions).
    after_connect_closes(
        &cx,
        "a",
        &wire,
        "PUBLISH with U+0000 in its topic",
        rule,
        Reply::AnyError,
    )
    .await
    .map_err(|e| match e {
        Stop::Fail(mut f) => {
            f.expected = format!("{} (the reaction to MQTT-4.7.3-2 too)", f.expected);
            Stop::Fail(f)
        }
        other => other,
    })?;
    nothing_delivered(w, "MQTT-4.7.3-2", "a PUBLISH with U+0000 in its topic").await
}

async fn subscribe_filter_invalid(cx: Ctx) -> TestResult {
    let null_rule = if cx.v5() {
        "MQTT-1.5.4-2"
    } else {
        "MQTT-1.5.3-2"
    };
    for (i, bad) in BAD_UTF8.iter().enumerate() {
        let mut f = cx.topic("u").into_bytes();
        f.extend_from_slice(bad);
        let wire = subscribe_frame(cx.v5(), 0x82, 1, &[], &[(&f, 0)]);
        let what = format!("SUBSCRIBE with ill-formed UTF-8 {bad:02x?} in its filter");
        after_connect_closes(
            &cx,
            &label(i),
            &wire,
            &what,
            "MQTT-3.8.3-1",
            Reply::AnyError,
        )
        .await?;
    }
    let f = format!("{}\0/#", cx.topic("n"));
    let wire = subscribe_frame(cx.v5(), 0x82, 1, &[], &[(f.as_bytes(), 0)]);
    after_connect_closes(
        &cx,
        "n",
        &wire,
        "SUBSCRIBE with U+0000 in its filter",
        null_rule,
        Reply::AnyError,
    )
    .await
}

async fn unsubscribe_filter_invalid(cx: Ctx) -> TestResult {
    for (i, bad) in BAD_UTF8.iter().enumerate() {
        let mut f = cx.topic("u").into_bytes();
        f.extend_from_slice(bad);
        let wire = unsubscribe_frame(cx.v5(), 0xA2, 1, &[&f]);
        let what = format!("UNSUBSCRIBE with ill-formed UTF-8 {bad:02x?} in its filter");
        after_connect_closes(
            &cx,
            &label(i),
            &wire,
            &what,
            "MQTT-3.10.3-1",
            Reply::AnyError,
        )
        .await?;
    }
    Ok(())
}

async fn client_id_invalid_utf8(cx: Ctx) -> TestResult {
    let ids: [&[u8]; 3] = [b"mc\xFF\xFE", b"mc\xED\xA0\x80", b"mc\xC0\x80"];
    for (i, id) in ids.iter().enumerate() {
        let wire = connect_frame(&cx, 0x02, &[], &lstr(id));
        refuses_connect(
            &cx,
            &label(i),
            &wire,
            &format!("CONNECT with Client Identifier {id:02x?}"),
            "MQTT-3.1.3-4",
        )
        .await?;
    }
    Ok(())
}

/// A payload: the Client Identifier of `name`, then `rest`.
fn payload(cx: &Ctx, name: &str, rest: &[&[u8]]) -> Vec<u8> {
    let mut p = lstr(cx.client_id(name).as_bytes());
    for r in rest {
        p.extend_from_slice(r);
    }
    p
}

/// The Will Properties (5.0: an empty list) for a payload.
fn will_props(cx: &Ctx) -> Vec<u8> {
    if cx.v5() { vec![0x00] } else { vec![] }
}

async fn will_topic_invalid_utf8(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-3.1.3-11"
    } else {
        "MQTT-3.1.3-10"
    };
    let mut t = cx.topic("w").into_bytes();
    t.extend_from_slice(&[0xED, 0xA0, 0x80]);
    let p = payload(&cx, "a", &[&will_props(&cx), &lstr(&t), &lstr(b"x")]);
    let wire = connect_frame(&cx, 0x06, &[], &p);
    refuses_connect(
        &cx,
        "a",
        &wire,
        "CONNECT with an ill-formed Will Topic",
        rule,
    )
    .await
}

async fn username_invalid_utf8(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-3.1.3-12"
    } else {
        "MQTT-3.1.3-11"
    };
    let p = payload(&cx, "a", &[&lstr(b"user\xC3\x28")]);
    let wire = connect_frame(&cx, 0x82, &[], &p);
    refuses_connect(
        &cx,
        "a",
        &wire,
        "CONNECT with an ill-formed User Name",
        rule,
    )
    .await
}

async fn user_property_invalid_utf8(cx: Ctx) -> TestResult {
    let t = cx.topic("t");
    let w = watcher(&cx, &t).await?;
    let props: [Vec<u8>; 2] = [p_pair(b"k\xC3\x28", b"v"), p_pair(b"k", b"v\xED\xB0\x80")];
    for (i, pr) in props.iter().enumerate() {
        let wire = publish_frame(true, 0, t.as_bytes(), None, pr, b"x");
        after_connect_closes(
            &cx,
            &label(i),
            &wire,
            "PUBLISH with an ill-formed User Property",
            "MQTT-1.5.7-1",
            Reply::AnyError,
        )
        .await?;
    }
    nothing_delivered(
        w,
        "MQTT-1.5.7-1",
        "a PUBLISH with an ill-formed User Property",
    )
    .await?;
    let wire = connect_frame(
        &cx,
        0x02,
        &p_pair(b"k\xC3\x28", b"v"),
        &payload(&cx, "c", &[]),
    );
    refuses_connect(
        &cx,
        "c",
        &wire,
        "CONNECT with an ill-formed User Property",
        "MQTT-1.5.7-1",
    )
    .await
}

/// A client subscribed to the test's topic `t` sees nothing of a PUBLISH to `t` with `props`,
/// which closes the connection.
async fn publish_props_closes(
    cx: &Ctx,
    props: &[u8],
    what: &str,
    rule: &'static str,
) -> TestResult {
    let t = cx.topic("t");
    let w = watcher(cx, &t).await?;
    let wire = publish_frame(true, 0, t.as_bytes(), None, props, b"x");
    after_connect_closes(cx, "a", &wire, what, rule, Reply::AnyError).await?;
    nothing_delivered(w, rule, what).await
}

async fn response_topic_invalid_utf8(cx: Ctx) -> TestResult {
    let mut r = cx.topic("r").into_bytes();
    r.extend_from_slice(&[0xC0, 0x80]);
    publish_props_closes(
        &cx,
        &p_str(0x08, &r),
        "a PUBLISH with an ill-formed Response Topic",
        "MQTT-3.3.2-13",
    )
    .await
}

async fn content_type_invalid_utf8(cx: Ctx) -> TestResult {
    publish_props_closes(
        &cx,
        &p_str(0x03, b"text/\xFF"),
        "a PUBLISH with an ill-formed Content Type",
        "MQTT-3.3.2-19",
    )
    .await
}

async fn will_without_fields(cx: Ctx) -> TestResult {
    let wire = connect_frame(&cx, 0x06, &[], &payload(&cx, "a", &[]));
    refuses_connect(
        &cx,
        "a",
        &wire,
        "CONNECT with Will Flag 1 and no Will fields",
        "MQTT-3.1.2-9",
    )
    .await
}

async fn will_qos_without_will(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-3.1.2-11"
    } else {
        "MQTT-3.1.2-13"
    };
    for (i, flags) in [0x0Au8, 0x12].into_iter().enumerate() {
        let wire = connect_frame(&cx, flags, &[], &payload(&cx, "a", &[]));
        refuses_connect(
            &cx,
            &label(i),
            &wire,
            &format!("CONNECT with Will Flag 0 and Will QoS {}", (flags >> 3) & 3),
            rule,
        )
        .await?;
    }
    Ok(())
}

async fn will_qos_3(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-3.1.2-12"
    } else {
        "MQTT-3.1.2-14"
    };
    let will_topic = cx.topic("w");
    let fields = |cx: &Ctx, name: &str| {
        payload(
            cx,
            name,
            &[&will_props(cx), &lstr(will_topic.as_bytes()), &lstr(b"x")],
        )
    };
    let wire = connect_frame(&cx, 0x02 | 0x04 | 0x18, &[], &fields(&cx, "a"));
    refuses_connect(&cx, "a", &wire, "CONNECT with Will QoS 3", rule).await?;
    // Will QoS 0 up to the broker's maximum (read from its 5.0 CONNACK) are accepted.
    let max = cx.caps().maximum_qos;
    for q in 0..=max {
        let name = format!("q{q}");
        let wire = connect_frame(&cx, 0x02 | 0x04 | (q << 3), &[], &fields(&cx, &name));
        let mut conn = cx.open(&name).await?;
        conn.send_raw(&wire, &format!("CONNECT with Will QoS {q}"))
            .await?;
        let ack = conn.connack(rule).await?;
        ensure!(
            ack.reason_code == ReasonCode::SUCCESS,
            rule,
            format!("a CONNECT with Will QoS {q} accepted"),
            "CONNACK {:#04x}",
            ack.reason_code.0
        );
        conn.disconnect().await;
    }
    Ok(())
}

async fn will_retain_without_will(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-3.1.2-13"
    } else {
        "MQTT-3.1.2-15"
    };
    let wire = connect_frame(&cx, 0x22, &[], &payload(&cx, "a", &[]));
    refuses_connect(
        &cx,
        "a",
        &wire,
        "CONNECT with Will Flag 0 and Will Retain 1",
        rule,
    )
    .await
}

async fn will_fields_without_will(cx: Ctx) -> TestResult {
    let t = cx.topic("w");
    let p = payload(&cx, "a", &[&lstr(t.as_bytes()), &lstr(b"x")]);
    let wire = connect_frame(&cx, 0x02, &[], &p);
    refuses_connect(
        &cx,
        "a",
        &wire,
        "CONNECT with Will Flag 0 and a Will Topic and Message",
        "MQTT-3.1.2-11",
    )
    .await
}

async fn username_flag_0_present(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-3.1.2-16"
    } else {
        "MQTT-3.1.2-18"
    };
    let wire = connect_frame(&cx, 0x02, &[], &payload(&cx, "a", &[&lstr(b"user")]));
    refuses_connect(
        &cx,
        "a",
        &wire,
        "CONNECT with User Name Flag 0 and a User Name",
        rule,
    )
    .await
}

async fn username_flag_1_missing(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-3.1.2-17"
    } else {
        "MQTT-3.1.2-19"
    };
    let wire = connect_frame(&cx, 0x82, &[], &payload(&cx, "a", &[]));
    refuses_connect(
        &cx,
        "a",
        &wire,
        "CONNECT with User Name Flag 1 and no User Name",
        rule,
    )
    .await
}

async fn password_flag_0_present(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-3.1.2-18"
    } else {
        "MQTT-3.1.2-20"
    };
    let p = payload(&cx, "a", &[&lstr(b"user"), &lstr(b"secret")]);
    let wire = connect_frame(&cx, 0x82, &[], &p);
    refuses_connect(
        &cx,
        "a",
        &wire,
        "CONNECT with Password Flag 0 and a Password",
        rule,
    )
    .await
}

async fn password_flag_1_missing(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-3.1.2-19"
    } else {
        "MQTT-3.1.2-21"
    };
    let wire = connect_frame(&cx, 0xC2, &[], &payload(&cx, "a", &[&lstr(b"user")]));
    refuses_connect(
        &cx,
        "a",
        &wire,
        "CONNECT with Password Flag 1 and no Password",
        rule,
    )
    .await
}

async fn password_without_username(cx: Ctx) -> TestResult {
    let wire = connect_frame(&cx, 0x42, &[], &payload(&cx, "a", &[&lstr(b"secret")]));
    refuses_connect(
        &cx,
        "a",
        &wire,
        "CONNECT with User Name Flag 0 and Password Flag 1",
        "MQTT-3.1.2-22",
    )
    .await
}

async fn connect_no_client_id(cx: Ctx) -> TestResult {
    let wire = connect_frame(&cx, 0x02, &[], &[]);
    refuses_connect(
        &cx,
        "a",
        &wire,
        "CONNECT with an empty payload",
        "MQTT-3.1.3-3",
    )
    .await
}

async fn connect_bad_format(cx: Ctx) -> TestResult {
    let id = cx.client_id("a");
    // The Client Identifier's length runs past the packet.
    let mut short = vec![0x00, 0x30];
    short.extend_from_slice(id.as_bytes());
    let mut cases: Vec<(Vec<u8>, &str)> = vec![
        (
            connect_frame(&cx, 0x02, &[], &short),
            "CONNECT whose Client Identifier length runs past the packet",
        ),
        (
            connect_frame(&cx, 0x02, &[], &payload(&cx, "a", &[&[0x00]])),
            "CONNECT with a byte after its last field",
        ),
    ];
    if cx.v5() {
        // Property Length 16 with 5 bytes of properties, then the payload.
        let mut b = lstr(b"MQTT");
        b.extend_from_slice(&[5, 0x02, 0x00, 0x3C, 0x10]);
        b.extend_from_slice(&p_u32(0x11, 10));
        b.extend_from_slice(&lstr(id.as_bytes()));
        cases.push((
            frame(0x10, &b),
            "CONNECT whose Property Length runs into the payload",
        ));
        cases.push((
            connect_frame(&cx, 0x02, &p_byte(0x7F, 1), &payload(&cx, "a", &[])),
            "CONNECT with the unknown property 0x7F",
        ));
        let dup = [p_u32(0x11, 10), p_u32(0x11, 20)].concat();
        cases.push((
            connect_frame(&cx, 0x02, &dup, &payload(&cx, "a", &[])),
            "CONNECT with the Session Expiry Interval twice",
        ));
    }
    for (i, (wire, what)) in cases.iter().enumerate() {
        refuses_connect(&cx, &label(i), wire, what, "MQTT-3.1.4-1").await?;
    }
    Ok(())
}

async fn packet_id_zero(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-4.13.1-1"
    } else {
        "MQTT-4.8.0-1"
    };
    let t = cx.topic("t");
    let mut cases = vec![
        (
            subscribe_frame(cx.v5(), 0x82, 0, &[], &[(t.as_bytes(), 0)]),
            "SUBSCRIBE with Packet Identifier 0",
        ),
        (
            unsubscribe_frame(cx.v5(), 0xA2, 0, &[t.as_bytes()]),
            "UNSUBSCRIBE with Packet Identifier 0",
        ),
    ];
    if cx.caps().maximum_qos >= 1 || !cx.v5() {
        cases.push((
            publish_frame(cx.v5(), 0x02, t.as_bytes(), Some(0), &[], b"x"),
            "QoS 1 PUBLISH with Packet Identifier 0",
        ));
    }
    for (i, (wire, what)) in cases.iter().enumerate() {
        after_connect_closes(&cx, &label(i), wire, what, rule, Reply::AnyError).await?;
    }
    Ok(())
}

async fn subscribe_no_filters(cx: Ctx) -> TestResult {
    let rule = if cx.v5() {
        "MQTT-3.8.3-2"
    } else {
        "MQTT-3.8.3-3"
    };
    let wire = subscribe_frame(cx.v5(), 0x82, 1, &[], &[]);
    after_connect_closes(
        &cx,
        "a",
        &wire,
        "SUBSCRIBE with no Topic Filter",
        rule,
        Reply::AnyError,
    )
    .await
}

async fn unsubscribe_no_filters(cx: Ctx) -> TestResult {
    let wire = unsubscribe_frame(cx.v5(), 0xA2, 1, &[]);
    after_connect_closes(
        &cx,
        "a",
        &wire,
        "UNSUBSCRIBE with no Topic Filter",
        "MQTT-3.10.3-2",
        Reply::AnyError,
    )
    .await
}

async fn subscription_options_reserved(cx: Ctx) -> TestResult {
    let (rule, options): (&'static str, &[u8]) = if cx.v5() {
        ("MQTT-3.8.3-5", &[0x40, 0x80, 0x30])
    } else {
        ("MQTT-4.8.0-1", &[0x04, 0x80])
    };
    let f = cx.topic("s");
    for (i, o) in options.iter().enumerate() {
        let wire = subscribe_frame(cx.v5(), 0x82, 1, &[], &[(f.as_bytes(), *o)]);
        after_connect_closes(
            &cx,
            &label(i),
            &wire,
            &format!("SUBSCRIBE with options byte {o:#04x}"),
            rule,
            Reply::AnyError,
        )
        .await?;
    }
    Ok(())
}

async fn duplicate_property(cx: Ctx) -> TestResult {
    let t = cx.topic("t");
    let w = watcher(&cx, &t).await?;
    let cases = [
        (
            [p_byte(0x01, 1), p_byte(0x01, 1)].concat(),
            "PUBLISH with the Payload Format Indicator twice",
        ),
        (
            [p_u32(0x02, 60), p_u32(0x02, 30)].concat(),
            "PUBLISH with the Message Expiry Interval twice",
        ),
    ];
    for (i, (props, what)) in cases.iter().enumerate() {
        let wire = publish_frame(true, 0, t.as_bytes(), None, props, b"x");
        after_connect_closes(
            &cx,
            &label(i),
            &wire,
            what,
            "MQTT-4.13.1-1",
            Reply::AnyError,
        )
        .await?;
    }
    nothing_delivered(w, "MQTT-4.13.1-1", "a PUBLISH with a duplicate property").await
}

async fn property_not_allowed(cx: Ctx) -> TestResult {
    let t = cx.topic("t");
    let w = watcher(&cx, &t).await?;
    let publish = publish_frame(true, 0, t.as_bytes(), None, &p_u32(0x11, 10), b"x");
    after_connect_closes(
        &cx,
        "a0",
        &publish,
        "PUBLISH with a Session Expiry Interval",
        "MQTT-4.13.1-1",
        Reply::AnyError,
    )
    .await?;
    nothing_delivered(
        w,
        "MQTT-4.13.1-1",
        "a PUBLISH with a Session Expiry Interval",
    )
    .await?;
    let topic_alias = [0x23, 0x00, 0x01];
    let sub = subscribe_frame(true, 0x82, 1, &topic_alias, &[(t.as_bytes(), 0)]);
    after_connect_closes(
        &cx,
        "a1",
        &sub,
        "SUBSCRIBE with a Topic Alias",
        "MQTT-4.13.1-1",
        Reply::AnyError,
    )
    .await
}

async fn unknown_property(cx: Ctx) -> TestResult {
    publish_props_closes(
        &cx,
        &p_byte(0x7F, 1),
        "a PUBLISH with the unknown property 0x7F",
        "MQTT-4.13.1-1",
    )
    .await
}

async fn subscription_id_in_publish(cx: Ctx) -> TestResult {
    publish_props_closes(
        &cx,
        &[0x0B, 0x05],
        "a PUBLISH with Subscription Identifier 5",
        "MQTT-3.3.4-6",
    )
    .await
}

async fn payload_format_invalid(cx: Ctx) -> TestResult {
    let t = cx.topic("t");
    let mut w = cx.connect("w").await?;
    w.sub(&t, 0).await?;
    let mut conn = cx.connect("a").await?;
    let wire = publish_frame(
        true,
        0x02,
        t.as_bytes(),
        Some(3),
        &p_byte(0x01, 1),
        b"\xFF\xFE",
    );
    conn.send_raw(
        &wire,
        "QoS 1 PUBLISH, Payload Format Indicator 1, payload ff fe",
    )
    .await?;
    // Either refused (PUBACK 0x99, or DISCONNECT 0x99 and the close): then not delivered; or
    // accepted: then delivered with the Payload Format Indicator unaltered.
    let refused = match conn.recv_within(cx.answer_within()).await? {
        Some(Received::Packet(Packet::PubAck(a))) => {
            ensure!(
                a.reason_code == ReasonCode::PAYLOAD_FORMAT_INVALID || !a.reason_code.is_error(),
                "MQTT-3.3.2-4",
                "PUBACK 0x99 (Payload format invalid) or a success",
                "PUBACK {:#04x}",
                a.reason_code.0
            );
            a.reason_code.is_error()
        }
        Some(Received::Packet(Packet::Disconnect(d))) => {
            ensure!(
                d.reason_code == ReasonCode::PAYLOAD_FORMAT_INVALID,
                "MQTT-3.3.2-4",
                "a PUBACK, or a DISCONNECT 0x99 (Payload format invalid)",
                "DISCONNECT {:#04x}",
                d.reason_code.0
            );
            true
        }
        other => {
            return Err(Failure::plain(
                "a PUBACK (or DISCONNECT 0x99) for the QoS 1 PUBLISH",
                format!("{other:?}"),
            )
            .into());
        }
    };
    if refused {
        w.expect_quiet(
            "MQTT-3.3.2-4",
            "no delivery of a message the broker refused",
            None,
        )
        .await?;
        w.disconnect().await;
        return Err(Stop::NotApplicable(
            "the broker refused the ill-formed payload (0x99): no message to forward with its \
             Payload Format Indicator"
                .into(),
        ));
    }
    let p = w.publish("MQTT-3.3.2-4").await?;
    ensure!(
        p.properties.payload_format_indicator == Some(mqtt_codec::PayloadFormatIndicator::Utf8),
        "MQTT-3.3.2-4",
        "the Payload Format Indicator 1 forwarded unaltered",
        "{}",
        brief(&Packet::Publish(p.clone()))
    );
    w.disconnect().await;
    Ok(())
}

async fn packet_too_large(cx: Ctx) -> TestResult {
    let Some(max) = cx.caps().maximum_packet_size else {
        return Err(Stop::NotApplicable(
            "the broker has no Maximum Packet Size".into(),
        ));
    };
    let size = usize::try_from(max).unwrap_or(65_536) + 64;
    let t = cx.topic("t");
    let w = watcher(&cx, &t).await?;
    let payload = vec![b'x'; size];
    let wire = publish_frame(true, 0, t.as_bytes(), None, &[], &payload);
    after_connect_closes(
        &cx,
        "a",
        &wire,
        &format!(
            "PUBLISH of {} bytes (Maximum Packet Size {max})",
            wire.len()
        ),
        "MQTT-4.13.1-1",
        Reply::IfAny(ReasonCode::PACKET_TOO_LARGE),
    )
    .await?;
    nothing_delivered(w, "MQTT-4.13.1-1", "a PUBLISH over the Maximum Packet Size").await?;
    Ok(())
}
