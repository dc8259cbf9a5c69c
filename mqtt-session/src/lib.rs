//! Deterministic, sans-IO MQTT session engines built on [`mqtt_codec`].
//!
//! The broker and client engines are being built (see the project's issues); this crate
//! currently re-exports the codec so that dependants can already name it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use mqtt_codec as codec;
