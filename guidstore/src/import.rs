//! What an import hands to the writer and what it gets back: [`ImportRecord`]s in, and
//! [`ImportStats`] or the first [`ImportConflict`] out, under an [`OnConflict`] rule. Reading and
//! checking the NDJSON lines is `transfer.rs`'s; deciding and writing is the writer's.

use std::sync::Arc;

use crate::{Guid, Record};

/// What an import does with a record whose GUID a live record with other content already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    /// Keep the stored record (counted as skipped).
    #[default]
    Skip,
    /// Replace it with the imported one (an update).
    Replace,
    /// Stop the import with an error; nothing of that batch is written.
    Fail,
}

/// What an import did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportStats {
    /// Lines read (blank lines included).
    pub lines: u64,
    /// Records created.
    pub created: u64,
    /// Live records replaced ([`OnConflict::Replace`]).
    pub replaced: u64,
    /// Records already present with the same content.
    pub unchanged: u64,
    /// Conflicting records kept as they were ([`OnConflict::Skip`]).
    pub skipped: u64,
    /// Records whose `expire` had passed, not imported.
    pub expired: u64,
}

impl ImportStats {
    pub(crate) fn add(&mut self, other: &ImportStats) {
        self.created += other.created;
        self.replaced += other.replaced;
        self.unchanged += other.unchanged;
        self.skipped += other.skipped;
        self.expired += other.expired;
    }
}

/// A conflicting record met under [`OnConflict::Fail`]: its line and GUID.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImportConflict {
    pub(crate) line: u64,
    pub(crate) guid: Guid,
}

/// One record of an import with its line number, built (rendered, with a random version) by the
/// reading thread: the writer only decides whether to write it.
#[derive(Debug, Clone)]
pub(crate) struct ImportRecord {
    pub(crate) line: u64,
    pub(crate) record: Arc<Record>,
}
