//! [`DeadLetterService`]: the DLQ's behaviour over a [`Store`] (where letters live) and an
//! [`EventQueue`] (where redriven events go).

use std::sync::Arc;

use nimbus_core::dead_letter::MAX_DEAD_LETTER_PAGE;
use nimbus_core::{
    Cursor, DeadLetter, DeadLetterFilter, DeadLetterPage, DeadLetters, Error, InvocationStatus,
    RedriveMark, Redriven, RequestId, Result, Selection,
};
use nimbus_queue::{EventQueue, QueuedEvent};
use nimbus_store::Store;
use time::OffsetDateTime;

/// The DLQ service in-process.
#[derive(Clone)]
pub struct DeadLetterService {
    store: Arc<dyn Store>,
    queue: Arc<dyn EventQueue>,
}

impl DeadLetterService {
    pub fn new(store: Arc<dyn Store>, queue: Arc<dyn EventQueue>) -> Self {
        Self { store, queue }
    }

    /// Marks `letter` redriven, then queues it as a fresh event. The mark comes first so that
    /// two concurrent redrives can not both queue it; if queueing fails the mark is taken back.
    async fn redrive_letter(&self, letter: &DeadLetter) -> Result<Redriven> {
        let mark = RedriveMark {
            at: OffsetDateTime::now_utc(),
            request_id: RequestId::new(),
        };
        if !self.store.mark_redriven(&letter.request_id, &mark).await? {
            return Err(already_redriven(letter.request_id));
        }
        let mut event = QueuedEvent::new(
            mark.request_id,
            letter.function_name.clone(),
            letter.qualifier.clone(),
            letter.payload.clone(),
        );
        event.redrive_of = Some(letter.request_id);
        if let Err(error) = self.queue.enqueue(&event).await {
            if let Err(unmark) = self.store.unmark_redriven(&letter.request_id, &mark).await {
                tracing::error!(
                    request_id = %letter.request_id, error = %unmark,
                    "could not take back the redrive mark of a letter that was not queued"
                );
            }
            return Err(Error::Service(format!(
                "could not queue redriven event: {error}"
            )));
        }
        // The new invocation's record exists from the moment the redrive answers.
        self.store
            .put_invocations(&[event.record(InvocationStatus::Queued)])
            .await?;
        tracing::info!(
            original = %letter.request_id, request_id = %mark.request_id,
            function = %letter.function_name, "dead letter redriven"
        );
        Ok(Redriven {
            original: letter.request_id,
            request_id: mark.request_id,
        })
    }

    async fn redrive_matching(&self, filter: &DeadLetterFilter) -> Result<Vec<Redriven>> {
        let mut redriven = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_dead_letters(filter, after.as_ref(), MAX_DEAD_LETTER_PAGE)
                .await?;
            for letter in page.iter().filter(|letter| letter.redrive.is_none()) {
                match self.redrive_letter(letter).await {
                    Ok(done) => redriven.push(done),
                    // Another redrive took it between the listing and the mark.
                    Err(Error::ResourceConflict(_)) => {}
                    Err(error) => return Err(error),
                }
            }
            match page.last() {
                Some(last) if page.len() == MAX_DEAD_LETTER_PAGE => after = Some(cursor(last)),
                _ => return Ok(redriven),
            }
        }
    }
}

#[async_trait::async_trait]
impl DeadLetters for DeadLetterService {
    async fn put(&self, letter: DeadLetter) -> Result<()> {
        let stored = self.store.put_dead_letter(&letter).await?;
        if stored {
            tracing::warn!(
                request_id = %letter.request_id, function = %letter.function_name,
                reason = %letter.reason, attempts = letter.attempts.len(),
                "event dead-lettered"
            );
        }
        Ok(())
    }

    async fn list(
        &self,
        filter: DeadLetterFilter,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<DeadLetterPage> {
        let limit = limit.clamp(1, MAX_DEAD_LETTER_PAGE);
        // One more than asked tells whether another page follows.
        let mut letters = self
            .store
            .list_dead_letters(&filter, after.as_ref(), limit + 1)
            .await?;
        let more = letters.len() > limit;
        letters.truncate(limit);
        let next = more.then(|| letters.last().map(cursor)).flatten();
        Ok(DeadLetterPage { letters, next })
    }

    async fn get(&self, request_id: RequestId) -> Result<DeadLetter> {
        self.store
            .get_dead_letter(&request_id)
            .await?
            .ok_or_else(|| not_found(request_id))
    }

    async fn redrive(&self, selection: Selection) -> Result<Vec<Redriven>> {
        match selection {
            Selection::One(request_id) => {
                let letter = self.get(request_id).await?;
                if letter.redrive.is_some() {
                    return Err(already_redriven(request_id));
                }
                Ok(vec![self.redrive_letter(&letter).await?])
            }
            Selection::Matching(filter) => self.redrive_matching(&filter).await,
        }
    }

    async fn purge(&self, selection: Selection) -> Result<u64> {
        let purged = match selection {
            Selection::One(request_id) => {
                if !self.store.delete_dead_letter(&request_id).await? {
                    return Err(not_found(request_id));
                }
                1
            }
            Selection::Matching(filter) => self.store.purge_dead_letters(&filter).await?,
        };
        tracing::info!(purged, "dead letters purged");
        Ok(purged)
    }
}

fn cursor(letter: &DeadLetter) -> Cursor {
    Cursor {
        at: letter.dead_lettered_at,
        request_id: letter.request_id,
    }
}

fn not_found(request_id: RequestId) -> Error {
    Error::ResourceNotFound(format!("Dead letter not found: {request_id}"))
}

fn already_redriven(request_id: RequestId) -> Error {
    Error::ResourceConflict(format!(
        "Dead letter {request_id} has already been redriven"
    ))
}
