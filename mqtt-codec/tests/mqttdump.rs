//! The `mqttdump` example, run as a program: output and exit statuses.
//!
//! `cargo test` builds the examples before it runs the tests, so the binary is found next to this
//! test's own executable (`target/<profile>/deps/mqttdump-…` → `target/<profile>/examples/
//! mqttdump`). When only this test was asked for (`cargo test --test mqttdump`) the example may
//! be missing or older than its sources; it is then built once with the `cargo` that built us.

// The helpers below are test code too: a failure to spawn or read the program fails the test.
#![allow(clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::SystemTime;

/// A valid MQTT 5.0 CONNECT (client id "abc", keep alive 60, clean start): 18 bytes.
const V5_CONNECT: &str = "10 10 00 04 4D 51 54 54 05 02 00 3C 00 00 03 61 62 63";
/// A valid MQTT 5.0 QoS 1 PUBLISH to "a/b", packet id 1, payload "hi": 12 bytes.
const V5_PUBLISH: &str = "32 0A 00 03 61 2F 62 00 01 00 68 69";
/// PINGREQ: 2 bytes.
const PINGREQ: &str = "C0 00";

/// A valid MQTT 3.1.1 CONNECT (level 4): 17 bytes.
const V311_CONNECT: &str = "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 03 61 62 63";
/// MQTT 3.1.1 SUBSCRIBE to "a/#" at QoS 1, packet id 10: 10 bytes.
const V311_SUBSCRIBE: &str = "82 08 00 0A 00 03 61 2F 23 01";
/// MQTT 3.1.1 QoS 0 PUBLISH to "a/b", payload "hi": 9 bytes.
const V311_PUBLISH: &str = "30 07 00 03 61 2F 62 68 69";
/// DISCONNECT: 2 bytes.
const DISCONNECT: &str = "E0 00";

/// An MQTT 3.1 CONNECT (protocol name "MQIsdp", level 3): 19 bytes.
const V31_CONNECT: &str = "10 11 00 06 4D 51 49 73 64 70 03 02 00 3C 00 03 61 62 63";

fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| newest_mtime(&entry.ok()?.path()))
        .max()
}

/// The example binary, built first if it is missing or older than its sources.
fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from target/<profile>/deps");
        let bin = profile_dir.join("examples").join("mqttdump");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let sources = [manifest.join("examples/mqttdump.rs"), manifest.join("src")]
            .iter()
            .filter_map(|p| newest_mtime(p))
            .max();
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let stale = match (built, sources) {
            (Some(built), Some(sources)) => built < sources,
            (Some(_), None) => false,
            (None, _) => true,
        };
        if stale {
            let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
                Some("debug") | None => "dev",
                Some(other) => other,
            };
            let target_dir = profile_dir.parent().expect("target directory");
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "mqtt-codec",
                    "--example",
                    "mqttdump",
                ])
                .arg("--profile")
                .arg(profile)
                .arg("--target-dir")
                .arg(target_dir)
                .current_dir(manifest)
                .status()
                .expect("run cargo build for the mqttdump example");
            assert!(status.success(), "cargo build --example mqttdump failed");
        }
        assert!(bin.is_file(), "{} not found", bin.display());
        bin
    })
}

/// What one run printed and how it exited.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit status\n{self:#?}");
        self
    }

    #[track_caller]
    fn assert_stdout(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.stdout
        );
        self
    }
}

fn run_with_stdin(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mqttdump");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for mqttdump");
    Run {
        code: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

fn run(args: &[&str]) -> Run {
    run_with_stdin(args, None)
}

/// Asserts a malformed-packet report: exit 1, the error line, the statement and reason code.
#[track_caller]
fn assert_malformed(r: &Run, error_line: &str, statement: &str, reason_code: &str) {
    r.assert_code(1)
        .assert_stdout(error_line)
        .assert_stdout(&format!("\nstatement: {statement}\n"))
        .assert_stdout(&format!("\nreason code: {reason_code}"));
}

#[test]
fn v5_stream_prints_every_packet() {
    let hex = format!("{V5_CONNECT} {V5_PUBLISH} {PINGREQ}");
    let r = run(&["--protocol", "5", &hex]);
    r.assert_code(0)
        .assert_stdout("#1 @0 len=18 CONNECT")
        .assert_stdout("protocol: V5")
        .assert_stdout("client_id: \"abc\"")
        .assert_stdout("#2 @18 len=12 PUBLISH")
        .assert_stdout("topic: \"a/b\"")
        .assert_stdout("payload: b\"hi\"")
        .assert_stdout("#3 @30 len=2 PINGREQ")
        .assert_stdout("ok: 3 packets, 32 bytes");
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    // Fields that are None are left out unless --full.
    assert!(!r.stdout.contains("topic_alias: None"), "{}", r.stdout);
    run(&["--protocol", "5", "--full", &hex])
        .assert_code(0)
        .assert_stdout("topic_alias: None");
}

#[test]
fn v311_stream_prints_every_packet() {
    let hex = format!("{V311_CONNECT} {V311_SUBSCRIBE} {V311_PUBLISH} {DISCONNECT}");
    run(&["--protocol", "4", &hex])
        .assert_code(0)
        .assert_stdout("#1 @0 len=17 CONNECT")
        .assert_stdout("protocol: V3_1_1")
        .assert_stdout("#2 @17 len=10 SUBSCRIBE")
        .assert_stdout("\"a/#\"")
        .assert_stdout("#3 @27 len=9 PUBLISH")
        .assert_stdout("#4 @36 len=2 DISCONNECT")
        .assert_stdout("ok: 4 packets, 38 bytes");
}

#[test]
fn v31_connect_with_protocol_3() {
    run(&["--protocol", "3", V31_CONNECT])
        .assert_code(0)
        .assert_stdout("#1 @0 len=19 CONNECT")
        .assert_stdout("protocol: V3_1")
        .assert_stdout("ok: 1 packet, 19 bytes");
}

#[test]
fn connect_is_decoded_by_its_own_level() {
    // A 5.0 CONNECT in a stream read as 3.1.1 still has its properties field decoded.
    run(&["--protocol", "4", V5_CONNECT])
        .assert_code(0)
        .assert_stdout("protocol: V5");
}

#[test]
fn empty_input_is_zero_packets() {
    run(&["--protocol", "5", ""])
        .assert_code(0)
        .assert_stdout("ok: 0 packets, 0 bytes");
    run(&["--protocol", "4", " \n\t "])
        .assert_code(0)
        .assert_stdout("ok: 0 packets");
}

// v5 [MQTT-3.3.1-4]
#[test]
fn v5_publish_with_qos_3_is_malformed() {
    let r = run(&["--protocol", "5", &format!("{PINGREQ} 36 00")]);
    // The packet before the malformed one is printed first.
    r.assert_stdout("#1 @0 len=2 PINGREQ");
    assert_malformed(
        &r,
        "error at byte 2: PUBLISH: PUBLISH has both QoS bits set [MQTT-3.3.1-4] \
         (reason code 0x81 Malformed Packet)",
        "MQTT-3.3.1-4",
        "0x81 Malformed Packet",
    );
    assert!(!r.stdout.contains("ok:"), "{}", r.stdout);
}

// v3.1.1 [MQTT-3.3.1-4]
#[test]
fn v311_publish_with_qos_3_is_malformed() {
    let r = run(&["--protocol", "4", "36 09 00 03 61 2F 62 00 01 68 69"]);
    assert_malformed(
        &r,
        "error at byte 0: PUBLISH",
        "MQTT-3.3.1-4",
        "0x81 Malformed Packet",
    );
}

// v5 [MQTT-1.5.5-1]
#[test]
fn v5_non_minimal_remaining_length_is_malformed() {
    // PINGREQ whose Remaining Length 0 is written in two bytes.
    let r = run(&["--protocol", "5", "C0 80 00"]);
    assert_malformed(
        &r,
        "error at byte 0: PINGREQ",
        "MQTT-1.5.5-1",
        "0x81 Malformed Packet",
    );
    // MQTT 3.1.1 has no such statement: the same bytes are one PINGREQ.
    run(&["--protocol", "4", "C0 80 00"])
        .assert_code(0)
        .assert_stdout("#1 @0 len=3 PINGREQ");
}

// v3.1.1 [MQTT-3.6.1-1]
#[test]
fn v311_pubrel_reserved_flags_are_malformed() {
    let r = run(&["--protocol", "4", "60 02 00 01"]);
    assert_malformed(
        &r,
        "error at byte 0: PUBREL",
        "MQTT-3.6.1-1",
        "0x81 Malformed Packet",
    );
    // With the flags the specification lists, it is a PUBREL.
    run(&["--protocol", "4", "62 02 00 01"])
        .assert_code(0)
        .assert_stdout("PUBREL");
}

// v5 [MQTT-3.3.2-2]
#[test]
fn v5_wildcard_in_topic_name_is_malformed() {
    // QoS 0 PUBLISH to "a/+", no properties.
    let r = run(&["--protocol", "5", "30 06 00 03 61 2F 2B 00"]);
    assert_malformed(
        &r,
        "error at byte 0: PUBLISH",
        "MQTT-3.3.2-2",
        "0x90 Topic Name invalid",
    );
}

// v3.1.1 [MQTT-3.3.2-2]
#[test]
fn v311_wildcard_in_topic_name_is_malformed() {
    // QoS 0 PUBLISH to "a/#", empty payload.
    let r = run(&["--protocol", "4", "30 05 00 03 61 2F 23"]);
    assert_malformed(&r, "error at byte 0: PUBLISH", "MQTT-3.3.2-2", "0x90");
}

#[test]
fn error_without_statement_names_the_section() {
    // A field runs past the Remaining Length: no normative statement, section 2.1.4.
    let r = run(&["--protocol", "5", "30 01 00"]);
    assert_malformed(
        &r,
        "error at byte 0: PUBLISH",
        "none (section 2.1.4)",
        "0x81",
    );
}

#[test]
fn truncated_input_is_incomplete() {
    let r = run(&["--protocol", "5", "30 0A 00 03"]);
    r.assert_code(2)
        .assert_stdout("incomplete: packet at byte 0 needs 8 more bytes");
    // After a whole packet, and with the fixed header itself cut short.
    run(&["--protocol", "5", &format!("{PINGREQ} 30 80")])
        .assert_code(2)
        .assert_stdout("#1 @0 len=2 PINGREQ")
        .assert_stdout("incomplete: packet at byte 2 needs at least 1 more byte");
    run(&["--protocol", "4", "32"])
        .assert_code(2)
        .assert_stdout("packet at byte 0");
}

#[test]
fn oversized_fixed_header_is_refused_at_once() {
    // Remaining Length 268 435 455 with no body: too large, not incomplete.
    let r = run(&[
        "--protocol",
        "5",
        "--max-packet-size",
        "100",
        "30 FF FF FF 7F",
    ]);
    assert_malformed(
        &r,
        "error at byte 0: PUBLISH: packet larger than the maximum packet size",
        "none (section 3.1.2.11.4)",
        "0x95 Packet too large",
    );
    // Without a limit the same header only waits for its body.
    run(&["--protocol", "5", "30 FF FF FF 7F"])
        .assert_code(2)
        .assert_stdout("needs 268435455 more bytes");
    // The limit counts the whole packet: PINGREQ is 2 bytes.
    run(&["--protocol", "5", "--max-packet-size=2", PINGREQ]).assert_code(0);
    run(&["--protocol", "5", "--max-packet-size=1", PINGREQ])
        .assert_code(1)
        .assert_stdout("0x95");
}

#[test]
fn hex_from_standard_input() {
    let input = format!(
        "{V311_CONNECT}\n{}\n\n{DISCONNECT}\n",
        V311_PUBLISH.to_lowercase()
    );
    run_with_stdin(&["--protocol", "4", "-"], Some(&input))
        .assert_code(0)
        .assert_stdout("#2 @17 len=9 PUBLISH")
        .assert_stdout("ok: 3 packets, 28 bytes");
    // v3.1.1 [MQTT-3.6.1-1]
    let r = run_with_stdin(&["--protocol", "4", "-"], Some("60 02 00 01"));
    assert_malformed(&r, "error at byte 0: PUBREL", "MQTT-3.6.1-1", "0x81");
    run_with_stdin(&["--protocol", "4", "-"], Some(""))
        .assert_code(0)
        .assert_stdout("ok: 0 packets");
}

#[test]
fn hex_arguments_are_joined() {
    run(&["--protocol", "5", "C0", "00", "D0 00"])
        .assert_code(0)
        .assert_stdout("ok: 2 packets");
}

#[test]
fn usage_errors_exit_64() {
    let cases: &[&[&str]] = &[
        &["--protocol", "5", "zz"],
        &["--protocol", "5", "0x30 00"],
        &["--protocol", "5", "300"],
        &["--protocol", "5", "C0 0"],
        &["C0 00"],
        &["--protocol", "6", "C0 00"],
        &["--protocol", "v5", "C0 00"],
        &["--protocol"],
        &["--protocol", "5"],
        &["--protocol", "5", "--protocol", "4", "C0 00"],
        &["--protocol", "5", "--max-packet-size", "ten", "C0 00"],
        &["--protocol", "5", "--max-packet-size", "0", "C0 00"],
        &[
            "--protocol",
            "5",
            "--max-packet-size",
            "4294967296",
            "C0 00",
        ],
        &["--protocol", "5", "--bogus", "C0 00"],
        &["--protocol", "5", "-", "C0 00"],
        &[],
    ];
    for args in cases {
        let r = run(args);
        assert_eq!(r.code, 64, "{args:?}\n{r:#?}");
        assert!(r.stdout.is_empty(), "{args:?}\n{r:#?}");
        assert!(r.stderr.starts_with("mqttdump: "), "{args:?}\n{r:#?}");
    }
    let r = run_with_stdin(&["--protocol", "5", "-"], Some("C0 0g"));
    assert_eq!(r.code, 64, "{r:#?}");
    assert!(r.stderr.contains("bad hex"), "{r:#?}");
}

#[test]
fn help_exits_0() {
    for flag in ["--help", "-h"] {
        let r = run(&[flag]);
        r.assert_code(0)
            .assert_stdout("Usage: mqttdump --protocol <3|4|5>");
        assert!(r.stderr.is_empty(), "{r:#?}");
    }
    // Even after other arguments.
    run(&["--protocol", "5", "--help"])
        .assert_code(0)
        .assert_stdout("Usage:");
}
