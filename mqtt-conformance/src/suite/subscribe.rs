//! Tests of the `subscribe` area (being written).

use super::TestCase;

pub(super) fn tests() -> Vec<TestCase> {
    vec![]
}
