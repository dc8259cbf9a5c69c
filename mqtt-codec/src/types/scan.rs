//! Byte scans for the checks on every string of every packet: U+0000 in a UTF-8 Encoded String
//! ([MQTT-1.5.4-2]) and wildcards in a Topic Name ([MQTT-3.3.2-2]). MQTT strings are short, where
//! `memchr` costs more than it saves; these look at eight bytes at a time (SWAR), in safe code.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Whether one of the eight bytes of `x` is zero (exact: the borrow that may mark a byte above
/// a zero byte needs that zero byte).
const fn has_zero_byte(x: u64) -> bool {
    x.wrapping_sub(LO) & !x & HI != 0
}

/// Whether one of the bytes of `x` equals `b`.
const fn has_byte(x: u64, b: u8) -> bool {
    has_zero_byte(x ^ (LO * b as u64))
}

/// Whether `bytes` holds a byte for which `word` (on eight bytes) or `byte` (on one) says so.
#[inline]
fn any(bytes: &[u8], word: impl Fn(u64) -> bool, byte: impl Fn(u8) -> bool) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    let mut found = false;
    for chunk in &mut chunks {
        let mut w = [0_u8; 8];
        w.copy_from_slice(chunk);
        found |= word(u64::from_le_bytes(w));
    }
    found || chunks.remainder().iter().any(|&b| byte(b))
}

/// Whether `bytes` holds a zero byte (the encoding of U+0000).
#[inline]
pub(crate) fn has_null(bytes: &[u8]) -> bool {
    any(bytes, has_zero_byte, |b| b == 0)
}

/// Whether `bytes` holds `+` or `#`.
#[inline]
pub(crate) fn has_wildcard(bytes: &[u8]) -> bool {
    any(
        bytes,
        |w| has_byte(w, b'+') || has_byte(w, b'#'),
        |b| b == b'+' || b == b'#',
    )
}

/// Whether `bytes` holds a zero byte, and whether it holds `+` or `#`, in one pass.
#[inline]
pub(crate) fn null_and_wildcard(bytes: &[u8]) -> (bool, bool) {
    let mut chunks = bytes.chunks_exact(8);
    let (mut null, mut wild) = (false, false);
    for chunk in &mut chunks {
        let mut w = [0_u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        null |= has_zero_byte(w);
        wild |= has_byte(w, b'+') | has_byte(w, b'#');
    }
    for &b in chunks.remainder() {
        null |= b == 0;
        wild |= b == b'+' || b == b'#';
    }
    (null, wild)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn scans_agree_with_the_obvious_loops(bytes in prop::collection::vec(
            prop::sample::select(vec![0_u8, 1, b'+', b'#', b'*', 0x80, 0xFF, b'a', 0x2A, 0x2C]),
            0..40,
        )) {
            let null = bytes.contains(&0);
            let wild = bytes.iter().any(|&b| b == b'+' || b == b'#');
            prop_assert_eq!(has_null(&bytes), null);
            prop_assert_eq!(has_wildcard(&bytes), wild);
            prop_assert_eq!(null_and_wildcard(&bytes), (null, wild));
        }
    }
}
