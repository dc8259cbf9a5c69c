//! [`Endpoint`]: where and how to connect, parsed from a URL-like string.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::Error;
use crate::websocket::DEFAULT_PATH;

/// How the bytes travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// MQTT over TCP: `mqtt://`, `tcp://`, or no scheme (default port 1883).
    Tcp,
    /// MQTT over TLS: `mqtts://`, `ssl://`, `tls://` (default port 8883).
    Tls,
    /// MQTT over WebSocket: `ws://` (default port 80, default path `/mqtt`).
    Ws,
    /// MQTT over WebSocket over TLS: `wss://` (default port 443, default path `/mqtt`).
    Wss,
}

impl Scheme {
    /// The port used when the endpoint names none: 1883, 8883, 80 or 443.
    #[must_use]
    pub const fn default_port(self) -> u16 {
        match self {
            Self::Tcp => 1883,
            Self::Tls => 8883,
            Self::Ws => 80,
            Self::Wss => 443,
        }
    }

    /// Whether the connection is over TLS (`mqtts`, `wss`).
    #[must_use]
    pub const fn is_tls(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }

    /// Whether the connection is over WebSocket (`ws`, `wss`).
    #[must_use]
    pub const fn is_websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }

    /// The scheme's canonical name, as [`Endpoint`]'s `Display` writes it: `mqtt`, `mqtts`,
    /// `ws` or `wss`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "mqtt",
            Self::Tls => "mqtts",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    /// The scheme of a name (ASCII case ignored), with its aliases.
    fn from_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        Some(match name.as_str() {
            "mqtt" | "tcp" => Self::Tcp,
            "mqtts" | "ssl" | "tls" => Self::Tls,
            "ws" => Self::Ws,
            "wss" => Self::Wss,
            _ => return None,
        })
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an MQTT server listens and how to reach it: a scheme, a host, a port and (over
/// WebSocket) a path.
///
/// Parsed from a URL-like string ([`FromStr`]):
///
/// | string | scheme | default port |
/// |---|---|---|
/// | `mqtt://host[:port]`, `tcp://host[:port]`, `host[:port]` | [`Scheme::Tcp`] | 1883 |
/// | `mqtts://host[:port]`, `ssl://…`, `tls://…` | [`Scheme::Tls`] | 8883 |
/// | `ws://host[:port][/path]` | [`Scheme::Ws`] | 80 |
/// | `wss://host[:port][/path]` | [`Scheme::Wss`] | 443 |
///
/// The host is a DNS name, an IPv4 address, or an IPv6 address in brackets (`[::1]:1883`).
/// A WebSocket path defaults to `/mqtt` and may carry a query (`/mqtt?token=…`); other
/// schemes take no path (a lone `/` is allowed). User names and passwords do not belong in an
/// endpoint (MQTT sends them in CONNECT) and are refused, as are fragments.
///
/// `Display` writes the canonical form, which parses back to the same endpoint:
///
/// ```
/// use mqtt_transport::{Endpoint, Scheme};
///
/// let e: Endpoint = "wss://broker.example".parse()?;
/// assert_eq!(e.scheme(), Scheme::Wss);
/// assert_eq!((e.host(), e.port(), e.path()), ("broker.example", 443, "/mqtt"));
/// assert_eq!(e.to_string(), "wss://broker.example:443/mqtt");
///
/// let e: Endpoint = "[::1]:1884".parse()?;
/// assert_eq!(e.to_string(), "mqtt://[::1]:1884");
/// assert!("http://broker.example".parse::<Endpoint>().is_err());
/// # Ok::<(), mqtt_transport::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    scheme: Scheme,
    host: String,
    port: u16,
    /// The WebSocket request's target (path and query); empty for TCP and TLS.
    path: String,
}

impl Endpoint {
    /// An endpoint of `scheme` at `host` (a DNS name or an IP address, an IPv6 one with or
    /// without brackets) and `port`; over WebSocket the path is `/mqtt`.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`]: the host is empty or not a DNS name or IP address, or the
    /// port is 0.
    pub fn new(scheme: Scheme, host: &str, port: u16) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidEndpoint {
            input: format!("{host}:{port}"),
            reason,
        };
        let unbracketed = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = if unbracketed.parse::<Ipv6Addr>().is_ok() {
            unbracketed.to_owned()
        } else {
            check_host(host).map_err(invalid)?.to_owned()
        };
        if port == 0 {
            return Err(invalid("port 0 cannot be connected to".to_owned()));
        }
        let path = if scheme.is_websocket() {
            DEFAULT_PATH.to_owned()
        } else {
            String::new()
        };
        Ok(Self {
            scheme,
            host,
            port,
            path,
        })
    }

    /// This WebSocket endpoint with another path (and query), for example `/ws`.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`]: the endpoint is not a WebSocket one, or `path` does not
    /// start with `/`, holds a fragment (`#`), whitespace or control characters.
    pub fn with_path(mut self, path: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidEndpoint {
            input: format!("{self}"),
            reason,
        };
        if !self.scheme.is_websocket() {
            return Err(invalid(
                "only ws:// and wss:// endpoints have a path".to_owned(),
            ));
        }
        check_path(path).map_err(invalid)?;
        self.path = path.to_owned();
        Ok(self)
    }

    /// Where a Server Reference sends a client that used this endpoint (MQTT 5.0 section 4.11:
    /// the property of a CONNACK or DISCONNECT with reason code 0x9C Use another server or
    /// 0x9D Server moved, "a space separated list of references").
    ///
    /// The first reference that is usable wins. A reference is a name optionally followed by
    /// `:port` (an IPv6 address in brackets, `[::1]:1884`), as the specification recommends;
    /// it is reached over this endpoint's transport: the same scheme (TLS stays TLS, and the
    /// certificate is checked against the new name) and, over WebSocket, the same path and
    /// query. Without a port, the scheme's default port. A reference written as a URL
    /// (`mqtts://b:8883`, `wss://b/ws`) is taken when its scheme is this endpoint's, with its
    /// own path if it has one (this endpoint's otherwise); one that would change the transport
    /// is not.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] naming the whole reference when none of its references is
    /// usable, with the reason the first one is not.
    ///
    /// ```
    /// use mqtt_transport::Endpoint;
    /// let here: Endpoint = "wss://a.example/ws".parse()?;
    /// assert_eq!(here.follow_reference("b.example:8443")?.to_string(), "wss://b.example:8443/ws");
    /// assert_eq!(here.follow_reference("ws://c.example c.example/x d.example")?.to_string(), "wss://d.example:443/ws");
    /// assert!(here.follow_reference("").is_err());
    /// # Ok::<(), mqtt_transport::Error>(())
    /// ```
    pub fn follow_reference(&self, reference: &str) -> Result<Self, Error> {
        let mut first_reason = None;
        for one in reference.split_ascii_whitespace() {
            match self.reference(one) {
                Ok(endpoint) => return Ok(endpoint),
                Err(reason) => {
                    first_reason.get_or_insert_with(|| format!("`{one}`: {reason}"));
                }
            }
        }
        Err(Error::InvalidEndpoint {
            input: reference.to_owned(),
            reason: first_reason.unwrap_or_else(|| "the Server Reference is empty".to_owned()),
        })
    }

    /// One reference of a Server Reference, over this endpoint's transport; the error is the
    /// reason.
    fn reference(&self, reference: &str) -> Result<Self, String> {
        if let Some((_, rest)) = reference.split_once("://") {
            let mut endpoint = parse(reference)?;
            if endpoint.scheme != self.scheme {
                return Err(format!(
                    "it would change the transport from {} to {}",
                    self.scheme, endpoint.scheme
                ));
            }
            if !rest.contains(['/', '?', '#']) {
                endpoint.path.clone_from(&self.path);
            }
            return Ok(endpoint);
        }
        if reference.contains(['/', '?', '#']) {
            return Err("a reference is a name and an optional port, without a path".to_owned());
        }
        let mut endpoint = parse(&format!("{}://{reference}", self.scheme))?;
        endpoint.path.clone_from(&self.path);
        Ok(endpoint)
    }

    /// How the bytes travel.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host: a DNS name or an IP address (an IPv6 one without brackets), as given.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The WebSocket request's path (and query, if any); empty for TCP and TLS.
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The host as it appears in a URL or `Host` header: an IPv6 address in brackets.
    fn url_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// `host:port` (an IPv6 host in brackets).
    #[must_use]
    pub fn authority(&self) -> String {
        format!("{}:{}", self.url_host(), self.port)
    }

    /// The WebSocket URL (`ws://host:port/path` or `wss://…`), or `None` for TCP and TLS.
    #[must_use]
    pub fn websocket_url(&self) -> Option<String> {
        self.scheme
            .is_websocket()
            .then(|| format!("{}://{}{}", self.scheme, self.authority(), self.path))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority(), self.path)
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        parse(input).map_err(|reason| Error::InvalidEndpoint {
            input: input.to_owned(),
            reason,
        })
    }
}

/// Parses an endpoint; the error is the reason.
fn parse(input: &str) -> Result<Endpoint, String> {
    if input.is_empty() {
        return Err("empty".to_owned());
    }
    if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{c:?} is not allowed in an endpoint"));
    }
    let (scheme, rest) = match input.split_once("://") {
        Some((name, rest)) => {
            let scheme = Scheme::from_name(name).ok_or_else(|| {
                format!("unknown scheme `{name}` (expected mqtt, tcp, mqtts, ssl, tls, ws or wss)")
            })?;
            (scheme, rest)
        }
        None => (Scheme::Tcp, input),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(
            "a user name or password does not belong in the endpoint (MQTT sends them in CONNECT)"
                .to_owned(),
        );
    }
    let (host, port) = split_authority(authority)?;
    let port = match port {
        None => scheme.default_port(),
        Some("") => return Err("no port after `:`".to_owned()),
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| format!("`{port}` is not a port number (1 to 65535)"))?,
    };
    if port == 0 {
        return Err("port 0 cannot be connected to".to_owned());
    }
    let path = if scheme.is_websocket() {
        if path.is_empty() {
            DEFAULT_PATH.to_owned()
        } else {
            check_path(path)?;
            path.to_owned()
        }
    } else if path.is_empty() || path == "/" {
        String::new()
    } else {
        return Err(format!(
            "`{path}`: only ws:// and wss:// endpoints have a path"
        ));
    };
    Ok(Endpoint {
        scheme,
        host: host.to_owned(),
        port,
        path,
    })
}

/// The host and the port (if any) of `host[:port]` or `[v6]:port`.
fn split_authority(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (v6, after) = bracketed
            .split_once(']')
            .ok_or("`[` without `]`: an IPv6 address is written [::1]")?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| format!("`{v6}` is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("`{after}` after the IPv6 address (expected :port)"))?,
            ),
        };
        return Ok((v6, port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if port.is_some_and(|p| p.contains(':')) {
        return Err("an IPv6 address must be in brackets, as in [::1]:1883".to_owned());
    }
    Ok((check_host(host)?, port))
}

/// `host` if it is a DNS name or an IPv4 address (letters, digits, `-`, `_` and `.`, no
/// empty label).
fn check_host(host: &str) -> Result<&str, String> {
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!("{c:?} is not allowed in a host name"));
    }
    if host.len() > 253 || host.trim_end_matches('.').split('.').any(str::is_empty) {
        return Err(format!("`{host}` is not a host name"));
    }
    Ok(host)
}

/// Checks a WebSocket request target: `/…`, an optional query, no fragment, visible ASCII
/// characters only.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("the path `{path}` must start with `/`"));
    }
    if path.contains('#') {
        return Err("a WebSocket URL has no fragment (`#`)".to_owned());
    }
    if let Some(c) = path.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "{c:?} is not allowed in a path (percent-encode it)"
        ));
    }
    Ok(())
}
