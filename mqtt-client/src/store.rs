//! The client's store ([`Options::store`](crate::Options::store)): the engine's storage records
//! (`mqtt_session::client::record`) in a redb file, one key per record, so that a restarted
//! process resumes the session where it was.
//!
//! The file is locked while a client has it open (redb locks it): a second process, or a
//! second client in this one, is refused with a clear error rather than sharing it. It records
//! the record format and the Client Identifier it belongs to, and refuses to serve another.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use mqtt_session::client::{CLIENT_RECORD_FORMAT, ClientRecord, StoreChange, decode_stored};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::Error;

const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const RECORDS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("records");

/// An open store.
pub(crate) struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the store at `path` for the client `client_id` (the configured one;
    /// empty when the server assigns it), and reads what it holds.
    pub(crate) fn open(path: &Path, client_id: &str) -> Result<(Self, Vec<ClientRecord>), Error> {
        let err = |what: String| Error::Store(format!("{}: {what}", path.display()));
        let db = Database::builder()
            .set_cache_size(4 * 1024 * 1024)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    err("already in use by another client (the file is locked)".to_owned())
                }
                other => err(format!("cannot open: {other}")),
            })?;
        let store = Self {
            db,
            path: path.to_path_buf(),
        };
        let txn = store.db.begin_write().map_err(|e| err(e.to_string()))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| err(e.to_string()))?;
            let format = meta
                .get("format")
                .map_err(|e| err(e.to_string()))?
                .map(|v| v.value().to_vec());
            match format {
                Some(f) if f != CLIENT_RECORD_FORMAT.to_be_bytes() => {
                    return Err(err(format!(
                        "records in format {f:?}, this client reads format {CLIENT_RECORD_FORMAT}"
                    )));
                }
                Some(_) => {}
                None => {
                    meta.insert("format", CLIENT_RECORD_FORMAT.to_be_bytes().as_slice())
                        .map_err(|e| err(e.to_string()))?;
                }
            }
            let owner = meta
                .get("client_id")
                .map_err(|e| err(e.to_string()))?
                .map(|v| v.value().to_vec());
            match owner {
                Some(owner) if owner != client_id.as_bytes() => {
                    return Err(err(format!(
                        "it holds the session of client {:?}, not {client_id:?}",
                        String::from_utf8_lossy(&owner)
                    )));
                }
                Some(_) => {}
                None => {
                    meta.insert("client_id", client_id.as_bytes())
                        .map_err(|e| err(e.to_string()))?;
                }
            }
            txn.open_table(RECORDS).map_err(|e| err(e.to_string()))?;
        }
        txn.commit().map_err(|e| err(e.to_string()))?;
        let records = store.read().map_err(err)?;
        Ok((store, records))
    }

    fn read(&self) -> Result<Vec<ClientRecord>, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let table = txn.open_table(RECORDS).map_err(|e| e.to_string())?;
        let mut records = Vec::new();
        for entry in table.iter().map_err(|e| e.to_string())? {
            let (key, value) = entry.map_err(|e| e.to_string())?;
            let record = decode_stored(key.value(), &Bytes::copy_from_slice(value.value()))
                .map_err(|e| format!("a stored record ({:?}) is unreadable: {e}", key.value()))?;
            records.push(record);
        }
        Ok(records)
    }

    /// Applies `records` in order and makes them durable (one transaction, fsync).
    pub(crate) fn commit(&self, records: &[ClientRecord]) -> Result<(), Error> {
        let err = |what: String| Error::Store(format!("{}: {what}", self.path.display()));
        let txn = self.db.begin_write().map_err(|e| err(e.to_string()))?;
        {
            let mut table = txn.open_table(RECORDS).map_err(|e| err(e.to_string()))?;
            for record in records {
                match record.change().map_err(|e| err(e.to_string()))? {
                    StoreChange::Put { key, value } => {
                        table
                            .insert(key.as_slice(), value.as_ref())
                            .map_err(|e| err(e.to_string()))?;
                    }
                    StoreChange::Delete(keys) => {
                        for key in keys {
                            table
                                .remove(key.as_slice())
                                .map_err(|e| err(e.to_string()))?;
                        }
                    }
                    StoreChange::DeleteAllButClientId => {
                        table
                            .retain(|key, _| key.first() == Some(&0))
                            .map_err(|e| err(e.to_string()))?;
                    }
                    other => return Err(err(format!("unknown change {other:?}"))),
                }
            }
        }
        txn.commit().map_err(|e| err(e.to_string()))
    }
}
