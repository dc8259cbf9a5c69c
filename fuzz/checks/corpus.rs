// Replaying a fuzz target's committed inputs on stable Rust. This file is `include!`d by the
// corpus tests (`mqtt-codec/tests/fuzz_corpus.rs`, `mqtt-session/tests/fuzz_corpus.rs`,
// `mqtt-session/tests/fuzz_client_corpus.rs`), each one directory below the workspace root.

/// The committed inputs of `target`: its corpus and the crashes fixed (`regressions/`), sorted.
fn corpus(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = Vec::new();
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_file() {
                let data = std::fs::read(&path).unwrap();
                inputs.push((path, data));
            }
        }
    }
    inputs.sort();
    inputs
}

/// Runs `check` on every committed input of `target`; fails naming the first input that fails
/// (or when there are none).
fn replay(target: &str, check: impl Fn(&[u8])) {
    let inputs = corpus(target);
    assert!(
        !inputs.is_empty(),
        "no committed corpus for fuzz target {target}"
    );
    for (path, data) in &inputs {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(data)));
        assert!(result.is_ok(), "fuzz input {} fails", path.display());
    }
}
