//! [`Change`]: one committed change of the registry (a create, update, delete or expiry) with its
//! revision, as the change log keeps it and the change feed delivers it.

use std::fmt;
use std::sync::Arc;

use crate::{Guid, Record};

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A record was created (also over an expired one, after that one's [`Op::Expire`]).
    Create,
    /// A live record was changed.
    Update,
    /// A live record was deleted.
    Delete,
    /// An expired record was removed, by a purge or by a create of its GUID.
    Expire,
}

impl Op {
    /// The name used in the change feed: `create`, `update`, `delete`, `expire`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Expire => "expire",
        }
    }

    /// The operation named `text`.
    pub fn parse(text: &str) -> Option<Op> {
        [Op::Create, Op::Update, Op::Delete, Op::Expire].into_iter().find(|op| op.as_str() == text)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A committed change. Revisions are positive, strictly increasing in commit order, across every
/// process sharing the database.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    revision: u64,
    op: Op,
    guid: Guid,
    at: u64,
    record: Option<Arc<Record>>,
}

impl Change {
    /// A create or update, leaving `record`.
    pub(crate) fn put(revision: u64, op: Op, at: u64, record: Arc<Record>) -> Change {
        Change { revision, op, guid: *record.guid(), at, record: Some(record) }
    }

    /// A delete or expiry of `guid`.
    pub(crate) fn remove(revision: u64, op: Op, at: u64, guid: Guid) -> Change {
        Change { revision, op, guid, at, record: None }
    }

    /// The revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// What the change did.
    pub fn op(&self) -> Op {
        self.op
    }

    /// The record's GUID.
    pub fn guid(&self) -> &Guid {
        &self.guid
    }

    /// When it was committed, by the clock of the store that made it (Unix seconds).
    pub fn at(&self) -> u64 {
        self.at
    }

    /// The record as it was after a create or update; `None` after a delete or expiry.
    pub fn record(&self) -> Option<&Arc<Record>> {
        self.record.as_ref()
    }
}
