//! A future that polls again at once when it wakes itself while being polled.
//!
//! hyper's connection future wakes itself on every request with a body: the handler waits
//! for the body, then the same poll reads the body off the socket and hands it over, which
//! wakes the handler, that is the connection's own task. tokio treats a task woken during its
//! own poll as one that yielded: it goes to the back of the run queue and an idle worker is
//! woken to steal it, so every request would cross threads. [`Repoll`] absorbs those
//! wake-ups and polls again within the same turn, a few times at most, so one busy
//! connection cannot starve the others.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// Polls in one turn before a self-woken future goes back to the scheduler.
const MAX_POLLS_PER_TURN: usize = 8;

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const WOKEN_WHILE_POLLING: u8 = 2;

/// Wraps `inner`; see the module docs.
pub struct Repoll<F> {
    inner: Pin<Box<F>>,
    wake: Arc<WakeState>,
    waker: Waker,
}

#[derive(Default)]
struct WakeState {
    state: AtomicU8,
    task: AtomicWaker,
}

impl Wake for WakeState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // While the inner future is being polled, a wake-up only asks for another poll.
        let absorbed = self
            .state
            .compare_exchange(
                POLLING,
                WOKEN_WHILE_POLLING,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map_or_else(|now| now == WOKEN_WHILE_POLLING, |_| true);
        if !absorbed {
            self.task.wake();
        }
    }
}

impl<F: Future> Repoll<F> {
    pub fn new(inner: F) -> Self {
        let wake = Arc::new(WakeState::default());
        Self {
            inner: Box::pin(inner),
            waker: Waker::from(wake.clone()),
            wake,
        }
    }
}

impl<F: Future> Future for Repoll<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.wake.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..MAX_POLLS_PER_TURN {
            this.wake.state.store(POLLING, Ordering::Release);
            if let Poll::Ready(output) = this.inner.as_mut().poll(&mut inner_cx) {
                this.wake.state.store(IDLE, Ordering::Release);
                return Poll::Ready(output);
            }
            if this.wake.state.swap(IDLE, Ordering::AcqRel) != WOKEN_WHILE_POLLING {
                return Poll::Pending;
            }
        }
        // Still waking itself: let the other tasks run first.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the wake-ups of the task that polls [`Repoll`].
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Wakes {
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Wakes itself on each of its first `self_wakes` polls, then completes.
    struct WakesItself {
        self_wakes: usize,
        polls: usize,
    }

    impl Future for WakesItself {
        type Output = usize;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.polls > self.self_wakes {
                return Poll::Ready(self.polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn poll_once<F: Future>(future: &mut Repoll<F>, wakes: &Arc<Wakes>) -> Poll<F::Output> {
        let waker = Waker::from(wakes.clone());
        Pin::new(future).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_future_that_wakes_itself_is_polled_again_in_the_same_turn() {
        let wakes = Arc::new(Wakes::default());
        let mut future = Repoll::new(WakesItself {
            self_wakes: 3,
            polls: 0,
        });
        assert_eq!(poll_once(&mut future, &wakes), Poll::Ready(4));
        assert_eq!(wakes.count(), 0, "no wake-up reached the scheduler");
    }

    #[test]
    fn a_future_that_keeps_waking_itself_goes_back_to_the_scheduler() {
        let wakes = Arc::new(Wakes::default());
        let mut future = Repoll::new(WakesItself {
            self_wakes: usize::MAX,
            polls: 0,
        });
        assert_eq!(poll_once(&mut future, &wakes), Poll::Pending);
        assert_eq!(future.inner.polls, MAX_POLLS_PER_TURN);
        assert_eq!(wakes.count(), 1, "it asks to be polled again later");
    }

    #[test]
    fn a_wake_up_after_the_poll_reaches_the_task() {
        let wakes = Arc::new(Wakes::default());
        let (sender, receiver) = futures::channel::oneshot::channel::<u32>();
        let mut future = Repoll::new(receiver);
        assert!(poll_once(&mut future, &wakes).is_pending());
        assert_eq!(wakes.count(), 0);

        let woken_from_elsewhere = std::thread::spawn(move || sender.send(7));
        woken_from_elsewhere.join().unwrap().unwrap();
        assert_eq!(wakes.count(), 1);
        assert_eq!(poll_once(&mut future, &wakes), Poll::Ready(Ok(7)));
    }
}
