//! Tests of the `auth` area (being written).

use super::TestCase;

pub(super) fn tests() -> Vec<TestCase> {
    vec![]
}
