//! [`Fanout`]: the change feed as this server sends it, rendered once for all its consumers.
//!
//! One follower task per server (running while a consumer is attached) waits on the store's feed,
//! reads each batch of new changes from memory and renders it once, into one buffer of
//! event-stream frames ([`Frames`]: `id:`, `event:`, `data:` per change; the `data:` JSON is also
//! what a long poll answers). It keeps the newest rendered batches (bounded) and wakes every
//! waiting consumer with one notification per batch. An event stream then takes everything after
//! its position in one chunk per wake-up ([`Subscription::read`]): slices of the shared buffers,
//! copied only when they span several batches — so a burst of 1,000 changes costs each stream
//! one write, not 1,000, and no stream formats anything. A consumer behind what the fan-out keeps
//! reads the store itself (and renders what it reads) until it catches up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use guidstore::{Change, Store};
use hyper::body::Bytes;
use tokio::sync::watch;

/// The most changes the follower renders into one batch.
const BATCH: usize = 1_000;
/// The most rendered changes kept for consumers that are nearly caught up.
const KEEP_EVENTS: usize = 10_000;
/// The most bytes of rendered changes kept (the newest batch is kept whatever its size).
const KEEP_BYTES: usize = 8 * 1024 * 1024;
/// While changes keep coming, batches are spaced so that the writes they cause (one per attached
/// consumer) stay under about this many per second: with N consumers, a batch at most every
/// N / WRITES_PER_SECOND (0.2 ms for one, 20 ms for 100), and at most [`MAX_PACE`] apart. The
/// first change after a quiet spell goes out at once.
const WRITES_PER_SECOND: u64 = 5_000;
/// The longest pause between two batches while changes keep coming.
const MAX_PACE: Duration = Duration::from_millis(25);

/// Changes rendered once as Server-Sent-Event frames, in one buffer: `id: REV`, `event: OP`,
/// `data: EVENT` and a blank line each.
#[derive(Debug, Clone, Default)]
pub struct Frames {
    bytes: Bytes,
    /// One per change, in order.
    spans: Vec<Span>,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    revision: u64,
    /// Where the change's `data:` JSON starts in the buffer.
    data: usize,
    /// Where its frame ends (the next one's start).
    end: usize,
}

/// Frames taken for one write: the bytes, how many events they hold, and the last one's revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The frames, back to back.
    pub bytes: Bytes,
    /// How many events.
    pub count: u64,
    /// The revision of the last one.
    pub through: u64,
}

impl Frames {
    /// Renders `changes` (in revision order).
    pub fn render(changes: &[Change]) -> Frames {
        use std::fmt::Write as _;
        let mut text = String::with_capacity(changes.len() * 320);
        let mut spans = Vec::with_capacity(changes.len());
        for change in changes {
            let _ = write!(text, "id: {}\nevent: {}\ndata: ", change.revision(), change.op());
            let data = text.len();
            text.push_str(&change.to_json());
            text.push_str("\n\n");
            spans.push(Span { revision: change.revision(), data, end: text.len() });
        }
        Frames { bytes: Bytes::from(text), spans }
    }

    /// How many changes.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn first(&self) -> u64 {
        self.spans.first().map_or(0, |span| span.revision)
    }

    fn last(&self) -> u64 {
        self.spans.last().map_or(0, |span| span.revision)
    }

    fn start(&self, index: usize) -> usize {
        index.checked_sub(1).map_or(0, |previous| self.spans[previous].end)
    }

    /// The index of the first change after revision `after`.
    fn index_after(&self, after: u64) -> usize {
        self.spans.partition_point(|span| span.revision <= after)
    }

    /// The event JSON of the change at `index` (a slice of the shared buffer).
    fn json(&self, index: usize) -> Bytes {
        let span = self.spans[index];
        self.bytes.slice(span.data..span.end - 2)
    }

    /// From `index` on, the frames that fit in `room` bytes (at least one, when `take_one`):
    /// their slice, count and last revision; `None` when none fits.
    fn take(&self, index: usize, room: usize, take_one: bool) -> Option<Chunk> {
        let start = self.start(index);
        // Frames end in increasing order: a binary search, not a walk under the fan-out's lock.
        let mut end =
            index + self.spans.get(index..).unwrap_or_default().partition_point(|span| span.end - start <= room);
        if take_one && end == index && index < self.spans.len() {
            end += 1;
        }
        (end > index).then(|| Chunk {
            bytes: self.bytes.slice(start..self.spans[end - 1].end),
            count: (end - index) as u64,
            through: self.spans[end - 1].revision,
        })
    }

    /// All the frames in chunks of at most `cap` bytes (a larger frame alone in its chunk): one
    /// slice of the buffer each.
    pub fn chunks(&self, cap: usize) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let mut index = 0;
        while let Some(chunk) = self.take(index, cap, true) {
            index += chunk.count as usize;
            chunks.push(chunk);
        }
        chunks
    }
}

/// What [`Subscription::read`] found after a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// The next events, in one chunk.
    Events(Chunk),
    /// Nothing newer yet: wait ([`Subscription::wait_beyond`]).
    Current,
    /// The position is older than what the fan-out keeps: read the store.
    Behind,
}

/// The fan-out of one server (see the module documentation).
#[derive(Debug)]
pub struct Fanout {
    store: Arc<Store>,
    stopping: watch::Receiver<bool>,
    inner: Mutex<Inner>,
    /// The newest revision rendered, or the position the fan-out started over from: consumers
    /// wait for it to pass theirs. Sent after the batches are in place.
    newest: watch::Sender<u64>,
    /// Consumers waiting for a change now (for the metrics).
    waiting: AtomicUsize,
}

#[derive(Debug, Default)]
struct Inner {
    /// The newest rendered changes, consecutive, oldest first.
    batches: VecDeque<Frames>,
    /// The newest revision rendered, or the position the fan-out started over from.
    newest: u64,
    kept_events: usize,
    kept_bytes: usize,
    /// Consumers attached ([`Subscription`]s alive): the follower runs while there are any.
    attached: usize,
    following: bool,
    /// The store's feed failed (it is closing): consumers end.
    closed: bool,
}

impl Fanout {
    /// The fan-out of `store`'s feed; its follower stops when `stopping` turns true.
    pub fn new(store: Arc<Store>, stopping: watch::Receiver<bool>) -> Arc<Fanout> {
        let newest = store.feed_revision();
        Arc::new(Fanout {
            store,
            stopping,
            inner: Mutex::new(Inner { newest, ..Inner::default() }),
            newest: watch::Sender::new(newest),
            waiting: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Attaches a consumer: until the subscription drops, the follower renders every change this
    /// server learns of. Must be called inside the tokio runtime (it may start the follower).
    pub fn attach(self: &Arc<Self>) -> Subscription {
        let mut inner = self.lock();
        inner.attached += 1;
        let start = !std::mem::replace(&mut inner.following, true);
        drop(inner);
        if start {
            tokio::spawn(Arc::clone(self).follow());
        }
        Subscription { fanout: Arc::clone(self), newest: self.newest.subscribe() }
    }

    /// Consumers waiting for a change now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The follower: renders each batch of new changes once and wakes the consumers, while any
    /// is attached.
    async fn follow(self: Arc<Self>) {
        let mut stopping = self.stopping.clone();
        let mut last_batch: Option<tokio::time::Instant> = None;
        loop {
            let (newest, attached) = {
                let mut inner = self.lock();
                if inner.attached == 0 || *stopping.borrow() {
                    inner.following = false;
                    return;
                }
                (inner.newest, inner.attached)
            };
            match self.store.published_after(newest, BATCH) {
                Some(changes) if !changes.is_empty() => {
                    // Under a steady flow, gather what comes during the pace into the next batch.
                    let pace = Duration::from_micros(attached as u64 * 1_000_000 / WRITES_PER_SECOND).min(MAX_PACE);
                    if let Some(due) = last_batch.map(|last| last + pace)
                        && changes.len() < BATCH
                        && tokio::time::Instant::now() < due
                    {
                        tokio::select! {
                            () = tokio::time::sleep_until(due) => {}
                            _ = stopping.wait_for(|stopping| *stopping) => {}
                        }
                        continue;
                    }
                    last_batch = Some(tokio::time::Instant::now());
                    self.append(Frames::render(&changes));
                }
                // Memory no longer reaches back (a gap in the log, or idle long): start over from
                // the newest change; consumers behind it read the store.
                None => self.start_over(self.store.feed_revision()),
                Some(_) => {
                    tokio::select! {
                        waited = self.store.wait_for_changes_after(newest) => if let Err(error) = waited {
                            log::warn!("change feed: the store's feed ended: {error}");
                            self.close();
                            return;
                        },
                        _ = stopping.wait_for(|stopping| *stopping) => {}
                    }
                }
            }
        }
    }

    /// Adds rendered changes that continue the feed and wakes the consumers (one notification).
    fn append(&self, frames: Frames) {
        let mut inner = self.lock();
        debug_assert!(frames.first() > inner.newest);
        inner.newest = frames.last();
        inner.kept_events += frames.len();
        inner.kept_bytes += frames.bytes.len();
        inner.batches.push_back(frames);
        while inner.batches.len() > 1 && (inner.kept_events > KEEP_EVENTS || inner.kept_bytes > KEEP_BYTES) {
            if let Some(oldest) = inner.batches.pop_front() {
                inner.kept_events -= oldest.len();
                inner.kept_bytes -= oldest.bytes.len();
            }
        }
        let newest = inner.newest;
        drop(inner);
        self.newest.send_replace(newest);
    }

    /// Forgets what was rendered and goes on after `revision`.
    fn start_over(&self, revision: u64) {
        let mut inner = self.lock();
        inner.batches.clear();
        (inner.kept_events, inner.kept_bytes) = (0, 0);
        inner.newest = inner.newest.max(revision);
        let newest = inner.newest;
        drop(inner);
        self.newest.send_replace(newest);
    }

    fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.following = false;
        drop(inner);
        self.newest.send_modify(|_| {});
    }

    /// The events after `after`, up to about `cap` bytes (at least one): see [`Subscription::read`].
    fn read(&self, after: u64, cap: usize) -> Read {
        let inner = self.lock();
        if after >= inner.newest {
            return Read::Current;
        }
        let mut index = inner.batches.partition_point(|batch| batch.last() <= after);
        match inner.batches.get(index) {
            Some(batch) if batch.first() <= after + 1 => {}
            _ => return Read::Behind,
        }
        // Slices of the shared buffers, taken under the lock; joined (if several) after it.
        let mut parts: Vec<(Chunk, usize)> = Vec::new();
        let (mut position, mut room) = (after, cap);
        while let Some(batch) = inner.batches.get(index) {
            let Some(chunk) = batch.take(batch.index_after(position), room, parts.is_empty()) else { break };
            room = room.saturating_sub(chunk.bytes.len());
            position = chunk.through;
            let whole = position == batch.last();
            parts.push((chunk, batch.bytes.len()));
            if !whole {
                break;
            }
            index += 1;
        }
        drop(inner);
        Read::Events(join(parts))
    }

    /// The event JSON of each of `changes` that the fan-out has rendered (`None` for the others).
    pub fn json_of(&self, changes: &[Change]) -> Vec<Option<Bytes>> {
        let inner = self.lock();
        let first = inner.batches.front().map_or(u64::MAX, Frames::first);
        changes
            .iter()
            .map(|change| {
                let revision = change.revision();
                if revision < first || revision > inner.newest {
                    return None;
                }
                let batch = &inner.batches[inner.batches.partition_point(|batch| batch.last() < revision)];
                let index = batch.index_after(revision - 1);
                (batch.spans.get(index)?.revision == revision).then(|| batch.json(index))
            })
            .collect()
    }
}

/// One chunk from consecutive parts, each with the size of the batch buffer it slices: the part
/// itself when there is one (no copy), unless it is a small part of a large buffer — a slow
/// stream's queue would then keep the whole batch alive, outside every bound the queue counts.
fn join(mut parts: Vec<(Chunk, usize)>) -> Chunk {
    if parts.len() == 1 {
        let (mut part, buffer) = parts.pop().unwrap_or_else(|| unreachable!());
        if part.bytes.len() * 4 < buffer && buffer > crate::events::CHUNK {
            part.bytes = Bytes::copy_from_slice(&part.bytes);
        }
        return part;
    }
    let parts: Vec<Chunk> = parts.into_iter().map(|(part, _)| part).collect();
    let length = parts.iter().map(|part| part.bytes.len()).sum();
    let mut bytes = Vec::with_capacity(length);
    for part in &parts {
        bytes.extend_from_slice(&part.bytes);
    }
    Chunk {
        bytes: bytes.into(),
        count: parts.iter().map(|part| part.count).sum(),
        through: parts.last().map_or(0, |part| part.through),
    }
}

/// A consumer attached to the [`Fanout`]; detaches when dropped.
#[derive(Debug)]
pub struct Subscription {
    fanout: Arc<Fanout>,
    newest: watch::Receiver<u64>,
}

impl Subscription {
    /// Everything after `after` that the fan-out holds, as one chunk of at most about `cap` bytes
    /// (at least one event, however large).
    pub fn read(&mut self, after: u64, cap: usize) -> Read {
        // Seen before reading: a batch appended after this read wakes `wait_beyond`.
        self.newest.borrow_and_update();
        self.fanout.read(after, cap)
    }

    /// Completes once the fan-out has something after `after` (or started over past it). Errors
    /// with [`guidstore::Error::Closed`] when the store's feed has ended.
    pub async fn wait_beyond(&mut self, after: u64) -> Result<(), guidstore::Error> {
        let _waiting = Waiting::new(&self.fanout.waiting);
        loop {
            if *self.newest.borrow_and_update() > after {
                return Ok(());
            }
            if self.fanout.lock().closed {
                return Err(guidstore::Error::Closed);
            }
            if self.newest.changed().await.is_err() {
                return Err(guidstore::Error::Closed);
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.fanout.lock().attached -= 1;
    }
}

/// Counts a waiting consumer while alive.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guidstore::{NewRecord, Patch};

    /// A store with `count` changes (creates, then an update and a delete of the first record).
    fn store_with(count: usize) -> (Arc<Store>, Vec<Change>) {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let mut first = None;
        for n in 0..count.saturating_sub(2) {
            let metadata = [("n".to_owned(), serde_json::Value::from(n))].into_iter().collect();
            let record = store.create(NewRecord::new(None, None, metadata).unwrap()).unwrap();
            first.get_or_insert(*record.guid());
        }
        if let Some(guid) = first {
            let changes = [("n".to_owned(), serde_json::Value::from("x"))].into_iter().collect();
            store.update(&guid, Patch::new(None, changes).unwrap(), None).unwrap();
            store.delete(&guid, None).unwrap();
        }
        let events = store.events_after(0, 100_000).unwrap();
        assert_eq!(events.len(), count);
        (store, events)
    }

    /// The event-stream text of `changes`, rendered one by one.
    fn one_by_one(changes: &[Change]) -> String {
        changes.iter().map(|c| format!("id: {}\nevent: {}\ndata: {}\n\n", c.revision(), c.op(), c.to_json())).collect()
    }

    /// A fan-out whose follower does not run (`append` by hand), at revision `newest`.
    fn fanout_at(store: Arc<Store>, newest: u64) -> (Arc<Fanout>, Subscription) {
        let stopping = watch::Sender::new(false);
        let fanout = Fanout::new(store, stopping.subscribe());
        fanout.lock().newest = newest;
        fanout.newest.send_replace(newest);
        fanout.lock().attached += 1; // as `attach` does, without starting the follower
        let subscription = Subscription { fanout: Arc::clone(&fanout), newest: fanout.newest.subscribe() };
        (fanout, subscription)
    }

    #[test]
    fn frames_are_the_event_stream_text_with_each_event_json_inside() {
        let (_store, events) = store_with(5);
        let frames = Frames::render(&events);
        assert_eq!(frames.bytes, one_by_one(&events));
        assert_eq!([events[3].op().as_str(), events[4].op().as_str()], ["update", "delete"]);
        for (index, event) in events.iter().enumerate() {
            assert_eq!(frames.json(index), event.to_json());
        }
        // Chunks: whole frames, at most the cap (a larger frame alone), in order, as slices.
        let cap = one_by_one(&events[..2]).len();
        let chunks = frames.chunks(cap);
        assert_eq!(chunks[0], Chunk { bytes: one_by_one(&events[..2]).into(), count: 2, through: 2 });
        let mut after = 0;
        for chunk in &chunks {
            assert!(chunk.bytes.len() <= cap);
            assert_eq!(chunk.bytes, one_by_one(&events[after as usize..chunk.through as usize]));
            assert_eq!(chunk.count, chunk.through - after);
            after = chunk.through;
        }
        assert_eq!(after, 5);
        assert_eq!(chunks.iter().flat_map(|c| c.bytes.to_vec()).collect::<Vec<_>>(), frames.bytes.to_vec());
        assert_eq!(frames.chunks(1).len(), 5, "a frame larger than the cap goes alone");
        assert!(Frames::render(&[]).chunks(100).is_empty());
    }

    #[test]
    fn a_subscriber_takes_everything_pending_in_one_chunk_in_order() {
        let (store, events) = store_with(1_000);
        let (fanout, mut subscription) = fanout_at(store, 0);
        // Published in batches of various sizes, as group commits would.
        let mut at = 0;
        for size in [1, 7, 300, 2, 600, 90] {
            fanout.append(Frames::render(&events[at..at + size]));
            at += size;
        }
        let Read::Events(chunk) = subscription.read(0, usize::MAX) else { panic!("nothing to read") };
        assert_eq!((chunk.count, chunk.through), (1_000, 1_000));
        assert_eq!(chunk.bytes, one_by_one(&events), "every event once, in order, each with its id");
        assert_eq!(subscription.read(1_000, usize::MAX), Read::Current);
        // From the middle of a batch, through the next ones.
        let Read::Events(chunk) = subscription.read(5, usize::MAX) else { panic!() };
        assert_eq!(chunk.bytes, one_by_one(&events[5..]));
        // Bounded by the cap (at least one event, however large); the rest comes next, in order.
        let (mut after, mut text, mut reads) = (0, String::new(), 0);
        while let Read::Events(chunk) = subscription.read(after, 64 * 1024) {
            assert!(chunk.bytes.len() <= 64 * 1024);
            assert_eq!(chunk.count, chunk.through - after);
            text.push_str(std::str::from_utf8(&chunk.bytes).unwrap());
            (after, reads) = (chunk.through, reads + 1);
        }
        assert_eq!(text, one_by_one(&events));
        assert!(reads > 1 && reads < 10, "{reads} reads");
        assert_eq!(
            subscription.read(0, 1),
            Read::Events(Chunk { bytes: one_by_one(&events[..1]).into(), count: 1, through: 1 })
        );
    }

    #[test]
    fn every_subscriber_shares_one_rendering() {
        let (store, events) = store_with(20);
        let (fanout, mut one) = fanout_at(Arc::clone(&store), 0);
        let mut two = Subscription { fanout: Arc::clone(&fanout), newest: fanout.newest.subscribe() };
        fanout.lock().attached += 1;
        fanout.append(Frames::render(&events[..10]));
        fanout.append(Frames::render(&events[10..]));
        // Within a batch a chunk is a slice of the batch's buffer: the same bytes for everyone.
        let cap = one_by_one(&events[3..10]).len();
        let (Read::Events(a), Read::Events(b)) = (one.read(3, usize::MAX), two.read(3, cap)) else { panic!() };
        let (Read::Events(c), Read::Events(d)) = (one.read(12, usize::MAX), two.read(12, usize::MAX)) else { panic!() };
        assert_eq!(a.through, 20, "two batches joined");
        assert_eq!(b.through, 10, "the cap stops at the first batch's end");
        assert_eq!((c.bytes.as_ptr(), c.bytes.len()), (d.bytes.as_ptr(), d.bytes.len()));
        let start = {
            let inner = fanout.lock();
            inner.batches[0].bytes[inner.batches[0].start(3)..].as_ptr()
        };
        assert_eq!(b.bytes.as_ptr(), start);
        // A long poll's answer reuses the same JSON; what the fan-out does not hold is `None`.
        let json = fanout.json_of(&events);
        assert!(json.iter().zip(&events).all(|(json, event)| json.as_ref().unwrap() == &event.to_json()));
        let (_other, older) = store_with(3);
        let (fresh, _subscription) = fanout_at(store, 20);
        assert_eq!(fresh.json_of(&older), [None, None, None]);
    }

    #[test]
    fn positions_older_than_what_is_kept_read_the_store() {
        let (store, events) = store_with(30);
        let (fanout, mut subscription) = fanout_at(store, 0);
        fanout.append(Frames::render(&events[..10]));
        assert!(matches!(subscription.read(0, usize::MAX), Read::Events(_)));
        fanout.start_over(25);
        assert_eq!(subscription.read(10, usize::MAX), Read::Behind);
        assert_eq!(subscription.read(25, usize::MAX), Read::Current);
        fanout.append(Frames::render(&events[25..]));
        assert_eq!(subscription.read(24, usize::MAX), Read::Behind);
        let Read::Events(chunk) = subscription.read(25, usize::MAX) else { panic!() };
        assert_eq!(chunk.bytes, one_by_one(&events[25..]));
    }

    /// `count` small frames from revision `first` on.
    fn fake(first: u64, count: u64) -> Frames {
        let mut text = String::new();
        let mut spans = Vec::new();
        for revision in first..first + count {
            text.push_str(&format!("id: {revision}\nevent: create\ndata: "));
            let data = text.len();
            text.push_str("{}\n\n");
            spans.push(Span { revision, data, end: text.len() });
        }
        Frames { bytes: text.into(), spans }
    }

    #[test]
    fn what_is_kept_is_bounded_and_the_oldest_goes_first() {
        let (store, _) = store_with(0);
        let (fanout, mut subscription) = fanout_at(store, 0);
        for batch in 0..150 {
            fanout.append(fake(batch * 100 + 1, 100));
        }
        assert_eq!(fanout.lock().kept_events, KEEP_EVENTS);
        assert_eq!(subscription.read(4_999, usize::MAX), Read::Behind);
        let Read::Events(chunk) = subscription.read(5_000, usize::MAX) else { panic!() };
        assert_eq!((chunk.count, chunk.through), (10_000, 15_000));
        // The newest batch stays, however large.
        fanout.append(fake(15_001, 20_000));
        assert_eq!(fanout.lock().kept_events, 20_000);
        assert_eq!(
            subscription.read(15_000, 100),
            Read::Events(Chunk { bytes: fake(15_001, 2).bytes, count: 2, through: 15_002 })
        );
    }

    #[tokio::test]
    async fn the_follower_renders_each_change_once_and_stops_when_nobody_is_attached() {
        let (store, _) = store_with(3);
        let stopping = watch::Sender::new(false);
        let fanout = Fanout::new(Arc::clone(&store), stopping.subscribe());
        let mut subscription = fanout.attach();
        let writer = Arc::clone(&store);
        let written = tokio::task::spawn_blocking(move || {
            for _ in 0..500 {
                writer.create(NewRecord::new(None, None, Default::default()).unwrap()).unwrap();
            }
        });
        let (mut after, mut text) = (3, String::new());
        while after < 503 {
            match subscription.read(after, usize::MAX) {
                Read::Events(chunk) => {
                    text.push_str(std::str::from_utf8(&chunk.bytes).unwrap());
                    after = chunk.through;
                }
                Read::Current => subscription.wait_beyond(after).await.unwrap(),
                Read::Behind => panic!("behind at {after}"),
            }
        }
        written.await.unwrap();
        assert_eq!(text, one_by_one(&store.events_after(3, 1_000).unwrap()));
        assert!(fanout.lock().following);
        drop(subscription);
        // The follower ends at the next change it sees.
        store.create(NewRecord::new(None, None, Default::default()).unwrap()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while fanout.lock().following {
            assert!(std::time::Instant::now() < deadline, "the follower kept running");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(fanout.lock().attached, 0);
    }
}
