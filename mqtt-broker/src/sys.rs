//! `$SYS/broker/...`: the broker's statistics as retained messages, in the style of
//! mosquitto, published every `sys_interval` seconds (0: never).
//!
//! | topic | value |
//! |---|---|
//! | `$SYS/broker/version` | `mqtt-broker X.Y.Z` |
//! | `$SYS/broker/uptime` | `N seconds` |
//! | `$SYS/broker/clients/connected` | connected clients |
//! | `$SYS/broker/clients/total` | sessions, connected or not |
//! | `$SYS/broker/messages/received`, `.../sent` | PUBLISH packets from and to clients |
//! | `$SYS/broker/bytes/received`, `.../sent` | bytes read from and written to clients |
//! | `$SYS/broker/subscriptions/count` | subscriptions |
//! | `$SYS/broker/retained messages/count` | retained messages |
//!
//! A value is published again only when it changed (the uptime every time). They are retained
//! in memory only (`Broker::handle_publish_volatile`): nothing is written to storage for them,
//! and a restarted broker publishes them afresh. Clients read these topics only through a filter that
//! names `$SYS` (a filter starting with a wildcard never matches a `$` topic, MQTT-4.7.2-1), and
//! the ACL decides as for any topic.

use std::collections::BTreeMap;

use mqtt_session::Timestamp;
use mqtt_session::broker::{Broker, Message, Policy};
use mqtt_session::codec::{QoS, TopicName};

/// What the host counts itself (the engine counts messages).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ByteCounters {
    /// Bytes read from clients.
    pub(crate) received: u64,
    /// Bytes pulled for clients.
    pub(crate) sent: u64,
}

/// The `$SYS` publisher's state.
#[derive(Debug)]
pub(crate) struct SysTopics {
    interval_ms: u64,
    started: Timestamp,
    next: Timestamp,
    last: BTreeMap<&'static str, String>,
}

impl SysTopics {
    /// Publishes every `interval_secs` seconds from `now` (the first time at once); `None` for
    /// 0.
    pub(crate) fn new(interval_secs: u64, now: Timestamp) -> Option<Self> {
        (interval_secs > 0).then(|| Self {
            interval_ms: interval_secs.saturating_mul(1000),
            started: now,
            next: now,
            last: BTreeMap::new(),
        })
    }

    /// When to publish next.
    pub(crate) fn deadline(&self) -> Timestamp {
        self.next
    }

    /// Publishes the values that changed when the interval is due.
    pub(crate) fn publish_if_due<P: Policy>(
        &mut self,
        broker: &mut Broker<P>,
        bytes: ByteCounters,
        now: Timestamp,
    ) {
        if now < self.next {
            return;
        }
        self.next = Timestamp::from_millis(now.as_millis().saturating_add(self.interval_ms));
        let stats = broker.stats();
        let uptime = now.as_millis().saturating_sub(self.started.as_millis()) / 1000;
        let values: [(&'static str, String); 10] = [
            (
                "$SYS/broker/version",
                format!("mqtt-broker {}", env!("CARGO_PKG_VERSION")),
            ),
            ("$SYS/broker/uptime", format!("{uptime} seconds")),
            (
                "$SYS/broker/clients/connected",
                broker.connection_count().to_string(),
            ),
            (
                "$SYS/broker/clients/total",
                broker.session_count().to_string(),
            ),
            (
                "$SYS/broker/messages/received",
                stats.publish_received.to_string(),
            ),
            ("$SYS/broker/messages/sent", stats.publish_sent.to_string()),
            ("$SYS/broker/bytes/received", bytes.received.to_string()),
            ("$SYS/broker/bytes/sent", bytes.sent.to_string()),
            (
                "$SYS/broker/subscriptions/count",
                broker.subscription_count().to_string(),
            ),
            (
                "$SYS/broker/retained messages/count",
                broker.retained_count().to_string(),
            ),
        ];
        for (topic, value) in values {
            if self.last.get(topic) == Some(&value) {
                continue;
            }
            let Ok(name) = TopicName::try_from(topic) else {
                continue;
            };
            let message = Message::new(name, value.clone().into_bytes(), QoS::AtMostOnce, true);
            broker.handle_publish_volatile(message, now);
            self.last.insert(topic, value);
        }
    }
}
