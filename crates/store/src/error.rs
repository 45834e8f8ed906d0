//! The store's error, and how it becomes the domain error callers answer with.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    RevisionMismatch(String),
    #[error("{0}")]
    Config(String),
    #[error("a stored row does not parse: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot migrate the schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<Error> for nimbus_core::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Conflict(message) => Self::ResourceConflict(message),
            Error::NotFound(message) => Self::ResourceNotFound(message),
            Error::RevisionMismatch(message) => Self::PreconditionFailed(message),
            other => Self::Service(other.to_string()),
        }
    }
}

/// Whether a database error is a unique-key violation (a taken name), on either backend.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Whether a database error is a foreign-key violation (a row naming a missing one).
pub(crate) fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_foreign_key_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_become_lambda_errors() {
        let lambda = |e: Error| nimbus_core::Error::from(e).lambda_type();
        assert_eq!(
            lambda(Error::Conflict("f".into())),
            "ResourceConflictException"
        );
        assert_eq!(
            lambda(Error::NotFound("f".into())),
            "ResourceNotFoundException"
        );
        assert_eq!(
            lambda(Error::RevisionMismatch("f".into())),
            "PreconditionFailedException"
        );
        assert_eq!(lambda(Error::Corrupt("row".into())), "ServiceException");
        assert_eq!(
            lambda(Error::Database(sqlx::Error::PoolTimedOut)),
            "ServiceException"
        );
    }
}
