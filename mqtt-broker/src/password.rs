//! Password files (`--password-file FILE`), in mosquitto's format: one `user:hash` line per
//! user; blank lines and lines starting with `#` are ignored.
//!
//! Three kinds of hash are read, so that a file written by `mosquitto_passwd` works unchanged:
//!
//! - `$argon2id$v=19$m=…,t=…,p=…$salt$hash`: an argon2id PHC string, what
//!   `mqtt-broker passwd` writes ([`hash_password`], the `argon2` crate's defaults);
//! - `$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 (`mosquitto_passwd`'s default since 2.0);
//! - `$6$SALT$HASH`: one SHA-512 of the password followed by the salt (mosquitto 1.6 and
//!   earlier).
//!
//! `SALT` and `HASH` are standard base64. A line with a plain-text password, an unknown kind
//! of hash or a user named twice is an error naming the line. Passwords are compared in
//! constant time, and an unknown user costs a check against the first user's hash, so the
//! time taken does not tell which users exist (in a file whose hashes are all of one kind).

use std::collections::BTreeMap;
use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::ConfigError;

/// The most PBKDF2 iterations accepted from a file (a hostile file must not stall a check).
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// A stored password hash.
#[derive(Clone, PartialEq, Eq)]
enum Hash {
    /// An argon2 PHC string (validated when read).
    Argon2(String),
    /// mosquitto's `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// mosquitto's `$6$`: SHA-512(password ‖ salt).
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
}

impl Hash {
    fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("$argon2") {
            let phc =
                PasswordHash::new(text).map_err(|e| format!("not a valid argon2 hash: {e}"))?;
            if phc.hash.is_none() || phc.salt.is_none() {
                return Err("not a valid argon2 hash: no salt or no hash".to_owned());
            }
            argon2::Params::try_from(&phc).map_err(|e| format!("not a valid argon2 hash: {e}"))?;
            return Ok(Self::Argon2(text.to_owned()));
        }
        let b64 = |what: &str, s: &str| {
            STANDARD
                .decode(s)
                .map_err(|e| format!("the {what} is not base64: {e}"))
        };
        if let Some(rest) = text.strip_prefix("$7$") {
            let mut parts = rest.split('$');
            let (Some(iterations), Some(salt), Some(hash), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err("a `$7$` hash is `$7$ITERATIONS$SALT$HASH`".to_owned());
            };
            let iterations: u32 = iterations
                .parse()
                .map_err(|_| format!("{iterations:?} is not a number of iterations"))?;
            if iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS {
                return Err(format!(
                    "{iterations} iterations (1 to {MAX_PBKDF2_ITERATIONS} accepted)"
                ));
            }
            let hash = b64("hash", hash)?;
            if hash.len() != 64 {
                return Err(format!("a SHA-512 hash has 64 bytes, not {}", hash.len()));
            }
            return Ok(Self::Pbkdf2Sha512 {
                iterations,
                salt: b64("salt", salt)?,
                hash,
            });
        }
        if let Some(rest) = text.strip_prefix("$6$") {
            let mut parts = rest.split('$');
            let (Some(salt), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err("a `$6$` hash is `$6$SALT$HASH`".to_owned());
            };
            let hash = b64("hash", hash)?;
            if hash.len() != 64 {
                return Err(format!("a SHA-512 hash has 64 bytes, not {}", hash.len()));
            }
            return Ok(Self::Sha512 {
                salt: b64("salt", salt)?,
                hash,
            });
        }
        if text.starts_with('$') {
            Err("unknown kind of hash (expected $argon2id$, $7$ or $6$)".to_owned())
        } else {
            Err("a plain-text password: hash it with `mqtt-broker passwd` (or `mosquitto_passwd -U`)"
                .to_owned())
        }
    }

    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Argon2(phc) => PasswordHash::new(phc)
                .is_ok_and(|h| Argon2::default().verify_password(password, &h).is_ok()),
            Self::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                bool::from(out.ct_eq(hash.as_slice()))
            }
            Self::Sha512 { salt, hash } => {
                let mut digest = Sha512::new();
                digest.update(password);
                digest.update(salt);
                bool::from(digest.finalize().as_slice().ct_eq(hash.as_slice()))
            }
        }
    }
}

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The user exists and the password is theirs.
    Accepted,
    /// No such user.
    UnknownUser,
    /// The user exists; the password is wrong.
    WrongPassword,
}

/// A parsed password file: user name → hash. Its `Debug` shows the user names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    users: BTreeMap<String, Hash>,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PasswordFile {
    /// Parses the text of a password file. Errors carry the line number (from 1).
    ///
    /// # Errors
    /// The first line that is not `user:hash` with a hash of a known kind, or names a user
    /// again.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut users = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim_end_matches('\r');
            if trimmed.trim().is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = trimmed.split_once(':') else {
                return Err((line, "expected `user:hash`".to_owned()));
            };
            check_user(user).map_err(|e| (line, e))?;
            let hash =
                Hash::parse(hash.trim()).map_err(|e| (line, format!("user {user:?}: {e}")))?;
            if users.insert(user.to_owned(), hash).is_some() {
                return Err((line, format!("user {user:?} is named twice")));
            }
        }
        Ok(Self { users })
    }

    /// Reads and parses a password file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file (and the line) when it cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::in_file(path, None, format!("cannot read the password file: {e}"))
        })?;
        Self::parse(&text).map_err(|(line, message)| {
            ConfigError::in_file(path, Some(line), format!("password file: {message}"))
        })
    }

    /// How many users the file has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no user.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks `password` for `user`. Slow on purpose (a password hash): call it off the
    /// engine's thread.
    #[must_use]
    pub fn verify(&self, user: &str, password: &[u8]) -> Verdict {
        match self.users.get(user) {
            Some(hash) if hash.verify(password) => Verdict::Accepted,
            Some(_) => Verdict::WrongPassword,
            None => {
                // As long as a known user's check: the password is checked (and the answer
                // ignored) against the hash of the file's first user, so the time taken does
                // not tell whether the user exists.
                let _ = self.users.values().next().map(|h| h.verify(password));
                Verdict::UnknownUser
            }
        }
    }
}

/// A user name a password file can hold: not empty, without `:` or a line break.
fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("the user name is empty".to_owned());
    }
    if user.contains([':', '\n', '\r']) {
        return Err(format!("user name {user:?} contains `:` or a line break"));
    }
    Ok(())
}

/// Hashes `password` as an argon2id PHC string with a random salt (the `argon2` crate's
/// default parameters: 19 MiB, 2 passes, 1 lane).
///
/// # Errors
/// When argon2 refuses the input (a password over its 4 GiB limit).
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Adds `user` with `password` to the password file at `path`, or replaces their hash; creates
/// the file when it does not exist (readable by its owner only, on Unix). Other lines,
/// comments included, are kept. The file is replaced in one rename, so a crash leaves the old
/// file or the new one.
///
/// # Errors
/// A bad user name, an empty password, a file that cannot be read, parsed or written.
pub fn set_password(path: &Path, user: &str, password: &[u8]) -> Result<(), ConfigError> {
    let err = |line, message: String| ConfigError::in_file(path, line, message);
    check_user(user).map_err(|e| err(None, e))?;
    if password.is_empty() {
        return Err(err(None, "the password is empty".to_owned()));
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(err(None, format!("cannot read the password file: {e}"))),
    };
    // Refuse to rewrite a file this broker could not read.
    PasswordFile::parse(&text)
        .map_err(|(line, m)| err(Some(line), format!("password file: {m}")))?;
    let hash = hash_password(password).map_err(|e| err(None, e))?;
    let entry = format!("{user}:{hash}");
    let mut replaced = false;
    let mut out = String::with_capacity(text.len() + entry.len() + 1);
    for line in text.lines() {
        if line.split_once(':').is_some_and(|(u, _)| u == user) && !line.starts_with('#') {
            out.push_str(&entry);
            replaced = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !replaced {
        out.push_str(&entry);
        out.push('\n');
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    write_private(&tmp, out.as_bytes())
        .map_err(|e| err(None, format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| err(None, format!("cannot replace the file: {e}")))
}

/// Writes `data` to a new file readable and writable by its owner only (on Unix).
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    // Written by mosquitto_passwd 2.0.11 (`-b` for alice and bob, `-H sha512 -b` for carol).
    const MOSQUITTO: &str = "\
alice:$7$101$MpyJtC/KYDhadpcj$hp/cfLjqCsqgDEgQ9lrhIvuzV9mvYxL1Wt1FByfurj8hjzTrGHAtHEo1pUK67wz3H/hPdwnAWvmoJtz5yeyJWw==
bob:$7$101$QPCFpG7Zni6mS1AQ$rYTxJaAmUcYZNW1CTdPXlUR8L+VQuH30ebMePBjHH076eDgKsQd0gZdL1ou+bHUBwVTKI3Sb2x45aGlBBmjoQA==
carol:$6$ENC6B/jgshGbcaqN$kGzKXpF48vxB/lh+pLGlsZ3zC/4geWOx0bTlUWv1v205DuoH1M/IKyKlgSQanms3wKcrhJX6swzpLakaT8y5ww==
";

    #[test]
    fn mosquitto_hashes_verify() {
        let file = PasswordFile::parse(MOSQUITTO).unwrap();
        assert_eq!(file.len(), 3);
        assert_eq!(file.verify("alice", b"s3cret pass"), Verdict::Accepted);
        assert_eq!(file.verify("bob", b"hunter2"), Verdict::Accepted);
        assert_eq!(
            file.verify("carol", "pässwörd".as_bytes()),
            Verdict::Accepted
        );
        assert_eq!(file.verify("alice", b"hunter2"), Verdict::WrongPassword);
        assert_eq!(file.verify("carol", b"passwort"), Verdict::WrongPassword);
        assert_eq!(file.verify("bob", b""), Verdict::WrongPassword);
        assert_eq!(file.verify("dave", b"hunter2"), Verdict::UnknownUser);
    }

    #[test]
    fn argon2_hashes_verify() {
        let hash = hash_password(b"correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        let file = PasswordFile::parse(&format!("# users\n\nerin:{hash}\n")).unwrap();
        assert_eq!(file.verify("erin", b"correct horse"), Verdict::Accepted);
        assert_eq!(
            file.verify("erin", b"correct horse "),
            Verdict::WrongPassword
        );
        // A new salt each time.
        assert_ne!(hash, hash_password(b"correct horse").unwrap());
    }

    #[test]
    fn bad_lines_are_named() {
        let cases = [
            ("alice\n", 1, "user:hash"),
            ("# c\nalice:hunter2\n", 2, "plain-text"),
            ("alice:$5$abc$def\n", 1, "unknown kind"),
            ("alice:$7$x$MpyJtC/KYDhadpcj$AAAA\n", 1, "iterations"),
            ("alice:$7$0$MpyJtC/KYDhadpcj$AAAA\n", 1, "iterations"),
            ("alice:$7$101$MpyJtC/KYDhadpcj$***\n", 1, "base64"),
            ("alice:$7$101$MpyJtC/KYDhadpcj$AAAA\n", 1, "64 bytes"),
            ("alice:$6$onlysalt\n", 1, "$6$SALT$HASH"),
            ("alice:$argon2id$v=19$nonsense\n", 1, "argon2"),
            (":$6$a$b\n", 1, "empty"),
        ];
        for (text, line, needle) in cases {
            let (l, message) = PasswordFile::parse(text).unwrap_err();
            assert_eq!(l, line, "{text:?}: {message}");
            assert!(message.contains(needle), "{text:?}: {message}");
        }
        let twice = format!("{}{}", MOSQUITTO, MOSQUITTO.lines().next().unwrap());
        let (line, message) = PasswordFile::parse(&twice).unwrap_err();
        assert_eq!(line, 4);
        assert!(message.contains("twice"), "{message}");
    }

    #[test]
    fn debug_shows_no_hash() {
        let file = PasswordFile::parse(MOSQUITTO).unwrap();
        let debug = format!("{file:?}");
        assert!(debug.contains("alice"));
        assert!(!debug.contains("MpyJtC"), "{debug}");
    }

    #[test]
    fn set_password_creates_adds_and_replaces() {
        let dir = std::env::temp_dir().join(format!("mqtt-broker-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("passwd");
        let _ = std::fs::remove_file(&path);
        set_password(&path, "alice", b"one").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A mosquitto-written user and a comment are kept.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.insert_str(0, "# kept\n");
        text.push_str(MOSQUITTO.lines().nth(1).unwrap());
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        set_password(&path, "alice", b"two").unwrap();
        set_password(&path, "frank", b"three").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# kept\nalice:$argon2id$"), "{text}");
        let file = PasswordFile::load(&path).unwrap();
        assert_eq!(file.len(), 3);
        assert_eq!(file.verify("alice", b"two"), Verdict::Accepted);
        assert_eq!(file.verify("alice", b"one"), Verdict::WrongPassword);
        assert_eq!(file.verify("bob", b"hunter2"), Verdict::Accepted);
        assert_eq!(file.verify("frank", b"three"), Verdict::Accepted);
        assert!(set_password(&path, "a:b", b"x").is_err());
        assert!(set_password(&path, "alice", b"").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
