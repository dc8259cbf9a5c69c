//! Secrets never reach `Debug` output: a CONNECT's Password and any packet's Authentication
//! Data are shown by their length only, so a packet logged by accident leaks nothing.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use mqtt_codec::{Auth, Connect, Packet, Properties, ProtocolVersion, ReasonCode};

#[test]
fn a_connects_password_and_authentication_data_are_redacted_in_debug() {
    let mut connect = Connect::new(ProtocolVersion::V5, "c1".try_into().unwrap());
    connect.username = Some("alice".try_into().unwrap());
    connect.password = Some(Bytes::from_static(b"hunter2-secret"));
    connect
        .properties
        .set_authentication_method(Some("SCRAM-SHA-256".try_into().unwrap()));
    connect
        .properties
        .set_authentication_data(Some(b"proof-of-secret"))
        .unwrap();
    for shown in [
        format!("{connect:?}"),
        format!("{:?}", Packet::from(connect.clone())),
    ] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("proof-of"), "{shown}");
        // What is not secret is still there, and the secrets' lengths.
        assert!(
            shown.contains("alice") && shown.contains("SCRAM-SHA-256"),
            "{shown}"
        );
        assert!(shown.contains("<redacted, 14 bytes>"), "{shown}");
        assert!(shown.contains("<redacted, 15 bytes>"), "{shown}");
    }
}

#[test]
fn an_auth_packets_data_is_redacted_in_debug() {
    let mut properties = Properties::default();
    properties.set_authentication_method(Some("token".try_into().unwrap()));
    properties
        .set_authentication_data(Some(b"bearer-abc123"))
        .unwrap();
    let auth = Auth {
        reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
        properties,
    };
    let shown = format!("{auth:?}");
    assert!(!shown.contains("abc123"), "{shown}");
    assert!(shown.contains("token"), "{shown}");
}
