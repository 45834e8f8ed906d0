//! HTTP triggers: the [`HttpTriggers`] part of the [`Store`](crate::Store), function URLs and
//! routes, in SQL shared by both backends like [`sql`](crate::sql). A CORS configuration is
//! kept as the JSON of its Lambda shape.

use std::time::Duration;

use nimbus_core::{
    AuthType, Cors, FunctionName, FunctionUrlConfig, HttpRoute, InvokeMode, RoutePath,
};

use crate::error::{Error, Result};
use crate::timestamp::Timestamp;

#[async_trait::async_trait]
pub trait HttpTriggers {
    /// Creates the URL of `config.function_name:config.qualifier`: [`Error::NotFound`] if the
    /// function does not exist, [`Error::Conflict`] if it has one already. Deleting the
    /// function deletes it.
    async fn create_function_url(&self, config: &FunctionUrlConfig) -> Result<()>;

    /// Replaces the settings (auth type, CORS, invoke mode, last modified) of an existing URL;
    /// `false` if there is none.
    async fn update_function_url(&self, config: &FunctionUrlConfig) -> Result<bool>;

    async fn get_function_url(
        &self,
        name: &FunctionName,
        qualifier: Option<&str>,
    ) -> Result<Option<FunctionUrlConfig>>;

    /// The URL a request for `/lambda-url/{url_id}` is for.
    async fn get_function_url_by_id(&self, url_id: &str) -> Result<Option<FunctionUrlConfig>>;

    /// The function's URLs, unqualified first, then by qualifier.
    async fn list_function_urls(&self, name: &FunctionName) -> Result<Vec<FunctionUrlConfig>>;

    /// `false` if there was none.
    async fn delete_function_url(
        &self,
        name: &FunctionName,
        qualifier: Option<&str>,
    ) -> Result<bool>;

    /// Adds a route: [`Error::Conflict`] if one with the same method already matches the same
    /// paths (its template differs at most in parameter names).
    async fn create_route(&self, route: &HttpRoute) -> Result<()>;

    async fn get_route(&self, route_id: &str) -> Result<Option<HttpRoute>>;

    /// Every route, by path then method.
    async fn list_routes(&self) -> Result<Vec<HttpRoute>>;

    /// `false` if there was none.
    async fn delete_route(&self, route_id: &str) -> Result<bool>;
}

pub(crate) const URL_COLUMNS: &str =
    "function_name, qualifier, url_id, auth_type, invoke_mode, cors, created_at, last_modified";

pub(crate) const ROUTE_COLUMNS: &str = "route_id, method, path, conflict_key, function_name, \
     qualifier, invocation_type, integration_timeout_ms, auth_type, cors, created_at";

/// How an absent qualifier (the unqualified function) is stored: in the primary key, so not
/// as NULL.
pub(crate) fn qualifier_key(qualifier: Option<&str>) -> &str {
    qualifier.unwrap_or("")
}

/// A `function_urls` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UrlRow {
    pub(crate) function_name: String,
    pub(crate) qualifier: String,
    pub(crate) url_id: String,
    pub(crate) auth_type: String,
    pub(crate) invoke_mode: String,
    pub(crate) cors: Option<String>,
    pub(crate) created_at: Timestamp,
    pub(crate) last_modified: Timestamp,
}

impl UrlRow {
    pub(crate) fn from_config(config: &FunctionUrlConfig) -> Result<Self> {
        Ok(Self {
            function_name: config.function_name.to_string(),
            qualifier: qualifier_key(config.qualifier.as_deref()).to_owned(),
            url_id: config.url_id.clone(),
            auth_type: config.auth_type.as_str().to_owned(),
            invoke_mode: config.invoke_mode.as_str().to_owned(),
            cors: cors_json(config.cors.as_ref())?,
            created_at: Timestamp::new(config.created_at),
            last_modified: Timestamp::new(config.last_modified),
        })
    }

    pub(crate) fn into_config(self) -> Result<FunctionUrlConfig> {
        let corrupt = |what: String| {
            Error::Corrupt(format!("function URL of {}: {what}", self.function_name))
        };
        Ok(FunctionUrlConfig {
            function_name: FunctionName::parse(&self.function_name)
                .map_err(|e| corrupt(e.to_string()))?,
            qualifier: (!self.qualifier.is_empty()).then(|| self.qualifier.clone()),
            auth_type: AuthType::parse(&self.auth_type).map_err(|e| corrupt(e.to_string()))?,
            invoke_mode: InvokeMode::parse(&self.invoke_mode)
                .map_err(|e| corrupt(e.to_string()))?,
            cors: parse_cors(self.cors.as_deref()).map_err(corrupt)?,
            created_at: self.created_at.get(),
            last_modified: self.last_modified.get(),
            url_id: self.url_id,
        })
    }
}

/// An `http_routes` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RouteRow {
    pub(crate) route_id: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) conflict_key: String,
    pub(crate) function_name: String,
    pub(crate) qualifier: Option<String>,
    pub(crate) invocation_type: String,
    pub(crate) integration_timeout_ms: i64,
    pub(crate) auth_type: String,
    pub(crate) cors: Option<String>,
    pub(crate) created_at: Timestamp,
}

impl RouteRow {
    pub(crate) fn from_route(route: &HttpRoute) -> Result<Self> {
        Ok(Self {
            route_id: route.route_id.clone(),
            method: route.method.clone(),
            path: route.path.as_str().to_owned(),
            conflict_key: route.path.conflict_key(),
            function_name: route.function_name.to_string(),
            qualifier: route.qualifier.clone(),
            invocation_type: route.invocation_type.as_str().to_owned(),
            integration_timeout_ms: i64::try_from(route.integration_timeout.as_millis())
                .unwrap_or(i64::MAX),
            auth_type: route.auth_type.as_str().to_owned(),
            cors: cors_json(route.cors.as_ref())?,
            created_at: Timestamp::new(route.created_at),
        })
    }

    pub(crate) fn into_route(self) -> Result<HttpRoute> {
        let corrupt = |what: String| Error::Corrupt(format!("route {}: {what}", self.route_id));
        Ok(HttpRoute {
            method: self.method.clone(),
            path: RoutePath::parse(&self.path).map_err(|e| corrupt(e.to_string()))?,
            function_name: FunctionName::parse(&self.function_name)
                .map_err(|e| corrupt(e.to_string()))?,
            qualifier: self.qualifier.clone(),
            invocation_type: self
                .invocation_type
                .parse()
                .map_err(|e: nimbus_core::Error| corrupt(e.to_string()))?,
            integration_timeout: Duration::from_millis(
                u64::try_from(self.integration_timeout_ms)
                    .map_err(|_| corrupt("negative timeout".to_owned()))?,
            ),
            auth_type: AuthType::parse(&self.auth_type).map_err(|e| corrupt(e.to_string()))?,
            cors: parse_cors(self.cors.as_deref()).map_err(corrupt)?,
            created_at: self.created_at.get(),
            route_id: self.route_id,
        })
    }
}

fn cors_json(cors: Option<&Cors>) -> Result<Option<String>> {
    cors.map(serde_json::to_string)
        .transpose()
        .map_err(|e| Error::Corrupt(format!("a CORS configuration does not serialize: {e}")))
}

fn parse_cors(json: Option<&str>) -> std::result::Result<Option<Cors>, String> {
    json.map(serde_json::from_str)
        .transpose()
        .map_err(|e| format!("CORS: {e}"))
}

/// Unqualified first, then by qualifier in byte order, on either backend.
pub(crate) fn into_urls(rows: Vec<UrlRow>) -> Result<Vec<FunctionUrlConfig>> {
    let mut urls = rows
        .into_iter()
        .map(UrlRow::into_config)
        .collect::<Result<Vec<_>>>()?;
    urls.sort_by(|a, b| a.qualifier.cmp(&b.qualifier));
    Ok(urls)
}

/// Sorted here, by bytes, rather than by a database collation that may differ between
/// backends.
pub(crate) fn into_routes(rows: Vec<RouteRow>) -> Result<Vec<HttpRoute>> {
    let mut routes = rows
        .into_iter()
        .map(RouteRow::into_route)
        .collect::<Result<Vec<_>>>()?;
    routes.sort_by(|a, b| (a.path.as_str(), &a.method).cmp(&(b.path.as_str(), &b.method)));
    Ok(routes)
}

macro_rules! sql_triggers {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::triggers::HttpTriggers for $store {
            async fn create_function_url(
                &self,
                config: &nimbus_core::FunctionUrlConfig,
            ) -> $crate::Result<()> {
                let row = $crate::triggers::UrlRow::from_config(config)?;
                let sql = format!(
                    "INSERT INTO function_urls ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    $crate::triggers::URL_COLUMNS
                );
                let inserted = sqlx::query(&sql)
                    .bind(row.function_name)
                    .bind(row.qualifier)
                    .bind(row.url_id)
                    .bind(row.auth_type)
                    .bind(row.invoke_mode)
                    .bind(row.cors)
                    .bind(row.created_at)
                    .bind(row.last_modified)
                    .execute(&self.pool)
                    .await;
                let name = &config.function_name;
                match inserted {
                    Ok(_) => Ok(()),
                    Err(e) if $crate::error::is_foreign_key_violation(&e) => Err(
                        $crate::Error::NotFound(format!("Function not found: {name}")),
                    ),
                    Err(e) if $crate::error::is_unique_violation(&e) => {
                        Err($crate::Error::Conflict(format!(
                            "Failed to create function url config for [functionArn = {name}]. \
                             Error message:  FunctionUrlConfig exists for this Lambda function"
                        )))
                    }
                    Err(e) => Err(e.into()),
                }
            }

            async fn update_function_url(
                &self,
                config: &nimbus_core::FunctionUrlConfig,
            ) -> $crate::Result<bool> {
                let row = $crate::triggers::UrlRow::from_config(config)?;
                let updated = sqlx::query(
                    "UPDATE function_urls SET auth_type = $3, invoke_mode = $4, cors = $5, \
                     last_modified = $6 WHERE function_name = $1 AND qualifier = $2",
                )
                .bind(row.function_name)
                .bind(row.qualifier)
                .bind(row.auth_type)
                .bind(row.invoke_mode)
                .bind(row.cors)
                .bind(row.last_modified)
                .execute(&self.pool)
                .await?;
                Ok(updated.rows_affected() > 0)
            }

            async fn get_function_url(
                &self,
                name: &nimbus_core::FunctionName,
                qualifier: Option<&str>,
            ) -> $crate::Result<Option<nimbus_core::FunctionUrlConfig>> {
                let sql = format!(
                    "SELECT {} FROM function_urls WHERE function_name = $1 AND qualifier = $2",
                    $crate::triggers::URL_COLUMNS
                );
                let row: Option<$crate::triggers::UrlRow> = sqlx::query_as(&sql)
                    .bind(name.as_str())
                    .bind($crate::triggers::qualifier_key(qualifier))
                    .fetch_optional(&self.pool)
                    .await?;
                row.map($crate::triggers::UrlRow::into_config).transpose()
            }

            async fn get_function_url_by_id(
                &self,
                url_id: &str,
            ) -> $crate::Result<Option<nimbus_core::FunctionUrlConfig>> {
                let sql = format!(
                    "SELECT {} FROM function_urls WHERE url_id = $1",
                    $crate::triggers::URL_COLUMNS
                );
                let row: Option<$crate::triggers::UrlRow> = sqlx::query_as(&sql)
                    .bind(url_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map($crate::triggers::UrlRow::into_config).transpose()
            }

            async fn list_function_urls(
                &self,
                name: &nimbus_core::FunctionName,
            ) -> $crate::Result<Vec<nimbus_core::FunctionUrlConfig>> {
                let sql = format!(
                    "SELECT {} FROM function_urls WHERE function_name = $1",
                    $crate::triggers::URL_COLUMNS
                );
                let rows = sqlx::query_as(&sql)
                    .bind(name.as_str())
                    .fetch_all(&self.pool)
                    .await?;
                $crate::triggers::into_urls(rows)
            }

            async fn delete_function_url(
                &self,
                name: &nimbus_core::FunctionName,
                qualifier: Option<&str>,
            ) -> $crate::Result<bool> {
                let deleted = sqlx::query(
                    "DELETE FROM function_urls WHERE function_name = $1 AND qualifier = $2",
                )
                .bind(name.as_str())
                .bind($crate::triggers::qualifier_key(qualifier))
                .execute(&self.pool)
                .await?;
                Ok(deleted.rows_affected() > 0)
            }

            async fn create_route(&self, route: &nimbus_core::HttpRoute) -> $crate::Result<()> {
                let row = $crate::triggers::RouteRow::from_route(route)?;
                let sql = format!(
                    "INSERT INTO http_routes ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                     $10, $11)",
                    $crate::triggers::ROUTE_COLUMNS
                );
                let inserted = sqlx::query(&sql)
                    .bind(row.route_id)
                    .bind(row.method)
                    .bind(row.path)
                    .bind(row.conflict_key)
                    .bind(row.function_name)
                    .bind(row.qualifier)
                    .bind(row.invocation_type)
                    .bind(row.integration_timeout_ms)
                    .bind(row.auth_type)
                    .bind(row.cors)
                    .bind(row.created_at)
                    .execute(&self.pool)
                    .await;
                match inserted {
                    Ok(_) => Ok(()),
                    Err(e) if $crate::error::is_unique_violation(&e) => {
                        Err($crate::Error::Conflict(format!(
                            "A route for {} already matches the paths of {}",
                            route.method,
                            route.path.as_str()
                        )))
                    }
                    Err(e) => Err(e.into()),
                }
            }

            async fn get_route(
                &self,
                route_id: &str,
            ) -> $crate::Result<Option<nimbus_core::HttpRoute>> {
                let sql = format!(
                    "SELECT {} FROM http_routes WHERE route_id = $1",
                    $crate::triggers::ROUTE_COLUMNS
                );
                let row: Option<$crate::triggers::RouteRow> = sqlx::query_as(&sql)
                    .bind(route_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map($crate::triggers::RouteRow::into_route).transpose()
            }

            async fn list_routes(&self) -> $crate::Result<Vec<nimbus_core::HttpRoute>> {
                let sql = format!(
                    "SELECT {} FROM http_routes",
                    $crate::triggers::ROUTE_COLUMNS
                );
                let rows = sqlx::query_as(&sql).fetch_all(&self.pool).await?;
                $crate::triggers::into_routes(rows)
            }

            async fn delete_route(&self, route_id: &str) -> $crate::Result<bool> {
                let deleted = sqlx::query("DELETE FROM http_routes WHERE route_id = $1")
                    .bind(route_id)
                    .execute(&self.pool)
                    .await?;
                Ok(deleted.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use sql_triggers;
