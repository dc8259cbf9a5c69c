//! The results of a run: a table for the terminal, JSON, and JUnit XML.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use crate::options::{Capabilities, Version};
use crate::outcome::Verdict;

/// One test's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestReport {
    /// The test's id.
    pub id: String,
    /// Its version.
    pub version: Version,
    /// The statements it checks.
    pub statements: Vec<String>,
    /// What it checks.
    pub summary: String,
    /// How it ended.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// How long it took.
    #[serde(serialize_with = "millis")]
    pub elapsed: Duration,
    /// Every packet of the test, in and out, decoded and in hex (kept for failures only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<String>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The results of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The broker's address.
    pub broker: String,
    /// What it offers, as the tests saw it.
    pub capabilities: Capabilities,
    /// How long the run took.
    #[serde(serialize_with = "millis")]
    pub elapsed: Duration,
    /// Every test's result, by id.
    pub tests: Vec<TestReport>,
}

/// Counts of a run's results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped (a feature missing).
    pub skipped: usize,
    /// Not applicable.
    pub not_applicable: usize,
}

impl Report {
    /// How many tests passed, failed, were skipped or did not apply.
    #[must_use]
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for t in &self.tests {
            match t.verdict {
                Verdict::Pass => c.passed += 1,
                Verdict::Fail { .. } => c.failed += 1,
                Verdict::Skip { .. } => c.skipped += 1,
                Verdict::NotApplicable { .. } => c.not_applicable += 1,
            }
        }
        c
    }

    /// The statements of `version` that passing tests checked.
    #[must_use]
    pub fn statements_passed(&self, version: Version) -> BTreeSet<&str> {
        self.tests
            .iter()
            .filter(|t| t.version == version && t.verdict == Verdict::Pass)
            .flat_map(|t| t.statements.iter().map(String::as_str))
            .collect()
    }

    /// The ids of the tests that failed.
    #[must_use]
    pub fn failed(&self) -> Vec<&str> {
        self.tests
            .iter()
            .filter(|t| t.verdict.is_fail())
            .map(|t| t.id.as_str())
            .collect()
    }

    /// The process exit status: 0 when every test that ran passed (and at least one ran), 1
    /// otherwise.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        let c = self.counts();
        i32::from(c.failed > 0 || c.passed == 0)
    }

    /// The table for a terminal: one line per test (statement, test, result), then the
    /// evidence of each failure and the totals.
    #[must_use]
    pub fn to_table(&self, verbose: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<7} {:<5} {:<52} statements",
            "version", "result", "test"
        );
        for t in &self.tests {
            let show = verbose || !matches!(t.verdict, Verdict::Pass);
            if !show {
                continue;
            }
            let _ = writeln!(
                s,
                "{:<7} {:<5} {:<52} {}",
                t.version.name(),
                t.verdict.word(),
                t.id,
                t.statements.join(" ")
            );
            match &t.verdict {
                Verdict::Skip { reason } | Verdict::NotApplicable { reason } => {
                    let _ = writeln!(s, "{:14}{reason}", "");
                }
                _ => {}
            }
        }
        for t in self.tests.iter().filter(|t| t.verdict.is_fail()) {
            if let Verdict::Fail {
                statement,
                expected,
                observed,
            } = &t.verdict
            {
                let _ = writeln!(s, "\nFAIL {} ({})", t.id, t.summary);
                if let Some(st) = statement {
                    let text = crate::statement_text(t.version, st).unwrap_or("");
                    let _ = writeln!(s, "  statement: [{st}] {text}");
                }
                let _ = writeln!(s, "  expected:  {expected}");
                let _ = writeln!(s, "  observed:  {observed}");
                let _ = writeln!(s, "  transcript:");
                for line in &t.transcript {
                    let _ = writeln!(s, "    {line}");
                }
            }
        }
        let c = self.counts();
        let _ = writeln!(
            s,
            "\n{} tests in {:.1} s: {} passed, {} failed, {} skipped, {} not applicable",
            self.tests.len(),
            self.elapsed.as_secs_f64(),
            c.passed,
            c.failed,
            c.skipped,
            c.not_applicable
        );
        for v in [Version::V5, Version::V3_1_1] {
            let n = self.statements_passed(v).len();
            if self.tests.iter().any(|t| t.version == v) {
                let _ = writeln!(s, "statements of {v} checked and passed: {n}");
            }
        }
        if c.passed == 0 && c.failed == 0 {
            let _ = writeln!(s, "no test ran (every one was skipped or not applicable)");
        }
        s
    }

    /// The report as pretty JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as JUnit XML: one test suite per version, one test case per test, the
    /// statements and the evidence in the failure message and system-out.
    #[must_use]
    pub fn to_junit(&self) -> String {
        use quick_junit::{NonSuccessKind, Report as JReport, TestCase, TestCaseStatus, TestSuite};
        let mut report = JReport::new("mqtt-conformance");
        report.set_time(self.elapsed);
        for v in [Version::V5, Version::V3_1_1] {
            let mut suite = TestSuite::new(format!("MQTT {v}"));
            for t in self.tests.iter().filter(|t| t.version == v) {
                let status = match &t.verdict {
                    Verdict::Pass => TestCaseStatus::success(),
                    Verdict::Fail {
                        statement,
                        expected,
                        observed,
                    } => {
                        let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                        let stmt = statement.as_deref().unwrap_or("-");
                        st.set_message(format!(
                            "[{stmt}] expected {expected}; observed {observed}"
                        ));
                        st.set_description(t.transcript.join("\n"));
                        st
                    }
                    Verdict::Skip { reason } | Verdict::NotApplicable { reason } => {
                        let mut st = TestCaseStatus::skipped();
                        st.set_message(reason.clone());
                        st
                    }
                };
                let mut case = TestCase::new(t.id.clone(), status);
                case.set_classname(format!("MQTT {v}"));
                case.set_time(t.elapsed);
                case.set_system_out(format!("{} [{}]", t.summary, t.statements.join(" ")));
                suite.add_test_case(case);
            }
            if !suite.test_cases.is_empty() {
                report.add_test_suite(suite);
            }
        }
        report
            .to_string()
            .unwrap_or_else(|e| format!("<!-- cannot render: {e} -->"))
    }
}
