//! HTTP routes, the control side: `/nimbus/v1/routes` declares, lists, shows and removes the
//! routes that map a method and a path to a function. Requests to the routes themselves are
//! served by [`http_trigger`](crate::http_trigger).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nimbus_core::route::DEFAULT_INTEGRATION_TIMEOUT;
use nimbus_core::{AuthType, Cors, Error, FunctionName, HttpRoute, InvocationType, RoutePath};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;
use crate::extract::{LambdaJson, PathParam};
use crate::state::AppState;
use crate::versions;

/// `POST /nimbus/v1/routes`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateRoute {
    method: String,
    path: String,
    function_name: String,
    #[serde(default)]
    qualifier: Option<String>,
    /// `RequestResponse` (the default) or `Event`.
    #[serde(default)]
    invocation_type: Option<String>,
    /// The integration timeout of a synchronous route.
    #[serde(default)]
    timeout_ms: Option<u64>,
    /// `NONE` (the default) or `AWS_IAM`.
    #[serde(default)]
    auth_type: Option<String>,
    /// The `Cors` shape of the Lambda model.
    #[serde(default)]
    cors: Option<Cors>,
}

/// A route as `/nimbus/v1/routes` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RouteBody {
    route_id: String,
    route_key: String,
    method: String,
    path: String,
    function_name: String,
    qualifier: Option<String>,
    invocation_type: &'static str,
    timeout_ms: u128,
    auth_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cors: Option<Cors>,
    created_at: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct RouteList {
    routes: Vec<RouteBody>,
}

/// `POST /nimbus/v1/routes`: `201` and the route, `404` if the function (or its qualifier)
/// does not exist, `409` if a route of the same method already matches the same paths.
pub(crate) async fn create(
    State(state): State<AppState>,
    LambdaJson(request): LambdaJson<CreateRoute>,
) -> Result<(StatusCode, Json<RouteBody>), ApiError> {
    let invocation_type = match request.invocation_type.as_deref() {
        None => InvocationType::RequestResponse,
        Some(value) => value.parse()?,
    };
    let route = HttpRoute {
        route_id: HttpRoute::new_route_id(),
        method: request.method.to_ascii_uppercase(),
        path: RoutePath::parse(&request.path)?,
        function_name: FunctionName::parse(&request.function_name)?,
        qualifier: request.qualifier,
        invocation_type,
        integration_timeout: request
            .timeout_ms
            .map_or(DEFAULT_INTEGRATION_TIMEOUT, Duration::from_millis),
        auth_type: request
            .auth_type
            .as_deref()
            .map_or(Ok(AuthType::None), AuthType::parse)?,
        cors: request.cors,
        created_at: to_the_microsecond(OffsetDateTime::now_utc()),
    };
    route.validate()?;
    if crate::http_trigger::is_url_path(route.path.as_str()) {
        return Err(Error::InvalidParameterValue(format!(
            "Invalid route path '{}': {} is where function URLs are served",
            route.path.as_str(),
            crate::http_trigger::URL_PATH
        ))
        .into());
    }
    // The target must exist now; a route whose function goes away later answers 500.
    versions::resolve(&state, &route.function_name, route.qualifier.as_deref()).await?;
    state.store().create_route(&route).await?;
    state.triggers().forget_routes();
    Ok((StatusCode::CREATED, Json(RouteBody::new(&route)?)))
}

/// `GET /nimbus/v1/routes`: every route, by path then method.
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<RouteList>, ApiError> {
    let routes = state
        .store()
        .list_routes()
        .await?
        .iter()
        .map(RouteBody::new)
        .collect::<Result<_, _>>()?;
    Ok(Json(RouteList { routes }))
}

/// `GET /nimbus/v1/routes/{RouteId}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    PathParam(route_id): PathParam,
) -> Result<Json<RouteBody>, ApiError> {
    let route = state
        .store()
        .get_route(&route_id)
        .await?
        .ok_or_else(|| not_found(&route_id))?;
    Ok(Json(RouteBody::new(&route)?))
}

/// `DELETE /nimbus/v1/routes/{RouteId}`: `204`, or `404`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    PathParam(route_id): PathParam,
) -> Result<StatusCode, ApiError> {
    if !state.store().delete_route(&route_id).await? {
        return Err(not_found(&route_id).into());
    }
    state.triggers().forget_routes();
    Ok(StatusCode::NO_CONTENT)
}

/// What the store keeps of a time, so that the answer to a create equals later reads.
fn to_the_microsecond(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}

fn not_found(route_id: &str) -> Error {
    Error::ResourceNotFound(format!("Route not found: {route_id}"))
}

impl RouteBody {
    fn new(route: &HttpRoute) -> Result<Self, Error> {
        Ok(Self {
            route_id: route.route_id.clone(),
            route_key: route.route_key(),
            method: route.method.clone(),
            path: route.path.as_str().to_owned(),
            function_name: route.function_name.to_string(),
            qualifier: route.qualifier.clone(),
            invocation_type: route.invocation_type.as_str(),
            timeout_ms: route.integration_timeout.as_millis(),
            auth_type: route.auth_type.as_str(),
            cors: route.cors.clone(),
            created_at: route
                .created_at
                .format(&Rfc3339)
                .map_err(|e| Error::Service(format!("cannot format a timestamp: {e}")))?,
        })
    }
}
