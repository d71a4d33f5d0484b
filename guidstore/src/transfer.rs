//! Moving a registry between stores: [`Store::export`] writes every live record as one line of
//! JSON (NDJSON, exactly as GET renders it), and [`Store::import`] reads such lines back in large
//! batches, one transaction each. `export | import` moves a registry between any two backends.
//!
//! Import rules: a line is a record `{"guid": …, "expire": …, …metadata}` under the API's rules
//! (`guid` and `expire` required). A record whose `expire` has passed is skipped. A GUID that a
//! live record already has is not a conflict when the content (expiry and metadata) is the same;
//! otherwise [`OnConflict`] decides. A bad line stops the import with its line number, before
//! anything of its batch is written; earlier batches stay committed, and running the import again
//! is harmless (their records are then unchanged).

use std::io::{BufRead, Write};
use std::sync::Arc;

use serde_json::Value;

use crate::import::{ImportConflict, ImportRecord};
use crate::pending::{Pending, pending};
use crate::record::parse_json_object;
use crate::writer::Job;
use crate::{Error, Expiry, Guid, ImportStats, NewRecord, OnConflict, Record, Result, Store};

/// Why an import stopped. Batches before the one named here are committed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A line is not a valid record (its batch was not written).
    #[error("line {line}: {error}")]
    Line {
        /// The line number, from 1.
        line: u64,
        /// What is wrong with it.
        error: Error,
    },
    /// A record conflicts with a stored one and the rule is [`OnConflict::Fail`].
    #[error("line {line}: a live record with GUID {guid} and other content exists (use skip or replace)")]
    Conflict {
        /// The line number, from 1.
        line: u64,
        /// The GUID.
        guid: Guid,
    },
    /// Reading the input failed.
    #[error("reading the input: {0}")]
    Read(#[source] std::io::Error),
    /// The store failed to write a batch.
    #[error(transparent)]
    Store(#[from] Error),
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing the output failed (a closed pipe, a full disk).
    #[error("writing the output: {0}")]
    Write(#[source] std::io::Error),
    /// The store failed to read.
    #[error(transparent)]
    Store(#[from] Error),
}

/// Records read per page of an export.
const EXPORT_PAGE: usize = 1_000;

/// Records written per import transaction on a network database (PostgreSQL, MySQL): each batch
/// is one transaction, whose rows the driver sends in chunks that fit the statement limits.
pub const IMPORT_BATCH: usize = 10_000;

/// Records written per import transaction on SQLite. Larger than [`IMPORT_BATCH`] because a
/// commit writes every B-tree page the batch touched to the WAL (and the checkpointer copies it
/// again): records arrive in random expiry order, and at 1,000,000 records a batch of 10,000
/// dirtied most pages of the expiry index, so the pages written per record fall as the batch
/// grows (measured on 1,000,000 records, `bench/import.sh`: 176,000 records/s in GUID order and
/// 105,000 in random order with batches of 50,000, against about 67,000 and 24,000 with 10,000;
/// memory grows with the batch, to 172–267 MiB peak RSS, as two batches are held: one parsed
/// while the other is written).
pub const SQLITE_IMPORT_BATCH: usize = 50_000;

/// Parses one line of an import: a record as GET renders it. `None` for a blank line.
fn parse_line(text: &str) -> Result<Option<(Guid, Expiry, NewRecord)>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let mut object = parse_json_object(text.as_bytes())?;
    let guid = match object.shift_remove("guid") {
        Some(Value::String(text)) => Guid::parse(&text)?,
        Some(_) => return Err(crate::GuidError::NotAString.into()),
        None => return Err(Error::InvalidJson("a record needs a guid".to_owned())),
    };
    // Checked against time 0 here: whether it has passed decides "skip", not "invalid".
    let expire = match object.shift_remove("expire") {
        Some(value) => Expiry::from_json(&value, 0)?,
        None => return Err(Error::InvalidJson("a record needs an expire".to_owned())),
    };
    let record = NewRecord::new(Some(guid), Some(expire), object)?;
    Ok(Some((guid, expire, record)))
}

impl Store {
    /// Writes every live record to `out` as one line of JSON, exactly as GET renders it, in GUID
    /// order, reading a page of records at a time (memory stays constant whatever the size).
    /// Returns how many were written. Records changed while the export runs may appear as they
    /// were or as they are.
    pub fn export(&self, mut out: impl Write) -> Result<u64, ExportError> {
        let mut after: Option<Guid> = None;
        let mut count = 0;
        loop {
            let page = self.scan(after.as_ref(), EXPORT_PAGE)?;
            for record in &page {
                out.write_all(record.to_json().as_bytes()).map_err(ExportError::Write)?;
                out.write_all(b"\n").map_err(ExportError::Write)?;
            }
            count += page.len() as u64;
            match page.last() {
                Some(last) if page.len() == EXPORT_PAGE => after = Some(*last.guid()),
                _ => break,
            }
        }
        out.flush().map_err(ExportError::Write)?;
        Ok(count)
    }

    /// Up to `limit` live records with GUIDs after `after`, in GUID order.
    pub fn scan(&self, after: Option<&Guid>, limit: usize) -> Result<Vec<Arc<Record>>> {
        let records = self.shared.backend.scan(after, self.now(), limit)?;
        Ok(records.into_iter().map(Arc::new).collect())
    }

    /// Records per import transaction on this store's backend: [`SQLITE_IMPORT_BATCH`] on
    /// SQLite, [`IMPORT_BATCH`] on a network database.
    pub fn import_batch_size(&self) -> usize {
        self.shared.backend.import_batch()
    }

    /// Imports NDJSON records from `input` in batches of [`Store::import_batch_size`] records, one
    /// transaction each, calling `progress` after each batch. The next batch is parsed while the previous one is
    /// written. See the module's rules.
    pub fn import(
        &self,
        input: impl BufRead,
        on_conflict: OnConflict,
        mut progress: impl FnMut(&ImportStats),
    ) -> Result<ImportStats, ImportError> {
        let mut stats = ImportStats::default();
        let batch_size = self.import_batch_size();
        let mut batch = Vec::with_capacity(batch_size);
        let mut in_flight: Option<Pending<std::result::Result<ImportStats, ImportConflict>>> = None;
        let mut finish = |in_flight: Option<Pending<_>>, stats: &mut ImportStats| -> Result<(), ImportError> {
            if let Some(pending) = in_flight {
                match pending.wait()? {
                    Ok(done) => stats.add(&done),
                    Err(ImportConflict { line, guid }) => return Err(ImportError::Conflict { line, guid }),
                }
                progress(stats);
            }
            Ok(())
        };
        for (index, line) in input.lines().enumerate() {
            let line_number = index as u64 + 1;
            let text = line.map_err(ImportError::Read)?;
            stats.lines = line_number;
            match parse_line(&text) {
                Ok(Some((guid, expire, record))) => {
                    if expire.is_expired_at(self.now()) {
                        stats.expired += 1;
                    } else {
                        let record = Record::new(guid, expire, record.into_metadata(), rand::random());
                        batch.push(ImportRecord { line: line_number, record: Arc::new(record) });
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    // The batch in flight is written; this one is not.
                    finish(in_flight.take(), &mut stats)?;
                    return Err(ImportError::Line { line: line_number, error });
                }
            }
            if batch.len() >= batch_size {
                finish(in_flight.take(), &mut stats)?;
                in_flight = Some(self.write_import_batch(std::mem::take(&mut batch), on_conflict));
            }
        }
        finish(in_flight.take(), &mut stats)?;
        if !batch.is_empty() {
            finish(Some(self.write_import_batch(batch, on_conflict)), &mut stats)?;
        } else if stats.lines == 0 {
            progress(&stats);
        }
        Ok(stats)
    }

    fn write_import_batch(
        &self,
        records: Vec<ImportRecord>,
        on_conflict: OnConflict,
    ) -> Pending<std::result::Result<ImportStats, ImportConflict>> {
        let (done, result) = pending();
        self.queue(Job::Import { records, on_conflict, done });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_records_as_get_renders_them() {
        let (guid, expire, record) =
            parse_line(r#"{"guid":"9094E4C980C74043A4B586B420E69DDF","expire":"1427736345","user":"Jay"}"#)
                .unwrap()
                .unwrap();
        assert_eq!(guid.as_str(), "9094E4C980C74043A4B586B420E69DDF");
        assert_eq!(expire.as_secs(), 1_427_736_345);
        assert_eq!(record.metadata()["user"], "Jay");
        assert!(parse_line("  ").unwrap().is_none());
        let codes: Vec<_> = [
            r#"{"expire":"1"}"#,
            r#"{"guid":"9094E4C980C74043A4B586B420E69DDF"}"#,
            r#"{"guid":"x","expire":"1"}"#,
            r#"{"guid":"9094E4C980C74043A4B586B420E69DDF","expire":"1","user":""}"#,
            r#"[1]"#,
            "{",
        ]
        .iter()
        .map(|line| parse_line(line).unwrap_err().code().as_str())
        .collect();
        assert_eq!(
            codes,
            ["invalid_json", "invalid_json", "invalid_guid", "invalid_metadata", "invalid_json", "invalid_json"]
        );
    }
}
