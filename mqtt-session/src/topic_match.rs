//! Matching one Topic Filter against one Topic Name (section 4.7), for the cases where a tree
//! is not worth it (retained messages on subscribe).

/// Whether `filter` (already validated, without a `$share/` prefix) matches `topic`.
///
/// `+` matches one level, `#` the parent level and every level below; a filter starting with a
/// wildcard does not match a topic starting with `$` [MQTT-4.7.2-1]; levels are compared byte
/// for byte [MQTT-4.7.3-4].
#[must_use]
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    // v5 [MQTT-4.7.1-1] [MQTT-4.7.1-2]
    // v3.1.1 [MQTT-4.7.1-2] [MQTT-4.7.1-3]
    #[test]
    fn wildcards_of_section_4_7_1() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "a/b"));
        assert!(matches("sport/+", "sport/"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    // v5 v3.1.1 [MQTT-4.7.2-1]
    #[test]
    fn dollar_topics_are_not_matched_by_leading_wildcards() {
        assert!(!matches("#", "$SYS/monitor/Clients"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    }
}
