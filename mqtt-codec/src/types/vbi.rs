//! Variable Byte Integer (section 1.5.5): 7 bits a byte, least significant group first, at most
//! four bytes.

use crate::wire::Sink;

use crate::error::Violation;

/// The largest value a Variable Byte Integer can hold (four bytes): 268 435 455.
pub const VBI_MAX: u32 = 268_435_455;

/// The number of bytes the minimal encoding of `value` takes (1 to 4; values above
/// [`VBI_MAX`] are reported as 4 and refused by the encoder).
#[must_use]
pub const fn vbi_len(value: u32) -> usize {
    if value < 128 {
        1
    } else if value < 16_384 {
        2
    } else if value < 2_097_152 {
        3
    } else {
        4
    }
}

/// A decoded Variable Byte Integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Vbi {
    pub(crate) value: u32,
    /// Bytes it took on the wire.
    pub(crate) len: usize,
    /// Whether it used the minimum number of bytes. [MQTT-1.5.5-1]
    pub(crate) minimal: bool,
}

/// Reads a Variable Byte Integer from the start of `buf`.
///
/// `Ok(None)` when `buf` ends before the last byte of the integer (more input may complete it);
/// an error when a fifth byte would be needed.
pub(crate) fn read_vbi(buf: &[u8]) -> Result<Option<Vbi>, Violation> {
    let mut value: u32 = 0;
    for (i, &b) in buf.iter().take(4).enumerate() {
        value |= u32::from(b & 0x7F) << (7 * i as u32);
        if b & 0x80 == 0 {
            // A multi-byte encoding whose last (most significant) group is zero could have
            // been shorter.
            return Ok(Some(Vbi {
                value,
                len: i + 1,
                minimal: i == 0 || b != 0,
            }));
        }
    }
    if buf.len() >= 4 {
        Err(Violation::VariableByteIntegerTooLong)
    } else {
        Ok(None)
    }
}

/// Writes the minimal encoding of `value` (which must be at most [`VBI_MAX`]).
pub(crate) fn put_vbi(buf: &mut impl Sink, mut value: u32) {
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            buf.put_u8(byte);
            return;
        }
        buf.put_u8(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u32) -> Vec<u8> {
        let mut out = Vec::new();
        put_vbi(&mut out, v);
        out
    }

    #[test]
    fn boundaries_match_the_table_of_section_1_5_5() {
        for (value, bytes) in [
            (0u32, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            assert_eq!(enc(value), bytes, "{value}");
            assert_eq!(vbi_len(value), bytes.len());
            let got = read_vbi(bytes).unwrap().unwrap();
            assert_eq!(
                (got.value, got.len, got.minimal),
                (value, bytes.len(), true)
            );
        }
    }

    #[test]
    fn five_bytes_overflow() {
        assert_eq!(
            read_vbi(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(Violation::VariableByteIntegerTooLong)
        );
        assert_eq!(
            read_vbi(&[0x80, 0x80, 0x80, 0x80]),
            Err(Violation::VariableByteIntegerTooLong)
        );
    }

    #[test]
    fn prefixes_are_incomplete() {
        assert_eq!(read_vbi(&[]), Ok(None));
        assert_eq!(read_vbi(&[0x80]), Ok(None));
        assert_eq!(read_vbi(&[0xFF, 0xFF, 0xFF]), Ok(None));
    }

    // v5 [MQTT-1.5.5-1]
    #[test]
    fn mqtt_1_5_5_1_non_minimal_encodings_are_flagged() {
        let got = read_vbi(&[0x80, 0x00]).unwrap().unwrap();
        assert_eq!((got.value, got.minimal), (0, false));
        let got = read_vbi(&[0xFF, 0x80, 0x00]).unwrap().unwrap();
        assert_eq!((got.value, got.minimal), (127, false));
        let got = read_vbi(&[0x80, 0x01]).unwrap().unwrap();
        assert!(got.minimal);
    }
}
