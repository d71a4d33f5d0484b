//! [`Pending`]: the answer to an operation that completes on another thread (a write committed by
//! the writer thread), for either kind of caller. A thread blocks on it with [`Pending::wait`]; an
//! asynchronous task `.await`s it, whatever its runtime: it is a plain [`Future`] woken through the
//! standard [`Waker`], with no runtime type in its signature.
//!
//! The completing side is a [`Completer`]; dropping one without completing it answers
//! [`Error::Closed`], so a caller is never left waiting for a write that will not happen.
//!
//! Many callers waiting for one outcome (the reads of one freshness round) share a [`Broadcast`]
//! instead: one allocation per outcome, not per caller; each caller's `Pending` holds a reference
//! to it and the place of its waker in it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::{Error, Result};

/// The result of an operation still in progress. `.await` it, or [`wait`](Pending::wait) for it.
#[must_use = "a Pending does nothing unless awaited or waited for"]
#[derive(Debug)]
pub struct Pending<T> {
    inner: Inner<T>,
}

#[derive(Debug)]
enum Inner<T> {
    /// A result of its own.
    Own(Arc<Slot<T>>),
    /// A share of a [`Broadcast`]: where its waker is in the broadcast's list (once polled), and
    /// how the broadcast's result becomes a `T` (only `Pending<()>` are made so: the identity).
    Shared { slot: Arc<BroadcastSlot>, waker: Option<usize>, map: fn(Result<()>) -> Result<T> },
}

/// The other end of a [`Pending`]: completes it once.
#[derive(Debug)]
pub(crate) struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

#[derive(Debug)]
struct Slot<T> {
    state: Mutex<State<T>>,
    done: Condvar,
}

#[derive(Debug)]
enum State<T> {
    /// The task to wake, and whether a thread blocks in [`Pending::wait`] (only then does
    /// completing signal the condition variable: a futex call per completion otherwise).
    Waiting(Option<Waker>, bool),
    Done(Result<T>),
    Taken,
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The state is replaced whole under the lock: a poisoned lock still holds a valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A new pending result and the completer that ends it.
pub(crate) fn pending<T>() -> (Completer<T>, Pending<T>) {
    let slot = Arc::new(Slot { state: Mutex::new(State::Waiting(None, false)), done: Condvar::new() });
    (Completer { slot: Some(Arc::clone(&slot)) }, Pending { inner: Inner::Own(slot) })
}

impl<T> Pending<T> {
    /// A result that is already known.
    pub(crate) fn ready(result: Result<T>) -> Pending<T> {
        Pending { inner: Inner::Own(Arc::new(Slot { state: Mutex::new(State::Done(result)), done: Condvar::new() })) }
    }

    /// Blocks the calling thread until the result is known.
    pub fn wait(self) -> Result<T> {
        let slot = match self.inner {
            Inner::Own(slot) => slot,
            Inner::Shared { slot, map, .. } => return map(slot.wait()),
        };
        let mut state = slot.lock();
        loop {
            match std::mem::replace(&mut *state, State::Taken) {
                State::Done(result) => return result,
                State::Taken => return Err(Error::Closed),
                State::Waiting(waker, _) => {
                    *state = State::Waiting(waker, true);
                    state = slot.done.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Result<T>> {
        let slot = match &mut self.get_mut().inner {
            Inner::Own(slot) => slot,
            Inner::Shared { slot, waker, map } => return slot.poll(waker, context).map(*map),
        };
        let mut state = slot.lock();
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(result) => Poll::Ready(result),
            State::Taken => Poll::Ready(Err(Error::Closed)),
            State::Waiting(waker, blocked) => {
                let waker = match waker {
                    Some(waker) if waker.will_wake(context.waker()) => waker,
                    _ => context.waker().clone(),
                };
                *state = State::Waiting(Some(waker), blocked);
                Poll::Pending
            }
        }
    }
}

impl<T> Completer<T> {
    /// Completes the pending result, waking whoever waits for it.
    pub(crate) fn complete(mut self, result: Result<T>) {
        if let Some(slot) = self.slot.take() {
            finish(&slot, result);
        }
    }
}

impl<T> Completer<T> {
    /// Whether nobody waits for the result any more (its `Pending` was dropped).
    pub(crate) fn is_abandoned(&self) -> bool {
        self.slot.as_ref().is_none_or(|slot| Arc::strong_count(slot) == 1)
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            finish(&slot, Err(Error::Closed));
        }
    }
}

fn finish<T>(slot: &Slot<T>, result: Result<T>) {
    let (waker, blocked) = {
        let mut state = slot.lock();
        match std::mem::replace(&mut *state, State::Done(result)) {
            State::Waiting(waker, blocked) => (waker, blocked),
            // Already completed or taken: keep what was there.
            previous => {
                *state = previous;
                (None, false)
            }
        }
    };
    if blocked {
        slot.done.notify_all();
    }
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// One outcome that any number of [`Pending<()>`] wait for: completed once, each of them reads
/// it. Dropping it without completing it answers [`Error::Closed`] to all of them.
#[derive(Debug)]
pub(crate) struct Broadcast {
    slot: Arc<BroadcastSlot>,
    completed: bool,
}

#[derive(Debug)]
struct BroadcastSlot {
    state: Mutex<BroadcastState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct BroadcastState {
    result: Option<Result<()>>,
    /// The tasks to wake, one place per polled `Pending` (a place is reused when it polls again).
    wakers: Vec<Waker>,
    /// Whether a thread blocks in [`Pending::wait`] (only then does completing signal the condvar).
    blocked: bool,
}

impl Broadcast {
    /// An outcome nobody waits for yet.
    pub(crate) fn new() -> Broadcast {
        Broadcast {
            slot: Arc::new(BroadcastSlot { state: Mutex::new(BroadcastState::default()), done: Condvar::new() }),
            completed: false,
        }
    }

    /// One more caller waiting for the outcome.
    pub(crate) fn subscribe(&self) -> Pending<()> {
        Pending { inner: Inner::Shared { slot: Arc::clone(&self.slot), waker: None, map: std::convert::identity } }
    }

    /// Completes the outcome, waking everyone who waits for it.
    pub(crate) fn complete(mut self, result: Result<()>) {
        self.completed = true;
        self.slot.finish(result);
    }

    /// A second way to complete the outcome, held elsewhere (a watchdog that fails it at a
    /// deadline): whichever completes it first decides; the other's outcome is ignored.
    pub(crate) fn handle(&self) -> BroadcastHandle {
        BroadcastHandle(Arc::clone(&self.slot))
    }
}

/// Completes a [`Broadcast`]'s outcome if nothing has yet (see [`Broadcast::handle`]). Dropping it
/// does nothing.
#[derive(Debug)]
pub(crate) struct BroadcastHandle(Arc<BroadcastSlot>);

impl BroadcastHandle {
    /// Completes the outcome unless it is known already, waking everyone who waits for it.
    pub(crate) fn finish(&self, result: Result<()>) {
        self.0.finish(result);
    }
}

impl Drop for Broadcast {
    fn drop(&mut self) {
        if !self.completed {
            self.slot.finish(Err(Error::Closed));
        }
    }
}

impl BroadcastSlot {
    fn lock(&self) -> MutexGuard<'_, BroadcastState> {
        // Every change under the lock leaves a valid state: a poisoned lock still holds one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self, result: Result<()>) {
        let (wakers, blocked) = {
            let mut state = self.lock();
            if state.result.is_some() {
                return;
            }
            state.result = Some(result);
            (std::mem::take(&mut state.wakers), state.blocked)
        };
        if blocked {
            self.done.notify_all();
        }
        for waker in wakers {
            waker.wake();
        }
    }

    fn poll(&self, place: &mut Option<usize>, context: &mut Context<'_>) -> Poll<Result<()>> {
        let mut state = self.lock();
        if let Some(result) = &state.result {
            return Poll::Ready(result.clone());
        }
        match place.and_then(|index| state.wakers.get_mut(index)) {
            Some(waker) => {
                if !waker.will_wake(context.waker()) {
                    *waker = context.waker().clone();
                }
            }
            None => {
                *place = Some(state.wakers.len());
                state.wakers.push(context.waker().clone());
            }
        }
        Poll::Pending
    }

    fn wait(&self) -> Result<()> {
        let mut state = self.lock();
        loop {
            if let Some(result) = &state.result {
                return result.clone();
            }
            state.blocked = true;
            state = self.done.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Polls `future` on the calling thread until it is ready, parking the thread between polls.
pub(crate) fn park_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        // A wake-up before this park makes it return at once (the unpark token).
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wait_returns_a_result_completed_on_another_thread() {
        let (completer, pending) = pending::<u32>();
        let thread = std::thread::spawn(move || completer.complete(Ok(7)));
        assert_eq!(pending.wait().unwrap(), 7);
        thread.join().unwrap();
    }

    #[test]
    fn polling_registers_the_waker_and_completion_wakes_it() {
        let (completer, mut pending) = pending::<u32>();
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut context = Context::from_waker(&waker);
        assert!(Pin::new(&mut pending).poll(&mut context).is_pending());
        completer.complete(Ok(3));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(matches!(Pin::new(&mut pending).poll(&mut context), Poll::Ready(Ok(3))));
    }

    #[test]
    fn a_broadcast_wakes_every_polled_share_once_and_answers_all() {
        let broadcast = Broadcast::new();
        let counters: Vec<_> = (0..3).map(|_| Arc::new(CountingWaker(AtomicUsize::new(0)))).collect();
        let mut shares: Vec<_> = (0..3).map(|_| broadcast.subscribe()).collect();
        for (share, counter) in shares.iter_mut().zip(&counters) {
            let waker = Waker::from(Arc::clone(counter));
            let mut context = Context::from_waker(&waker);
            // Polled twice with the same waker: one place in the list, one wake-up.
            assert!(Pin::new(&mut *share).poll(&mut context).is_pending());
            assert!(Pin::new(&mut *share).poll(&mut context).is_pending());
        }
        let blocked = broadcast.subscribe();
        let thread = std::thread::spawn(move || blocked.wait());
        std::thread::sleep(std::time::Duration::from_millis(20));
        broadcast.complete(Ok(()));
        assert!(thread.join().unwrap().is_ok());
        for (share, counter) in shares.iter_mut().zip(&counters) {
            assert_eq!(counter.0.load(Ordering::SeqCst), 1);
            let waker = Waker::from(Arc::clone(counter));
            assert!(matches!(Pin::new(&mut *share).poll(&mut Context::from_waker(&waker)), Poll::Ready(Ok(()))));
        }
    }

    #[test]
    fn a_dropped_broadcast_answers_closed_and_a_completed_one_its_result() {
        let dropped = Broadcast::new();
        let share = dropped.subscribe();
        drop(dropped);
        assert!(matches!(share.wait(), Err(Error::Closed)));
        let failed = Broadcast::new();
        let share = failed.subscribe();
        failed.complete(Err(Error::Closed));
        assert!(matches!(share.wait(), Err(Error::Closed)));
    }

    #[test]
    fn a_broadcast_answers_the_first_of_its_outcomes() {
        let broadcast = Broadcast::new();
        let early = broadcast.subscribe();
        let handle = broadcast.handle();
        handle.finish(Err(Error::Closed));
        broadcast.complete(Ok(()));
        handle.finish(Ok(()));
        assert!(matches!(early.wait(), Err(Error::Closed)));
        let completed = Broadcast::new();
        let share = completed.subscribe();
        let handle = completed.handle();
        completed.complete(Ok(()));
        handle.finish(Err(Error::Closed));
        assert!(share.wait().is_ok());
    }

    #[test]
    fn a_dropped_completer_answers_closed() {
        let (completer, pending) = pending::<u32>();
        drop(completer);
        assert!(matches!(pending.wait(), Err(Error::Closed)));
    }
}
