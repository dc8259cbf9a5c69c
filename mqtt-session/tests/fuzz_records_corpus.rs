//! Replays the committed corpus of the `records` fuzz target on stable Rust, through the same
//! checks the fuzz target runs (`fuzz/checks/records.rs`): the binary record format on
//! arbitrary bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

include!("../../fuzz/checks/records.rs");
include!("../../fuzz/checks/corpus.rs");

#[test]
fn records_corpus() {
    replay("records", records_checks::run);
}
