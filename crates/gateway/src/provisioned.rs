//! Provisioned concurrency: `PutProvisionedConcurrencyConfig`, `Get...`, `Delete...` and
//! `ListProvisionedConcurrencyConfigs`. The gateway stores what is asked for; the invoker's
//! provisioner starts the instances and writes back what it allocated and its status.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_core::alias::QualifierKind;
use nimbus_core::{Error, FunctionName, ProvisionedConcurrencyConfig, ProvisionedStatus};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::extract::{LambdaJson, LambdaQuery, QualifiedFunctionRef};
use crate::functions::load;
use crate::page;
use crate::shapes::last_modified;
use crate::state::AppState;

/// `ListProvisionedConcurrencyConfigs` answers at most this many by default, and at most.
const MAX_LIST_ITEMS: u32 = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PutRequest {
    /// Read wide so that zero and negatives are refused with Lambda's message.
    provisioned_concurrent_executions: Option<i64>,
}

/// The query of the shared `GET` route: `List=ALL` makes it `ListProvisionedConcurrencyConfigs`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GetQuery {
    list: Option<String>,
    marker: Option<String>,
    max_items: Option<u32>,
}

/// `Put...Response` and `Get...Response`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ConfigBody {
    requested_provisioned_concurrent_executions: u32,
    available_provisioned_concurrent_executions: u32,
    allocated_provisioned_concurrent_executions: u32,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_reason: Option<String>,
    last_modified: String,
}

impl ConfigBody {
    fn new(config: &ProvisionedConcurrencyConfig) -> Result<Self, Error> {
        // Allocated instances are idle or serving; both count as available here.
        let allocated = config.allocated.min(config.requested);
        Ok(Self {
            requested_provisioned_concurrent_executions: config.requested,
            available_provisioned_concurrent_executions: allocated,
            allocated_provisioned_concurrent_executions: allocated,
            status: config.status.as_str(),
            status_reason: config.status_reason.clone(),
            last_modified: last_modified(config.last_modified)?,
        })
    }
}

/// `ProvisionedConcurrencyConfigListItem`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListItem {
    function_arn: String,
    #[serde(flatten)]
    config: ConfigBody,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListResponse {
    provisioned_concurrency_configs: Vec<ListItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
}

/// `PutProvisionedConcurrencyConfig`:
/// `PUT /2019-09-30/functions/{FunctionName}/provisioned-concurrency?Qualifier=Q`.
pub(crate) async fn put(
    State(state): State<AppState>,
    QualifiedFunctionRef { name, qualifier }: QualifiedFunctionRef,
    LambdaJson(request): LambdaJson<PutRequest>,
) -> Result<(StatusCode, Json<ConfigBody>), ApiError> {
    let qualifier = published_qualifier(qualifier)?;
    let requested = request
        .provisioned_concurrent_executions
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{}' at 'provisionedConcurrentExecutions' \
                 failed to satisfy constraint: Member must have value greater than or equal \
                 to 1",
                request
                    .provisioned_concurrent_executions
                    .map_or_else(|| "null".to_owned(), |n| n.to_string())
            ))
        })?;
    let function = load(&state, &name).await?;
    check_target(&state, &name, &qualifier).await?;
    if let Some(reserved) = function.reserved_concurrency {
        let others: u64 = state
            .store()
            .list_provisioned_concurrency(&name)
            .await?
            .iter()
            .filter(|config| config.qualifier != qualifier)
            .map(|config| u64::from(config.requested))
            .sum();
        if others + u64::from(requested) > u64::from(reserved) {
            return Err(Error::InvalidParameterValue(format!(
                "Requested Provisioned Concurrency ({requested}) plus the Provisioned \
                 Concurrency of the function's other versions and aliases ({others}) should not \
                 be greater than the function's reserved concurrency ({reserved})."
            ))
            .into());
        }
    }
    let config = ProvisionedConcurrencyConfig {
        function_name: name.clone(),
        qualifier: qualifier.clone(),
        requested,
        allocated: 0,
        status: ProvisionedStatus::InProgress,
        status_reason: None,
        last_modified: OffsetDateTime::now_utc(),
    };
    state.store().put_provisioned_concurrency(&config).await?;
    tracing::info!(function = %name, %qualifier, requested, "provisioned concurrency set");
    Ok((StatusCode::ACCEPTED, Json(ConfigBody::new(&config)?)))
}

/// `GetProvisionedConcurrencyConfig` (`?Qualifier=Q`) and
/// `ListProvisionedConcurrencyConfigs` (`?List=ALL`), which share a path.
pub(crate) async fn get_or_list(
    State(state): State<AppState>,
    QualifiedFunctionRef { name, qualifier }: QualifiedFunctionRef,
    LambdaQuery(query): LambdaQuery<GetQuery>,
) -> Result<Response, ApiError> {
    if query.list.is_some() {
        return Ok(list(&state, &name, query).await?.into_response());
    }
    let qualifier = published_qualifier(qualifier)?;
    load(&state, &name).await?;
    let config = state
        .store()
        .get_provisioned_concurrency(&name, &qualifier)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(ConfigBody::new(&config)?).into_response())
}

/// `DeleteProvisionedConcurrencyConfig`. The instances it kept are reaped once idle.
pub(crate) async fn delete(
    State(state): State<AppState>,
    QualifiedFunctionRef { name, qualifier }: QualifiedFunctionRef,
) -> Result<StatusCode, ApiError> {
    let qualifier = published_qualifier(qualifier)?;
    load(&state, &name).await?;
    if !state
        .store()
        .delete_provisioned_concurrency(&name, &qualifier)
        .await?
    {
        return Err(not_found().into());
    }
    tracing::info!(function = %name, %qualifier, "provisioned concurrency removed");
    Ok(StatusCode::NO_CONTENT)
}

/// By qualifier; the marker is the last qualifier of the previous page.
async fn list(
    state: &AppState,
    name: &FunctionName,
    query: GetQuery,
) -> Result<Json<ListResponse>, ApiError> {
    let page = page::size(query.max_items, MAX_LIST_ITEMS)?;
    load(state, name).await?;
    let mut configs: Vec<ProvisionedConcurrencyConfig> = state
        .store()
        .list_provisioned_concurrency(name)
        .await?
        .into_iter()
        .filter(|config| {
            query
                .marker
                .as_ref()
                .is_none_or(|marker| config.qualifier > *marker)
        })
        .collect();
    let next_marker = page::cut(&mut configs, page, |config| config.qualifier.clone());
    let items = configs
        .iter()
        .map(|config| {
            Ok(ListItem {
                function_arn: state.config().qualified_arn(name, &config.qualifier),
                config: ConfigBody::new(config)?,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Json(ListResponse {
        provisioned_concurrency_configs: items,
        next_marker,
    }))
}

/// The qualifier, which must name a published version or an alias.
fn published_qualifier(qualifier: Option<String>) -> Result<String, Error> {
    let qualifier = qualifier.ok_or_else(|| {
        Error::InvalidParameterValue(
            "1 validation error detected: Value null at 'qualifier' failed to satisfy \
             constraint: Member must not be null"
                .to_owned(),
        )
    })?;
    if QualifierKind::of(&qualifier) == QualifierKind::Latest {
        return Err(Error::InvalidParameterValue(
            "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
                .to_owned(),
        ));
    }
    Ok(qualifier)
}

/// `404` unless the version or alias exists.
async fn check_target(
    state: &AppState,
    name: &FunctionName,
    qualifier: &str,
) -> Result<(), ApiError> {
    let exists = match QualifierKind::of(qualifier) {
        QualifierKind::Latest => false,
        QualifierKind::Version => state
            .store()
            .get_function_version(name, qualifier)
            .await?
            .is_some(),
        QualifierKind::Alias => state.store().get_alias(name, qualifier).await?.is_some(),
    };
    if exists {
        return Ok(());
    }
    Err(Error::ResourceNotFound(format!(
        "Function not found: {}",
        state.config().qualified_arn(name, qualifier)
    ))
    .into())
}

fn not_found() -> Error {
    Error::ProvisionedConcurrencyConfigNotFound(
        "No Provisioned Concurrency Config found for this function".to_owned(),
    )
}
