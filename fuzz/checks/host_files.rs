// Checks of the `host_files` fuzz target: the files mqtt-broker reads — the ACL, the password
// file and the TOML configuration — parsed from arbitrary text. Each parser must answer with
// a value or an error naming a line of the text, never panic; a parsed ACL must answer any
// question. `include!`d by `fuzz/fuzz_targets/host_files.rs` and by
// `mqtt-broker/tests/fuzz_corpus.rs` (which replays the committed corpus on stable Rust).

#[allow(unreachable_pub)] // `pub` for the fuzz target, which includes it at its crate root
mod host_files_checks {
    use mqtt_broker::Settings;
    use mqtt_broker::acl::{Acl, Client};
    use mqtt_broker::password::PasswordFile;

    /// Runs every check on `data`.
    pub fn run(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let lines = text.lines().count().max(1);

        match Acl::parse(&text) {
            Ok(acl) => {
                // Every question gets an answer, for topics and filters taken from the text.
                for word in text.split_whitespace().take(8) {
                    for client in [Client::new("c", None), Client::new(word, Some(word))] {
                        let _ = acl.may_publish(client, word);
                        let _ = acl.may_read(client, word);
                        if mqtt_session::codec::TopicFilter::try_from(word).is_ok() {
                            let _ = acl.may_subscribe(client, word);
                        }
                    }
                }
            }
            Err(e) => assert!((1..=lines).contains(&e.line), "{e:?} of {lines} lines"),
        }

        match PasswordFile::parse(&text) {
            // (No check of a password: an argon2id hash costs milliseconds by design.)
            Ok(file) => assert!(file.len() <= lines),
            Err((line, _)) => assert!((1..=lines).contains(&line)),
        }

        match Settings::from_toml(&text) {
            Ok(settings) => {
                let _ = settings.broker_config();
                let _ = settings.validate();
            }
            Err(e) => {
                if let Some(line) = e.line {
                    assert!(line <= lines + 1, "{e} of {lines} lines");
                }
            }
        }
    }
}
