//! Discovers the broker's capabilities, then runs the selected tests: the independent ones in
//! parallel, those on shared state one at a time, each within its time limit.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mqtt_codec::ReasonCode;
use mqtt_transport::Endpoint;
use tokio::sync::Semaphore;

use crate::ctx::{Ctx, Target};
use crate::options::{Capabilities, Options, Version};
use crate::outcome::{Stop, Verdict};
use crate::report::{Report, TestReport};
use crate::suite::{self, TestCase};

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The options are wrong.
    Config(String),
    /// The broker could not be reached, or its first CONNACK was not a success.
    Unreachable(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(m) => write!(f, "configuration: {m}"),
            Self::Unreachable(m) => write!(f, "broker: {m}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
#[must_use]
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(at) => rest = rest.get(at + p.len()..).unwrap_or(""),
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The tests that `options` select.
#[must_use]
pub fn selected(options: &Options) -> Vec<TestCase> {
    suite::all()
        .into_iter()
        .filter(|t| options.protocols.includes(t.version))
        .filter(|t| {
            options.filters.is_empty()
                || options
                    .filters
                    .iter()
                    .any(|f| glob(f, t.id) || t.statements.iter().any(|s| glob(f, s)))
        })
        .collect()
}

/// Runs the selected tests against the broker of `options`.
///
/// # Errors
/// [`RunError`] when the options are wrong or the broker cannot be reached at all.
pub async fn run(options: &Options) -> Result<Report, RunError> {
    options.check().map_err(RunError::Config)?;
    let endpoint: Endpoint = options
        .broker
        .parse()
        .map_err(|e| RunError::Config(format!("--broker {}: {e}", options.broker)))?;
    let started = Instant::now();
    let tests = selected(options);
    let mut caps = discover(options, &endpoint).await?;
    caps.websocket.clone_from(&options.websocket);
    caps.tls.clone_from(&options.tls);
    caps.denied_topic.clone_from(&options.denied_topic);
    let run = run_token();
    let target = Arc::new(Target {
        options: options.clone(),
        endpoint,
        caps: caps.clone(),
        run,
    });
    let gate = Arc::new(Semaphore::new(options.jobs.max(1)));
    let mut handles = Vec::new();
    let (serial, parallel): (Vec<_>, Vec<_>) = tests
        .iter()
        .copied()
        .enumerate()
        .partition(|(_, t)| t.serial);
    for (index, test) in parallel {
        let target = Arc::clone(&target);
        let gate = Arc::clone(&gate);
        handles.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            run_one(target, index, test).await
        }));
    }
    let mut results = Vec::with_capacity(tests.len());
    for h in handles {
        if let Ok(r) = h.await {
            results.push(r);
        }
    }
    for (index, test) in serial {
        let target = Arc::clone(&target);
        if let Ok(r) = tokio::spawn(run_one(target, index, test)).await {
            results.push(r);
        }
    }
    results.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Report {
        broker: options.broker.clone(),
        capabilities: caps,
        elapsed: started.elapsed(),
        tests: results,
    })
}

async fn run_one(target: Arc<Target>, index: usize, test: TestCase) -> TestReport {
    let started = Instant::now();
    let unmet = test.needs.iter().find_map(|n| n.unmet(&target.caps));
    let limit = target.options.test_limit;
    let cx = Ctx::new(Arc::clone(&target), index, test.version);
    let verdict = match unmet {
        Some((true, why)) => Verdict::Skip { reason: why },
        Some((false, why)) => Verdict::NotApplicable { reason: why },
        None => match tokio::time::timeout(limit, (test.body)(cx.clone())).await {
            Ok(r) => Verdict::from(r),
            Err(_) => Verdict::from(Err::<(), _>(Stop::Fail(crate::Failure::plain(
                format!("the test to finish within {limit:?}"),
                "it did not (the broker stopped answering?)",
            )))),
        },
    };
    TestReport {
        id: test.id.to_owned(),
        version: test.version,
        statements: test.statements.iter().map(|s| (*s).to_owned()).collect(),
        summary: test.summary.to_owned(),
        verdict: verdict.clone(),
        elapsed: started.elapsed(),
        transcript: if verdict.is_fail() {
            cx.transcript()
        } else {
            Vec::new()
        },
    }
}

/// Connects once (5.0, else 3.1.1) to learn what the broker offers.
async fn discover(options: &Options, endpoint: &Endpoint) -> Result<Capabilities, RunError> {
    let probe = Arc::new(Target {
        options: options.clone(),
        endpoint: endpoint.clone(),
        caps: Capabilities::defaults(&options.declared),
        run: "probe".into(),
    });
    let version = if options.protocols.includes(Version::V5) {
        Version::V5
    } else {
        Version::V3_1_1
    };
    let cx = Ctx::new(probe, 0, version);
    let fail = |stop: Stop| -> RunError {
        let why = match stop {
            Stop::Fail(f) => f.to_string(),
            Stop::Skip(m) | Stop::NotApplicable(m) => m,
        };
        RunError::Unreachable(format!(
            "{}: {why}\n{}",
            options.broker,
            cx.transcript().join("\n")
        ))
    };
    let (conn, ack) = cx
        .connect_raw("probe", cx.connect_packet("probe"))
        .await
        .map_err(fail)?;
    if ack.reason_code != ReasonCode::SUCCESS {
        return Err(RunError::Unreachable(format!(
            "{} refused the tester's CONNECT (CONNACK {:#04x}); check the credentials",
            options.broker, ack.reason_code.0
        )));
    }
    conn.disconnect().await;
    let mut caps = if version == Version::V5 {
        Capabilities::from_connack(&ack.properties, &options.declared)
    } else {
        Capabilities::defaults(&options.declared)
    };
    if options.username.is_some() || options.password.is_some() {
        let mut anonymous = cx.connect_packet("anon");
        anonymous.username = None;
        anonymous.password = None;
        let (conn, ack) = cx.connect_raw("anonymous", anonymous).await.map_err(fail)?;
        caps.anonymous = ack.reason_code == ReasonCode::SUCCESS;
        conn.disconnect().await;
    }
    Ok(caps)
}

/// Five base-36 characters from the clock: this run's client ids and topics differ from an
/// earlier run's, so a broker's leftover sessions and retained messages do not interfere.
fn run_token() -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    let mut n = u64::try_from(n % 36u128.pow(5)).unwrap_or(0);
    let mut s = String::new();
    for _ in 0..5 {
        let d = u32::try_from(n % 36).unwrap_or(0);
        s.push(char::from_digit(d, 36).unwrap_or('0'));
        n /= 36;
    }
    s
}
