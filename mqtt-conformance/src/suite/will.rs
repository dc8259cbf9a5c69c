//! Tests of the `will` area (being written).

use super::TestCase;

pub(super) fn tests() -> Vec<TestCase> {
    vec![]
}
