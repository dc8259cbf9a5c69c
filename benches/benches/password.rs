//! The cost of one password check of mqtt-broker (`PasswordFile::verify`), per kind of hash:
//! argon2id as `mqtt-broker passwd` writes it (the `argon2` crate's defaults: 19 MiB, 2
//! passes), and mosquitto_passwd's `$7$` (PBKDF2-SHA512, 101 iterations) and `$6$` (SHA-512).
//! An unknown user costs a check against the file's first user (here argon2id). See
//! benches/README.md.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use mqtt_broker::password::{PasswordFile, Verdict, hash_password};

// Written by mosquitto_passwd 2.0.11.
const PBKDF2: &str = "alice:$7$101$MpyJtC/KYDhadpcj$hp/cfLjqCsqgDEgQ9lrhIvuzV9mvYxL1Wt1FByfurj8hjzTrGHAtHEo1pUK67wz3H/hPdwnAWvmoJtz5yeyJWw==";
const SHA512: &str = "carol:$6$ENC6B/jgshGbcaqN$kGzKXpF48vxB/lh+pLGlsZ3zC/4geWOx0bTlUWv1v205DuoH1M/IKyKlgSQanms3wKcrhJX6swzpLakaT8y5ww==";

fn password(c: &mut Criterion) {
    let argon = format!("dave:{}", hash_password(b"dave's pass").unwrap());
    let file = PasswordFile::parse(&format!("{argon}\n{PBKDF2}\n{SHA512}\n")).unwrap();
    let mut group = c.benchmark_group("password check");
    group.sample_size(20);
    group.bench_function("argon2id (mqtt-broker passwd)", |b| {
        b.iter(|| assert_eq!(file.verify("dave", b"dave's pass"), Verdict::Accepted));
    });
    group.bench_function("$7$ PBKDF2-SHA512 x101 (mosquitto_passwd)", |b| {
        b.iter(|| assert_eq!(file.verify("alice", b"s3cret pass"), Verdict::Accepted));
    });
    group.bench_function("$6$ SHA-512 (mosquitto 1.6)", |b| {
        b.iter(|| {
            assert_eq!(
                file.verify("carol", "pässwörd".as_bytes()),
                Verdict::Accepted
            )
        });
    });
    group.bench_function("unknown user (checked against the first user)", |b| {
        b.iter(|| assert_eq!(file.verify("mallory", b"x"), Verdict::UnknownUser));
    });
    group.finish();
}

criterion_group!(benches, password);
criterion_main!(benches);
