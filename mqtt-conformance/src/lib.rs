//! A black-box conformance tester for MQTT brokers, built on the strict codec of this
//! workspace.
//!
//! It connects to a running broker as ordinary clients, sends stimuli (well-formed packets,
//! and malformed or out-of-order ones written byte by byte), and checks the broker's
//! reactions against the normative statements of MQTT 5.0 and 3.1.1. Every test names the
//! statements it checks, and a failure shows the statement, what it requires, what the broker
//! did, and the test's transcript: every packet both ways, decoded and in hex.
//!
//! Every packet the broker sends in any test goes through the strict decoder of `mqtt-codec`,
//! so a malformed packet from the broker fails the test it arrived in, naming the rule it
//! breaks. That guard does not count as covering a statement: a statement counts only where a
//! test sends a stimulus and asserts the reaction the statement names.
//!
//! # From the command line
//!
//! ```text
//! mqtt-conformance --broker 127.0.0.1:1883 [--protocol 5|3.1.1|both] [--filter 'v5.connect.*']
//! ```
//!
//! exits 0 when every test that ran passed, 1 when one failed (or none ran), and 2 when the
//! broker cannot be reached or the configuration is wrong. `--list` prints the tests and their
//! statements; `--json FILE` and `--junit FILE` write reports.
//!
//! # From a broker's own tests
//!
//! ```no_run
//! # async fn check() -> Result<(), Box<dyn std::error::Error>> {
//! use mqtt_conformance::{Options, Protocols};
//!
//! let options = Options::new("127.0.0.1:1883").with_protocols(Protocols::Both);
//! let report = mqtt_conformance::run(&options).await?;
//! println!("{}", report.to_table(false));
//! assert_eq!(report.counts().failed, 0, "{:?}", report.failed());
//! # Ok(())
//! # }
//! ```
//!
//! # Capabilities
//!
//! What the broker offers (Maximum QoS, retained messages, wildcard and shared subscriptions,
//! Subscription Identifiers, Topic Alias Maximum, Maximum Packet Size) is read from its 5.0
//! CONNACK, and can be declared instead ([`Declared`]). A test whose feature the broker does
//! not offer is *skipped*, with the reason; a rule for brokers that lack a feature is *not
//! applicable* to one that has it.
#![forbid(unsafe_code)]
// A host, not an engine: it owns sockets and the clock (timeouts, the run token).
#![allow(clippy::disallowed_methods)]

mod conn;
pub mod ctx;
mod options;
mod outcome;
mod report;
mod runner;
pub mod suite;

pub use conn::{Conn, Received, brief, hex};
pub use ctx::Ctx;
pub use options::{Capabilities, Declared, Options, Protocols, Version};
pub use outcome::{Failure, Stop, TestResult, Verdict};
pub use report::{Counts, Report, TestReport};
pub use runner::{RunError, glob, run, selected};

/// The normative statements of MQTT 5.0, `id<TAB>text` per line.
pub const STATEMENTS_V5: &str = include_str!("../../spec/mqtt-v5.0-statements.tsv");
/// The normative statements of MQTT 3.1.1, `id<TAB>text` per line.
pub const STATEMENTS_V311: &str = include_str!("../../spec/mqtt-v3.1.1-statements.tsv");
/// The statements no black-box test can observe, and why: `VERSION<TAB>ID<TAB>why` per line
/// (`#` starts a comment). `docs/conformance.md` shows them.
pub const NOT_OBSERVABLE: &str = include_str!("../not-observable.tsv");

/// The text of statement `id` of `version`.
#[must_use]
pub fn statement_text(version: Version, id: &str) -> Option<&'static str> {
    let list = match version {
        Version::V5 => STATEMENTS_V5,
        Version::V3_1_1 => STATEMENTS_V311,
    };
    list.lines().find_map(|l| {
        let (i, text) = l.split_once('\t')?;
        (i == id).then_some(text)
    })
}

/// Every test: its id, version and statements (for `--list` and the conformance table).
#[must_use]
pub fn catalog() -> Vec<suite::TestCase> {
    suite::all()
}
