//! The writer thread and group commit: every write of a [`Store`](crate::Store) is a [`Job`] on one
//! channel; the writer takes all queued jobs (up to `max_batch`), applies the registry's rules to
//! them in order against the records they touch, and saves the resulting [`Change`]s in one
//! transaction. Each job's caller is answered, through its typed [`Completer`], only after the
//! commit is durable and the cache has learnt of it.
//!
//! The rules run here, in memory, over an overlay of the batch's own effects (a second create of
//! one GUID in a batch sees the first): a backend sees one `load` of every GUID the batch names and
//! one `apply` of its changes, whatever its size, so a network database pays a few round trips
//! per batch rather than per write.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Instant;

use crate::backend::Transaction;
use crate::import::{ImportConflict, ImportRecord};
use crate::pending::Completer;
use crate::shared::Shared;
use crate::{
    Change, Error, Expiry, Guid, IfMatch, ImportStats, NewRecord, OnConflict, Op, Patch, Record, Result, StorageError,
};

/// A write waiting for the writer thread, with the completer of its caller's [`Pending`](crate::Pending).
pub(crate) enum Job {
    Create {
        new_record: NewRecord,
        done: Completer<Arc<Record>>,
    },
    Update {
        guid: Guid,
        patch: Patch,
        if_match: Option<IfMatch>,
        done: Completer<Arc<Record>>,
    },
    Delete {
        guid: Guid,
        if_match: Option<IfMatch>,
        done: Completer<()>,
    },
    /// Removes up to `limit` expired records. With `until_done`, the writer queues the job again
    /// while a batch comes back full, so that other writes interleave with a long purge; `total`
    /// counts what earlier rounds removed.
    Purge {
        limit: usize,
        until_done: bool,
        total: u64,
        done: Completer<u64>,
    },
    /// Imports records (see `transfer`): all or nothing, answered with what it did or the first
    /// conflict under [`OnConflict::Fail`].
    Import {
        records: Vec<ImportRecord>,
        on_conflict: OnConflict,
        done: Completer<std::result::Result<ImportStats, ImportConflict>>,
    },
}

/// What applying one job produced, before the commit.
enum Outcome {
    Record(Arc<Record>),
    Deleted,
    Purged(u64),
    Imported(std::result::Result<ImportStats, ImportConflict>),
    Failed(Error),
}

/// A job on the writer's channel, with when it was queued: on a network database no write waits
/// for storage longer than the backend's timeout in all, queueing included.
pub(crate) type Queued = (Instant, Job);

pub(crate) fn writer_loop(shared: &Shared, receiver: &mpsc::Receiver<Queued>, max_batch: usize) {
    // Jobs the writer queued itself (the next round of a purge).
    let mut requeued: VecDeque<Queued> = VecDeque::new();
    loop {
        let first = match requeued.pop_front() {
            Some(job) => job,
            None => match receiver.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        let mut batch = vec![first];
        // The callers answered by the previous commit are waking up to queue their next writes:
        // give them the processor once before taking the batch, so it holds more of them.
        // (Measured: about 10% more 32-thread creates per second; nothing when no one waits.)
        std::thread::yield_now();
        while batch.len() < max_batch {
            match requeued.pop_front().map(Ok).unwrap_or_else(|| receiver.try_recv()) {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (batch, deadline) = within_deadline(shared, batch);
        if !batch.is_empty() {
            commit_batch(shared, batch, deadline, &mut requeued);
        }
    }
    log::debug!("guidstore: writer thread stopped");
}

/// Rows a write transaction is given one more timeout for: an import of 10,000 records (or a purge
/// of many) is not a request someone waits on, and takes longer than one.
const ROWS_PER_TIMEOUT: u32 = 1_000;

/// How many rows `job` may write.
fn size(job: &Job) -> u32 {
    let rows = match job {
        Job::Import { records, .. } => records.len(),
        Job::Purge { limit, .. } => *limit,
        Job::Create { .. } | Job::Update { .. } | Job::Delete { .. } => 1,
    };
    u32::try_from(rows).unwrap_or(u32::MAX)
}

/// On a backend with a timeout: fails the jobs that have already waited that long (the database
/// was not answering while they queued; they were never attempted, so they changed nothing), and
/// gives the rest the earliest of their deadlines (one timeout from when each was queued, one more
/// per [`ROWS_PER_TIMEOUT`] rows it may write).
fn within_deadline(shared: &Shared, batch: Vec<Queued>) -> (Vec<Job>, Option<Instant>) {
    let Some(timeout) = shared.backend.timeout() else {
        return (batch.into_iter().map(|(_, job)| job).collect(), None);
    };
    let now = Instant::now();
    let mut deadline: Option<Instant> = None;
    let mut jobs = Vec::with_capacity(batch.len());
    let mut late = 0;
    for (queued, job) in batch {
        let due = queued + timeout + timeout * size(&job) / ROWS_PER_TIMEOUT;
        if due <= now {
            late += 1;
            fail(job, StorageError::transient(format!("the database did not answer within {timeout:?}")).into());
        } else {
            deadline = Some(deadline.map_or(due, |deadline| deadline.min(due)));
            jobs.push(job);
        }
    }
    if late > 0 {
        log::error!("guidstore: {late} writes waited {timeout:?} for the database without being attempted");
        shared.storage_errors.fetch_add(late, Ordering::Relaxed);
    }
    (jobs, deadline)
}

/// Commits `batch` in one transaction (by `deadline`, when there is one); if the transaction fails
/// for a reason of its own (not a transient database failure), commits each write alone so that
/// one failing write does not fail the others. After a transient failure (connection lost,
/// database not answering) every write of the batch fails: none is retried, because whether a
/// commit whose answer was lost took effect is unknown, and the database is unlikely to answer
/// the next one either.
fn commit_batch(shared: &Shared, batch: Vec<Job>, deadline: Option<Instant>, requeued: &mut VecDeque<Queued>) {
    let now = shared.clock.now();
    let named = Named::of(&batch);
    let mut planned = Plan::default();
    let mut work = |txn: &mut dyn Transaction| {
        planned = plan(shared, txn, &batch, &named, now)?;
        txn.apply(&planned.changes)
    };
    let result = match deadline {
        Some(deadline) => shared.backend.write_until(deadline, &named.guids, &mut work),
        None => shared.backend.write(&named.guids, &mut work),
    };
    match result {
        Ok(()) => finish(shared, batch, planned, requeued),
        Err(error) if batch.len() == 1 || matches!(&error, Error::Storage(storage) if storage.is_transient()) => {
            if batch.len() == 1 {
                log::error!("guidstore: write failed: {error}");
            } else {
                log::error!("guidstore: group commit of {} writes failed: {error}", batch.len());
            }
            shared.storage_errors.fetch_add(1, Ordering::Relaxed);
            for job in batch {
                fail(job, error.clone());
            }
        }
        Err(error) => {
            log::warn!("guidstore: group commit of {} writes failed ({error}); retrying one by one", batch.len());
            for job in batch {
                commit_batch(shared, vec![job], deadline, requeued);
            }
        }
    }
}

fn fail(job: Job, error: Error) {
    match job {
        Job::Create { done, .. } | Job::Update { done, .. } => done.complete(Err(error)),
        Job::Delete { done, .. } => done.complete(Err(error)),
        Job::Purge { done, .. } => done.complete(Err(error)),
        Job::Import { done, .. } => done.complete(Err(error)),
    }
}

/// The changes a batch makes and each job's outcome.
#[derive(Default)]
struct Plan {
    changes: Vec<Change>,
    outcomes: Vec<Outcome>,
}

/// The batch's view of the records it touches: what storage holds, overlaid with the batch's own
/// changes so far. `None`: no record stored.
struct Overlay {
    records: HashMap<Guid, Option<Arc<Record>>>,
}

impl Overlay {
    fn get(&self, guid: &Guid) -> Option<&Arc<Record>> {
        self.records.get(guid).and_then(Option::as_ref)
    }

    fn live(&self, guid: &Guid, now: u64) -> Result<&Arc<Record>> {
        match self.get(guid) {
            Some(record) if !record.is_expired_at(now) => Ok(record),
            _ => Err(Error::NotFound(*guid)),
        }
    }
}

/// Applies the registry's rules to every job of the batch, in order.
/// Every GUID a batch names, known before its transaction starts (a backend may load them in the
/// same round trip that opens the transaction): each job's own GUID — a create without one draws
/// its GUID now, so that the one load also shows whether the random GUID is taken — and the sorted,
/// deduplicated list of all of them.
struct Named {
    drawn: Vec<Option<Guid>>,
    guids: Vec<Guid>,
}

impl Named {
    fn of(batch: &[Job]) -> Named {
        let mut drawn = Vec::with_capacity(batch.len());
        let mut guids = Vec::with_capacity(batch.len());
        for job in batch {
            let guid = match job {
                Job::Create { new_record, .. } => Some(new_record.guid().copied().unwrap_or_else(Guid::random)),
                Job::Update { guid, .. } | Job::Delete { guid, .. } => Some(*guid),
                Job::Import { records, .. } => {
                    guids.extend(records.iter().map(|import| *import.record.guid()));
                    None
                }
                Job::Purge { .. } => None,
            };
            drawn.push(guid);
            guids.extend(guid);
        }
        guids.sort_unstable();
        guids.dedup();
        Named { drawn, guids }
    }
}

fn plan(shared: &Shared, txn: &mut dyn Transaction, batch: &[Job], named: &Named, now: u64) -> Result<Plan> {
    let (drawn, guids) = (named.drawn.iter().copied(), &named.guids);
    let mut overlay = Overlay { records: guids.iter().map(|guid| (*guid, None)).collect() };
    for record in txn.load(guids)? {
        overlay.records.insert(*record.guid(), Some(Arc::new(record)));
    }

    let mut revision = txn.revision();
    let mut plan = Plan { changes: Vec::new(), outcomes: Vec::with_capacity(batch.len()) };
    let mut record_change = |overlay: &mut Overlay, op: Op, guid: Guid, record: Option<Arc<Record>>| {
        revision += 1;
        let change = match &record {
            Some(record) => Change::put(revision, op, now, Arc::clone(record)),
            None => Change::remove(revision, op, now, guid),
        };
        overlay.records.insert(guid, record);
        plan.changes.push(change);
    };
    for (job, guid) in batch.iter().zip(drawn) {
        let outcome = match (job, guid) {
            (Job::Create { new_record, .. }, Some(guid)) => {
                match create(shared, txn, &mut overlay, new_record, guid, now) {
                    Ok((replaced, record)) => {
                        if let Some(expired) = replaced {
                            record_change(&mut overlay, Op::Expire, expired, None);
                        }
                        record_change(&mut overlay, Op::Create, *record.guid(), Some(Arc::clone(&record)));
                        Outcome::Record(record)
                    }
                    Err(error) => Outcome::Failed(error),
                }
            }
            (Job::Update { guid, patch, if_match, .. }, _) => {
                match update(shared, &overlay, guid, patch, if_match.as_ref(), now) {
                    Ok((true, record)) => {
                        record_change(&mut overlay, Op::Update, *guid, Some(Arc::clone(&record)));
                        Outcome::Record(record)
                    }
                    Ok((false, record)) => Outcome::Record(record),
                    Err(error) => Outcome::Failed(error),
                }
            }
            (Job::Delete { guid, if_match, .. }, _) => {
                match overlay.live(guid, now).and_then(|current| check_precondition(current, if_match.as_ref())) {
                    Ok(()) => {
                        record_change(&mut overlay, Op::Delete, *guid, None);
                        Outcome::Deleted
                    }
                    Err(error) => Outcome::Failed(error),
                }
            }
            (Job::Purge { limit, .. }, _) => {
                let mut removed = 0;
                for guid in txn.expired(now, *limit)? {
                    // An earlier job of this batch may have replaced or removed it.
                    let still_expired = match overlay.records.get(&guid) {
                        None => true,
                        Some(Some(record)) => record.is_expired_at(now),
                        Some(None) => false,
                    };
                    if still_expired {
                        record_change(&mut overlay, Op::Expire, guid, None);
                        removed += 1;
                    }
                }
                Outcome::Purged(removed)
            }
            (Job::Import { records, on_conflict, .. }, _) => match import(&overlay, records, *on_conflict, now) {
                Ok((stats, imported)) => {
                    for (op, record) in imported {
                        record_change(&mut overlay, op, *record.guid(), Some(record));
                    }
                    Outcome::Imported(Ok(stats))
                }
                Err(conflict) => Outcome::Imported(Err(conflict)),
            },
            (Job::Create { .. }, None) => Outcome::Failed(Error::Closed),
        };
        plan.outcomes.push(outcome);
    }
    Ok(plan)
}

/// A create: the new record, and the GUID of an expired record it replaces.
fn create(
    shared: &Shared,
    txn: &mut dyn Transaction,
    overlay: &mut Overlay,
    new_record: &NewRecord,
    mut guid: Guid,
    now: u64,
) -> Result<(Option<Guid>, Arc<Record>)> {
    let expire = match new_record.expire() {
        Some(expire) => Expiry::new_after(expire.as_secs(), now)?,
        None => Expiry::after_ttl(now, shared.default_ttl),
    };
    loop {
        match overlay.get(&guid) {
            Some(current) if !current.is_expired_at(now) => {
                if new_record.guid().is_some() {
                    return Err(Error::AlreadyExists(guid));
                }
                // A random GUID met a live record (1 in 2^128 per record): draw again.
                guid = Guid::random();
                if let std::collections::hash_map::Entry::Vacant(entry) = overlay.records.entry(guid) {
                    entry.insert(txn.load(&[guid])?.into_iter().next().map(Arc::new));
                }
            }
            current => {
                let replaced = current.map(|_| guid);
                let record = Record::new(guid, expire, new_record.metadata().clone(), new_version(None));
                return Ok((replaced, Arc::new(record)));
            }
        }
    }
}

/// An import: what it does and the records it writes (creates, and replacements as updates),
/// or its first conflict under [`OnConflict::Fail`], before anything is written.
#[allow(clippy::type_complexity, reason = "one private call site")]
fn import(
    overlay: &Overlay,
    records: &[ImportRecord],
    on_conflict: OnConflict,
    now: u64,
) -> std::result::Result<(ImportStats, Vec<(Op, Arc<Record>)>), ImportConflict> {
    let mut stats = ImportStats::default();
    let mut written: HashMap<Guid, Arc<Record>> = HashMap::new();
    let mut changes = Vec::with_capacity(records.len());
    for import in records {
        let guid = *import.record.guid();
        let current = written.get(&guid).or_else(|| overlay.get(&guid)).filter(|r| !r.is_expired_at(now));
        let op = match current {
            // Only a stored record's content is compared (a new GUID parses nothing here).
            Some(current) if current.same_content(&import.record) => {
                stats.unchanged += 1;
                continue;
            }
            None => Op::Create,
            Some(_) => match on_conflict {
                OnConflict::Skip => {
                    stats.skipped += 1;
                    continue;
                }
                OnConflict::Fail => return Err(ImportConflict { line: import.line, guid }),
                OnConflict::Replace => Op::Update,
            },
        };
        // The record comes built with a random version; a replacement's must differ from the
        // version it replaces.
        let record = match current {
            Some(current) if current.version() == import.record.version() => {
                Arc::new(import.record.with_version(new_version(Some(current.version()))))
            }
            _ => Arc::clone(&import.record),
        };
        match op {
            Op::Create => stats.created += 1,
            _ => stats.replaced += 1,
        }
        written.insert(guid, Arc::clone(&record));
        changes.push((op, record));
    }
    Ok((stats, changes))
}

/// An update: whether it changes the record, and the record after it.
fn update(
    shared: &Shared,
    overlay: &Overlay,
    guid: &Guid,
    patch: &Patch,
    if_match: Option<&IfMatch>,
    now: u64,
) -> Result<(bool, Arc<Record>)> {
    let current = overlay.live(guid, now)?;
    check_precondition(current, if_match)?;
    if let Some(expire) = patch.expire() {
        Expiry::new_after(expire.as_secs(), now)?;
    }
    let (expire, metadata) = patch.apply(current.expire(), current.metadata())?;
    if expire == current.expire() && metadata == *current.metadata() {
        return Ok((false, Arc::clone(current)));
    }
    let record = Record::new(*guid, expire, metadata, new_version(Some(current.version())));
    let size = record.to_json().len();
    if size > shared.max_record_bytes {
        return Err(Error::RecordTooLarge { size, limit: shared.max_record_bytes });
    }
    Ok((true, Arc::new(record)))
}

fn check_precondition(record: &Record, if_match: Option<&IfMatch>) -> Result<()> {
    match if_match {
        Some(condition) if !condition.matches(record) => Err(Error::PreconditionFailed(*record.guid())),
        _ => Ok(()),
    }
}

fn new_version(previous: Option<u64>) -> u64 {
    loop {
        let version: u64 = rand::random();
        if Some(version) != previous {
            return version;
        }
    }
}

/// After the commit: counters, the cache, then each caller.
fn finish(shared: &Shared, batch: Vec<Job>, plan: Plan, requeued: &mut VecDeque<Queued>) {
    let writes = plan.outcomes.iter().filter(|o| matches!(o, Outcome::Record(_) | Outcome::Deleted)).count();
    let purged: u64 = plan.outcomes.iter().map(|o| if let Outcome::Purged(n) = o { *n } else { 0 }).sum();
    shared.commits.fetch_add(1, Ordering::Relaxed);
    shared.writes.fetch_add(writes as u64, Ordering::Relaxed);
    shared.purged.fetch_add(purged, Ordering::Relaxed);
    // The cache learns of the writes before any caller is answered.
    shared.cache.apply_local(&plan.changes);
    #[cfg(feature = "redis")]
    if let Some(redis) = &shared.redis {
        redis.apply_local(&plan.changes, shared.clock.now());
    }
    match &shared.coherence {
        // The tailer publishes every process's changes, in order, this one's included.
        Some(coherence) if !plan.changes.is_empty() => coherence.wake(),
        Some(_) => {}
        None => shared.feed.publish(&plan.changes),
    }
    for (job, outcome) in batch.into_iter().zip(plan.outcomes) {
        match (job, outcome) {
            (job, Outcome::Failed(error)) => fail(job, error),
            (Job::Create { done, .. } | Job::Update { done, .. }, Outcome::Record(record)) => done.complete(Ok(record)),
            (Job::Delete { done, .. }, Outcome::Deleted) => done.complete(Ok(())),
            (Job::Import { done, .. }, Outcome::Imported(result)) => done.complete(Ok(result)),
            (Job::Purge { limit, until_done, total, done }, Outcome::Purged(removed)) => {
                let total = total + removed;
                if until_done && removed >= limit as u64 {
                    requeued.push_back((Instant::now(), Job::Purge { limit, until_done, total, done }));
                } else {
                    done.complete(Ok(total));
                }
            }
            // `plan` gives each job an outcome of its own kind: a mismatch is a bug, answered with
            // an error rather than a wrong record.
            (job, _) => {
                log::error!("guidstore: bug: a write was planned with an outcome of another kind");
                fail(job, Error::Closed);
            }
        }
    }
}
