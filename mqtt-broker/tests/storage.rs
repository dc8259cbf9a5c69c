//! The data directory's format: binary records with a format version, the JSON layout of
//! earlier brokers migrated on start, a newer format or a corrupt record refused with an error
//! naming the file and the record, and `mqtt-broker dump DIR`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/tempdir.rs"]
#[allow(dead_code)]
mod tempdir;

use bytes::Bytes;
use mqtt_broker::{Server, Settings};
use mqtt_session::Timestamp;
use mqtt_session::broker::{Message, StorageRecord};
use mqtt_session::codec::{QoS, SubscriptionOptions, TopicName};
use redb::{Database, TableDefinition};
use tempdir::TempDir;

const RECORDS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("records");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// A durable session `s` with a subscription and a queued QoS 1 message, and a retained
/// message: what an earlier broker would have written.
fn records() -> Vec<StorageRecord> {
    let topic = TopicName::try_from("a/b").unwrap();
    let mut message = Message::new(
        topic,
        Bytes::from_static(b"queued"),
        QoS::AtLeastOnce,
        false,
    );
    message.publisher = Some("p".into());
    let mut retained = Message::new(
        TopicName::try_from("r").unwrap(),
        Bytes::from_static(b"kept"),
        QoS::AtMostOnce,
        true,
    );
    retained.expires_at = None;
    vec![
        StorageRecord::Session {
            client_id: "s".to_owned(),
            expiry_interval: 3600,
            username: None,
        },
        StorageRecord::Subscribed {
            client_id: "s".to_owned(),
            filter: "a/#".to_owned(),
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            subscription_id: None,
        },
        StorageRecord::SessionDisconnected {
            client_id: "s".to_owned(),
            at: Timestamp::from_millis(now_ms()),
            expiry_interval: 3600,
        },
        StorageRecord::Queued {
            client_id: "s".to_owned(),
            seq: 0,
            message: std::sync::Arc::new(message),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![],
        },
        StorageRecord::Retained {
            message: Box::new(retained),
        },
    ]
}

#[allow(clippy::disallowed_methods)] // the broker's clock is the wall clock
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Writes `values` under keys 0, 1, … of `records`, and `format` in `meta` if given.
fn write_file(dir: &TempDir, values: &[Vec<u8>], format: Option<u64>) {
    let db = Database::create(dir.path().join("broker.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(RECORDS).unwrap();
        for (key, value) in values.iter().enumerate() {
            table.insert(key as u64, value.as_slice()).unwrap();
        }
        if let Some(format) = format {
            txn.open_table(META)
                .unwrap()
                .insert("format", format)
                .unwrap();
        }
    }
    txn.commit().unwrap();
}

fn settings(dir: &TempDir) -> Settings {
    let mut settings = Settings::default();
    settings.listen = "127.0.0.1:0".to_owned();
    settings.data_dir = dir.path().to_owned();
    settings
}

fn dump(dir: &TempDir) -> Vec<String> {
    let mut out = Vec::new();
    mqtt_broker::dump(dir.path(), &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A data directory of JSON records (the first layout) is migrated on start: the session and
/// the retained message are restored, and the file then holds keyed tables of binary
/// records (layout 2), without the log.
#[tokio::test]
async fn a_json_data_directory_is_migrated_on_start() {
    let dir = TempDir::new("migrate");
    let json: Vec<Vec<u8>> = records()
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    write_file(&dir, &json, None);

    let server = Server::bind(settings(&dir)).await.unwrap();
    assert_eq!(server.session_count(), 1);
    assert_eq!(server.retained_count(), 1);
    drop(server);

    let db = Database::create(dir.path().join("broker.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    use redb::{ReadableDatabase, TableHandle};
    let meta = txn.open_table(META).unwrap();
    let format = meta.get("format").unwrap().unwrap().value();
    assert_eq!(
        format,
        u64::from(mqtt_session::broker::record::RECORD_FORMAT)
    );
    assert_eq!(meta.get("layout").unwrap().unwrap().value(), 2);
    // The log is gone: the state is in keyed tables now.
    let tables: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|t| t.name().to_owned())
        .collect();
    assert!(!tables.contains(&"records".to_owned()), "{tables:?}");
    assert!(tables.contains(&"queue".to_owned()), "{tables:?}");
    drop(meta);
    drop(txn);
    drop(db);

    // `dump` prints every record as key, tab, JSON.
    let lines = dump(&dir);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"Queued\"") && l.contains("\"client_id\":\"s\""))
    );
    for line in &lines {
        let (key, json) = line.split_once('\t').unwrap();
        key.parse::<u64>().unwrap();
        serde_json::from_str::<StorageRecord>(json).unwrap();
    }
}

/// A file of a newer format stops the start, naming the file and both formats.
#[tokio::test]
async fn a_newer_format_is_refused() {
    let dir = TempDir::new("newer");
    write_file(&dir, &[], Some(99));
    let Err(err) = Server::bind(settings(&dir)).await else {
        panic!("the start was not refused");
    };
    let text = err.to_string();
    assert!(text.contains("broker.redb"), "{text}");
    assert!(text.contains("format 99"), "{text}");
    assert!(text.contains("reads format 1"), "{text}");
}

/// A record that does not decode stops the start, naming the file and the record's key;
/// nothing is dropped (the file is left as it was).
#[tokio::test]
async fn a_corrupt_record_is_refused_by_key() {
    let dir = TempDir::new("corrupt");
    let mut values: Vec<Vec<u8>> = records()
        .iter()
        .map(|r| {
            let mut buf = bytes::BytesMut::new();
            mqtt_session::broker::record::encode_record(r, &mut buf).unwrap();
            buf.to_vec()
        })
        .collect();
    // Record 3 (the Queued one) loses its last byte.
    values[3].pop();
    write_file(&dir, &values, Some(1));
    let Err(err) = Server::bind(settings(&dir)).await else {
        panic!("the start was not refused");
    };
    let text = err.to_string();
    assert!(text.contains("broker.redb"), "{text}");
    assert!(text.contains("stored record 3"), "{text}");
    assert!(text.contains("truncated"), "{text}");
    // Still there, unchanged.
    let err = mqtt_broker::dump(dir.path(), &mut Vec::new())
        .err()
        .unwrap();
    assert!(err.to_string().contains("stored record 3"));
}

/// `dump` of a directory without a database says so.
#[test]
fn dump_of_a_missing_directory_says_so() {
    let dir = TempDir::new("nodump");
    let err = mqtt_broker::dump(&dir.path().join("nothing"), &mut Vec::new())
        .err()
        .unwrap();
    assert!(err.to_string().contains("no such file"), "{err}");
}
