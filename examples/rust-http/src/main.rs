//! A web app for Nimbus (and for AWS Lambda, unchanged): an ordinary axum router served
//! through the `lambda_http` adapter, which turns API Gateway and function URL events into
//! requests and responses back. Deploy it as the `bootstrap` of a `provided.al2023`
//! function and route every path to it; see `examples/README.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Options {
    verbose: Option<String>,
}

async fn get_order(Path(id): Path<u64>, Query(options): Query<Options>) -> Json<Value> {
    Json(json!({ "id": id, "verbose": options.verbose.is_some() }))
}

async fn create_order(
    State(next_id): State<Arc<AtomicU64>>,
    Json(order): Json<Value>,
) -> impl IntoResponse {
    let id = next_id.fetch_add(1, Ordering::Relaxed);
    let item = order.get("item").cloned().unwrap_or(Value::Null);
    (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/orders/{id}"))],
        Json(json!({ "id": id, "item": item })),
    )
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let app = Router::new()
        .route("/orders/{id}", get(get_order))
        .route("/orders", post(create_order))
        .with_state(Arc::new(AtomicU64::new(1)));
    lambda_http::run(app).await
}
