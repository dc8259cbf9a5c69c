//! Deterministic, sans-IO MQTT session engines built on [`mqtt_codec`].
//!
//! - [`broker::Broker`]: every session and connection of an MQTT 3.1.1 / 5.0 server — Clean
//!   Start and Session Expiry, wills with Will Delay, subscriptions (shared ones too), retained
//!   messages, offline queues, QoS 1/2 flows, flow control, topic aliases, keep alive — with
//!   durable state handed out as [`broker::StorageRecord`]s.
//! - [`client::Client`]: one MQTT 3.1.1 / 5.0 client session over successive connections —
//!   CONNECT (Clean Start, Session Expiry, will, credentials, enhanced authentication), Session
//!   Present, QoS 1/2 flows both ways with re-delivery on resume, flow control, packet size
//!   limits, topic aliases, keep alive, and requests queued while disconnected.
//!
//! The engines own no sockets and read no clock: bytes and time go in; bytes to send,
//! connections to close, records to persist, events and the next deadline come out. The same
//! inputs at the same times give the same outputs. Errors in input mean bad input, never a
//! panic: a broker keeps serving its other connections whatever one of them sends.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub use mqtt_codec as codec;

#[cfg(feature = "broker")]
pub mod broker;
#[cfg(feature = "client")]
pub mod client;
mod hash;
mod prelude;
mod time;
pub mod topic_match;
pub mod topic_tree;

pub use hash::set_hash_seed;
pub use time::Timestamp;
