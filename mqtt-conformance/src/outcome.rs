//! What a test concludes: passed, failed with evidence, skipped or not applicable.

use std::fmt;

/// Why a test stopped before it passed: a failure with its evidence, or a reason not to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The broker did not do what a statement requires.
    Fail(Failure),
    /// The broker does not offer a feature the test needs (for example shared subscriptions):
    /// the statement could not be checked.
    Skip(String),
    /// The statement does not apply to this broker (for example a rule for brokers without
    /// retained messages, on a broker that has them).
    NotApplicable(String),
}

/// A failed check: the statement, what it requires, and what the broker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The statement that was broken, e.g. `MQTT-3.1.2-4`; `None` for a failure that is not a
    /// statement's (the broker could not be reached in the middle of a test, say).
    pub statement: Option<&'static str>,
    /// What the statement requires, in words.
    pub expected: String,
    /// What the broker did, in words (the packets themselves are in the test's transcript).
    pub observed: String,
}

impl Failure {
    /// A failure of `statement`.
    #[must_use]
    pub fn of(
        statement: &'static str,
        expected: impl Into<String>,
        observed: impl Into<String>,
    ) -> Self {
        Self {
            statement: Some(statement),
            expected: expected.into(),
            observed: observed.into(),
        }
    }

    /// A failure that names no statement (a broken connection, a time limit).
    #[must_use]
    pub fn plain(expected: impl Into<String>, observed: impl Into<String>) -> Self {
        Self {
            statement: None,
            expected: expected.into(),
            observed: observed.into(),
        }
    }

    /// This failure, attributed to `statement` when it names none yet.
    #[must_use]
    pub fn or_statement(mut self, statement: &'static str) -> Self {
        self.statement.get_or_insert(statement);
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = self.statement {
            write!(f, "[{s}] ")?;
        }
        write!(f, "expected {}; observed {}", self.expected, self.observed)
    }
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Self::Fail(f)
    }
}

/// What a test body returns: `Ok(())` when every check passed.
pub type TestResult = Result<(), Stop>;

/// Fails with `statement` unless `cond` holds.
///
/// ```
/// use mqtt_conformance::{ensure, TestResult};
/// fn check(reason: u8) -> TestResult {
///     ensure!(reason == 0, "MQTT-3.2.2-1", "CONNACK 0x00", "CONNACK {reason:#04x}");
///     Ok(())
/// }
/// assert!(check(0).is_ok());
/// assert!(check(0x80).is_err());
/// ```
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $statement:expr, $expected:expr, $($observed:tt)+) => {
        if !$cond {
            return Err($crate::Stop::Fail($crate::Failure::of(
                $statement,
                $expected,
                format!($($observed)+),
            )));
        }
    };
}

/// The final verdict of one test, as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// A check failed.
    Fail {
        /// The statement broken, if the failure names one.
        statement: Option<String>,
        /// What the statement requires.
        expected: String,
        /// What the broker did.
        observed: String,
    },
    /// The broker lacks a feature the test needs.
    Skip {
        /// Which feature, and how the tester knows.
        reason: String,
    },
    /// The statement does not apply to this broker.
    NotApplicable {
        /// Why not.
        reason: String,
    },
}

impl Verdict {
    /// The short word reports print: `pass`, `FAIL`, `skip` or `n/a`.
    #[must_use]
    pub fn word(&self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail { .. } => "FAIL",
            Self::Skip { .. } => "skip",
            Self::NotApplicable { .. } => "n/a",
        }
    }

    /// Whether this is a failure.
    #[must_use]
    pub fn is_fail(&self) -> bool {
        matches!(self, Self::Fail { .. })
    }
}

impl From<TestResult> for Verdict {
    fn from(r: TestResult) -> Self {
        match r {
            Ok(()) => Self::Pass,
            Err(Stop::Fail(f)) => Self::Fail {
                statement: f.statement.map(str::to_owned),
                expected: f.expected,
                observed: f.observed,
            },
            Err(Stop::Skip(reason)) => Self::Skip { reason },
            Err(Stop::NotApplicable(reason)) => Self::NotApplicable { reason },
        }
    }
}
