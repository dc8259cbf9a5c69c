//! Durable storage of the broker's records: a redb file, `broker.redb`, with two tables:
//!
//! - `records`: a `u64` sequence number → one [`StorageRecord`] in the binary form of
//!   [`mqtt_session::broker::record`] (messages in their wire form);
//! - `meta`: `"format"` → the record format the file holds ([`RECORD_FORMAT`]).
//!
//! Every write is one redb write transaction, committed with redb's default durability
//! (`Durability::Immediate`: the data is on disk when `commit` returns), so what the broker
//! acknowledged after a commit survives a SIGKILL or a power cut. A transaction either
//! commits whole or not at all, so there is no torn record to recover from.
//!
//! A file without `meta` was written by an earlier broker, whose records were JSON: [`Store::
//! open`] migrates it to the binary form in one transaction (a crash leaves either layout
//! whole). A file whose format is newer than this broker's, or a record that does not decode,
//! stops the start with an error naming the file and the record: nothing is dropped silently.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use mqtt_session::broker::StorageRecord;
use mqtt_session::broker::record::{RECORD_FORMAT, decode_record, encode_record};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::BoxError;

/// The record log: sequence number → one binary record.
const RECORDS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("records");
/// What the file holds: `"format"` → the record format.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// The file inside the data directory.
pub(crate) const FILE_NAME: &str = "broker.redb";

/// The broker's storage.
#[derive(Debug)]
pub(crate) struct Store {
    db: Database,
    path: PathBuf,
    /// The key of the next record appended.
    next_key: u64,
    /// How many records the table holds.
    len: u64,
    /// Reused for each record's bytes.
    scratch: BytesMut,
}

impl Store {
    /// Opens (or creates) `dir/broker.redb`, creating `dir` if needed, and migrates a file of
    /// JSON records (an earlier broker's) to the binary form.
    pub(crate) fn open(dir: &Path) -> Result<Self, BoxError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path)
            .map_err(|e| format!("cannot open the database {}: {e}", path.display()))?;
        let mut store = Self {
            db,
            path,
            next_key: 0,
            len: 0,
            scratch: BytesMut::new(),
        };
        store.check_format()?;
        let txn = store.db.begin_read()?;
        let table = txn.open_table(RECORDS)?;
        store.len = table.len()?;
        store.next_key = match table.last()? {
            Some((key, _)) => key.value().saturating_add(1),
            None => 0,
        };
        Ok(store)
    }

    /// Creates the tables of an empty file, migrates a JSON one, refuses a newer format.
    fn check_format(&mut self) -> Result<(), BoxError> {
        let txn = self.db.begin_write()?;
        let format = txn.open_table(META)?.get("format")?.map(|v| v.value());
        match format {
            Some(f) if f == u64::from(RECORD_FORMAT) => {
                txn.open_table(RECORDS)?;
                txn.commit()?;
                Ok(())
            }
            Some(f) => Err(format!(
                "{}: records in format {f}, but this broker reads format {RECORD_FORMAT} \
                 (written by a newer broker?)",
                self.path.display()
            )
            .into()),
            None => {
                // An empty new file, or JSON records from an earlier broker.
                let json: Vec<(u64, StorageRecord)> = {
                    let table = txn.open_table(RECORDS)?;
                    let mut json = Vec::new();
                    for entry in table.iter()? {
                        let (key, value) = entry?;
                        let record = serde_json::from_slice(value.value()).map_err(|e| {
                            format!(
                                "{}: record {} is neither binary with a format nor JSON: {e}",
                                self.path.display(),
                                key.value()
                            )
                        })?;
                        json.push((key.value(), record));
                    }
                    json
                };
                if !json.is_empty() {
                    tracing::info!(
                        file = %self.path.display(),
                        records = json.len(),
                        "migrating JSON records to the binary record format {RECORD_FORMAT}"
                    );
                }
                {
                    let mut table = txn.open_table(RECORDS)?;
                    for (key, record) in &json {
                        let value = encode(&mut self.scratch, record)?;
                        table.insert(*key, value)?;
                    }
                }
                txn.open_table(META)?
                    .insert("format", u64::from(RECORD_FORMAT))?;
                txn.commit()?;
                Ok(())
            }
        }
    }

    /// Every record, in the order they were appended. A record that does not decode stops
    /// the load with an error naming it.
    pub(crate) fn load(&self) -> Result<Vec<StorageRecord>, BoxError> {
        self.load_keyed()
            .map(|records| records.into_iter().map(|(_, r)| r).collect())
    }

    /// Every record with its key, in order.
    pub(crate) fn load_keyed(&self) -> Result<Vec<(u64, StorageRecord)>, BoxError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RECORDS)?;
        let mut records = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
        for entry in table.iter()? {
            let (key, value) = entry?;
            let bytes = Bytes::copy_from_slice(value.value());
            let record = decode_record(&bytes).map_err(|e| {
                format!(
                    "{}: stored record {} cannot be read: {e}",
                    self.path.display(),
                    key.value()
                )
            })?;
            records.push((key.value(), record));
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
        let key = self.insert_from(&txn, self.next_key, records)?;
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
        let key = self.insert_from(&txn, 0, records)?;
        txn.commit()?;
        self.next_key = key;
        self.len = key;
        Ok(())
    }

    /// Carries out `batch` in one transaction, in order, and commits it durably: group
    /// commit. A crash leaves all of it or none.
    pub(crate) fn commit_batch(&mut self, batch: &[Write]) -> Result<(), BoxError> {
        // A replacement makes everything before it moot.
        let start = batch
            .iter()
            .rposition(|w| matches!(w, Write::Replace(_)))
            .unwrap_or(0);
        let txn = self.db.begin_write()?;
        let (mut next_key, mut len) = (self.next_key, self.len);
        for write in batch.get(start..).unwrap_or_default() {
            match write {
                Write::Append(records) => {
                    let key = self.insert_from(&txn, next_key, records)?;
                    len = len.saturating_add(key - next_key);
                    next_key = key;
                }
                Write::Replace(records) => {
                    txn.delete_table(RECORDS)?;
                    next_key = self.insert_from(&txn, 0, records)?;
                    len = next_key;
                }
            }
        }
        txn.commit()?;
        self.next_key = next_key;
        self.len = len;
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

    /// Inserts `records` under the keys `first`, `first + 1`, … in `txn`; returns the key
    /// after the last one.
    fn insert_from(
        &mut self,
        txn: &redb::WriteTransaction,
        first: u64,
        records: &[StorageRecord],
    ) -> Result<u64, BoxError> {
        let mut table = txn.open_table(RECORDS)?;
        let mut key = first;
        for record in records {
            let value = encode(&mut self.scratch, record)?;
            table.insert(key, value)?;
            key = key.saturating_add(1);
        }
        Ok(key)
    }
}

/// `record`'s binary form, in `scratch` (cleared first).
fn encode<'a>(scratch: &'a mut BytesMut, record: &StorageRecord) -> Result<&'a [u8], BoxError> {
    scratch.clear();
    encode_record(record, scratch).map_err(|e| format!("a record cannot be stored: {e}"))?;
    Ok(&scratch[..])
}

/// A change of the log, as the engine hands it to the storage thread.
#[derive(Debug)]
pub(crate) enum Write {
    /// Records appended.
    Append(Vec<StorageRecord>),
    /// The whole log replaced by a snapshot (compaction).
    Replace(Vec<StorageRecord>),
}

/// What the storage thread reports.
#[derive(Debug)]
pub(crate) enum Committed {
    /// Every record up to this engine sequence number is durable.
    Upto(u64),
    /// A commit failed: nothing after the last `Upto` is durable, and the thread has ended.
    Failed(BoxError),
}

/// The storage thread: it owns the [`Store`] and commits what the engine hands it, every
/// write that arrived while the previous commit was running in one transaction (group
/// commit). The engine goes on routing meanwhile; what depends on a record is released when
/// its [`Committed::Upto`] arrives (`Broker::handle_committed`).
#[derive(Debug)]
pub(crate) struct StoreThread {
    writes: Option<std::sync::mpsc::Sender<(Write, u64)>>,
    thread: Option<std::thread::JoinHandle<Store>>,
}

impl StoreThread {
    /// Starts the thread; it reports on `committed`.
    pub(crate) fn spawn(
        mut store: Store,
        committed: tokio::sync::mpsc::UnboundedSender<Committed>,
    ) -> Result<Self, BoxError> {
        let (tx, rx) = std::sync::mpsc::channel::<(Write, u64)>();
        let thread = std::thread::Builder::new()
            .name("mqtt-broker-store".to_owned())
            .spawn(move || {
                let mut batch = Vec::new();
                while let Ok(first) = rx.recv() {
                    batch.push(first);
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    let upto = batch.iter().map(|(_, seq)| *seq).max().unwrap_or(0);
                    let writes: Vec<Write> = batch.drain(..).map(|(w, _)| w).collect();
                    match store.commit_batch(&writes) {
                        Ok(()) => {
                            if committed.send(Committed::Upto(upto)).is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            let _ = committed.send(Committed::Failed(e));
                            break;
                        }
                    }
                }
                store
            })?;
        Ok(Self {
            writes: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hands `write` to the thread; `seq` is the engine's sequence number of its last record.
    /// Returns false when the thread has ended (after a failed commit, reported on its
    /// channel).
    pub(crate) fn submit(&self, write: Write, seq: u64) -> bool {
        self.writes
            .as_ref()
            .is_some_and(|tx| tx.send((write, seq)).is_ok())
    }

    /// Waits until everything submitted is committed (or the thread failed), and returns the
    /// store.
    pub(crate) fn finish(mut self) -> Option<Store> {
        self.writes = None;
        self.thread.take().and_then(|t| t.join().ok())
    }
}
