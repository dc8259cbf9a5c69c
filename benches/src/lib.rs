//! Support for the criterion benchmarks of `mqtt-codec` and `mqtt-session` (`benches/codec.rs`,
//! `benches/engine.rs`) and the load generator (`src/bin/loadtest.rs`). See `README.md`.
//!
//! Criterion measures time. What it does not measure — heap allocations per operation, bytes
//! of memory per session — is counted with a counting global allocator and written by
//! [`Extras`] as JSON to `target/criterion/extra/<bench>.json`, where `report.py` picks it up
//! together with criterion's own estimates.
#![forbid(unsafe_code)]

use std::alloc::System;
use std::io::Write as _;
use std::path::PathBuf;

pub use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

/// The counting allocator each bench binary installs with
/// `#[global_allocator] static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;`.
pub type Counting = StatsAlloc<System>;

/// Heap use of one measured closure.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AllocStats {
    /// Allocations (including reallocations) per operation.
    pub allocs: f64,
    /// Bytes requested per operation (allocations plus growth by reallocation).
    pub bytes: f64,
    /// Bytes still held after the operations, per operation (net retained memory).
    pub retained: f64,
}

/// Runs `op` `n` times and returns its heap use per call, counted by `global`.
/// The values `op` returns are dropped inside the region, so `retained` counts only what
/// the operation keeps elsewhere (in a broker, say).
pub fn count_allocs<R>(
    global: &'static Counting,
    n: usize,
    mut op: impl FnMut(usize) -> R,
) -> AllocStats {
    let n = n.max(1);
    let region = Region::new(global);
    for i in 0..n {
        drop(std::hint::black_box(op(i)));
    }
    let change = region.change();
    // Counts of at most a few billion: exact in f64.
    #[allow(clippy::cast_precision_loss)]
    let per = |x: usize| x as f64 / n as f64;
    // stats_alloc already adds a reallocation's growth to `bytes_allocated` (and its shrinking
    // to `bytes_deallocated`); `bytes_reallocated` is the net of the two, not to be added again.
    #[allow(clippy::cast_precision_loss)]
    AllocStats {
        allocs: per(change.allocations + change.reallocations),
        bytes: per(change.bytes_allocated),
        retained: (change.bytes_allocated as f64 - change.bytes_deallocated as f64) / n as f64,
    }
}

/// Measurements criterion does not take, collected by one bench binary and written as JSON
/// to `target/criterion/extra/<bench>.json` when dropped.
#[derive(Debug)]
pub struct Extras {
    bench: String,
    rows: Vec<String>,
}

impl Extras {
    /// A collector for the bench binary `bench` (`codec`, `engine`).
    pub fn new(bench: &str) -> Self {
        Self {
            bench: bench.to_owned(),
            rows: Vec::new(),
        }
    }

    /// Records one value: `group` and `id` name the criterion benchmark it belongs to
    /// (`decode/publish_qos0_16B`, `ours-v5`), `metric` what was counted, `value` the count.
    pub fn record(&mut self, group: &str, id: &str, metric: &str, value: f64) {
        println!("{group}/{id}: {metric} = {value:.3}");
        self.rows.push(format!(
            "{{\"group\":{},\"id\":{},\"metric\":{},\"value\":{}}}",
            json_string(group),
            json_string(id),
            json_string(metric),
            if value.is_finite() {
                value.to_string()
            } else {
                "null".to_owned()
            }
        ));
    }

    /// Records the three values of an [`AllocStats`] as `allocs`, `alloc_bytes` and
    /// `retained_bytes`.
    pub fn record_allocs(&mut self, group: &str, id: &str, stats: AllocStats) {
        self.record(group, id, "allocs", stats.allocs);
        self.record(group, id, "alloc_bytes", stats.bytes);
        self.record(group, id, "retained_bytes", stats.retained);
    }

    /// Where the JSON goes: `$CARGO_TARGET_DIR/criterion/extra`, or the workspace's
    /// `target/criterion/extra`.
    pub fn dir() -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")),
            PathBuf::from,
        );
        target.join("criterion").join("extra")
    }

    fn write(&self) -> std::io::Result<PathBuf> {
        let dir = Self::dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.json", self.bench));
        let mut file = std::fs::File::create(&path)?;
        writeln!(file, "[\n{}\n]", self.rows.join(",\n"))?;
        Ok(path)
    }
}

impl Drop for Extras {
    fn drop(&mut self) {
        if self.rows.is_empty() {
            return;
        }
        match self.write() {
            Ok(path) => println!("extra measurements written to {}", path.display()),
            Err(e) => eprintln!("could not write the extra measurements: {e}"),
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
