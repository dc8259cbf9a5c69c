//! A strict, zero-copy, sans-IO wire codec for MQTT 3.1.1 and 5.0, and the MQTT 3.1 CONNECT.
//!
//! - **Strict.** Every malformed packet the specification describes is rejected with an
//!   [`Error`] that names the rule broken (the normative statement, such as `MQTT-1.5.5-1`, for
//!   the protocol version in use, or the section) and the reason code to answer with
//!   ([`Error::reason_code`]). [`Violation::rule`] is the one table behind it.
//! - **Zero-copy.** Topics, payloads, strings and binary properties are slices of the input
//!   [`bytes::Bytes`]; UTF-8 is validated once, into [`Utf8String`].
//! - **Streaming.** A partial packet is [`Status::Incomplete`], never an error; the maximum packet
//!   size is checked from the fixed header before anything is buffered or allocated.
//! - **Symmetric.** The encoder refuses whatever the decoder would reject, so every encoded
//!   packet decodes back to itself; [`Packet::encoded_len`] is exact.
//! - **Safe.** No `unsafe`, no panic on any input (fuzzed), no clock, no I/O.
//!
//! # Example
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt_codec::{Decoder, Packet, ProtocolVersion, Publish, QoS, PacketId, TopicName};
//!
//! // Encode a QoS 1 PUBLISH for an MQTT 5.0 connection.
//! let mut publish = Publish::new(TopicName::try_from("sensors/t1")?, &b"21.5"[..]);
//! publish.qos = QoS::AtLeastOnce;
//! publish.packet_id = PacketId::new(7);
//! publish.properties.message_expiry_interval = Some(60);
//! let packet = Packet::Publish(publish);
//!
//! let mut wire = BytesMut::new();
//! let written = packet.encode(ProtocolVersion::V5, &mut wire)?;
//! assert_eq!(written, packet.encoded_len(ProtocolVersion::V5)?);
//!
//! // Decode it again, as a client of that connection would.
//! let mut decoder = Decoder::with_version(ProtocolVersion::V5).max_packet_size(1024);
//! let decoded = decoder.decode(&mut wire)?.expect("a whole packet");
//! assert_eq!(decoded, packet);
//!
//! // Malformed input names the rule and the reason code.
//! let mut bad = BytesMut::from(&[0x36, 0x00][..]); // PUBLISH with both QoS bits set
//! let err = decoder.decode(&mut bad).unwrap_err();
//! assert_eq!(err.statement(), Some("MQTT-3.3.1-4"));
//! assert_eq!(err.reason_code(), mqtt_codec::ReasonCode::MALFORMED_PACKET);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

#[cfg(feature = "arbitrary")]
mod arbitrary_impls;
#[cfg(feature = "tokio-util")]
mod codec;
mod decode;
mod error;
mod packet;
mod prelude;
mod properties;
mod reason_code;
mod types;
mod wire;

/// The `arbitrary` crate, re-exported for fuzz targets (feature `arbitrary`).
#[cfg(feature = "arbitrary")]
pub use arbitrary;
#[cfg(feature = "tokio-util")]
pub use codec::{CodecError, MqttCodec};
pub use decode::{Decoder, FixedHeader, Status, read_fixed_header};
pub use error::{Error, Rule, Violation};
pub use packet::{
    AckRef, Auth, ConnAck, ConnAckRef, Connect, ConnectRef, Delivery, Disconnect, Packet,
    PacketRef, PropertiesRef, PropertyValue, PubAck, PubComp, PubRec, PubRel, Publish, PublishRef,
    ReasonRef, RetainHandling, SubAck, SubAckRef, Subscribe, SubscribeRef, SubscriptionOptions,
    UnsubAck, UnsubAckRef, Unsubscribe, UnsubscribeRef, Will, WillRef,
};
pub use properties::{
    PayloadFormatIndicator, Properties, PropertyContext, PropertyId, VariableProperties,
};
pub use reason_code::ReasonCode;
pub use types::{
    PacketId, PacketType, ProtocolVersion, QoS, TopicFilter, TopicName, Utf8String, VBI_MAX,
    vbi_len,
};
