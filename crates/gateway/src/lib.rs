//! Nimbus' public HTTP API: the AWS Lambda REST API (`/2015-03-31/functions...`, invoke
//! included, sync and `Event`, and the `/2019-09-25` event invoke configuration), shaped as
//! botocore's service model says so that unmodified AWS CLIs and SDKs work against it, and the
//! `/nimbus/v1` extensions (invocation records, dead letters, routes, code download), and
//! the HTTP triggers: function URLs and API-Gateway-style routes.
//!
//! Build an [`AppState`], turn it into a [`router`] (and, for routes on a listener of their
//! own, a [`routes_router`]), and run it with [`serve`]. The routes are listed in
//! `docs/api.md`.

mod auth;
mod backlog;
mod code;
mod concurrency;
mod dead_letters;
mod error;
mod event_invoke;
mod extract;
mod function_urls;
mod functions;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod http_trigger;
mod invocations;
mod invoke;
mod page;
mod payload;
mod provisioned;
mod request_id;
mod routes;
mod server;
mod shapes;
mod state;
mod tags;
mod versions;

use std::future::Future;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{get, post, put};
use tokio::net::TcpListener;

pub use http_trigger::validate_routes_prefix;
pub use server::{
    BODY_MIN_BYTES_PER_SEC, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, ServeOptions,
    serve_with,
};
pub use state::{AppState, DEFAULT_MAX_QUEUE_BACKLOG, DEFAULT_ROUTES_PREFIX, GatewayConfig};

use crate::error::ApiError;

/// Lambda's limit on a control API request: a 50 MB zip, base64-encoded, plus the rest.
pub const MAX_CONTROL_BODY_BYTES: usize = 70_167_211;

/// The gateway's routes, with the request-id middleware and Lambda-shaped fallbacks.
pub fn router(state: AppState) -> Router {
    let routes_prefix = state.config().routes_prefix.clone();
    let api = Router::new()
        // botocore asks for `ListFunctions` with a trailing slash; other clients do not.
        .route(
            "/2015-03-31/functions",
            get(functions::list_functions).post(functions::create_function),
        )
        .route(
            "/2015-03-31/functions/",
            get(functions::list_functions).post(functions::create_function),
        )
        .route(
            "/2015-03-31/functions/{FunctionName}",
            get(functions::get_function).delete(functions::delete_function),
        )
        .route(
            "/2015-03-31/functions/{FunctionName}/configuration",
            get(functions::get_function_configuration)
                .put(functions::update_function_configuration),
        )
        .route(
            "/2015-03-31/functions/{FunctionName}/code",
            put(functions::update_function_code),
        )
        .route(
            "/2015-03-31/functions/{FunctionName}/invocations",
            post(invoke::invoke),
        )
        .route(
            "/2015-03-31/functions/{FunctionName}/versions",
            get(versions::list_versions).post(versions::publish_version),
        )
        .route(
            "/2015-03-31/functions/{FunctionName}/aliases",
            get(versions::list_aliases).post(versions::create_alias),
        )
        .route(
            "/2015-03-31/functions/{FunctionName}/aliases/{Name}",
            get(versions::get_alias)
                .put(versions::update_alias)
                .delete(versions::delete_alias),
        )
        .route(
            "/2017-10-31/functions/{FunctionName}/concurrency",
            put(concurrency::put).delete(concurrency::delete),
        )
        .route(
            "/2019-09-30/functions/{FunctionName}/concurrency",
            get(concurrency::get),
        )
        .route(
            "/2019-09-30/functions/{FunctionName}/provisioned-concurrency",
            get(provisioned::get_or_list)
                .put(provisioned::put)
                .delete(provisioned::delete),
        )
        .route(
            "/2016-08-19/account-settings",
            get(concurrency::account_settings),
        )
        .route(
            "/2016-08-19/account-settings/",
            get(concurrency::account_settings),
        )
        .route(
            "/2017-03-31/tags/{Resource}",
            get(tags::list_tags)
                .post(tags::tag_resource)
                .delete(tags::untag_resource),
        )
        .route(
            "/2019-09-25/functions/{FunctionName}/event-invoke-config",
            get(event_invoke::get_config)
                .put(event_invoke::put_config)
                .post(event_invoke::update_config)
                .delete(event_invoke::delete_config),
        )
        .route(
            "/2019-09-25/functions/{FunctionName}/event-invoke-config/list",
            get(event_invoke::list_configs),
        )
        .route("/nimbus/v1/invocations", get(invocations::list_invocations))
        .route(
            "/nimbus/v1/invocations/{RequestId}",
            get(invocations::get_invocation),
        )
        .route(
            "/nimbus/v1/dead-letters",
            get(dead_letters::list).delete(dead_letters::purge_matching),
        )
        // A static segment wins over `{RequestId}`, which is a UUID and never `redrive`.
        .route(
            "/nimbus/v1/dead-letters/redrive",
            post(dead_letters::redrive_matching),
        )
        .route(
            "/nimbus/v1/dead-letters/{RequestId}",
            get(dead_letters::get).delete(dead_letters::delete_one),
        )
        .route(
            "/nimbus/v1/dead-letters/{RequestId}/redrive",
            post(dead_letters::redrive_one),
        )
        .route(
            "/2021-10-31/functions/{FunctionName}/url",
            get(function_urls::get)
                .post(function_urls::create)
                .put(function_urls::update)
                .delete(function_urls::delete),
        )
        .route(
            "/2021-10-31/functions/{FunctionName}/urls",
            get(function_urls::list),
        )
        .route("/nimbus/v1/routes", get(routes::list).post(routes::create))
        .route(
            "/nimbus/v1/routes/{RouteId}",
            get(routes::get).delete(routes::delete),
        )
        .route("/nimbus/v1/code/{CodeSha256}", get(code::download))
        // Must follow the routes: it applies to those already added.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(unknown_operation)
        // Only the buffering extractors honour this; the invoke handler reads its body itself
        // against the smaller payload limits.
        .layer(DefaultBodyLimit::max(MAX_CONTROL_BODY_BYTES))
        // Inside the request id, so that a refusal carries one too.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    // After the SigV4 layer: a trigger authenticates by its own auth type.
    http_trigger::add_to(api, routes_prefix.as_deref())
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(state)
}

/// The HTTP routes at the root of a listener of their own (and the function URLs under
/// `/lambda-url/`), without the Lambda API.
pub fn routes_router(state: AppState) -> Router {
    http_trigger::standalone(Router::new())
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the requests in flight
/// finish. The caller still owns the [`nimbus_store::RecordWriter`] it put in the state and
/// should `shutdown()` it after this returns, so that buffered records are written. Slow
/// clients are cut off after the default read deadlines ([`ServeOptions`]; [`serve_with`]
/// takes others).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, ServeOptions::default(), shutdown).await
}

async fn unknown_operation(method: Method, uri: Uri) -> ApiError {
    ApiError::UnknownOperation {
        status: StatusCode::NOT_FOUND,
        method,
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::UnknownOperation {
        status: StatusCode::METHOD_NOT_ALLOWED,
        method,
        path: uri.path().to_owned(),
    }
}
