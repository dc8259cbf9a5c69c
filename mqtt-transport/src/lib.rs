//! `mqtt-transport`: the byte streams MQTT runs over, on tokio — TCP, TLS (rustls on
//! aws-lc-rs), WebSocket and WebSocket over TLS (MQTT 5.0 section 6, subprotocol `mqtt`) —
//! for servers (mqtt-broker) and clients alike.
//!
//! Every transport ends as a [`BoxStream`]: bytes in, bytes out, whatever carries them, so
//! that the MQTT side (a codec, a sans-IO engine of `mqtt-session`) is the same for all.
//!
//! - A client names an [`Endpoint`] (`mqtt://host`, `mqtts://host:8883`,
//!   `wss://host/mqtt`, …) and calls [`connect`] with its [`ConnectOptions`] (a TLS
//!   configuration from [`tls::ClientConfigBuilder`], a time limit).
//! - The pieces are public for other setups: [`tls::connect`] on any connected stream,
//!   [`websocket::connect`] on any stream (TCP or TLS), and for servers
//!   [`websocket::accept`] after their own listener and TLS acceptor.
//!
//! ```no_run
//! use mqtt_transport::{ConnectOptions, Endpoint, tls};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // MQTT over WebSocket over TLS, trusting a private CA.
//! let endpoint: Endpoint = "wss://broker.example:8884/mqtt".parse()?;
//! let config = tls::ClientConfigBuilder::new().with_ca_file("ca.pem").build()?;
//! let options = ConnectOptions::default().with_tls_config(config);
//! let mut stream = mqtt_transport::connect(&endpoint, &options).await?;
//!
//! // A CONNECT (MQTT 3.1.1, client id `c`), and the CONNACK's 4 bytes.
//! stream
//!     .write_all(&[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'c'])
//!     .await?;
//! let mut connack = [0; 4];
//! stream.read_exact(&mut connack).await?;
//! assert_eq!(connack, [0x20, 2, 0, 0]);
//! # Ok(()) }
//! ```
//!
//! Errors are [`Error`]s saying what was being done (`connect to host:port`, `TLS handshake
//! with host`, the file of a certificate) and why. Nothing here panics on a peer's input.

use tokio::io::{AsyncRead, AsyncWrite};

mod client;
mod endpoint;
mod error;
pub mod tls;
pub mod websocket;

pub use client::{ConnectOptions, DEFAULT_CONNECT_TIMEOUT, connect};
pub use endpoint::{Endpoint, Scheme};
pub use error::{BoxError, Error};
/// The rustls this crate uses (for [`rustls::ClientConfig`] and the like).
pub use rustls;

/// A connection's byte stream, whatever the transport: anything that reads and writes bytes
/// asynchronously and can move between tasks.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncStream for T {}

/// A boxed [`AsyncStream`]: what [`connect`] and [`websocket::accept`] return.
pub type BoxStream = Box<dyn AsyncStream>;
