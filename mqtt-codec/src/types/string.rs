//! UTF-8 Encoded String (section 1.5.4), validated once and backed by `Bytes`.

use crate::prelude::*;
use core::fmt;
use core::ops::Deref;

use bytes::Bytes;
use bytestring::ByteString;

use crate::error::Violation;

/// A UTF-8 Encoded String as MQTT defines it: well-formed UTF-8 (so no surrogates), no U+0000,
/// at most 65 535 bytes. A leading U+FEFF (byte order mark) is kept, never stripped.
///
/// It is checked once, when made, and shares the buffer it was decoded from: cloning it or
/// slicing a packet into it does not copy the text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Utf8String(ByteString);

impl Utf8String {
    /// The longest string the two-byte length prefix can carry.
    pub const MAX_LEN: usize = 65_535;

    /// Validates `bytes` as an MQTT UTF-8 string without copying it.
    ///
    /// # Errors
    /// [`Violation::InvalidUtf8`] (v5 [MQTT-1.5.4-1], v3.1.1 [MQTT-1.5.3-1]),
    /// [`Violation::NullCharacter`] (v5 [MQTT-1.5.4-2], v3.1.1 [MQTT-1.5.3-2]) or
    /// [`Violation::FieldTooLong`].
    pub fn from_bytes(bytes: Bytes) -> Result<Self, Violation> {
        if bytes.len() > Self::MAX_LEN {
            return Err(Violation::FieldTooLong);
        }
        // [MQTT-1.5.4-2] A UTF-8 Encoded String MUST NOT include an encoding of the null
        // character U+0000. (U+0000 encodes as the single byte 0 and no other UTF-8 sequence
        // contains a zero byte.)
        if super::scan::has_null(&bytes) {
            return Err(Violation::NullCharacter);
        }
        // [MQTT-1.5.4-1] The character data MUST be well-formed UTF-8 ... MUST NOT include
        // encodings of code points between U+D800 and U+DFFF. (`str` rejects both.)
        ByteString::try_from(bytes)
            .map(Self)
            .map_err(|_| Violation::InvalidUtf8)
    }

    /// [`Utf8String::from_bytes`] for bytes already known to be short enough and without a
    /// zero byte: checks that they are well-formed UTF-8.
    pub(crate) fn from_bytes_without_null(bytes: Bytes) -> Result<Self, Violation> {
        ByteString::try_from(bytes)
            .map(Self)
            .map_err(|_| Violation::InvalidUtf8)
    }

    /// A string from `&'static str` (checked like any other).
    ///
    /// # Errors
    /// As [`Utf8String::from_bytes`].
    pub fn from_static(s: &'static str) -> Result<Self, Violation> {
        Self::from_bytes(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The bytes (shared, not copied).
    #[must_use]
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    /// The bytes, consuming the string.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }

    /// The length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of bytes this string takes on the wire (its two-byte length prefix included).
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        2 + self.0.len()
    }
}

impl Deref for Utf8String {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Utf8String {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Utf8String {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Utf8String {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for Utf8String {
    type Error = Violation;
    fn try_from(s: &str) -> Result<Self, Violation> {
        Self::from_bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl TryFrom<String> for Utf8String {
    type Error = Violation;
    fn try_from(s: String) -> Result<Self, Violation> {
        Self::from_bytes(Bytes::from(s))
    }
}

impl PartialEq<str> for Utf8String {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8String {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Utf8String {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Utf8String {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::try_from(s).map_err(|v| serde::de::Error::custom(v.rule().text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // v5 [MQTT-1.5.4-1]
    // v3.1.1 [MQTT-1.5.3-1]
    #[test]
    fn ill_formed_utf8_and_surrogates_are_rejected() {
        // An encoded surrogate U+D800 and a lone continuation byte.
        for bad in [
            &b"\xED\xA0\x80"[..],
            b"\x80",
            b"ab\xC3",
            b"\xF8\x88\x80\x80\x80",
        ] {
            assert_eq!(
                Utf8String::from_bytes(Bytes::copy_from_slice(bad)),
                Err(Violation::InvalidUtf8)
            );
        }
    }

    // v5 [MQTT-1.5.4-2]
    // v3.1.1 [MQTT-1.5.3-2]
    #[test]
    fn null_character_is_rejected() {
        assert_eq!(Utf8String::try_from("a\0b"), Err(Violation::NullCharacter));
    }

    // v5 [MQTT-1.5.4-3]
    // v3.1.1 [MQTT-1.5.3-3]
    #[test]
    fn byte_order_mark_is_kept() {
        let s = Utf8String::from_bytes(Bytes::from_static(b"\xEF\xBB\xBFtopic")).unwrap();
        assert_eq!(s.as_str(), "\u{FEFF}topic");
        assert_eq!(s.len(), 8);
    }

    #[test]
    fn too_long_is_rejected() {
        let long = "a".repeat(65_536);
        assert_eq!(
            Utf8String::try_from(long.as_str()),
            Err(Violation::FieldTooLong)
        );
        assert!(Utf8String::try_from("a".repeat(65_535)).is_ok());
    }
}
