//! The embedded SQLite backend `nimbus dev` runs on: one file, WAL journal, no server.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::Result;

/// Connections to one file: readers run in parallel under WAL; writers take turns, waiting
/// up to [`BUSY_TIMEOUT`] for the lock.
const MAX_CONNECTIONS: u32 = 8;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`Store`](crate::Store) in one SQLite file (or in memory, for tests: `sqlite::memory:`).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the database a `sqlite://PATH` URL names, creating the file and its folder if
    /// missing, and migrates it.
    pub async fn connect(url: &str) -> Result<Self> {
        let in_memory = is_in_memory(url);
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        if !in_memory
            && let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                crate::Error::Config(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let pool = if in_memory {
            // An in-memory database lives as long as a connection to it: keep exactly one,
            // forever.
            SqlitePoolOptions::new()
                .min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
        }
        .connect_with(options)
        .await?;
        sqlx::migrate!("../../migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }
}

/// `sqlite::memory:`, `sqlite://:memory:` and `sqlite://?mode=memory`, as sqlx reads them.
fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

crate::sql::sql_store!(SqliteStore, sqlx::Sqlite);
crate::versions::sql_versions!(SqliteStore, sqlx::Sqlite);
crate::provisioned::sql_provisioned!(SqliteStore);
crate::triggers::sql_triggers!(SqliteStore);
