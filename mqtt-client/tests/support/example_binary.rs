//! Finds an example's binary for the process-level tests, building it first when it is missing
//! or older than its sources (`cargo test --test NAME` does not build examples).
//!
//! The binary is next to the test's executable (`target/<profile>/deps/<test>-…` →
//! `target/<profile>/examples/<name>`) and is built with the `cargo` that built the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| newest_mtime(&entry.ok()?.path()))
        .max()
}

/// The binary of example `name` of mqtt-client, whose sources are at `source` (relative to
/// the crate), built first if it is missing or stale.
pub(crate) fn locate(name: &str, source: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let bin = profile_dir.join("examples").join(name);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = [
        manifest.join(source),
        manifest.join("src"),
        manifest.join("../mqtt-codec/src"),
        manifest.join("../mqtt-session/src"),
        manifest.join("../mqtt-transport/src"),
    ]
    .iter()
    .filter_map(|p| newest_mtime(p))
    .max();
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let stale = match (built, sources) {
        (Some(built), Some(sources)) => built < sources,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if stale {
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let target_dir = profile_dir.parent().expect("target directory");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "mqtt-client", "--example", name])
            .arg("--profile")
            .arg(profile)
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(manifest)
            .status()
            .expect("run cargo build for the example");
        assert!(status.success(), "cargo build --example {name} failed");
    }
    assert!(bin.is_file(), "{} not found", bin.display());
    bin
}
