//! Function URLs, the control side: `CreateFunctionUrlConfig`, `GetFunctionUrlConfig`,
//! `UpdateFunctionUrlConfig`, `DeleteFunctionUrlConfig` and `ListFunctionUrlConfigs` under
//! `/2021-10-31/functions/{FunctionName}/url(s)`. Requests to the URLs themselves are served
//! by [`http_trigger`](crate::http_trigger).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use nimbus_core::function_url::validate_url_qualifier;
use nimbus_core::{AuthType, Cors, Error, FunctionName, FunctionUrlConfig, InvokeMode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::extract::{LambdaJson, LambdaQuery, QualifiedFunctionRef};
use crate::functions::load;
use crate::http_trigger::URL_PATH;
use crate::page;
use crate::shapes::last_modified;
use crate::state::AppState;

/// `ListFunctionUrlConfigs` answers at most this many.
const MAX_LIST_ITEMS: u32 = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UrlRequest {
    auth_type: Option<String>,
    cors: Option<Cors>,
    invoke_mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListQuery {
    marker: Option<String>,
    max_items: Option<u32>,
}

/// `FunctionUrlConfig`, and the answers of create, get and update (which are that shape, the
/// create one without `LastModifiedTime`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UrlBody {
    function_url: String,
    function_arn: String,
    auth_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cors: Option<Cors>,
    creation_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_modified_time: Option<String>,
    invoke_mode: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListResponse {
    function_url_configs: Vec<UrlBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
}

/// `CreateFunctionUrlConfig`: `POST /2021-10-31/functions/{FunctionName}/url`.
pub(crate) async fn create(
    State(state): State<AppState>,
    QualifiedFunctionRef { name, qualifier }: QualifiedFunctionRef,
    headers: HeaderMap,
    LambdaJson(request): LambdaJson<UrlRequest>,
) -> Result<(StatusCode, Json<UrlBody>), ApiError> {
    let auth_type = request.auth_type.as_deref().ok_or_else(|| {
        Error::InvalidParameterValue(
            "1 validation error detected: Value null at 'authType' failed to satisfy \
             constraint: Member must not be null"
                .to_owned(),
        )
    })?;
    let auth_type = AuthType::parse(auth_type)?;
    let invoke_mode = invoke_mode(request.invoke_mode.as_deref())?;
    if let Some(cors) = &request.cors {
        cors.validate()?;
    }
    check_target(&state, &name, qualifier.as_deref()).await?;
    let now = OffsetDateTime::now_utc();
    let config = FunctionUrlConfig {
        url_id: FunctionUrlConfig::new_url_id(),
        function_name: name,
        qualifier,
        auth_type,
        cors: request.cors,
        invoke_mode,
        created_at: now,
        last_modified: now,
    };
    state.store().create_function_url(&config).await?;
    let mut body = UrlBody::new(&state, &headers, &config)?;
    body.last_modified_time = None;
    Ok((StatusCode::CREATED, Json(body)))
}

/// `GetFunctionUrlConfig`: `GET /2021-10-31/functions/{FunctionName}/url`.
pub(crate) async fn get(
    State(state): State<AppState>,
    QualifiedFunctionRef { name, qualifier }: QualifiedFunctionRef,
    headers: HeaderMap,
) -> Result<Json<UrlBody>, ApiError> {
    let config = existing(&state, &name, qualifier.as_deref()).await?;
    Ok(Json(UrlBody::new(&state, &headers, &config)?))
}

/// `UpdateFunctionUrlConfig`: `PUT /2021-10-31/functions/{FunctionName}/url`; what the body
/// leaves out stays as it was.
pub(crate) async fn update(
    State(state): State<AppState>,
    QualifiedFunctionRef { name, qualifier }: QualifiedFunctionRef,
    headers: HeaderMap,
    LambdaJson(request): LambdaJson<UrlRequest>,
) -> Result<Json<UrlBody>, ApiError> {
    let auth_type = request
        .auth_type
        .as_deref()
        .map(AuthType::parse)
        .transpose()?;
    let invoke_mode = request
        .invoke_mode
        .as_deref()
        .map(|mode| invoke_mode(Some(mode)))
        .transpose()?;
    if let Some(cors) = &request.cors {
        cors.validate()?;
    }
    let mut config = existing(&state, &name, qualifier.as_deref()).await?;
    if let Some(auth_type) = auth_type {
        config.auth_type = auth_type;
    }
    if let Some(invoke_mode) = invoke_mode {
        config.invoke_mode = invoke_mode;
    }
    if let Some(cors) = request.cors {
        config.cors = Some(cors);
    }
    config.last_modified = OffsetDateTime::now_utc();
    if !state.store().update_function_url(&config).await? {
        return Err(not_found().into());
    }
    state.triggers().forget_urls();
    Ok(Json(UrlBody::new(&state, &headers, &config)?))
}

/// `DeleteFunctionUrlConfig`: `DELETE /2021-10-31/functions/{FunctionName}/url`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    QualifiedFunctionRef { name, qualifier }: QualifiedFunctionRef,
) -> Result<StatusCode, ApiError> {
    check_qualifier(qualifier.as_deref())?;
    if state
        .store()
        .delete_function_url(&name, qualifier.as_deref())
        .await?
    {
        state.triggers().forget_urls();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found().into())
    }
}

/// `ListFunctionUrlConfigs`: `GET /2021-10-31/functions/{FunctionName}/urls`, paged by the
/// URL id of the last item of the previous page.
pub(crate) async fn list(
    State(state): State<AppState>,
    QualifiedFunctionRef { name, .. }: QualifiedFunctionRef,
    LambdaQuery(query): LambdaQuery<ListQuery>,
    headers: HeaderMap,
) -> Result<Json<ListResponse>, ApiError> {
    let size = page::size(query.max_items, MAX_LIST_ITEMS)?;
    load(&state, &name).await?;
    let mut configs = state.store().list_function_urls(&name).await?;
    if let Some(marker) = &query.marker {
        let at = configs
            .iter()
            .position(|config| &config.url_id == marker)
            .ok_or_else(|| Error::InvalidParameterValue(format!("Invalid Marker: {marker}")))?;
        configs.drain(..=at);
    }
    let next_marker = page::cut(&mut configs, size, |config| config.url_id.clone());
    let function_url_configs = configs
        .iter()
        .map(|config| UrlBody::new(&state, &headers, config))
        .collect::<Result<_, _>>()?;
    Ok(Json(ListResponse {
        function_url_configs,
        next_marker,
    }))
}

impl UrlBody {
    fn new(
        state: &AppState,
        headers: &HeaderMap,
        config: &FunctionUrlConfig,
    ) -> Result<Self, Error> {
        let function_arn = match &config.qualifier {
            Some(qualifier) => state
                .config()
                .qualified_arn(&config.function_name, qualifier),
            None => state.config().function_arn(&config.function_name),
        };
        Ok(Self {
            function_url: format!(
                "{}{URL_PATH}/{}/",
                public_base(state, headers),
                config.url_id
            ),
            function_arn,
            auth_type: config.auth_type.as_str(),
            cors: config.cors.clone(),
            creation_time: last_modified(config.created_at)?,
            last_modified_time: Some(last_modified(config.last_modified)?),
            invoke_mode: config.invoke_mode.as_str(),
        })
    }
}

/// Where callers reach the gateway: the configured public URL, else the host the control
/// request was sent to.
fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config().public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

fn invoke_mode(mode: Option<&str>) -> Result<InvokeMode, Error> {
    mode.map_or(Ok(InvokeMode::Buffered), InvokeMode::parse)
}

fn check_qualifier(qualifier: Option<&str>) -> Result<(), Error> {
    qualifier.map_or(Ok(()), validate_url_qualifier)
}

/// A URL is for the function or one of its aliases, which must exist.
async fn check_target(
    state: &AppState,
    name: &FunctionName,
    qualifier: Option<&str>,
) -> Result<(), ApiError> {
    check_qualifier(qualifier)?;
    load(state, name).await?;
    if let Some(alias) = qualifier
        && state.store().get_alias(name, alias).await?.is_none()
    {
        return Err(Error::ResourceNotFound(format!(
            "Alias not found: {}",
            state.config().qualified_arn(name, alias)
        ))
        .into());
    }
    Ok(())
}

async fn existing(
    state: &AppState,
    name: &FunctionName,
    qualifier: Option<&str>,
) -> Result<FunctionUrlConfig, ApiError> {
    check_qualifier(qualifier)?;
    state
        .store()
        .get_function_url(name, qualifier)
        .await?
        .ok_or_else(|| not_found().into())
}

fn not_found() -> Error {
    Error::ResourceNotFound("The resource you requested does not exist.".to_owned())
}
