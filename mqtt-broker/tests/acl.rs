//! The broker's ACL (`mqtt_broker::acl`): the file format
//! and the decisions, without a process or a socket.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mqtt_broker::acl::{Access, Acl, Action, Rule, covers, intersection};
use mqtt_session::broker::Policy;

fn parse(text: &str) -> Acl {
    Acl::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_format_comments_default_users_and_rules() {
    let acl = parse(
        "# a comment\n\
         \n\
         allow subscribe public/#\n\
         user alice\n\
         \tdeny   publish   alice/ro  \n\
         allow both alice/#\n\
         user *\n\
         default allow\n\
         deny publish a b/c\n",
    );
    let rule = |user: Option<&str>, access, action, filter: &str| Rule {
        user: user.map(str::to_owned),
        access,
        action,
        filter: filter.to_owned(),
    };
    assert_eq!(
        acl,
        Acl {
            default: Access::Allow,
            rules: vec![
                rule(None, Access::Allow, Action::Subscribe, "public/#"),
                rule(Some("alice"), Access::Deny, Action::Publish, "alice/ro"),
                rule(Some("alice"), Access::Allow, Action::Both, "alice/#"),
                // The filter is the rest of the line: spaces inside are part of it.
                rule(None, Access::Deny, Action::Publish, "a b/c"),
            ],
        }
    );
}

#[test]
fn the_default_is_deny_when_the_file_does_not_say() {
    let acl = parse("allow publish a\n");
    assert_eq!(acl.default, Access::Deny);
    assert!(acl.may_publish(None, "a"));
    assert!(!acl.may_publish(None, "b"));
    assert!(!acl.may_subscribe(None, "a"));
    assert!(parse("").rules.is_empty());
    let all = Acl::allow_all();
    assert!(all.may_publish(Some("x"), "any/topic"));
    assert!(all.may_subscribe(None, "#"));
}

#[test]
fn errors_name_the_line() {
    for (text, line, needle) in [
        ("default maybe\n", 1, "`default` takes"),
        ("default deny\ndefault allow\n", 2, "second `default`"),
        ("\nuser\n", 2, "`user` takes one User Name"),
        ("user a b\n", 1, "`user` takes one User Name"),
        ("allow read a\n", 1, "expected `publish`"),
        ("allow publish\n", 1, "no topic filter"),
        ("# ok\nallow publish a/#/b\n", 2, "not a valid topic filter"),
        ("allow subscribe sport+\n", 1, "not a valid topic filter"),
        ("allow subscribe $share/g/a\n", 1, "$share"),
        ("permit publish a\n", 1, "unknown keyword"),
    ] {
        let err = Acl::parse(text).expect_err(text);
        assert_eq!(err.line, line, "{text:?}: {err}");
        assert!(err.message.contains(needle), "{text:?}: {err}");
        assert!(err.to_string().starts_with(&format!("ACL line {line}: ")));
    }
}

#[test]
fn publish_rules_match_the_topic_and_the_first_match_wins() {
    let acl = parse(
        "default allow\n\
         deny publish secret/#\n\
         allow publish secret/open\n\
         user admin\n\
         allow publish secret/#\n",
    );
    assert!(acl.may_publish(None, "news"));
    assert!(!acl.may_publish(None, "secret"));
    assert!(!acl.may_publish(None, "secret/a/b"));
    // The deny line comes first, so the later allow never applies...
    assert!(!acl.may_publish(None, "secret/open"));
    // ...not even to admin, whose rule is below it.
    assert!(!acl.may_publish(Some("admin"), "secret/a"));

    let acl = parse(
        "default deny\n\
         user admin\n\
         allow both #\n\
         user *\n\
         allow publish sensors/+/temp\n\
         deny publish $SYS/#\n",
    );
    assert!(acl.may_publish(Some("admin"), "anything/at/all"));
    assert!(acl.may_publish(Some("bob"), "sensors/k1/temp"));
    assert!(acl.may_publish(None, "sensors/k1/temp"));
    assert!(!acl.may_publish(None, "sensors/k1/hum"));
    // [MQTT-4.7.2-1] `#` does not match topics starting with `$`.
    assert!(!acl.may_publish(Some("admin"), "$SYS/uptime"));
}

#[test]
fn under_default_deny_a_filter_is_granted_where_an_allow_rule_overlaps_it() {
    let acl = parse("default deny\nallow subscribe sensors/#\n");
    assert!(acl.may_subscribe(None, "sensors/#"));
    assert!(acl.may_subscribe(None, "sensors"));
    assert!(acl.may_subscribe(None, "sensors/+/temp"));
    assert!(acl.may_subscribe(None, "sensors/k1/temp"));
    // Wider filters are granted: each message is checked on delivery, so they receive only
    // `sensors/...`.
    assert!(acl.may_subscribe(None, "#"));
    assert!(acl.may_subscribe(None, "+/k1/temp"));
    assert!(acl.may_read(None, "sensors/k1/temp"));
    assert!(!acl.may_read(None, "other/k1/temp"));
    // No allowed topic at all: refused.
    assert!(!acl.may_subscribe(None, "other"));
    assert!(!acl.may_subscribe(None, "other/#"));
    // [MQTT-4.7.2-1] `#` matches no `$` topic, so it does not open `$SYS`.
    assert!(!acl.may_subscribe(None, "$SYS/#"));
    // A shared subscription is judged by the filter after `$share/{ShareName}/`.
    assert!(acl.may_subscribe(None, "$share/g/sensors/+"));
    assert!(!acl.may_subscribe(None, "$share/g/other/+"));

    let acl = parse("default deny\nallow subscribe a/+\n");
    assert!(acl.may_subscribe(None, "a/b"));
    assert!(acl.may_subscribe(None, "a/+"));
    assert!(acl.may_subscribe(None, "a/#"));
    assert!(!acl.may_subscribe(None, "a/b/c"));
    assert!(!acl.may_subscribe(None, "a"));
}

#[test]
fn a_subscribe_is_refused_only_when_every_topic_of_its_filter_is_denied() {
    // The Paho interoperability suite's configuration: a monitoring client on `#` is served.
    let acl = parse("default allow\ndeny subscribe test/nosubscribe\n");
    assert!(acl.may_subscribe(None, "#"));
    assert!(acl.may_subscribe(None, "test/#"));
    assert!(acl.may_subscribe(None, "test/+"));
    assert!(!acl.may_subscribe(None, "test/nosubscribe"));
    assert!(!acl.may_read(None, "test/nosubscribe"));
    assert!(acl.may_read(None, "test/other"));

    let acl = parse("default allow\ndeny subscribe secret/#\n");
    assert!(acl.may_subscribe(None, "#"));
    assert!(acl.may_subscribe(None, "+/key"));
    assert!(acl.may_subscribe(None, "+"));
    assert!(acl.may_subscribe(None, "$share/g/+/+"));
    // Inside the denied filter: refused, shared or not.
    assert!(!acl.may_subscribe(None, "secret"));
    assert!(!acl.may_subscribe(None, "secret/#"));
    assert!(!acl.may_subscribe(None, "secret/+/x"));
    assert!(!acl.may_subscribe(None, "$share/g/secret/+"));
    assert!(!acl.may_read(None, "secret/a/b"));
    assert!(acl.may_read(None, "public/a"));

    // First match wins: an allow before the deny keeps its part of the filter open...
    let acl = parse("default deny\nallow subscribe secret/open\ndeny subscribe secret/#\n");
    assert!(acl.may_subscribe(None, "secret/#"));
    assert!(acl.may_read(None, "secret/open"));
    assert!(!acl.may_read(None, "secret/closed"));
    // ...and an allow after it opens only what the deny did not take.
    let acl = parse("default deny\ndeny subscribe secret/#\nallow subscribe secret/open\n");
    assert!(!acl.may_subscribe(None, "secret/#"));
    assert!(!acl.may_subscribe(None, "secret/open"));
    let acl = parse("default deny\ndeny subscribe a/b/#\nallow subscribe a/#\n");
    assert!(acl.may_subscribe(None, "a/+"));
    assert!(acl.may_subscribe(None, "#"));
    assert!(!acl.may_subscribe(None, "a/b/+"));
}

#[test]
fn the_filter_relations() {
    // covers(rule, requested): every topic `requested` matches, `rule` matches.
    for (rule, filter, expected) in [
        ("#", "a/b", true),
        ("#", "#", true),
        ("#", "$SYS/x", false),
        ("$SYS/#", "$SYS/+", true),
        ("a/#", "a", true),
        ("a", "a/#", false),
        ("+", "+", true),
        ("+", "#", false),
        ("+/b", "a/b", true),
        ("a/b", "+/b", false),
        ("+/+", "a", false),
        ("a/+/c", "a/b/c", true),
    ] {
        assert_eq!(
            covers(rule, filter),
            expected,
            "covers({rule:?}, {filter:?})"
        );
    }
    // intersection(a, b): the filter of the topics matching both.
    for (a, b, expected) in [
        ("#", "a/+", Some("a/+")),
        ("a/#", "a", Some("a")),
        ("a/+/#", "+/b", Some("a/b")),
        ("+/b", "a/+", Some("a/b")),
        ("+", "#", Some("+")),
        ("#", "#", Some("#")),
        ("a/+/c", "a/#", Some("a/+/c")),
        ("a/b", "a/c", None),
        ("a", "a/b", None),
        ("#", "$SYS/#", None),
        ("$SYS/#", "$SYS/+/x", Some("$SYS/+/x")),
    ] {
        assert_eq!(
            intersection(a, b).as_deref(),
            expected,
            "intersection({a:?}, {b:?})"
        );
        assert_eq!(
            intersection(b, a).as_deref(),
            expected,
            "intersection({b:?}, {a:?})"
        );
    }
    // overlaps(a, b): some topic matches both.
    for (a, b, expected) in [
        ("#", "a", true),
        ("a/#", "a", true),
        ("a", "a/b", false),
        ("+/b", "a/+", true),
        ("a/b", "a/c", false),
        ("#", "$SYS/#", false),
        ("+/x", "$SYS/x", false),
        ("$SYS/+", "$SYS/#", true),
        ("+", "a/b", false),
    ] {
        assert_eq!(
            intersection(a, b).is_some(),
            expected,
            "overlaps({a:?}, {b:?})"
        );
        assert_eq!(
            intersection(b, a).is_some(),
            expected,
            "overlaps({b:?}, {a:?})"
        );
    }
}

#[test]
fn the_policy_asks_the_acl_with_the_user_name() {
    let mut policy = mqtt_broker::acl::AclPolicy {
        acl: parse("default deny\nuser u\nallow both t/#\n"),
    };
    assert!(policy.may_publish("c", Some("u"), "t/1"));
    assert!(!policy.may_publish("c", Some("v"), "t/1"));
    assert!(!policy.may_publish("c", None, "t/1"));
    assert!(policy.may_subscribe("c", Some("u"), "t/+"));
    assert!(policy.may_subscribe("c", Some("u"), "#"));
    assert!(!policy.may_subscribe("c", Some("v"), "#"));
    assert!(policy.may_receive("c", Some("u"), "t/1"));
    assert!(!policy.may_receive("c", Some("u"), "x/1"));
    assert!(!policy.may_receive("c", None, "t/1"));
}

/// The example of the README and of the broker's documentation does what they say.
#[test]
fn the_documented_example() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```text\ndefault deny\n")
        .expect("the README's ACL example")
        + "```text\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let acl = parse(&readme[start..end]);
    let main = include_str!("../src/acl.rs");
    let documented: String = main
        .lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .skip_while(|l| *l != "default deny")
        .take_while(|l| !l.starts_with("```"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(parse(&documented), acl, "src/acl.rs and README.md differ");

    let admin = Some("admin");
    assert!(acl.may_subscribe(admin, "#"));
    assert!(acl.may_publish(admin, "public/secret/x"));
    for user in [None, Some("bob")] {
        assert!(acl.may_subscribe(user, "public/news/#"));
        // Granted, but `public/secret/...` is never delivered through it.
        assert!(acl.may_subscribe(user, "public/#"));
        assert!(acl.may_read(user, "public/news/today"));
        assert!(!acl.may_read(user, "public/secret/x"));
        assert!(!acl.may_subscribe(user, "public/secret/x"));
        assert!(!acl.may_subscribe(user, "public/secret/#"));
        assert!(acl.may_publish(user, "public/k1/data"));
        assert!(!acl.may_publish(user, "public/k1/other"));
        assert!(!acl.may_subscribe(user, "private/x"));
    }
}
