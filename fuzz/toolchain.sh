# Sourced by run.sh and smoke.sh: `fuzz` is the cargo-fuzz command to use (stable with
# RUSTC_BOOTSTRAP=1 by default; FUZZ_TOOLCHAIN=nightly for `cargo +nightly fuzz`), and
# cargo-fuzz is installed when missing.
if [ "${FUZZ_TOOLCHAIN:-}" = nightly ]; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
