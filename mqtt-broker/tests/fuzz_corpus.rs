//! Replays the committed corpus of the `host_files` fuzz target on stable Rust, through the
//! same checks the fuzz target runs (`fuzz/checks/host_files.rs`): the ACL, password-file and
//! configuration parsers on arbitrary text.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

include!("../../fuzz/checks/host_files.rs");
include!("../../fuzz/checks/corpus.rs");

#[test]
fn host_files_corpus() {
    replay("host_files", host_files_checks::run);
}

include!("../../fuzz/checks/websocket.rs");

#[test]
fn websocket_corpus() {
    replay("websocket", websocket_checks::run);
}

/// A client frame (masked, as a client's must be), for the harness test.
fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![u8::from(fin) << 7 | opcode];
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | u8::try_from(n).unwrap());
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The replay harness itself: a fuzz target that never upgrades would check nothing.
// v5 [MQTT-6.0.0-1] [MQTT-6.0.0-2] [MQTT-6.0.0-3] [MQTT-6.0.0-4]
#[test]
fn websocket_replay_runs_the_bridge() {
    use websocket_checks::{MAX_SIZE, REQUEST};
    let connect = [
        0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x04, b'c',
        b'l', b'i', b'd',
    ];
    let frames = |parts: &[Vec<u8>]| parts.concat();
    let cases = [
        ("one frame", frames(&[frame(2, true, &connect)])),
        (
            "split across frames",
            frames(&[frame(2, true, &connect[..5]), frame(2, true, &connect[5..])]),
        ),
        (
            "fragmented, a ping between",
            frames(&[
                frame(2, false, &connect[..7]),
                frame(9, true, b"hi"),
                frame(0, true, &connect[7..]),
            ]),
        ),
        (
            "a text frame ends it",
            frames(&[
                frame(2, true, &connect),
                frame(1, true, b"no"),
                frame(2, true, &connect),
            ]),
        ),
    ];
    for (name, bytes) in cases {
        let r = mqtt_broker::websocket_replay(REQUEST, &bytes, MAX_SIZE);
        assert!(r.upgraded, "{name}");
        assert_eq!(r.to_engine, connect, "{name}");
        websocket_checks::run(&[[0].as_slice(), &bytes].concat());
    }
    // Unmasked client frames and messages over the limit are refused.
    let mut unmasked = frame(2, true, &connect);
    unmasked[1] &= 0x7F;
    unmasked.drain(2..6);
    let unmasked: Vec<u8> = [&unmasked[..2], &connect[..]].concat();
    for bytes in [unmasked, frame(2, true, &vec![0; MAX_SIZE + 1])] {
        let r = mqtt_broker::websocket_replay(REQUEST, &bytes, MAX_SIZE);
        assert!(r.upgraded && r.to_engine.is_empty());
    }
    // The upgrade: 404 for another path, 400 without the `mqtt` subprotocol, and `mqtt`
    // selected when it is offered among others.
    let status = |request: &[u8]| {
        let r = mqtt_broker::websocket_replay(request, &[], MAX_SIZE);
        let line = String::from_utf8_lossy(&r.to_client)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        (r.upgraded, line)
    };
    let request = String::from_utf8(REQUEST.to_vec()).unwrap();
    assert_eq!(
        status(request.replace("/mqtt", "/other").as_bytes()),
        (false, "HTTP/1.1 404 Not Found".to_owned())
    );
    assert_eq!(
        status(
            request
                .replace("Sec-WebSocket-Protocol: mqtt\r\n", "")
                .as_bytes()
        ),
        (false, "HTTP/1.1 400 Bad Request".to_owned())
    );
    assert_eq!(
        status(
            request
                .replace("Protocol: mqtt", "Protocol: wamp, MQTT")
                .as_bytes()
        ),
        (true, "HTTP/1.1 101 Switching Protocols".to_owned())
    );
}
