//! Benchmarks of `mqtt-codec` and `mqtt-session` (criterion benches are added with the benches issue).
#![forbid(unsafe_code)]
