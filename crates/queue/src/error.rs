//! The queue's error, and how it becomes the domain error callers answer with.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The queue holds its configured maximum of events; the caller should shed load.
    #[error("the event queue is full ({0} events)")]
    Full(usize),
    #[error("{0}")]
    Config(String),
    /// A stored event does not parse (written by an incompatible version, or damaged).
    #[error("a queued event does not parse: {0}")]
    Corrupt(String),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Self::Corrupt(error.to_string())
    }
}

impl From<Error> for nimbus_core::Error {
    fn from(error: Error) -> Self {
        // A full queue is the platform's failure, not the caller's: Lambda answers a 5xx too.
        Self::Service(error.to_string())
    }
}
