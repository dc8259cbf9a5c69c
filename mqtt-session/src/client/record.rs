//! The client's storage records ([`ClientConfig::persist`](super::ClientConfig)): what a host
//! stores so that a restarted process resumes the session where it was, with
//! [`Client::restore`](super::Client::restore).
//!
//! The records describe a small keyed store. Each [`ClientRecord`] is either the value of one
//! key (a *put*: [`ClientRecord::ClientId`], [`ClientRecord::Outbound`],
//! [`ClientRecord::Released`], [`ClientRecord::InboundQos2`]) or the removal of keys
//! ([`ClientRecord::OutboundDone`], [`ClientRecord::InboundDone`], [`ClientRecord::Cleared`]);
//! [`ClientRecord::change`] says which, with the key's bytes and the value's, so that a host
//! needs no knowledge of the kinds: it applies the changes in order, and gives the values it
//! holds back to [`decode_stored`] and [`Client::restore`](super::Client::restore).
//!
//! | key (3 bytes) | value |
//! |---|---|
//! | `0, 0, 0`: the Client Identifier | its UTF-8 bytes |
//! | `1, id`: an outbound QoS 1/2 message | its place in the order of publication (u64, big-endian), then the PUBLISH as an MQTT 5.0 packet (QoS, Packet Identifier, RETAIN, properties, payload) |
//! | `2, id`: its PUBREC arrived (PUBREL sent) | empty |
//! | `3, id`: an inbound QoS 2 message whose PUBREC was sent | empty |
//!
//! (`id`: the Packet Identifier, big-endian.) A stored message is decoded by the codec, so it is
//! checked as strictly as a received one. The format's version is
//! [`CLIENT_RECORD_FORMAT`]: a host records it with its data and refuses data of another.
//!
//! # When a host commits
//!
//! [`ClientOutput::Persist`](super::ClientOutput) outputs come first from
//! [`Client::poll_output`](super::Client::poll_output). The host makes every one it has
//! drained durable before it next calls [`Client::poll_transmit`](super::Client::poll_transmit)
//! (or writes a `Close`'s farewell): the bytes that depend on a record (the PUBLISH of a stored
//! message, a PUBREL, a PUBREC) never leave before it. A message whose `Outbound` record is
//! durable survives a crash: the restored client sends it again (with DUP 1: it cannot know
//! whether the PUBLISH left before the crash), with its Packet Identifier, so a QoS 2 message
//! is delivered once; a released one gets its PUBREL again.
//!
//! QoS 0 messages, SUBSCRIBE and UNSUBSCRIBE requests are not stored.

use crate::prelude::*;
use core::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqtt_codec::{Decoder, Packet, PacketId, ProtocolVersion, Publish, QoS, Status};

/// The version of the format [`ClientRecord::change`] writes and [`decode_stored`] reads.
pub const CLIENT_RECORD_FORMAT: u32 = 1;

/// One change to the client's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientRecord {
    /// The Client Identifier the server assigned (MQTT 5.0), used on every later connection.
    ClientId(String),
    /// A QoS 1/2 message was published: stored until its flow completes.
    Outbound {
        /// Its place in the order of publication.
        seq: u64,
        /// The PUBLISH (QoS 1 or 2, with its Packet Identifier, DUP 0, no Topic Alias).
        publish: Publish,
    },
    /// The PUBREC of a QoS 2 message arrived: from now on its PUBREL is sent, not its PUBLISH.
    Released {
        /// Its Packet Identifier.
        packet_id: PacketId,
    },
    /// A message's flow is over (acknowledged, refused or given up): its records go.
    OutboundDone {
        /// Its Packet Identifier.
        packet_id: PacketId,
    },
    /// An inbound QoS 2 message was received and its PUBREC is sent: until its PUBREL, the
    /// same Packet Identifier is the same message (v5 [MQTT-4.3.3-10]).
    InboundQos2 {
        /// Its Packet Identifier.
        packet_id: PacketId,
    },
    /// The PUBREL of an inbound QoS 2 message arrived.
    InboundDone {
        /// Its Packet Identifier.
        packet_id: PacketId,
    },
    /// The session state was discarded (Clean Start, or Session Present 0): every message and
    /// inbound record goes (the Client Identifier stays). Messages kept to be sent again as new
    /// ones are stored again by the records that follow.
    Cleared,
}

/// What a [`ClientRecord`] does to a keyed store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreChange {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        key: [u8; 3],
        /// The value.
        value: Bytes,
    },
    /// Removes these keys (absent ones are no error).
    Delete(Vec<[u8; 3]>),
    /// Removes every key but the Client Identifier's.
    DeleteAllButClientId,
}

/// Why stored bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientRecordError {
    /// The key is not one of the table's.
    UnknownKey,
    /// The value is too short.
    Truncated,
    /// The Client Identifier is not UTF-8.
    NotUtf8,
    /// The stored message is not a valid MQTT 5.0 PUBLISH.
    Message(Option<mqtt_codec::Error>),
    /// The stored message does not fit its key (QoS 0, or another Packet Identifier).
    Mismatch,
    /// A value was given with a key that holds none, or bytes follow the message.
    TrailingBytes,
    /// The message cannot be encoded (when writing).
    Encode(mqtt_codec::Error),
}

impl fmt::Display for ClientRecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey => f.write_str("unknown key"),
            Self::Truncated => f.write_str("the value is truncated"),
            Self::NotUtf8 => f.write_str("the Client Identifier is not UTF-8"),
            Self::Message(Some(e)) => write!(f, "the stored message is not a valid PUBLISH: {e}"),
            Self::Message(None) => f.write_str("the stored message is incomplete"),
            Self::Mismatch => f.write_str("the stored message does not fit its key"),
            Self::TrailingBytes => f.write_str("bytes follow the value"),
            Self::Encode(e) => write!(f, "the message cannot be stored: {e}"),
        }
    }
}

impl core::error::Error for ClientRecordError {}

const CLIENT_ID: u8 = 0;
const OUTBOUND: u8 = 1;
const RELEASED: u8 = 2;
const INBOUND: u8 = 3;

fn key(kind: u8, id: PacketId) -> [u8; 3] {
    let [hi, lo] = id.get().to_be_bytes();
    [kind, hi, lo]
}

impl ClientRecord {
    /// The change this record makes to a keyed store (see the [module](self)'s table).
    ///
    /// # Errors
    /// [`ClientRecordError::Encode`] when an outbound message cannot be encoded (the engine
    /// only stores messages it could send, so this does not happen for its records).
    pub fn change(&self) -> Result<StoreChange, ClientRecordError> {
        Ok(match self {
            Self::ClientId(id) => StoreChange::Put {
                key: [CLIENT_ID, 0, 0],
                value: Bytes::copy_from_slice(id.as_bytes()),
            },
            Self::Outbound { seq, publish } => {
                let Some(id) = publish.packet_id else {
                    return Err(ClientRecordError::Mismatch);
                };
                let mut buf = BytesMut::with_capacity(publish.payload.len() + 64);
                buf.put_u64(*seq);
                Packet::Publish(publish.clone())
                    .encode(ProtocolVersion::V5, &mut buf)
                    .map_err(ClientRecordError::Encode)?;
                StoreChange::Put {
                    key: key(OUTBOUND, id),
                    value: buf.freeze(),
                }
            }
            Self::Released { packet_id } => StoreChange::Put {
                key: key(RELEASED, *packet_id),
                value: Bytes::new(),
            },
            Self::InboundQos2 { packet_id } => StoreChange::Put {
                key: key(INBOUND, *packet_id),
                value: Bytes::new(),
            },
            Self::OutboundDone { packet_id } => {
                StoreChange::Delete(vec![key(OUTBOUND, *packet_id), key(RELEASED, *packet_id)])
            }
            Self::InboundDone { packet_id } => StoreChange::Delete(vec![key(INBOUND, *packet_id)]),
            Self::Cleared => StoreChange::DeleteAllButClientId,
        })
    }
}

/// The record a stored key and value hold (a *put*: `ClientId`, `Outbound`, `Released` or
/// `InboundQos2`). A stored message's topic and payload share `value`'s memory.
///
/// # Errors
/// A [`ClientRecordError`] naming what is wrong; never panics, never allocates more than the
/// input holds.
pub fn decode_stored(key: &[u8], value: &Bytes) -> Result<ClientRecord, ClientRecordError> {
    let (&kind, rest) = key.split_first().ok_or(ClientRecordError::UnknownKey)?;
    let id = match rest {
        [hi, lo] => PacketId::new(u16::from_be_bytes([*hi, *lo])),
        _ => return Err(ClientRecordError::UnknownKey),
    };
    let empty = |record: ClientRecord| {
        if value.is_empty() {
            Ok(record)
        } else {
            Err(ClientRecordError::TrailingBytes)
        }
    };
    match (kind, id) {
        (CLIENT_ID, None) => core::str::from_utf8(value)
            .map(|s| ClientRecord::ClientId(s.to_owned()))
            .map_err(|_| ClientRecordError::NotUtf8),
        (OUTBOUND, Some(id)) => {
            if value.len() < 8 {
                return Err(ClientRecordError::Truncated);
            }
            let mut seq_bytes = value.slice(..8);
            let seq = seq_bytes.get_u64();
            let packet = value.slice(8..);
            let mut decoder = Decoder::with_version(ProtocolVersion::V5);
            let (packet, used) = match decoder.decode_bytes(&packet) {
                Ok(Status::Complete(done)) => done,
                Ok(Status::Incomplete(_)) => return Err(ClientRecordError::Message(None)),
                Err(e) => return Err(ClientRecordError::Message(Some(e))),
            };
            if used != value.len() - 8 {
                return Err(ClientRecordError::TrailingBytes);
            }
            let Packet::Publish(publish) = packet else {
                return Err(ClientRecordError::Message(None));
            };
            if publish.qos == QoS::AtMostOnce || publish.packet_id != Some(id) {
                return Err(ClientRecordError::Mismatch);
            }
            Ok(ClientRecord::Outbound { seq, publish })
        }
        (RELEASED, Some(packet_id)) => empty(ClientRecord::Released { packet_id }),
        (INBOUND, Some(packet_id)) => empty(ClientRecord::InboundQos2 { packet_id }),
        _ => Err(ClientRecordError::UnknownKey),
    }
}
