//! HTTP triggers, the serving side: a request to a function URL (`/lambda-url/{UrlId}/...`)
//! or to a route (under the routes prefix, or on the routes' own listener) becomes an API
//! Gateway payload 2.0 event; a synchronous trigger answers with the function's mapped
//! result (or `504` past a route's integration timeout), an asynchronous route queues the
//! event and answers `202` with the request id. CORS preflights are answered here, without
//! the function; `AWS_IAM` triggers take only SigV4-signed requests.

mod cache;
mod event;
mod response;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::any;
use bytes::Bytes;
use nimbus_core::function::LATEST;
use nimbus_core::{AuthType, Cors, Error, FunctionName, InvocationType, InvokeRequest, RequestId};
use nimbus_queue::QueuedEvent;
use time::OffsetDateTime;
use tracing::Instrument as _;

pub(crate) use cache::TriggerCache;
use response::{Refusal, refusal};

use crate::error::ApiError;
use crate::state::AppState;
use crate::{auth, invoke, payload, versions};

/// Where function URLs are served: `/lambda-url/{UrlId}/`.
pub(crate) const URL_PATH: &str = "/lambda-url";
/// The route table's id in events (`requestContext.apiId`).
const ROUTES_API_ID: &str = "nimbus";
const INVOCATION_TYPE: HeaderName = HeaderName::from_static("x-amz-invocation-type");
const TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
const REQUEST_METHOD: HeaderName = HeaderName::from_static("access-control-request-method");
const REQUEST_HEADERS: HeaderName = HeaderName::from_static("access-control-request-headers");

/// Whether a path is where function URLs are served, so no route may take it.
pub(crate) fn is_url_path(path: &str) -> bool {
    path == URL_PATH || path.starts_with("/lambda-url/")
}

/// Adds function URLs, and the routes under `routes_prefix` when given, to `router`. They
/// must come after the Lambda API's SigV4 layer: a trigger authenticates by its auth type.
pub(crate) fn add_to(router: Router<AppState>, routes_prefix: Option<&str>) -> Router<AppState> {
    let router = router
        .route("/lambda-url/{UrlId}", any(serve_url))
        .route("/lambda-url/{UrlId}/", any(serve_url))
        .route("/lambda-url/{UrlId}/{*path}", any(serve_url));
    match routes_prefix {
        Some(prefix) => {
            let prefix_len = prefix.len();
            let serve = move |State(state): State<AppState>, request: Request| {
                serve_route(state, request, prefix_len)
            };
            router
                .route(prefix, any(serve))
                .route(&format!("{prefix}/"), any(serve))
                .route(&format!("{prefix}/{{*path}}"), any(serve))
        }
        None => router,
    }
}

/// The routes' own listener: every path is a route's, except the function URLs'.
pub(crate) fn standalone(router: Router<AppState>) -> Router<AppState> {
    add_to(router, None)
        .fallback(|State(state): State<AppState>, request: Request| serve_route(state, request, 0))
}

/// Checks a routes prefix: `/` and a name, not ending in `/`, clear of the Lambda API's
/// paths (which start with a date), `/nimbus` and the function URLs.
pub fn validate_routes_prefix(prefix: &str) -> Result<(), String> {
    let first = prefix
        .strip_prefix('/')
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    let well_formed = !first.is_empty()
        && !prefix.ends_with('/')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
        && !prefix.contains("//");
    if !well_formed {
        return Err(format!(
            "routes prefix {prefix:?} must be / followed by a path, like /api"
        ));
    }
    if first.starts_with(|c: char| c.is_ascii_digit())
        || first == "nimbus"
        || first == URL_PATH.trim_start_matches('/')
    {
        return Err(format!(
            "routes prefix {prefix:?} would shadow the Lambda API, /nimbus or /lambda-url"
        ));
    }
    Ok(())
}

/// What a trigger says about how to run a request.
struct Trigger {
    function_name: FunctionName,
    qualifier: Option<String>,
    invocation_type: InvocationType,
    /// A route's integration timeout; function URLs wait for the function's own.
    timeout: Option<Duration>,
    auth_type: AuthType,
    cors: Option<Cors>,
    route_key: String,
    api_id: String,
    raw_path: String,
    path_parameters: Vec<(String, String)>,
}

async fn serve_url(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path();
    let rest = path.strip_prefix("/lambda-url/").unwrap_or_default();
    let (url_id, raw_path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let (url_id, raw_path) = (url_id.to_owned(), raw_path.to_owned());
    let config = match state.triggers().url(state.store(), &url_id).await {
        Ok(Some(config)) => config,
        Ok(None) => return refusal(StatusCode::NOT_FOUND, "Not Found").into_response(),
        Err(error) => return service_error(&error.into()).into_response(),
    };
    let trigger = Trigger {
        function_name: config.function_name.clone(),
        qualifier: config.qualifier.clone(),
        invocation_type: InvocationType::RequestResponse,
        timeout: None,
        auth_type: config.auth_type,
        cors: config.cors.clone(),
        route_key: "$default".to_owned(),
        api_id: url_id,
        raw_path,
        path_parameters: Vec::new(),
    };
    serve(state, request, trigger).await
}

async fn serve_route(state: AppState, request: Request, prefix_len: usize) -> Response {
    let raw_path = match request.uri().path().get(prefix_len..) {
        Some("") | None => "/".to_owned(),
        Some(rest) => rest.to_owned(),
    };
    let table = match state.triggers().routes(state.store()).await {
        Ok(table) => table,
        Err(error) => return service_error(&error.into()).into_response(),
    };
    // A preflight is for the route the announced method would take.
    if let Some((origin, announced)) = preflight_of(&request)
        && let Some(found) = table.find(&announced, &raw_path)
        && let Some(cors) = &found.route.cors
    {
        return preflight(cors, &origin, &announced, request.headers());
    }
    let Some(found) = table.find(request.method().as_str(), &raw_path) else {
        return refusal(StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let route = Arc::clone(&found.route);
    let trigger = Trigger {
        function_name: route.function_name.clone(),
        qualifier: route.qualifier.clone(),
        invocation_type: route.invocation_type,
        timeout: Some(route.integration_timeout),
        auth_type: route.auth_type,
        cors: route.cors.clone(),
        route_key: route.route_key(),
        api_id: ROUTES_API_ID.to_owned(),
        raw_path,
        path_parameters: found.path_parameters,
    };
    serve(state, request, trigger).await
}

/// Runs a request through its trigger, then adds the CORS headers of a cross-origin one.
async fn serve(state: AppState, request: Request, trigger: Trigger) -> Response {
    let origin = text(request.headers(), &header::ORIGIN).map(str::to_owned);
    if let (Some(cors), Some((origin, announced))) = (&trigger.cors, preflight_of(&request)) {
        return preflight(cors, &origin, &announced, request.headers());
    }
    let cors = trigger.cors.clone();
    let mut response = match run(&state, request, trigger).await {
        Ok(response) => response,
        Err(refused) => refused.into_response(),
    };
    if let (Some(cors), Some(origin)) = (cors, origin) {
        for (name, value) in cors.response_headers(&origin) {
            if let Ok(value) = HeaderValue::try_from(value) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(name), value);
            }
        }
    }
    response
}

async fn run(state: &AppState, request: Request, trigger: Trigger) -> Result<Response, Refusal> {
    let request_id = *request
        .extensions()
        .get::<RequestId>()
        .ok_or_else(|| refusal(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"))?;
    let source_ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "0.0.0.0".to_owned(), |info| info.0.ip().to_string());
    // Every invocation leaves a record: refuse it rather than keep the caller waiting for room.
    if state.records().is_full() {
        return Err(refusal(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"));
    }
    let access_key = authenticate(state, &trigger, request.headers())?;
    let request = match (trigger.auth_type, access_key.is_some()) {
        (AuthType::AwsIam, true) => {
            auth::verified(state.config(), request, OffsetDateTime::now_utc())
                .await
                .map_err(|_| refusal(StatusCode::FORBIDDEN, "Forbidden"))?
        }
        _ => request,
    };
    let invocation_type = invocation_type(&trigger, request.headers())?;
    let limit = match invocation_type {
        InvocationType::Event => state.config().max_async_payload_bytes,
        _ => state.config().max_sync_payload_bytes,
    };
    let (parts, body) = request.into_parts();
    let too_large = refusal(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    let body = payload::read_bounded(&parts.headers, body, limit, || {
        Error::RequestTooLarge(String::new())
    })
    .await
    .map_err(|error| match error {
        Error::RequestTooLarge(_) => too_large,
        _ => refusal(StatusCode::BAD_REQUEST, "Bad Request"),
    })?;
    let source = event::Source {
        route_key: &trigger.route_key,
        raw_path: &trigger.raw_path,
        path_parameters: &trigger.path_parameters,
        api_id: &trigger.api_id,
        account_id: &state.config().account_id,
        request_id,
        source_ip: &source_ip,
        access_key: access_key.as_deref(),
    };
    let event = Bytes::from(event::build(&parts, &body, &source));
    if event.len() > limit {
        return Err(too_large);
    }
    let function = versions::resolve(state, &trigger.function_name, trigger.qualifier.as_deref())
        .await
        .map_err(|error| {
            tracing::error!(?error, function = %trigger.function_name, "a trigger's function cannot be resolved");
            refusal(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        })?;
    if invocation_type == InvocationType::Event {
        let qualifier = trigger.qualifier.unwrap_or_else(|| LATEST.to_owned());
        let queued = QueuedEvent::new(request_id, trigger.function_name, qualifier, event);
        invoke::enqueue(state, queued, &parts.headers)
            .await
            .map_err(|error| match error {
                ApiError::Lambda(Error::TooManyRequests(_)) | ApiError::Overloaded(_) => {
                    refusal(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
                }
                other => {
                    tracing::error!(error = ?other, "an event cannot be queued");
                    refusal(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                }
            })?;
        let body = serde_json::json!({ "requestId": request_id.to_string() }).to_string();
        return Ok((
            StatusCode::ACCEPTED,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response());
    }
    let request = InvokeRequest {
        request_id,
        function,
        payload: event,
        client_context: None,
        want_log_tail: false,
        trace_id: trace_id(&parts),
    };
    run_sync(state, request, trigger.timeout).await
}

/// Runs the invocation here; past the integration timeout it is handed to a task of its
/// own, so that it still finishes and is recorded after the `504`.
async fn run_sync(
    state: &AppState,
    request: InvokeRequest,
    timeout: Option<Duration>,
) -> Result<Response, Refusal> {
    let mut invocation = Box::pin({
        let state = state.clone();
        async move { invoke::run_sync(&state, request).await }.in_current_span()
    });
    let result = match timeout {
        None => invocation.await,
        Some(timeout) => tokio::select! {
            result = &mut invocation => result,
            () = tokio::time::sleep(timeout) => {
                tracing::info!(?timeout, "the integration timed out; answering 504");
                // Not dropped: the invocation runs on to its own end and is recorded.
                tokio::spawn(invocation);
                return Err(refusal(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out"));
            }
        },
    };
    match result {
        Ok(outcome) => Ok(response::from_outcome(&outcome)),
        Err(Error::TooManyRequests(_)) => {
            Err(refusal(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"))
        }
        Err(error) => Err(service_error(&error)),
    }
}

/// The access key that signed the request when the trigger wants `AWS_IAM` and the gateway
/// has keys to check it with; a request without a signature is refused here.
fn authenticate(
    state: &AppState,
    trigger: &Trigger,
    headers: &HeaderMap,
) -> Result<Option<String>, Refusal> {
    if trigger.auth_type != AuthType::AwsIam || state.config().credentials.is_empty() {
        return Ok(None);
    }
    let credential = text(headers, &header::AUTHORIZATION)
        .and_then(|value| value.split("Credential=").nth(1))
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| refusal(StatusCode::FORBIDDEN, "Forbidden"))?;
    Ok(Some(credential.to_owned()))
}

/// A route queued as an event lets the caller ask for a synchronous run instead (and back)
/// with `X-Amz-Invocation-Type`; other triggers run as declared.
fn invocation_type(trigger: &Trigger, headers: &HeaderMap) -> Result<InvocationType, Refusal> {
    if trigger.invocation_type != InvocationType::Event {
        return Ok(trigger.invocation_type);
    }
    match text(headers, &INVOCATION_TYPE) {
        None | Some("Event") => Ok(InvocationType::Event),
        Some("RequestResponse") => Ok(InvocationType::RequestResponse),
        Some(_) => Err(refusal(
            StatusCode::BAD_REQUEST,
            "X-Amz-Invocation-Type must be Event or RequestResponse",
        )),
    }
}

/// `Origin` and `Access-Control-Request-Method` of a CORS preflight.
fn preflight_of(request: &Request) -> Option<(String, String)> {
    if request.method() != Method::OPTIONS {
        return None;
    }
    let headers = request.headers();
    Some((
        text(headers, &header::ORIGIN)?.to_owned(),
        text(headers, &REQUEST_METHOD)?.to_owned(),
    ))
}

/// A preflight's answer: `200` with the CORS headers when allowed, `200` without them (the
/// browser then refuses) when not.
fn preflight(cors: &Cors, origin: &str, method: &str, headers: &HeaderMap) -> Response {
    let mut response = Response::new(Body::empty());
    for (name, value) in cors
        .preflight(origin, method, text(headers, &REQUEST_HEADERS))
        .unwrap_or_default()
    {
        if let Ok(value) = HeaderValue::try_from(value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// The function sees the caller's X-Ray header, else this request's trace in X-Ray form.
fn trace_id(parts: &Parts) -> Option<String> {
    text(&parts.headers, &TRACE_ID)
        .map(str::to_owned)
        .or_else(|| {
            nimbus_telemetry::trace::current_traceparent()
                .as_deref()
                .and_then(nimbus_core::trace::xray_from_traceparent)
        })
}

fn service_error(error: &Error) -> Refusal {
    tracing::error!(%error, "an HTTP trigger failed");
    refusal(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

/// A header's value, when it is text.
fn text(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_prefixes_must_not_shadow_the_api() {
        for good in ["/api", "/http/v1", "/my-app"] {
            assert!(validate_routes_prefix(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/",
            "api",
            "/api/",
            "/2015-03-31",
            "/nimbus",
            "/lambda-url",
            "/a//b",
            "/{x}",
        ] {
            assert!(validate_routes_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn url_paths_are_reserved() {
        assert!(is_url_path("/lambda-url"));
        assert!(is_url_path("/lambda-url/x"));
        assert!(!is_url_path("/lambda-urls"));
    }
}
