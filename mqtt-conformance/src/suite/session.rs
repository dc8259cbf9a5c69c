//! Tests of the `session` area (being written).

use super::TestCase;

pub(super) fn tests() -> Vec<TestCase> {
    vec![]
}
