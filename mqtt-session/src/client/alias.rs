//! Topic aliases (section 3.3.2.3.4), which live as long as one network connection
//! v5 [MQTT-3.3.2-7].
//!
//! **Outbound strategy.** The first *Topic Alias Maximum* (the server's, from CONNACK) distinct
//! topics published on a connection get the aliases 1, 2, ... in that order; each is sent with
//! its topic the first time and with an empty topic afterwards. Later topics are sent in full.
//! Aliases are never reassigned, so a mapping the server holds is never changed under it, and a
//! re-sent PUBLISH (DUP) is just another PUBLISH of its topic.

use alloc::collections::BTreeMap;
use core::num::NonZeroU16;

use mqtt_codec::{ReasonCode, TopicName};

/// The aliases we use towards the server.
#[derive(Debug, Default)]
pub(crate) struct OutboundAliases {
    maximum: u16,
    assigned: BTreeMap<TopicName, NonZeroU16>,
}

/// How a PUBLISH uses a topic alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AliasUse {
    /// Topic in full, no alias.
    None,
    /// Topic and a new alias: the mapping is set when this PUBLISH is sent.
    Establish(NonZeroU16),
    /// Empty topic and the alias.
    Use(NonZeroU16),
}

impl OutboundAliases {
    /// No alias may be used before the CONNACK: v5 [MQTT-3.2.2-18] absent means none.
    pub(crate) fn new(maximum: u16) -> Self {
        Self {
            maximum,
            assigned: BTreeMap::new(),
        }
    }

    /// How to send `topic`. v5 [MQTT-3.2.2-17] [MQTT-3.3.2-9] never above the server's Topic
    /// Alias Maximum; v5 [MQTT-3.3.2-8] never 0.
    pub(crate) fn lookup(&self, topic: &TopicName) -> AliasUse {
        if let Some(&alias) = self.assigned.get(topic) {
            return AliasUse::Use(alias);
        }
        let next = u16::try_from(self.assigned.len() + 1).ok();
        match next
            .filter(|n| *n <= self.maximum)
            .and_then(NonZeroU16::new)
        {
            Some(alias) => AliasUse::Establish(alias),
            None => AliasUse::None,
        }
    }

    /// Records that `alias` now stands for `topic` (its PUBLISH was sent).
    pub(crate) fn established(&mut self, topic: TopicName, alias: NonZeroU16) {
        self.assigned.insert(topic, alias);
    }
}

/// The aliases the server uses towards us.
#[derive(Debug, Default)]
pub(crate) struct InboundAliases {
    maximum: u16,
    topics: BTreeMap<u16, TopicName>,
}

impl InboundAliases {
    pub(crate) fn new(maximum: u16) -> Self {
        Self {
            maximum,
            topics: BTreeMap::new(),
        }
    }

    /// Resolves a received PUBLISH's topic: an alias with a topic sets the mapping, an alias
    /// with an empty topic uses it. v5 [MQTT-3.3.2-10] every alias from 1 to our Topic Alias
    /// Maximum is accepted; above it is 0x94 (Topic Alias invalid), an unknown alias 0x82.
    pub(crate) fn resolve(
        &mut self,
        topic: &mut TopicName,
        alias: Option<NonZeroU16>,
    ) -> Result<(), ReasonCode> {
        let Some(alias) = alias else {
            return Ok(());
        };
        if alias.get() > self.maximum {
            return Err(ReasonCode::TOPIC_ALIAS_INVALID);
        }
        if topic.is_empty() {
            match self.topics.get(&alias.get()) {
                Some(t) => *topic = t.clone(),
                None => return Err(ReasonCode::PROTOCOL_ERROR),
            }
        } else {
            self.topics.insert(alias.get(), topic.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(s: &str) -> TopicName {
        TopicName::try_from(s).unwrap_or_else(|_| TopicName::empty())
    }

    // v5 [MQTT-3.3.2-9] [MQTT-3.3.2-8]
    #[test]
    fn first_topics_get_aliases_up_to_the_maximum() {
        let mut a = OutboundAliases::new(2);
        for (t, want) in [("a", 1), ("b", 2)] {
            let AliasUse::Establish(alias) = a.lookup(&topic(t)) else {
                panic!("no alias for {t}");
            };
            assert_eq!(alias.get(), want);
            a.established(topic(t), alias);
        }
        assert_eq!(a.lookup(&topic("c")), AliasUse::None);
        assert!(matches!(a.lookup(&topic("a")), AliasUse::Use(x) if x.get() == 1));
        assert_eq!(OutboundAliases::new(0).lookup(&topic("a")), AliasUse::None);
    }
}
