//! The `mqtt-conformance` binary: `--list`, the exit status for an unreachable broker and for
//! a bad configuration file, and the reports (`--json`, `--junit`) of a run against a broker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn tester() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mqtt-conformance"))
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mqtt-conformance-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn list_prints_every_test_with_its_statements_and_runs_nothing() {
    let out = tester()
        .args(["--broker", "127.0.0.1:1", "--list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let catalog = mqtt_conformance::catalog();
    for t in &catalog {
        assert!(text.contains(t.id), "{} missing from --list", t.id);
    }
    assert!(text.contains("v5.connect.second_connect") && text.contains("MQTT-3.1.0-2"));
}

#[test]
fn list_filters_by_statement_and_by_test_id() {
    let out = tester()
        .args(["--list", "--filter", "MQTT-3.1.0-2", "--protocol", "5"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("v5.connect.second_connect"), "{text}");
    assert!(!text.contains("v311."), "{text}");
    assert!(!text.contains("v5.connect.reserved_flag"), "{text}");
    let out = tester()
        .args(["--list", "--filter", "v311.connect.*"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("v311.connect.second_connect") && !text.contains("v5."),
        "{text}"
    );
}

#[test]
fn an_unreachable_broker_exits_2() {
    // Port 1 on loopback: nothing listens there.
    let out = tester()
        .args(["--broker", "127.0.0.1:1", "--answer-within-ms", "500"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

#[test]
fn a_bad_configuration_file_exits_2_naming_the_file_and_key() {
    let path = temp("bad.toml");
    std::fs::write(
        &path,
        "broker = \"127.0.0.1:1883\"\n[capabilities]\nmaximum_qos = 3\n",
    )
    .unwrap();
    let out = tester().arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("maximum_qos"), "{err}");

    std::fs::write(&path, "broker = \"127.0.0.1:1883\"\nretian = true\n").unwrap();
    let out = tester().arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("bad.toml") && err.contains("retian") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn glob_patterns_match_ids_and_statements() {
    use mqtt_conformance::glob;
    assert!(glob("MQTT-3.1.2-*", "MQTT-3.1.2-10"));
    assert!(!glob("MQTT-3.1.2-*", "MQTT-3.1.3-1"));
    assert!(glob("v5.*.second_*", "v5.connect.second_connect"));
    assert!(glob("*", "anything"));
    assert!(glob("exact", "exact"));
    assert!(!glob("exact", "exactly"));
}

#[test]
fn a_failure_is_reported_with_its_statement_evidence_and_transcript_in_every_format() {
    use mqtt_conformance::{Report, TestReport, Verdict, Version};
    use std::time::Duration;
    let caps = mqtt_conformance::Capabilities::defaults(&mqtt_conformance::Declared::default());
    let report = Report {
        broker: "127.0.0.1:1883".into(),
        capabilities: caps,
        elapsed: Duration::from_millis(1500),
        tests: vec![
            TestReport {
                id: "v5.connect.second_connect".into(),
                version: Version::V5,
                statements: vec!["MQTT-3.1.0-2".into()],
                summary: "a second CONNECT closes the connection".into(),
                verdict: Verdict::Fail {
                    statement: Some("MQTT-3.1.0-2".into()),
                    expected: "the connection closed".into(),
                    observed: "still open after 3s".into(),
                },
                elapsed: Duration::from_millis(3000),
                transcript: vec![
                    "[a] -> CONNECT 10 0d".into(),
                    "[a] <- CONNACK 20 03 00 00 00".into(),
                ],
            },
            TestReport {
                id: "v5.retain.x".into(),
                version: Version::V5,
                statements: vec!["MQTT-3.3.1-5".into()],
                summary: "s".into(),
                verdict: Verdict::Skip {
                    reason: "the broker has no retained messages".into(),
                },
                elapsed: Duration::ZERO,
                transcript: vec![],
            },
        ],
    };
    assert_eq!(report.exit_code(), 1);
    let table = report.to_table(false);
    assert!(table.contains("FAIL v5.connect.second_connect"), "{table}");
    // The statement's text, from the specification's list.
    assert!(
        table.contains("The Server MUST process a second CONNECT packet"),
        "{table}"
    );
    assert!(
        table.contains("still open after 3s") && table.contains("<- CONNACK 20 03"),
        "{table}"
    );
    assert!(
        table.contains("the broker has no retained messages"),
        "{table}"
    );

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let first = &json["tests"][0];
    assert_eq!(first["result"], "fail");
    assert_eq!(first["statement"], "MQTT-3.1.0-2");
    assert_eq!(first["transcript"][1], "[a] <- CONNACK 20 03 00 00 00");
    assert_eq!(json["tests"][1]["result"], "skip");

    let junit = report.to_junit();
    assert!(junit.contains("<testsuite name=\"MQTT 5.0\""), "{junit}");
    assert!(
        junit.contains("<failure")
            && junit.contains("[MQTT-3.1.0-2] expected the connection closed"),
        "{junit}"
    );
    assert!(junit.contains("<skipped"), "{junit}");
}

#[test]
fn a_run_in_which_nothing_ran_exits_1_and_says_so() {
    use mqtt_conformance::{Report, TestReport, Verdict, Version};
    use std::time::Duration;
    let report = Report {
        broker: "b".into(),
        capabilities: mqtt_conformance::Capabilities::defaults(&Default::default()),
        elapsed: Duration::ZERO,
        tests: vec![TestReport {
            id: "v5.shared.x".into(),
            version: Version::V5,
            statements: vec![],
            summary: "s".into(),
            verdict: Verdict::Skip {
                reason: "no shared subscriptions".into(),
            },
            elapsed: Duration::ZERO,
            transcript: vec![],
        }],
    };
    assert_eq!(report.exit_code(), 1);
    assert!(report.to_table(false).contains("no test ran"));
}

#[test]
fn test_ids_are_unique_and_name_their_version() {
    let catalog = mqtt_conformance::catalog();
    let mut seen = std::collections::BTreeSet::new();
    for t in &catalog {
        assert!(seen.insert(t.id), "{} registered twice", t.id);
        let prefix = match t.version {
            mqtt_conformance::Version::V5 => "v5.",
            mqtt_conformance::Version::V3_1_1 => "v311.",
        };
        assert!(t.id.starts_with(prefix), "{}", t.id);
        for s in t.statements {
            assert!(
                mqtt_conformance::statement_text(t.version, s).is_some(),
                "{} cites {s}, which is not a statement of {}",
                t.id,
                t.version
            );
        }
    }
}
