//! [`RunToEnd`]: a future run inline by whoever awaits it, and handed to a task of its own
//! if they stop waiting, so that it still finishes.
//!
//! An invocation runs to its end even when its caller goes away, as on Lambda: the function
//! is not cut short and its instance returns to the pool in a known state. Spawning every
//! invocation would give that too, at the price of a second task woken per invocation on
//! the latency-critical path; this spawns only the abandoned ones.

use std::pin::Pin;
use std::task::{Context, Poll};

pub(crate) struct RunToEnd<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    /// `None` once it has completed.
    future: Option<Pin<Box<F>>>,
}

impl<F> RunToEnd<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    pub(crate) fn new(future: F) -> Self {
        Self {
            future: Some(Box::pin(future)),
        }
    }
}

impl<F> Future for RunToEnd<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(future) = self.future.as_mut() else {
            // Polled again after it completed: a caller's bug, as for any future.
            return Poll::Pending;
        };
        let output = std::task::ready!(future.as_mut().poll(cx));
        self.future = None;
        Poll::Ready(output)
    }
}

impl<F> Drop for RunToEnd<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        let Some(future) = self.future.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(future);
            }
            // Outside a runtime (it is shutting down) the future cannot go on; dropping it
            // stops the instance it holds.
            Err(_) => tracing::debug!("an abandoned invocation ended with its runtime"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn an_awaited_future_runs_inline() {
        let here = std::thread::current().id();
        let ran_on = RunToEnd::new(async { std::thread::current().id() }).await;
        assert_eq!(ran_on, here);
    }

    #[tokio::test]
    async fn an_abandoned_future_still_finishes() {
        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let (finished_tx, finished_rx) = oneshot::channel();
        let run = RunToEnd::new(async move {
            let _ = started_tx.send(());
            let _ = release_rx.await;
            let _ = finished_tx.send("finished");
        });
        // The caller waits until the future is under way, then gives up on it.
        let caller = tokio::spawn(async move {
            tokio::select! {
                () = run => {}
                _ = std::future::pending::<()>() => {}
            }
        });
        started_rx.await.unwrap();
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        release_tx.send(()).unwrap();
        let finished = tokio::time::timeout(Duration::from_secs(10), finished_rx).await;
        assert_eq!(finished.unwrap().unwrap(), "finished");
    }
}
