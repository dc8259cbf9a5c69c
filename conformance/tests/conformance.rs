//! Checks the citations of specification statements across the workspace and keeps
//! `docs/conformance.md` current. See the `conformance` crate docs for the conventions.

use std::fs;

use conformance::{
    Conformance, DOC_PATH, UPDATE_COMMAND, UPDATE_ENV, describe_difference, workspace_root,
};

fn load() -> Result<Conformance, String> {
    let root = workspace_root();
    Conformance::load(&root).map_err(|e| {
        format!(
            "cannot load the conformance inputs under {}: {e}",
            root.display()
        )
    })
}

fn update_requested() -> bool {
    std::env::var_os(UPDATE_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

#[test]
fn every_cited_statement_exists() {
    let problems = load().unwrap_or_else(|e| panic!("{e}")).problems();
    let listing: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
    assert!(
        problems.is_empty(),
        "{} citation(s) name a statement that is not in the list of the version they claim \
         (`// v5 [..]` and `v5_mqtt_..` check spec/mqtt-v5.0-statements.tsv, `// v3.1.1 [..]` \
         and `v311_mqtt_..` check spec/mqtt-v3.1.1-statements.tsv, an unversioned citation \
         must be in at least one of them):\n{}",
        problems.len(),
        listing.join("\n")
    );
}

#[test]
fn untestable_notes_name_untested_statements() {
    let problems = load()
        .unwrap_or_else(|e| panic!("{e}"))
        .untestable_problems();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn conformance_md_is_current() {
    let path = workspace_root().join(DOC_PATH);
    let generated = load().unwrap_or_else(|e| panic!("{e}")).render_markdown();
    if update_requested() {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        fs::write(&path, &generated)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let committed = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => panic!("cannot read {DOC_PATH} ({e}); run `{UPDATE_COMMAND}` to generate it"),
    };
    assert!(
        committed == generated,
        "{DOC_PATH} is out of date; run `{UPDATE_COMMAND}` to regenerate it, and commit it.\n{}",
        describe_difference(&committed, &generated)
    );
}
