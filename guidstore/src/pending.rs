//! [`Pending`]: the answer to an operation that completes on another thread (a write committed by
//! the writer thread), for either kind of caller. A thread blocks on it with [`Pending::wait`]; an
//! asynchronous task `.await`s it, whatever its runtime: it is a plain [`Future`] woken through the
//! standard [`Waker`], with no runtime type in its signature.
//!
//! The completing side is a [`Completer`]; dropping one without completing it answers
//! [`Error::Closed`], so a caller is never left waiting for a write that will not happen.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::{Error, Result};

/// The result of an operation still in progress. `.await` it, or [`wait`](Pending::wait) for it.
#[must_use = "a Pending does nothing unless awaited or waited for"]
#[derive(Debug)]
pub struct Pending<T> {
    slot: Arc<Slot<T>>,
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
    (Completer { slot: Some(Arc::clone(&slot)) }, Pending { slot })
}

impl<T> Pending<T> {
    /// A result that is already known.
    pub(crate) fn ready(result: Result<T>) -> Pending<T> {
        Pending { slot: Arc::new(Slot { state: Mutex::new(State::Done(result)), done: Condvar::new() }) }
    }

    /// Blocks the calling thread until the result is known.
    pub fn wait(self) -> Result<T> {
        let mut state = self.slot.lock();
        loop {
            match std::mem::replace(&mut *state, State::Taken) {
                State::Done(result) => return result,
                State::Taken => return Err(Error::Closed),
                State::Waiting(waker, _) => {
                    *state = State::Waiting(waker, true);
                    state = self.slot.done.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Result<T>> {
        let mut state = self.slot.lock();
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
    fn a_dropped_completer_answers_closed() {
        let (completer, pending) = pending::<u32>();
        drop(completer);
        assert!(matches!(pending.wait(), Err(Error::Closed)));
    }
}
