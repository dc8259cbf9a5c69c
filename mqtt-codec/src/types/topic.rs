//! Topic Names and Topic Filters (section 4.7), checked when they are made.

use crate::prelude::*;
use core::fmt;
use core::ops::Deref;

use crate::error::Violation;
use crate::types::Utf8String;

/// A Topic Name: a UTF-8 string without the wildcard characters `+` and `#`.
///
/// It may be empty only as the topic of an MQTT 5.0 PUBLISH that carries a Topic Alias; the
/// packet decoder and encoder check that. [`TopicName::new`] accepts the empty string so that such
/// a PUBLISH can be represented.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TopicName(Utf8String);

impl TopicName {
    /// Checks that `s` has no wildcard character.
    ///
    /// # Errors
    /// [`Violation::TopicNameWildcard`]: v5 and v3.1.1 [MQTT-3.3.2-2]; v5 [MQTT-4.7.0-1].
    pub fn new(s: Utf8String) -> Result<Self, Violation> {
        // [MQTT-3.3.2-2] The Topic Name in the PUBLISH packet MUST NOT contain wildcard characters.
        if super::scan::has_wildcard(s.as_bytes()) {
            return Err(Violation::TopicNameWildcard);
        }
        Ok(Self(s))
    }

    /// A Topic Name from the bytes of a packet, checked in one pass over them: U+0000
    /// ([MQTT-1.5.4-2]), well-formed UTF-8 ([MQTT-1.5.4-1]), then wildcards ([MQTT-3.3.2-2]),
    /// the violations [`Utf8String::from_bytes`] and [`TopicName::new`] report, in their order.
    pub(crate) fn from_wire(bytes: bytes::Bytes) -> Result<Self, Violation> {
        if bytes.len() > Utf8String::MAX_LEN {
            return Err(Violation::FieldTooLong);
        }
        let (null, wildcard) = super::scan::null_and_wildcard(&bytes);
        if null {
            return Err(Violation::NullCharacter);
        }
        let s = Utf8String::from_bytes_without_null(bytes)?;
        if wildcard {
            return Err(Violation::TopicNameWildcard);
        }
        Ok(Self(s))
    }

    /// The empty topic name, for a PUBLISH that uses a Topic Alias (MQTT 5.0).
    #[must_use]
    pub fn empty() -> Self {
        Self(Utf8String::default())
    }

    /// The string.
    #[must_use]
    pub fn as_utf8(&self) -> &Utf8String {
        &self.0
    }

    /// The string, consuming the name.
    #[must_use]
    pub fn into_inner(self) -> Utf8String {
        self.0
    }
}

/// A Topic Filter: levels separated by `/`, where `+` fills a whole level and `#` stands alone in
/// the last one; at least one character long. A `$share/{ShareName}/{filter}` filter must have a
/// non-empty ShareName without `/`, `+` or `#`, followed by a valid filter.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(Utf8String);

pub(crate) const SHARE_PREFIX: &str = "$share/";

impl TopicFilter {
    /// Checks the syntax of section 4.7.1: `#` alone in the last level, `+` alone in its level,
    /// at least one character.
    ///
    /// This is the same in every protocol version. The shared-subscription syntax of MQTT 5.0
    /// (section 4.8.2) is checked by [`TopicFilter::check_shared`], which the codec applies to
    /// MQTT 5.0 packets only: in 3.1.1, `$share/g` is an ordinary filter.
    ///
    /// # Errors
    /// [`Violation::TopicFilterEmpty`] ([MQTT-4.7.3-1]),
    /// [`Violation::MultiLevelWildcardMisplaced`] (v5 [MQTT-4.7.1-1], v3.1.1 [MQTT-4.7.1-2]),
    /// [`Violation::SingleLevelWildcardMisplaced`] (v5 [MQTT-4.7.1-2], v3.1.1 [MQTT-4.7.1-3]).
    pub fn new(s: Utf8String) -> Result<Self, Violation> {
        check_filter(s.as_str())?;
        Ok(Self(s))
    }

    /// For a filter starting with `$share/`, checks the shared-subscription syntax of MQTT 5.0.
    ///
    /// # Errors
    /// [`Violation::ShareNameEmpty`] (v5 [MQTT-4.8.2-1]),
    /// [`Violation::SharedSubscriptionInvalid`] (v5 [MQTT-4.8.2-2]), or a filter syntax error of
    /// the part after the ShareName.
    pub fn check_shared(&self) -> Result<(), Violation> {
        check_shared_syntax(self.0.as_str())
    }

    /// Makes a filter of an MQTT 5.0 packet: the shared-subscription syntax is checked first
    /// (so that `$share/g+/a` is named as an ill-formed ShareName), then the filter syntax.
    ///
    /// # Errors
    /// As [`TopicFilter::check_shared`] and [`TopicFilter::new`].
    pub fn new_v5(s: Utf8String) -> Result<Self, Violation> {
        check_shared_syntax(s.as_str())?;
        Self::new(s)
    }

    /// The string.
    #[must_use]
    pub fn as_utf8(&self) -> &Utf8String {
        &self.0
    }

    /// The string, consuming the filter.
    #[must_use]
    pub fn into_inner(self) -> Utf8String {
        self.0
    }

    /// For a well-formed shared subscription `$share/{ShareName}/{filter}`: the ShareName and
    /// the filter. `None` for any other filter (including a 3.1.1 filter such as `$share/g`).
    #[must_use]
    pub fn shared(&self) -> Option<(&str, &str)> {
        if self.check_shared().is_err() {
            return None;
        }
        self.0.as_str().strip_prefix(SHARE_PREFIX)?.split_once('/')
    }

    /// Whether the filter (without a `$share/` prefix) contains `+` or `#`.
    #[must_use]
    pub fn has_wildcards(&self) -> bool {
        let f = self.shared().map_or(self.0.as_str(), |(_, f)| f);
        f.contains(['+', '#'])
    }
}

/// The shared-subscription syntax of MQTT 5.0 (section 4.8.2) for a filter starting with
/// `$share/`; other filters pass.
pub(crate) fn check_shared_syntax(text: &str) -> Result<(), Violation> {
    let Some(rest) = text.strip_prefix(SHARE_PREFIX) else {
        return Ok(());
    };
    // v5 [MQTT-4.8.2-1] ... MUST contain a ShareName that is at least one character long.
    // v5 [MQTT-4.8.2-2] The ShareName MUST NOT contain "/", "+" or "#", but MUST be followed
    // by a "/" character. This "/" character MUST be followed by a Topic Filter.
    let (share, filter) = rest.split_once('/').ok_or(if rest.is_empty() {
        Violation::ShareNameEmpty
    } else {
        Violation::SharedSubscriptionInvalid
    })?;
    if share.is_empty() {
        return Err(Violation::ShareNameEmpty);
    }
    if share.contains(['+', '#']) || filter.is_empty() {
        return Err(Violation::SharedSubscriptionInvalid);
    }
    check_filter(filter)
}

pub(crate) fn check_filter(filter: &str) -> Result<(), Violation> {
    // [MQTT-4.7.3-1] All Topic Names and Topic Filters MUST be at least one character long.
    if filter.is_empty() {
        return Err(Violation::TopicFilterEmpty);
    }
    let filter = filter.as_bytes();
    // Without a wildcard there is nothing else to check (the common case, in one scan).
    if !super::scan::has_wildcard(filter) {
        return Ok(());
    }
    // One pass, level by level, in order: what a level holds is known at its end.
    let level = |hash: bool, plus: bool, len: usize, last: bool| {
        if hash {
            // v5 [MQTT-4.7.1-1], v3.1.1 [MQTT-4.7.1-2]: The multi-level wildcard character MUST
            // be specified either on its own or following a topic level separator. In either
            // case it MUST be the last character specified in the Topic Filter.
            if len != 1 || !last {
                return Err(Violation::MultiLevelWildcardMisplaced);
            }
        } else if plus && len != 1 {
            // v5 [MQTT-4.7.1-2], v3.1.1 [MQTT-4.7.1-3]: Where it is used, [the single-level
            // wildcard] MUST occupy an entire level of the filter.
            return Err(Violation::SingleLevelWildcardMisplaced);
        }
        Ok(())
    };
    let (mut hash, mut plus, mut len) = (false, false, 0_usize);
    for &b in filter {
        if b == b'/' {
            level(hash, plus, len, false)?;
            (hash, plus, len) = (false, false, 0);
        } else {
            hash |= b == b'#';
            plus |= b == b'+';
            len += 1;
        }
    }
    level(hash, plus, len, true)
}

macro_rules! string_newtype_impls {
    ($ty:ident) => {
        impl Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                self.0.as_str()
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.0.as_str(), f)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0.as_str())
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = Violation;
            fn try_from(s: &str) -> Result<Self, Violation> {
                Self::new(Utf8String::try_from(s)?)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = Violation;
            fn try_from(s: String) -> Result<Self, Violation> {
                Self::new(Utf8String::try_from(s)?)
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0.as_str() == other
            }
        }

        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0.as_str() == *other
            }
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.0.as_str())
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                Self::try_from(s).map_err(|v| serde::de::Error::custom(v.rule().text))
            }
        }
    };
}

string_newtype_impls!(TopicName);
string_newtype_impls!(TopicFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rules of section 4.7.1 as the specification words them, level by level, for
    /// comparison with the one-pass `check_filter`.
    fn reference(filter: &str) -> Result<(), Violation> {
        if filter.is_empty() {
            return Err(Violation::TopicFilterEmpty);
        }
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level.contains('#') {
                if level != "#" || levels.peek().is_some() {
                    return Err(Violation::MultiLevelWildcardMisplaced);
                }
            } else if level.contains('+') && level != "+" {
                return Err(Violation::SingleLevelWildcardMisplaced);
            }
        }
        Ok(())
    }

    proptest! {
        // v5 [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1]: the same verdict, and the same
        // rule named first, as the level-by-level reading.
        #[test]
        fn check_filter_agrees_with_the_level_by_level_rules(
            text in prop::collection::vec(prop::sample::select(vec!["/", "+", "#", "a", "bc"]), 0..8)
        ) {
            let text = text.concat();
            prop_assert_eq!(check_filter(&text), reference(&text), "{:?}", text);
        }
    }

    fn filter(s: &str) -> Result<TopicFilter, Violation> {
        TopicFilter::try_from(s)
    }

    // v5 v3.1.1 [MQTT-3.3.2-2]
    // v5 [MQTT-4.7.0-1]
    #[test]
    fn topic_names_reject_wildcards() {
        assert_eq!(
            TopicName::try_from("a/+/b"),
            Err(Violation::TopicNameWildcard)
        );
        assert_eq!(
            TopicName::try_from("a/#"),
            Err(Violation::TopicNameWildcard)
        );
        assert_eq!(TopicName::try_from("a/b c/$d").unwrap(), "a/b c/$d");
    }

    // v5 [MQTT-4.7.1-1]
    // v3.1.1 [MQTT-4.7.1-2]
    #[test]
    fn multi_level_wildcard_must_be_last_and_alone() {
        for ok in ["#", "a/#", "/#", "+/#", "a/b/#"] {
            assert!(filter(ok).is_ok(), "{ok}");
        }
        for bad in ["a#", "a/#/b", "#/", "a/b#", "##"] {
            assert_eq!(
                filter(bad),
                Err(Violation::MultiLevelWildcardMisplaced),
                "{bad}"
            );
        }
    }

    // v5 [MQTT-4.7.1-2]
    // v3.1.1 [MQTT-4.7.1-3]
    #[test]
    fn single_level_wildcard_fills_a_level() {
        for ok in ["+", "+/+", "/+", "a/+/b", "+/"] {
            assert!(filter(ok).is_ok(), "{ok}");
        }
        for bad in ["a+", "a/+b", "++", "a/b+/c"] {
            assert_eq!(
                filter(bad),
                Err(Violation::SingleLevelWildcardMisplaced),
                "{bad}"
            );
        }
    }

    // v5 v3.1.1 [MQTT-4.7.3-1]
    #[test]
    fn filters_are_not_empty() {
        assert_eq!(filter(""), Err(Violation::TopicFilterEmpty));
        assert!(filter("/").is_ok());
    }

    // v5 [MQTT-4.8.2-1] [MQTT-4.8.2-2]
    #[test]
    fn shared_subscription_syntax() {
        let f = filter("$share/group/a/+").unwrap();
        assert_eq!(f.check_shared(), Ok(()));
        assert_eq!(f.shared(), Some(("group", "a/+")));
        assert!(f.has_wildcards());
        for bad in ["$share/", "$share//a"] {
            let f = filter(bad).unwrap();
            assert_eq!(f.check_shared(), Err(Violation::ShareNameEmpty), "{bad}");
            assert_eq!(f.shared(), None);
        }
        for bad in ["$share/g", "$share/g/", "$share/g+/a", "$share/#/a"] {
            let Ok(f) = filter(bad) else { continue };
            assert_eq!(
                f.check_shared(),
                Err(Violation::SharedSubscriptionInvalid),
                "{bad}"
            );
        }
        let f = filter("$share/g/a/+x");
        assert_eq!(f, Err(Violation::SingleLevelWildcardMisplaced));
        // `$shared/...` is an ordinary filter.
        assert!(filter("$shared/x").unwrap().shared().is_none());
    }

    #[test]
    fn share_syntax_is_not_applied_by_new() {
        // An ordinary 3.1.1 filter, though not a valid 5.0 shared subscription.
        assert!(filter("$share/g").is_ok());
        assert!(filter("$share//a").is_ok());
    }
}
