//! The test PKI, made with rcgen at test time, shared by the tests of mqtt-transport and
//! mqtt-client (`#[path]`): PEM files in `DIR/pki`: `ca.pem`; `server.pem` + `server-key.pem`
//! (`localhost`, 127.0.0.1, ::1); `client.pem` + `client-key.pem` (Common Name `client`); and a
//! self-signed `untrusted.pem` + `untrusted-key.pem` (`localhost`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Writes the PKI under `dir` and returns its directory.
pub(crate) fn write(dir: &Path) -> PathBuf {
    let dir = dir.join("pki");
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "mqtt-rs test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |name: &str, sans: Vec<String>, cn: &str, usage| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    };
    leaf(
        "server",
        vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    leaf(
        "client",
        Vec::new(),
        "client",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("untrusted.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("untrusted-key.pem"), key.serialize_pem()).unwrap();
    dir
}
