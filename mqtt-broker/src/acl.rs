//! The access control list (`--acl FILE`): who may publish to which topics and subscribe to
//! which filters, and who may receive which messages.
//!
//! One statement per line; blank lines and lines starting with `#` are ignored (a `#` elsewhere
//! is a wildcard, not a comment):
//!
//! - `default allow` or `default deny`: the decision when no rule applies (at most once;
//!   `deny` when absent).
//! - `user NAME`: the rules after it apply only to clients that connected with User Name
//!   `NAME`, until the next `user` line; `user *` returns to rules for every client. Rules
//!   before any `user` line apply to every client.
//! - `allow|deny publish|subscribe|both FILTER`: a rule. `FILTER` is an MQTT Topic Filter, the
//!   rest of the line (it may contain spaces inside, not `$share/`).
//!
//! Rules are tried in file order; the first whose filter matches the topic decides, else the
//! default. `publish` rules give write access: a PUBLISH (a will too) to a topic. `subscribe`
//! rules give read access: the engine checks each message against them when it delivers it to
//! a session (to the connected client, into its offline queue, a will, one member of a shared
//! subscription, each retained message sent on subscribing), so a denied topic is never
//! delivered.
//!
//! A SUBSCRIBE (a shared subscription's filter is judged without `$share/{ShareName}/`) is
//! refused only when no topic its filter can match may be read: the filter lies inside a
//! `deny` rule's filter tried before any `allow` that overlaps it, or no `allow` overlaps it
//! under `default deny`. A wider filter is granted and receives only what may be read: with
//! `default allow` and `deny subscribe test/nosubscribe`, `#` and `test/#` are granted and
//! never deliver `test/nosubscribe`. As the engine does for any `Policy`, a refused SUBSCRIBE
//! gets 0x87 Not authorized (a failure return code in 3.1.1), a refused QoS 1/2 PUBLISH of
//! MQTT 5.0 gets 0x87 in its PUBACK/PUBREC, and one of 3.1.1 is acknowledged and dropped.
//!
//! In this example `admin` may do anything (outside `$` topics); everyone else receives
//! `public/…` except `public/secret/…` (a subscription to `public/#` is granted and never
//! delivers `public/secret/…`; one to `public/secret/#` is refused), and may publish to
//! `public/{anything}/data`:
//!
//! ```text
//! default deny
//! user admin
//! allow both #
//! user *
//! deny subscribe public/secret/#
//! allow subscribe public/#
//! allow publish public/+/data
//! ```

use std::borrow::Cow;
use std::fmt;

use mqtt_session::codec::TopicFilter;
use mqtt_session::topic_match::matches;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The action is allowed.
    Allow,
    /// The action is refused (PUBACK/PUBREC or SUBACK with 0x87 Not authorized in MQTT 5.0).
    Deny,
}

/// What a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// PUBLISH (wills included, when the engine asks).
    Publish,
    /// SUBSCRIBE.
    Subscribe,
    /// Both.
    Both,
}

/// One `allow|deny publish|subscribe|both FILTER` line, or a `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The User Name it is for (`None`: every client, with or without a User Name). Always
    /// `None` for a pattern.
    pub user: Option<String>,
    /// A `pattern` rule: `%c` and `%u` levels of its filter stand for the client's Client
    /// Identifier and authenticated User Name, and it applies to every client.
    pub pattern: bool,
    /// Allow or deny.
    pub access: Access,
    /// Publish, subscribe or both.
    pub action: Action,
    /// The Topic Filter (validated; no `$share/` prefix).
    pub filter: String,
}

/// A parsed ACL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// The decision when no rule applies.
    pub default: Access,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
}

/// A line of an ACL file that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The line number (from 1).
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ACL line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// The client a decision is about: its Client Identifier, and its User Name when the broker
/// authenticated it (a User Name nobody verified is `None`: `user` blocks and `%u` patterns
/// never apply to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client<'a> {
    /// The Client Identifier.
    pub id: &'a str,
    /// The authenticated User Name.
    pub user: Option<&'a str>,
}

impl<'a> Client<'a> {
    /// The client `id`, authenticated as `user`.
    #[must_use]
    pub fn new(id: &'a str, user: Option<&'a str>) -> Self {
        Self { id, user }
    }
}

impl Acl {
    /// An ACL that allows everything (the broker without `--acl`).
    pub fn allow_all() -> Self {
        Self {
            default: Access::Allow,
            rules: Vec::new(),
        }
    }

    /// Parses the text of an ACL file.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut default = None;
        let mut user: Option<String> = None;
        let mut rules = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |message: String| ParseError { line, message };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(trimmed);
            match keyword {
                "default" => {
                    let access = match rest {
                        "allow" => Access::Allow,
                        "deny" => Access::Deny,
                        other => {
                            return Err(err(format!(
                                "`default` takes `allow` or `deny`, not {other:?}"
                            )));
                        }
                    };
                    if default.replace(access).is_some() {
                        return Err(err("a second `default` line".to_owned()));
                    }
                }
                "user" => {
                    if rest.is_empty() || rest.contains(char::is_whitespace) {
                        return Err(err(format!(
                            "`user` takes one User Name (or `*`), not {rest:?}"
                        )));
                    }
                    user = (rest != "*").then(|| rest.to_owned());
                }
                "allow" | "deny" | "pattern" => {
                    let pattern = keyword == "pattern";
                    let (keyword, rest) = if pattern {
                        split_word(rest)
                    } else {
                        (keyword, rest)
                    };
                    let access = match keyword {
                        "allow" => Access::Allow,
                        "deny" => Access::Deny,
                        other => {
                            return Err(err(format!(
                                "`pattern` takes `allow` or `deny`, not {other:?}"
                            )));
                        }
                    };
                    let (action, filter) = split_word(rest);
                    let action = match action {
                        "publish" => Action::Publish,
                        "subscribe" => Action::Subscribe,
                        "both" => Action::Both,
                        other => {
                            return Err(err(format!(
                                "expected `publish`, `subscribe` or `both`, not {other:?}"
                            )));
                        }
                    };
                    if filter.is_empty() {
                        return Err(err("the rule has no topic filter".to_owned()));
                    }
                    if filter.starts_with("$share/") {
                        return Err(err(format!(
                            "{filter:?}: write the filter without `$share/{{ShareName}}/`"
                        )));
                    }
                    // In a pattern, `%c` and `%u` stand for a whole level (checked as one).
                    let checked = if pattern {
                        if filter.split('/').any(|l| {
                            l != "%c" && l != "%u" && (l.contains("%c") || l.contains("%u"))
                        }) {
                            return Err(err(format!(
                                "{filter:?}: `%c` and `%u` must be a whole topic level"
                            )));
                        }
                        filter
                            .split('/')
                            .map(|l| if l == "%c" || l == "%u" { "x" } else { l })
                            .collect::<Vec<_>>()
                            .join("/")
                    } else {
                        filter.to_owned()
                    };
                    if let Err(violation) = TopicFilter::try_from(checked.as_str()) {
                        return Err(err(format!(
                            "{filter:?} is not a valid topic filter: {violation}"
                        )));
                    }
                    rules.push(Rule {
                        user: if pattern { None } else { user.clone() },
                        pattern,
                        access,
                        action,
                        filter: filter.to_owned(),
                    });
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword {other:?} (expected `default`, `user`, `allow`, `deny` or `pattern`)"
                    )));
                }
            }
        }
        Ok(Self {
            default: default.unwrap_or(Access::Deny),
            rules,
        })
    }

    /// Whether `client` may publish to `topic` (write access).
    #[must_use]
    pub fn may_publish(&self, client: Client<'_>, topic: &str) -> bool {
        self.decide(client, Action::Publish, topic)
    }

    /// Whether `client` may receive a message published to `topic` (read access): the
    /// `subscribe` rules, tried against the topic.
    #[must_use]
    pub fn may_read(&self, client: Client<'_>, topic: &str) -> bool {
        self.decide(client, Action::Subscribe, topic)
    }

    /// Whether `client` may subscribe to `filter` (the full filter of the SUBSCRIBE: a
    /// `$share/{ShareName}/` prefix is removed first): refused only when no topic it can match
    /// may be read, as the module documentation says.
    #[must_use]
    pub fn may_subscribe(&self, client: Client<'_>, filter: &str) -> bool {
        let filter = filter
            .strip_prefix("$share/")
            .and_then(|rest| rest.split_once('/'))
            .map_or(filter, |(_, inner)| inner);
        // The `deny` rules tried so far that overlap the filter.
        let mut denied: Vec<Cow<'_, str>> = Vec::new();
        for (access, rule_filter) in self.applicable(client, Action::Subscribe) {
            let Some(common) = intersection(&rule_filter, filter) else {
                continue;
            };
            match access {
                // Some topic of the filter is allowed, unless an earlier deny took all of the
                // part this rule allows.
                Access::Allow => {
                    if !denied.iter().any(|d| covers(d, &common)) {
                        return true;
                    }
                }
                // Every topic of the filter is denied (the earlier allows did not apply).
                Access::Deny if common == filter => return false,
                Access::Deny => denied.push(rule_filter),
            }
        }
        self.default == Access::Allow
    }

    /// The rules for `action` that apply to `client`, in file order, with their filters (a
    /// pattern's with `%c` and `%u` replaced).
    fn applicable<'a>(
        &'a self,
        client: Client<'a>,
        action: Action,
    ) -> impl Iterator<Item = (Access, Cow<'a, str>)> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.action == action || r.action == Action::Both)
            .filter_map(move |r| {
                if r.pattern {
                    expand(&r.filter, client).map(|f| (r.access, Cow::Owned(f)))
                } else if r.user.is_none() || r.user.as_deref() == client.user {
                    Some((r.access, Cow::Borrowed(r.filter.as_str())))
                } else {
                    None
                }
            })
    }

    fn decide(&self, client: Client<'_>, action: Action, topic: &str) -> bool {
        let access = self
            .applicable(client, action)
            .find(|(_, filter)| matches(filter, topic))
            .map_or(self.default, |(access, _)| access);
        access == Access::Allow
    }
}

/// A pattern's filter for `client`: each `%c` level replaced by its Client Identifier and each
/// `%u` level by its authenticated User Name. `None` (the pattern does not apply) when a value
/// it needs is missing, empty, or holds `/`, `+` or `#` (it would not be one literal level).
fn expand(pattern: &str, client: Client<'_>) -> Option<String> {
    let literal = |v: &str| !v.is_empty() && !v.contains(['/', '+', '#']);
    let mut out = String::with_capacity(pattern.len() + client.id.len());
    for (i, level) in pattern.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let value = match level {
            "%c" => Some(client.id),
            "%u" => Some(client.user?),
            _ => None,
        };
        match value {
            Some(v) if literal(v) => out.push_str(v),
            Some(_) => return None,
            None => out.push_str(level),
        }
    }
    Some(out)
}

/// The first whitespace-separated word and the rest (trimmed).
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (s, ""),
    }
}

/// Whether a filter's first level is a wildcard: it then matches no topic starting with `$`.
/// [MQTT-4.7.2-1]
fn starts_with_wildcard(filter: &str) -> bool {
    filter.starts_with('+') || filter.starts_with('#')
}

/// Whether `rule` matches every topic that `filter` matches (both valid filters).
pub fn covers(rule: &str, filter: &str) -> bool {
    if filter.starts_with('$') && starts_with_wildcard(rule) {
        return false;
    }
    let mut r = rule.split('/');
    let mut f = filter.split('/');
    loop {
        match (r.next(), f.next()) {
            (Some("#"), _) | (None, None) => return true,
            // `+` stands for any one level, but not for the levels of a `#`.
            (Some("+"), Some(level)) => {
                if level == "#" {
                    return false;
                }
            }
            // A literal level covers only the same literal (not `+` or `#`).
            (Some(a), Some(b)) => {
                if a != b {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The filter of the topics that match both `a` and `b` (both valid filters, without
/// `$share/`), or `None` when no topic matches both. (The topics two filters share always form
/// one filter: level by level, a literal is narrower than `+`, and the rest after a `#` is the
/// other filter's rest.)
pub fn intersection(a: &str, b: &str) -> Option<String> {
    // [MQTT-4.7.2-1] a filter starting with a wildcard matches no topic starting with `$`.
    if (a.starts_with('$') && starts_with_wildcard(b))
        || (b.starts_with('$') && starts_with_wildcard(a))
    {
        return None;
    }
    let mut x = a.split('/');
    let mut y = b.split('/');
    let mut levels: Vec<&str> = Vec::new();
    loop {
        match (x.next(), y.next()) {
            // `a/#` matches `a` too: a `#` takes the other filter's rest, even an empty one.
            (Some("#"), rest) => {
                levels.extend(rest);
                levels.extend(y);
                break;
            }
            (rest, Some("#")) => {
                levels.extend(rest);
                levels.extend(x);
                break;
            }
            (None, None) => break,
            (Some("+"), Some(level)) | (Some(level), Some("+")) => levels.push(level),
            (Some(p), Some(q)) if p == q => levels.push(p),
            _ => return None,
        }
    }
    Some(levels.join("/"))
}
