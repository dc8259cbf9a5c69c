//! The nom parsers and the writers for the primitive fields of section 1.5, shared by every packet.
//!
//! Parsers work on the body of one complete packet (its Remaining Length already buffered), so
//! running out of input is [`Violation::Truncated`], never "incomplete". String and binary fields
//! are returned as slices of the packet's `Bytes` (`Bytes::slice_ref`): no copy.

use bytes::{Bytes, BytesMut};
use nom::IResult;
use nom::bytes::complete::take;
use nom::error::{ErrorKind, ParseError};
use nom::number::complete::{be_u8, be_u16, be_u32};

use crate::error::Violation;
use crate::types::vbi::read_vbi;
use crate::types::{PacketId, Utf8String};

/// The error type of every parser: the violation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fail(pub(crate) Violation);

impl ParseError<&[u8]> for Fail {
    fn from_error_kind(_: &[u8], _: ErrorKind) -> Self {
        // The only way the `complete` primitives fail is running out of bytes.
        Self(Violation::Truncated)
    }

    fn append(_: &[u8], _: ErrorKind, other: Self) -> Self {
        other
    }
}

pub(crate) type PResult<'a, T> = IResult<&'a [u8], T, Fail>;

/// Stops parsing with `violation`.
pub(crate) fn fail<'a, T>(violation: Violation) -> PResult<'a, T> {
    Err(nom::Err::Failure(Fail(violation)))
}

/// The violation a finished parse ended with.
pub(crate) fn violation_of(e: nom::Err<Fail>) -> Violation {
    match e {
        nom::Err::Error(Fail(v)) | nom::Err::Failure(Fail(v)) => v,
        nom::Err::Incomplete(_) => Violation::Truncated,
    }
}

/// Runs `parser` over the whole of `input`: bytes left over are [`Violation::TrailingBytes`].
#[inline]
pub(crate) fn all_consumed<'a, T>(
    input: &'a [u8],
    parser: impl FnOnce(&'a [u8]) -> PResult<'a, T>,
) -> Result<T, Violation> {
    match parser(input) {
        Ok(([], value)) => Ok(value),
        Ok(_) => Err(Violation::TrailingBytes),
        Err(e) => Err(violation_of(e)),
    }
}

pub(crate) fn u8_(i: &[u8]) -> PResult<'_, u8> {
    be_u8(i)
}

pub(crate) fn u16_(i: &[u8]) -> PResult<'_, u16> {
    be_u16(i)
}

pub(crate) fn u32_(i: &[u8]) -> PResult<'_, u32> {
    be_u32(i)
}

/// A Variable Byte Integer inside a packet body; minimal encoding is required (MQTT 5.0 only has
/// these). v5 [MQTT-1.5.5-1]
pub(crate) fn vbi(i: &[u8]) -> PResult<'_, u32> {
    match read_vbi(i) {
        Ok(Some(v)) if !v.minimal => fail(Violation::VariableByteIntegerNotMinimal),
        Ok(Some(v)) => Ok((i.get(v.len..).unwrap_or_default(), v.value)),
        Ok(None) => fail(Violation::Truncated),
        Err(violation) => fail(violation),
    }
}

/// A non-zero Packet Identifier.
pub(crate) fn packet_id(i: &[u8]) -> PResult<'_, PacketId> {
    let (i, id) = be_u16(i)?;
    match PacketId::new(id) {
        Some(id) => Ok((i, id)),
        // v5 [MQTT-2.2.1-3], v3.1.1 [MQTT-2.3.1-1]: a Packet Identifier is non-zero.
        None => fail(Violation::PacketIdZero),
    }
}

/// Binary Data (section 1.5.6): a two-byte length and that many bytes.
pub(crate) fn binary(i: &[u8]) -> PResult<'_, &[u8]> {
    let (i, len) = be_u16(i)?;
    take(len)(i)
}

/// Binary Data as a zero-copy slice of `src`.
pub(crate) fn binary_bytes<'a>(src: &Bytes, i: &'a [u8]) -> PResult<'a, Bytes> {
    let (i, b) = binary(i)?;
    Ok((i, src.slice_ref(b)))
}

/// A UTF-8 Encoded String (section 1.5.4) as a zero-copy slice of `src`.
pub(crate) fn utf8<'a>(src: &Bytes, i: &'a [u8]) -> PResult<'a, Utf8String> {
    let (i, b) = binary(i)?;
    match Utf8String::from_bytes(src.slice_ref(b)) {
        Ok(s) => Ok((i, s)),
        Err(v) => fail(v),
    }
}

/// Where the writers of fields write: a [`Window`] of a buffer sized in advance (the packet
/// encoders), or a growing [`BytesMut`] or `Vec` (building a property list in wire form).
///
/// Not `bytes::BufMut` (an `unsafe` trait, and the crate forbids `unsafe`): a window must be
/// able to refuse a write that does not fit instead of panicking.
pub(crate) trait Sink {
    /// Appends `src`.
    fn put_slice(&mut self, src: &[u8]);

    /// Appends one byte.
    #[inline]
    fn put_u8(&mut self, v: u8) {
        self.put_slice(&[v]);
    }

    /// Appends a Two Byte Integer (big-endian).
    #[inline]
    fn put_u16(&mut self, v: u16) {
        self.put_slice(&v.to_be_bytes());
    }

    /// Appends a Four Byte Integer (big-endian).
    #[inline]
    fn put_u32(&mut self, v: u32) {
        self.put_slice(&v.to_be_bytes());
    }
}

impl Sink for BytesMut {
    #[inline]
    fn put_slice(&mut self, src: &[u8]) {
        self.extend_from_slice(src);
    }
}

impl Sink for alloc::vec::Vec<u8> {
    #[inline]
    fn put_slice(&mut self, src: &[u8]) {
        self.extend_from_slice(src);
    }
}

/// A slice of a buffer sized in advance (its bytes already there, zeroed), filled from the
/// front: every write is a copy and a bound check, without the capacity check and length
/// update of a [`BytesMut`] write. A write that does not fit is dropped and remembered.
pub(crate) struct Window<'a> {
    rest: &'a mut [u8],
    overflow: bool,
}

impl<'a> Window<'a> {
    /// A window over `buf`.
    #[inline]
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self {
            rest: buf,
            overflow: false,
        }
    }

    /// Whether every write fitted and the window is exactly full.
    #[inline]
    pub(crate) fn is_exactly_full(&self) -> bool {
        !self.overflow && self.rest.is_empty()
    }
}

impl Sink for Window<'_> {
    #[inline]
    fn put_slice(&mut self, src: &[u8]) {
        let rest = core::mem::take(&mut self.rest);
        match rest.split_at_mut_checked(src.len()) {
            Some((dst, tail)) => {
                dst.copy_from_slice(src);
                self.rest = tail;
            }
            // The window stays empty: every later write overflows too.
            None => self.overflow = true,
        }
    }

    #[inline]
    fn put_u8(&mut self, v: u8) {
        let rest = core::mem::take(&mut self.rest);
        match rest.split_first_mut() {
            Some((dst, tail)) => {
                *dst = v;
                self.rest = tail;
            }
            None => self.overflow = true,
        }
    }
}

/// Writes a UTF-8 string with its length prefix (its length is at most 65 535 by construction).
pub(crate) fn put_utf8(buf: &mut impl Sink, s: &Utf8String) {
    put_binary(buf, s.as_bytes());
}

/// Writes binary data with its length prefix; callers checked the length with [`check_binary`].
pub(crate) fn put_binary(buf: &mut impl Sink, b: &[u8]) {
    buf.put_u16(u16::try_from(b.len()).unwrap_or(u16::MAX));
    buf.put_slice(b);
}

/// Binary data fits a two-byte length.
pub(crate) fn check_binary(b: &[u8]) -> Result<(), Violation> {
    if b.len() > usize::from(u16::MAX) {
        Err(Violation::FieldTooLong)
    } else {
        Ok(())
    }
}
