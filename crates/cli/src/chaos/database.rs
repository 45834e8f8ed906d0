//! A Postgres database of the chaos run's own on the given server: created at the start,
//! its connections terminated as a fault, dropped at the end (also when the run fails or
//! panics).

use anyhow::Context as _;
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

pub struct ChaosDatabase {
    /// The server's URL (any database on it), for creating, dropping and terminating.
    admin_url: String,
    name: String,
    pub url: String,
    dropped: bool,
}

impl ChaosDatabase {
    pub async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!(
            "nimbus_chaos_{}",
            nimbus_core::RequestId::new().to_string().replace('-', "")
        );
        let base = admin_url
            .split('?')
            .next()
            .and_then(|url| url.rsplit_once('/'))
            .map(|(base, _)| base)
            .context("the database URL has no /DATABASE part")?;
        let mut conn = PgConnection::connect(admin_url)
            .await
            .context("cannot connect to Postgres")?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot create the database {name}"))?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
            dropped: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Terminates every connection to the run's database (`pg_terminate_backend`): what a
    /// Postgres failover or restart does to its clients. Returns how many there were.
    pub async fn terminate_connections(&self) -> anyhow::Result<i64> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        let terminated: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .fetch_one(&mut conn)
        .await?;
        Ok(terminated)
    }

    pub async fn drop_database(mut self) -> anyhow::Result<()> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await
    }
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .with_context(|| format!("cannot drop the database {name}"))?;
    Ok(())
}

impl Drop for ChaosDatabase {
    /// A run that ended early (an error, a panic) still drops its database, from a thread
    /// of its own since `Drop` can not wait on the runtime it may run on.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(drop_database(&admin_url, &name))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("nimbus chaos: could not drop the database {}", self.name);
        }
    }
}
