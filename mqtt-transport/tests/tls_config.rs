//! `tls::ClientConfigBuilder` and the PEM loaders: the errors name the file and what is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use mqtt_transport::{Error, tls};
use support::{Pki, TempDir};

/// The error of `built`, which must be `InvalidFile` for `path`, with its text.
fn file_error<T>(built: Result<T, Error>, path: &Path) -> String {
    match built {
        Ok(_) => panic!("{} was taken", path.display()),
        Err(e @ Error::InvalidFile { .. }) => {
            let text = e.to_string();
            assert!(text.starts_with(&format!("{}: ", path.display())), "{text}");
            if let Error::InvalidFile { path: p, .. } = &e {
                assert_eq!(p, path);
            }
            text
        }
        Err(e) => panic!("not InvalidFile: {e}"),
    }
}

#[test]
fn bad_files_are_named_with_what_is_wrong() {
    let dir = TempDir::new("bad-files");
    let pki = Pki::new(dir.path());
    let missing = dir.path().join("missing.pem");
    let text = file_error(
        tls::ClientConfigBuilder::new()
            .with_ca_file(&missing)
            .build(),
        &missing,
    );
    assert!(text.contains("cannot read certificates"), "{text}");

    // A key file given as the CA: no certificate in it.
    let key = pki.path("client-key.pem");
    let text = file_error(
        tls::ClientConfigBuilder::new().with_ca_file(&key).build(),
        &key,
    );
    assert!(text.contains("no CERTIFICATE"), "{text}");

    // A certificate given as the key.
    let cert = pki.path("client.pem");
    let text = file_error(
        tls::ClientConfigBuilder::new()
            .with_ca_file(pki.path("ca.pem"))
            .with_client_certificate(&cert, &cert)
            .build(),
        &cert,
    );
    assert!(text.contains("no usable private key"), "{text}");

    // A key that belongs to another certificate.
    let other_key = pki.path("untrusted-key.pem");
    let text = file_error(
        tls::ClientConfigBuilder::new()
            .with_ca_file(pki.path("ca.pem"))
            .with_client_certificate(&cert, &other_key)
            .build(),
        &other_key,
    );
    assert!(text.contains("does not go with the certificate"), "{text}");

    // Not PEM at all.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, b"not a certificate\n").unwrap();
    let text = file_error(tls::load_certificates(&junk), &junk);
    assert!(text.contains("no CERTIFICATE"), "{text}");
    file_error(tls::load_private_key(&junk), &junk);
}

#[test]
fn good_files_load() {
    let dir = TempDir::new("good-files");
    let pki = Pki::new(dir.path());
    assert_eq!(
        tls::load_certificates(&pki.path("ca.pem")).unwrap().len(),
        1
    );
    tls::load_private_key(&pki.path("client-key.pem")).unwrap();
    let config = tls::ClientConfigBuilder::new()
        .with_ca_file(pki.path("ca.pem"))
        .with_ca_file(pki.path("untrusted.pem"))
        .with_client_certificate(pki.path("client.pem"), pki.path("client-key.pem"))
        .build()
        .unwrap();
    assert!(config.client_auth_cert_resolver.has_certs());
}

/// The system's roots: they load, or the error says there are none (the machine decides).
#[test]
fn system_roots_load_or_say_why_not() {
    match tls::ClientConfigBuilder::new().with_system_roots().build() {
        Ok(_) | Err(Error::NoRootCertificates { .. }) => {}
        Err(e) => panic!("{e}"),
    }
}
