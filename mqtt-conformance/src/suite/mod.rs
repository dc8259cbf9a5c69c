//! The tests, one module per area. Each test is an `async fn(Ctx) -> TestResult` registered in
//! [`all`] with the statements it checks.

use std::future::Future;
use std::pin::Pin;

use crate::ctx::Ctx;
use crate::options::{Capabilities, Version};
use crate::outcome::TestResult;

/// A test body.
pub type Body = fn(Ctx) -> Pin<Box<dyn Future<Output = TestResult> + Send>>;

/// A feature a test needs, or the lack of one that a statement is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Need {
    /// Maximum QoS at least 1.
    Qos1,
    /// Maximum QoS 2.
    Qos2,
    /// Retained messages.
    Retain,
    /// Wildcard subscriptions.
    Wildcards,
    /// Subscription Identifiers.
    SubscriptionIds,
    /// Shared subscriptions.
    Shared,
    /// A Topic Alias Maximum above 0.
    TopicAliases,
    /// A Maximum QoS below 2 (rules for brokers that limit QoS).
    QosLimited,
    /// Retain Available 0.
    NoRetain,
    /// Wildcard Subscription Available 0.
    NoWildcards,
    /// Subscription Identifier Available 0.
    NoSubscriptionIds,
    /// Shared Subscription Available 0.
    NoShared,
    /// A Maximum Packet Size of at most 64 kB, so that a bigger packet is cheap to send.
    SmallMaximumPacketSize,
    /// A WebSocket endpoint given in the options.
    WebSocket,
    /// A TLS endpoint given in the options.
    Tls,
    /// A topic the broker does not let the tester publish to, given in the options.
    DeniedTopic,
}

impl Need {
    /// `None` when `caps` meet it; otherwise whether the test is skipped (`true`: a feature
    /// is missing) or not applicable (`false`), and why.
    #[must_use]
    pub fn unmet(self, caps: &Capabilities) -> Option<(bool, String)> {
        let skip = |why: &str| Some((true, why.to_owned()));
        let na = |why: &str| Some((false, why.to_owned()));
        match self {
            Need::Qos1 if caps.maximum_qos < 1 => skip("the broker's Maximum QoS is 0"),
            Need::Qos2 if caps.maximum_qos < 2 => {
                skip(&format!("the broker's Maximum QoS is {}", caps.maximum_qos))
            }
            Need::Retain if !caps.retain => skip("the broker has no retained messages"),
            Need::Wildcards if !caps.wildcard_subscriptions => {
                skip("the broker has no wildcard subscriptions")
            }
            Need::SubscriptionIds if !caps.subscription_identifiers => {
                skip("the broker has no Subscription Identifiers")
            }
            Need::Shared if !caps.shared_subscriptions => {
                skip("the broker has no shared subscriptions")
            }
            Need::TopicAliases if caps.topic_alias_maximum == 0 => {
                skip("the broker's Topic Alias Maximum is 0")
            }
            Need::QosLimited if caps.maximum_qos == 2 => {
                na("the broker supports QoS 2: the rule is for brokers with a lower Maximum QoS")
            }
            Need::NoRetain if caps.retain => {
                na("the broker has retained messages: the rule is for brokers without them")
            }
            Need::NoWildcards if caps.wildcard_subscriptions => {
                na("the broker has wildcard subscriptions: the rule is for brokers without them")
            }
            Need::NoSubscriptionIds if caps.subscription_identifiers => {
                na("the broker has Subscription Identifiers: the rule is for brokers without them")
            }
            Need::NoShared if caps.shared_subscriptions => {
                na("the broker has shared subscriptions: the rule is for brokers without them")
            }
            Need::SmallMaximumPacketSize if caps.maximum_packet_size.is_none_or(|m| m > 65_536) => {
                na("the broker's Maximum Packet Size is above 64 kB (or none)")
            }
            Need::WebSocket if caps.websocket.is_none() => {
                skip("no WebSocket endpoint given (--websocket ws://HOST:PORT/PATH)")
            }
            Need::Tls if caps.tls.is_none() => skip("no TLS endpoint given (--tls HOST:PORT)"),
            Need::DeniedTopic if caps.denied_topic.is_none() => {
                skip("no topic the broker denies the tester given (--denied-topic TOPIC)")
            }
            _ => None,
        }
    }
}

/// One test: what it checks and how.
#[derive(Clone, Copy)]
pub struct TestCase {
    /// A stable id, `v5.area.name` or `v311.area.name`.
    pub id: &'static str,
    /// The version it speaks.
    pub version: Version,
    /// The statements whose required reaction it asserts (ids of its version's list).
    pub statements: &'static [&'static str],
    /// What it checks, in one line.
    pub summary: &'static str,
    /// What the broker must offer (or lack) for it to run.
    pub needs: &'static [Need],
    /// Whether it touches state other tests can see (`#`, retained messages in shared
    /// topics, `$SYS`): such tests run alone.
    pub serial: bool,
    /// The body.
    pub body: Body,
}

impl std::fmt::Debug for TestCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCase")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("statements", &self.statements)
            .finish_non_exhaustive()
    }
}

/// Declares a test: `case!(v5, "area.name", [statements], "summary", needs [..], serial, body_fn)`.
macro_rules! case {
    ($v:ident, $id:literal, [$($s:literal),* $(,)?], $summary:literal, [$($need:ident),*], $serial:expr, $body:path) => {
        $crate::suite::TestCase {
            id: concat!(stringify!($v), ".", $id),
            version: case!(@v $v),
            statements: &[$($s),*],
            summary: $summary,
            needs: &[$($crate::suite::Need::$need),*],
            serial: $serial,
            body: |cx| Box::pin($body(cx)),
        }
    };
    (@v v5) => { $crate::options::Version::V5 };
    (@v v311) => { $crate::options::Version::V3_1_1 };
}
#[allow(unused_imports)]
pub(crate) use case;

mod access;
mod alias;
mod auth;
mod connect;
mod flow;
mod keepalive;
mod malformed;
mod props;
mod qos;
mod raw;
mod retain;
mod session;
mod shared;
mod subscribe;
mod topic;
mod transport;
mod will;

/// Every test, in a stable order.
#[must_use]
pub fn all() -> Vec<TestCase> {
    let mut v = Vec::new();
    v.extend(access::tests());
    v.extend(connect::tests());
    v.extend(transport::tests());
    v.extend(auth::tests());
    v.extend(keepalive::tests());
    v.extend(session::tests());
    v.extend(will::tests());
    v.extend(qos::tests());
    v.extend(flow::tests());
    v.extend(alias::tests());
    v.extend(subscribe::tests());
    v.extend(retain::tests());
    v.extend(topic::tests());
    v.extend(shared::tests());
    v.extend(malformed::tests());
    v.extend(props::tests());
    v
}
