//! Published versions, aliases and tags of functions: the [`FunctionVersions`] half of the
//! [`Store`](crate::Store), in SQL shared by both backends like [`sql`](crate::sql).
//!
//! A version row has the columns of a `functions` row plus its `number`; publishing takes the
//! next number from `functions.last_version` in the same transaction, so numbers are never
//! reused, even after a version is deleted.

use std::collections::BTreeMap;

use nimbus_core::function::LATEST;
use nimbus_core::{Alias, FunctionConfig, FunctionName, QualifierKind};

use crate::Store;
use crate::error::{Error, Result};

/// The configuration an invocation of `name:qualifier` runs: `$LATEST`, a published version,
/// or, for an alias, one of its versions picked by its routing weights with `draw` (uniform in
/// `[0, 1)`). Reserved concurrency is the function's, whichever version runs. `None` when the
/// function, the version or the alias does not exist.
pub async fn resolve(
    store: &dyn Store,
    name: &FunctionName,
    qualifier: &str,
    draw: f64,
) -> Result<Option<FunctionConfig>> {
    let version = match QualifierKind::of(qualifier) {
        QualifierKind::Latest => return store.get_function(name).await,
        QualifierKind::Version => qualifier.to_owned(),
        QualifierKind::Alias => match store.get_alias(name, qualifier).await? {
            Some(alias) => alias.pick_version(draw).to_owned(),
            None => return Ok(None),
        },
    };
    let Some(latest) = store.get_function(name).await? else {
        return Ok(None);
    };
    if version == LATEST {
        return Ok(Some(latest));
    }
    Ok(store
        .get_function_version(name, &version)
        .await?
        .map(|published| FunctionConfig {
            reserved_concurrency: latest.reserved_concurrency,
            ..published
        }))
}

#[async_trait::async_trait]
pub trait FunctionVersions {
    /// Stores `latest` as the function's next version, with `version.version` ignored, if the
    /// stored `$LATEST` still has `latest.revision_id`; returns the published version.
    /// [`Error::NotFound`] if the function is gone, [`Error::RevisionMismatch`] if it changed.
    async fn publish_version(
        &self,
        latest: &FunctionConfig,
        description: &str,
        revision_id: &str,
    ) -> Result<FunctionConfig>;

    /// A published version (`"1"`, `"2"`, ...); `None` for anything else.
    async fn get_function_version(
        &self,
        name: &FunctionName,
        version: &str,
    ) -> Result<Option<FunctionConfig>>;

    /// Published versions in order, after version number `after`, at most `limit`.
    async fn list_function_versions(
        &self,
        name: &FunctionName,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FunctionConfig>>;

    /// The last version published, whether or not it still exists (0: none yet).
    async fn last_version_number(&self, name: &FunctionName) -> Result<Option<u64>>;

    /// `false` if there was no such version.
    async fn delete_function_version(&self, name: &FunctionName, version: &str) -> Result<bool>;

    /// [`Error::Conflict`] if the alias exists, [`Error::NotFound`] if the function does not.
    async fn create_alias(&self, alias: &Alias) -> Result<()>;

    /// Replaces an alias still at `expected_revision`.
    async fn update_alias(&self, alias: &Alias, expected_revision: &str) -> Result<()>;

    async fn get_alias(&self, function: &FunctionName, name: &str) -> Result<Option<Alias>>;

    /// Every alias of the function, by name.
    async fn list_aliases(&self, function: &FunctionName) -> Result<Vec<Alias>>;

    /// `false` if there was none.
    async fn delete_alias(&self, function: &FunctionName, name: &str) -> Result<bool>;

    /// The function's tags; `None` if the function does not exist.
    async fn get_tags(&self, name: &FunctionName) -> Result<Option<BTreeMap<String, String>>>;

    /// Replaces the function's tags; `false` if the function does not exist.
    async fn put_tags(&self, name: &FunctionName, tags: &BTreeMap<String, String>) -> Result<bool>;
}

pub(crate) const ALIAS_COLUMNS: &str =
    "function_name, name, function_version, description, routing, revision_id";

/// An `aliases` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AliasRow {
    function_name: String,
    name: String,
    function_version: String,
    description: String,
    /// JSON object of version to weight.
    routing: String,
    revision_id: String,
}

impl AliasRow {
    pub(crate) fn from_alias(alias: &Alias) -> Result<Self> {
        Ok(Self {
            function_name: alias.function_name.to_string(),
            name: alias.name.clone(),
            function_version: alias.function_version.clone(),
            description: alias.description.clone(),
            routing: serde_json::to_string(&alias.routing)
                .map_err(|e| Error::Config(format!("cannot store routing weights: {e}")))?,
            revision_id: alias.revision_id.clone(),
        })
    }

    pub(crate) fn into_alias(self) -> Result<Alias> {
        Ok(Alias {
            function_name: FunctionName::parse(&self.function_name)
                .map_err(|e| Error::Corrupt(e.to_string()))?,
            name: self.name,
            function_version: self.function_version,
            description: self.description,
            routing: serde_json::from_str(&self.routing)
                .map_err(|e| Error::Corrupt(format!("alias routing: {e}")))?,
            revision_id: self.revision_id,
        })
    }

    /// Binds the columns in [`ALIAS_COLUMNS`] order as `$1`..`$6`.
    pub(crate) fn values(self) -> [String; 6] {
        [
            self.function_name,
            self.name,
            self.function_version,
            self.description,
            self.routing,
            self.revision_id,
        ]
    }
}

pub(crate) fn tags_json(tags: &BTreeMap<String, String>) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".to_owned())
}

pub(crate) fn parse_tags(text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("function tags: {e}")))
}

pub(crate) fn version_number(version: &str) -> Option<i64> {
    nimbus_core::alias::is_version_number(version)
        .then(|| version.parse().ok())
        .flatten()
}

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

macro_rules! sql_versions {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::versions::FunctionVersions for $store {
            async fn publish_version(
                &self,
                latest: &nimbus_core::FunctionConfig,
                description: &str,
                revision_id: &str,
            ) -> $crate::Result<nimbus_core::FunctionConfig> {
                let mut transaction = self.pool.begin().await?;
                let number: Option<i64> = sqlx::query_scalar(
                    "UPDATE functions SET last_version = last_version + 1 \
                     WHERE name = $1 AND revision_id = $2 RETURNING last_version",
                )
                .bind(latest.name.as_str())
                .bind(&latest.revision_id)
                .fetch_optional(&mut *transaction)
                .await?;
                let Some(number) = number else {
                    let exists: Option<String> =
                        sqlx::query_scalar("SELECT name FROM functions WHERE name = $1")
                            .bind(latest.name.as_str())
                            .fetch_optional(&mut *transaction)
                            .await?;
                    return Err(match exists {
                        Some(_) => $crate::Error::RevisionMismatch(format!(
                            "The Revision Id provided does not match the latest Revision Id. \
                             Call the GetFunction/GetAlias API to retrieve the latest \
                             Revision Id of {}",
                            latest.name
                        )),
                        None => {
                            $crate::Error::NotFound(format!("Function not found: {}", latest.name))
                        }
                    });
                };
                let version = nimbus_core::FunctionConfig {
                    version: number.to_string(),
                    description: description.to_owned(),
                    revision_id: revision_id.to_owned(),
                    last_modified: time::OffsetDateTime::now_utc(),
                    ..latest.clone()
                };
                let row = $crate::rows::FunctionRow::from_config(&version)?;
                let sql = format!(
                    "INSERT INTO function_versions ({}, number) VALUES ($1, $2, $3, $4, $5, \
                     $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                    $crate::rows::FUNCTION_COLUMNS
                );
                bind_function(sqlx::query(&sql), row)
                    .bind(number)
                    .execute(&mut *transaction)
                    .await?;
                transaction.commit().await?;
                Ok(version)
            }

            async fn get_function_version(
                &self,
                name: &nimbus_core::FunctionName,
                version: &str,
            ) -> $crate::Result<Option<nimbus_core::FunctionConfig>> {
                let Some(number) = $crate::versions::version_number(version) else {
                    return Ok(None);
                };
                let sql = format!(
                    "SELECT {} FROM function_versions WHERE name = $1 AND number = $2",
                    $crate::rows::FUNCTION_COLUMNS
                );
                let row: Option<$crate::rows::FunctionRow> = sqlx::query_as(&sql)
                    .bind(name.as_str())
                    .bind(number)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map($crate::rows::FunctionRow::into_config).transpose()
            }

            async fn list_function_versions(
                &self,
                name: &nimbus_core::FunctionName,
                after: u64,
                limit: usize,
            ) -> $crate::Result<Vec<nimbus_core::FunctionConfig>> {
                let sql = format!(
                    "SELECT {} FROM function_versions WHERE name = $1 AND number > $2 \
                     ORDER BY number LIMIT $3",
                    $crate::rows::FUNCTION_COLUMNS
                );
                let rows: Vec<$crate::rows::FunctionRow> = sqlx::query_as(&sql)
                    .bind(name.as_str())
                    .bind($crate::versions::to_i64(after))
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map($crate::rows::FunctionRow::into_config)
                    .collect()
            }

            async fn last_version_number(
                &self,
                name: &nimbus_core::FunctionName,
            ) -> $crate::Result<Option<u64>> {
                let last: Option<i64> =
                    sqlx::query_scalar("SELECT last_version FROM functions WHERE name = $1")
                        .bind(name.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(last.map(|n| u64::try_from(n).unwrap_or(0)))
            }

            async fn delete_function_version(
                &self,
                name: &nimbus_core::FunctionName,
                version: &str,
            ) -> $crate::Result<bool> {
                let Some(number) = $crate::versions::version_number(version) else {
                    return Ok(false);
                };
                let deleted =
                    sqlx::query("DELETE FROM function_versions WHERE name = $1 AND number = $2")
                        .bind(name.as_str())
                        .bind(number)
                        .execute(&self.pool)
                        .await?;
                Ok(deleted.rows_affected() > 0)
            }

            async fn create_alias(&self, alias: &nimbus_core::Alias) -> $crate::Result<()> {
                let sql = format!(
                    "INSERT INTO aliases ({}) VALUES ($1, $2, $3, $4, $5, $6)",
                    $crate::versions::ALIAS_COLUMNS
                );
                let mut query = sqlx::query(&sql);
                for value in $crate::versions::AliasRow::from_alias(alias)?.values() {
                    query = query.bind(value);
                }
                match query.execute(&self.pool).await {
                    Ok(_) => Ok(()),
                    Err(e) if $crate::error::is_unique_violation(&e) => {
                        Err($crate::Error::Conflict(format!(
                            "Alias already exists: {}:{}",
                            alias.function_name, alias.name
                        )))
                    }
                    Err(e) if $crate::error::is_foreign_key_violation(&e) => {
                        Err($crate::Error::NotFound(format!(
                            "Function not found: {}",
                            alias.function_name
                        )))
                    }
                    Err(e) => Err(e.into()),
                }
            }

            async fn update_alias(
                &self,
                alias: &nimbus_core::Alias,
                expected_revision: &str,
            ) -> $crate::Result<()> {
                let mut query = sqlx::query(
                    "UPDATE aliases SET function_version = $3, description = $4, \
                     routing = $5, revision_id = $6 \
                     WHERE function_name = $1 AND name = $2 AND revision_id = $7",
                );
                for value in $crate::versions::AliasRow::from_alias(alias)?.values() {
                    query = query.bind(value);
                }
                let updated = query.bind(expected_revision).execute(&self.pool).await?;
                if updated.rows_affected() == 1 {
                    return Ok(());
                }
                Err(
                    match self.get_alias(&alias.function_name, &alias.name).await? {
                        Some(_) => $crate::Error::RevisionMismatch(format!(
                            "The Revision Id provided does not match the latest Revision Id. \
                         Call the GetFunction/GetAlias API to retrieve the latest Revision \
                         Id of alias {}",
                            alias.name
                        )),
                        None => $crate::Error::NotFound(format!(
                            "Alias not found: {}:{}",
                            alias.function_name, alias.name
                        )),
                    },
                )
            }

            async fn get_alias(
                &self,
                function: &nimbus_core::FunctionName,
                name: &str,
            ) -> $crate::Result<Option<nimbus_core::Alias>> {
                let sql = format!(
                    "SELECT {} FROM aliases WHERE function_name = $1 AND name = $2",
                    $crate::versions::ALIAS_COLUMNS
                );
                let row: Option<$crate::versions::AliasRow> = sqlx::query_as(&sql)
                    .bind(function.as_str())
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map($crate::versions::AliasRow::into_alias).transpose()
            }

            async fn list_aliases(
                &self,
                function: &nimbus_core::FunctionName,
            ) -> $crate::Result<Vec<nimbus_core::Alias>> {
                let sql = format!(
                    "SELECT {} FROM aliases WHERE function_name = $1 ORDER BY name",
                    $crate::versions::ALIAS_COLUMNS
                );
                let rows: Vec<$crate::versions::AliasRow> = sqlx::query_as(&sql)
                    .bind(function.as_str())
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map($crate::versions::AliasRow::into_alias)
                    .collect()
            }

            async fn delete_alias(
                &self,
                function: &nimbus_core::FunctionName,
                name: &str,
            ) -> $crate::Result<bool> {
                let deleted =
                    sqlx::query("DELETE FROM aliases WHERE function_name = $1 AND name = $2")
                        .bind(function.as_str())
                        .bind(name)
                        .execute(&self.pool)
                        .await?;
                Ok(deleted.rows_affected() > 0)
            }

            async fn get_tags(
                &self,
                name: &nimbus_core::FunctionName,
            ) -> $crate::Result<Option<std::collections::BTreeMap<String, String>>> {
                let tags: Option<String> =
                    sqlx::query_scalar("SELECT tags FROM functions WHERE name = $1")
                        .bind(name.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                tags.as_deref()
                    .map($crate::versions::parse_tags)
                    .transpose()
            }

            async fn put_tags(
                &self,
                name: &nimbus_core::FunctionName,
                tags: &std::collections::BTreeMap<String, String>,
            ) -> $crate::Result<bool> {
                let updated = sqlx::query("UPDATE functions SET tags = $2 WHERE name = $1")
                    .bind(name.as_str())
                    .bind($crate::versions::tags_json(tags))
                    .execute(&self.pool)
                    .await?;
                Ok(updated.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use sql_versions;
