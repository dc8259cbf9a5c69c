//! Packets written byte by byte, for the stimuli the codec refuses to encode (malformed
//! packets, reserved values, protocol errors) and for exact control over every field.
//!
//! The primitives ([`put_vbi`], [`put_str`], [`lstr`], [`put_props`], [`frame`] and the `p_*`
//! property entries) and the builders of the packets more than one module writes this way
//! ([`connect_with`], [`connect_frame`], [`publish_frame`], [`subscribe_frame`]).

use crate::ctx::Ctx;

// ---------------------------------------------------------------------------------------------
// Primitives.

/// Appends `n` as a Variable Byte Integer (minimal encoding).
pub(super) fn put_vbi(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = u8::try_from(n % 128).unwrap_or(0);
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

/// Appends a two-byte length and `s` (a UTF-8 Encoded String or Binary Data, whatever bytes).
/// An `s` longer than 65 535 bytes gets the length 65 535 and all its bytes.
pub(super) fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let n = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(s);
}

/// A two-byte length and `s`.
pub(super) fn lstr(s: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    put_str(&mut v, s);
    v
}

/// Appends a property list (5.0): its length, then `props`.
pub(super) fn put_props(out: &mut Vec<u8>, props: &[u8]) {
    put_vbi(out, props.len());
    out.extend_from_slice(props);
}

/// A whole packet: the first byte (type and flags), the Remaining Length, the body.
pub(super) fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    put_vbi(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A byte property.
pub(super) fn p_byte(id: u8, v: u8) -> Vec<u8> {
    vec![id, v]
}

/// A four-byte integer property.
pub(super) fn p_u32(id: u8, v: u32) -> Vec<u8> {
    let mut out = vec![id];
    out.extend_from_slice(&v.to_be_bytes());
    out
}

/// A string (or binary data) property.
pub(super) fn p_str(id: u8, s: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    put_str(&mut out, s);
    out
}

/// A User Property (0x26).
pub(super) fn p_pair(k: &[u8], v: &[u8]) -> Vec<u8> {
    let mut out = vec![0x26];
    put_str(&mut out, k);
    put_str(&mut out, v);
    out
}

// ---------------------------------------------------------------------------------------------
// Packets.

/// A CONNECT: protocol `name` and `level`, connect `flags`, Keep Alive 60, the property list
/// `props` when `level` is 5 (none at any other level), then `payload` as it is (the Client
/// Identifier and what follows).
pub(super) fn connect_with(
    name: &[u8],
    level: u8,
    flags: u8,
    props: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut b = lstr(name);
    b.push(level);
    b.push(flags);
    b.extend_from_slice(&60u16.to_be_bytes());
    if level == 5 {
        put_props(&mut b, props);
    }
    b.extend_from_slice(payload);
    frame(0x10, &b)
}

/// A CONNECT: protocol name `MQTT`, this test's level, `flags`, Keep Alive 60, `props` (5.0),
/// then `payload` as it is (the Client Identifier and what follows).
pub(super) fn connect_frame(cx: &Ctx, flags: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    connect_with(
        b"MQTT",
        cx.version().protocol().level(),
        flags,
        props,
        payload,
    )
}

/// A PUBLISH with fixed-header flags `flags` (DUP, QoS, RETAIN: the low four bits; the others
/// are ignored), `topic` as it is, an optional Packet Identifier, `props` (5.0) and `payload`.
pub(super) fn publish_frame(
    v5: bool,
    flags: u8,
    topic: &[u8],
    id: Option<u16>,
    props: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut b = lstr(topic);
    if let Some(id) = id {
        b.extend_from_slice(&id.to_be_bytes());
    }
    if v5 {
        put_props(&mut b, props);
    }
    b.extend_from_slice(payload);
    frame(0x30 | (flags & 0x0f), &b)
}

/// A SUBSCRIBE with first byte `first`, Packet Identifier `id`, `props` (5.0) and the
/// (filter, options byte) entries.
pub(super) fn subscribe_frame(
    v5: bool,
    first: u8,
    id: u16,
    props: &[u8],
    entries: &[(&[u8], u8)],
) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    if v5 {
        put_props(&mut b, props);
    }
    for (f, o) in entries {
        put_str(&mut b, f);
        b.push(*o);
    }
    frame(first, &b)
}
