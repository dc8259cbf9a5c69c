//! Framing: the fixed header, the maximum packet size, and streaming decode.
//!
//! A buffer that holds part of a packet is [`Status::Incomplete`], with the number of bytes still
//! needed when the fixed header tells it. The maximum packet size is checked from the fixed
//! header alone, before the body is waited for or anything is allocated, so a hostile 5-byte
//! header claiming 256 MiB is refused at once.

use core::num::NonZeroUsize;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Error, Violation};
use crate::packet::{Packet, PacketRef};
use crate::types::vbi::read_vbi;
use crate::types::{PacketId, PacketType, ProtocolVersion};

/// The result of decoding from a buffer that may not hold a whole packet yet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Status<T> {
    /// A whole packet was decoded.
    Complete(T),
    /// More bytes are needed: at least this many more when known (the fixed header was read),
    /// `None` while the fixed header itself is incomplete.
    Incomplete(Option<NonZeroUsize>),
}

/// The fixed header of a packet (section 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// The first byte: packet type and flags.
    pub first_byte: u8,
    /// The Remaining Length.
    pub remaining_length: usize,
    /// The length of the fixed header itself (2 to 5 bytes).
    pub header_length: usize,
    /// Whether the Remaining Length used its minimal encoding. v5 [MQTT-1.5.5-1]
    pub minimal: bool,
}

impl FixedHeader {
    /// The whole packet's length.
    #[must_use]
    pub fn packet_length(&self) -> usize {
        self.header_length + self.remaining_length
    }

    /// The packet type, if the nibble is not the reserved 0.
    #[must_use]
    pub fn packet_type(&self) -> Option<PacketType> {
        PacketType::from_nibble(self.first_byte >> 4)
    }
}

/// Reads the fixed header at the start of `buf` and checks it against the connection's state:
/// the version (which, while unknown, only lets a CONNECT through), the packet type, the
/// Remaining Length encoding and the maximum packet size.
///
/// # Errors
/// A violation found in the fixed header.
pub fn read_fixed_header(
    buf: &[u8],
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
) -> Result<Status<FixedHeader>, Error> {
    let Some((&first_byte, rest)) = buf.split_first() else {
        return Ok(Status::Incomplete(None));
    };
    let ty = PacketType::from_nibble(first_byte >> 4);
    let err = |v: Violation| Error::new(v, ty, version);
    let Some(ty) = ty else {
        return Err(err(Violation::InvalidPacketType));
    };
    // [MQTT-3.1.0-1] the first packet from a Client MUST be CONNECT; until then, we do not know
    // the version to decode anything else with.
    if version.is_none() && ty != PacketType::Connect {
        return Err(err(Violation::FirstPacketNotConnect));
    }
    if ty == PacketType::Auth && version.is_some_and(|v| !v.is_v5()) {
        return Err(err(Violation::InvalidPacketType));
    }
    let vbi = match read_vbi(rest) {
        Ok(Some(v)) => v,
        Ok(None) => return Ok(Status::Incomplete(None)),
        Err(v) => return Err(err(v)),
    };
    // v5 [MQTT-1.5.5-1]. A CONNECT is decoded by its own level, so its Remaining Length is
    // checked once that level is known (in `Decoder::decode_frame`).
    if !vbi.minimal && version == Some(ProtocolVersion::V5) && ty != PacketType::Connect {
        return Err(err(Violation::VariableByteIntegerNotMinimal));
    }
    let header = FixedHeader {
        first_byte,
        remaining_length: vbi.value as usize,
        header_length: 1 + vbi.len,
        minimal: vbi.minimal,
    };
    if header.packet_length() > max_packet_size as usize {
        return Err(err(Violation::PacketTooLarge));
    }
    Ok(Status::Complete(header))
}

/// A streaming decoder for one connection.
///
/// A server-side decoder starts without a version ([`Decoder::new`]): it accepts only a
/// CONNECT, and takes the version from it. A client-side decoder is made for the version it
/// sent ([`Decoder::with_version`]).
///
/// ```
/// use bytes::BytesMut;
/// use mqtt_codec::{Decoder, Packet, ProtocolVersion};
///
/// let mut decoder = Decoder::with_version(ProtocolVersion::V3_1_1);
/// // PINGRESP, then the first half of another.
/// let mut buf = BytesMut::from(&[0xD0, 0x00, 0xD0][..]);
/// assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Packet::PingResp));
/// assert_eq!(decoder.decode(&mut buf).unwrap(), None);
/// assert_eq!(buf.len(), 1); // kept for the next read
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// The largest packet MQTT can express: a 5-byte fixed header and 268 435 455 bytes.
    pub const MAX_PACKET_SIZE: u32 = 268_435_460;

    /// A decoder for a server's side of a connection: the first packet must be CONNECT.
    #[must_use]
    pub fn new() -> Self {
        Self {
            version: None,
            max_packet_size: Self::MAX_PACKET_SIZE,
        }
    }

    /// A decoder for a connection whose protocol version is known.
    #[must_use]
    pub fn with_version(version: ProtocolVersion) -> Self {
        Self {
            version: Some(version),
            max_packet_size: Self::MAX_PACKET_SIZE,
        }
    }

    /// Refuse packets larger than `max_packet_size` bytes (the whole packet, fixed header
    /// included, as MQTT 5.0's Maximum Packet Size counts it) with [`Violation::PacketTooLarge`].
    #[must_use]
    pub fn max_packet_size(mut self, max_packet_size: u32) -> Self {
        self.max_packet_size = max_packet_size;
        self
    }

    /// Changes the maximum packet size.
    pub fn set_max_packet_size(&mut self, max_packet_size: u32) {
        self.max_packet_size = max_packet_size;
    }

    /// The protocol version, once known.
    #[must_use]
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// Sets the protocol version (for example after a CONNECT decoded elsewhere).
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = Some(version);
    }

    /// Decodes the packet at the start of `buf` without consuming it; on success returns it
    /// with its length in bytes. The packet's fields share `buf`'s memory.
    ///
    /// # Errors
    /// The first violation found; the connection cannot go on after it.
    pub fn decode_bytes(&mut self, buf: &Bytes) -> Result<Status<(Packet, usize)>, Error> {
        let header = match read_fixed_header(buf, self.version, self.max_packet_size)? {
            Status::Complete(h) => h,
            Status::Incomplete(n) => return Ok(Status::Incomplete(n)),
        };
        let total = header.packet_length();
        if buf.len() < total {
            return Ok(Status::Incomplete(NonZeroUsize::new(total - buf.len())));
        }
        let body = buf.slice(header.header_length..total);
        let packet = self.decode_frame(header, body)?;
        Ok(Status::Complete((packet, total)))
    }

    /// Decodes the packet at the start of `buf` as a [`PacketRef`] borrowed from `buf`, without
    /// allocating; on success returns it with its length in bytes. The checks are those of
    /// [`Decoder::decode`] (the same errors for the same bytes), and a CONNECT sets the version
    /// as it does there.
    ///
    /// # Errors
    /// The first violation found; the connection cannot go on after it.
    #[inline]
    pub fn decode_ref<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Status<(PacketRef<'a>, usize)>, Error> {
        let header = match read_fixed_header(buf, self.version, self.max_packet_size)? {
            Status::Complete(h) => h,
            Status::Incomplete(n) => return Ok(Status::Incomplete(n)),
        };
        let total = header.packet_length();
        let Some(body) = buf.get(header.header_length..total) else {
            return Ok(Status::Incomplete(NonZeroUsize::new(
                total.saturating_sub(buf.len()),
            )));
        };
        let version = self.version.unwrap_or(ProtocolVersion::V5);
        let packet = PacketRef::decode(header.first_byte, body, version)?;
        if let PacketRef::Connect(c) = &packet {
            self.connect_decoded(c.protocol, header.minimal)?;
        }
        Ok(Status::Complete((packet, total)))
    }

    /// After a CONNECT of `protocol`: v5 [MQTT-1.5.5-1] for its own Remaining Length, now
    /// that its level is known; the connection's version, if not known yet.
    fn connect_decoded(&mut self, protocol: ProtocolVersion, minimal: bool) -> Result<(), Error> {
        if protocol.is_v5() && !minimal {
            return Err(Error::new(
                Violation::VariableByteIntegerNotMinimal,
                Some(PacketType::Connect),
                Some(protocol),
            ));
        }
        if self.version.is_none() {
            self.version = Some(protocol);
        }
        Ok(())
    }

    /// Decodes and removes the packet at the start of `buf`; `Ok(None)` when `buf` does not
    /// hold a whole packet yet (nothing is removed then).
    ///
    /// # Errors
    /// The first violation found; the connection cannot go on after it.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, Error> {
        let header = match read_fixed_header(buf, self.version, self.max_packet_size)? {
            Status::Complete(h) => h,
            Status::Incomplete(_) => return Ok(None),
        };
        let total = header.packet_length();
        if buf.len() < total {
            // Nothing is reserved here: a header's claim is never allocated for; the host's
            // reads grow the buffer as bytes actually arrive.
            return Ok(None);
        }
        let mut frame = buf.split_to(total);
        frame.advance(header.header_length);
        self.decode_frame(header, frame.freeze()).map(Some)
    }

    /// Takes a short acknowledgement from the start of `buf`: a PUBACK, PUBREC, PUBREL or
    /// PUBCOMP with a Remaining Length of 2 (a Packet Identifier, reason Success, no
    /// properties), the packets a busy connection receives most, without building a
    /// [`Packet`]. `None`, removing nothing, when the start of `buf` is anything else,
    /// including a malformed acknowledgement: [`Decoder::decode`] then decodes it or says what
    /// is wrong. What it takes, [`Decoder::decode`] would have returned as that packet.
    #[inline]
    pub fn decode_short_ack(&mut self, buf: &mut BytesMut) -> Option<(PacketType, PacketId)> {
        // Before the version is known (a server's first packet must be CONNECT) the general
        // path decides.
        self.version?;
        let &[first, 2, hi, lo, ..] = buf.as_ref() else {
            return None;
        };
        let ty = match first {
            0x40 => PacketType::PubAck,
            0x50 => PacketType::PubRec,
            0x62 => PacketType::PubRel,
            0x70 => PacketType::PubComp,
            _ => return None,
        };
        if self.max_packet_size < 4 {
            return None;
        }
        let id = PacketId::new(u16::from_be_bytes([hi, lo]))?;
        buf.advance(4);
        Some((ty, id))
    }

    #[inline]
    fn decode_frame(&mut self, header: FixedHeader, body: Bytes) -> Result<Packet, Error> {
        let version = self.version.unwrap_or(ProtocolVersion::V5);
        let packet = Packet::decode_body_owned(header.first_byte, body, version)?;
        if let Packet::Connect(c) = &packet {
            self.connect_decoded(c.protocol, header.minimal)?;
        }
        Ok(packet)
    }
}
