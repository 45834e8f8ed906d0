//! Provisioned concurrency configurations: the [`ProvisionedConcurrency`] part of the
//! [`Store`](crate::Store), in SQL shared by both backends like [`sql`](crate::sql). The
//! gateway puts what is asked for; the invoker's provisioner writes back what it allocated.

use nimbus_core::{FunctionName, ProvisionedConcurrencyConfig, ProvisionedStatus};

use crate::error::{Error, Result};
use crate::timestamp::Timestamp;

#[async_trait::async_trait]
pub trait ProvisionedConcurrency {
    /// Creates or replaces the configuration of `config.function_name:config.qualifier`;
    /// [`Error::NotFound`] if the function does not exist. Deleting the function deletes it.
    async fn put_provisioned_concurrency(
        &self,
        config: &ProvisionedConcurrencyConfig,
    ) -> Result<()>;

    async fn get_provisioned_concurrency(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<Option<ProvisionedConcurrencyConfig>>;

    /// The function's configurations, by qualifier.
    async fn list_provisioned_concurrency(
        &self,
        name: &FunctionName,
    ) -> Result<Vec<ProvisionedConcurrencyConfig>>;

    /// Every configuration of every function, by function and qualifier (the provisioner).
    async fn list_all_provisioned_concurrency(&self) -> Result<Vec<ProvisionedConcurrencyConfig>>;

    /// `false` if there was none.
    async fn delete_provisioned_concurrency(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<bool>;

    /// Records what the invoker allocated, leaving the request and `last_modified` as they
    /// are; `false` if the configuration is gone.
    async fn set_provisioned_allocation(
        &self,
        name: &FunctionName,
        qualifier: &str,
        allocated: u32,
        status: ProvisionedStatus,
        reason: Option<&str>,
    ) -> Result<bool>;
}

pub(crate) const PROVISIONED_COLUMNS: &str =
    "function_name, qualifier, requested, allocated, status, status_reason, last_modified";

/// A `provisioned_concurrency` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ProvisionedRow {
    pub(crate) function_name: String,
    pub(crate) qualifier: String,
    pub(crate) requested: i64,
    pub(crate) allocated: i64,
    pub(crate) status: String,
    pub(crate) status_reason: Option<String>,
    pub(crate) last_modified: Timestamp,
}

impl ProvisionedRow {
    pub(crate) fn from_config(config: &ProvisionedConcurrencyConfig) -> Self {
        Self {
            function_name: config.function_name.to_string(),
            qualifier: config.qualifier.clone(),
            requested: i64::from(config.requested),
            allocated: i64::from(config.allocated),
            status: config.status.as_str().to_owned(),
            status_reason: config.status_reason.clone(),
            last_modified: Timestamp::new(config.last_modified),
        }
    }

    pub(crate) fn into_config(self) -> Result<ProvisionedConcurrencyConfig> {
        let corrupt = |what: &str| {
            Error::Corrupt(format!(
                "provisioned concurrency of {}:{}: {what}",
                self.function_name, self.qualifier
            ))
        };
        let count = |n: i64, what: &str| u32::try_from(n).map_err(|_| corrupt(what));
        Ok(ProvisionedConcurrencyConfig {
            function_name: FunctionName::parse(&self.function_name)
                .map_err(|e| corrupt(&e.to_string()))?,
            requested: count(self.requested, "requested")?,
            allocated: count(self.allocated, "allocated")?,
            status: ProvisionedStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            qualifier: self.qualifier,
            status_reason: self.status_reason,
            last_modified: self.last_modified.get(),
        })
    }
}

pub(crate) fn into_configs(rows: Vec<ProvisionedRow>) -> Result<Vec<ProvisionedConcurrencyConfig>> {
    rows.into_iter().map(ProvisionedRow::into_config).collect()
}

macro_rules! sql_provisioned {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::provisioned::ProvisionedConcurrency for $store {
            async fn put_provisioned_concurrency(
                &self,
                config: &nimbus_core::ProvisionedConcurrencyConfig,
            ) -> $crate::Result<()> {
                let row = $crate::provisioned::ProvisionedRow::from_config(config);
                let sql = format!(
                    "INSERT INTO provisioned_concurrency ({}) VALUES ($1, $2, $3, $4, $5, $6, \
                     $7) ON CONFLICT (function_name, qualifier) DO UPDATE SET \
                     requested = excluded.requested, allocated = excluded.allocated, \
                     status = excluded.status, status_reason = excluded.status_reason, \
                     last_modified = excluded.last_modified",
                    $crate::provisioned::PROVISIONED_COLUMNS
                );
                let stored = sqlx::query(&sql)
                    .bind(row.function_name)
                    .bind(row.qualifier)
                    .bind(row.requested)
                    .bind(row.allocated)
                    .bind(row.status)
                    .bind(row.status_reason)
                    .bind(row.last_modified)
                    .execute(&self.pool)
                    .await;
                match stored {
                    Ok(_) => Ok(()),
                    Err(e) if $crate::error::is_foreign_key_violation(&e) => {
                        Err($crate::Error::NotFound(format!(
                            "Function not found: {}",
                            config.function_name
                        )))
                    }
                    Err(e) => Err(e.into()),
                }
            }

            async fn get_provisioned_concurrency(
                &self,
                name: &nimbus_core::FunctionName,
                qualifier: &str,
            ) -> $crate::Result<Option<nimbus_core::ProvisionedConcurrencyConfig>> {
                let sql = format!(
                    "SELECT {} FROM provisioned_concurrency \
                     WHERE function_name = $1 AND qualifier = $2",
                    $crate::provisioned::PROVISIONED_COLUMNS
                );
                let row: Option<$crate::provisioned::ProvisionedRow> = sqlx::query_as(&sql)
                    .bind(name.as_str())
                    .bind(qualifier)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map($crate::provisioned::ProvisionedRow::into_config)
                    .transpose()
            }

            async fn list_provisioned_concurrency(
                &self,
                name: &nimbus_core::FunctionName,
            ) -> $crate::Result<Vec<nimbus_core::ProvisionedConcurrencyConfig>> {
                let sql = format!(
                    "SELECT {} FROM provisioned_concurrency WHERE function_name = $1 \
                     ORDER BY qualifier",
                    $crate::provisioned::PROVISIONED_COLUMNS
                );
                let rows = sqlx::query_as(&sql)
                    .bind(name.as_str())
                    .fetch_all(&self.pool)
                    .await?;
                $crate::provisioned::into_configs(rows)
            }

            async fn list_all_provisioned_concurrency(
                &self,
            ) -> $crate::Result<Vec<nimbus_core::ProvisionedConcurrencyConfig>> {
                let sql = format!(
                    "SELECT {} FROM provisioned_concurrency ORDER BY function_name, qualifier",
                    $crate::provisioned::PROVISIONED_COLUMNS
                );
                let rows = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
                $crate::provisioned::into_configs(rows)
            }

            async fn delete_provisioned_concurrency(
                &self,
                name: &nimbus_core::FunctionName,
                qualifier: &str,
            ) -> $crate::Result<bool> {
                let deleted = sqlx::query(
                    "DELETE FROM provisioned_concurrency \
                     WHERE function_name = $1 AND qualifier = $2",
                )
                .bind(name.as_str())
                .bind(qualifier)
                .execute(&self.pool)
                .await?;
                Ok(deleted.rows_affected() > 0)
            }

            async fn set_provisioned_allocation(
                &self,
                name: &nimbus_core::FunctionName,
                qualifier: &str,
                allocated: u32,
                status: nimbus_core::ProvisionedStatus,
                reason: Option<&str>,
            ) -> $crate::Result<bool> {
                let updated = sqlx::query(
                    "UPDATE provisioned_concurrency SET allocated = $3, status = $4, \
                     status_reason = $5 WHERE function_name = $1 AND qualifier = $2",
                )
                .bind(name.as_str())
                .bind(qualifier)
                .bind(i64::from(allocated))
                .bind(status.as_str())
                .bind(reason)
                .execute(&self.pool)
                .await?;
                Ok(updated.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use sql_provisioned;
