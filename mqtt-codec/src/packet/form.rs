//! One parser per packet type, two results: the packet decoders are written once, generic over
//! a [`Form`] that turns the checked pieces of the input into either owned values (shared
//! `Bytes` slices of the input: [`Owned`]) or borrowed ones (`&str` and `&[u8]` of the input:
//! [`Borrowed`]). Every check is made by the shared parser, in the same order, so the owned
//! [`crate::Packet`] and the borrowed [`crate::PacketRef`] refuse exactly the same inputs with
//! exactly the same [`Violation`]s.

use crate::prelude::*;
use bytes::Bytes;
use nom::bytes::complete::take;

use super::publish_ref::PropertiesRef;
use crate::error::Violation;
use crate::properties::{Properties, PropertyContext, check_utf8, validate_raw};
use crate::types::scan::has_wildcard;
use crate::types::topic::{check_filter, check_shared_syntax};
use crate::types::{TopicFilter, TopicName, Utf8String};
use crate::wire::{PResult, binary, fail, vbi};

/// What the shared parsers make of the checked pieces of a packet.
pub(crate) trait Form<'a>: Copy {
    /// A property list.
    type Props;
    /// A UTF-8 Encoded String.
    type Str;
    /// Binary Data.
    type Bin;
    /// A Topic Name.
    type Topic;
    /// A Topic Filter.
    type Filter;

    /// No properties (3.1.1, or left out), for `ctx`.
    fn no_props(self, ctx: PropertyContext) -> Self::Props;

    /// A Property Length and the properties it covers, checked as allowed in `ctx`.
    fn props(self, i: &'a [u8], ctx: PropertyContext) -> PResult<'a, Self::Props>;

    /// An MQTT 5.0 packet's Property Length and properties (`v5`), or none before 5.0.
    #[inline]
    fn props_if(self, v5: bool, i: &'a [u8], ctx: PropertyContext) -> PResult<'a, Self::Props> {
        if v5 {
            self.props(i, ctx)
        } else {
            Ok((i, self.no_props(ctx)))
        }
    }

    /// A UTF-8 Encoded String: [MQTT-1.5.4-1] well-formed, [MQTT-1.5.4-2] without U+0000.
    fn utf8(self, i: &'a [u8]) -> PResult<'a, Self::Str>;

    /// Binary Data.
    fn binary(self, i: &'a [u8]) -> PResult<'a, Self::Bin>;

    /// A Topic Name made of a checked string: no wildcards ([MQTT-3.3.2-2]).
    fn topic(s: Self::Str) -> Result<Self::Topic, Violation>;

    /// A Topic Filter made of a checked string: in MQTT 5.0 the shared-subscription syntax
    /// first, then the filter syntax (section 4.7.1).
    fn filter(s: Self::Str, v5: bool) -> Result<Self::Filter, Violation>;

    /// The text of a Topic Name.
    fn topic_str(t: &Self::Topic) -> &str;

    /// The text of a Topic Filter.
    fn filter_str(f: &Self::Filter) -> &str;
}

/// Owned values: `Bytes` slices of the packet's body (reference counted, not copied).
#[derive(Clone, Copy)]
pub(crate) struct Owned<'s>(pub(crate) &'s Bytes);

/// Borrowed values: slices of the input.
#[derive(Clone, Copy)]
pub(crate) struct Borrowed;

impl<'a> Form<'a> for Owned<'_> {
    type Props = Properties;
    type Str = Utf8String;
    type Bin = Bytes;
    type Topic = TopicName;
    type Filter = TopicFilter;

    #[inline]
    fn no_props(self, _ctx: PropertyContext) -> Properties {
        Properties::default()
    }

    #[inline]
    fn props(self, i: &'a [u8], ctx: PropertyContext) -> PResult<'a, Properties> {
        Properties::parse(self.0, i, ctx)
    }

    #[inline]
    fn utf8(self, i: &'a [u8]) -> PResult<'a, Utf8String> {
        crate::wire::utf8(self.0, i)
    }

    #[inline]
    fn binary(self, i: &'a [u8]) -> PResult<'a, Bytes> {
        crate::wire::binary_bytes(self.0, i)
    }

    #[inline]
    fn topic(s: Utf8String) -> Result<TopicName, Violation> {
        TopicName::new(s)
    }

    #[inline]
    fn filter(s: Utf8String, v5: bool) -> Result<TopicFilter, Violation> {
        if v5 {
            TopicFilter::new_v5(s)
        } else {
            TopicFilter::new(s)
        }
    }

    fn topic_str(t: &TopicName) -> &str {
        t
    }

    fn filter_str(f: &TopicFilter) -> &str {
        f
    }
}

impl<'a> Form<'a> for Borrowed {
    type Props = PropertiesRef<'a>;
    type Str = &'a str;
    type Bin = &'a [u8];
    type Topic = &'a str;
    type Filter = &'a str;

    #[inline]
    fn no_props(self, _ctx: PropertyContext) -> PropertiesRef<'a> {
        PropertiesRef::EMPTY
    }

    fn props(self, i: &'a [u8], ctx: PropertyContext) -> PResult<'a, PropertiesRef<'a>> {
        let (i, len) = vbi(i)?;
        let (i, list) = take(len)(i)?;
        match validate_raw(list, ctx) {
            Ok(()) => Ok((i, PropertiesRef::checked(list))),
            Err(v) => fail(v),
        }
    }

    #[inline]
    fn utf8(self, i: &'a [u8]) -> PResult<'a, &'a str> {
        let (i, b) = binary(i)?;
        match check_utf8(b) {
            Ok(s) => Ok((i, s)),
            Err(v) => fail(v),
        }
    }

    #[inline]
    fn binary(self, i: &'a [u8]) -> PResult<'a, &'a [u8]> {
        binary(i)
    }

    fn topic(s: &'a str) -> Result<&'a str, Violation> {
        if has_wildcard(s.as_bytes()) {
            return Err(Violation::TopicNameWildcard);
        }
        Ok(s)
    }

    fn filter(s: &'a str, v5: bool) -> Result<&'a str, Violation> {
        if v5 {
            check_shared_syntax(s)?;
        }
        check_filter(s)?;
        Ok(s)
    }

    fn topic_str<'t>(t: &'t &'a str) -> &'t str {
        t
    }

    fn filter_str<'t>(f: &'t &'a str) -> &'t str {
        f
    }
}

/// Where a SUBSCRIBE's or an UNSUBSCRIBE's parser puts the entries it has checked.
pub(crate) trait Entries<T> {
    /// Before the first entry: the payload (for sizing).
    fn start(&mut self, payload: &[u8]);
    /// One checked entry.
    fn push(&mut self, entry: T);
}

/// The owned packets keep their entries in a vector, sized once.
pub(crate) struct Collect<'v, T> {
    pub(crate) into: &'v mut Vec<T>,
    /// Bytes after each entry's string (1 for a SUBSCRIBE's options, 0 for an UNSUBSCRIBE).
    pub(crate) trailer: usize,
}

impl<T> Entries<T> for Collect<'_, T> {
    fn start(&mut self, payload: &[u8]) {
        self.into
            .reserve_exact(super::subscribe::count_entries(payload, self.trailer));
    }

    fn push(&mut self, entry: T) {
        self.into.push(entry);
    }
}

/// The borrowed packets keep the checked payload and read the entries again when asked.
pub(crate) struct Discard;

impl<T> Entries<T> for Discard {
    fn start(&mut self, _payload: &[u8]) {}

    fn push(&mut self, _entry: T) {}
}
