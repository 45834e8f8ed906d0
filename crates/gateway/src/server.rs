//! The HTTP server loop behind [`crate::serve`]: hyper with the read deadlines that
//! `axum::serve` does not set, so a client that sends its headers or its body slowly, or not
//! at all, loses its connection instead of holding it forever.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use nimbus_core::accept;
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tower::ServiceExt as _;

/// How long a client has to send a request's headers, counted from when the gateway starts
/// waiting for them (a new connection, or a kept-alive one going idle); hyper's own default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request body may take before the gateway gives up on it, extended by one
/// second per [`BODY_MIN_BYTES_PER_SEC`] bytes received.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The slowest upload that still completes: a client this fast always beats its deadline.
pub const BODY_MIN_BYTES_PER_SEC: u64 = 64 * 1024;

/// The server's read deadlines.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for the connections
/// to finish their requests in flight.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small request/response exchanges on kept-alive connections: never wait for Nagle.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let body_timeout = options.body_read_timeout;
        let service = TowerToHyperService::new(router.clone().map_request(
            move |request: axum::http::Request<Incoming>| {
                let mut request =
                    request.map(|body| Body::new(DeadlineBody::new(body, body_timeout)));
                // The peer's address is the `sourceIp` of HTTP trigger events.
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(tcp), service);
            if let Err(error) = nimbus_core::repoll::Repoll::new(watcher.watch(connection)).await {
                tracing::debug!(error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A failed accept: see [`nimbus_core::accept`].
async fn accept_failed(error: std::io::Error) {
    if accept::lost_one_connection(&error) {
        return;
    }
    tracing::warn!(%error, "cannot accept a connection; pausing accepts for a second");
    tokio::time::sleep(accept::PAUSE_AFTER_ACCEPT_ERROR).await;
}

/// A request body that fails once it has taken longer than its deadline, which each
/// received byte pushes back a little (see [`BODY_MIN_BYTES_PER_SEC`]).
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some(Ok(frame)) = &frame
                && let Some(data) = frame.data_ref()
            {
                let bytes = u64::try_from(data.len()).unwrap_or(u64::MAX);
                let earned =
                    Duration::from_micros(bytes.saturating_mul(1_000_000) / BODY_MIN_BYTES_PER_SEC);
                let later = this.deadline.deadline() + earned;
                this.deadline.as_mut().reset(later);
            }
            return Poll::Ready(frame.map(|frame| frame.map_err(axum::Error::new)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::debug!(timeout = ?this.timeout, "a request body arrived too slowly");
                Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the body did not arrive within its read deadline",
                )))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::post;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    use super::*;

    /// How long a test waits for the server to act on a deadline far shorter than this.
    const PATIENCE: Duration = Duration::from_secs(20);

    async fn start() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/",
            post(|body: Bytes| async move { body.len().to_string() }),
        );
        let options = ServeOptions {
            header_read_timeout: Duration::from_millis(300),
            body_read_timeout: Duration::from_millis(300),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(serve_with(listener, router, options, async move {
            let _ = stopped.await;
        }));
        (address, stop)
    }

    /// Everything the server sends until it closes the connection.
    async fn read_to_close(tcp: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the server kept the connection open");
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_prompt_request_is_served() {
        let (address, _stop) = start().await;
        let mut tcp = TcpStream::connect(address).await.unwrap();
        tcp.write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .await
        .unwrap();
        let answer = read_to_close(&mut tcp).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n5"), "{answer}");
    }

    #[tokio::test]
    async fn headers_that_never_end_lose_the_connection() {
        let (address, _stop) = start().await;
        let mut tcp = TcpStream::connect(address).await.unwrap();
        tcp.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut tcp).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn a_body_that_stalls_is_refused() {
        let (address, _stop) = start().await;
        let mut tcp = TcpStream::connect(address).await.unwrap();
        tcp.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly this")
            .await
            .unwrap();
        let answer = read_to_close(&mut tcp).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
}
