// The checks behind the `websocket` fuzz target: mqtt-broker's WebSocket upgrade and bridge
// (`mqtt_broker::websocket_replay`, the code a `--ws-listen` connection runs) on what a hostile
// client sends. This file is `include!`d by the fuzz target and by
// `mqtt-broker/tests/fuzz_corpus.rs`, which replays the committed corpus on stable Rust.

// Findings are reported by panicking, as libFuzzer expects.
#[allow(dead_code, unreachable_pub, clippy::panic, clippy::indexing_slicing, clippy::unwrap_used)]
mod websocket_checks {
    /// The bridge's frame and message limit here (the broker uses its maximum packet size):
    /// small, so that the limit is reached.
    pub const MAX_SIZE: usize = 4096;

    /// The upgrade request the first mode puts in front of the fuzzer's frames.
    pub const REQUEST: &[u8] = b"GET /mqtt HTTP/1.1\r\n\
Host: localhost\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Protocol: mqtt\r\n\
\r\n";

    /// The client's frames read leniently (RFC 6455 section 5.2: any mask, any reserved bits,
    /// any size), as MQTT 5.0 section 6 has the bridge pass them on: the payloads of the whole
    /// binary messages, concatenated in order [MQTT-6.0.0-2], up to the first text frame
    /// [MQTT-6.0.0-1], close frame, frame out of place, or frame that is not all there. The
    /// broker's reader is stricter (it refuses unmasked frames, reserved bits, oversized
    /// messages, and ends there), so what the engine receives must be a prefix of this.
    pub fn binary_payloads(mut i: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // The binary message being assembled from fragments.
        let mut message: Option<Vec<u8>> = None;
        loop {
            let [b0, b1, rest @ ..] = i else { return out };
            let (fin, opcode, masked) = (b0 & 0x80 != 0, b0 & 0x0F, b1 & 0x80 != 0);
            let (len, rest) = match b1 & 0x7F {
                126 => {
                    let [a, b, rest @ ..] = rest else { return out };
                    (u64::from(u16::from_be_bytes([*a, *b])), rest)
                }
                127 => {
                    let Some((n, rest)) = rest.split_first_chunk::<8>() else { return out };
                    (u64::from_be_bytes(*n), rest)
                }
                n => (u64::from(n), rest),
            };
            let (mask, rest) = if masked {
                let Some((m, rest)) = rest.split_first_chunk::<4>() else { return out };
                (*m, rest)
            } else {
                ([0; 4], rest)
            };
            let Ok(len) = usize::try_from(len) else { return out };
            if rest.len() < len {
                return out;
            }
            let (payload, rest) = rest.split_at(len);
            let payload: Vec<u8> = payload
                .iter()
                .enumerate()
                .map(|(k, b)| b ^ mask[k % 4])
                .collect();
            i = rest;
            match opcode {
                // A continuation: only of a binary message (a text message ended it all).
                0x0 => {
                    let Some(m) = message.as_mut() else { return out };
                    m.extend_from_slice(&payload);
                    if fin {
                        out.extend_from_slice(&m.clone());
                        message = None;
                    }
                }
                0x2 => {
                    if message.is_some() {
                        return out;
                    }
                    if fin {
                        out.extend_from_slice(&payload);
                    } else {
                        message = Some(payload);
                    }
                }
                // Ping and pong: answered or ignored, nothing for the engine.
                0x9 | 0xA => {}
                // Text [MQTT-6.0.0-1], close, reserved opcodes: the end.
                _ => return out,
            }
        }
    }

    /// The header of an HTTP response, lower-cased.
    fn response_head(to_client: &[u8]) -> String {
        let end = to_client
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(to_client.len());
        String::from_utf8_lossy(&to_client[..end]).to_ascii_lowercase()
    }

    /// The first byte chooses the mode: even, a valid upgrade request, then (after the
    /// response) the rest as frames (the bridge's checks); odd, the rest is the upgrade
    /// request (the upgrade's checks; a client sends nothing more before the response).
    pub fn run(data: &[u8]) {
        let Some((&mode, rest)) = data.split_first() else { return };
        let framed = mode & 1 == 0;
        let r = if framed {
            mqtt_broker::websocket_replay(REQUEST, rest, MAX_SIZE)
        } else {
            mqtt_broker::websocket_replay(rest, &[], MAX_SIZE)
        };
        if !r.upgraded {
            assert!(r.to_engine.is_empty(), "bytes reached the engine without an upgrade");
            assert!(!framed, "the valid upgrade request was refused: {}", response_head(&r.to_client));
            return;
        }
        // v5 [MQTT-6.0.0-4]: the server selects the `mqtt` subprotocol.
        let head = response_head(&r.to_client);
        assert!(head.starts_with("http/1.1 101"), "upgraded without a 101: {head}");
        assert!(
            head.lines().any(|l| l.replace(' ', "") == "sec-websocket-protocol:mqtt"),
            "the response does not select the mqtt subprotocol: {head}"
        );
        if framed {
            // v5 [MQTT-6.0.0-1] [MQTT-6.0.0-2]: binary payloads only, whole messages, in order,
            // nothing after a text frame.
            let expected = binary_payloads(rest);
            assert!(
                expected.starts_with(&r.to_engine),
                "the engine received {} bytes that are not the client's binary payloads in order (of {} expected)",
                r.to_engine.len(),
                expected.len()
            );
        }
    }
}
