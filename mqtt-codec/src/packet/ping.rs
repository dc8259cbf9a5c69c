//! PINGREQ and PINGRESP (sections 3.12 and 3.13): no variable header, no payload.

use bytes::Bytes;

use crate::error::Violation;

/// A PINGREQ or PINGRESP body must be empty (Remaining Length 0).
pub(crate) fn decode_empty(src: &Bytes) -> Result<(), Violation> {
    if src.is_empty() {
        Ok(())
    } else {
        Err(Violation::TrailingBytes)
    }
}
