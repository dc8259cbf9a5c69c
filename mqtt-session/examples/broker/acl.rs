//! The access control list of the example broker (`--acl FILE`): who may publish to which
//! topics and subscribe to which filters. The format is described in the broker's own
//! documentation (`main.rs`) and in the README; in short:
//!
//! ```text
//! # a comment (the parenthesised notes below are not part of the format)
//! default deny                      (allow | deny, at most once; deny when absent)
//! user admin                        (from here: for the User Name "admin" only)
//! allow both #
//! user *                            (from here: for every client again)
//! deny subscribe public/secret/#    (tried before the next rule, so it narrows it)
//! allow subscribe public/#
//! allow publish public/+/data
//! ```
//!
//! Rules are tried in file order and the first that applies decides; when none applies, the
//! default does. Which rules apply:
//!
//! - PUBLISH to a topic: a rule whose filter matches the topic.
//! - SUBSCRIBE to a filter (a shared subscription's without its `$share/{ShareName}/`): an
//!   `allow` rule when its filter matches *every* topic the requested filter can match (so
//!   `allow subscribe sensors/#` permits `sensors/+/temp` but not `#`); a `deny` rule when its
//!   filter matches *some* topic the requested filter can match (so `deny subscribe secret/#`
//!   refuses `#` and `+/key` too). A client can never receive through a subscription what an
//!   earlier `deny` forbids.

use std::fmt;

use mqtt_session::broker::Policy;
use mqtt_session::codec::TopicFilter;
use mqtt_session::topic_match::matches;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The action is allowed.
    Allow,
    /// The action is refused (PUBACK/PUBREC or SUBACK with 0x87 Not authorized in MQTT 5.0).
    Deny,
}

/// What a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// PUBLISH (wills included, when the engine asks).
    Publish,
    /// SUBSCRIBE.
    Subscribe,
    /// Both.
    Both,
}

/// One `allow|deny publish|subscribe|both FILTER` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    /// The User Name it is for (`None`: every client, with or without a User Name).
    pub(crate) user: Option<String>,
    /// Allow or deny.
    pub(crate) access: Access,
    /// Publish, subscribe or both.
    pub(crate) action: Action,
    /// The Topic Filter (validated; no `$share/` prefix).
    pub(crate) filter: String,
}

/// A parsed ACL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Acl {
    /// The decision when no rule applies.
    pub(crate) default: Access,
    /// The rules, in file order.
    pub(crate) rules: Vec<Rule>,
}

/// A line of an ACL file that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// The line number (from 1).
    pub(crate) line: usize,
    /// What is wrong with it.
    pub(crate) message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ACL line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

impl Acl {
    /// An ACL that allows everything (the broker without `--acl`).
    pub(crate) fn allow_all() -> Self {
        Self {
            default: Access::Allow,
            rules: Vec::new(),
        }
    }

    /// Parses the text of an ACL file.
    pub(crate) fn parse(text: &str) -> Result<Self, ParseError> {
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
                "allow" | "deny" => {
                    let access = if keyword == "allow" {
                        Access::Allow
                    } else {
                        Access::Deny
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
                    if let Err(violation) = TopicFilter::try_from(filter) {
                        return Err(err(format!(
                            "{filter:?} is not a valid topic filter: {violation}"
                        )));
                    }
                    rules.push(Rule {
                        user: user.clone(),
                        access,
                        action,
                        filter: filter.to_owned(),
                    });
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword {other:?} (expected `default`, `user`, `allow` or `deny`)"
                    )));
                }
            }
        }
        Ok(Self {
            default: default.unwrap_or(Access::Deny),
            rules,
        })
    }

    /// Whether a client with `username` may publish to `topic`.
    pub(crate) fn may_publish(&self, username: Option<&str>, topic: &str) -> bool {
        self.decide(username, Action::Publish, |rule| {
            matches(&rule.filter, topic)
        })
    }

    /// Whether a client with `username` may subscribe to `filter` (the full filter of the
    /// SUBSCRIBE: a `$share/{ShareName}/` prefix is removed first).
    pub(crate) fn may_subscribe(&self, username: Option<&str>, filter: &str) -> bool {
        let filter = filter
            .strip_prefix("$share/")
            .and_then(|rest| rest.split_once('/'))
            .map_or(filter, |(_, inner)| inner);
        self.decide(username, Action::Subscribe, |rule| match rule.access {
            Access::Allow => covers(&rule.filter, filter),
            Access::Deny => overlaps(&rule.filter, filter),
        })
    }

    fn decide(
        &self,
        username: Option<&str>,
        action: Action,
        applies: impl Fn(&Rule) -> bool,
    ) -> bool {
        let access = self
            .rules
            .iter()
            .filter(|r| r.action == action || r.action == Action::Both)
            .filter(|r| r.user.is_none() || r.user.as_deref() == username)
            .find(|r| applies(r))
            .map_or(self.default, |r| r.access);
        access == Access::Allow
    }
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
pub(crate) fn covers(rule: &str, filter: &str) -> bool {
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

/// Whether some topic matches both `a` and `b` (both valid filters).
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    if (a.starts_with('$') && starts_with_wildcard(b))
        || (b.starts_with('$') && starts_with_wildcard(a))
    {
        return false;
    }
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            // `a/#` matches `a` too, so `#` overlaps even a filter that has ended.
            (Some("#"), _) | (_, Some("#")) | (None, None) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(p), Some(q)) => {
                if p != q {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The broker's [`Policy`]: everyone may connect (the engine's default authentication), and
/// the ACL decides on PUBLISH and SUBSCRIBE.
#[derive(Debug, Clone)]
pub(crate) struct AclPolicy {
    /// The rules.
    pub(crate) acl: Acl,
}

impl Policy for AclPolicy {
    fn may_publish(&mut self, client_id: &str, username: Option<&str>, topic: &str) -> bool {
        let allowed = self.acl.may_publish(username, topic);
        if !allowed {
            tracing::info!(client_id, username, topic, "publish denied by the ACL");
        }
        allowed
    }

    fn may_subscribe(&mut self, client_id: &str, username: Option<&str>, filter: &str) -> bool {
        let allowed = self.acl.may_subscribe(username, filter);
        if !allowed {
            tracing::info!(client_id, username, filter, "subscribe denied by the ACL");
        }
        allowed
    }
}
