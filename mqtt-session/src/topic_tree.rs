//! The subscription tree: Topic Filters → subscribers, matched against Topic Names
//! (section 4.7 of MQTT 5.0 and of MQTT 3.1.1, whose matching rules are the same).
//!
//! [`SubscriptionTree`] is a trie over topic levels. Each node has
//! - a map of its *exact* child levels (any level other than `+` and `#`),
//! - a `+` child and a `#` child,
//! - the subscribers whose Topic Filter ends at that node (a [`BTreeMap`] from key to value),
//!   together with that Topic Filter, stored once.
//!
//! Matching a Topic Name walks the trie level by level, following the exact child for the
//! level and the `+` child, and collecting the `#` child's subscribers on the way, so its cost
//! grows with the depth of the topic and the number of matching filters, never with the total
//! number of subscriptions.
//!
//! # Determinism
//!
//! The trie's shape depends only on the set of subscriptions it holds (nodes that hold nothing
//! are removed at once), and no operation iterates a hash map in hash order: matching only
//! looks children up, and [`SubscriptionTree::iter`] sorts the levels of each node. Hence
//! [`SubscriptionTree::for_each_match`] and [`SubscriptionTree::iter`] visit subscriptions in
//! an order that depends only on which subscriptions the tree holds (not on the order they were
//! added in, nor on the process), as the deterministic engine requires.
//!
//! The exact children are kept in a [`HashMap`] with a randomly seeded hasher (foldhash):
//! filters come from clients, and a fixed hash function would let a client pick levels that
//! collide.
//!
//! # Input
//!
//! Topic Filters are expected to be valid (as `mqtt_codec::TopicFilter` checks them), and
//! `$share/{ShareName}/` already stripped. Any other string is still handled without panic: it
//! is stored, found and removed like a valid filter, and a `#` level that is not the last one
//! matches nothing below it. Every operation is iterative (no recursion), so even a filter of
//! 65,535 `/` characters (65,536 levels) cannot overflow the stack.
//!
//! # Example
//!
//! ```
//! use mqtt_session::topic_tree::SubscriptionTree;
//!
//! let mut tree = SubscriptionTree::new();
//! tree.insert("sport/tennis/+", "client-a", 1);
//! tree.insert("sport/#", "client-b", 0);
//! tree.insert("#", "client-c", 2);
//!
//! let mut matched = Vec::new();
//! tree.for_each_match("sport/tennis/player1", |filter, client, qos| {
//!     matched.push((filter, *client, *qos));
//! });
//! matched.sort();
//! assert_eq!(
//!     matched,
//!     [("#", "client-c", 2), ("sport/#", "client-b", 0), ("sport/tennis/+", "client-a", 1)]
//! );
//!
//! // A filter starting with a wildcard does not match a topic starting with `$`.
//! let mut matched = Vec::new();
//! tree.for_each_match("$SYS/broker/load", |filter, _, _| matched.push(filter));
//! assert!(matched.is_empty());
//!
//! assert_eq!(tree.remove("sport/#", &"client-b"), Some(0));
//! assert_eq!(tree.len(), 2);
//! ```

use crate::hash::HashMap;
use crate::prelude::*;
use alloc::collections::{BTreeMap, btree_map};

use core::fmt;
use core::iter::FusedIterator;

/// The topic level separator (section 4.7.1.1).
const SEPARATOR: char = '/';
/// The single-level wildcard level (section 4.7.1.3).
const SINGLE_LEVEL: &str = "+";
/// The multi-level wildcard level (section 4.7.1.2).
const MULTI_LEVEL: &str = "#";

/// Topic Filters → subscribers, matched against Topic Names (MQTT section 4.7).
///
/// A subscription is a Topic Filter, a key (who subscribed: the broker decides, e.g. a client
/// or session id) and a value (what the broker needs when a message matches: options,
/// Subscription Identifier…). A key has at most one subscription per Topic Filter.
///
/// See the [module documentation](self) for the design and the determinism guarantee.
pub struct SubscriptionTree<K, V> {
    root: Node<K, V>,
    /// The number of subscriptions (keys of every node's subscribers, added up).
    len: usize,
}

/// A node of the trie: the filters whose levels so far are the path from the root.
struct Node<K, V> {
    /// Children for levels other than `+` and `#`, compared byte for byte.
    exact: Children<K, V>,
    /// The child for a `+` level.
    single: Option<Box<Node<K, V>>>,
    /// The child for a `#` level. A valid filter ends there, so only its subscribers count.
    multi: Option<Box<Node<K, V>>>,
    /// The subscriptions whose filter ends at this node; `None` rather than empty.
    subscribers: Option<Box<Subscribers<K, V>>>,
}

/// The subscriptions to one Topic Filter.
struct Subscribers<K, V> {
    /// The Topic Filter, as given to the first [`SubscriptionTree::insert`].
    filter: Box<str>,
    /// Never empty while it is in a node.
    entries: Entries<K, V>,
}

/// Up to this many exact children or subscribers, a node keeps them in a vector sized to fit;
/// beyond, in a map. Most nodes of a large tree have one child and one subscriber, and a map
/// costs hundreds of bytes even for one entry (measured in `benches/`).
const FEW: usize = 8;

/// The exact children of a node: few in a vector searched linearly, many in a hash map.
enum Children<K, V> {
    Few(Vec<(Box<str>, Node<K, V>)>),
    Many(HashMap<Box<str>, Node<K, V>>),
}

impl<K, V> Children<K, V> {
    fn get(&self, level: &str) -> Option<&Node<K, V>> {
        match self {
            Self::Few(v) => v.iter().find(|(l, _)| **l == *level).map(|(_, n)| n),
            Self::Many(m) => m.get(level),
        }
    }

    fn get_mut(&mut self, level: &str) -> Option<&mut Node<K, V>> {
        match self {
            Self::Few(v) => v.iter_mut().find(|(l, _)| **l == *level).map(|(_, n)| n),
            Self::Many(m) => m.get_mut(level),
        }
    }

    /// The child for `level`, added if missing. `None` never happens (the child was just
    /// found or added); it is an `Option` only because the vector's accessors are.
    fn get_or_insert(&mut self, level: &str) -> Option<&mut Node<K, V>> {
        if let Self::Few(v) = self
            && v.len() >= FEW
            && !v.iter().any(|(l, _)| **l == *level)
        {
            let mut map =
                HashMap::with_capacity_and_hasher(FEW * 2, crate::hash::HashState::default());
            map.extend(v.drain(..));
            *self = Self::Many(map);
        }
        match self {
            Self::Few(v) => {
                let index = match v.iter().position(|(l, _)| **l == *level) {
                    Some(index) => index,
                    None => {
                        v.reserve_exact(1);
                        v.push((Box::from(level), Node::new()));
                        v.len() - 1
                    }
                };
                v.get_mut(index).map(|(_, node)| node)
            }
            Self::Many(m) => Some(m.entry(Box::from(level)).or_insert_with(Node::new)),
        }
    }

    fn remove(&mut self, level: &str) -> Option<Node<K, V>> {
        match self {
            Self::Few(v) => {
                let index = v.iter().position(|(l, _)| **l == *level)?;
                let (_, node) = v.swap_remove(index);
                v.shrink_to_fit();
                Some(node)
            }
            Self::Many(m) => m.remove(level),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Few(v) => v.len(),
            Self::Many(m) => m.len(),
        }
    }

    /// In no particular order.
    fn iter(&self) -> impl Iterator<Item = (&str, &Node<K, V>)> {
        let (few, many) = match self {
            Self::Few(v) => (Some(v.iter().map(|(l, n)| (&**l, n))), None),
            Self::Many(m) => (None, Some(m.iter().map(|(l, n)| (&**l, n)))),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    fn drain_into(&mut self, into: &mut Vec<Node<K, V>>) {
        match self {
            Self::Few(v) => into.extend(v.drain(..).map(|(_, n)| n)),
            Self::Many(m) => into.extend(m.drain().map(|(_, n)| n)),
        }
    }
}

/// The subscribers of one filter, ordered by key: few in a sorted vector sized to fit, many in
/// a B-tree.
enum Entries<K, V> {
    Few(Vec<(K, V)>),
    Many(BTreeMap<K, V>),
}

impl<K: Ord, V> Entries<K, V> {
    fn get(&self, key: &K) -> Option<&V> {
        match self {
            Self::Few(v) => v
                .binary_search_by(|(k, _)| k.cmp(key))
                .ok()
                .and_then(|i| v.get(i))
                .map(|(_, value)| value),
            Self::Many(m) => m.get(key),
        }
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self {
            Self::Few(v) => match v.binary_search_by(|(k, _)| k.cmp(key)) {
                Ok(i) => v.get_mut(i).map(|(_, value)| value),
                Err(_) => None,
            },
            Self::Many(m) => m.get_mut(key),
        }
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Self::Few(v) = self {
            match v.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(i) => {
                    return v.get_mut(i).map(|(_, old)| core::mem::replace(old, value));
                }
                Err(i) if v.len() < FEW => {
                    v.reserve_exact(1);
                    v.insert(i, (key, value));
                    return None;
                }
                Err(_) => {
                    let map: BTreeMap<K, V> = v.drain(..).collect();
                    *self = Self::Many(map);
                }
            }
        }
        match self {
            Self::Few(_) => None,
            Self::Many(m) => m.insert(key, value),
        }
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        match self {
            Self::Few(v) => {
                let i = v.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
                let (_, value) = v.remove(i);
                v.shrink_to_fit();
                Some(value)
            }
            Self::Many(m) => m.remove(key),
        }
    }
}

impl<K, V> Entries<K, V> {
    fn len(&self) -> usize {
        match self {
            Self::Few(v) => v.len(),
            Self::Many(m) => m.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn iter(&self) -> EntriesIter<'_, K, V> {
        match self {
            Self::Few(v) => EntriesIter::Few(v.iter()),
            Self::Many(m) => EntriesIter::Many(m.iter()),
        }
    }
}

/// The subscribers of one filter in key order.
enum EntriesIter<'a, K, V> {
    Few(core::slice::Iter<'a, (K, V)>),
    Many(btree_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for EntriesIter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Few(i) => i.next().map(|(k, v)| (k, v)),
            Self::Many(i) => i.next(),
        }
    }
}

/// Splits the first level off `levels`: the level, and the levels after it (`None` when it was
/// the last one). `"a/"` has two levels, `"a"` and the empty level (section 4.7.1.1: adjacent,
/// leading and trailing separators make zero-length levels).
fn split_level(levels: &str) -> (&str, Option<&str>) {
    match levels.split_once(SEPARATOR) {
        Some((level, rest)) => (level, Some(rest)),
        None => (levels, None),
    }
}

impl<K, V> Node<K, V> {
    fn new() -> Self {
        Self {
            exact: Children::Few(Vec::new()),
            single: None,
            multi: None,
            subscribers: None,
        }
    }

    fn child(&self, level: &str) -> Option<&Self> {
        match level {
            SINGLE_LEVEL => self.single.as_deref(),
            MULTI_LEVEL => self.multi.as_deref(),
            _ => self.exact.get(level),
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Self> {
        match level {
            SINGLE_LEVEL => self.single.as_deref_mut(),
            MULTI_LEVEL => self.multi.as_deref_mut(),
            _ => self.exact.get_mut(level),
        }
    }

    /// The child for `level`, added if missing (`None` never happens: see
    /// `Children::get_or_insert`).
    fn child_or_insert(&mut self, level: &str) -> Option<&mut Self> {
        match level {
            SINGLE_LEVEL => Some(self.single.get_or_insert_with(|| Box::new(Self::new()))),
            MULTI_LEVEL => Some(self.multi.get_or_insert_with(|| Box::new(Self::new()))),
            _ => self.exact.get_or_insert(level),
        }
    }

    /// Removes the child for `level` from this node, with everything below it.
    fn detach_child(&mut self, level: &str) -> Option<Self> {
        match level {
            SINGLE_LEVEL => self.single.take().map(|child| *child),
            MULTI_LEVEL => self.multi.take().map(|child| *child),
            _ => self.exact.remove(level),
        }
    }

    fn child_count(&self) -> usize {
        self.exact.len() + usize::from(self.single.is_some()) + usize::from(self.multi.is_some())
    }

    /// The children with their levels, in no particular order.
    fn children(&self) -> impl Iterator<Item = (&str, &Self)> {
        let exact = self.exact.iter();
        let single = self.single.as_deref().map(|child| (SINGLE_LEVEL, child));
        let multi = self.multi.as_deref().map(|child| (MULTI_LEVEL, child));
        exact.chain(single).chain(multi)
    }

    /// Moves the children of this node (not their own children) into `into`.
    fn take_children(&mut self, into: &mut Vec<Self>) {
        self.exact.drain_into(into);
        into.extend(self.single.take().map(|child| *child));
        into.extend(self.multi.take().map(|child| *child));
    }

    /// Calls `visit` for each subscriber whose filter ends at this node, in key order.
    fn visit_subscribers<'a>(&'a self, visit: &mut impl FnMut(&'a str, &'a K, &'a V)) {
        if let Some(subscribers) = self.subscribers.as_deref() {
            for (key, value) in subscribers.entries.iter() {
                visit(&subscribers.filter, key, value);
            }
        }
    }
}

impl<K, V> Drop for Node<K, V> {
    /// Drops the subtree without recursion: a chain of 65,536 levels would overflow the stack
    /// with the compiler's recursive drop.
    fn drop(&mut self) {
        if self.child_count() == 0 {
            return;
        }
        let mut pending = Vec::new();
        self.take_children(&mut pending);
        while let Some(mut node) = pending.pop() {
            node.take_children(&mut pending);
            // `node` is dropped here, with no children left.
        }
    }
}

impl<K, V> SubscriptionTree<K, V> {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self {
            root: Node::new(),
            len: 0,
        }
    }

    /// The number of subscriptions (pairs of Topic Filter and key).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree holds no subscription.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The node of `filter`, if it exists.
    fn node(&self, filter: &str) -> Option<&Node<K, V>> {
        let mut node = &self.root;
        for level in filter.split(SEPARATOR) {
            node = node.child(level)?;
        }
        Some(node)
    }

    /// Calls `visit(filter, key, value)` for every subscription whose Topic Filter matches
    /// `topic`, a Topic Name.
    ///
    /// Each matching subscription is visited exactly once. The order is deterministic: it
    /// depends only on `topic` and on the subscriptions the tree holds. The cost grows with the
    /// number of levels of `topic` and the number of (partially) matching filters, not with
    /// the number of subscriptions.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut visit: impl FnMut(&'a str, &'a K, &'a V)) {
        // [MQTT-4.7.2-1] The Server MUST NOT match Topic Filters starting with a wildcard
        // character (# or +) with Topic Names beginning with a $ character.
        let dollar_topic = topic.starts_with('$');
        // A node reached by matching the first levels of the topic against a filter prefix,
        // with the topic levels still to match (`None` when all of them matched). Branches
        // wait in `pending`; `current` saves an allocation while the walk does not branch.
        let mut current = Some((&self.root, Some(topic)));
        let mut pending = Vec::new();
        let mut at_root = true;
        while let Some((node, levels)) = current.take().or_else(|| pending.pop()) {
            let wildcards_allowed = !(at_root && dollar_topic);
            at_root = false;
            if wildcards_allowed && let Some(multi) = node.multi.as_deref() {
                // Section 4.7.1.2: `#` matches any number of levels, including none at all
                // ("the parent level": `sport/#` matches `sport`).
                multi.visit_subscribers(&mut visit);
            }
            let Some(levels) = levels else {
                // Every topic level matched, and the filter ends here.
                node.visit_subscribers(&mut visit);
                continue;
            };
            let (level, rest) = split_level(levels);
            if wildcards_allowed && let Some(single) = node.single.as_deref() {
                // Section 4.7.1.3: `+` matches exactly one level, which may be empty.
                current = Some((single, rest));
            }
            // [MQTT-4.7.3-4] When it performs subscription matching the Server MUST NOT perform
            // any normalization of Topic Names or Topic Filters, or any modification or
            // substitution of unrecognized characters: levels are compared byte for byte.
            if let Some(exact) = node.exact.get(level)
                && let Some(branch) = current.replace((exact, rest))
            {
                pending.push(branch);
            }
        }
    }

    /// All subscriptions as `(filter, key, value)`, each exactly once.
    ///
    /// The order depends only on the subscriptions held: filters in the order of their lists
    /// of levels (compared level by level, each level byte by byte, so a filter comes before
    /// the longer filters it is a prefix of), and the subscriptions to one filter in key
    /// order.
    #[must_use]
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            pending: vec![("", &self.root)],
            current: None,
            remaining: self.len,
        }
    }
}

impl<K: Ord, V> SubscriptionTree<K, V> {
    /// Adds the subscription of `key` to `filter`, or replaces its value if there is one
    /// already; returns the previous value.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in filter.split(SEPARATOR) {
            node = node.child_or_insert(level)?;
        }
        let subscribers = node.subscribers.get_or_insert_with(|| {
            Box::new(Subscribers {
                filter: Box::from(filter),
                entries: Entries::Few(Vec::new()),
            })
        });
        let previous = subscribers.entries.insert(key, value);
        if previous.is_none() {
            self.len = self.len.saturating_add(1);
        }
        previous
    }

    /// Removes the subscription of `key` to `filter`; returns its value if there was one.
    ///
    /// Nodes left holding nothing are removed, so the tree's memory follows the subscriptions
    /// it holds, whatever the history of subscribing and unsubscribing.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        // First find the subscription, and the deepest node on its path that must stay after
        // the removal (it has other subscribers or other children); the root always stays.
        let mut keep_depth = 0_usize;
        let mut depth = 0_usize;
        let mut node = &self.root;
        for level in filter.split(SEPARATOR) {
            if node.subscribers.is_some() || node.child_count() > 1 {
                keep_depth = depth;
            }
            node = node.child(level)?;
            depth += 1;
        }
        let subscribers = node.subscribers.as_deref()?;
        subscribers.entries.get(key)?;
        if subscribers.entries.len() > 1 || node.child_count() > 0 {
            keep_depth = depth;
        }

        // Then cut the branch below that node, or remove just the key if the node of the
        // filter itself stays.
        let mut levels = filter.split(SEPARATOR);
        let mut node = &mut self.root;
        for _ in 0..keep_depth {
            node = node.child_mut(levels.next()?)?;
        }
        let value = if let Some(level) = levels.next() {
            let mut branch = node.detach_child(level)?;
            let mut last = &mut branch;
            for level in levels {
                last = last.child_mut(level)?;
            }
            last.subscribers.as_deref_mut()?.entries.remove(key)
            // `branch` (a chain of nodes holding nothing else) is dropped here.
        } else {
            let subscribers = node.subscribers.as_deref_mut()?;
            let value = subscribers.entries.remove(key);
            if subscribers.entries.is_empty() {
                node.subscribers = None;
            }
            value
        };
        if value.is_some() {
            self.len = self.len.saturating_sub(1);
        }
        value
    }

    /// The value of the subscription of `key` to `filter`.
    #[must_use]
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        self.node(filter)?.subscribers.as_deref()?.entries.get(key)
    }

    /// The value of the subscription of `key` to `filter`, to change it in place.
    #[must_use]
    pub fn get_mut(&mut self, filter: &str, key: &K) -> Option<&mut V> {
        let mut node = &mut self.root;
        for level in filter.split(SEPARATOR) {
            node = node.child_mut(level)?;
        }
        node.subscribers.as_deref_mut()?.entries.get_mut(key)
    }
}

impl<K, V> Default for SubscriptionTree<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone, V: Clone> Clone for SubscriptionTree<K, V> {
    fn clone(&self) -> Self {
        let mut tree = Self::new();
        for (filter, key, value) in self {
            tree.insert(filter, key.clone(), value.clone());
        }
        tree
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SubscriptionTree<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, K, V> IntoIterator for &'a SubscriptionTree<K, V> {
    type Item = (&'a str, &'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The subscriptions of a [`SubscriptionTree`], from [`SubscriptionTree::iter`].
pub struct Iter<'a, K, V> {
    /// Nodes still to visit with their levels, the next one last.
    pending: Vec<(&'a str, &'a Node<K, V>)>,
    /// The filter and the remaining subscribers of the node being visited.
    current: Option<(&'a str, EntriesIter<'a, K, V>)>,
    /// Subscriptions not yielded yet.
    remaining: usize,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a str, &'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((filter, entries)) = self.current.as_mut()
                && let Some((key, value)) = entries.next()
            {
                self.remaining = self.remaining.saturating_sub(1);
                return Some((filter, key, value));
            }
            let (_, node) = self.pending.pop()?;
            // Pre-order: the node's own subscribers, then its children by level, smallest
            // first (so pushed largest first).
            let start = self.pending.len();
            self.pending.extend(node.children());
            if let Some(children) = self.pending.get_mut(start..) {
                // Levels are unique among siblings: an unstable sort is deterministic.
                children.sort_unstable_by(|a, b| b.0.cmp(a.0));
            }
            self.current = node
                .subscribers
                .as_deref()
                .map(|subscribers| (&*subscribers.filter, subscribers.entries.iter()));
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

impl<K, V> FusedIterator for Iter<'_, K, V> {}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference matcher: section 4.7, written as plainly as possible.
    fn matches(filter: &str, topic: &str) -> bool {
        // Section 4.7.2: wildcards in the first level skip topics starting with `$`.
        if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
            return false;
        }
        let filter: Vec<&str> = filter.split('/').collect();
        let topic: Vec<&str> = topic.split('/').collect();
        let mut i = 0;
        loop {
            match (filter.get(i), topic.get(i)) {
                // `#` matches the parent level and any number of levels below it.
                (Some(&"#"), _) | (None, None) => return true,
                (Some(&"+"), Some(_)) => {}
                (Some(f), Some(t)) if f == t => {}
                _ => return false,
            }
            i += 1;
        }
    }

    /// The subscriptions matching `topic`, in visiting order.
    fn matching<K: Clone, V: Clone>(
        tree: &SubscriptionTree<K, V>,
        topic: &str,
    ) -> Vec<(String, K, V)> {
        let mut out = Vec::new();
        tree.for_each_match(topic, |filter, key, value| {
            out.push((filter.to_owned(), key.clone(), value.clone()));
        });
        out
    }

    /// The filters matching `topic`, sorted.
    fn matching_filters<V: Clone>(tree: &SubscriptionTree<u8, V>, topic: &str) -> Vec<String> {
        let mut filters: Vec<String> = matching(tree, topic).into_iter().map(|m| m.0).collect();
        filters.sort();
        filters
    }

    /// A tree with one subscription (key 0) to each filter.
    fn tree_of(filters: &[&str]) -> SubscriptionTree<u8, ()> {
        let mut tree = SubscriptionTree::new();
        for filter in filters {
            tree.insert(filter, 0, ());
        }
        tree
    }

    fn assert_matches(filter: &str, topic: &str, expected: bool) {
        let tree = tree_of(&[filter]);
        let found = !matching(&tree, topic).is_empty();
        assert_eq!(found, expected, "filter {filter:?}, topic {topic:?}");
        assert_eq!(
            matches(filter, topic),
            expected,
            "reference: {filter:?} {topic:?}"
        );
    }

    /// Nodes in the tree, the root included.
    fn node_count<K, V>(tree: &SubscriptionTree<K, V>) -> usize {
        let mut count = 0;
        let mut pending = vec![&tree.root];
        while let Some(node) = pending.pop() {
            count += 1;
            pending.extend(node.children().map(|(_, child)| child));
        }
        count
    }

    /// Section 4.7.1.2 (non-normative examples): `#` matches the parent level and any number
    /// of levels below it.
    #[test]
    fn section_4_7_1_2_multi_level_wildcard_examples() {
        for topic in [
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
        ] {
            assert_matches("sport/tennis/player1/#", topic, true);
        }
        assert_matches("sport/tennis/player1/#", "sport/tennis/player2", false);
        assert_matches("sport/tennis/player1/#", "sport/tennis", false);
        assert_matches("sport/tennis/player1/#", "sport/tennis/player10", false);
        // "sport/#" also matches the singular "sport", since # includes the parent level.
        assert_matches("sport/#", "sport", true);
        assert_matches("sport/#", "sport/", true);
        assert_matches("sport/#", "sports", false);
        // "#" receives every Application Message (not starting with $).
        for topic in ["sport", "/", "a/b/c", "/finance", "a//b"] {
            assert_matches("#", topic, true);
        }
        assert_matches("sport/tennis/#", "sport/tennis/player1/ranking", true);
        assert_matches("+/tennis/#", "sport/tennis", true);
        assert_matches("+/#", "sport", true);
    }

    /// Section 4.7.1.3 (non-normative examples): `+` matches exactly one level, which may be
    /// empty.
    #[test]
    fn section_4_7_1_3_single_level_wildcard_examples() {
        assert_matches("sport/tennis/+", "sport/tennis/player1", true);
        assert_matches("sport/tennis/+", "sport/tennis/player2", true);
        assert_matches("sport/tennis/+", "sport/tennis/player1/ranking", false);
        // "sport/+" does not match "sport" but it does match "sport/".
        assert_matches("sport/+", "sport", false);
        assert_matches("sport/+", "sport/", true);
        assert_matches("sport/+/player1", "sport/tennis/player1", true);
        assert_matches("sport/+/player1", "sport//player1", true);
        // "/finance" matches "+/+" and "/+", but not "+".
        assert_matches("+/+", "/finance", true);
        assert_matches("/+", "/finance", true);
        assert_matches("+", "/finance", false);
        assert_matches("+", "finance", true);
        assert_matches("+", "", true);
    }

    /// Section 4.7.1.1 and 4.7.3: empty levels are levels; a leading or trailing `/` makes a
    /// distinct Topic Name or Topic Filter.
    #[test]
    fn section_4_7_1_1_empty_levels_are_levels() {
        assert_matches("a//b", "a//b", true);
        assert_matches("a//b", "a/b", false);
        assert_matches("a/b", "a//b", false);
        assert_matches("a/+/b", "a//b", true);
        assert_matches("/a", "/a", true);
        assert_matches("/a", "a", false);
        assert_matches("a", "/a", false);
        assert_matches("a/", "a", false);
        assert_matches("a", "a/", false);
        assert_matches("/", "/", true);
        assert_matches("+/+", "/", true);
        assert_matches("+", "/", false);
        assert_matches("/#", "/", true);
        assert_matches("/#", "a", false);
    }

    // v5 v3.1.1 [MQTT-4.7.2-1]
    #[test]
    fn mqtt_4_7_2_1_filters_starting_with_a_wildcard_skip_dollar_topics() {
        // The non-normative examples of section 4.7.2.
        assert_matches("#", "$SYS/monitor/Clients", false);
        assert_matches("+/monitor/Clients", "$SYS/monitor/Clients", false);
        assert_matches("$SYS/#", "$SYS/monitor/Clients", true);
        assert_matches("$SYS/#", "$SYS", true);
        assert_matches("$SYS/monitor/+", "$SYS/monitor/Clients", true);
        // Only a wildcard in the first level is concerned, and only a `$` at the very start.
        assert_matches("+", "$", false);
        assert_matches("+/#", "$SYS/a", false);
        assert_matches("$SYS/+/#", "$SYS/monitor/Clients", true);
        assert_matches("#", "a/$SYS", true);
        assert_matches("+/$SYS", "a/$SYS", true);
        assert_matches("#", "/$SYS", true);
        assert_matches("+/+", "/$SYS", true);
        // Together, "#" and "$SYS/#" receive both.
        let tree = tree_of(&["#", "$SYS/#"]);
        assert_eq!(matching_filters(&tree, "$SYS/x"), ["$SYS/#"]);
        assert_eq!(matching_filters(&tree, "x"), ["#"]);
    }

    // v5 v3.1.1 [MQTT-4.7.3-4]
    #[test]
    fn mqtt_4_7_3_4_levels_are_compared_byte_for_byte() {
        // Topic Names and Topic Filters are case sensitive, and may hold spaces.
        assert_matches("Sport", "sport", false);
        assert_matches("sport", "sport ", false);
        assert_matches("a b/c", "a b/c", true);
        // "é" precomposed (U+00E9) and decomposed (e U+0301) are different levels.
        assert_matches("caf\u{e9}", "cafe\u{301}", false);
        assert_matches("caf\u{e9}", "caf\u{e9}", true);
        // No trimming or collapsing of separators.
        assert_matches("a/b/", "a/b", false);
        assert_matches("a//", "a/", false);
    }

    #[test]
    fn insert_replaces_the_value_of_the_same_key_and_filter() {
        let mut tree = SubscriptionTree::new();
        assert_eq!(tree.insert("a/+", "c1", 1), None);
        assert_eq!(tree.insert("a/+", "c2", 2), None);
        assert_eq!(tree.insert("a/#", "c1", 3), None);
        assert_eq!(tree.len(), 3);
        assert_eq!(tree.insert("a/+", "c1", 4), Some(1));
        assert_eq!(tree.len(), 3);
        assert_eq!(tree.get("a/+", &"c1"), Some(&4));
        assert_eq!(tree.get("a/+", &"c2"), Some(&2));
        assert_eq!(tree.get("a/#", &"c1"), Some(&3));
        assert_eq!(tree.get("a/#", &"c2"), None);
        assert_eq!(tree.get("a", &"c1"), None);
        assert_eq!(tree.get("a/b", &"c1"), None);
        if let Some(value) = tree.get_mut("a/+", &"c2") {
            *value = 5;
        }
        assert_eq!(tree.get_mut("a/b", &"c2"), None);
        assert_eq!(
            matching(&tree, "a/x"),
            [
                ("a/#".to_owned(), "c1", 3),
                ("a/+".to_owned(), "c1", 4),
                ("a/+".to_owned(), "c2", 5),
            ]
        );
    }

    #[test]
    fn remove_prunes_empty_nodes() {
        let mut tree = SubscriptionTree::new();
        let filters = [
            "a/b/c", "a/b", "a/+/c", "a/#", "+/+/+", "#", "/", "//", "a//b/", "$SYS/#",
        ];
        for (n, filter) in filters.iter().enumerate() {
            assert_eq!(tree.insert(filter, 1_u8, n), None);
            assert_eq!(tree.insert(filter, 2_u8, n), None);
        }
        assert_eq!(tree.len(), 2 * filters.len());
        // Removing something that is not there changes nothing.
        let nodes = node_count(&tree);
        assert_eq!(tree.remove("a/b/c", &3), None);
        assert_eq!(tree.remove("a/b/c/d", &1), None);
        assert_eq!(tree.remove("a/b/+", &1), None);
        assert_eq!(tree.remove("a", &1), None);
        assert_eq!(node_count(&tree), nodes);
        assert_eq!(tree.len(), 2 * filters.len());
        // Remove in an order that exercises pruning below, above and beside kept nodes.
        for (n, filter) in filters.iter().enumerate().rev() {
            assert_eq!(tree.remove(filter, &1), Some(n));
            assert_eq!(tree.remove(filter, &1), None);
        }
        assert_eq!(node_count(&tree), nodes);
        for (n, filter) in filters.iter().enumerate() {
            assert_eq!(tree.remove(filter, &2), Some(n));
            assert_eq!(tree.get(filter, &2), None);
        }
        assert!(tree.is_empty());
        assert_eq!(node_count(&tree), 1);
        assert!(tree.root.exact.len() == 0 && tree.root.subscribers.is_none());
    }

    #[test]
    fn churn_does_not_grow_the_tree() {
        let mut tree = SubscriptionTree::new();
        tree.insert("keep/+", 0_u32, ());
        let baseline = node_count(&tree);
        for i in 0..1000_u32 {
            let filter = format!("churn/{}/{}/#", i % 7, i);
            tree.insert(&filter, i, ());
            tree.insert("keep/+/deeper", i, ());
            assert_eq!(tree.remove(&filter, &i), Some(()));
            assert_eq!(tree.remove("keep/+/deeper", &i), Some(()));
        }
        assert_eq!(tree.len(), 1);
        assert_eq!(node_count(&tree), baseline);
    }

    #[test]
    fn iter_returns_every_subscription_exactly_once_in_level_order() {
        let filters = [
            "a", "a/b", "a/+", "a/#", "+", "#", "/", "", "b//c", "$SYS/#", "a/b/c", "+/+",
        ];
        let mut tree = SubscriptionTree::new();
        let mut expected = Vec::new();
        for (n, filter) in filters.iter().enumerate() {
            for key in [3_u8, 1, 2] {
                tree.insert(filter, key, n);
                expected.push((filter.to_string(), key, n));
            }
        }
        expected.sort_by(|a, b| {
            let levels = |f: &str| f.split('/').map(str::to_owned).collect::<Vec<_>>();
            (levels(&a.0), a.1).cmp(&(levels(&b.0), b.1))
        });
        let iter = tree.iter();
        assert_eq!(iter.len(), expected.len());
        let got: Vec<(String, u8, usize)> = iter
            .map(|(filter, key, value)| (filter.to_owned(), *key, *value))
            .collect();
        assert_eq!(got, expected);
        let mut iter = tree.iter();
        iter.by_ref().take(5).for_each(drop);
        assert_eq!(iter.len(), expected.len() - 5);
        assert_eq!(iter.by_ref().count(), expected.len() - 5);
        assert_eq!(iter.next(), None);
        assert_eq!(SubscriptionTree::<u8, ()>::new().iter().next(), None);
        // `Clone` and `Debug` go through `iter`.
        let copy = tree.clone();
        assert_eq!(format!("{copy:?}"), format!("{tree:?}"));
        assert_eq!((&copy).into_iter().count(), expected.len());
    }

    #[test]
    fn match_order_depends_only_on_the_contents() {
        let filters = [
            "a/b", "a/+", "+/b", "#", "a/#", "+/+", "+/#", "a/b/#", "a/+/#",
        ];
        let mut forward = SubscriptionTree::new();
        let mut backward = SubscriptionTree::new();
        for (n, filter) in filters.iter().enumerate() {
            for key in 0..3_u8 {
                forward.insert(filter, key, n);
            }
        }
        for (n, filter) in filters.iter().enumerate().rev() {
            for key in (0..3_u8).rev() {
                backward.insert(filter, key, n);
            }
            // Add and remove noise, so that the two trees' histories differ further.
            backward.insert("noise/#", 9, n);
            backward.insert(filter, 9, n);
            backward.remove("noise/#", &9);
            backward.remove(filter, &9);
        }
        for topic in ["a/b", "a/b/c", "a", "x/b", "a/x/y"] {
            let got = matching(&forward, topic);
            assert_eq!(got, matching(&backward, topic), "{topic}");
            assert_eq!(
                got.len(),
                3 * filters.iter().filter(|f| matches(f, topic)).count()
            );
        }
        let all: Vec<_> = forward.iter().collect();
        assert_eq!(all, backward.iter().collect::<Vec<_>>());
    }

    #[test]
    fn invalid_filters_do_not_panic() {
        let mut tree = SubscriptionTree::new();
        for filter in [
            "a/#/b", "#/", "##", "a#", "sport+", "+a/b", "", "#/#", "\0", "++/+",
        ] {
            assert_eq!(tree.insert(filter, 0_u8, ()), None);
            assert_eq!(tree.get(filter, &0), Some(&()));
        }
        // A `#` that is not the last level matches nothing below it; other invalid levels
        // are plain levels.
        assert_eq!(matching_filters(&tree, "a/x/b"), Vec::<String>::new());
        assert_eq!(matching_filters(&tree, "a/#/b"), Vec::<String>::new());
        assert_eq!(matching_filters(&tree, "sport+"), ["sport+"]);
        assert_eq!(matching_filters(&tree, ""), [""]);
        assert_eq!(matching_filters(&tree, "##"), ["##"]);
        assert_eq!(tree.iter().count(), 10);
        for filter in [
            "a/#/b", "#/", "##", "a#", "sport+", "+a/b", "", "#/#", "\0", "++/+",
        ] {
            assert_eq!(tree.remove(filter, &0), Some(()));
        }
        assert_eq!(node_count(&tree), 1);
    }

    /// The longest filters and topics (65,535 bytes, 65,536 levels) must not overflow the
    /// stack of a test thread (2 MiB) in any operation, including dropping the tree.
    #[test]
    fn deepest_filters_do_not_overflow_the_stack() {
        // 65,535 levels, 65,536 levels and 65,535 levels.
        let deepest = "/".repeat(65_534);
        let deepest_multi = format!("{deepest}#");
        let deepest_single = format!("+{deepest}");
        let mut tree = SubscriptionTree::new();
        for filter in [&deepest, &deepest_multi, &deepest_single] {
            tree.insert(filter, 0_u8, ());
        }
        assert_eq!(matching(&tree, &deepest).len(), 3);
        assert_eq!(tree.iter().count(), 3);
        let copy = tree.clone();
        assert_eq!(tree.remove(&deepest, &0), Some(()));
        assert_eq!(tree.remove(&deepest_single, &0), Some(()));
        assert_eq!(tree.remove(&deepest_multi, &0), Some(()));
        assert_eq!(node_count(&tree), 1);
        drop(copy);
        tree.insert(&deepest, 1, ());
        drop(tree);
    }

    /// Many children under one level and many subscribers to one filter: the vector and map
    /// forms of `Children` and `Entries`, and the switch from one to the other, in both
    /// directions of use (the map form stays after removals).
    #[test]
    fn many_children_and_subscribers_switch_to_maps_and_still_match() {
        let mut tree = SubscriptionTree::new();
        let mut model: BTreeMap<(String, u8), u32> = BTreeMap::new();
        for level in 0..3 * FEW {
            for key in 0..u8::try_from(2 * FEW).unwrap() {
                let filter = format!("x/{level}/y");
                let value = u32::try_from(level).unwrap() * 100 + u32::from(key);
                assert_eq!(tree.insert(&filter, key, value), None);
                model.insert((filter, key), value);
            }
            tree.insert("x/+/y", 0, 7);
            model.insert(("x/+/y".to_owned(), 0), 7);
        }
        let check = |tree: &SubscriptionTree<u8, u32>, model: &BTreeMap<(String, u8), u32>| {
            for level in 0..3 * FEW + 1 {
                let topic = format!("x/{level}/y");
                let mut got = matching(tree, &topic);
                got.sort();
                let expected: Vec<(String, u8, u32)> = model
                    .iter()
                    .filter(|((f, _), _)| matches(f, &topic))
                    .map(|((f, k), v)| (f.clone(), *k, *v))
                    .collect();
                assert_eq!(got, expected, "{topic}");
            }
            assert_eq!(tree.len(), model.len());
            let listed: Vec<(String, u8, u32)> = tree
                .iter()
                .map(|(f, k, v)| (f.to_owned(), *k, *v))
                .collect();
            let mut sorted = listed.clone();
            sorted.sort_by(|a, b| {
                (a.0.split('/').collect::<Vec<_>>(), a.1)
                    .cmp(&(b.0.split('/').collect::<Vec<_>>(), b.1))
            });
            assert_eq!(listed, sorted);
        };
        check(&tree, &model);
        // Remove every other subscriber, then every other level entirely.
        for level in 0..3 * FEW {
            for key in (0..u8::try_from(2 * FEW).unwrap()).step_by(2) {
                let filter = format!("x/{level}/y");
                assert_eq!(tree.remove(&filter, &key), model.remove(&(filter, key)));
            }
        }
        check(&tree, &model);
        for level in (0..3 * FEW).step_by(2) {
            for key in 0..u8::try_from(2 * FEW).unwrap() {
                let filter = format!("x/{level}/y");
                assert_eq!(
                    tree.remove(&filter, &key),
                    model.remove(&(filter.clone(), key))
                );
                assert_eq!(tree.get(&filter, &key), None);
            }
        }
        check(&tree, &model);
        for (filter, key) in model.keys() {
            assert!(tree.remove(filter, key).is_some());
        }
        assert!(tree.is_empty());
        assert_eq!(node_count(&tree), 1);
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Subscribe key to the filter at this index of the pool.
        Insert(usize, u8, u32),
        /// Unsubscribe key from the filter at this index of the pool.
        Remove(usize, u8),
        /// Check the subscriptions matching this topic.
        Match(String),
    }

    /// Valid filters over a small alphabet of levels, so that they often overlap.
    fn filter() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$s", "", "+"]);
        (prop::collection::vec(level, 0..=4), any::<bool>())
            .prop_map(|(levels, multi)| {
                let mut filter = levels.join("/");
                if levels.is_empty() {
                    filter.push('#');
                } else if multi {
                    filter.push_str("/#");
                }
                filter
            })
            .prop_filter("filters are not empty", |f| !f.is_empty())
    }

    fn topic() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$s", ""]);
        prop::collection::vec(level, 1..=5)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("topics are not empty", |t| !t.is_empty())
    }

    fn op(pool: usize) -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..pool, 0..3_u8, any::<u32>()).prop_map(|(f, k, v)| Op::Insert(f, k, v)),
            2 => (0..pool, 0..3_u8).prop_map(|(f, k)| Op::Remove(f, k)),
            2 => topic().prop_map(Op::Match),
        ]
    }

    fn scenario() -> impl Strategy<Value = (Vec<String>, Vec<Op>)> {
        prop::collection::vec(filter(), 1..8).prop_flat_map(|pool| {
            let ops = prop::collection::vec(op(pool.len()), 0..60);
            (Just(pool), ops)
        })
    }

    proptest! {
        /// Against the reference matcher and a `BTreeMap` model, over random subscribe and
        /// unsubscribe sequences.
        // v5 v3.1.1 [MQTT-4.7.2-1]
        #[test]
        fn tree_agrees_with_the_reference_matcher((pool, ops) in scenario()) {
            let mut tree = SubscriptionTree::new();
            let mut model: BTreeMap<(String, u8), u32> = BTreeMap::new();
            let mut topics = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(f, key, value) => {
                        let filter = &pool[f];
                        let expected = model.insert((filter.clone(), key), value);
                        prop_assert_eq!(tree.insert(filter, key, value), expected);
                        prop_assert_eq!(tree.get(filter, &key), Some(&value));
                    }
                    Op::Remove(f, key) => {
                        let filter = &pool[f];
                        let expected = model.remove(&(filter.clone(), key));
                        prop_assert_eq!(tree.remove(filter, &key), expected);
                        prop_assert_eq!(tree.get(filter, &key), None);
                    }
                    Op::Match(topic) => {
                        let mut got = matching(&tree, &topic);
                        got.sort();
                        let expected: Vec<(String, u8, u32)> = model
                            .iter()
                            .filter(|((filter, _), _)| matches(filter, &topic))
                            .map(|((filter, key), value)| (filter.clone(), *key, *value))
                            .collect();
                        prop_assert_eq!(got, expected, "topic {:?}", topic);
                        topics.push(topic);
                    }
                }
                prop_assert_eq!(tree.len(), model.len());
            }

            // `iter` lists the model, in the order of the filters' levels.
            let mut expected: Vec<(String, u8, u32)> =
                model.iter().map(|((f, k), v)| (f.clone(), *k, *v)).collect();
            expected.sort_by(|a, b| {
                (a.0.split('/').collect::<Vec<_>>(), a.1)
                    .cmp(&(b.0.split('/').collect::<Vec<_>>(), b.1))
            });
            let listed: Vec<(String, u8, u32)> =
                tree.iter().map(|(f, k, v)| (f.to_owned(), *k, *v)).collect();
            prop_assert_eq!(listed, expected);

            // The same subscriptions added in another order match in the same order.
            let mut rebuilt = SubscriptionTree::new();
            for ((filter, key), value) in model.iter().rev() {
                rebuilt.insert(filter, *key, *value);
            }
            for topic in &topics {
                prop_assert_eq!(matching(&rebuilt, topic), matching(&tree, topic));
            }

            // Removing everything leaves the bare root.
            for (filter, key) in model.keys() {
                prop_assert!(tree.remove(filter, key).is_some());
            }
            prop_assert!(tree.is_empty());
            prop_assert_eq!(node_count(&tree), 1);
        }
    }
}
