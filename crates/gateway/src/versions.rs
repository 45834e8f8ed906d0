//! Versions and aliases: `PublishVersion`, `ListVersionsByFunction`, the five alias
//! operations, and how a qualifier (`$LATEST`, a version number, an alias) resolves to the
//! configuration an invocation runs.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use nimbus_core::alias::{QualifierKind, is_version_number};
use nimbus_core::function::LATEST;
use nimbus_core::{Alias, Error, FunctionConfig, FunctionName};

use crate::error::ApiError;
use crate::extract::{FunctionRef, LambdaJson, LambdaQuery};
use crate::functions::{MAX_MAX_ITEMS, check_revision, load, new_revision, required};
use crate::page;
use crate::shapes::{
    AliasConfiguration, AliasRequest, FunctionConfiguration, ListAliasesQuery, ListAliasesResponse,
    ListFunctionsQuery, ListVersionsResponse, PublishVersionRequest,
};
use crate::state::AppState;

/// The configuration `name:qualifier` runs (no qualifier: `$LATEST`); for an alias with
/// weighted routing, one of its versions drawn by the weights. `404` for a version or alias
/// that does not exist.
pub(crate) async fn resolve(
    state: &AppState,
    name: &FunctionName,
    qualifier: Option<&str>,
) -> Result<FunctionConfig, ApiError> {
    resolve_with(state, name, qualifier, fastrand::f64()).await
}

/// Like [`resolve`], but an alias gives its main version: what `GetFunction` describes.
pub(crate) async fn resolve_main(
    state: &AppState,
    name: &FunctionName,
    qualifier: Option<&str>,
) -> Result<FunctionConfig, ApiError> {
    // A draw of 1.0 is past every routing weight.
    resolve_with(state, name, qualifier, 1.0).await
}

async fn resolve_with(
    state: &AppState,
    name: &FunctionName,
    qualifier: Option<&str>,
    draw: f64,
) -> Result<FunctionConfig, ApiError> {
    let qualifier = qualifier.unwrap_or(LATEST);
    let found = nimbus_store::resolve(state.store(), name, qualifier, draw).await?;
    found.ok_or_else(|| {
        let arn = if qualifier == LATEST {
            state.config().function_arn(name)
        } else {
            state.config().qualified_arn(name, qualifier)
        };
        Error::ResourceNotFound(format!("Function not found: {arn}")).into()
    })
}

/// `PublishVersion`: `POST /2015-03-31/functions/{FunctionName}/versions`. Publishing an
/// unchanged `$LATEST` again answers the version already published, as Lambda does.
pub(crate) async fn publish_version(
    State(state): State<AppState>,
    FunctionRef(name): FunctionRef,
    LambdaJson(request): LambdaJson<PublishVersionRequest>,
) -> Result<(StatusCode, Json<FunctionConfiguration>), ApiError> {
    let latest = load(&state, &name).await?;
    check_revision(request.revision_id.as_deref(), &latest)?;
    if let Some(sha) = &request.code_sha256
        && *sha != latest.code_sha256.to_base64()
    {
        return Err(Error::InvalidParameterValue(format!(
            "CodeSha256 ({sha}) is different from current CodeSha256 in $LATEST ({}). Please \
             try again with the CodeSha256 in $LATEST.",
            latest.code_sha256.to_base64()
        ))
        .into());
    }
    let version = publish(&state, &latest, request.description).await?;
    Ok((
        StatusCode::CREATED,
        Json(FunctionConfiguration::new(&version, state.config())?),
    ))
}

/// Publishes `latest` as a new version, unless the last version published is the same code
/// and configuration: then that one is the answer.
pub(crate) async fn publish(
    state: &AppState,
    latest: &FunctionConfig,
    description: Option<String>,
) -> Result<FunctionConfig, ApiError> {
    let store = state.store();
    if let Some(last) = store.last_version_number(&latest.name).await?
        && last > 0
        && let Some(published) = store
            .get_function_version(&latest.name, &last.to_string())
            .await?
        && same_code_and_configuration(&published, latest)
    {
        return Ok(published);
    }
    let description = description.unwrap_or_else(|| latest.description.clone());
    let version = store
        .publish_version(latest, &description, &new_revision())
        .await?;
    tracing::info!(function = %latest.name, version = %version.version, "version published");
    Ok(version)
}

fn same_code_and_configuration(a: &FunctionConfig, b: &FunctionConfig) -> bool {
    a.code_sha256 == b.code_sha256
        && a.runtime == b.runtime
        && a.handler == b.handler
        && a.role == b.role
        && a.timeout_secs == b.timeout_secs
        && a.memory_mb == b.memory_mb
        && a.environment == b.environment
}

/// `ListVersionsByFunction`: `$LATEST`, then the published versions in order. The marker is
/// the last version number of the previous page.
pub(crate) async fn list_versions(
    State(state): State<AppState>,
    FunctionRef(name): FunctionRef,
    LambdaQuery(query): LambdaQuery<ListFunctionsQuery>,
) -> Result<Json<ListVersionsResponse>, ApiError> {
    let page = page::size(query.max_items, MAX_MAX_ITEMS)?;
    let latest = load(&state, &name).await?;
    let after = query.marker.as_deref().map(version_marker).transpose()?;
    let mut versions = Vec::with_capacity(page + 1);
    if after.is_none() {
        versions.push(latest);
    }
    let room = page + 1 - versions.len();
    versions.extend(
        state
            .store()
            .list_function_versions(&name, after.unwrap_or(0), room)
            .await?,
    );
    let next_marker = page::cut(&mut versions, page, |v| v.version.clone());
    let versions = versions
        .iter()
        .map(|v| FunctionConfiguration::new(v, state.config()))
        .collect::<Result<_, _>>()?;
    Ok(Json(ListVersionsResponse {
        versions,
        next_marker,
    }))
}

/// The published versions a `ListVersionsByFunction` marker says to list after: the marker is
/// the last version of the previous page, `$LATEST` (which comes first) included.
fn version_marker(marker: &str) -> Result<u64, Error> {
    if marker == LATEST {
        return Ok(0);
    }
    marker
        .parse::<u64>()
        .map_err(|_| Error::InvalidParameterValue(format!("Invalid Marker: {marker}")))
}

/// The `{FunctionName}` and `{Name}` of an alias route.
pub(crate) struct AliasRef {
    function: FunctionName,
    alias: String,
}

impl FromRequestParts<AppState> for AliasRef {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path((function, alias)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| Error::InvalidParameterValue(rejection.body_text()))?;
        let (function, qualifier) = FunctionName::parse_reference(&function)?;
        if qualifier.is_some() {
            return Err(Error::InvalidParameterValue(
                "The function name of an alias operation can not carry a qualifier".to_owned(),
            )
            .into());
        }
        Ok(Self { function, alias })
    }
}

/// `CreateAlias`: `POST /2015-03-31/functions/{FunctionName}/aliases`.
pub(crate) async fn create_alias(
    State(state): State<AppState>,
    FunctionRef(name): FunctionRef,
    LambdaJson(request): LambdaJson<AliasRequest>,
) -> Result<(StatusCode, Json<AliasConfiguration>), ApiError> {
    let alias = Alias {
        function_name: name,
        name: required(request.name, "Name")?,
        function_version: required(request.function_version, "FunctionVersion")?,
        description: request.description.unwrap_or_default(),
        routing: request
            .routing_config
            .map(|routing| routing.additional_version_weights)
            .unwrap_or_default(),
        revision_id: new_revision(),
    };
    check_alias(&state, &alias).await?;
    state
        .store()
        .create_alias(&alias)
        .await
        .map_err(|e| match Error::from(e) {
            Error::ResourceConflict(_) => Error::ResourceConflict(format!(
                "Alias already exists: {}",
                state
                    .config()
                    .qualified_arn(&alias.function_name, &alias.name)
            )),
            other => other,
        })?;
    tracing::info!(function = %alias.function_name, alias = %alias.name, version = %alias.function_version, "alias created");
    Ok((
        StatusCode::CREATED,
        Json(AliasConfiguration::new(&alias, state.config())),
    ))
}

/// `GetAlias`: `GET /2015-03-31/functions/{FunctionName}/aliases/{Name}`.
pub(crate) async fn get_alias(
    State(state): State<AppState>,
    AliasRef { function, alias }: AliasRef,
) -> Result<Json<AliasConfiguration>, ApiError> {
    let alias = load_alias(&state, &function, &alias).await?;
    Ok(Json(AliasConfiguration::new(&alias, state.config())))
}

/// `UpdateAlias`: `PUT /2015-03-31/functions/{FunctionName}/aliases/{Name}`. Members left out
/// keep their value; a `RoutingConfig` with no weights ends weighted routing.
pub(crate) async fn update_alias(
    State(state): State<AppState>,
    AliasRef { function, alias }: AliasRef,
    LambdaJson(request): LambdaJson<AliasRequest>,
) -> Result<Json<AliasConfiguration>, ApiError> {
    let current = load_alias(&state, &function, &alias).await?;
    if let Some(expected) = &request.revision_id
        && *expected != current.revision_id
    {
        return Err(Error::PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. Call the \
             GetFunction/GetAlias API to retrieve the latest Revision Id"
                .to_owned(),
        )
        .into());
    }
    let updated = Alias {
        function_version: request
            .function_version
            .unwrap_or_else(|| current.function_version.clone()),
        description: request
            .description
            .unwrap_or_else(|| current.description.clone()),
        routing: match request.routing_config {
            Some(routing) => routing.additional_version_weights,
            None => current.routing.clone(),
        },
        revision_id: new_revision(),
        ..current.clone()
    };
    check_alias(&state, &updated).await?;
    state
        .store()
        .update_alias(&updated, &current.revision_id)
        .await?;
    tracing::info!(function = %updated.function_name, alias = %updated.name, version = %updated.function_version, "alias updated");
    Ok(Json(AliasConfiguration::new(&updated, state.config())))
}

/// `DeleteAlias`: `DELETE /2015-03-31/functions/{FunctionName}/aliases/{Name}`.
pub(crate) async fn delete_alias(
    State(state): State<AppState>,
    AliasRef { function, alias }: AliasRef,
) -> Result<StatusCode, ApiError> {
    load(&state, &function).await?;
    if !state.store().delete_alias(&function, &alias).await? {
        return Err(alias_not_found(&state, &function, &alias).into());
    }
    tracing::info!(%function, %alias, "alias deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `ListAliases`: by name, optionally only those pointing at `FunctionVersion`. The marker is
/// the last alias name of the previous page.
pub(crate) async fn list_aliases(
    State(state): State<AppState>,
    FunctionRef(name): FunctionRef,
    LambdaQuery(query): LambdaQuery<ListAliasesQuery>,
) -> Result<Json<ListAliasesResponse>, ApiError> {
    let page = page::size(query.max_items, MAX_MAX_ITEMS)?;
    load(&state, &name).await?;
    let mut aliases: Vec<Alias> = state
        .store()
        .list_aliases(&name)
        .await?
        .into_iter()
        .filter(|alias| {
            query
                .function_version
                .as_ref()
                .is_none_or(|version| alias.function_version == *version)
        })
        .filter(|alias| {
            query
                .marker
                .as_ref()
                .is_none_or(|marker| alias.name > *marker)
        })
        .collect();
    let next_marker = page::cut(&mut aliases, page, |alias| alias.name.clone());
    Ok(Json(ListAliasesResponse {
        aliases: aliases
            .iter()
            .map(|alias| AliasConfiguration::new(alias, state.config()))
            .collect(),
        next_marker,
    }))
}

/// The aliases that send traffic to `version`, by name.
pub(crate) async fn aliases_of(
    state: &AppState,
    name: &FunctionName,
    version: &str,
) -> Result<Vec<String>, ApiError> {
    Ok(state
        .store()
        .list_aliases(name)
        .await?
        .into_iter()
        .filter(|alias| alias.function_version == version || alias.routing.contains_key(version))
        .map(|alias| alias.name)
        .collect())
}

/// Checks an alias before it is stored: its fields, and that the function and every version
/// it names exist.
async fn check_alias(state: &AppState, alias: &Alias) -> Result<(), ApiError> {
    alias.validate()?;
    load(state, &alias.function_name).await?;
    let versions = std::iter::once(&alias.function_version).chain(alias.routing.keys());
    for version in versions {
        let exists = match QualifierKind::of(version) {
            QualifierKind::Latest => true,
            QualifierKind::Version => state
                .store()
                .get_function_version(&alias.function_name, version)
                .await?
                .is_some(),
            QualifierKind::Alias => false,
        };
        if !exists {
            let what = if is_version_number(version) || version == LATEST {
                format!(
                    "Function not found: {}",
                    state.config().qualified_arn(&alias.function_name, version)
                )
            } else {
                format!("Invalid function version {version}: an alias points at a version")
            };
            return Err(if is_version_number(version) {
                Error::ResourceNotFound(what)
            } else {
                Error::InvalidParameterValue(what)
            }
            .into());
        }
    }
    Ok(())
}

async fn load_alias(
    state: &AppState,
    function: &FunctionName,
    alias: &str,
) -> Result<Alias, ApiError> {
    load(state, function).await?;
    state
        .store()
        .get_alias(function, alias)
        .await?
        .ok_or_else(|| alias_not_found(state, function, alias).into())
}

fn alias_not_found(state: &AppState, function: &FunctionName, alias: &str) -> Error {
    Error::ResourceNotFound(format!(
        "Alias not found: {}",
        state.config().qualified_arn(function, alias)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_may_end_at_latest() {
        assert_eq!(version_marker(LATEST).unwrap(), 0);
        assert_eq!(version_marker("7").unwrap(), 7);
        for bad in ["", "x", "-1", "$latest"] {
            assert!(
                matches!(version_marker(bad), Err(Error::InvalidParameterValue(_))),
                "{bad}"
            );
        }
    }
}
