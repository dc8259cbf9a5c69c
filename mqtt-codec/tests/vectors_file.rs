//! The hex vectors as data (`tests/data/vectors.tsv`), run by the same source as the firmware
//! runs under QEMU (`firmware/src/vectors.rs`): on std every vector behaves as the file says,
//! and the count printed here is the one the firmware must report.

extern crate alloc;

#[path = "../../firmware/src/vectors.rs"]
mod vectors;

#[test]
fn every_vector_of_the_file_behaves_as_it_says() {
    let tally = vectors::run(include_str!("data/vectors.tsv"));
    assert!(tally.failures.is_empty(), "{:#?}", tally.failures);
    println!(
        "vectors: {} valid, {} malformed",
        tally.valid, tally.malformed
    );
    // Both kinds, in numbers that a file cut short would not reach.
    assert!(tally.valid >= 80, "{tally:?}");
    assert!(tally.malformed >= 200, "{tally:?}");
}
