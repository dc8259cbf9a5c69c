//! Tests of the `malformed` area (being written).

use super::TestCase;

pub(super) fn tests() -> Vec<TestCase> {
    vec![]
}
