//! Durable storage of the broker's state: a redb file, `broker.redb`, holding the state the
//! engine's [`StorageRecord`]s describe, keyed so that each record replaces or deletes its own
//! key (an acknowledgement deletes its queue entry) and nothing grows without bound: there is
//! no log to compact.
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `"format"`, `"layout"` | the record format ([`RECORD_FORMAT`]) and this layout ([`LAYOUT`]) |
//! | `sessions` | Client Identifier | its `Session` record |
//! | `session_state` | Client Identifier | its last `SessionDisconnected` or `SessionConnected` record |
//! | `subscriptions` | (Client Identifier, Topic Filter) | the `Subscribed` record |
//! | `queue` | (Client Identifier, position) | message id, QoS, RETAIN, state (queued, sent, released), Packet Identifier, Subscription Identifiers |
//! | `messages` | message id | the message (topic, properties and payload in their wire form), once however many sessions it is queued for; deleted with its last queue entry |
//! | `incoming_qos2` | (Client Identifier, Packet Identifier) | empty |
//! | `wills` | Client Identifier | the `Will` record |
//! | `will_at` | Client Identifier | when the will is to be published (ms) |
//! | `retained` | topic | the `Retained` record |
//!
//! Records and messages are in the binary form of [`mqtt_session::broker::record`]. Every
//! write is one redb write transaction, committed with redb's default durability
//! (`Durability::Immediate`: on disk when `commit` returns), so what the broker acknowledged
//! after a commit survives a SIGKILL or a power cut, and a crash leaves a transaction whole or
//! absent: there is no torn record to recover from.
//!
//! Earlier layouts (a log of JSON records, then a log of binary records) are migrated on open,
//! in one transaction. A newer format or layout, or a value that does not decode, stops the
//! start with an error naming the file, the table and the key: nothing is dropped silently.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqtt_session::Timestamp;
use mqtt_session::broker::record::{
    RECORD_FORMAT, decode_message, decode_record, encode_message, encode_record,
};
use mqtt_session::broker::{Message, StorageRecord};
use mqtt_session::codec::{PacketId, QoS};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
    WriteTransaction,
};

use crate::BoxError;

/// The layout described above.
pub(crate) const LAYOUT: u64 = 2;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// Layouts 0 and 1: the log, sequence number → one record (JSON, then binary).
const RECORDS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("records");
const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions");
const SESSION_STATE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("session_state");
const SUBSCRIPTIONS: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("subscriptions");
const QUEUE: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("queue");
const MESSAGES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("messages");
const INCOMING_QOS2: TableDefinition<'_, (&str, u16), &[u8]> =
    TableDefinition::new("incoming_qos2");
const WILLS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("wills");
const WILL_AT: TableDefinition<'_, &str, u64> = TableDefinition::new("will_at");
const RETAINED: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("retained");

/// redb's page cache.
const CACHE_SIZE: usize = 16 * 1024 * 1024;

/// The file inside the data directory.
pub(crate) const FILE_NAME: &str = "broker.redb";

/// An error a retry cannot fix: a record this broker cannot write, or a stored value it cannot
/// read. The storage thread stops on it (the broker with it) instead of retrying.
#[derive(Debug)]
pub(crate) struct Unstorable(String);

impl std::fmt::Display for Unstorable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unstorable {}

fn unstorable(what: impl std::fmt::Display) -> BoxError {
    Box::new(Unstorable(what.to_string()))
}

/// Queue entry states.
const QUEUED: u8 = 0;
const SENT: u8 = 1;
const RELEASED: u8 = 2;

/// The broker's storage.
#[derive(Debug)]
pub(crate) struct Store {
    db: Database,
    path: PathBuf,
    /// Reused for each value's bytes.
    scratch: BytesMut,
    /// Stored messages: id → how many queue entries refer to it, and the message itself
    /// (held so that its address, by which the records' shared messages are recognised,
    /// is not reused while the id lives).
    messages: HashMap<u64, (u32, Option<Arc<Message>>)>,
    /// Address of a stored message → its id.
    by_address: HashMap<usize, u64>,
    next_message: u64,
}

/// One queue entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QueueEntry {
    message: u64,
    qos: QoS,
    retain: bool,
    state: u8,
    packet_id: u16,
    subscription_ids: Vec<u32>,
}

impl QueueEntry {
    fn encode(&self, buf: &mut BytesMut) {
        buf.clear();
        buf.put_u64(self.message);
        buf.put_u8(self.qos.bits());
        buf.put_u8(u8::from(self.retain));
        buf.put_u8(self.state);
        buf.put_u16(self.packet_id);
        for id in &self.subscription_ids {
            buf.put_u32(*id);
        }
    }

    fn decode(mut v: &[u8]) -> Option<Self> {
        if v.len() < 13 || !(v.len() - 13).is_multiple_of(4) {
            return None;
        }
        let message = v.get_u64();
        let qos = QoS::from_bits(v.get_u8())?;
        let retain = match v.get_u8() {
            0 => false,
            1 => true,
            _ => return None,
        };
        let state = v.get_u8();
        if state > RELEASED {
            return None;
        }
        let packet_id = v.get_u16();
        if state != QUEUED && packet_id == 0 {
            return None;
        }
        let mut subscription_ids = Vec::with_capacity(v.len() / 4);
        while v.has_remaining() {
            subscription_ids.push(v.get_u32());
        }
        Some(Self {
            message,
            qos,
            retain,
            state,
            packet_id,
            subscription_ids,
        })
    }
}

/// The tables of one write transaction.
struct Tables<'t> {
    sessions: redb::Table<'t, &'static str, &'static [u8]>,
    session_state: redb::Table<'t, &'static str, &'static [u8]>,
    subscriptions: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    queue: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    messages: redb::Table<'t, u64, &'static [u8]>,
    incoming_qos2: redb::Table<'t, (&'static str, u16), &'static [u8]>,
    wills: redb::Table<'t, &'static str, &'static [u8]>,
    will_at: redb::Table<'t, &'static str, u64>,
    retained: redb::Table<'t, &'static str, &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(Self {
            sessions: txn.open_table(SESSIONS)?,
            session_state: txn.open_table(SESSION_STATE)?,
            subscriptions: txn.open_table(SUBSCRIPTIONS)?,
            queue: txn.open_table(QUEUE)?,
            messages: txn.open_table(MESSAGES)?,
            incoming_qos2: txn.open_table(INCOMING_QOS2)?,
            wills: txn.open_table(WILLS)?,
            will_at: txn.open_table(WILL_AT)?,
            retained: txn.open_table(RETAINED)?,
        })
    }
}

impl Store {
    /// Opens (or creates) `dir/broker.redb`, creating `dir` if needed, and migrates an
    /// earlier layout.
    pub(crate) fn open(dir: &Path) -> Result<Self, BoxError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        // redb caches up to 1 GiB of pages by default: the broker's working set (the queue
        // entries of sessions being drained) is small and written sequentially, and every
        // byte of cache is resident memory.
        let db = Database::builder()
            .set_cache_size(CACHE_SIZE)
            .create(&path)
            .map_err(|e| format!("cannot open the database {}: {e}", path.display()))?;
        let mut store = Self {
            db,
            path,
            scratch: BytesMut::new(),
            messages: HashMap::new(),
            by_address: HashMap::new(),
            next_message: 1,
        };
        store.check_layout()?;
        Ok(store)
    }

    fn err(&self, what: impl std::fmt::Display) -> BoxError {
        format!("{}: {what}", self.path.display()).into()
    }

    /// Creates the tables of a new file, migrates an earlier layout, refuses a newer one.
    fn check_layout(&mut self) -> Result<(), BoxError> {
        let txn = self.db.begin_write()?;
        let (format, layout) = {
            let meta = txn.open_table(META)?;
            let format = meta.get("format")?.map(|v| v.value());
            let layout = meta.get("layout")?.map(|v| v.value());
            (format, layout)
        };
        if let Some(f) = format
            && f != u64::from(RECORD_FORMAT)
        {
            return Err(self.err(format_args!(
                "records in format {f}, but this broker reads format {RECORD_FORMAT} \
                 (written by a newer broker?)"
            )));
        }
        if let Some(l) = layout
            && l != LAYOUT
        {
            return Err(self.err(format_args!(
                "storage layout {l}, but this broker reads layout {LAYOUT} (written by a \
                 newer broker?)"
            )));
        }
        if layout.is_none() {
            // A new file, or a log of records: JSON (no format) or binary (format 1).
            let binary = format.is_some();
            let mut log = Vec::new();
            let exists = txn.list_tables()?.any(|t| t.name() == RECORDS.name());
            if exists {
                let table = txn.open_table(RECORDS)?;
                for entry in table.iter()? {
                    let (key, value) = entry?;
                    let key = key.value();
                    let record = if binary {
                        decode_record(&Bytes::copy_from_slice(value.value())).map_err(|e| {
                            self.err(format_args!("stored record {key} cannot be read: {e}"))
                        })?
                    } else {
                        serde_json::from_slice(value.value()).map_err(|e| {
                            self.err(format_args!(
                                "record {key} is neither binary with a format nor JSON: {e}"
                            ))
                        })?
                    };
                    log.push(record);
                }
            }
            if !log.is_empty() {
                tracing::info!(
                    file = %self.path.display(),
                    records = log.len(),
                    from = if binary { "binary log" } else { "JSON log" },
                    "migrating the data directory to keyed storage (layout {LAYOUT})"
                );
            }
            {
                let mut tables = Tables::open(&txn)?;
                for record in &log {
                    self.apply(&mut tables, record)?;
                }
            }
            if exists {
                txn.delete_table(RECORDS)?;
            }
            let mut meta = txn.open_table(META)?;
            meta.insert("format", u64::from(RECORD_FORMAT))?;
            meta.insert("layout", LAYOUT)?;
        }
        // Every table exists from here on (reads need not care).
        drop(Tables::open(&txn)?);
        txn.commit()?;
        Ok(())
    }

    /// The stored state as records, in an order [`Broker::restore`] accepts: per session its
    /// `Session` record, state, subscriptions, queue (in order, with what was sent and
    /// released), incoming QoS 2 identifiers and will; then the retained messages. A message
    /// queued for several sessions is one shared `Arc` in all their records. A value that
    /// does not decode stops the load with an error naming its table and key.
    ///
    /// [`Broker::restore`]: mqtt_session::broker::Broker::restore
    pub(crate) fn load(&mut self) -> Result<Vec<StorageRecord>, BoxError> {
        let txn = self.db.begin_read()?;
        let bad = |table: &str, key: &dyn std::fmt::Debug, e: &dyn std::fmt::Display| {
            self.err(format_args!("{table} {key:?} cannot be read: {e}"))
        };
        let record = |table: &str, key: &dyn std::fmt::Debug, v: &[u8]| {
            decode_record(&Bytes::copy_from_slice(v)).map_err(|e| bad(table, key, &e))
        };
        // The messages, shared.
        let mut messages: HashMap<u64, Arc<Message>> = HashMap::new();
        for entry in txn.open_table(MESSAGES)?.iter()? {
            let (key, value) = entry?;
            let id = key.value();
            let m = decode_message(&Bytes::copy_from_slice(value.value()))
                .map_err(|e| bad("message", &id, &e))?;
            messages.insert(id, Arc::new(m));
        }
        let mut out = Vec::new();
        let sessions = txn.open_table(SESSIONS)?;
        let state = txn.open_table(SESSION_STATE)?;
        let subscriptions = txn.open_table(SUBSCRIPTIONS)?;
        let queue = txn.open_table(QUEUE)?;
        let incoming = txn.open_table(INCOMING_QOS2)?;
        let wills = txn.open_table(WILLS)?;
        let will_at = txn.open_table(WILL_AT)?;
        let mut refs: HashMap<u64, u32> = HashMap::new();
        for entry in sessions.iter()? {
            let (key, value) = entry?;
            let client = key.value();
            out.push(record("session", &client, value.value())?);
            if let Some(v) = state.get(client)? {
                out.push(record("session state", &client, v.value())?);
            }
            for entry in subscriptions.range((client, "")..)? {
                let (key, value) = entry?;
                let (c, filter) = key.value();
                if c != client {
                    break;
                }
                out.push(record("subscription", &(c, filter), value.value())?);
            }
            for entry in queue.range((client, 0)..=(client, u64::MAX))? {
                let (key, value) = entry?;
                let (_, seq) = key.value();
                let q = QueueEntry::decode(value.value())
                    .ok_or_else(|| bad("queue entry", &(client, seq), &"invalid value"))?;
                let message = messages.get(&q.message).ok_or_else(|| {
                    bad(
                        "queue entry",
                        &(client, seq),
                        &format_args!("message {} is missing", q.message),
                    )
                })?;
                *refs.entry(q.message).or_default() += 1;
                out.push(StorageRecord::Queued {
                    client_id: client.to_owned(),
                    seq,
                    message: Arc::clone(message),
                    qos: q.qos,
                    retain: q.retain,
                    subscription_ids: q.subscription_ids,
                });
                if q.state != QUEUED {
                    let packet_id = PacketId::new(q.packet_id).ok_or_else(|| {
                        bad("queue entry", &(client, seq), &"Packet Identifier 0")
                    })?;
                    out.push(StorageRecord::Sent {
                        client_id: client.to_owned(),
                        seq,
                        packet_id,
                    });
                }
                if q.state == RELEASED {
                    out.push(StorageRecord::Released {
                        client_id: client.to_owned(),
                        seq,
                    });
                }
            }
            for entry in incoming.range((client, 0)..=(client, u16::MAX))? {
                let (key, _) = entry?;
                let (_, id) = key.value();
                let packet_id = PacketId::new(id)
                    .ok_or_else(|| bad("incoming QoS 2", &(client, id), &"Packet Identifier 0"))?;
                out.push(StorageRecord::IncomingQos2 {
                    client_id: client.to_owned(),
                    packet_id,
                });
            }
            if let Some(v) = wills.get(client)? {
                out.push(record("will", &client, v.value())?);
            }
            if let Some(at) = will_at.get(client)? {
                out.push(StorageRecord::WillScheduled {
                    client_id: client.to_owned(),
                    at: Timestamp::from_millis(at.value()),
                });
            }
        }
        for entry in txn.open_table(RETAINED)?.iter()? {
            let (key, value) = entry?;
            out.push(record("retained", &key.value(), value.value())?);
        }
        // What the store knows of its messages from now on; one nothing refers to (none
        // should exist) is deleted by the next write that touches it, or kept harmlessly.
        self.messages.clear();
        self.by_address.clear();
        self.next_message = messages.keys().max().map_or(1, |m| m.saturating_add(1));
        for (id, message) in messages {
            let n = refs.get(&id).copied().unwrap_or(0);
            self.by_address.insert(Arc::as_ptr(&message) as usize, id);
            self.messages.insert(id, (n, Some(message)));
        }
        Ok(out)
    }

    /// Rebuilds the message reference counts from the queue table, without reading the
    /// messages (after reopening: what a failed transaction changed in them is undone). The
    /// messages already stored are no longer recognised by address; one queued again is
    /// stored again, under a new id.
    fn reload_counts(&mut self) -> Result<(), BoxError> {
        let txn = self.db.begin_read()?;
        let mut counts: HashMap<u64, u32> = HashMap::new();
        for entry in txn.open_table(QUEUE)?.iter()? {
            let (key, value) = entry?;
            let q = QueueEntry::decode(value.value())
                .ok_or_else(|| self.unreadable_entry(key.value()))?;
            *counts.entry(q.message).or_default() += 1;
        }
        let mut next = 1;
        for entry in txn.open_table(MESSAGES)?.iter()? {
            let (key, _) = entry?;
            next = key.value().saturating_add(1).max(next);
        }
        self.messages = counts.into_iter().map(|(id, n)| (id, (n, None))).collect();
        self.by_address.clear();
        self.next_message = next.max(self.next_message);
        Ok(())
    }

    /// Applies `records` in one transaction and commits it durably: group commit. A crash
    /// leaves all of it or none.
    pub(crate) fn commit(&mut self, records: &[StorageRecord]) -> Result<(), BoxError> {
        if records.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut tables = Tables::open(&txn)?;
            for record in records {
                self.apply(&mut tables, record)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Gives the space of deleted values back to the file system (only possible while no
    /// transaction is open, so at startup).
    pub(crate) fn shrink_file(&mut self) -> Result<(), BoxError> {
        self.db.compact()?;
        Ok(())
    }

    /// `record`'s binary form, in the scratch buffer.
    fn encoded(&mut self, record: &StorageRecord) -> Result<&[u8], BoxError> {
        self.scratch.clear();
        encode_record(record, &mut self.scratch)
            .map_err(|e| unstorable(format_args!("a record cannot be stored: {e}")))?;
        Ok(&self.scratch[..])
    }

    /// The id of `message`, storing it if it is new; one more queue entry refers to it.
    fn store_message(
        &mut self,
        tables: &mut Tables<'_>,
        message: &Arc<Message>,
    ) -> Result<u64, BoxError> {
        let address = Arc::as_ptr(message) as usize;
        if let Some(&id) = self.by_address.get(&address)
            && let Some((n, _)) = self.messages.get_mut(&id)
        {
            *n += 1;
            return Ok(id);
        }
        let id = self.next_message;
        self.next_message += 1;
        self.scratch.clear();
        encode_message(message, &mut self.scratch)
            .map_err(|e| unstorable(format_args!("a message cannot be stored: {e}")))?;
        tables.messages.insert(id, &self.scratch[..])?;
        self.by_address.insert(address, id);
        self.messages.insert(id, (1, Some(Arc::clone(message))));
        Ok(id)
    }

    /// One queue entry less refers to message `id`: the last one deletes it.
    fn release_message(&mut self, tables: &mut Tables<'_>, id: u64) -> Result<(), BoxError> {
        let gone = match self.messages.get_mut(&id) {
            Some((n, _)) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => true,
        };
        if gone {
            if let Some((_, Some(message))) = self.messages.remove(&id) {
                self.by_address.remove(&(Arc::as_ptr(&message) as usize));
            }
            tables.messages.remove(id)?;
        }
        Ok(())
    }

    /// The error for queue entry `key` that does not decode (a retry cannot fix it).
    fn unreadable_entry(&self, key: (&str, u64)) -> BoxError {
        unstorable(format_args!(
            "{}: queue entry {key:?} cannot be read",
            self.path.display()
        ))
    }

    /// Removes queue entry (`client`, `seq`), releasing its message.
    fn remove_queued(
        &mut self,
        tables: &mut Tables<'_>,
        client: &str,
        seq: u64,
    ) -> Result<(), BoxError> {
        let removed = tables
            .queue
            .remove((client, seq))?
            .map(|v| QueueEntry::decode(v.value()));
        if let Some(entry) = removed {
            let entry = entry.ok_or_else(|| self.unreadable_entry((client, seq)))?;
            self.release_message(tables, entry.message)?;
        }
        Ok(())
    }

    /// Updates queue entry (`client`, `seq`) with `f` (nothing when there is none).
    fn update_queued(
        &mut self,
        tables: &mut Tables<'_>,
        client: &str,
        seq: u64,
        f: impl FnOnce(&mut QueueEntry),
    ) -> Result<(), BoxError> {
        let current = tables
            .queue
            .get((client, seq))?
            .map(|v| QueueEntry::decode(v.value()));
        match current {
            None => Ok(()),
            Some(None) => Err(self.unreadable_entry((client, seq))),
            Some(Some(mut entry)) => {
                f(&mut entry);
                entry.encode(&mut self.scratch);
                tables.queue.insert((client, seq), &self.scratch[..])?;
                Ok(())
            }
        }
    }

    /// Applies one record to the tables.
    fn apply(&mut self, t: &mut Tables<'_>, record: &StorageRecord) -> Result<(), BoxError> {
        use StorageRecord as R;
        match record {
            R::Session { client_id, .. } => {
                let v = self.encoded(record)?.to_vec();
                t.sessions.insert(client_id.as_str(), v.as_slice())?;
                // A `Session` record says the client is connected (as `Broker::restore`
                // reads it): an earlier disconnection no longer holds.
                t.session_state.remove(client_id.as_str())?;
            }
            R::SessionDisconnected {
                client_id,
                expiry_interval,
                ..
            } => {
                let v = self.encoded(record)?.to_vec();
                t.session_state.insert(client_id.as_str(), v.as_slice())?;
                // The expiry it carries (a DISCONNECT may change it) is the session's from now
                // on, also after a later `SessionConnected`, which carries none.
                self.set_session_expiry(t, client_id, *expiry_interval)?;
            }
            R::SessionConnected { client_id } => {
                let v = self.encoded(record)?.to_vec();
                t.session_state.insert(client_id.as_str(), v.as_slice())?;
            }
            R::SessionEnded { client_id } => self.end_session(t, client_id)?,
            R::Subscribed {
                client_id, filter, ..
            } => {
                let v = self.encoded(record)?.to_vec();
                t.subscriptions
                    .insert((client_id.as_str(), filter.as_str()), v.as_slice())?;
            }
            R::Unsubscribed { client_id, filter } => {
                t.subscriptions
                    .remove((client_id.as_str(), filter.as_str()))?;
            }
            R::Queued {
                client_id,
                seq,
                message,
                qos,
                retain,
                subscription_ids,
            } => {
                // A position written again (it should not be) releases what it held first.
                self.remove_queued(t, client_id, *seq)?;
                let id = self.store_message(t, message)?;
                let entry = QueueEntry {
                    message: id,
                    qos: *qos,
                    retain: *retain,
                    state: QUEUED,
                    packet_id: 0,
                    subscription_ids: subscription_ids.clone(),
                };
                entry.encode(&mut self.scratch);
                t.queue
                    .insert((client_id.as_str(), *seq), &self.scratch[..])?;
            }
            R::Sent {
                client_id,
                seq,
                packet_id,
            } => self.update_queued(t, client_id, *seq, |e| {
                e.state = SENT;
                e.packet_id = packet_id.get();
            })?,
            R::Released { client_id, seq } => {
                // Only a sent message can be released (`Broker::restore` ignores the rest).
                self.update_queued(t, client_id, *seq, |e| {
                    if e.state == SENT {
                        e.state = RELEASED;
                    }
                })?;
            }
            R::Delivered { client_id, seq } => self.remove_queued(t, client_id, *seq)?,
            R::IncomingQos2 {
                client_id,
                packet_id,
            } => {
                t.incoming_qos2
                    .insert((client_id.as_str(), packet_id.get()), &[][..])?;
            }
            R::IncomingQos2Released {
                client_id,
                packet_id,
            } => {
                t.incoming_qos2
                    .remove((client_id.as_str(), packet_id.get()))?;
            }
            R::Will { client_id, .. } => {
                let v = self.encoded(record)?.to_vec();
                t.wills.insert(client_id.as_str(), v.as_slice())?;
                t.will_at.remove(client_id.as_str())?;
            }
            R::WillScheduled { client_id, at } => {
                t.will_at.insert(client_id.as_str(), at.as_millis())?;
            }
            R::WillCleared { client_id } => {
                t.wills.remove(client_id.as_str())?;
                t.will_at.remove(client_id.as_str())?;
            }
            R::Retained { message } => {
                let v = self.encoded(record)?.to_vec();
                t.retained.insert(&*message.topic, v.as_slice())?;
            }
            R::RetainedCleared { topic } => {
                t.retained.remove(topic.as_str())?;
            }
            other => {
                return Err(unstorable(format_args!(
                    "a record this broker cannot store: {other:?}"
                )));
            }
        }
        Ok(())
    }

    /// Rewrites the Session Expiry Interval in `client`'s `Session` record.
    fn set_session_expiry(
        &mut self,
        t: &mut Tables<'_>,
        client: &str,
        expiry: u32,
    ) -> Result<(), BoxError> {
        let current = t
            .sessions
            .get(client)?
            .map(|v| decode_record(&Bytes::copy_from_slice(v.value())));
        match current {
            None => Ok(()),
            Some(Ok(StorageRecord::Session {
                client_id,
                expiry_interval,
                username,
            })) => {
                if expiry_interval != expiry {
                    let updated = StorageRecord::Session {
                        client_id,
                        expiry_interval: expiry,
                        username,
                    };
                    let v = self.encoded(&updated)?.to_vec();
                    t.sessions.insert(client, v.as_slice())?;
                }
                Ok(())
            }
            Some(_) => Err(unstorable(format_args!(
                "{}: the session record of {client:?} cannot be read",
                self.path.display()
            ))),
        }
    }

    /// Forgets everything about `client`'s session.
    fn end_session(&mut self, t: &mut Tables<'_>, client: &str) -> Result<(), BoxError> {
        t.sessions.remove(client)?;
        t.session_state.remove(client)?;
        t.wills.remove(client)?;
        t.will_at.remove(client)?;
        let mut filters: Vec<String> = Vec::new();
        for entry in t.subscriptions.range((client, "")..)? {
            let (key, _) = entry?;
            let (c, filter) = key.value();
            if c != client {
                break;
            }
            filters.push(filter.to_owned());
        }
        for filter in filters {
            t.subscriptions.remove((client, filter.as_str()))?;
        }
        let seqs: Vec<u64> = t
            .queue
            .range((client, 0)..=(client, u64::MAX))?
            .map(|e| e.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        for seq in seqs {
            self.remove_queued(t, client, seq)?;
        }
        let ids: Vec<u16> = t
            .incoming_qos2
            .range((client, 0)..=(client, u16::MAX))?
            .map(|e| e.map(|(k, _)| k.value().1))
            .collect::<Result<_, _>>()?;
        for id in ids {
            t.incoming_qos2.remove((client, id))?;
        }
        Ok(())
    }

    /// How many values each table holds, for the log.
    pub(crate) fn counts(&self) -> Result<Vec<(&'static str, u64)>, BoxError> {
        let txn = self.db.begin_read()?;
        Ok(vec![
            ("sessions", txn.open_table(SESSIONS)?.len()?),
            ("subscriptions", txn.open_table(SUBSCRIPTIONS)?.len()?),
            ("queued", txn.open_table(QUEUE)?.len()?),
            ("messages", txn.open_table(MESSAGES)?.len()?),
            ("retained", txn.open_table(RETAINED)?.len()?),
        ])
    }
}

/// What the storage thread reports.
#[derive(Debug)]
pub(crate) enum Committed {
    /// Every record up to this engine sequence number is durable.
    Upto(u64),
    /// The storage cannot go on (a record it cannot write, a stored value it cannot read),
    /// or the engine stopped while commits were failing: nothing after the last `Upto` is
    /// durable, and the thread has ended.
    Failed(BoxError),
}

/// The first wait before a failed commit is tried again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);
/// A failing storage is logged at most this often.
const FAILURE_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The storage thread: it owns the [`Store`] and commits what the engine hands it, every
/// batch that arrived while the previous commit was running in one transaction (group
/// commit). The engine goes on routing meanwhile; what depends on a record is released when
/// its [`Committed::Upto`] arrives (`Broker::handle_committed`).
///
/// A commit that fails (a full disk, an I/O error) is not dropped: the thread logs it, reopens
/// the database (redb asks for that after an I/O error) and tries again, with what arrived
/// meanwhile, until it succeeds. Until then nothing that depends on those records is sent —
/// no PUBACK, no PUBREC, no CONNACK of a durable session — while everything else goes on; when
/// space returns, the held acknowledgements go out. Only when the engine stops while the
/// storage still fails does the thread give up ([`Committed::Failed`]).
#[derive(Debug)]
pub(crate) struct StoreThread {
    writes: Option<std::sync::mpsc::Sender<(Vec<StorageRecord>, u64)>>,
    thread: Option<std::thread::JoinHandle<Option<Store>>>,
}

impl StoreThread {
    /// Starts the thread on the store opened from `dir`; it reports on `committed`.
    pub(crate) fn spawn(
        store: Store,
        committed: tokio::sync::mpsc::UnboundedSender<Committed>,
    ) -> Result<Self, BoxError> {
        let (tx, rx) = std::sync::mpsc::channel::<(Vec<StorageRecord>, u64)>();
        let thread = std::thread::Builder::new()
            .name("mqtt-broker-store".to_owned())
            .spawn(move || store_thread(store, &rx, &committed))?;
        Ok(Self {
            writes: Some(tx),
            thread: Some(thread),
        })
    }

    /// Hands `records` to the thread; `seq` is the engine's sequence number of the last one.
    /// Returns false when the thread has ended (it reported why on its channel).
    pub(crate) fn submit(&self, records: Vec<StorageRecord>, seq: u64) -> bool {
        self.writes
            .as_ref()
            .is_some_and(|tx| tx.send((records, seq)).is_ok())
    }

    /// Waits until everything submitted is committed (or the thread gave up), and returns the
    /// store.
    pub(crate) fn finish(mut self) -> Option<Store> {
        self.writes = None;
        self.thread.take().and_then(|t| t.join().ok()).flatten()
    }
}

/// Adds what has arrived on `rx` to `batch` (and its last sequence number to `upto`) without
/// waiting; true when the engine has dropped its end.
fn take_arrived(
    rx: &std::sync::mpsc::Receiver<(Vec<StorageRecord>, u64)>,
    batch: &mut Vec<StorageRecord>,
    upto: &mut u64,
) -> bool {
    loop {
        match rx.try_recv() {
            Ok((more, seq)) => {
                batch.extend(more);
                *upto = (*upto).max(seq);
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => return false,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return true,
        }
    }
}

/// The storage thread's loop (see [`StoreThread`]).
fn store_thread(
    store: Store,
    rx: &std::sync::mpsc::Receiver<(Vec<StorageRecord>, u64)>,
    committed: &tokio::sync::mpsc::UnboundedSender<Committed>,
) -> Option<Store> {
    let dir = store
        .path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let mut store = Some(store);
    let mut batch: Vec<StorageRecord> = Vec::new();
    let mut upto = 0;
    let mut engine_gone = false;
    // When a failure was last logged (at most one line per FAILURE_LOG_INTERVAL, however
    // often the storage fails and recovers).
    let mut logged_at: Option<std::time::Instant> = None;
    loop {
        if batch.is_empty() {
            match rx.recv() {
                Ok((records, seq)) => {
                    batch.extend(records);
                    upto = upto.max(seq);
                }
                Err(_) => return store,
            }
        }
        engine_gone |= take_arrived(rx, &mut batch, &mut upto);
        let mut delay = RETRY_FIRST;
        let mut failing_since: Option<std::time::Instant> = None;
        let mut logged = false;
        loop {
            let result = match store.as_mut() {
                Some(s) => s.commit(&batch),
                None => Err("the database is not open".into()),
            };
            match result {
                Ok(()) => {
                    if let Some(since) = failing_since
                        && logged
                    {
                        tracing::warn!(
                            after_ms = since.elapsed().as_millis() as u64,
                            records = batch.len(),
                            "storage recovered: the held records are committed"
                        );
                    }
                    batch.clear();
                    if committed.send(Committed::Upto(upto)).is_err() {
                        return store;
                    }
                    break;
                }
                Err(e) if e.downcast_ref::<Unstorable>().is_some() => {
                    // Retrying cannot help: stop, and the broker with it.
                    tracing::error!(records = batch.len(), "storage cannot go on: {e}");
                    let _ = committed.send(Committed::Failed(e));
                    return None;
                }
                Err(e) => {
                    let now = std::time::Instant::now();
                    failing_since.get_or_insert(now);
                    if logged_at.is_none_or(|t| now.duration_since(t) >= FAILURE_LOG_INTERVAL) {
                        logged_at = Some(now);
                        logged = true;
                        tracing::error!(
                            records = batch.len(),
                            "storage commit failed, retrying; acknowledgements that depend \
                             on these records wait: {e}"
                        );
                    }
                    if engine_gone {
                        let _ = committed.send(Committed::Failed(e));
                        return None;
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(RETRY_MAX);
                    // Reopen: redb refuses further writes after an I/O error, and the failed
                    // transaction's changes to the message counts are undone by reloading.
                    drop(store.take());
                    store = match Store::open(&dir).and_then(|mut s| s.reload_counts().map(|()| s))
                    {
                        Ok(s) => Some(s),
                        Err(e) => {
                            tracing::debug!("reopening the database failed: {e}");
                            None
                        }
                    };
                    // What arrived meanwhile joins the retry.
                    engine_gone |= take_arrived(rx, &mut batch, &mut upto);
                }
            }
        }
        if engine_gone && batch.is_empty() {
            return store;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use bytes::BytesMut;
    use mqtt_session::broker::{Broker, BrokerConfig, ConnectionId, Output};
    use mqtt_session::codec::{
        Connect, Packet, ProtocolVersion, PubAck, PubRec, Publish, Subscribe, SubscriptionOptions,
        TopicFilter, TopicName,
    };

    const V5: ProtocolVersion = ProtocolVersion::V5;

    struct Scenario {
        broker: Broker,
        now: Timestamp,
        records: Vec<StorageRecord>,
        /// Packet Identifiers of the PUBLISH packets each connection received.
        received: HashMap<ConnectionId, Vec<(QoS, PacketId)>>,
    }

    impl Scenario {
        fn new() -> Self {
            Self {
                broker: Broker::new(BrokerConfig::default()),
                now: Timestamp::from_secs(1_700_000_000),
                records: Vec::new(),
                received: HashMap::new(),
            }
        }

        fn send(&mut self, conn: ConnectionId, packet: Packet) {
            let mut wire = BytesMut::new();
            packet.encode(V5, &mut wire).unwrap();
            self.broker.handle_bytes(conn, &wire, self.now);
            self.drain();
        }

        fn drain(&mut self) {
            while let Some(out) = self.broker.poll_output() {
                match out {
                    Output::Persist { seq, record } => {
                        self.records.push(record);
                        self.broker.handle_committed(seq);
                    }
                    Output::TransmitReady { connection } => {
                        let mut decoder = mqtt_session::codec::Decoder::with_version(V5);
                        while let Some(data) =
                            self.broker.poll_transmit(connection, usize::MAX, self.now)
                        {
                            let mut buf = BytesMut::from(&data[..]);
                            while let Some(p) = decoder.decode(&mut buf).unwrap() {
                                if let Packet::Publish(p) = p
                                    && let Some(id) = p.packet_id
                                {
                                    self.received
                                        .entry(connection)
                                        .or_default()
                                        .push((p.qos, id));
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
        }

        fn connect(&mut self, id: &str, clean: bool, expiry: u32, will: bool) -> ConnectionId {
            let conn = self.broker.handle_connection_opened(self.now);
            let mut c = Connect::new(V5, id.try_into().unwrap());
            c.clean_start = clean;
            c.keep_alive = 0;
            c.properties.session_expiry_interval = Some(expiry);
            if will {
                let properties = mqtt_session::codec::Properties {
                    will_delay_interval: Some(600),
                    ..Default::default()
                };
                c.will = Some(mqtt_session::codec::Will {
                    topic: TopicName::try_from("wills/x").unwrap(),
                    payload: Bytes::from_static(b"gone"),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties,
                });
            }
            self.send(conn, Packet::Connect(Box::new(c)));
            conn
        }

        fn subscribe(&mut self, conn: ConnectionId, filter: &str, qos: QoS) {
            self.send(
                conn,
                Packet::Subscribe(Subscribe {
                    packet_id: PacketId::new(1).unwrap(),
                    properties: Default::default(),
                    filters: vec![(
                        TopicFilter::try_from(filter).unwrap(),
                        SubscriptionOptions::qos(qos),
                    )],
                }),
            );
        }

        fn publish(&mut self, conn: ConnectionId, topic: &str, qos: QoS, id: u16, retain: bool) {
            let mut p = Publish::new(
                TopicName::try_from(topic).unwrap(),
                Bytes::from(format!("payload {id}")),
            );
            p.qos = qos;
            p.retain = retain;
            p.packet_id = (qos != QoS::AtMostOnce).then(|| PacketId::new(id).unwrap());
            self.send(conn, Packet::Publish(p));
        }

        /// A retained PUBLISH with an empty payload (QoS 0): clears `topic`'s retained message.
        fn clear_retained(&mut self, conn: ConnectionId, topic: &str) {
            let mut p = Publish::new(TopicName::try_from(topic).unwrap(), Bytes::new());
            p.retain = true;
            self.send(conn, Packet::Publish(p));
        }

        fn close(&mut self, conn: ConnectionId) {
            self.broker.handle_connection_closed(conn, self.now);
            self.drain();
        }
    }

    /// Commits `records` to a fresh store and checks that what it loads restores the same
    /// broker as the records themselves (compared through `Broker::snapshot`).
    fn assert_restores_the_same(name: &str, records: &[StorageRecord]) {
        assert_restores_the_same_at(name, records, Timestamp::from_secs(1_700_000_100));
    }

    /// [`assert_restores_the_same`], restoring at `now`.
    fn assert_restores_the_same_at(name: &str, records: &[StorageRecord], now: Timestamp) {
        let dir =
            std::env::temp_dir().join(format!("mqtt-broker-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = Store::open(&dir).unwrap();
        store.commit(records).unwrap();
        let loaded = store.load().unwrap();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
        let snapshot = |records: Vec<StorageRecord>| {
            let mut broker = Broker::restore(
                BrokerConfig::default(),
                mqtt_session::broker::AllowAll,
                records,
                now,
            );
            let mut out = Vec::new();
            while let Some(o) = broker.poll_output() {
                out.push(format!("{o:?}"));
            }
            let mut v: Vec<String> = broker.snapshot().iter().map(|r| format!("{r:?}")).collect();
            v.sort();
            out.sort();
            (v, out)
        };
        assert_eq!(snapshot(loaded), snapshot(records.to_vec()), "{name}");
    }

    fn session(expiry: u32, username: Option<&str>) -> StorageRecord {
        StorageRecord::Session {
            client_id: "a".to_owned(),
            expiry_interval: expiry,
            username: username.map(str::to_owned),
        }
    }

    fn disconnected(expiry: u32) -> StorageRecord {
        StorageRecord::SessionDisconnected {
            client_id: "a".to_owned(),
            at: Timestamp::from_secs(1_700_000_000),
            expiry_interval: expiry,
        }
    }

    /// Found in review: a `Session` record after a disconnection means connected again
    /// (with its own expiry), and an expiry a DISCONNECT set survives a reconnection that
    /// emits only `SessionConnected`.
    #[test]
    fn session_records_in_any_order_restore_the_same_session() {
        assert_restores_the_same(
            "reconnect-new-expiry",
            &[
                session(100, None),
                disconnected(50),
                session(200, Some("u")),
            ],
        );
        assert_restores_the_same(
            "reconnect-same-expiry",
            &[
                session(100, None),
                disconnected(50),
                StorageRecord::SessionConnected {
                    client_id: "a".to_owned(),
                },
            ],
        );
        assert_restores_the_same("disconnected", &[session(100, None), disconnected(7200)]);
    }

    /// Found in review: a `Released` for a message never sent is ignored, as restore ignores
    /// it, instead of leaving an entry the store cannot read back; a will keeps its Message
    /// Expiry Interval.
    #[test]
    fn odd_records_are_kept_as_restore_reads_them() {
        let topic = TopicName::try_from("t").unwrap();
        let message = Arc::new(Message::new(
            topic.clone(),
            Bytes::from_static(b"m"),
            QoS::AtLeastOnce,
            false,
        ));
        let mut will = Message::new(topic, Bytes::from_static(b"w"), QoS::AtLeastOnce, false);
        will.properties.message_expiry_interval = Some(120);
        assert_restores_the_same(
            "released-unsent",
            &[
                session(100, None),
                StorageRecord::Queued {
                    client_id: "a".to_owned(),
                    seq: 0,
                    message,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    subscription_ids: vec![],
                },
                StorageRecord::Released {
                    client_id: "a".to_owned(),
                    seq: 0,
                },
                disconnected(100),
            ],
        );
        assert_restores_the_same(
            "will-expiry",
            &[
                session(100, None),
                StorageRecord::Will {
                    client_id: "a".to_owned(),
                    message: Box::new(will),
                    delay: 30,
                },
                disconnected(100),
                StorageRecord::WillScheduled {
                    client_id: "a".to_owned(),
                    at: Timestamp::from_secs(1_700_000_030),
                },
            ],
        );
    }

    /// One step of a random broker history for [`random_histories_restore_the_same`].
    #[derive(Debug, Clone)]
    enum Step {
        /// Client `c` connects (clean start or not, Session Expiry, with a will or not).
        Connect(usize, bool, u32, bool),
        Close(usize),
        Subscribe(usize, QoS),
        /// Client `c` publishes on topic `t/n` at QoS, retained or not.
        Publish(usize, u8, QoS, bool),
        /// Client `c` acknowledges the `n`-th PUBLISH it received (PUBACK or PUBREC).
        Ack(usize, usize),
        /// Time passes (seconds): wills and session expiry fire.
        Wait(u16),
    }

    fn qos() -> impl proptest::strategy::Strategy<Value = QoS> {
        proptest::prop_oneof![
            proptest::strategy::Just(QoS::AtMostOnce),
            proptest::strategy::Just(QoS::AtLeastOnce),
            proptest::strategy::Just(QoS::ExactlyOnce)
        ]
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            (
                0..3_usize,
                any::<bool>(),
                prop_oneof![Just(0_u32), Just(5), Just(3600)],
                any::<bool>()
            )
                .prop_map(|(c, clean, e, w)| Step::Connect(c, clean, e, w)),
            (0..3_usize).prop_map(Step::Close),
            (0..3_usize, qos()).prop_map(|(c, q)| Step::Subscribe(c, q)),
            (0..3_usize, 0..3_u8, qos(), any::<bool>())
                .prop_map(|(c, n, q, r)| Step::Publish(c, n, q, r)),
            (0..3_usize, 0..4_usize).prop_map(|(c, n)| Step::Ack(c, n)),
            (1..700_u16).prop_map(Step::Wait),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        /// Random histories of three clients: what the keyed store loads restores the same
        /// broker as the whole record stream.
        #[test]
        fn random_histories_restore_the_same(steps in proptest::collection::vec(step(), 1..40)) {
            let mut s = Scenario::new();
            let mut conns: [Option<ConnectionId>; 3] = [None; 3];
            let mut next_id = 1_u16;
            for step in steps {
                match step {
                    Step::Connect(c, clean, expiry, will) => {
                        if let Some(old) = conns[c].take() {
                            s.close(old);
                        }
                        conns[c] = Some(s.connect(&format!("c{c}"), clean, expiry, will));
                    }
                    Step::Close(c) => {
                        if let Some(old) = conns[c].take() {
                            s.close(old);
                        }
                    }
                    Step::Subscribe(c, q) => {
                        if let Some(conn) = conns[c] {
                            s.subscribe(conn, "t/#", q);
                        }
                    }
                    Step::Publish(c, n, q, retain) => {
                        if let Some(conn) = conns[c] {
                            next_id = next_id % 60_000 + 1;
                            s.publish(conn, &format!("t/{n}"), q, next_id, retain);
                        }
                    }
                    Step::Ack(c, n) => {
                        if let Some(conn) = conns[c]
                            && let Some(&(q, id)) = s.received.get(&conn).and_then(|r| r.get(n))
                        {
                            let ack = if q == QoS::AtLeastOnce {
                                Packet::PubAck(PubAck::new(id))
                            } else {
                                Packet::PubRec(PubRec::new(id))
                            };
                            s.send(conn, ack);
                        }
                    }
                    Step::Wait(secs) => {
                        s.now = s.now.plus_secs(u64::from(secs));
                        s.broker.handle_timeout(s.now);
                        s.drain();
                    }
                }
            }
            assert_restores_the_same_at("random", &s.records, s.now.plus_secs(1));
        }
    }

    /// A broker's records as the keyed store keeps them: loaded back, they restore the same
    /// state as the whole record stream does (compared through `Broker::snapshot`), each
    /// message stored once however many sessions it is queued for, and deleted with its
    /// last queue entry.
    #[test]
    fn the_keyed_store_restores_what_the_records_describe() {
        let mut s = Scenario::new();
        // Durable subscribers a (QoS 1) and b (QoS 2), and a will for a.
        let a = s.connect("a", true, 3600, true);
        s.subscribe(a, "t/#", QoS::AtLeastOnce);
        let b = s.connect("b", true, 3600, false);
        s.subscribe(b, "t/#", QoS::ExactlyOnce);
        s.subscribe(b, "u/+", QoS::AtLeastOnce);
        s.close(a);
        s.close(b);
        let p = s.connect("p", true, 0, false);
        for i in 1..=6_u16 {
            let qos = if i % 2 == 0 {
                QoS::ExactlyOnce
            } else {
                QoS::AtLeastOnce
            };
            s.publish(p, &format!("t/{i}"), qos, i, i == 3);
        }
        s.publish(p, "u/1", QoS::AtLeastOnce, 7, false);
        s.publish(p, "r/empty", QoS::AtLeastOnce, 8, true);
        s.clear_retained(p, "r/empty");
        // a comes back and acknowledges some of its messages; b comes back, receives, and
        // answers a QoS 2 message with PUBREC (then it is released, awaiting PUBCOMP).
        let a = s.connect("a", false, 3600, false);
        let got: Vec<_> = s.received.get(&a).cloned().unwrap_or_default();
        assert!(got.len() >= 6, "{got:?}");
        for (_, id) in got.iter().take(3) {
            s.send(a, Packet::PubAck(PubAck::new(*id)));
        }
        let b = s.connect("b", false, 3600, false);
        let got: Vec<_> = s.received.get(&b).cloned().unwrap_or_default();
        let (_, qos2) = got.iter().find(|(q, _)| *q == QoS::ExactlyOnce).unwrap();
        s.send(b, Packet::PubRec(PubRec::new(*qos2)));
        s.close(a);
        s.close(b);
        // c: a session that ends (clean start over an existing one).
        let c = s.connect("c", true, 3600, false);
        s.subscribe(c, "t/#", QoS::AtLeastOnce);
        s.close(c);
        s.publish(p, "t/9", QoS::AtLeastOnce, 10, false);
        let c = s.connect("c", true, 0, false);
        s.close(c);

        let dir = std::env::temp_dir().join(format!("mqtt-broker-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = Store::open(&dir).unwrap();
        // In uneven batches, as group commit cuts them.
        for chunk in s.records.chunks(7) {
            store.commit(chunk).unwrap();
        }
        let loaded = store.load().unwrap();

        let now = s.now;
        let config = BrokerConfig::default();
        let snapshot = |records: Vec<StorageRecord>| {
            let mut broker =
                Broker::restore(config.clone(), mqtt_session::broker::AllowAll, records, now);
            while broker.poll_output().is_some() {}
            let mut v: Vec<String> = broker.snapshot().iter().map(|r| format!("{r:?}")).collect();
            v.sort();
            v
        };
        assert_eq!(snapshot(loaded.clone()), snapshot(s.records.clone()));

        // Messages: each once. a has 3 unacknowledged QoS 1/2 deliveries of t/1..t/6 left
        // plus t/9; b all of t/1..t/6, u/1 and t/9. The messages shared by both are stored
        // once: the table holds as many messages as distinct ones queued.
        let mut distinct = std::collections::HashSet::new();
        let mut queued = 0;
        for r in &loaded {
            if let StorageRecord::Queued { message, .. } = r {
                distinct.insert(Arc::as_ptr(message) as usize);
                queued += 1;
            }
        }
        let counts: HashMap<_, _> = store.counts().unwrap().into_iter().collect();
        assert_eq!(counts["queued"], queued as u64);
        assert_eq!(counts["messages"], distinct.len() as u64);
        assert!(
            queued > distinct.len(),
            "some messages are shared: {queued} entries"
        );
        assert_eq!(
            counts["sessions"], 3,
            "a, b and p (still connected); c ended"
        );
        assert_eq!(counts["retained"], 1, "t/3 (r/empty was cleared)");

        // Every queue entry acknowledged: the messages go with them.
        let acks: Vec<StorageRecord> = loaded
            .iter()
            .filter_map(|r| match r {
                StorageRecord::Queued { client_id, seq, .. } => Some(StorageRecord::Delivered {
                    client_id: client_id.clone(),
                    seq: *seq,
                }),
                _ => None,
            })
            .collect();
        store.commit(&acks).unwrap();
        let counts: HashMap<_, _> = store.counts().unwrap().into_iter().collect();
        assert_eq!(counts["queued"], 0);
        assert_eq!(counts["messages"], 0);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
