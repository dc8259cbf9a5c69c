//! Checks the citations of specification statements across the workspace and keeps
//! `docs/conformance.md` current. See the `conformance` crate docs for the conventions.

use std::fs;

use conformance::{
    Conformance, DOC_PATH, FLOOR_PATH, TesterTest, UPDATE_COMMAND, UPDATE_ENV, Version,
    describe_difference, workspace_root,
};

/// The black-box tests of `mqtt-conformance`, from its catalogue.
fn tester() -> Vec<TesterTest> {
    mqtt_conformance::catalog()
        .into_iter()
        .map(|t| TesterTest {
            id: t.id.to_owned(),
            version: match t.version {
                mqtt_conformance::Version::V5 => Version::V5,
                mqtt_conformance::Version::V3_1_1 => Version::V311,
            },
            statements: t.statements.iter().map(|s| (*s).to_owned()).collect(),
        })
        .collect()
}

fn load() -> Result<Conformance, String> {
    let root = workspace_root();
    Conformance::load(&root)
        .map(|c| c.with_tester(tester()))
        .map_err(|e| {
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

#[test]
fn tester_citations_and_not_observable_notes_are_sound() {
    let problems = load().unwrap_or_else(|e| panic!("{e}")).tester_problems();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The counts of covered statements never drop below the highest committed in
/// `conformance/coverage-floor.tsv`; `UPDATE_CONFORMANCE=1` raises the floor (never lowers it).
#[test]
fn covered_statements_never_drop() {
    let path = workspace_root().join(FLOOR_PATH);
    let counts = load().unwrap_or_else(|e| panic!("{e}")).coverage_counts();
    let text = fs::read_to_string(&path).unwrap_or_default();
    let floor = |v: Version, what: &str| -> usize {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut p = l.split('\t');
                let (ver, w, n) = (p.next()?, p.next()?, p.next()?);
                (ver == v.label() && w == what).then(|| n.trim().parse().ok())?
            })
            .next()
            .unwrap_or(0)
    };
    let mut drops = Vec::new();
    let mut out = String::from(
        "# The lowest accepted number of statements covered: VERSION<TAB>what<TAB>count, `tests`\n\
         # being statements with a test of any crate and `tester` statements covered by the\n\
         # black-box tester. `cargo test -p conformance` fails below these; `UPDATE_CONFORMANCE=1`\n\
         # raises them.\n",
    );
    for (v, what, n) in counts {
        let f = floor(v, what);
        if n < f {
            drops.push(format!("{} {what}: {n} < {f}", v.label()));
        }
        out.push_str(&format!("{}\t{what}\t{}\n", v.label(), n.max(f)));
    }
    if update_requested() {
        fs::write(&path, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    assert!(
        drops.is_empty(),
        "fewer statements covered than before ({FLOOR_PATH}): {}",
        drops.join(", ")
    );
}
