//! The embedded backend `nimbus dev` runs on: one table in a SQLite file (WAL), claimed
//! with a single `UPDATE ... RETURNING` so concurrent consumers never share a ready event.

use std::pin::pin;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{Delivery, Error, EventQueue, QueueStats, QueuedEvent, Result, duration_ms, unix_ms};

const MAX_CONNECTIONS: u32 = 8;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting claim looks for events another process enqueued, delayed events that
/// fell due and claims that expired; enqueues in this process wake it at once.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The schema, idempotent. Not an sqlx migration: the queue may share its file with the
/// store, whose migrator would reject versions it does not know.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS queue_events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        body          BLOB    NOT NULL,
        enqueued_at   INTEGER NOT NULL,
        ready_at      INTEGER NOT NULL,
        claimed_by    TEXT,
        claimed_until INTEGER,
        deliveries    INTEGER NOT NULL DEFAULT 0
    )",
    "CREATE INDEX IF NOT EXISTS queue_events_ready ON queue_events (ready_at, id)",
];

/// Settings of a [`SqliteQueue`].
#[derive(Debug, Clone)]
pub struct SqliteQueueConfig {
    /// How long a claimed, un-acked event stays hidden before another consumer may claim it.
    pub visibility_timeout: Duration,
}

/// An [`EventQueue`] in one SQLite file. Clones share the pool and the wake-ups.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    pool: SqlitePool,
    config: SqliteQueueConfig,
    enqueued: Arc<Notify>,
}

impl SqliteQueue {
    /// Opens the database a `sqlite://PATH` URL names, creating the file and its folder if
    /// missing, and creates the queue's table.
    pub async fn connect(url: &str, config: SqliteQueueConfig) -> Result<Self> {
        if config.visibility_timeout.is_zero() {
            return Err(Error::Config(
                "the visibility timeout must be positive".into(),
            ));
        }
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an enqueue that returned must survive a power cut, not just a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        if !in_memory
            && let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::Config(format!("cannot create {}: {e}", parent.display())))?;
        }
        let pool = if in_memory {
            // An in-memory database lives as long as a connection to it: keep exactly one.
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
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        Ok(Self {
            pool,
            config,
            enqueued: Arc::new(Notify::new()),
        })
    }

    /// One non-waiting claim attempt.
    async fn claim_now(&self, consumer: &str, max: usize) -> Result<Vec<Delivery>> {
        let now = unix_ms(OffsetDateTime::now_utc());
        let until = now.saturating_add(duration_ms(self.config.visibility_timeout));
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        // One statement takes the write lock before it reads, so two consumers can not
        // select the same row.
        let rows = sqlx::query(
            "UPDATE queue_events
                SET claimed_by = ?1, claimed_until = ?2, deliveries = deliveries + 1
              WHERE id IN (SELECT id FROM queue_events
                            WHERE ready_at <= ?3
                              AND (claimed_until IS NULL OR claimed_until <= ?3)
                            ORDER BY ready_at, id
                            LIMIT ?4)
             RETURNING id, body, deliveries",
        )
        .bind(consumer)
        .bind(until)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            let body: Vec<u8> = row.try_get("body")?;
            let count: i64 = row.try_get("deliveries")?;
            match QueuedEvent::from_json(&body) {
                Ok(event) => deliveries.push((
                    id,
                    Delivery {
                        id: id.to_string(),
                        event,
                        redelivered: count > 1,
                    },
                )),
                // It can never succeed: removed rather than redelivered forever.
                Err(error) => {
                    tracing::error!(id, %error, "dropping an unreadable event");
                    sqlx::query("DELETE FROM queue_events WHERE id = ?1")
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                }
            }
        }
        // RETURNING gives no order guarantee.
        deliveries.sort_by_key(|(id, _)| *id);
        Ok(deliveries.into_iter().map(|(_, d)| d).collect())
    }
}

fn row_id(delivery: &Delivery) -> Result<i64> {
    delivery
        .id
        .parse()
        .map_err(|_| Error::Corrupt(format!("'{}' is not a SQLite queue id", delivery.id)))
}

#[async_trait]
impl EventQueue for SqliteQueue {
    async fn enqueue(&self, event: &QueuedEvent) -> Result<()> {
        let now = unix_ms(OffsetDateTime::now_utc());
        sqlx::query("INSERT INTO queue_events (body, enqueued_at, ready_at) VALUES (?1, ?2, ?3)")
            .bind(event.to_json()?)
            .bind(unix_ms(event.enqueued_at))
            .bind(now)
            .execute(&self.pool)
            .await?;
        self.enqueued.notify_waiters();
        Ok(())
    }

    async fn claim(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so an enqueue between the look and the sleep wakes us.
            let mut enqueued = pin!(self.enqueued.notified());
            enqueued.as_mut().enable();
            let deliveries = self.claim_now(consumer, max).await?;
            let now = Instant::now();
            if !deliveries.is_empty() || now >= deadline {
                return Ok(deliveries);
            }
            let nap = (deadline - now).min(POLL_INTERVAL);
            tokio::select! {
                () = enqueued => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn touch(&self, consumer: &str, delivery: &Delivery) -> Result<bool> {
        let until = unix_ms(OffsetDateTime::now_utc())
            .saturating_add(duration_ms(self.config.visibility_timeout));
        let touched = sqlx::query(
            "UPDATE queue_events SET claimed_until = ?1 WHERE id = ?2 AND claimed_by = ?3",
        )
        .bind(until)
        .bind(row_id(delivery)?)
        .bind(consumer)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(touched == 1)
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        sqlx::query("DELETE FROM queue_events WHERE id = ?1")
            .bind(row_id(delivery)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn retry_later(
        &self,
        delivery: &Delivery,
        event: &QueuedEvent,
        at: OffsetDateTime,
    ) -> Result<()> {
        let body = event.to_json()?;
        let mut tx = self.pool.begin().await?;
        // The DELETE is the first statement, so it takes the write lock before anything is
        // read; a new row (new id) keeps a stale ack of the old delivery from removing it.
        let acked = sqlx::query("DELETE FROM queue_events WHERE id = ?1")
            .bind(row_id(delivery)?)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if acked == 1 {
            sqlx::query(
                "INSERT INTO queue_events (body, enqueued_at, ready_at) VALUES (?1, ?2, ?3)",
            )
            .bind(body)
            .bind(unix_ms(event.enqueued_at))
            .bind(unix_ms(at))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A plain count, which SQLite answers from its smallest index: cheaper than
    /// [`stats`](EventQueue::stats), though still a scan.
    async fn backlog(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn stats(&self) -> Result<QueueStats> {
        let now = unix_ms(OffsetDateTime::now_utc());
        let row = sqlx::query(
            "SELECT
                COALESCE(SUM(ready_at <= ?1 AND (claimed_until IS NULL OR claimed_until <= ?1)), 0)
                    AS ready,
                COALESCE(SUM(ready_at > ?1 AND claimed_until IS NULL), 0) AS delayed,
                COALESCE(SUM(claimed_until > ?1), 0) AS in_flight,
                MIN(enqueued_at) AS oldest
             FROM queue_events",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let count = |name: &str| -> Result<u64> {
            let n: i64 = row.try_get(name)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let oldest: Option<i64> = row.try_get("oldest")?;
        Ok(QueueStats {
            ready: count("ready")?,
            delayed: count("delayed")?,
            in_flight: count("in_flight")?,
            oldest_enqueued_at: oldest.and_then(crate::from_unix_ms),
        })
    }
}
