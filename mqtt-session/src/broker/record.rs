//! The binary form of [`StorageRecord`]s, shared by every host that stores them.
//!
//! A record is one tag byte naming its kind, then its fields in order:
//!
//! | field | encoding |
//! |---|---|
//! | string (Client Identifier, Topic Filter, topic, User Name) | u16 length (big-endian), then UTF-8 |
//! | optional value | one byte, 0 (absent) or 1, then the value |
//! | u16, u32, u64, [`Timestamp`] (milliseconds) | big-endian |
//! | QoS | one byte, 0 to 2 |
//! | Subscription Options | the byte a SUBSCRIBE carries (MQTT 5.0 layout) |
//! | Subscription Identifiers | u16 count, then u32 each |
//! | message | u32 length, then the message as an MQTT 5.0 PUBLISH packet (QoS 0, no RETAIN, no Packet Identifier: topic, properties — a will's Message Expiry Interval among them — and payload as the codec writes them); then a flags byte (bit 0: QoS 1, bit 1: QoS 2, bit 2: RETAIN, bit 3: publisher, bit 4: expiry), the publisher's Client Identifier and the expiry [`Timestamp`] when flagged |
//!
//! A message is decoded by the codec, so a stored message is checked as strictly as a received
//! one, and its topic and payload share the buffer the record was read from (no copy).
//!
//! The format has a version, [`RECORD_FORMAT`]: a host records it with its data and refuses
//! data written in a version it does not know. [`decode_record`] refuses anything that is not a
//! whole, valid record with a [`RecordError`] naming what is wrong; it never panics and never
//! allocates more than the input holds.

use crate::prelude::*;
use alloc::sync::Arc;
use core::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqtt_codec::{
    Decoder, Delivery, Packet, PacketId, ProtocolVersion, QoS, Status, SubscriptionOptions,
};

use super::StorageRecord;
use super::message::Message;
use crate::time::Timestamp;

/// The version of the record format that [`encode_record`] writes and [`decode_record`] reads.
pub const RECORD_FORMAT: u32 = 1;

/// Why bytes are not a record of [`RECORD_FORMAT`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes end inside the record.
    Truncated,
    /// Bytes are left after the record.
    TrailingBytes(usize),
    /// The tag names no kind of record.
    UnknownKind(u8),
    /// A field's value is not allowed; the text names the field.
    Invalid(&'static str),
    /// A string field is not UTF-8.
    NotUtf8,
    /// The stored message is not a valid MQTT 5.0 PUBLISH.
    Message(mqtt_codec::Error),
    /// A message or string is too long for its length field (when encoding).
    TooLong(&'static str),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("the record is truncated"),
            Self::TrailingBytes(n) => write!(f, "{n} bytes follow the record"),
            Self::UnknownKind(tag) => write!(f, "unknown record kind {tag}"),
            Self::Invalid(field) => write!(f, "invalid value of {field}"),
            Self::NotUtf8 => f.write_str("a string is not UTF-8"),
            Self::Message(e) => write!(f, "the stored message is not a valid PUBLISH: {e}"),
            Self::TooLong(field) => write!(f, "{field} is too long to store"),
        }
    }
}

impl core::error::Error for RecordError {}

mod tag {
    pub(super) const SESSION: u8 = 1;
    pub(super) const SESSION_DISCONNECTED: u8 = 2;
    pub(super) const SESSION_CONNECTED: u8 = 3;
    pub(super) const SESSION_ENDED: u8 = 4;
    pub(super) const SUBSCRIBED: u8 = 5;
    pub(super) const UNSUBSCRIBED: u8 = 6;
    pub(super) const QUEUED: u8 = 7;
    pub(super) const SENT: u8 = 8;
    pub(super) const RELEASED: u8 = 9;
    pub(super) const DELIVERED: u8 = 10;
    pub(super) const INCOMING_QOS2: u8 = 11;
    pub(super) const INCOMING_QOS2_RELEASED: u8 = 12;
    pub(super) const WILL: u8 = 13;
    pub(super) const WILL_SCHEDULED: u8 = 14;
    pub(super) const WILL_CLEARED: u8 = 15;
    pub(super) const RETAINED: u8 = 16;
    pub(super) const RETAINED_CLEARED: u8 = 17;
}

/// Appends `record` to `buf` in [`RECORD_FORMAT`].
///
/// # Errors
/// [`RecordError::TooLong`] for a string over 65 535 bytes or a message over 4 GiB, and
/// [`RecordError::Message`] for a message the codec cannot write (neither comes from a
/// broker's own records); `buf` is left as it was.
pub fn encode_record(record: &StorageRecord, buf: &mut BytesMut) -> Result<(), RecordError> {
    let start = buf.len();
    let result = write_record(record, buf);
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

fn write_record(record: &StorageRecord, buf: &mut BytesMut) -> Result<(), RecordError> {
    use StorageRecord as R;
    match record {
        R::Session {
            client_id,
            expiry_interval,
            username,
        } => {
            buf.put_u8(tag::SESSION);
            put_str(buf, client_id, "client_id")?;
            buf.put_u32(*expiry_interval);
            put_opt_str(buf, username.as_deref(), "username")?;
        }
        R::SessionDisconnected {
            client_id,
            at,
            expiry_interval,
        } => {
            buf.put_u8(tag::SESSION_DISCONNECTED);
            put_str(buf, client_id, "client_id")?;
            buf.put_u64(at.as_millis());
            buf.put_u32(*expiry_interval);
        }
        R::SessionConnected { client_id } => {
            buf.put_u8(tag::SESSION_CONNECTED);
            put_str(buf, client_id, "client_id")?;
        }
        R::SessionEnded { client_id } => {
            buf.put_u8(tag::SESSION_ENDED);
            put_str(buf, client_id, "client_id")?;
        }
        R::Subscribed {
            client_id,
            filter,
            options,
            subscription_id,
        } => {
            buf.put_u8(tag::SUBSCRIBED);
            put_str(buf, client_id, "client_id")?;
            put_str(buf, filter, "filter")?;
            buf.put_u8(options.to_byte());
            put_opt_u32(buf, *subscription_id);
        }
        R::Unsubscribed { client_id, filter } => {
            buf.put_u8(tag::UNSUBSCRIBED);
            put_str(buf, client_id, "client_id")?;
            put_str(buf, filter, "filter")?;
        }
        R::Queued {
            client_id,
            seq,
            message,
            qos,
            retain,
            subscription_ids,
        } => {
            buf.put_u8(tag::QUEUED);
            put_str(buf, client_id, "client_id")?;
            buf.put_u64(*seq);
            put_message(buf, message)?;
            buf.put_u8(qos.bits());
            buf.put_u8(u8::from(*retain));
            let count = u16::try_from(subscription_ids.len())
                .map_err(|_| RecordError::TooLong("subscription_ids"))?;
            buf.put_u16(count);
            for id in subscription_ids {
                buf.put_u32(*id);
            }
        }
        R::Sent {
            client_id,
            seq,
            packet_id,
        } => {
            buf.put_u8(tag::SENT);
            put_str(buf, client_id, "client_id")?;
            buf.put_u64(*seq);
            buf.put_u16(packet_id.get());
        }
        R::Released { client_id, seq } => {
            buf.put_u8(tag::RELEASED);
            put_str(buf, client_id, "client_id")?;
            buf.put_u64(*seq);
        }
        R::Delivered { client_id, seq } => {
            buf.put_u8(tag::DELIVERED);
            put_str(buf, client_id, "client_id")?;
            buf.put_u64(*seq);
        }
        R::IncomingQos2 {
            client_id,
            packet_id,
        } => {
            buf.put_u8(tag::INCOMING_QOS2);
            put_str(buf, client_id, "client_id")?;
            buf.put_u16(packet_id.get());
        }
        R::IncomingQos2Released {
            client_id,
            packet_id,
        } => {
            buf.put_u8(tag::INCOMING_QOS2_RELEASED);
            put_str(buf, client_id, "client_id")?;
            buf.put_u16(packet_id.get());
        }
        R::Will {
            client_id,
            message,
            delay,
        } => {
            buf.put_u8(tag::WILL);
            put_str(buf, client_id, "client_id")?;
            put_message(buf, message)?;
            buf.put_u32(*delay);
        }
        R::WillScheduled { client_id, at } => {
            buf.put_u8(tag::WILL_SCHEDULED);
            put_str(buf, client_id, "client_id")?;
            buf.put_u64(at.as_millis());
        }
        R::WillCleared { client_id } => {
            buf.put_u8(tag::WILL_CLEARED);
            put_str(buf, client_id, "client_id")?;
        }
        R::Retained { message } => {
            buf.put_u8(tag::RETAINED);
            put_message(buf, message)?;
        }
        R::RetainedCleared { topic } => {
            buf.put_u8(tag::RETAINED_CLEARED);
            put_str(buf, topic, "topic")?;
        }
    }
    Ok(())
}

/// Reads one record that fills `src` exactly. The messages' topics and payloads share `src`'s
/// memory.
///
/// # Errors
/// Whatever makes `src` not one whole, valid record of [`RECORD_FORMAT`].
pub fn decode_record(src: &Bytes) -> Result<StorageRecord, RecordError> {
    let mut r = Reader(src.clone());
    let record = r.record()?;
    if r.0.has_remaining() {
        return Err(RecordError::TrailingBytes(r.0.remaining()));
    }
    Ok(record)
}

/// Appends `message` alone, in the form it has inside a record (see the module's table), for
/// a host that stores each message once and refers to it from its queue entries.
///
/// # Errors
/// As [`encode_record`]; `buf` is left as it was.
pub fn encode_message(message: &Message, buf: &mut BytesMut) -> Result<(), RecordError> {
    let start = buf.len();
    let result = put_message(buf, message);
    if result.is_err() {
        buf.truncate(start);
    }
    result
}

/// Reads a message written by [`encode_message`] that fills `src` exactly; its topic and
/// payload share `src`'s memory.
///
/// # Errors
/// As [`decode_record`].
pub fn decode_message(src: &Bytes) -> Result<Message, RecordError> {
    let mut r = Reader(src.clone());
    let message = r.message()?;
    if r.0.has_remaining() {
        return Err(RecordError::TrailingBytes(r.0.remaining()));
    }
    Ok(*message)
}

fn put_str(buf: &mut BytesMut, s: &str, field: &'static str) -> Result<(), RecordError> {
    let len = u16::try_from(s.len()).map_err(|_| RecordError::TooLong(field))?;
    buf.put_u16(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

fn put_opt_str(
    buf: &mut BytesMut,
    s: Option<&str>,
    field: &'static str,
) -> Result<(), RecordError> {
    match s {
        Some(s) => {
            buf.put_u8(1);
            put_str(buf, s, field)
        }
        None => {
            buf.put_u8(0);
            Ok(())
        }
    }
}

fn put_opt_u32(buf: &mut BytesMut, v: Option<u32>) {
    match v {
        Some(v) => {
            buf.put_u8(1);
            buf.put_u32(v);
        }
        None => buf.put_u8(0),
    }
}

const FLAG_QOS1: u8 = 0b0_0001;
const FLAG_QOS2: u8 = 0b0_0010;
const FLAG_RETAIN: u8 = 0b0_0100;
const FLAG_PUBLISHER: u8 = 0b0_1000;
const FLAG_EXPIRY: u8 = 0b1_0000;

fn put_message(buf: &mut BytesMut, m: &Message) -> Result<(), RecordError> {
    let at = buf.len();
    buf.put_u32(0);
    let delivery = Delivery {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        packet_id: None,
        omit_topic: false,
        topic_alias: None,
        // A will keeps its Message Expiry Interval here until it is published; a received
        // message has none (it is kept as `expires_at`).
        message_expiry_interval: m.properties.message_expiry_interval,
        subscription_identifiers: &[],
    };
    let len = delivery
        .encode(
            &m.topic,
            &m.properties,
            &m.payload,
            ProtocolVersion::V5,
            Decoder::MAX_PACKET_SIZE,
            buf,
        )
        .map_err(RecordError::Message)?;
    let len = u32::try_from(len).map_err(|_| RecordError::TooLong("message"))?;
    if let Some(slot) = buf.get_mut(at..at + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
    let flags = match m.qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => FLAG_QOS1,
        QoS::ExactlyOnce => FLAG_QOS2,
    } | if m.retain { FLAG_RETAIN } else { 0 }
        | if m.publisher.is_some() {
            FLAG_PUBLISHER
        } else {
            0
        }
        | if m.expires_at.is_some() {
            FLAG_EXPIRY
        } else {
            0
        };
    buf.put_u8(flags);
    if let Some(p) = &m.publisher {
        put_str(buf, p, "publisher")?;
    }
    if let Some(t) = m.expires_at {
        buf.put_u64(t.as_millis());
    }
    Ok(())
}

/// The bytes not yet read.
struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), RecordError> {
        if self.0.remaining() < n {
            Err(RecordError::Truncated)
        } else {
            Ok(())
        }
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }

    fn u16(&mut self) -> Result<u16, RecordError> {
        self.need(2)?;
        Ok(self.0.get_u16())
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        self.need(4)?;
        Ok(self.0.get_u32())
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        self.need(8)?;
        Ok(self.0.get_u64())
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, RecordError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RecordError::Invalid(field)),
        }
    }

    fn timestamp(&mut self) -> Result<Timestamp, RecordError> {
        Ok(Timestamp::from_millis(self.u64()?))
    }

    fn string(&mut self) -> Result<String, RecordError> {
        let len = usize::from(self.u16()?);
        self.need(len)?;
        let bytes = self.0.split_to(len);
        core::str::from_utf8(&bytes)
            .map(str::to_owned)
            .map_err(|_| RecordError::NotUtf8)
    }

    fn opt_string(&mut self, field: &'static str) -> Result<Option<String>, RecordError> {
        if self.flag(field)? {
            self.string().map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_u32(&mut self, field: &'static str) -> Result<Option<u32>, RecordError> {
        if self.flag(field)? {
            self.u32().map(Some)
        } else {
            Ok(None)
        }
    }

    fn qos(&mut self) -> Result<QoS, RecordError> {
        QoS::from_bits(self.u8()?).ok_or(RecordError::Invalid("qos"))
    }

    fn packet_id(&mut self) -> Result<PacketId, RecordError> {
        PacketId::new(self.u16()?).ok_or(RecordError::Invalid("packet_id"))
    }

    fn message(&mut self) -> Result<Box<Message>, RecordError> {
        let len = usize::try_from(self.u32()?).map_err(|_| RecordError::Truncated)?;
        self.need(len)?;
        let wire = self.0.split_to(len);
        let mut decoder = Decoder::with_version(ProtocolVersion::V5);
        let publish = match decoder.decode_bytes(&wire).map_err(RecordError::Message)? {
            Status::Complete((Packet::Publish(p), n)) if n == len => p,
            Status::Complete((Packet::Publish(_), _)) => {
                return Err(RecordError::Invalid("message length"));
            }
            Status::Complete(_) => return Err(RecordError::Invalid("message packet type")),
            Status::Incomplete(_) => return Err(RecordError::Truncated),
        };
        if publish.qos != QoS::AtMostOnce || publish.retain || publish.dup {
            return Err(RecordError::Invalid("message header flags"));
        }
        if publish.properties.topic_alias.is_some()
            || publish.properties.has_subscription_identifiers()
        {
            return Err(RecordError::Invalid("message properties"));
        }
        let flags = self.u8()?;
        if flags & !(FLAG_QOS1 | FLAG_QOS2 | FLAG_RETAIN | FLAG_PUBLISHER | FLAG_EXPIRY) != 0 {
            return Err(RecordError::Invalid("message flags"));
        }
        let qos = match flags & (FLAG_QOS1 | FLAG_QOS2) {
            0 => QoS::AtMostOnce,
            FLAG_QOS1 => QoS::AtLeastOnce,
            FLAG_QOS2 => QoS::ExactlyOnce,
            _ => return Err(RecordError::Invalid("message qos")),
        };
        let publisher = if flags & FLAG_PUBLISHER != 0 {
            Some(self.string()?)
        } else {
            None
        };
        let expires_at = if flags & FLAG_EXPIRY != 0 {
            Some(self.timestamp()?)
        } else {
            None
        };
        let mut message = Message::new(
            publish.topic,
            publish.payload,
            qos,
            flags & FLAG_RETAIN != 0,
        );
        message.properties = publish.properties.into();
        message.publisher = publisher.map(Arc::from);
        message.expires_at = expires_at;
        Ok(Box::new(message))
    }

    fn record(&mut self) -> Result<StorageRecord, RecordError> {
        use StorageRecord as R;
        let tag = self.u8()?;
        Ok(match tag {
            tag::SESSION => R::Session {
                client_id: self.string()?,
                expiry_interval: self.u32()?,
                username: self.opt_string("username")?,
            },
            tag::SESSION_DISCONNECTED => R::SessionDisconnected {
                client_id: self.string()?,
                at: self.timestamp()?,
                expiry_interval: self.u32()?,
            },
            tag::SESSION_CONNECTED => R::SessionConnected {
                client_id: self.string()?,
            },
            tag::SESSION_ENDED => R::SessionEnded {
                client_id: self.string()?,
            },
            tag::SUBSCRIBED => R::Subscribed {
                client_id: self.string()?,
                filter: self.string()?,
                options: SubscriptionOptions::from_byte(self.u8()?, true)
                    .map_err(|_| RecordError::Invalid("options"))?,
                subscription_id: self.opt_u32("subscription_id")?,
            },
            tag::UNSUBSCRIBED => R::Unsubscribed {
                client_id: self.string()?,
                filter: self.string()?,
            },
            tag::QUEUED => {
                let client_id = self.string()?;
                let seq = self.u64()?;
                let message = Arc::from(self.message()?);
                let qos = self.qos()?;
                let retain = self.flag("retain")?;
                let count = usize::from(self.u16()?);
                // Checked before allocating: a count the bytes cannot hold is refused.
                self.need(count.saturating_mul(4))?;
                let mut subscription_ids = Vec::with_capacity(count);
                for _ in 0..count {
                    subscription_ids.push(self.u32()?);
                }
                R::Queued {
                    client_id,
                    seq,
                    message,
                    qos,
                    retain,
                    subscription_ids,
                }
            }
            tag::SENT => R::Sent {
                client_id: self.string()?,
                seq: self.u64()?,
                packet_id: self.packet_id()?,
            },
            tag::RELEASED => R::Released {
                client_id: self.string()?,
                seq: self.u64()?,
            },
            tag::DELIVERED => R::Delivered {
                client_id: self.string()?,
                seq: self.u64()?,
            },
            tag::INCOMING_QOS2 => R::IncomingQos2 {
                client_id: self.string()?,
                packet_id: self.packet_id()?,
            },
            tag::INCOMING_QOS2_RELEASED => R::IncomingQos2Released {
                client_id: self.string()?,
                packet_id: self.packet_id()?,
            },
            tag::WILL => R::Will {
                client_id: self.string()?,
                message: self.message()?,
                delay: self.u32()?,
            },
            tag::WILL_SCHEDULED => R::WillScheduled {
                client_id: self.string()?,
                at: self.timestamp()?,
            },
            tag::WILL_CLEARED => R::WillCleared {
                client_id: self.string()?,
            },
            tag::RETAINED => R::Retained {
                message: self.message()?,
            },
            tag::RETAINED_CLEARED => R::RetainedCleared {
                topic: self.string()?,
            },
            other => return Err(RecordError::UnknownKind(other)),
        })
    }
}
