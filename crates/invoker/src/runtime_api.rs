//! The Lambda Runtime API (`/2018-06-01/runtime/...`) one instance talks to. Each instance
//! gets its own server on a loopback port, so the server always knows whose runtime calls.

use crate::sync::lock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use nimbus_core::{RequestId, accept, limits};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
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
    /// Told the moment the runtime takes the event: init is over and the clock starts.
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

/// How far the runtime got before its first invocation: its first `GET .../next` says its
/// init is over, an `/init/error` that init failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    Starting,
    Ready,
    /// With the error type the runtime gave.
    InitFailed(Option<String>),
}

/// A loopback listener that drops connections whose client socket is not `owner`'s.
struct OwnedBy {
    listener: TcpListener,
    owner: Option<u32>,
}

impl OwnedBy {
    async fn accept(&self) -> tokio::net::TcpStream {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) if accept::lost_one_connection(&error) => continue,
                Err(error) => {
                    tracing::warn!(%error, "a runtime API server cannot accept; pausing a second");
                    tokio::time::sleep(accept::PAUSE_AFTER_ACCEPT_ERROR).await;
                    continue;
                }
            };
            let Some(owner) = self.owner else {
                return stream;
            };
            let local = stream.local_addr();
            let peer_owner = local.ok().and_then(|local| socket_owner(peer, local));
            if peer_owner == Some(owner) {
                return stream;
            }
            tracing::warn!(%peer, ?peer_owner, owner, "refused a runtime API connection from another user");
        }
    }
}

/// The user owning the client socket of the loopback connection `client` → `server`.
fn socket_owner(client: std::net::SocketAddr, server: std::net::SocketAddr) -> Option<u32> {
    match sock_diag_owner(client, server) {
        Ok(owner) => owner,
        Err(error) => {
            // A kernel without `inet_diag`, or a sandbox that forbids netlink.
            tracing::debug!(%error, "sock_diag is unavailable; reading /proc/net/tcp");
            proc_net_tcp_owner(client, server)
        }
    }
}

/// [`socket_owner`], asked of the kernel for that one socket (netlink `sock_diag`, a lookup
/// by its addresses): `None` if there is no such socket (it went away).
fn sock_diag_owner(
    client: std::net::SocketAddr,
    server: std::net::SocketAddr,
) -> std::io::Result<Option<u32>> {
    use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_sock_diag::SockDiagMessage;
    use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
    use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let request = InetRequest {
        family: if client.is_ipv4() { AF_INET } else { AF_INET6 },
        protocol: IPPROTO_TCP,
        extensions: ExtensionFlags::empty(),
        states: StateFlags::all(),
        socket_id: SocketId {
            source_port: client.port(),
            destination_port: server.port(),
            source_address: client.ip(),
            destination_address: server.ip(),
            interface_id: 0,
            // No cookie: the socket is found by its addresses.
            cookie: [0xff; 8],
        },
    };
    let mut message = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    message.finalize();
    let mut sent = vec![0; message.buffer_len()];
    message.serialize(&mut sent);

    let socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_SOCK_DIAG)?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    socket.send(&sent, 0)?;
    let mut received = vec![0; 1024];
    let length = socket.recv(&mut &mut received[..], 0)?;
    received.truncate(length);
    let answer =
        NetlinkMessage::<SockDiagMessage>::deserialize(&received).map_err(std::io::Error::other)?;
    match answer.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
            Ok(Some(response.header.uid))
        }
        NetlinkPayload::Error(error) if error.to_io().kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        NetlinkPayload::Error(error) => Err(error.to_io()),
        other => Err(std::io::Error::other(format!(
            "unexpected sock_diag answer {other:?}"
        ))),
    }
}

/// [`socket_owner`], found in `/proc/net/tcp`: milliseconds on a host with thousands of
/// sockets, so only where `sock_diag` is unavailable.
fn proc_net_tcp_owner(client: std::net::SocketAddr, server: std::net::SocketAddr) -> Option<u32> {
    let (std::net::SocketAddr::V4(client), std::net::SocketAddr::V4(server)) = (client, server)
    else {
        return None;
    };
    // The kernel prints an address as the u32 of its bytes in host order, then the port.
    let format = |address: std::net::SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(address.ip().octets()),
            address.port()
        )
    };
    let (client, server) = (format(client), format(server));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid ...
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&client.as_str()) && fields.get(2) == Some(&server.as_str()))
            .then(|| fields.get(7)?.parse().ok())
            .flatten()
    })
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
    current: Mutex<Current>,
    readiness: watch::Sender<Readiness>,
}

impl Shared {
    /// Leaves `Starting` for `to`; later changes are ignored.
    fn initialised(&self, to: Readiness) {
        self.readiness.send_if_modified(|readiness| {
            let first = *readiness == Readiness::Starting;
            if first {
                *readiness = to;
            }
            first
        });
    }
}

#[derive(Default)]
struct Current {
    invocation: Option<(RequestId, oneshot::Sender<Reply>)>,
    /// An `/init/error` posted before the first invocation was submitted; it answers that
    /// invocation.
    init_error: Option<Reply>,
}

impl RuntimeApi {
    /// Serves on a new loopback port. With `owner`, only connections from sockets of that
    /// user are served: other users' processes on the host (other functions' instances) may
    /// not take this instance's events nor answer for it.
    pub(crate) async fn start(owner: Option<u32>) -> std::io::Result<RuntimeApi> {
        let listener = OwnedBy {
            listener: TcpListener::bind("127.0.0.1:0").await?,
            owner,
        };
        let address = listener.listener.local_addr()?;
        let (events, receiver) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            events: tokio::sync::Mutex::new(receiver),
            current: Mutex::new(Current::default()),
            readiness: watch::Sender::new(Readiness::Starting),
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
        let server = tokio::spawn(serve(listener, app));
        Ok(RuntimeApi {
            address,
            events,
            shared,
            server,
        })
    }

    /// Follows the runtime through its init, without submitting an event.
    pub(crate) fn readiness(&self) -> watch::Receiver<Readiness> {
        self.shared.readiness.subscribe()
    }

    /// Queues `event` for the runtime and returns where its reply will arrive.
    pub(crate) async fn submit(&self, event: Event) -> Option<oneshot::Receiver<Reply>> {
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut current = lock(&self.shared.current);
            if let Some(init_error) = current.init_error.take() {
                let _ = reply_tx.send(init_error);
                return Some(reply_rx);
            }
            current.invocation = Some((event.request_id, reply_tx));
        }
        self.events.send(event).await.ok()?;
        Some(reply_rx)
    }
}

/// Serves each connection of the runtime on a task of its own, until aborted.
async fn serve(listener: OwnedBy, app: Router) {
    let builder = hyper::server::conn::http1::Builder::new();
    loop {
        let tcp = listener.accept().await;
        // Small request/response exchanges on kept-alive connections: never wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
        // A request's body wakes its own connection's task: see `Repoll`.
        tokio::spawn(async move {
            if let Err(error) = nimbus_core::repoll::Repoll::new(connection).await {
                tracing::debug!(%error, "a runtime API connection ended with an error");
            }
        });
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared.initialised(Readiness::Ready);
    let event = shared.events.lock().await.recv().await;
    let Some(event) = event else {
        return StatusCode::GONE.into_response();
    };
    let deadline_ms = SystemTime::now()
        .checked_add(event.timeout)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis());
    let _ = event.taken.send(Instant::now());

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
    match read_limited(body).await {
        Ok(bytes) => complete(&shared, &id, Reply::Response(bytes)),
        // The runtime went away mid-request; its exit ends the invocation.
        Err(BodyError::Broken) => StatusCode::BAD_REQUEST.into_response(),
        Err(BodyError::TooLarge) => {
            let refused = complete(&shared, &id, Reply::TooLarge);
            if refused.status() != StatusCode::ACCEPTED {
                return refused;
            }
            // As Lambda's Runtime API does, the runtime learns its response was refused.
            let message = format!(
                "Exceeded maximum allowed payload size ({} bytes).",
                limits::MAX_SYNC_PAYLOAD_BYTES
            );
            runtime_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &message,
            )
        }
    }
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
    shared.initialised(Readiness::InitFailed(error_type.clone()));
    let reply = Reply::InitError { error_type, body };
    let mut current = lock(&shared.current);
    match current.invocation.take() {
        Some((_, sender)) => {
            let _ = sender.send(reply);
        }
        None => current.init_error = Some(reply),
    }
    accepted()
}

fn complete(shared: &Shared, id: &str, reply: Reply) -> Response {
    let mut current = lock(&shared.current);
    let matches = current
        .invocation
        .as_ref()
        .is_some_and(|(request_id, _)| RequestId::parse(id).is_ok_and(|id| id == *request_id));
    if !matches {
        return runtime_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            &format!("Invalid request ID: {id}"),
        );
    }
    if let Some((_, sender)) = current.invocation.take() {
        let _ = sender.send(reply);
    }
    accepted()
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errorMessage": message, "errorType": error_type });
    (status, axum::Json(body)).into_response()
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

enum BodyError {
    TooLarge,
    Broken,
}

/// The body, up to the response payload limit.
async fn read_limited(body: Body) -> Result<Bytes, BodyError> {
    let limited = http_body_util::Limited::new(body, limits::MAX_SYNC_PAYLOAD_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Broken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_a_loopback_socket_is_its_user() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(server).unwrap();
        let client = client.local_addr().unwrap();
        let me = Some(rustix::process::getuid().as_raw());
        assert_eq!(sock_diag_owner(client, server).unwrap(), me);
        assert_eq!(proc_net_tcp_owner(client, server), me);
        // No such connection: no owner, rather than a guess.
        let elsewhere = std::net::SocketAddr::from(([127, 0, 0, 1], client.port() ^ 1));
        assert_eq!(sock_diag_owner(elsewhere, server).unwrap(), None);
        assert_eq!(proc_net_tcp_owner(elsewhere, server), None);
    }
}
