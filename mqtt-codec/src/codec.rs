//! A `tokio_util::codec` adapter (feature `tokio-util`): frame a `TcpStream` into [`Packet`]s.

use bytes::BytesMut;

use crate::decode::Decoder;
use crate::error::Error;
use crate::packet::Packet;
use crate::types::ProtocolVersion;

/// An error from [`MqttCodec`]: the transport's, or a protocol violation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent a packet that breaks the specification, or we tried to send one.
    #[error("{0}")]
    Protocol(#[from] Error),
    /// A packet other than CONNECT was encoded before the protocol version was known.
    #[error("the protocol version is not known yet: send or receive CONNECT first")]
    VersionUnknown,
}

/// Decodes and encodes MQTT packets for `tokio_util::codec::Framed`.
///
/// The encoding version follows the decoder's: it is learnt from the CONNECT received (server
/// side) or given up front ([`MqttCodec::with_version`], client side). A CONNECT is always
/// encoded in its own version, and sets the codec's version when it had none.
#[derive(Debug, Clone, Default)]
pub struct MqttCodec {
    decoder: Decoder,
    max_outgoing: Option<u32>,
}

impl MqttCodec {
    /// A codec for a server's side of a connection (expects CONNECT first).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A codec for a connection whose version is known.
    #[must_use]
    pub fn with_version(version: ProtocolVersion) -> Self {
        Self {
            decoder: Decoder::with_version(version),
            max_outgoing: None,
        }
    }

    /// The decoder, to set the maximum incoming packet size.
    pub fn decoder_mut(&mut self) -> &mut Decoder {
        &mut self.decoder
    }

    /// Refuse to send packets larger than `max` (the peer's Maximum Packet Size).
    pub fn set_max_outgoing_packet_size(&mut self, max: Option<u32>) {
        self.max_outgoing = max;
    }
}

impl tokio_util::codec::Decoder for MqttCodec {
    type Item = Packet;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, CodecError> {
        Ok(self.decoder.decode(src)?)
    }
}

impl tokio_util::codec::Encoder<&Packet> for MqttCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        let version = match (item, self.decoder.version()) {
            (Packet::Connect(c), None) => {
                self.decoder.set_version(c.protocol);
                c.protocol
            }
            (Packet::Connect(c), Some(_)) => c.protocol,
            (_, Some(v)) => v,
            (_, None) => return Err(CodecError::VersionUnknown),
        };
        item.encode_limited(version, self.max_outgoing.unwrap_or(u32::MAX), dst)?;
        Ok(())
    }
}

impl tokio_util::codec::Encoder<Packet> for MqttCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        tokio_util::codec::Encoder::<&Packet>::encode(self, &item, dst)
    }
}
