//! Conformance matrix for the MQTT specifications.
//!
//! This crate reads the normative statements of MQTT 5.0 and 3.1.1
//! (`spec/mqtt-v5.0-statements.tsv` and `spec/mqtt-v3.1.1-statements.tsv`, one
//! `ID<TAB>text` per line), scans the workspace sources for citations of those
//! statements, and renders `docs/conformance.md`. Its integration tests
//! (`tests/conformance.rs`) fail when a citation names a statement that does not exist,
//! or when the committed `docs/conformance.md` is stale. Regenerate the file with:
//!
//! ```text
//! UPDATE_CONFORMANCE=1 cargo test -p conformance
//! ```
//!
//! `spec/mqtt-v3.1.1-appendix-variants.tsv` (alternative wordings of statements that
//! are already in the 3.1.1 list) is deliberately not read.
//!
//! # What is scanned
//!
//! Every `*.rs` file under `mqtt-codec/`, `mqtt-session/`, `mqtt-transport/`, `mqtt-broker/`,
//! `mqtt-client/`, `mqtt-embedded/`, `mqtt-conformance/`, `fuzz/fuzz_targets/` and
//! `conformance/` ([`SCAN_ROOTS`]), skipping directories named
//! `target` and hidden directories. Paths are reported relative to the workspace root, with
//! `/` separators.
//!
//! The files are run through a small Rust lexer, so that string literals (including raw
//! strings), char literals and comments are told apart from code: a citation is only
//! ever read from a comment (`//`, `///`, `//!`, `/* */`), and `fn`, `mod`, braces and
//! `#[cfg(test)]` are only ever read from code.
//!
//! # Citation conventions
//!
//! Statement ids look like `MQTT-3.1.2-10` (any number of digits per part).
//!
//! 1. **Citation comments.** A comment holding a statement id in square brackets, after
//!    a version prefix `v5` (also spelled `v5.0`) or `v3.1.1`, or both:
//!
//!    ```text
//!    // v5 [MQTT-a.b.c-d]
//!    // v3.1.1 [MQTT-a.b.c-d]
//!    // v5 v3.1.1 [MQTT-a.b.c-d] [MQTT-e.f.g-h]
//!    ```
//!
//!    (`a.b.c-d` stands for real digits.) The bare numbers `5.0` and `3.1.1` are accepted
//!    as version words too. Version words may be wrapped in punctuation (`(v5`,
//!    `v3.1.1:`) and joined by `and`. A prefix applies to every bracketed id
//!    that follows it, up to the next word that is not a version, punctuation or `and`.
//!    Every `MQTT-<digit>…` inside a bracket pair is an id, so `[MQTT-a.b.c-d, MQTT-a.b.c-e]`
//!    cites two. An id without brackets is not a citation. A bracketed id with no
//!    prefix is *unversioned*: it applies to every list that contains it.
//!
//! 2. **Test names.** A function in test code named `mqtt_A_B_C_D` or `mqtt_A_B_C_D_…`
//!    (four runs of digits) cites `MQTT-A.B.C-D`, e.g. `fn mqtt_1_5_5_1_non_minimal_vbi_is_rejected`
//!    cites MQTT-1.5.5-1, unversioned. The prefixes `v5_mqtt_…` and `v311_mqtt_…` restrict
//!    the citation to 5.0 and 3.1.1 respectively.
//!
//! 3. **Enforcement sites.** A citation comment in code that is *not* test code (typically
//!    `// [MQTT-a.b.c-d] A PUBLISH …` above the check that enforces it in a library) is
//!    recorded as an enforcement site (`file:line`), not as a test. The version rules are
//!    the same as for tests.
//!
//! # Test code
//!
//! A line is test code when
//! - its file has a directory named `tests`, `benches` or `fuzz` in its path, or
//! - the file starts with `#![cfg(test)]`, or
//! - it is part of the item that follows a `#[cfg(test)]` attribute (from the attribute
//!   up to the `;` or the closing `}` of that item), or
//! - its file is a module declared (`mod name;`) in test code (`name.rs` or
//!   `name/mod.rs` next to a `lib.rs`/`main.rs`/`mod.rs`, or in the directory named after
//!   the declaring file otherwise).
//!
//! # Which test a comment cites for
//!
//! Braces are counted in code since each `fn NAME` was seen:
//! - a citation comment inside a function body belongs to the outermost enclosing `fn`;
//! - otherwise it belongs to the first `fn NAME` at or after the comment's line
//!   (typically the `#[test] fn` right below it);
//! - a comment with no `fn` after it (e.g. in a `fuzz_target!` closure) is listed by
//!   `file:line`.
//!
//! Every function of test code counts, whether or not it carries `#[test]`.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Directories (relative to the workspace root) whose `*.rs` files are scanned.
pub const SCAN_ROOTS: [&str; 9] = [
    "mqtt-codec",
    "mqtt-session",
    "mqtt-transport",
    "mqtt-broker",
    "mqtt-client",
    "mqtt-embedded",
    "mqtt-conformance",
    "fuzz/fuzz_targets",
    "conformance",
];

/// Path of the generated matrix, relative to the workspace root.
pub const DOC_PATH: &str = "docs/conformance.md";

/// Environment variable that makes `cargo test -p conformance` rewrite [`DOC_PATH`].
pub const UPDATE_ENV: &str = "UPDATE_CONFORMANCE";

/// The command that regenerates [`DOC_PATH`].
pub const UPDATE_COMMAND: &str = "UPDATE_CONFORMANCE=1 cargo test -p conformance";

/// Statement summaries in the tables are cut to about this many characters.
const SUMMARY_CHARS: usize = 100;

/// The workspace root: the parent of this crate's manifest directory.
#[must_use]
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.join(".."), Path::to_path_buf)
}

/// A version of the MQTT specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// MQTT 5.0.
    V5,
    /// MQTT 3.1.1.
    V311,
}

impl Version {
    /// All versions, in the order of the generated document.
    pub const ALL: [Self; 2] = [Self::V5, Self::V311];

    /// Human-readable version number (`5.0`, `3.1.1`).
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::V5 => "5.0",
            Self::V311 => "3.1.1",
        }
    }

    /// The version prefix used in citation comments (`v5`, `v3.1.1`).
    #[must_use]
    pub const fn tag(self) -> &'static str {
        match self {
            Self::V5 => "v5",
            Self::V311 => "v3.1.1",
        }
    }

    /// The prefix of a test name restricted to this version (`v5_mqtt_`, `v311_mqtt_`).
    #[must_use]
    pub const fn name_prefix(self) -> &'static str {
        match self {
            Self::V5 => "v5_mqtt_",
            Self::V311 => "v311_mqtt_",
        }
    }

    /// Path of the statement list, relative to the workspace root.
    #[must_use]
    pub const fn list_path(self) -> &'static str {
        match self {
            Self::V5 => "spec/mqtt-v5.0-statements.tsv",
            Self::V311 => "spec/mqtt-v3.1.1-statements.tsv",
        }
    }

    /// Parses a version word of a citation comment (`v5`, `v5.0`, `v3.1.1`, or the bare
    /// numbers `5.0` and `3.1.1`), ignoring surrounding punctuation (`(v5`, `v3.1.1:`).
    fn from_comment_word(word: &str) -> Option<Self> {
        match word.trim_matches(|c: char| !c.is_alphanumeric()) {
            "v5" | "v5.0" | "5.0" => Some(Self::V5),
            "v3.1.1" | "3.1.1" => Some(Self::V311),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MQTT {}", self.label())
    }
}

/// An error while loading the statement lists or the sources.
#[derive(Debug)]
pub enum Error {
    /// A file or directory could not be read.
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A statement list is malformed.
    List {
        /// The list's path.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::List {
                path,
                line,
                message,
            } => write!(f, "{path}:{line}: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::List { .. } => None,
        }
    }
}

/// One normative statement of a specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The id, e.g. `MQTT-1.5.5-1`.
    pub id: String,
    /// The statement's text.
    pub text: String,
}

/// The statements of one specification version, in the order of the list file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatementList {
    /// The specification version.
    pub version: Version,
    /// The statements, in file order.
    pub statements: Vec<Statement>,
}

impl StatementList {
    /// Parses a list of `ID<TAB>text` lines; blank lines are skipped.
    ///
    /// # Errors
    ///
    /// A line without a tab, a malformed id, or a duplicate id.
    pub fn parse(version: Version, text: &str) -> Result<Self, Error> {
        let mut statements = Vec::new();
        let mut seen = BTreeSet::new();
        for (index, raw) in text.lines().enumerate() {
            let error = |message: String| Error::List {
                path: version.list_path().to_owned(),
                line: index.saturating_add(1),
                message,
            };
            let raw = raw.trim_end_matches('\r');
            if raw.trim().is_empty() {
                continue;
            }
            let Some((id, text)) = raw.split_once('\t') else {
                return Err(error("expected `ID<TAB>statement`".to_owned()));
            };
            let id = id.trim();
            if !is_statement_id(id) {
                return Err(error(format!(
                    "malformed id `{id}` (expected `MQTT-<n>.<n>.<n>-<n>`)"
                )));
            }
            if !seen.insert(id) {
                return Err(error(format!("duplicate id `{id}`")));
            }
            statements.push(Statement {
                id: id.to_owned(),
                text: text.trim().to_owned(),
            });
        }
        Ok(Self {
            version,
            statements,
        })
    }

    /// Reads and parses the list of `version` under the workspace `root`.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is malformed.
    pub fn load(root: &Path, version: Version) -> Result<Self, Error> {
        let path = root.join(version.list_path());
        let text = fs::read_to_string(&path).map_err(|source| Error::Io { path, source })?;
        Self::parse(version, &text)
    }

    /// Whether the list holds a statement with this id.
    #[must_use]
    pub fn contains(&self, id: &str) -> bool {
        self.statements.iter().any(|s| s.id == id)
    }
}

/// Whether `id` has the shape `MQTT-<digits>(.<digits>)*-<digits>`.
fn is_statement_id(id: &str) -> bool {
    let Some((clause, number)) = id.strip_prefix("MQTT-").and_then(|r| r.rsplit_once('-')) else {
        return false;
    };
    is_digits(number) && clause.split('.').all(is_digits)
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Where a citation was found.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Site {
    /// In test code.
    Test {
        /// The test function it is attributed to, if any `fn` encloses or follows it.
        function: Option<String>,
    },
    /// In non-test code: the place that enforces the statement.
    Enforcement,
}

/// How a citation was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CitationKind {
    /// A bracketed id in a comment.
    Comment,
    /// The name of a test function (`mqtt_1_5_5_1_…`).
    TestName,
}

/// One citation of a statement id somewhere in the sources.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Citation {
    /// Path relative to the workspace root, `/`-separated.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The cited id, e.g. `MQTT-3.3.1-4`.
    pub id: String,
    /// The versions claimed by the citation; empty when unversioned (then it applies
    /// to every list that contains the id).
    pub versions: Vec<Version>,
    /// Test or enforcement site.
    pub site: Site,
    /// Comment or test name.
    pub kind: CitationKind,
}

impl Citation {
    /// The crate the citation is in: the first component of its path.
    #[must_use]
    pub fn krate(&self) -> &str {
        self.file.split('/').next().unwrap_or(&self.file)
    }
}

// ---------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------

/// One source line, split into code (string and char literals reduced to `""`/`''`,
/// comments removed) and comment text.
#[derive(Debug, Default)]
struct LexedLine {
    code: String,
    comment: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LexState {
    Code,
    LineComment,
    /// Nesting depth of `/* */`.
    BlockComment(usize),
    Str {
        escaped: bool,
    },
    /// Number of `#` of the raw string.
    RawStr(usize),
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// If `rest` (the text after an `r`) opens a raw string (`#*"`), its number of `#`.
fn raw_string_hashes(rest: &str) -> Option<usize> {
    let hashes = rest.chars().take_while(|&c| c == '#').count();
    (rest.chars().nth(hashes) == Some('"')).then_some(hashes)
}

/// If `rest` (the text after a `'`) continues a char literal, how many chars of it
/// belong to the literal (closing quote included); `None` for a lifetime or label.
fn char_literal_len(rest: &str) -> Option<usize> {
    if rest.starts_with('\\') {
        // `'\n'`, `'\''`, `'\u{1F600}'`: the closing quote comes after the escaped char.
        let close = rest.chars().skip(2).take(10).position(|c| c == '\'')?;
        Some(close.saturating_add(3))
    } else if rest.chars().nth(1) == Some('\'') {
        Some(2)
    } else {
        None
    }
}

fn skip(chars: &mut std::str::Chars<'_>, count: usize) {
    for _ in 0..count {
        chars.next();
    }
}

/// Splits a Rust source into [`LexedLine`]s, one per line of `source`.
fn lex(source: &str) -> Vec<LexedLine> {
    let mut lines = vec![LexedLine::default()];
    let mut state = LexState::Code;
    // The two chars before the current one, to tell `r"…"`/`br"…"` from an identifier
    // ending in `r`.
    let mut prev: Option<char> = None;
    let mut prev2: Option<char> = None;
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        if c == '\n' {
            lines.push(LexedLine::default());
            match state {
                LexState::LineComment => state = LexState::Code,
                LexState::Str { .. } => state = LexState::Str { escaped: false },
                _ => {}
            }
            prev2 = prev;
            prev = Some(c);
            continue;
        }
        let Some(current) = lines.last_mut() else {
            break;
        };
        let rest = chars.as_str();
        match state {
            LexState::Code => {
                let raw_allowed = match prev {
                    Some('b' | 'c') => !prev2.is_some_and(is_ident_char),
                    other => !other.is_some_and(is_ident_char),
                };
                if c == '/' && rest.starts_with('/') {
                    chars.next();
                    if chars.as_str().starts_with(['/', '!']) {
                        chars.next();
                    }
                    current.comment.push(' ');
                    state = LexState::LineComment;
                } else if c == '/' && rest.starts_with('*') {
                    chars.next();
                    current.comment.push(' ');
                    state = LexState::BlockComment(1);
                } else if c == '"' {
                    current.code.push_str("\"\"");
                    state = LexState::Str { escaped: false };
                } else if c == 'r'
                    && raw_allowed
                    && let Some(hashes) = raw_string_hashes(rest)
                {
                    // The hashes and the opening quote.
                    skip(&mut chars, hashes);
                    chars.next();
                    current.code.push_str("\"\"");
                    state = LexState::RawStr(hashes);
                } else if c == '\'' {
                    match char_literal_len(rest) {
                        Some(len) => {
                            skip(&mut chars, len);
                            current.code.push_str("''");
                        }
                        None => current.code.push(c),
                    }
                } else {
                    current.code.push(c);
                }
            }
            LexState::LineComment => current.comment.push(c),
            LexState::BlockComment(depth) => {
                if c == '/' && rest.starts_with('*') {
                    chars.next();
                    state = LexState::BlockComment(depth.saturating_add(1));
                } else if c == '*' && rest.starts_with('/') {
                    chars.next();
                    state = if depth <= 1 {
                        current.comment.push(' ');
                        LexState::Code
                    } else {
                        LexState::BlockComment(depth.saturating_sub(1))
                    };
                } else {
                    current.comment.push(c);
                }
            }
            LexState::Str { escaped } => {
                state = if escaped {
                    LexState::Str { escaped: false }
                } else if c == '\\' {
                    LexState::Str { escaped: true }
                } else if c == '"' {
                    LexState::Code
                } else {
                    state
                };
            }
            LexState::RawStr(hashes) => {
                if c == '"' && rest.chars().take_while(|&h| h == '#').count() >= hashes {
                    skip(&mut chars, hashes);
                    state = LexState::Code;
                }
            }
        }
        prev2 = prev;
        prev = Some(c);
    }
    lines
}

/// A code token: an identifier/number, or a single punctuation char.
#[derive(Debug)]
struct Token {
    /// 0-based line index.
    line: usize,
    text: String,
}

fn tokenize(lines: &[LexedLine]) -> Vec<Token> {
    let mut tokens = Vec::new();
    for (line, lexed) in lines.iter().enumerate() {
        let mut ident = String::new();
        for c in lexed.code.chars() {
            if is_ident_char(c) {
                ident.push(c);
                continue;
            }
            if !ident.is_empty() {
                tokens.push(Token {
                    line,
                    text: std::mem::take(&mut ident),
                });
            }
            if !c.is_whitespace() {
                tokens.push(Token {
                    line,
                    text: c.to_string(),
                });
            }
        }
        if !ident.is_empty() {
            tokens.push(Token { line, text: ident });
        }
    }
    tokens
}

fn starts_with_tokens(tokens: &[Token], pattern: &[&str]) -> bool {
    pattern.len() <= tokens.len() && tokens.iter().zip(pattern).all(|(t, p)| t.text == *p)
}

fn is_identifier(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

// ---------------------------------------------------------------------------------------
// Citation parsing
// ---------------------------------------------------------------------------------------

/// The ids in the text of one bracket pair: every `MQTT-` followed by a digit.
fn ids_in_brackets(group: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = group;
    while let Some((_, tail)) = rest.split_once("MQTT-") {
        let len = tail
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
            .unwrap_or(tail.len());
        let (body, after) = tail.split_at_checked(len).unwrap_or((tail, ""));
        let body = body.trim_end_matches(['.', '-']);
        if body.starts_with(|c: char| c.is_ascii_digit()) {
            ids.push(format!("MQTT-{body}"));
        }
        rest = after;
    }
    ids
}

/// The citations of one comment's text: `(id, claimed versions)` pairs.
fn parse_comment(text: &str) -> Vec<(String, Vec<Version>)> {
    let mut found = Vec::new();
    let mut versions: Vec<Version> = Vec::new();
    let mut after_version = false;
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if let Some(inner) = rest.strip_prefix('[') {
            let (group, after) = inner.split_once(']').unwrap_or((inner, ""));
            let ids = ids_in_brackets(group);
            if ids.is_empty() {
                versions.clear();
            }
            for id in ids {
                found.push((id, versions.clone()));
            }
            after_version = false;
            rest = after;
        } else if rest.is_empty() {
            break;
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '[')
                .unwrap_or(rest.len());
            let (word, after) = rest.split_at_checked(end).unwrap_or((rest, ""));
            if let Some(version) = Version::from_comment_word(word) {
                if !after_version {
                    versions.clear();
                }
                if !versions.contains(&version) {
                    versions.push(version);
                }
                after_version = true;
            } else if word != "and" && word.chars().any(char::is_alphanumeric) {
                versions.clear();
                after_version = false;
            }
            rest = after;
        }
    }
    found
}

/// The citation of a test name: `mqtt_A_B_C_D[_…]`, `v5_mqtt_…` or `v311_mqtt_…`.
fn parse_test_name(name: &str) -> Option<(String, Vec<Version>)> {
    let (versions, rest) = if let Some(rest) = name.strip_prefix(Version::V5.name_prefix()) {
        (vec![Version::V5], rest)
    } else if let Some(rest) = name.strip_prefix(Version::V311.name_prefix()) {
        (vec![Version::V311], rest)
    } else {
        (Vec::new(), name.strip_prefix("mqtt_")?)
    };
    let mut parts = rest.splitn(5, '_');
    let mut next = || parts.next().filter(|p| is_digits(p));
    let (a, b, c, d) = (next()?, next()?, next()?, next()?);
    Some((format!("MQTT-{a}.{b}.{c}-{d}"), versions))
}

// ---------------------------------------------------------------------------------------
// Source scanner
// ---------------------------------------------------------------------------------------

/// What [`scan_source`] found in one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileScan {
    /// The citations, in source order.
    pub citations: Vec<Citation>,
    /// Modules declared with `mod name;` in test code (their files are test code too).
    pub test_modules: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CfgTest {
    Off,
    /// `#[cfg(test)]` seen; its item has not opened a brace yet.
    Pending {
        depth: usize,
        nest: usize,
    },
    /// Inside the braces of the `#[cfg(test)]` item opened at `depth`.
    Inside {
        depth: usize,
    },
    WholeFile,
}

#[derive(Debug)]
struct PendingFn {
    name: String,
    depth: usize,
    nest: usize,
}

#[derive(Debug)]
struct OpenFn {
    name: String,
    /// Brace depth outside the body.
    depth: usize,
}

struct Scanner<'a> {
    file: &'a str,
    test_file: bool,
    /// `{}` depth.
    depth: usize,
    /// `()` and `[]` depth.
    nest: usize,
    pending_fn: Option<PendingFn>,
    open_fns: Vec<OpenFn>,
    /// The last `fn` seen: (1-based line, name).
    last_fn: Option<(usize, String)>,
    cfg_test: CfgTest,
    /// Test citations waiting for the next `fn`.
    waiting: Vec<Citation>,
    scan: FileScan,
}

impl<'a> Scanner<'a> {
    fn new(file: &'a str, test_file: bool) -> Self {
        Self {
            file,
            test_file,
            depth: 0,
            nest: 0,
            pending_fn: None,
            open_fns: Vec::new(),
            last_fn: None,
            cfg_test: CfgTest::Off,
            waiting: Vec::new(),
            scan: FileScan::default(),
        }
    }

    fn in_test(&self) -> bool {
        self.test_file || self.cfg_test != CfgTest::Off
    }

    /// Handles the token at the start of `tokens` (the rest is lookahead).
    fn token(&mut self, tokens: &[Token], line: usize) {
        const CFG_TEST: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];
        const CFG_TEST_INNER: [&str; 8] = ["#", "!", "[", "cfg", "(", "test", ")", "]"];
        let Some(first) = tokens.first() else {
            return;
        };
        match first.text.as_str() {
            "fn" => {
                if let Some(name) = tokens.get(1).filter(|t| is_identifier(&t.text)) {
                    self.found_fn(&name.text, line);
                }
            }
            "mod" => {
                if let Some(name) = tokens.get(1).filter(|t| is_identifier(&t.text))
                    && starts_with_tokens(tokens.get(2..).unwrap_or_default(), &[";"])
                    && self.in_test()
                {
                    self.scan.test_modules.push(name.text.clone());
                }
            }
            "#" => {
                if starts_with_tokens(tokens, &CFG_TEST_INNER) {
                    self.cfg_test = CfgTest::WholeFile;
                } else if starts_with_tokens(tokens, &CFG_TEST) && self.cfg_test == CfgTest::Off {
                    self.cfg_test = CfgTest::Pending {
                        depth: self.depth,
                        nest: self.nest,
                    };
                }
            }
            "{" => self.open_brace(),
            "}" => self.close_brace(),
            "(" | "[" => self.nest = self.nest.saturating_add(1),
            ")" | "]" => self.nest = self.nest.saturating_sub(1),
            ";" => self.semicolon(),
            _ => {}
        }
    }

    fn found_fn(&mut self, name: &str, line: usize) {
        self.pending_fn = Some(PendingFn {
            name: name.to_owned(),
            depth: self.depth,
            nest: self.nest,
        });
        self.last_fn = Some((line, name.to_owned()));
        for mut citation in self.waiting.drain(..) {
            citation.site = Site::Test {
                function: Some(name.to_owned()),
            };
            self.scan.citations.push(citation);
        }
        if self.in_test()
            && let Some((id, versions)) = parse_test_name(name)
        {
            self.scan.citations.push(Citation {
                file: self.file.to_owned(),
                line,
                id,
                versions,
                site: Site::Test {
                    function: Some(name.to_owned()),
                },
                kind: CitationKind::TestName,
            });
        }
    }

    fn open_brace(&mut self) {
        let depth = self.depth;
        if let Some(pending) = self.pending_fn.take_if(|p| p.depth == depth) {
            self.open_fns.push(OpenFn {
                name: pending.name,
                depth: self.depth,
            });
        }
        if let CfgTest::Pending { depth, .. } = self.cfg_test
            && depth == self.depth
        {
            self.cfg_test = CfgTest::Inside { depth };
        }
        self.depth = self.depth.saturating_add(1);
    }

    fn close_brace(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        while self.open_fns.last().is_some_and(|f| f.depth >= self.depth) {
            self.open_fns.pop();
        }
        if self
            .pending_fn
            .as_ref()
            .is_some_and(|p| p.depth > self.depth)
        {
            self.pending_fn = None;
        }
        match self.cfg_test {
            CfgTest::Inside { depth } | CfgTest::Pending { depth, .. } if depth >= self.depth => {
                self.cfg_test = CfgTest::Off;
            }
            _ => {}
        }
    }

    fn semicolon(&mut self) {
        let (depth, nest) = (self.depth, self.nest);
        // `fn f();` in a trait or an `extern` block has no body.
        if self
            .pending_fn
            .as_ref()
            .is_some_and(|p| p.depth == depth && p.nest == nest)
        {
            self.pending_fn = None;
        }
        if self.cfg_test == (CfgTest::Pending { depth, nest }) {
            self.cfg_test = CfgTest::Off;
        }
    }

    /// Handles the comment text of 1-based `line`, after all of that line's code.
    fn comment(&mut self, text: &str, line: usize, test: bool) {
        for (id, versions) in parse_comment(text) {
            let mut citation = Citation {
                file: self.file.to_owned(),
                line,
                id,
                versions,
                site: Site::Enforcement,
                kind: CitationKind::Comment,
            };
            if !test {
                self.scan.citations.push(citation);
                continue;
            }
            let function = self
                .open_fns
                .first()
                .map(|f| f.name.clone())
                .or_else(|| self.pending_fn.as_ref().map(|p| p.name.clone()))
                .or_else(|| {
                    self.last_fn
                        .as_ref()
                        .filter(|(fn_line, _)| *fn_line == line)
                        .map(|(_, name)| name.clone())
                });
            match function {
                Some(function) => {
                    citation.site = Site::Test {
                        function: Some(function),
                    };
                    self.scan.citations.push(citation);
                }
                None => {
                    citation.site = Site::Test { function: None };
                    self.waiting.push(citation);
                }
            }
        }
    }

    fn finish(mut self) -> FileScan {
        self.scan.citations.append(&mut self.waiting);
        self.scan.citations.sort();
        self.scan
    }
}

/// Scans one source file for citations.
///
/// `file` is the path reported in citations; `test_file` says whether the whole file is
/// test code (see [`is_test_path`]); otherwise only `#[cfg(test)]` items are.
#[must_use]
pub fn scan_source(file: &str, source: &str, test_file: bool) -> FileScan {
    let lines = lex(source);
    let tokens = tokenize(&lines);
    let mut scanner = Scanner::new(file, test_file);
    let mut next = 0_usize;
    for (index, lexed) in lines.iter().enumerate() {
        let line = index.saturating_add(1);
        let mut test = scanner.in_test();
        while let Some(rest) = tokens.get(next..)
            && rest.first().is_some_and(|t| t.line == index)
        {
            scanner.token(rest, line);
            test |= scanner.in_test();
            next = next.saturating_add(1);
        }
        scanner.comment(&lexed.comment, line, test);
    }
    scanner.finish()
}

/// Whether a whole file is test code by its path: a directory named `tests`, `benches`
/// or `fuzz` in it.
#[must_use]
pub fn is_test_path(file: &str) -> bool {
    let mut dirs = file.split('/').collect::<Vec<_>>();
    dirs.pop();
    dirs.iter()
        .any(|d| matches!(*d, "tests" | "benches" | "fuzz"))
}

/// The two possible files of module `name` declared with `mod name;` in `file`.
#[must_use]
pub fn module_files(file: &str, name: &str) -> [String; 2] {
    let (dir, base) = file.rsplit_once('/').unwrap_or(("", file));
    let module_dir = if matches!(base, "lib.rs" | "main.rs" | "mod.rs") {
        dir.to_owned()
    } else {
        let stem = base.strip_suffix(".rs").unwrap_or(base);
        if dir.is_empty() {
            stem.to_owned()
        } else {
            format!("{dir}/{stem}")
        }
    };
    let prefix = if module_dir.is_empty() {
        String::new()
    } else {
        format!("{module_dir}/")
    };
    [
        format!("{prefix}{name}.rs"),
        format!("{prefix}{name}/mod.rs"),
    ]
}

fn relative_path(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Appends `(relative path, text)` of every `*.rs` file under `dir` (if it exists).
fn collect_sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<(), Error> {
    if !dir.is_dir() {
        return Ok(());
    }
    let mut entries = fs::read_dir(dir)
        .map_err(io_error(dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error(dir))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type().map_err(io_error(&path))?;
        if kind.is_dir() {
            if name != "target" && !name.starts_with('.') {
                collect_sources(root, &path, out)?;
            }
        } else if kind.is_file() && name.ends_with(".rs") {
            let text = fs::read_to_string(&path).map_err(io_error(&path))?;
            out.push((relative_path(root, &path), text));
        }
    }
    Ok(())
}

/// Scans every source under [`SCAN_ROOTS`] of the workspace `root`; citations sorted.
///
/// # Errors
///
/// A directory or file cannot be read.
pub fn scan_workspace(root: &Path) -> Result<Vec<Citation>, Error> {
    let mut sources = Vec::new();
    for dir in SCAN_ROOTS {
        collect_sources(root, &root.join(dir), &mut sources)?;
    }
    sources.sort();
    let known: BTreeSet<&str> = sources.iter().map(|(path, _)| path.as_str()).collect();
    let mut test_files: BTreeSet<String> = sources
        .iter()
        .map(|(path, _)| path)
        .filter(|path| is_test_path(path))
        .cloned()
        .collect();
    // Test modules make more files test code, whose modules are test code too: repeat
    // until nothing changes (the set only grows, so this ends).
    loop {
        let mut citations = Vec::new();
        let mut more = BTreeSet::new();
        for (path, text) in &sources {
            let scan = scan_source(path, text, test_files.contains(path));
            for module in &scan.test_modules {
                for candidate in module_files(path, module) {
                    if known.contains(candidate.as_str()) && !test_files.contains(&candidate) {
                        more.insert(candidate);
                    }
                }
            }
            citations.extend(scan.citations);
        }
        if more.is_empty() {
            citations.sort();
            return Ok(citations);
        }
        test_files.extend(more);
    }
}

// ---------------------------------------------------------------------------------------
// Checks and rendering
// ---------------------------------------------------------------------------------------

/// A citation that names a statement that does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The offending citation.
    pub citation: Citation,
    /// What is wrong, and a hint.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.citation;
        let place = match (&c.site, c.kind) {
            (
                Site::Test {
                    function: Some(name),
                },
                CitationKind::TestName,
            ) => {
                format!("test name `{name}`")
            }
            (
                Site::Test {
                    function: Some(name),
                },
                CitationKind::Comment,
            ) => {
                format!("comment for test `{name}`")
            }
            (Site::Test { function: None }, _) => "comment in test code".to_owned(),
            (Site::Enforcement, _) => "comment in non-test code".to_owned(),
        };
        write!(f, "{}:{}: {place}: {}", c.file, c.line, self.message)
    }
}

/// The tests and enforcement sites of one statement.
#[derive(Clone, Debug, Default)]
struct Coverage {
    tests: BTreeSet<TestRef>,
    enforced: BTreeSet<(String, usize)>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct TestRef {
    krate: String,
    function: Option<String>,
    file: String,
    /// Only kept when there is no function name.
    line: Option<usize>,
}

/// Where the statements that no test can check are listed, with why.
pub const UNTESTABLE_PATH: &str = "spec/untestable.tsv";

/// A statement no test can check, and why (a line of [`UNTESTABLE_PATH`]:
/// `VERSION<TAB>ID<TAB>why`, `VERSION` being `5.0` or `3.1.1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Untestable {
    /// The version whose list has the statement.
    pub version: Version,
    /// The statement.
    pub id: String,
    /// Why no test can check it.
    pub why: String,
    /// The line in [`UNTESTABLE_PATH`].
    pub line: usize,
}

/// Parses [`UNTESTABLE_PATH`]; blank lines and lines starting with `#` are skipped.
///
/// # Errors
///
/// A line that is not `VERSION<TAB>ID<TAB>why` with a known version.
pub fn parse_untestable(text: &str) -> Result<Vec<Untestable>, Error> {
    parse_notes(UNTESTABLE_PATH, text)
}

/// Parses a file of `VERSION<TAB>ID<TAB>why` lines (`path` names it in errors); blank lines
/// and lines starting with `#` are skipped.
///
/// # Errors
///
/// A line that is not `VERSION<TAB>ID<TAB>why` with a known version.
pub fn parse_notes(path: &str, text: &str) -> Result<Vec<Untestable>, Error> {
    let mut notes = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let err = |message: String| Error::List {
            path: path.to_owned(),
            line,
            message,
        };
        let mut parts = raw.splitn(3, '\t');
        let (Some(version), Some(id), Some(why)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(err("expected `VERSION<TAB>ID<TAB>why`".to_owned()));
        };
        let version = Version::ALL
            .into_iter()
            .find(|v| v.label() == version)
            .ok_or_else(|| err(format!("unknown version {version:?} (5.0 or 3.1.1)")))?;
        notes.push(Untestable {
            version,
            id: id.trim().to_owned(),
            why: why.trim().to_owned(),
            line,
        });
    }
    Ok(notes)
}

/// The statement lists and the citations of the workspace.
#[derive(Clone, Debug)]
pub struct Conformance {
    /// One list per version, in [`Version::ALL`] order.
    pub lists: Vec<StatementList>,
    /// All citations, sorted.
    pub citations: Vec<Citation>,
    /// The statements no test can check, with why.
    pub untestable: Vec<Untestable>,
    /// The black-box tests of `mqtt-conformance` (given with [`Conformance::with_tester`]).
    pub tester: Vec<TesterTest>,
    /// The statements the black-box tester cannot observe, with why
    /// ([`NOT_OBSERVABLE_PATH`]).
    pub not_observable: Vec<Untestable>,
}

/// Where the statements that a black-box tester cannot observe are listed, with why.
pub const NOT_OBSERVABLE_PATH: &str = "mqtt-conformance/not-observable.tsv";

/// Where the lowest accepted coverage counts are kept.
pub const FLOOR_PATH: &str = "conformance/coverage-floor.tsv";

/// One black-box test of the conformance tester: its id, version and the statements whose
/// reaction it asserts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TesterTest {
    /// The test's id (`v5.connect.second_connect`).
    pub id: String,
    /// Its version.
    pub version: Version,
    /// The statements it covers.
    pub statements: Vec<String>,
}

impl Conformance {
    /// Reads the statement lists and scans the sources of the workspace `root`.
    ///
    /// # Errors
    ///
    /// A list or source cannot be read, or a list is malformed.
    pub fn load(root: &Path) -> Result<Self, Error> {
        let lists = Version::ALL
            .into_iter()
            .map(|version| StatementList::load(root, version))
            .collect::<Result<Vec<_>, _>>()?;
        let path = root.join(UNTESTABLE_PATH);
        let untestable = match fs::read_to_string(&path) {
            Ok(text) => parse_untestable(&text)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let path = root.join(NOT_OBSERVABLE_PATH);
        let not_observable = match fs::read_to_string(&path) {
            Ok(text) => parse_notes(NOT_OBSERVABLE_PATH, &text)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(Error::Io { path, source }),
        };
        Ok(Self {
            lists,
            citations: scan_workspace(root)?,
            untestable,
            tester: Vec::new(),
            not_observable,
        })
    }

    /// These inputs with the black-box tests of the conformance tester.
    #[must_use]
    pub fn with_tester(mut self, tests: Vec<TesterTest>) -> Self {
        self.tester = tests;
        self
    }

    /// The tester's tests of each statement of `version`.
    fn tester_coverage(&self, version: Version) -> BTreeMap<&str, Vec<&str>> {
        let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in self.tester.iter().filter(|t| t.version == version) {
            for s in &t.statements {
                map.entry(s.as_str()).or_default().push(t.id.as_str());
            }
        }
        map
    }

    fn why_not_observable(&self, version: Version, id: &str) -> Option<&str> {
        self.not_observable
            .iter()
            .find(|n| n.version == version && n.id == id)
            .map(|n| n.why.as_str())
    }

    /// What is wrong with the tester's citations and [`NOT_OBSERVABLE_PATH`]: a statement
    /// that is not in the list of the test's version, a note for a statement a test covers,
    /// or a note for a statement that does not exist.
    #[must_use]
    pub fn tester_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for t in &self.tester {
            for s in &t.statements {
                if !self.has(t.version, s) {
                    problems.push(format!(
                        "mqtt-conformance test `{}` cites `{s}`, which is not in {}",
                        t.id,
                        t.version.list_path()
                    ));
                }
            }
        }
        for note in &self.not_observable {
            let place = format!("{NOT_OBSERVABLE_PATH}:{}", note.line);
            if !self.has(note.version, &note.id) {
                problems.push(format!(
                    "{place}: `{}` is not in {}",
                    note.id,
                    note.version.list_path()
                ));
            } else if self
                .tester_coverage(note.version)
                .contains_key(note.id.as_str())
            {
                problems.push(format!(
                    "{place}: `{}` ({}) is covered by a test of the tester now: remove the note",
                    note.id,
                    note.version.label()
                ));
            }
        }
        problems
    }

    /// The coverage counts [`FLOOR_PATH`] keeps: `VERSION<TAB>what<TAB>count` lines, `what`
    /// being `tests` (statements with a test of any crate) or `tester` (statements covered
    /// by the black-box tester).
    #[must_use]
    pub fn coverage_counts(&self) -> Vec<(Version, &'static str, usize)> {
        let mut out = Vec::new();
        for list in &self.lists {
            let coverage = self.coverage(list.version);
            let tested = list
                .statements
                .iter()
                .filter(|s| {
                    coverage
                        .get(s.id.as_str())
                        .is_some_and(|c| !c.tests.is_empty())
                })
                .count();
            let tester = self.tester_coverage(list.version);
            let black_box = list
                .statements
                .iter()
                .filter(|s| tester.contains_key(s.id.as_str()))
                .count();
            out.push((list.version, "tests", tested));
            out.push((list.version, "tester", black_box));
        }
        out
    }

    /// What is wrong with [`UNTESTABLE_PATH`]: a statement that is not in its version's list,
    /// or that has a test after all (then the note goes).
    #[must_use]
    pub fn untestable_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for note in &self.untestable {
            let place = format!("{UNTESTABLE_PATH}:{}", note.line);
            if !self.has(note.version, &note.id) {
                problems.push(format!(
                    "{place}: `{}` is not in {}",
                    note.id,
                    note.version.list_path()
                ));
            } else if self
                .coverage(note.version)
                .get(note.id.as_str())
                .is_some_and(|c| !c.tests.is_empty())
            {
                problems.push(format!(
                    "{place}: `{}` ({}) has a test now: remove the note",
                    note.id,
                    note.version.label()
                ));
            }
        }
        problems
    }

    fn why_untestable(&self, version: Version, id: &str) -> Option<&str> {
        self.untestable
            .iter()
            .find(|n| n.version == version && n.id == id)
            .map(|n| n.why.as_str())
    }

    fn list(&self, version: Version) -> Option<&StatementList> {
        self.lists.iter().find(|l| l.version == version)
    }

    fn has(&self, version: Version, id: &str) -> bool {
        self.list(version).is_some_and(|l| l.contains(id))
    }

    /// The versions whose matrix a citation counts in: the claimed versions whose list
    /// has the id, or every list that has it when unversioned.
    #[must_use]
    pub fn applies_to(&self, citation: &Citation) -> Vec<Version> {
        Version::ALL
            .into_iter()
            .filter(|&v| citation.versions.is_empty() || citation.versions.contains(&v))
            .filter(|&v| self.has(v, &citation.id))
            .collect()
    }

    /// Citations of ids missing from the list of a version they claim (or from every
    /// list, when unversioned).
    #[must_use]
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for citation in &self.citations {
            let id = &citation.id;
            if citation.versions.is_empty() {
                if self.applies_to(citation).is_empty() {
                    let lists = Version::ALL.map(Version::list_path).join(" nor ");
                    problems.push(Problem {
                        citation: citation.clone(),
                        message: format!(
                            "`{id}` is in neither {lists}{}",
                            self.clause_hint(id, &Version::ALL)
                        ),
                    });
                }
                continue;
            }
            for &version in &citation.versions {
                if self.has(version, id) {
                    continue;
                }
                let elsewhere: Vec<_> = Version::ALL
                    .into_iter()
                    .filter(|&v| v != version && self.has(v, id))
                    .collect();
                let hint = if elsewhere.is_empty() {
                    self.clause_hint(id, &[version])
                } else {
                    let tags = elsewhere
                        .iter()
                        .map(|v| v.tag())
                        .collect::<Vec<_>>()
                        .join(" ");
                    format!(" (it is in the {tags} list: fix the version prefix)")
                };
                problems.push(Problem {
                    citation: citation.clone(),
                    message: format!(
                        "`{id}` is cited for {version} but is not in {}{hint}",
                        version.list_path()
                    ),
                });
            }
        }
        problems
    }

    /// A hint naming the ids the lists have in the same clause as `id`.
    fn clause_hint(&self, id: &str, versions: &[Version]) -> String {
        let Some((clause, _)) = id.rsplit_once('-') else {
            return String::new();
        };
        let mut hints = Vec::new();
        for &version in versions {
            let Some(list) = self.list(version) else {
                continue;
            };
            let same: Vec<&str> = list
                .statements
                .iter()
                .map(|s| s.id.as_str())
                .filter(|s| s.rsplit_once('-').is_some_and(|(c, _)| c == clause))
                .collect();
            if let (Some(first), Some(last)) = (same.first(), same.last()) {
                hints.push(format!("{} has {first} to {last}", version.label()));
            }
        }
        if hints.is_empty() {
            format!(
                " (no list has a clause {})",
                clause.trim_start_matches("MQTT-")
            )
        } else {
            format!(" ({})", hints.join("; "))
        }
    }

    fn coverage(&self, version: Version) -> BTreeMap<&str, Coverage> {
        let mut map: BTreeMap<&str, Coverage> = BTreeMap::new();
        for citation in &self.citations {
            if !self.applies_to(citation).contains(&version) {
                continue;
            }
            let entry = map.entry(citation.id.as_str()).or_default();
            match &citation.site {
                Site::Test { function } => {
                    entry.tests.insert(TestRef {
                        krate: citation.krate().to_owned(),
                        function: function.clone(),
                        file: citation.file.clone(),
                        line: function.is_none().then_some(citation.line),
                    });
                }
                Site::Enforcement => {
                    entry
                        .enforced
                        .insert((citation.file.clone(), citation.line));
                }
            }
        }
        map
    }

    /// Renders `docs/conformance.md`. Deterministic: depends only on the lists and the
    /// citations.
    #[must_use]
    pub fn render_markdown(&self) -> String {
        let mut out = String::new();
        out.push_str(HEADER);
        let coverages: Vec<_> = self
            .lists
            .iter()
            .map(|list| (list, self.coverage(list.version)))
            .collect();

        out.push_str("\n## Totals\n\n");
        out.push_str(
            "| version | statements | with a test | no test, why given | with an enforcement site | with both | with neither | black-box tester | not observable, why given |\n",
        );
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (list, coverage) in &coverages {
            let t = Tally::of(&list.statements, coverage);
            let explained = list
                .statements
                .iter()
                .filter(|s| {
                    coverage
                        .get(s.id.as_str())
                        .is_none_or(|c| c.tests.is_empty())
                        && self.why_untestable(list.version, &s.id).is_some()
                })
                .count();
            let tester = self.tester_coverage(list.version);
            let black_box = list
                .statements
                .iter()
                .filter(|s| tester.contains_key(s.id.as_str()))
                .count();
            let unobservable = list
                .statements
                .iter()
                .filter(|s| {
                    !tester.contains_key(s.id.as_str())
                        && self.why_not_observable(list.version, &s.id).is_some()
                })
                .count();
            out.push_str(&format!(
                "| [{}](#mqtt-{}) | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                list.version.label(),
                list.version.label().replace('.', ""),
                t.total,
                t.tested,
                explained,
                t.enforced,
                t.both,
                t.neither,
                black_box,
                unobservable
            ));
        }

        for (list, coverage) in &coverages {
            let tester = self.tester_coverage(list.version);
            render_version(
                &mut out,
                list,
                coverage,
                |id| self.why_untestable(list.version, id),
                &tester,
                |id| self.why_not_observable(list.version, id),
            );
        }
        out
    }
}

const HEADER: &str = "# MQTT conformance matrix

<!-- Generated by the `conformance` crate: do not edit by hand.
     Regenerate with `UPDATE_CONFORMANCE=1 cargo test -p conformance`. -->

Every normative statement of MQTT 5.0 (`spec/mqtt-v5.0-statements.tsv`) and MQTT 3.1.1
(`spec/mqtt-v3.1.1-statements.tsv`), with the tests that check it and the code that
enforces it, as cited in the sources of `mqtt-codec/`, `mqtt-session/`, `mqtt-transport/`,
`mqtt-broker/`, `mqtt-client/`, `mqtt-embedded/`, `mqtt-conformance/`, `fuzz/fuzz_targets/`
and `conformance/`. A statement no test can check says
why (from `spec/untestable.tsv`). `cargo test -p conformance` fails when this file is stale,
when a citation names a statement that does not exist, or when a statement said to be
untestable has a test.

The column *black-box tester* lists the tests of `mqtt-conformance` (the tester anyone can
point at a broker: `mqtt-conformance --list`) that send a stimulus and assert the reaction
the statement names; a statement it cannot observe from outside says why (from
`mqtt-conformance/not-observable.tsv`). The counts of statements with a test and with a
black-box test may never drop: `conformance/coverage-floor.tsv` keeps the highest seen, and
`cargo test -p conformance` fails below it.

## How to cite a statement

- **In a test**, write a comment with the version(s) and the bracketed id(s), either right
  above the test function or inside its body:
  `// v5 [MQTT-3.3.1-4]`, `// v3.1.1 [MQTT-3.3.1-4]`, `// v5 v3.1.1 [MQTT-3.3.1-4]`,
  `// v5 [MQTT-3.1.2-11] [MQTT-3.1.2-13]`. A comment inside a function body cites for the
  enclosing function; otherwise for the first `fn` at or after the comment.
- **Or name the test** after the statement: `fn mqtt_1_5_5_1_non_minimal_vbi_is_rejected`
  cites MQTT-1.5.5-1 in every list that has it; `fn v5_mqtt_…` cites it for 5.0 only and
  `fn v311_mqtt_…` for 3.1.1 only.
- **In library code**, put `// [MQTT-3.3.1-4]` above the check that enforces the statement:
  it is listed under *enforced in*. Without a version prefix it applies to every list
  that has the id.
- Test code is any file under a `tests/`, `benches/` or `fuzz/` directory, and the item
  after a `#[cfg(test)]` attribute (including the files of `mod name;` declared there).
- Only comments count (not string literals), and ids must be in square brackets.
";

/// Counts of one group of statements.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    total: usize,
    tested: usize,
    enforced: usize,
    both: usize,
    neither: usize,
}

impl Tally {
    fn of<'a>(
        statements: impl IntoIterator<Item = &'a Statement>,
        coverage: &BTreeMap<&str, Coverage>,
    ) -> Self {
        let mut tally = Self::default();
        for statement in statements {
            let (tested, enforced) = coverage
                .get(statement.id.as_str())
                .map_or((false, false), |c| {
                    (!c.tests.is_empty(), !c.enforced.is_empty())
                });
            tally.add(tested, enforced);
        }
        tally
    }

    fn add(&mut self, tested: bool, enforced: bool) {
        let bump = |n: &mut usize, yes: bool| *n = n.saturating_add(usize::from(yes));
        bump(&mut self.total, true);
        bump(&mut self.tested, tested);
        bump(&mut self.enforced, enforced);
        bump(&mut self.both, tested && enforced);
        bump(&mut self.neither, !tested && !enforced);
    }
}

/// The chapter number of an id (`MQTT-3.1.2-10` → 3).
fn chapter(id: &str) -> u32 {
    id.trim_start_matches("MQTT-")
        .split(['.', '-'])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The chapter titles, shared by both specifications.
fn chapter_title(chapter: u32) -> &'static str {
    match chapter {
        1 => "Introduction",
        2 => "MQTT Control Packet format",
        3 => "MQTT Control Packets",
        4 => "Operational behavior",
        5 => "Security",
        6 => "Using WebSocket as a network transport",
        7 => "Conformance",
        _ => "",
    }
}

fn render_version<'a, 'b>(
    out: &mut String,
    list: &StatementList,
    coverage: &BTreeMap<&str, Coverage>,
    why_untestable: impl Fn(&str) -> Option<&'a str>,
    tester: &BTreeMap<&str, Vec<&str>>,
    why_not_observable: impl Fn(&str) -> Option<&'b str>,
) {
    let version = list.version;
    out.push_str(&format!(
        "\n## MQTT {}\n\nStatements from `{}`, in file order.\n",
        version.label(),
        version.list_path()
    ));

    out.push_str(&format!(
        "\n### Coverage by chapter ({})\n\n",
        version.label()
    ));
    out.push_str("| chapter | statements | with a test | with an enforcement site |\n");
    out.push_str("|---|---:|---:|---:|\n");
    let mut chapters: BTreeMap<u32, Vec<&Statement>> = BTreeMap::new();
    for statement in &list.statements {
        chapters
            .entry(chapter(&statement.id))
            .or_default()
            .push(statement);
    }
    for (number, statements) in &chapters {
        let t = Tally::of(statements.iter().copied(), coverage);
        out.push_str(&format!(
            "| {number} {} | {} | {} / {} | {} / {} |\n",
            chapter_title(*number),
            t.total,
            t.tested,
            t.total,
            t.enforced,
            t.total
        ));
    }
    let t = Tally::of(&list.statements, coverage);
    out.push_str(&format!(
        "| **all** | {} | {} / {} | {} / {} |\n",
        t.total, t.tested, t.total, t.enforced, t.total
    ));

    out.push_str(&format!("\n### Statements ({})\n\n", version.label()));
    out.push_str("| id | statement | tests | enforced in | black-box tester |\n");
    out.push_str("|---|---|---|---|---|\n");
    let empty = Coverage::default();
    for statement in &list.statements {
        let c = coverage.get(statement.id.as_str()).unwrap_or(&empty);
        let mut tests: Vec<String> = c.tests.iter().map(render_test).collect();
        if tests.is_empty()
            && let Some(why) = why_untestable(&statement.id)
        {
            tests.push(format!("none: {why}"));
        }
        let enforced: Vec<String> = c
            .enforced
            .iter()
            .map(|(file, line)| render_location(file, *line))
            .collect();
        let black_box = match tester.get(statement.id.as_str()) {
            Some(ids) => ids
                .iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join("<br>"),
            None => why_not_observable(&statement.id)
                .map(|why| format!("not observable: {why}"))
                .unwrap_or_default(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            statement.id,
            summary(&statement.text),
            tests.join("<br>"),
            enforced.join("<br>"),
            black_box
        ));
    }
}

fn render_location(file: &str, line: usize) -> String {
    format!("[{file}:{line}](../{file}#L{line})")
}

fn render_test(test: &TestRef) -> String {
    match (&test.function, test.line) {
        (Some(function), _) => {
            format!(
                "`{}::{function}` ([{}](../{}))",
                test.krate, test.file, test.file
            )
        }
        (None, line) => render_location(&test.file, line.unwrap_or(0)),
    }
}

/// Escapes text for a Markdown table cell.
fn escape_cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' | '\\' | '*' | '_' | '`' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// The first ~[`SUMMARY_CHARS`] characters of a statement (cut at a word boundary),
/// escaped for a table cell.
fn summary(text: &str) -> String {
    if text.chars().count() <= SUMMARY_CHARS {
        return escape_cell(text);
    }
    let cut: String = text.chars().take(SUMMARY_CHARS).collect();
    let cut = match cut.rfind(' ') {
        Some(space) if space >= SUMMARY_CHARS / 2 => cut.get(..space).unwrap_or(&cut),
        _ => cut.as_str(),
    };
    format!(
        "{}…",
        escape_cell(cut.trim_end_matches([' ', ',', ';', ':']))
    )
}

/// A short description of where `committed` and `generated` first differ.
#[must_use]
pub fn describe_difference(committed: &str, generated: &str) -> String {
    let mut committed_lines = committed.lines();
    let mut generated_lines = generated.lines();
    let mut line = 1_usize;
    loop {
        match (committed_lines.next(), generated_lines.next()) {
            (Some(a), Some(b)) if a == b => line = line.saturating_add(1),
            (None, None) => return "the files differ only in line endings".to_owned(),
            (a, b) => {
                return format!(
                    "first difference at line {line}:\n  committed: {}\n  generated: {}",
                    a.unwrap_or("<end of file>"),
                    b.unwrap_or("<end of file>")
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v5() -> Vec<Version> {
        vec![Version::V5]
    }

    fn cites(scan: &FileScan) -> Vec<(&str, Vec<Version>, Option<&str>, usize)> {
        scan.citations
            .iter()
            .map(|c| {
                let function = match &c.site {
                    Site::Test { function } => function.as_deref(),
                    Site::Enforcement => Some("<enforced>"),
                };
                (c.id.as_str(), c.versions.clone(), function, c.line)
            })
            .collect()
    }

    #[test]
    fn citation_comment_cites_for_the_next_fn() {
        let src = r#"
// v5 [MQTT-3.3.1-4]
#[test]
fn retain_flag() {
    let _ = 1;
}
"#;
        let scan = scan_source("mqtt-codec/tests/a.rs", src, true);
        assert_eq!(
            cites(&scan),
            vec![("MQTT-3.3.1-4", v5(), Some("retain_flag"), 2)]
        );
        assert_eq!(scan.citations[0].kind, CitationKind::Comment);
        assert_eq!(scan.citations[0].krate(), "mqtt-codec");
    }

    #[test]
    fn several_ids_and_versions_in_one_comment() {
        let both = vec![Version::V5, Version::V311];
        assert_eq!(
            parse_comment(" v5 [MQTT-3.1.2-11] [MQTT-3.1.2-13]"),
            vec![
                ("MQTT-3.1.2-11".to_owned(), v5()),
                ("MQTT-3.1.2-13".to_owned(), v5())
            ]
        );
        assert_eq!(
            parse_comment(" v5 v3.1.1 [MQTT-1.5.3-1, MQTT-1.5.4-2]"),
            vec![
                ("MQTT-1.5.3-1".to_owned(), both.clone()),
                ("MQTT-1.5.4-2".to_owned(), both)
            ]
        );
        assert_eq!(
            parse_comment(" v5 [MQTT-1.1.1-1] v3.1.1: [MQTT-2.2.2-2] and 5.0 [MQTT-3.3.3-3]"),
            vec![
                ("MQTT-1.1.1-1".to_owned(), v5()),
                ("MQTT-2.2.2-2".to_owned(), vec![Version::V311]),
                ("MQTT-3.3.3-3".to_owned(), v5())
            ]
        );
        assert_eq!(
            parse_comment(" [`Violation::X`]: v5 and v3.1.1 [MQTT-3.3.2-2], (v5 [MQTT-1.5.4-1])"),
            vec![
                ("MQTT-3.3.2-2".to_owned(), vec![Version::V5, Version::V311]),
                ("MQTT-1.5.4-1".to_owned(), v5())
            ]
        );
        // Prose between the prefix and the id drops the prefix; brackets are required.
        assert_eq!(
            parse_comment(" v5 is strict, see [MQTT-1.1.1-1]; MQTT-2.2.2-2 [0; 4] [MQTT-x]"),
            vec![("MQTT-1.1.1-1".to_owned(), vec![])]
        );
    }

    #[test]
    fn test_names_cite_statements() {
        assert_eq!(
            parse_test_name("mqtt_1_5_5_1_non_minimal_vbi_is_rejected"),
            Some(("MQTT-1.5.5-1".to_owned(), vec![]))
        );
        assert_eq!(
            parse_test_name("mqtt_1_5_5_1"),
            Some(("MQTT-1.5.5-1".to_owned(), vec![]))
        );
        assert_eq!(
            parse_test_name("v5_mqtt_3_1_2_10_will_flag"),
            Some(("MQTT-3.1.2-10".to_owned(), v5()))
        );
        assert_eq!(
            parse_test_name("v311_mqtt_4_7_1_12_x"),
            Some(("MQTT-4.7.1-12".to_owned(), vec![Version::V311]))
        );
        assert_eq!(parse_test_name("mqtt_3_3_1_roundtrip"), None);
        assert_eq!(parse_test_name("mqtt_3_3_1"), None);
        assert_eq!(parse_test_name("test_mqtt_3_3_1_4"), None);
        assert_eq!(parse_test_name("v5_roundtrip"), None);
    }

    #[test]
    fn test_name_citations_come_from_code_only() {
        let src = r#"
#[test]
fn v5_mqtt_3_1_2_10_will_flag() {}
/// fn mqtt_1_1_1_1_in_a_comment() {}
const S: &str = "fn mqtt_2_2_2_2_in_a_string() {}";
"#;
        let scan = scan_source("mqtt-codec/tests/a.rs", src, true);
        assert_eq!(
            cites(&scan),
            vec![("MQTT-3.1.2-10", v5(), Some("v5_mqtt_3_1_2_10_will_flag"), 3)]
        );
        assert_eq!(scan.citations[0].kind, CitationKind::TestName);
        // Outside test code a function name is not a citation.
        assert!(
            scan_source("mqtt-codec/src/a.rs", src, false)
                .citations
                .is_empty()
        );
    }

    #[test]
    fn comment_inside_a_body_cites_for_the_enclosing_fn() {
        let src = r#"
#[test]
fn first() {
    let x = Foo { a: 1 };
    if x.a == 1 {
        // v3.1.1 [MQTT-4.7.1-1]
    }
    let c = '{';
}

#[test]
fn second() {} // v5 [MQTT-1.5.4-1]

// v5 [MQTT-1.5.4-2]
#[test]
fn
third()
{
}
"#;
        let scan = scan_source("mqtt-session/tests/b.rs", src, true);
        assert_eq!(
            cites(&scan),
            vec![
                ("MQTT-4.7.1-1", vec![Version::V311], Some("first"), 6),
                ("MQTT-1.5.4-1", v5(), Some("second"), 12),
                ("MQTT-1.5.4-2", v5(), Some("third"), 14),
            ]
        );
    }

    #[test]
    fn strings_chars_and_lifetimes_do_not_confuse_the_lexer() {
        let src = r##"
fn a<'a>(x: &'a str) -> char {
    let s = "// v5 [MQTT-9.9.9-1] {";
    let r = r#"a "quoted" // v5 [MQTT-9.9.9-2] }
       still a string {"#;
    let b = br"\";
    let q = '\'';
    let u = '\u{7B}';
    /* v5 [MQTT-1.5.4-3] /* nested */ still comment { */
    '}'
}
// v5 [MQTT-1.5.4-1]
fn b() {}
"##;
        let scan = scan_source("mqtt-codec/tests/c.rs", src, true);
        assert_eq!(
            cites(&scan),
            vec![
                ("MQTT-1.5.4-3", v5(), Some("a"), 9),
                ("MQTT-1.5.4-1", v5(), Some("b"), 12)
            ]
        );
    }

    #[test]
    fn cfg_test_items_are_tests_and_other_comments_are_enforcement() {
        let src = r#"
pub fn decode() {
    // [MQTT-1.5.5-1] A non-minimal encoding is malformed.
    check();
}

#[cfg(test)]
mod tests {
    // v5 [MQTT-1.5.5-1]
    #[test]
    fn rejects() {}
}

#[cfg(test)]
mod more;

fn after() {
    // v3.1.1 [MQTT-2.2.2-1]
}
"#;
        let scan = scan_source("mqtt-codec/src/vbi.rs", src, false);
        assert_eq!(
            cites(&scan),
            vec![
                ("MQTT-1.5.5-1", vec![], Some("<enforced>"), 3),
                ("MQTT-1.5.5-1", v5(), Some("rejects"), 9),
                ("MQTT-2.2.2-1", vec![Version::V311], Some("<enforced>"), 18),
            ]
        );
        assert_eq!(scan.test_modules, vec!["more".to_owned()]);
        assert_eq!(
            module_files("mqtt-codec/src/vbi.rs", "more"),
            [
                "mqtt-codec/src/vbi/more.rs".to_owned(),
                "mqtt-codec/src/vbi/more/mod.rs".to_owned()
            ]
        );
        assert_eq!(
            module_files("mqtt-codec/src/lib.rs", "tests"),
            [
                "mqtt-codec/src/tests.rs".to_owned(),
                "mqtt-codec/src/tests/mod.rs".to_owned()
            ]
        );
    }

    #[test]
    fn test_paths_and_inner_cfg_test() {
        assert!(is_test_path("mqtt-codec/tests/vbi.rs"));
        assert!(is_test_path("fuzz/fuzz_targets/decode.rs"));
        assert!(is_test_path("mqtt-codec/benches/decode.rs"));
        assert!(!is_test_path("mqtt-codec/src/tests.rs"));
        let src = "#![cfg(test)]\n// v5 [MQTT-1.5.4-1]\n";
        let scan = scan_source("mqtt-codec/src/t.rs", src, false);
        assert_eq!(cites(&scan), vec![("MQTT-1.5.4-1", v5(), None, 2)]);
    }

    fn sample() -> Conformance {
        let list_v5 = StatementList::parse(
            Version::V5,
            "MQTT-1.5.4-1\tThe character data | pipes MUST be *well-formed*.\n\
             MQTT-3.1.2-10\tA statement that is long enough to be cut: \
             lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\n",
        )
        .unwrap();
        let list_v311 = StatementList::parse(
            Version::V311,
            "MQTT-1.5.3-1\tUTF-8 in 3.1.1.\nMQTT-3.1.2-10\tThe same id in 3.1.1.\n",
        )
        .unwrap();
        let citation = |file: &str, line, id: &str, versions, site| Citation {
            file: file.to_owned(),
            line,
            id: id.to_owned(),
            versions,
            site,
            kind: CitationKind::Comment,
        };
        let test = |name: &str| Site::Test {
            function: Some(name.to_owned()),
        };
        Conformance {
            lists: vec![list_v5, list_v311],
            citations: vec![
                citation(
                    "mqtt-codec/src/a.rs",
                    7,
                    "MQTT-3.1.2-10",
                    vec![],
                    Site::Enforcement,
                ),
                citation(
                    "mqtt-codec/tests/t.rs",
                    3,
                    "MQTT-1.5.4-1",
                    v5(),
                    test("utf8"),
                ),
                citation(
                    "mqtt-codec/tests/t.rs",
                    9,
                    "MQTT-3.1.2-10",
                    v5(),
                    test("will"),
                ),
                citation(
                    "mqtt-codec/tests/t.rs",
                    12,
                    "MQTT-1.5.4-1",
                    vec![Version::V311],
                    test("x"),
                ),
                citation(
                    "mqtt-codec/tests/t.rs",
                    15,
                    "MQTT-3.1.2-99",
                    v5(),
                    test("y"),
                ),
                citation(
                    "mqtt-session/src/b.rs",
                    2,
                    "MQTT-9.1.1-1",
                    vec![],
                    Site::Enforcement,
                ),
            ],
            untestable: vec![Untestable {
                version: Version::V311,
                id: "MQTT-3.1.2-10".to_owned(),
                why: "a reason".to_owned(),
                line: 3,
            }],
            tester: vec![TesterTest {
                id: "v5.connect.x".to_owned(),
                version: Version::V5,
                statements: vec!["MQTT-1.5.4-1".to_owned(), "MQTT-9.9.9-9".to_owned()],
            }],
            not_observable: vec![Untestable {
                version: Version::V5,
                id: "MQTT-1.5.4-1".to_owned(),
                why: "covered after all".to_owned(),
                line: 4,
            }],
        }
    }

    #[test]
    fn tester_problems_name_unknown_ids_and_stale_notes() {
        let problems = sample().tester_problems();
        assert!(
            problems.iter().any(|p| p.contains("MQTT-9.9.9-9")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("MQTT-1.5.4-1") && p.contains("remove the note")),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_ids_are_detected() {
        let problems: Vec<String> = sample()
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].starts_with("mqtt-codec/tests/t.rs:12: comment for test `x`:"));
        assert!(
            problems[0].contains("it is in the v5 list"),
            "{}",
            problems[0]
        );
        assert!(problems[1].starts_with("mqtt-codec/tests/t.rs:15:"));
        assert!(
            problems[1].contains("5.0 has MQTT-3.1.2-10 to MQTT-3.1.2-10"),
            "{}",
            problems[1]
        );
        assert!(problems[2].starts_with("mqtt-session/src/b.rs:2: comment in non-test code:"));
        assert!(
            problems[2].contains("no list has a clause 9.1.1"),
            "{}",
            problems[2]
        );
    }

    #[test]
    fn untestable_notes_are_parsed_and_checked() {
        let notes = parse_untestable("# c\n\n3.1.1\tMQTT-3.1.2-10\twhy not\n").unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!((notes[0].version, notes[0].line), (Version::V311, 3));
        assert!(parse_untestable("4.0\tMQTT-1\tx\n").is_err());
        assert!(parse_untestable("3.1.1 MQTT-1 x\n").is_err());
        let mut c = sample();
        assert!(c.untestable_problems().is_empty());
        // 5.0's MQTT-3.1.2-10 has a test; MQTT-9.9.9-9 is in no list.
        c.untestable.push(Untestable {
            version: Version::V5,
            id: "MQTT-3.1.2-10".to_owned(),
            why: "x".to_owned(),
            line: 4,
        });
        c.untestable.push(Untestable {
            version: Version::V5,
            id: "MQTT-9.9.9-9".to_owned(),
            why: "x".to_owned(),
            line: 5,
        });
        let problems = c.untestable_problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains(":4: `MQTT-3.1.2-10` (5.0) has a test now"));
        assert!(problems[1].contains(":5: `MQTT-9.9.9-9` is not in"));
    }

    #[test]
    fn markdown_lists_tests_and_enforcement_sites() {
        let md = sample().render_markdown();
        assert_eq!(md, sample().render_markdown());
        assert!(
            md.contains("| [5.0](#mqtt-50) | 2 | 2 | 0 | 1 | 1 | 0 |"),
            "{md}"
        );
        assert!(
            md.contains("| [3.1.1](#mqtt-311) | 2 | 0 | 1 | 1 | 0 | 1 |"),
            "{md}"
        );
        assert!(md.contains(
            "| MQTT-1.5.4-1 | The character data \\| pipes MUST be \\*well-formed\\*. | \
             `mqtt-codec::utf8` ([mqtt-codec/tests/t.rs](../mqtt-codec/tests/t.rs)) |  |"
        ));
        assert!(md.contains(
            "| MQTT-3.1.2-10 | The same id in 3.1.1. | none: a reason | \
             [mqtt-codec/src/a.rs:7](../mqtt-codec/src/a.rs#L7) |"
        ));
        assert!(
            md.contains("| 3 MQTT Control Packets | 1 | 1 / 1 | 1 / 1 |"),
            "{md}"
        );
        assert!(
            md.contains("consectetur adipiscing elit… | `mqtt-codec::will`"),
            "{md}"
        );
    }

    #[test]
    fn summaries_are_cut_on_char_and_word_boundaries() {
        let long = "é".repeat(150);
        assert_eq!(summary(&long).chars().count(), SUMMARY_CHARS + 1);
        let words = "word ".repeat(40);
        let cut = summary(&words);
        assert!(
            cut.ends_with("word…") && cut.len() <= SUMMARY_CHARS + 3,
            "{cut}"
        );
    }

    #[test]
    fn malformed_lists_are_rejected() {
        let err = StatementList::parse(Version::V5, "MQTT-1.1.1-1 no tab\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec/mqtt-v5.0-statements.tsv:1: expected `ID<TAB>statement`"
        );
        let dup = "MQTT-1.1.1-1\ta\n\nMQTT-1.1.1-1\tb\n";
        let err = StatementList::parse(Version::V311, dup).unwrap_err();
        assert!(err.to_string().contains(":3: duplicate id"), "{err}");
        assert!(StatementList::parse(Version::V5, "MQTT-1.1-\tx\n").is_err());
    }

    #[test]
    fn differences_are_described() {
        assert_eq!(
            describe_difference("a\nb\n", "a\nc\n"),
            "first difference at line 2:\n  committed: b\n  generated: c"
        );
        assert!(describe_difference("a\n", "a\nb\n").contains("<end of file>"));
    }
}
