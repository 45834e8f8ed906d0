//! The Lambda Runtime API (`/2018-06-01/runtime/...`) one instance talks to. Each instance
//! gets its own server on a loopback port, so the server always knows whose runtime calls.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use nimbus_core::{RequestId, limits};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// An invocation waiting for the runtime's next `GET .../invocation/next`.
pub(crate) struct Event {
    pub request_id: RequestId,
    pub payload: Bytes,
    pub function_arn: String,
    pub timeout: Duration,
    pub trace_id: Option<String>,
    pub client_context: Option<String>,
    /// Told the deadline the moment the runtime takes the event.
    pub taken: oneshot::Sender<Instant>,
}

/// What the runtime answered for the current invocation.
#[derive(Debug)]
pub(crate) enum Reply {
    Response(Bytes),
    /// `/error`: the error document and its type.
    Error {
        error_type: Option<String>,
        body: Bytes,
    },
    /// `/init/error`: the runtime could not start.
    InitError {
        error_type: Option<String>,
        body: Bytes,
    },
    /// The response exceeded the payload limit.
    TooLarge,
}

pub(crate) struct RuntimeApi {
    pub address: std::net::SocketAddr,
    events: mpsc::Sender<Event>,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    events: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    /// The invocation the runtime is working on, and where its reply goes.
    current: Mutex<Option<(RequestId, oneshot::Sender<Reply>)>>,
}

impl RuntimeApi {
    pub(crate) async fn start() -> std::io::Result<RuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (events, receiver) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            events: tokio::sync::Mutex::new(receiver),
            current: Mutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            use axum::serve::ListenerExt as _;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "a runtime API server failed");
            }
        });
        Ok(RuntimeApi {
            address,
            events,
            shared,
            server,
        })
    }

    /// Queues `event` for the runtime and returns where its reply will arrive.
    pub(crate) async fn submit(&self, event: Event) -> Option<oneshot::Receiver<Reply>> {
        let (reply_tx, reply_rx) = oneshot::channel();
        *lock(&self.shared.current) = Some((event.request_id, reply_tx));
        self.events.send(event).await.ok()?;
        Some(reply_rx)
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let event = shared.events.lock().await.recv().await;
    let Some(event) = event else {
        return StatusCode::GONE.into_response();
    };
    let deadline = Instant::now() + event.timeout;
    let deadline_ms = SystemTime::now()
        .checked_add(event.timeout)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis());
    let _ = event.taken.send(deadline);

    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set("content-type", "application/json");
    set(
        "lambda-runtime-aws-request-id",
        &event.request_id.to_string(),
    );
    set("lambda-runtime-deadline-ms", &deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", &event.function_arn);
    if let Some(trace_id) = &event.trace_id {
        set("lambda-runtime-trace-id", trace_id);
    }
    if let Some(context) = &event.client_context {
        set("lambda-runtime-client-context", context);
    }
    (headers, Body::from(event.payload)).into_response()
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let reply = match read_limited(body).await {
        Some(bytes) => Reply::Response(bytes),
        None => Reply::TooLarge,
    };
    complete(&shared, &id, reply)
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = read_limited(body).await.unwrap_or_default();
    let error_type = error_type(&headers, &body);
    complete(&shared, &id, Reply::Error { error_type, body })
}

async fn init_error(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let body = read_limited(body).await.unwrap_or_default();
    let error_type = error_type(&headers, &body);
    let current = lock(&shared.current).take();
    if let Some((_, reply)) = current {
        let _ = reply.send(Reply::InitError { error_type, body });
    }
    accepted()
}

fn complete(shared: &Shared, id: &str, reply: Reply) -> Response {
    let mut current = lock(&shared.current);
    let matches = current
        .as_ref()
        .is_some_and(|(request_id, _)| request_id.to_string() == id);
    if !matches {
        let body = serde_json::json!({
            "errorMessage": format!("Invalid request ID: {id}"),
            "errorType": "InvalidRequestID",
        });
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    if let Some((_, sender)) = current.take() {
        let _ = sender.send(reply);
    }
    accepted()
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({"status": "OK"})),
    )
        .into_response()
}

/// `errorType` from the document, else the `Lambda-Runtime-Function-Error-Type` header.
fn error_type(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|doc| doc.get("errorType")?.as_str().map(str::to_owned))
        .or_else(|| {
            headers
                .get("lambda-runtime-function-error-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
}

/// The body, or `None` past the response payload limit.
async fn read_limited(body: Body) -> Option<Bytes> {
    let limited = http_body_util::Limited::new(body, limits::MAX_SYNC_PAYLOAD_BYTES);
    limited
        .collect()
        .await
        .ok()
        .map(|collected| collected.to_bytes())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
