//! Dead letters: asynchronous invocations that failed every attempt or outlived their maximum
//! age, kept with everything needed to understand and redrive them, and the [`DeadLetters`]
//! trait through which the queue-worker and the gateway reach the DLQ service, in-process or
//! over gRPC.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::function::FunctionName;
use crate::invocation::{Attempt, Cursor, RequestId};

/// Why an event was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// Every attempt allowed by `MaximumRetryAttempts` failed.
    RetriesExhausted,
    /// The event grew older than `MaximumEventAgeInSeconds` before an attempt succeeded.
    EventAgeExceeded,
    /// The function (or the version or alias the event was sent to) was deleted while the
    /// event waited.
    FunctionNotFound,
    /// The function's reserved concurrency is 0: it takes no invocations at all.
    Throttled,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetriesExhausted => "RetriesExhausted",
            Self::EventAgeExceeded => "EventAgeExceeded",
            Self::FunctionNotFound => "FunctionNotFound",
            Self::Throttled => "Throttled",
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeadLetterReason {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        [
            Self::RetriesExhausted,
            Self::EventAgeExceeded,
            Self::FunctionNotFound,
            Self::Throttled,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == s)
        .ok_or_else(|| Error::Service(format!("unknown dead-letter reason '{s}'")))
    }
}

/// An event that will not be tried again unless an operator redrives it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The request id of the original invocation; a dead letter is stored once per id.
    pub request_id: RequestId,
    pub function_name: FunctionName,
    pub qualifier: String,
    pub payload: Bytes,
    /// Every attempt, oldest first, each with its error.
    pub attempts: Vec<Attempt>,
    pub reason: DeadLetterReason,
    /// When the gateway accepted the event.
    pub enqueued_at: OffsetDateTime,
    pub dead_lettered_at: OffsetDateTime,
    /// Set once the letter has been redriven, with the request id of the new invocation.
    pub redrive: Option<RedriveMark>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedriveMark {
    pub at: OffsetDateTime,
    pub request_id: RequestId,
}

/// Which dead letters a listing, redrive or purge applies to. Times bound `dead_lettered_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    pub function_name: Option<FunctionName>,
    /// Inclusive.
    pub since: Option<OffsetDateTime>,
    /// Exclusive.
    pub until: Option<OffsetDateTime>,
}

/// Dead letters are listed oldest first; a page ends with the cursor of its last letter
/// when more may follow.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterPage {
    pub letters: Vec<DeadLetter>,
    pub next: Option<Cursor>,
}

/// What a redrive or purge applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    One(RequestId),
    Matching(DeadLetterFilter),
}

/// One redriven letter: the original request id and the id of its new invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redriven {
    pub original: RequestId,
    pub request_id: RequestId,
}

/// Largest page of dead letters one call returns.
pub const MAX_DEAD_LETTER_PAGE: usize = 100;

/// The DLQ service as its clients see it.
#[async_trait::async_trait]
pub trait DeadLetters: Send + Sync + 'static {
    /// Stores a dead letter durably before returning. Storing a request id that is already
    /// there changes nothing, so a worker may retry the call.
    async fn put(&self, letter: DeadLetter) -> Result<()>;

    /// Letters matching `filter`, oldest first, after `after`, at most `limit`
    /// (capped at [`MAX_DEAD_LETTER_PAGE`]).
    async fn list(
        &self,
        filter: DeadLetterFilter,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<DeadLetterPage>;

    /// One letter; [`Error::ResourceNotFound`] if there is none.
    async fn get(&self, request_id: RequestId) -> Result<DeadLetter>;

    /// Re-queues the selected letters as fresh events, each with a new request id linked to
    /// the original, and marks them. A letter that is already marked is not redriven again:
    /// for [`Selection::One`] that is a [`Error::ResourceConflict`], a filter skips it.
    async fn redrive(&self, selection: Selection) -> Result<Vec<Redriven>>;

    /// Deletes the selected letters, returning how many there were.
    async fn purge(&self, selection: Selection) -> Result<u64>;
}
