//! Replays the committed corpus of the `host_files` fuzz target on stable Rust, through the
//! same checks the fuzz target runs (`fuzz/checks/host_files.rs`): the ACL, password-file and
//! configuration parsers on arbitrary text.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

include!("../../fuzz/checks/host_files.rs");
include!("../../fuzz/checks/corpus.rs");

#[test]
fn host_files_corpus() {
    replay("host_files", host_files_checks::run);
}
