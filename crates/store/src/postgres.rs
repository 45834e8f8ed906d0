//! The Postgres backend, for the distributed topology.

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::Result;

/// Connections a store opens at most unless told otherwise.
pub(crate) const DEFAULT_MAX_CONNECTIONS: u32 = 10;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects and migrates the schema.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, DEFAULT_MAX_CONNECTIONS).await
    }

    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect(url)
            .await?;
        sqlx::migrate!("../../migrations/postgres")
            .run(&pool)
            .await?;
        Ok(Self { pool })
    }
}

crate::sql::sql_store!(PostgresStore, sqlx::Postgres);
crate::versions::sql_versions!(PostgresStore, sqlx::Postgres);
crate::provisioned::sql_provisioned!(PostgresStore);
crate::triggers::sql_triggers!(PostgresStore);
