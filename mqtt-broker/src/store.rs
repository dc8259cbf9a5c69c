//! Durable storage of the broker's records: one redb table, `records`, keyed by a `u64`
//! sequence number, whose values are the [`StorageRecord`]s as JSON (serde_json: readable with
//! any redb tool, and the records are serde data already).
//!
//! Every write is one redb write transaction, committed with redb's default durability
//! (`Durability::Immediate`: the data is on disk when `commit` returns), so what the broker
//! acknowledged after a commit survives a SIGKILL or a power cut.

use std::path::Path;

use mqtt_session::broker::StorageRecord;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::BoxError;

/// The record log: sequence number → JSON of a `StorageRecord`.
const RECORDS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("records");

/// The file inside the data directory.
pub(crate) const FILE_NAME: &str = "broker.redb";

/// The broker's storage.
#[derive(Debug)]
pub(crate) struct Store {
    db: Database,
    /// The key of the next record appended.
    next_key: u64,
    /// How many records the table holds.
    len: u64,
}

impl Store {
    /// Opens (or creates) `dir/broker.redb`, creating `dir` if needed.
    pub(crate) fn open(dir: &Path) -> Result<Self, BoxError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path)
            .map_err(|e| format!("cannot open the database {}: {e}", path.display()))?;
        let txn = db.begin_write()?;
        txn.open_table(RECORDS)?;
        txn.commit()?;
        let mut store = Self {
            db,
            next_key: 0,
            len: 0,
        };
        let txn = store.db.begin_read()?;
        let table = txn.open_table(RECORDS)?;
        store.len = table.len()?;
        store.next_key = match table.last()? {
            Some((key, _)) => key.value().saturating_add(1),
            None => 0,
        };
        Ok(store)
    }

    /// Every record, in the order they were appended.
    pub(crate) fn load(&self) -> Result<Vec<StorageRecord>, BoxError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RECORDS)?;
        let mut records = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let record = serde_json::from_slice(value.value())
                .map_err(|e| format!("stored record {} cannot be read: {e}", key.value()))?;
            records.push(record);
        }
        Ok(records)
    }

    /// Appends `records` in one transaction and commits it durably. Nothing happens for an
    /// empty slice.
    pub(crate) fn append(&mut self, records: &[StorageRecord]) -> Result<(), BoxError> {
        if records.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        let key = insert_from(&txn, self.next_key, records)?;
        txn.commit()?;
        self.len = self.len.saturating_add(key - self.next_key);
        self.next_key = key;
        Ok(())
    }

    /// Replaces the whole log by `records` (a [`Broker::snapshot`]) in one transaction:
    /// compaction. A crash leaves either the old log or the new one.
    ///
    /// [`Broker::snapshot`]: mqtt_session::broker::Broker::snapshot
    pub(crate) fn replace_all(&mut self, records: &[StorageRecord]) -> Result<(), BoxError> {
        let txn = self.db.begin_write()?;
        txn.delete_table(RECORDS)?;
        let key = insert_from(&txn, 0, records)?;
        txn.commit()?;
        self.next_key = key;
        self.len = key;
        Ok(())
    }

    /// Gives the space of deleted records back to the file system (only possible while no
    /// transaction is open, so at startup).
    pub(crate) fn shrink_file(&mut self) -> Result<(), BoxError> {
        self.db.compact()?;
        Ok(())
    }

    /// How many records the log holds.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// Inserts `records` as JSON under the keys `first`, `first + 1`, … in `txn`; returns the key
/// after the last one.
fn insert_from(
    txn: &redb::WriteTransaction,
    first: u64,
    records: &[StorageRecord],
) -> Result<u64, BoxError> {
    let mut table = txn.open_table(RECORDS)?;
    let mut key = first;
    for record in records {
        let value = serde_json::to_vec(record)?;
        table.insert(key, value.as_slice())?;
        key = key.saturating_add(1);
    }
    Ok(key)
}
