//! [`connect`]: a client's connection to an [`Endpoint`], over whichever transport it names.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::net::TcpStream;

use crate::endpoint::{Endpoint, Scheme};
use crate::{BoxStream, Error, tls, websocket};

/// The default of [`ConnectOptions::connect_timeout`]: 30 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How [`connect`] connects.
///
/// ```
/// use std::time::Duration;
/// use mqtt_transport::ConnectOptions;
///
/// let options = ConnectOptions::default().with_connect_timeout(Duration::from_secs(5));
/// assert!(options.tls_config.is_none() && options.tcp_nodelay);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// The TLS configuration for `mqtts://` and `wss://` (see [`tls::ClientConfigBuilder`]).
    /// `None`: the operating system's roots, no client certificate (loaded on each
    /// connection: give a configuration to share it).
    pub tls_config: Option<Arc<ClientConfig>>,
    /// Over WebSocket, the largest frame and message accepted from the server. Default:
    /// [`websocket::DEFAULT_MAX_MESSAGE_SIZE`].
    pub max_message_size: usize,
    /// How long the whole connection may take: name resolution, TCP, and the TLS and
    /// WebSocket handshakes. Default: [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// Whether to set `TCP_NODELAY` (MQTT's packets are small and often wait for an answer).
    /// Default: `true`.
    pub tcp_nodelay: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            tls_config: None,
            max_message_size: websocket::DEFAULT_MAX_MESSAGE_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tcp_nodelay: true,
        }
    }
}

impl ConnectOptions {
    /// These options with a TLS configuration.
    #[must_use]
    pub fn with_tls_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.tls_config = Some(config);
        self
    }

    /// These options with the largest WebSocket frame and message accepted.
    #[must_use]
    pub fn with_max_message_size(mut self, max_message_size: usize) -> Self {
        self.max_message_size = max_message_size;
        self
    }

    /// These options with another time limit.
    #[must_use]
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }
}

/// Connects to `endpoint`: TCP, then TLS for `mqtts://` and `wss://` (verifying the server's
/// certificate for the endpoint's host), then the WebSocket upgrade for `ws://` and `wss://`
/// (offering the subprotocol `mqtt`); returns the byte stream MQTT's packets go over. Must
/// run inside a tokio runtime (a WebSocket's bridge is a task of its own).
///
/// # Errors
/// [`Error::Io`] when the name does not resolve or the connection fails, [`Error::Tls`] and
/// [`Error::NoRootCertificates`] from TLS, [`Error::WebSocket`] and
/// [`Error::SubprotocolNotSelected`] from the WebSocket upgrade, and [`Error::Timeout`] when
/// it all takes longer than [`ConnectOptions::connect_timeout`].
pub async fn connect(endpoint: &Endpoint, options: &ConnectOptions) -> Result<BoxStream, Error> {
    let after = options.connect_timeout;
    match tokio::time::timeout(after, connect_in_time(endpoint, options)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            context: format!("connect to {endpoint}"),
            after,
        }),
    }
}

/// [`connect`] without its time limit.
async fn connect_in_time(
    endpoint: &Endpoint,
    options: &ConnectOptions,
) -> Result<BoxStream, Error> {
    let tcp = TcpStream::connect((endpoint.host(), endpoint.port()))
        .await
        .map_err(|e| Error::io(format!("connect to {}", endpoint.authority()), e))?;
    if options.tcp_nodelay {
        tcp.set_nodelay(true)
            .map_err(|e| Error::io("set TCP_NODELAY", e))?;
    }
    let ws = websocket::Options::default().with_max_message_size(options.max_message_size);
    let url = endpoint.to_string();
    Ok(match endpoint.scheme() {
        Scheme::Tcp => Box::new(tcp),
        Scheme::Tls => {
            let config = tls_config(options).await?;
            Box::new(tls::connect(tcp, endpoint.host(), config).await?)
        }
        Scheme::Ws => websocket::connect(tcp, &url, &ws).await?,
        Scheme::Wss => {
            let config = tls_config(options).await?;
            let stream = tls::connect(tcp, endpoint.host(), config).await?;
            websocket::connect(stream, &url, &ws).await?
        }
    })
}

/// The TLS configuration of `options`, or one trusting the system's roots (read on a thread
/// that may block).
async fn tls_config(options: &ConnectOptions) -> Result<Arc<ClientConfig>, Error> {
    if let Some(config) = &options.tls_config {
        return Ok(config.clone());
    }
    tokio::task::spawn_blocking(|| tls::ClientConfigBuilder::new().build())
        .await
        .map_err(|e| Error::io("load the system's root certificates", e.into()))?
}
