//! `Endpoint`: the strings it takes, what it makes of them, how it writes them, and the
//! strings it refuses with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mqtt_transport::{Endpoint, Error, Scheme};

/// `input` parsed: scheme, host, port, path.
fn parts(input: &str) -> (Scheme, String, u16, String) {
    let e: Endpoint = input
        .parse()
        .unwrap_or_else(|e| panic!("`{input}` refused: {e}"));
    (
        e.scheme(),
        e.host().to_owned(),
        e.port(),
        e.path().to_owned(),
    )
}

#[test]
fn good_endpoints_parse_with_their_defaults() {
    use Scheme::{Tcp, Tls, Ws, Wss};
    let cases: &[(&str, Scheme, &str, u16, &str)] = &[
        ("mqtt://broker.example", Tcp, "broker.example", 1883, ""),
        (
            "mqtt://broker.example:1884",
            Tcp,
            "broker.example",
            1884,
            "",
        ),
        ("mqtt://broker.example/", Tcp, "broker.example", 1883, ""),
        ("tcp://10.0.0.1:1883", Tcp, "10.0.0.1", 1883, ""),
        ("MQTT://Broker.Example", Tcp, "Broker.Example", 1883, ""),
        ("localhost:1883", Tcp, "localhost", 1883, ""),
        ("localhost", Tcp, "localhost", 1883, ""),
        ("127.0.0.1:11883", Tcp, "127.0.0.1", 11883, ""),
        ("[::1]:1883", Tcp, "::1", 1883, ""),
        ("[::1]", Tcp, "::1", 1883, ""),
        ("mqtt://[fe80::1]:2000", Tcp, "fe80::1", 2000, ""),
        ("mqtts://broker.example", Tls, "broker.example", 8883, ""),
        ("ssl://broker.example:8884", Tls, "broker.example", 8884, ""),
        ("tls://my_host.local", Tls, "my_host.local", 8883, ""),
        ("ws://broker.example", Ws, "broker.example", 80, "/mqtt"),
        ("ws://broker.example:8080/", Ws, "broker.example", 8080, "/"),
        (
            "ws://broker.example:8080/ws",
            Ws,
            "broker.example",
            8080,
            "/ws",
        ),
        ("ws://[::1]:9001", Ws, "::1", 9001, "/mqtt"),
        ("wss://broker.example", Wss, "broker.example", 443, "/mqtt"),
        (
            "wss://broker.example/mqtt?x-token=a%20b",
            Wss,
            "broker.example",
            443,
            "/mqtt?x-token=a%20b",
        ),
    ];
    for &(input, scheme, host, port, path) in cases {
        assert_eq!(
            parts(input),
            (scheme, host.to_owned(), port, path.to_owned()),
            "{input}"
        );
    }
}

#[test]
fn display_is_canonical_and_parses_back() {
    let cases = [
        ("tcp://h", "mqtt://h:1883"),
        ("h:1", "mqtt://h:1"),
        ("ssl://h", "mqtts://h:8883"),
        ("TLS://h:9", "mqtts://h:9"),
        ("[::1]:1883", "mqtt://[::1]:1883"),
        ("ws://h", "ws://h:80/mqtt"),
        ("wss://[::1]/x?y=1", "wss://[::1]:443/x?y=1"),
    ];
    for (input, shown) in cases {
        let e: Endpoint = input.parse().unwrap();
        assert_eq!(e.to_string(), shown, "{input}");
        assert_eq!(shown.parse::<Endpoint>().unwrap(), e, "{input}");
    }
    let e: Endpoint = "wss://[::1]:8443/ws".parse().unwrap();
    assert_eq!(e.authority(), "[::1]:8443");
    assert_eq!(e.websocket_url().as_deref(), Some("wss://[::1]:8443/ws"));
    assert_eq!(
        "mqtts://h".parse::<Endpoint>().unwrap().websocket_url(),
        None
    );
}

#[test]
fn bad_endpoints_are_refused_with_the_reason() {
    let cases = [
        ("", "empty"),
        ("http://broker.example", "unknown scheme `http`"),
        ("mqtt://", "no host"),
        ("mqtt://:1883", "no host"),
        ("broker.example:", "no port after `:`"),
        ("broker.example:http", "`http` is not a port number"),
        ("broker.example:65536", "`65536` is not a port number"),
        ("broker.example:-1", "`-1` is not a port number"),
        ("broker.example:0", "port 0"),
        ("::1", "brackets"),
        ("::1:1883", "brackets"),
        ("[::1", "without `]`"),
        ("[::g]:1883", "not an IPv6 address"),
        ("[::1]1883", "after the IPv6 address"),
        (
            "mqtt://user:secret@broker.example",
            "does not belong in the endpoint",
        ),
        (
            "mqtt://broker.example/mqtt",
            "only ws:// and wss:// endpoints have a path",
        ),
        ("mqtts://broker.example?x", "only ws:// and wss://"),
        ("ws://broker.example/mqtt#top", "no fragment"),
        ("ws://broker.example?x=1", "must start with `/`"),
        ("ws://broker.example/é", "percent-encode"),
        ("broker example", "' ' is not allowed"),
        ("mqtt://bro*ker", "'*' is not allowed in a host name"),
        ("mqtt://a..b", "is not a host name"),
    ];
    for (input, reason) in cases {
        match input.parse::<Endpoint>() {
            Ok(e) => panic!("`{input}` was taken as {e}"),
            Err(e @ Error::InvalidEndpoint { .. }) => {
                let text = e.to_string();
                assert!(
                    text.starts_with(&format!("invalid endpoint `{input}`: ")),
                    "{text}"
                );
                assert!(text.contains(reason), "`{input}`: {text}");
            }
            Err(e) => panic!("`{input}`: not InvalidEndpoint: {e}"),
        }
    }
}

#[test]
fn endpoints_built_from_parts() {
    let e = Endpoint::new(Scheme::Wss, "[::1]", 8443).unwrap();
    assert_eq!(e.to_string(), "wss://[::1]:8443/mqtt");
    let e = e.with_path("/ws?a=b").unwrap();
    assert_eq!(e.path(), "/ws?a=b");
    assert_eq!(
        Endpoint::new(Scheme::Tcp, "::1", 1883).unwrap().host(),
        "::1"
    );
    assert!(Endpoint::new(Scheme::Tcp, "", 1883).is_err());
    assert!(Endpoint::new(Scheme::Tcp, "h", 0).is_err());
    assert!(Endpoint::new(Scheme::Tcp, "a b", 1).is_err());
    let tcp = Endpoint::new(Scheme::Tcp, "h", 1883).unwrap();
    assert!(tcp.with_path("/x").is_err());
    let ws = Endpoint::new(Scheme::Ws, "h", 80).unwrap();
    assert!(ws.clone().with_path("x").is_err());
    assert!(ws.with_path("/x#y").is_err());
    assert!(Scheme::Wss.is_tls() && Scheme::Wss.is_websocket());
    assert!(Scheme::Tls.is_tls() && !Scheme::Tls.is_websocket());
    assert_eq!(Scheme::Ws.default_port(), 80);
}

/// A Server Reference (v5 section 4.11, "a space separated list of references", each a name
/// and an optional port as the non-normative comment recommends) followed from an endpoint:
/// the first usable reference, over the same transport (scheme and WebSocket path).
#[test]
fn server_references_keep_the_transport() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "mqtt://a.example",
            "b.example:1884",
            "mqtt://b.example:1884",
        ),
        (
            "mqtt://a.example:2000",
            "b.example",
            "mqtt://b.example:1883",
        ),
        ("mqtts://a.example", "b.example", "mqtts://b.example:8883"),
        ("mqtts://a.example", "[::1]:8884", "mqtts://[::1]:8884"),
        (
            "ws://a.example/ws",
            "b.example:8080",
            "ws://b.example:8080/ws",
        ),
        (
            "wss://a.example/mqtt?x=1",
            "b.example",
            "wss://b.example:443/mqtt?x=1",
        ),
        // The first usable one of a list; spaces around and between are not references.
        (
            "mqtt://a.example",
            "  b.example:1 c.example:2 ",
            "mqtt://b.example:1",
        ),
        (
            "mqtt://a.example",
            "b.example:0 c.example:2",
            "mqtt://c.example:2",
        ),
        (
            "mqtt://a.example",
            "b.example/x c.example",
            "mqtt://c.example:1883",
        ),
        // A URL of the same scheme (an alias counts as the same), with its own path if any.
        (
            "mqtt://a.example",
            "tcp://b.example:1",
            "mqtt://b.example:1",
        ),
        (
            "wss://a.example/ws",
            "wss://b.example/other",
            "wss://b.example:443/other",
        ),
        (
            "wss://a.example/ws?t=1",
            "wss://b.example:8443",
            "wss://b.example:8443/ws?t=1",
        ),
        // A URL that would change the transport is skipped for the next reference.
        (
            "mqtts://a.example",
            "mqtt://b.example c.example",
            "mqtts://c.example:8883",
        ),
    ];
    for (from, reference, to) in cases {
        let from: Endpoint = from.parse().unwrap();
        let followed = from
            .follow_reference(reference)
            .unwrap_or_else(|e| panic!("{from} + `{reference}`: {e}"));
        assert_eq!(followed.to_string(), *to, "{from} + `{reference}`");
    }
}

/// A Server Reference with no usable reference is refused, naming it and saying why the first
/// reference is not usable; above all, TLS is never given up for plain TCP.
#[test]
fn unusable_server_references_are_refused_with_the_reason() {
    let cases: &[(&str, &str, &str)] = &[
        ("mqtt://a.example", "", "empty"),
        ("mqtt://a.example", "   ", "empty"),
        (
            "mqtts://a.example",
            "mqtt://b.example",
            "from mqtts to mqtt",
        ),
        ("wss://a.example", "ws://b.example", "from wss to ws"),
        ("mqtt://a.example", "b.example/path", "without a path"),
        ("mqtt://a.example", "b.example:99999", "not a port"),
        ("mqtt://a.example", "b.example:0", "port 0"),
        ("mqtt://a.example", "user@b.example", "user name"),
        ("mqtt://a.example", "bad_host! also:bad:", "`bad_host!`"),
    ];
    for (from, reference, reason) in cases {
        let from: Endpoint = from.parse().unwrap();
        match from.follow_reference(reference) {
            Err(e @ Error::InvalidEndpoint { .. }) => {
                let text = e.to_string();
                assert!(text.contains(reason), "{from} + `{reference}`: {text}");
                assert!(
                    text.contains(reference.trim()),
                    "names the reference: {text}"
                );
            }
            other => panic!("{from} + `{reference}`: {other:?}"),
        }
    }
}
