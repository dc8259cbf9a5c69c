//! The broker's ACL (`mqtt_broker::acl`): the file format
//! and the decisions, without a process or a socket.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mqtt_broker::acl::{Access, Acl, Action, Client, Rule, covers, intersection};
use mqtt_broker::password::PasswordFile;
use mqtt_broker::policy::BrokerPolicy;
use mqtt_session::broker::{AuthDecision, ConnectionId, Policy};
use mqtt_session::codec::ReasonCode;

/// A client `c`, authenticated as `user`.
fn who(user: Option<&str>) -> Client<'_> {
    Client::new("c", user)
}

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
        pattern: false,
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
    assert!(acl.may_publish(who(None), "a"));
    assert!(!acl.may_publish(who(None), "b"));
    assert!(!acl.may_subscribe(who(None), "a"));
    assert!(parse("").rules.is_empty());
    let all = Acl::allow_all();
    assert!(all.may_publish(who(Some("x")), "any/topic"));
    assert!(all.may_subscribe(who(None), "#"));
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
    assert!(acl.may_publish(who(None), "news"));
    assert!(!acl.may_publish(who(None), "secret"));
    assert!(!acl.may_publish(who(None), "secret/a/b"));
    // The deny line comes first, so the later allow never applies...
    assert!(!acl.may_publish(who(None), "secret/open"));
    // ...not even to admin, whose rule is below it.
    assert!(!acl.may_publish(who(Some("admin")), "secret/a"));

    let acl = parse(
        "default deny\n\
         user admin\n\
         allow both #\n\
         user *\n\
         allow publish sensors/+/temp\n\
         deny publish $SYS/#\n",
    );
    assert!(acl.may_publish(who(Some("admin")), "anything/at/all"));
    assert!(acl.may_publish(who(Some("bob")), "sensors/k1/temp"));
    assert!(acl.may_publish(who(None), "sensors/k1/temp"));
    assert!(!acl.may_publish(who(None), "sensors/k1/hum"));
    // [MQTT-4.7.2-1] `#` does not match topics starting with `$`.
    assert!(!acl.may_publish(who(Some("admin")), "$SYS/uptime"));
}

#[test]
fn under_default_deny_a_filter_is_granted_where_an_allow_rule_overlaps_it() {
    let acl = parse("default deny\nallow subscribe sensors/#\n");
    assert!(acl.may_subscribe(who(None), "sensors/#"));
    assert!(acl.may_subscribe(who(None), "sensors"));
    assert!(acl.may_subscribe(who(None), "sensors/+/temp"));
    assert!(acl.may_subscribe(who(None), "sensors/k1/temp"));
    // Wider filters are granted: each message is checked on delivery, so they receive only
    // `sensors/...`.
    assert!(acl.may_subscribe(who(None), "#"));
    assert!(acl.may_subscribe(who(None), "+/k1/temp"));
    assert!(acl.may_read(who(None), "sensors/k1/temp"));
    assert!(!acl.may_read(who(None), "other/k1/temp"));
    // No allowed topic at all: refused.
    assert!(!acl.may_subscribe(who(None), "other"));
    assert!(!acl.may_subscribe(who(None), "other/#"));
    // [MQTT-4.7.2-1] `#` matches no `$` topic, so it does not open `$SYS`.
    assert!(!acl.may_subscribe(who(None), "$SYS/#"));
    // A shared subscription is judged by the filter after `$share/{ShareName}/`.
    assert!(acl.may_subscribe(who(None), "$share/g/sensors/+"));
    assert!(!acl.may_subscribe(who(None), "$share/g/other/+"));

    let acl = parse("default deny\nallow subscribe a/+\n");
    assert!(acl.may_subscribe(who(None), "a/b"));
    assert!(acl.may_subscribe(who(None), "a/+"));
    assert!(acl.may_subscribe(who(None), "a/#"));
    assert!(!acl.may_subscribe(who(None), "a/b/c"));
    assert!(!acl.may_subscribe(who(None), "a"));
}

#[test]
fn a_subscribe_is_refused_only_when_every_topic_of_its_filter_is_denied() {
    // The Paho interoperability suite's configuration: a monitoring client on `#` is served.
    let acl = parse("default allow\ndeny subscribe test/nosubscribe\n");
    assert!(acl.may_subscribe(who(None), "#"));
    assert!(acl.may_subscribe(who(None), "test/#"));
    assert!(acl.may_subscribe(who(None), "test/+"));
    assert!(!acl.may_subscribe(who(None), "test/nosubscribe"));
    assert!(!acl.may_read(who(None), "test/nosubscribe"));
    assert!(acl.may_read(who(None), "test/other"));

    let acl = parse("default allow\ndeny subscribe secret/#\n");
    assert!(acl.may_subscribe(who(None), "#"));
    assert!(acl.may_subscribe(who(None), "+/key"));
    assert!(acl.may_subscribe(who(None), "+"));
    assert!(acl.may_subscribe(who(None), "$share/g/+/+"));
    // Inside the denied filter: refused, shared or not.
    assert!(!acl.may_subscribe(who(None), "secret"));
    assert!(!acl.may_subscribe(who(None), "secret/#"));
    assert!(!acl.may_subscribe(who(None), "secret/+/x"));
    assert!(!acl.may_subscribe(who(None), "$share/g/secret/+"));
    assert!(!acl.may_read(who(None), "secret/a/b"));
    assert!(acl.may_read(who(None), "public/a"));

    // First match wins: an allow before the deny keeps its part of the filter open...
    let acl = parse("default deny\nallow subscribe secret/open\ndeny subscribe secret/#\n");
    assert!(acl.may_subscribe(who(None), "secret/#"));
    assert!(acl.may_read(who(None), "secret/open"));
    assert!(!acl.may_read(who(None), "secret/closed"));
    // ...and an allow after it opens only what the deny did not take.
    let acl = parse("default deny\ndeny subscribe secret/#\nallow subscribe secret/open\n");
    assert!(!acl.may_subscribe(who(None), "secret/#"));
    assert!(!acl.may_subscribe(who(None), "secret/open"));
    let acl = parse("default deny\ndeny subscribe a/b/#\nallow subscribe a/#\n");
    assert!(acl.may_subscribe(who(None), "a/+"));
    assert!(acl.may_subscribe(who(None), "#"));
    assert!(!acl.may_subscribe(who(None), "a/b/+"));
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
fn the_policy_asks_the_acl_with_the_authenticated_user_name() {
    let acl = parse("default deny\nuser u\nallow both t/#\n");
    let passwords = PasswordFile::parse("").unwrap();
    // With a password file, User Names were verified: `user` blocks apply.
    let mut policy = BrokerPolicy::new(acl.clone(), Some(passwords), false);
    assert!(policy.may_publish("c", Some("u"), "t/1"));
    assert!(!policy.may_publish("c", Some("v"), "t/1"));
    assert!(!policy.may_publish("c", None, "t/1"));
    assert!(policy.may_subscribe("c", Some("u"), "t/+"));
    assert!(policy.may_subscribe("c", Some("u"), "#"));
    assert!(!policy.may_subscribe("c", Some("v"), "#"));
    assert!(policy.may_receive("c", Some("u"), "t/1"));
    assert!(!policy.may_receive("c", Some("u"), "x/1"));
    assert!(!policy.may_receive("c", None, "t/1"));

    // Without one, nobody's User Name was verified: the `user` block applies to nobody.
    let mut policy = BrokerPolicy::new(acl, None, false);
    assert!(!policy.may_publish("c", Some("u"), "t/1"));
    assert!(!policy.may_subscribe("c", Some("u"), "t/+"));
    assert!(!policy.may_receive("c", Some("u"), "t/1"));
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
    assert!(acl.may_subscribe(who(admin), "#"));
    assert!(acl.may_publish(who(admin), "public/secret/x"));
    for user in [None, Some("bob")] {
        assert!(acl.may_subscribe(who(user), "public/news/#"));
        // Granted, but `public/secret/...` is never delivered through it.
        assert!(acl.may_subscribe(who(user), "public/#"));
        assert!(acl.may_read(who(user), "public/news/today"));
        assert!(!acl.may_read(who(user), "public/secret/x"));
        assert!(!acl.may_subscribe(who(user), "public/secret/x"));
        assert!(!acl.may_subscribe(who(user), "public/secret/#"));
        assert!(acl.may_publish(who(user), "public/k1/data"));
        assert!(!acl.may_publish(who(user), "public/k1/other"));
        assert!(!acl.may_subscribe(who(user), "private/x"));
    }
}

#[test]
fn patterns_stand_for_the_client_id_and_the_authenticated_user() {
    let acl = parse(
        "default deny\n\
         user admin\n\
         allow both #\n\
         # a pattern applies to every client, wherever it is written\n\
         pattern allow both devices/%c/#\n\
         pattern deny subscribe users/%u/private\n\
         pattern allow subscribe users/%u/#\n",
    );
    assert_eq!(acl.rules.len(), 4);
    assert!(acl.rules[1].pattern && acl.rules[1].user.is_none());
    let dev = Client::new("dev1", None);
    assert!(acl.may_publish(dev, "devices/dev1/temp"));
    assert!(acl.may_subscribe(dev, "devices/dev1/#"));
    assert!(!acl.may_publish(dev, "devices/dev2/temp"));
    assert!(!acl.may_subscribe(dev, "devices/+/temp") || acl.may_read(dev, "devices/dev1/temp"));
    assert!(!acl.may_read(dev, "devices/dev2/temp"));
    // `%u` needs an authenticated User Name.
    assert!(!acl.may_read(dev, "users/dev1/x"));
    let alice = Client::new("phone", Some("alice"));
    assert!(acl.may_read(alice, "users/alice/inbox"));
    assert!(!acl.may_read(alice, "users/alice/private"));
    assert!(!acl.may_read(alice, "users/bob/inbox"));
    assert!(acl.may_subscribe(alice, "users/alice/#"));
    assert!(!acl.may_subscribe(alice, "users/bob/#"));
    // A value that is not one literal level never matches: a client id `+` or `a/b` gets
    // nothing from `devices/%c/#`.
    for id in ["+", "#", "a/b", ""] {
        let c = Client::new(id, None);
        assert!(!acl.may_publish(c, "devices/a/b/x"), "{id:?}");
        assert!(!acl.may_subscribe(c, "devices/#"), "{id:?}");
    }
}

#[test]
fn pattern_lines_are_checked() {
    for (text, needle) in [
        ("pattern allow both devices/x%c/#\n", "whole topic level"),
        (
            "pattern publish devices/%c\n",
            "`pattern` takes `allow` or `deny`",
        ),
        ("pattern allow read devices/%c\n", "expected `publish`"),
        (
            "pattern allow both devices/%c/#/x\n",
            "not a valid topic filter",
        ),
    ] {
        let e = Acl::parse(text).unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains(needle), "{text:?}: {}", e.message);
    }
}

/// What the policy answers to a CONNECT: synchronously when no password needs checking,
/// deferred to the host when one does.
#[test]
fn the_policy_authenticates_with_the_password_file() {
    use mqtt_session::broker::ConnectionInfo;
    use mqtt_session::codec::ProtocolVersion;
    let transport = ConnectionInfo::default();
    let info = |username: Option<&'static str>, method: Option<&'static str>| {
        let mut info = mqtt_session::broker::ConnectInfo::new(
            ConnectionId(1),
            ProtocolVersion::V5,
            "c",
            &transport,
        );
        info.username = username;
        info.password = username.map(|_| b"pw".as_slice());
        info.authentication_method = method;
        info
    };
    // No password file: everyone, User Name or not.
    let mut open = BrokerPolicy::new(Acl::allow_all(), None, false);
    assert_eq!(open.authenticate(&info(None, None)), AuthDecision::Accept);
    assert_eq!(
        open.authenticate(&info(Some("x"), None)),
        AuthDecision::Accept
    );
    // Enhanced authentication is not offered. v5 [MQTT-4.12.0-1]
    assert_eq!(
        open.authenticate(&info(None, Some("SCRAM-SHA-1"))),
        AuthDecision::Reject(ReasonCode::BAD_AUTHENTICATION_METHOD)
    );
    let file = PasswordFile::parse("").unwrap();
    let mut closed = BrokerPolicy::new(Acl::allow_all(), Some(file.clone()), false);
    assert_eq!(
        closed.authenticate(&info(None, None)),
        AuthDecision::Reject(ReasonCode::NOT_AUTHORIZED)
    );
    assert_eq!(
        closed.authenticate(&info(Some("x"), None)),
        AuthDecision::Defer
    );
    let mut anonymous = BrokerPolicy::new(Acl::allow_all(), Some(file), true);
    assert_eq!(
        anonymous.authenticate(&info(None, None)),
        AuthDecision::Accept
    );
    assert_eq!(
        anonymous.authenticate(&info(Some("x"), None)),
        AuthDecision::Defer
    );
}
