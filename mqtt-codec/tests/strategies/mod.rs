//! Proptest strategies for valid MQTT packets, for the property tests of `roundtrip.rs`.
//!
//! Everything generated here is valid for the protocol version it is generated for: the
//! strategies build packets the way a correct peer would (valid UTF-8 without U+0000, topic
//! names without wildcards, well-formed topic filters, non-zero packet identifiers, properties
//! allowed in the packet with values in range, reason codes the packet may carry …), so the
//! codec must encode every one of them and decode it back unchanged.

use core::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;
use mqtt_codec::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketId, PacketType, PayloadFormatIndicator,
    Properties, PropertyContext, PropertyId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel,
    Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, TopicFilter,
    TopicName, UnsubAck, Unsubscribe, Utf8String, VBI_MAX, Will,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::strategy::Union;

// ---------------------------------------------------------------------------------------------
// Primitive values
// ---------------------------------------------------------------------------------------------

/// Characters that exercise the UTF-8 rules: ASCII, two-, three- and four-byte sequences, the
/// byte order mark and the largest code point. Never U+0000.
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => prop::char::range('a', 'z'),
        1 => prop::char::range('0', '9'),
        2 => prop::sample::select(vec![
            ' ', '-', '_', '.', '$', '/', '+', '#', '\u{7F}', 'é', 'ß', '€', '中', '\u{FEFF}',
            '\u{FFFF}', '😀', '\u{10FFFF}',
        ]),
        1 => any::<char>().prop_filter("U+0000 is not allowed", |c| *c != '\0'),
    ]
}

/// A character of a topic level: anything but U+0000, `/`, `+` and `#`.
fn level_char() -> impl Strategy<Value = char> {
    any_char().prop_filter("not a separator or wildcard", |c| {
        !matches!(c, '/' | '+' | '#')
    })
}

/// A string of up to `max_chars` characters from `chars`, sometimes with a leading U+FEFF
/// (which MQTT keeps as part of the string).
fn text(chars: impl Strategy<Value = char>, max_chars: usize) -> impl Strategy<Value = String> {
    (
        option::weighted(0.1, Just('\u{FEFF}')),
        vec(chars, 0..=max_chars),
    )
        .prop_map(|(bom, chars)| bom.into_iter().chain(chars).collect())
}

/// A valid MQTT UTF-8 Encoded String of up to `max_chars` characters.
pub(crate) fn utf8_string(max_chars: usize) -> impl Strategy<Value = Utf8String> {
    text(any_char(), max_chars)
        .prop_map(|s| Utf8String::try_from(s).expect("generated a valid UTF-8 string"))
}

/// A string of up to 65 535 bytes (the most a length prefix allows, often exactly that), one
/// character repeated.
fn long_utf8_string() -> impl Strategy<Value = Utf8String> {
    let len = prop_oneof![Just(65_535usize), 16_384usize..=65_535];
    (prop::sample::select(vec!['a', 'é', '€', '😀']), len).prop_map(|(c, len)| {
        let s: String = std::iter::repeat_n(c, len / c.len_utf8()).collect();
        Utf8String::try_from(s).expect("generated a valid long string")
    })
}

/// A string field: usually short, sometimes hundreds or thousands of bytes (a short string
/// repeated), now and then as long as MQTT allows.
pub(crate) fn string_field(max_chars: usize) -> BoxedStrategy<Utf8String> {
    let medium = (utf8_string(6), 8usize..=600).prop_map(|(s, n)| {
        Utf8String::try_from(s.as_str().repeat(n)).expect("generated a valid string")
    });
    prop_oneof![36 => utf8_string(max_chars), 4 => medium, 1 => long_utf8_string()].boxed()
}

/// Binary data of up to `max_len` bytes.
pub(crate) fn bytes(max_len: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max_len).prop_map(Bytes::from)
}

/// `len` bytes of a pattern (cheaper to generate than random bytes one by one).
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

/// A binary field: usually short, now and then as long as its length prefix allows.
pub(crate) fn binary_field(max_len: usize) -> BoxedStrategy<Bytes> {
    let long_len = prop_oneof![Just(65_535usize), 16_384usize..=65_535];
    prop_oneof![
        40 => bytes(max_len),
        1 => (long_len, any::<u8>()).prop_map(|(len, seed)| pattern(len, seed)),
    ]
    .boxed()
}

/// A payload: usually short, often up to 2 KiB, occasionally around 70 000 bytes so that the
/// Remaining Length takes three bytes (built from a pattern rather than byte by byte).
pub(crate) fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        8 => bytes(64),
        4 => bytes(2048),
        1 => (65_536usize..=72_000, any::<u8>()).prop_map(|(len, seed)| pattern(len, seed)),
    ]
}

/// A non-zero Packet Identifier, with the extremes often.
pub(crate) fn packet_id() -> impl Strategy<Value = PacketId> {
    prop_oneof![Just(1u16), Just(u16::MAX), 1..=u16::MAX]
        .prop_map(|v| PacketId::new(v).expect("non-zero"))
}

pub(crate) fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

// ---------------------------------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------------------------------

/// One level of a topic name or filter, possibly empty.
fn topic_level() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => vec(level_char(), 1..=8).prop_map(|c| c.into_iter().collect()),
        1 => prop::sample::select(vec!["", "a", "sensors", "$SYS", "t1", "温度"])
            .prop_map(String::from),
    ]
}

/// A non-empty Topic Name: levels without wildcards, sometimes with a leading U+FEFF, now and
/// then 65 535 bytes long.
pub(crate) fn topic_name() -> BoxedStrategy<TopicName> {
    let short = (
        option::weighted(0.05, Just("\u{FEFF}")),
        vec(topic_level(), 1..=5),
    )
        .prop_map(|(bom, levels)| format!("{}{}", bom.unwrap_or(""), levels.join("/")))
        .prop_filter("a topic name is not empty", |s| !s.is_empty());
    let long = prop_oneof![Just(65_535usize), 1usize..=65_535]
        .prop_map(|len| {
            "level/€"
                .chars()
                .cycle()
                .scan(0, |n, c| {
                    *n += c.len_utf8();
                    (*n <= len).then_some(c)
                })
                .collect::<String>()
        })
        .prop_filter("a topic name is not empty", |s| !s.is_empty());
    prop_oneof![60 => short, 1 => long]
        .prop_map(|s| TopicName::try_from(s).expect("generated a valid topic name"))
        .boxed()
}

/// The filter part of a Topic Filter: levels from words and `+`, `#` only as the last level.
fn plain_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![4 => topic_level(), 1 => Just("+".to_owned())];
    prop_oneof![
        1 => Just("#".to_owned()),
        12 => (vec(level, 1..=5), prop::bool::weighted(0.25)).prop_map(|(mut levels, hash)| {
            if hash {
                levels.push("#".to_owned());
            }
            levels.join("/")
        }),
    ]
    // An empty filter is invalid; a first level that happens to read `$share` would make it a
    // shared subscription.
    .prop_filter("a valid plain filter", |f| {
        !f.is_empty() && !f.starts_with("$share/")
    })
}

/// A ShareName: at least one character, no `/`, `+` or `#`.
fn share_name() -> impl Strategy<Value = String> {
    vec(level_char(), 1..=6).prop_map(|c| c.into_iter().collect())
}

/// A valid Topic Filter for `version`: in MQTT 5.0 sometimes a shared subscription
/// `$share/{ShareName}/{filter}`; before, sometimes an ordinary filter whose first level is
/// `$share` (such as `$share/g`, `$share//a` or `$share/+/#`, which are not shared
/// subscriptions there).
pub(crate) fn topic_filter(version: ProtocolVersion) -> BoxedStrategy<TopicFilter> {
    let s = if version.is_v5() {
        prop_oneof![
            4 => plain_filter(),
            1 => (share_name(), plain_filter()).prop_map(|(g, f)| format!("$share/{g}/{f}")),
        ]
        .boxed()
    } else {
        let after_share = prop_oneof![
            Just(String::new()),
            plain_filter(),
            (topic_level(), plain_filter()).prop_map(|(l, f)| format!("{l}/{f}")),
        ];
        prop_oneof![
            8 => plain_filter(),
            1 => after_share.prop_map(|f| format!("$share/{f}")),
        ]
        .boxed()
    };
    s.prop_map(|f| TopicFilter::try_from(f).expect("generated a valid topic filter"))
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Properties and reason codes
// ---------------------------------------------------------------------------------------------

fn sometimes<S: Strategy>(s: S) -> impl Strategy<Value = Option<S::Value>> {
    option::weighted(0.3, s)
}

/// A Subscription Identifier, 1 to 268 435 455, with the Variable Byte Integer boundaries often.
pub(crate) fn subscription_id() -> impl Strategy<Value = u32> {
    prop_oneof![
        1 => prop::sample::select(vec![1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VBI_MAX]),
        2 => 1..=VBI_MAX,
    ]
}

/// User Properties: several, in order, with repeated keys (and pairs) now and then.
fn user_properties() -> impl Strategy<Value = Vec<(Utf8String, Utf8String)>> {
    let key = prop_oneof![
        1 => prop::sample::select(vec!["k", "key", "ключ"])
            .prop_map(|k| Utf8String::try_from(k).expect("valid")),
        2 => utf8_string(8),
    ];
    prop_oneof![
        2 => Just(Vec::new()),
        1 => vec((key, string_field(12)), 1..=4),
    ]
}

/// Properties with every field that is allowed in `ctx` ([`PropertyId::is_allowed_in`]) present
/// now and then, each with a valid value.
pub(crate) fn properties(ctx: PropertyContext) -> BoxedStrategy<Properties> {
    let message = (
        sometimes(prop_oneof![
            Just(PayloadFormatIndicator::Unspecified),
            Just(PayloadFormatIndicator::Utf8)
        ]),
        sometimes(any::<u32>()),
        sometimes(string_field(12)),
        sometimes(topic_name()),
        sometimes(binary_field(24)),
        prop_oneof![2 => Just(Vec::new()), 1 => vec(subscription_id(), 1..=3)],
    );
    let session = (
        sometimes(any::<u32>()),
        sometimes(string_field(23)),
        sometimes(any::<u16>()),
        sometimes(string_field(12)),
        sometimes(binary_field(24)),
        sometimes(any::<bool>()),
        sometimes(any::<u32>()),
        sometimes(any::<bool>()),
        sometimes(string_field(12)),
        sometimes(string_field(12)),
        sometimes(string_field(24)),
    );
    let limits = (
        sometimes(any::<NonZeroU16>()),
        sometimes(any::<u16>()),
        sometimes(any::<NonZeroU16>()),
        sometimes(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        sometimes(any::<bool>()),
        user_properties(),
        sometimes(any::<NonZeroU32>()),
        sometimes(any::<bool>()),
        sometimes(any::<bool>()),
        sometimes(any::<bool>()),
    );
    // Boxed one by one: the value tree of the whole tuple is too big for a test thread's stack
    // in a debug build.
    let any_props =
        (message.boxed(), session.boxed(), limits.boxed()).prop_map(move |(m, s, l)| {
            let mut p = Properties {
                payload_format_indicator: m.0,
                message_expiry_interval: m.1,
                session_expiry_interval: s.0,
                server_keep_alive: s.2,
                request_problem_information: s.5,
                will_delay_interval: s.6,
                request_response_information: s.7,
                receive_maximum: l.0,
                topic_alias_maximum: l.1,
                topic_alias: l.2,
                maximum_qos: l.3,
                retain_available: l.4,
                maximum_packet_size: l.6,
                wildcard_subscription_available: l.7,
                subscription_identifier_available: l.8,
                shared_subscription_available: l.9,
                ..Properties::default()
            };
            p.set_content_type(m.2);
            p.set_response_topic(m.3).expect("not empty");
            p.set_correlation_data(m.4.as_deref()).expect("short");
            for id in m.5 {
                p.push_subscription_identifier(id).expect("in range");
            }
            p.set_assigned_client_identifier(s.1);
            p.set_authentication_method(s.3);
            p.set_authentication_data(s.4.as_deref()).expect("short");
            p.set_response_information(s.8);
            p.set_server_reference(s.9);
            p.set_reason_string(s.10);
            for (k, v) in l.5 {
                p.push_user_property(k, v);
            }
            restrict(&mut p, ctx);
            p
        });
    prop_oneof![1 => Just(Properties::default()), 3 => any_props].boxed()
}

/// Removes what `ctx` does not allow, and the combinations the specification forbids.
fn restrict(p: &mut Properties, ctx: PropertyContext) {
    let disallowed: Vec<PropertyId> = p.present().filter(|id| !id.is_allowed_in(ctx)).collect();
    for id in disallowed {
        p.remove(id);
    }
    if ctx != PropertyContext::Packet(PacketType::Publish) {
        // Only a PUBLISH may carry several.
        let first = p.subscription_identifier();
        p.clear_subscription_identifiers();
        if let Some(id) = first {
            p.push_subscription_identifier(id).expect("in range");
        }
    }
    // Authentication Data only with an Authentication Method.
    if p.authentication_method().is_none() {
        p.set_authentication_data(None).expect("removing");
    }
}

/// The properties of a packet: arbitrary allowed ones in MQTT 5.0, none before.
fn props(version: ProtocolVersion, ctx: PropertyContext) -> BoxedStrategy<Properties> {
    if version.is_v5() {
        properties(ctx)
    } else {
        Just(Properties::default()).boxed()
    }
}

fn packet_props(version: ProtocolVersion, ty: PacketType) -> BoxedStrategy<Properties> {
    props(version, PropertyContext::Packet(ty))
}

/// A reason code `ty` may carry in MQTT 5.0 ([`ReasonCode::is_valid_for`]), Success often.
pub(crate) fn reason_code(ty: PacketType) -> impl Strategy<Value = ReasonCode> {
    let valid: Vec<ReasonCode> = (0..=u8::MAX)
        .map(ReasonCode)
        .filter(|c| c.is_valid_for(ty))
        .collect();
    assert!(!valid.is_empty(), "{ty} has reason codes");
    prop_oneof![1 => Just(ReasonCode::SUCCESS), 3 => prop::sample::select(valid)]
}

/// The reason code of an acknowledgement: any valid one in MQTT 5.0, Success before.
fn ack_code(version: ProtocolVersion, ty: PacketType) -> BoxedStrategy<ReasonCode> {
    if version.is_v5() {
        reason_code(ty).boxed()
    } else {
        Just(ReasonCode::SUCCESS).boxed()
    }
}

// ---------------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------------

fn client_id() -> BoxedStrategy<Utf8String> {
    prop_oneof![
        1 => Just(Utf8String::default()),
        4 => utf8_string(23),
        1 => string_field(200),
    ]
    .boxed()
}

prop_compose! {
    fn will(protocol: ProtocolVersion)(
        topic in topic_name(),
        payload in binary_field(128),
        qos in qos(),
        retain in any::<bool>(),
        properties in props(protocol, PropertyContext::Will),
    ) -> Will {
        Will { topic, payload, qos, retain, properties }
    }
}

prop_compose! {
    fn connect_fields(protocol: ProtocolVersion)(
        clean_start in any::<bool>(),
        keep_alive in prop_oneof![Just(0u16), Just(u16::MAX), any::<u16>()],
        properties in packet_props(protocol, PacketType::Connect),
        client_id in client_id(),
        will in option::weighted(0.4, will(protocol).boxed()),
        username in option::of(string_field(16)),
        password in option::of(binary_field(32)),
    ) -> Connect {
        // Before MQTT 5.0 a password needs a user name.
        let password = if protocol.is_v5() || username.is_some() { password } else { None };
        Connect { protocol, clean_start, keep_alive, properties, client_id, will, username, password }
    }
}

/// A CONNECT of `protocol` (3.1, 3.1.1 or 5.0).
pub(crate) fn connect(protocol: ProtocolVersion) -> BoxedStrategy<Connect> {
    connect_fields(protocol).boxed()
}

/// The CONNECT protocols that can be sent on a connection of `version`: a 3.1 CONNECT goes with
/// the 3.1.1 encoder.
fn connect_protocol(version: ProtocolVersion) -> BoxedStrategy<ProtocolVersion> {
    match version {
        ProtocolVersion::V3_1_1 => {
            prop_oneof![3 => Just(ProtocolVersion::V3_1_1), 1 => Just(ProtocolVersion::V3_1)]
                .boxed()
        }
        v => Just(v).boxed(),
    }
}

fn connack(version: ProtocolVersion) -> BoxedStrategy<ConnAck> {
    let code = if version.is_v5() {
        reason_code(PacketType::ConnAck).boxed()
    } else {
        // The 3.1.1 return codes 0 to 5, as the reason codes of the same meaning.
        prop::sample::select(vec![0x00, 0x84, 0x85, 0x88, 0x86, 0x87])
            .prop_map(ReasonCode)
            .boxed()
    };
    (
        any::<bool>(),
        code,
        packet_props(version, PacketType::ConnAck),
    )
        .prop_map(|(session_present, reason_code, properties)| ConnAck {
            // Session Present only with a successful connection.
            session_present: session_present && reason_code == ReasonCode::SUCCESS,
            reason_code,
            properties,
        })
        .boxed()
}

prop_compose! {
    fn publish(version: ProtocolVersion)(
        dup in any::<bool>(),
        qos in qos(),
        retain in any::<bool>(),
        topic in topic_name(),
        aliased_only in any::<bool>(),
        id in packet_id(),
        properties in packet_props(version, PacketType::Publish),
        payload in payload(),
    ) -> Publish {
        // A Topic Alias lets the topic be empty.
        let topic = if aliased_only && properties.topic_alias.is_some() {
            TopicName::empty()
        } else {
            topic
        };
        Publish {
            dup: dup && qos != QoS::AtMostOnce,
            qos,
            retain,
            topic,
            packet_id: (qos != QoS::AtMostOnce).then_some(id),
            properties,
            payload,
        }
    }
}

/// The fields of PUBACK, PUBREC, PUBREL and PUBCOMP.
fn ack_fields(
    version: ProtocolVersion,
    ty: PacketType,
) -> impl Strategy<Value = (PacketId, ReasonCode, Properties)> {
    (
        packet_id(),
        ack_code(version, ty),
        packet_props(version, ty),
    )
}

fn subscription_options(version: ProtocolVersion) -> BoxedStrategy<SubscriptionOptions> {
    if !version.is_v5() {
        return qos().prop_map(SubscriptionOptions::qos).boxed();
    }
    let retain_handling = prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendIfNew),
        Just(RetainHandling::DoNotSend),
    ];
    (qos(), any::<bool>(), any::<bool>(), retain_handling)
        .prop_map(
            |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                qos,
                no_local,
                retain_as_published,
                retain_handling,
            },
        )
        .boxed()
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Subscribe> {
    let pair =
        (topic_filter(version), subscription_options(version)).prop_map(|(filter, mut opts)| {
            // No Local is a Protocol Error on a shared subscription.
            if filter.shared().is_some() {
                opts.no_local = false;
            }
            (filter, opts)
        });
    (
        packet_id(),
        packet_props(version, PacketType::Subscribe),
        vec(pair, 1..=5),
    )
        .prop_map(|(packet_id, properties, filters)| Subscribe {
            packet_id,
            properties,
            filters,
        })
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = SubAck> {
    let code = if version.is_v5() {
        reason_code(PacketType::SubAck).boxed()
    } else {
        prop::sample::select(vec![0x00, 0x01, 0x02, 0x80])
            .prop_map(ReasonCode)
            .boxed()
    };
    (
        packet_id(),
        packet_props(version, PacketType::SubAck),
        vec(code, 1..=8),
    )
        .prop_map(|(packet_id, properties, reason_codes)| SubAck {
            packet_id,
            properties,
            reason_codes,
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Unsubscribe> {
    (
        packet_id(),
        packet_props(version, PacketType::Unsubscribe),
        vec(topic_filter(version), 1..=5),
    )
        .prop_map(|(packet_id, properties, filters)| Unsubscribe {
            packet_id,
            properties,
            filters,
        })
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = UnsubAck> {
    let codes = if version.is_v5() {
        vec(reason_code(PacketType::UnsubAck), 1..=8).boxed()
    } else {
        // MQTT 3.1.1 has no reason codes in UNSUBACK.
        Just(Vec::new()).boxed()
    };
    (
        packet_id(),
        packet_props(version, PacketType::UnsubAck),
        codes,
    )
        .prop_map(|(packet_id, properties, reason_codes)| UnsubAck {
            packet_id,
            properties,
            reason_codes,
        })
}

fn disconnect(version: ProtocolVersion) -> BoxedStrategy<Disconnect> {
    if !version.is_v5() {
        return Just(Disconnect::default()).boxed();
    }
    (
        reason_code(PacketType::Disconnect),
        packet_props(version, PacketType::Disconnect),
    )
        .prop_map(|(reason_code, properties)| Disconnect {
            reason_code,
            properties,
        })
        .boxed()
}

fn auth() -> impl Strategy<Value = Auth> {
    (
        reason_code(PacketType::Auth),
        properties(PropertyContext::Packet(PacketType::Auth)),
        utf8_string(12),
    )
        .prop_map(|(reason_code, mut properties, method)| {
            // Only the empty short form (Success, no properties) may leave out the
            // Authentication Method (section 3.15.2.2.2).
            let short_form = reason_code == ReasonCode::SUCCESS && properties.is_empty();
            if !short_form && properties.authentication_method().is_none() {
                properties.set_authentication_method(Some(method));
            }
            Auth {
                reason_code,
                properties,
            }
        })
}

/// An arbitrary valid packet of any type for a connection of `version` (AUTH only in 5.0).
///
/// For [`ProtocolVersion::V3_1_1`] the CONNECTs are sometimes MQTT 3.1 ones (which the 3.1.1
/// encoder writes); for [`ProtocolVersion::V3_1`] every CONNECT is a 3.1 one and the other
/// packets are those of 3.1.1.
pub(crate) fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v = version;
    let mut arms: Vec<(u32, BoxedStrategy<Packet>)> = vec![
        (
            2,
            connect_protocol(v)
                .prop_flat_map(connect)
                .prop_map(Packet::from)
                .boxed(),
        ),
        (1, connack(v).prop_map(Packet::ConnAck).boxed()),
        (4, publish(v).prop_map(Packet::Publish).boxed()),
        (
            1,
            ack_fields(v, PacketType::PubAck)
                .prop_map(|(packet_id, reason_code, properties)| {
                    Packet::PubAck(PubAck {
                        packet_id,
                        reason_code,
                        properties,
                    })
                })
                .boxed(),
        ),
        (
            1,
            ack_fields(v, PacketType::PubRec)
                .prop_map(|(packet_id, reason_code, properties)| {
                    Packet::PubRec(PubRec {
                        packet_id,
                        reason_code,
                        properties,
                    })
                })
                .boxed(),
        ),
        (
            1,
            ack_fields(v, PacketType::PubRel)
                .prop_map(|(packet_id, reason_code, properties)| {
                    Packet::PubRel(PubRel {
                        packet_id,
                        reason_code,
                        properties,
                    })
                })
                .boxed(),
        ),
        (
            1,
            ack_fields(v, PacketType::PubComp)
                .prop_map(|(packet_id, reason_code, properties)| {
                    Packet::PubComp(PubComp {
                        packet_id,
                        reason_code,
                        properties,
                    })
                })
                .boxed(),
        ),
        (2, subscribe(v).prop_map(Packet::Subscribe).boxed()),
        (1, suback(v).prop_map(Packet::SubAck).boxed()),
        (1, unsubscribe(v).prop_map(Packet::Unsubscribe).boxed()),
        (1, unsuback(v).prop_map(Packet::UnsubAck).boxed()),
        (1, Just(Packet::PingReq).boxed()),
        (1, Just(Packet::PingResp).boxed()),
        (1, disconnect(v).prop_map(Packet::Disconnect).boxed()),
    ];
    if v.is_v5() {
        arms.push((1, auth().prop_map(Packet::Auth).boxed()));
    }
    Union::new_weighted(arms).boxed()
}

/// The protocol versions a connection can have once its CONNECT is known.
pub(crate) fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V3_1_1),
        Just(ProtocolVersion::V5),
        Just(ProtocolVersion::V3_1)
    ]
}

/// A version and a packet for it.
pub(crate) fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    prop_oneof![
        4 => Just(ProtocolVersion::V5),
        3 => Just(ProtocolVersion::V3_1_1),
        1 => Just(ProtocolVersion::V3_1),
    ]
    .prop_flat_map(|v| (Just(v), packet(v)))
}
