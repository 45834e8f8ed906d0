//! A real gateway on a loopback port, over a real SQLite store in a temporary folder, with an
//! in-test invoker whose behaviour each function's name picks. Stops when dropped.

use std::io::{Cursor, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use nimbus_core::error::ThrottleReason;
use nimbus_core::function::LATEST;
use nimbus_core::invocation::error_document;
use nimbus_core::{Error, FunctionError, InvokeOutcome, InvokeRequest, Invoker, RequestId};
use nimbus_gateway::{AppState, GatewayConfig};
use nimbus_store::{RecordWriter, RecordWriterConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub(crate) const FUNCTIONS: &str = "/2015-03-31/functions";

/// Functions named `fail-*` fail, `throttle-*` are throttled, `wait-*` echo once released,
/// all others echo their payload at once.
#[derive(Default)]
pub(crate) struct TestInvoker {
    requests: Mutex<Vec<InvokeRequest>>,
    started: Notify,
    release: Notify,
}

impl TestInvoker {
    pub(crate) fn calls(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub(crate) fn last(&self) -> InvokeRequest {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the invoker was called")
    }

    /// Waits until a `wait-*` function has started.
    pub(crate) async fn started(&self) {
        self.started.notified().await;
    }

    /// Lets a waiting `wait-*` function finish.
    pub(crate) fn release(&self) {
        self.release.notify_one();
    }
}

#[async_trait::async_trait]
impl Invoker for TestInvoker {
    async fn invoke(&self, request: InvokeRequest) -> nimbus_core::Result<InvokeOutcome> {
        self.requests.lock().unwrap().push(request.clone());
        let name = request.function.name.as_str();
        if name.starts_with("wait-") {
            self.started.notify_one();
            self.release.notified().await;
        }
        if name.starts_with("throttle-") {
            return Err(Error::TooManyRequests(ThrottleReason::FunctionConcurrency));
        }
        let (payload, function_error, error_type) = if name.starts_with("fail-") {
            (
                error_document("ValueError", "the function failed"),
                Some(FunctionError::Unhandled),
                Some("ValueError".to_owned()),
            )
        } else {
            (request.payload.clone(), None, None)
        };
        let id = request.request_id;
        Ok(InvokeOutcome {
            payload,
            function_error,
            error_type,
            executed_version: LATEST.to_owned(),
            duration: Duration::from_millis(7),
            init_duration: None,
            max_memory_used_mb: 20,
            log_tail: request
                .want_log_tail
                .then(|| format!("START RequestId: {id} Version: $LATEST\nEND RequestId: {id}\n")),
        })
    }
}

pub(crate) struct Gateway {
    pub url: String,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub invoker: Arc<TestInvoker>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _data: tempfile::TempDir,
}

impl Gateway {
    pub(crate) async fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let database = format!("sqlite://{}", data.path().join("nimbus.db").display());
        let store = nimbus_store::connect(&database).await.unwrap();
        let records = RecordWriter::start(store.clone(), RecordWriterConfig::default());
        let invoker = Arc::new(TestInvoker::default());
        let state = AppState::new(store, invoker.clone(), records, GatewayConfig::default());
        // Bound before serving, so requests queue until the server takes them.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(nimbus_gateway::serve(
            listener,
            nimbus_gateway::router(state),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            url: format!("http://{addr}"),
            addr,
            http: reqwest::Client::new(),
            invoker,
            shutdown: Some(shutdown),
            server: Some(server),
            _data: data,
        }
    }

    /// Asks the server to shut down.
    pub(crate) fn begin_stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Waits until `serve` has returned.
    pub(crate) async fn stopped(&mut self) -> std::io::Result<()> {
        match self.server.take() {
            Some(server) => server.await.unwrap(),
            None => Ok(()),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Sends a request and checks that the answer carries a request id, as every answer must.
    pub(crate) async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        let request_id = headers
            .get("x-amzn-RequestId")
            .unwrap_or_else(|| panic!("no x-amzn-RequestId on a {status} answer"))
            .to_str()
            .unwrap()
            .to_owned();
        RequestId::parse(&request_id).unwrap();
        Answer {
            status,
            headers,
            body,
            request_id,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(self.url(path))).await
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub(crate) async fn put_json(&self, path: &str, body: &Value) -> Answer {
        self.send(self.http.put(self.url(path)).json(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Answer {
        self.send(self.http.delete(self.url(path))).await
    }

    /// Creates a Python function with the default settings and a small zip.
    pub(crate) async fn create(&self, name: &str) -> Value {
        let answer = self.post_json(FUNCTIONS, &create_body(name)).await;
        assert_eq!(answer.status, 201, "{}", answer.text());
        answer.json()
    }

    pub(crate) async fn invoke(&self, name: &str, payload: &'static str) -> Answer {
        let url = self.url(&format!("{FUNCTIONS}/{name}/invocations"));
        self.send(self.http.post(url).body(payload)).await
    }

    /// Writes `head` and then `body` on a fresh connection and reads one answer: for requests
    /// an HTTP client would not send the way the test needs.
    pub(crate) async fn raw(&self, head: &str, body: &[u8]) -> Answer {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        // The requests sent this way are never complete: a gateway that waits for the rest
        // would wait forever, so that is a failure, not a hang.
        tokio::time::timeout(Duration::from_secs(30), read_answer(&mut stream))
            .await
            .expect("the gateway answered without waiting for the rest of the request")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Reads one HTTP/1.1 answer with a `Content-Length` (all the gateway's answers have one).
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "connection closed before an answer");
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap();
        headers.append(
            reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            value.trim().parse().unwrap(),
        );
    }
    let length: usize = headers["content-length"].to_str().unwrap().parse().unwrap();
    while buffer.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(read > 0, "connection closed inside an answer");
        buffer.extend_from_slice(&chunk[..read]);
    }
    let request_id = headers["x-amzn-requestid"].to_str().unwrap().to_owned();
    Answer {
        status,
        headers,
        body: Bytes::copy_from_slice(&buffer[head_end..head_end + length]),
        request_id,
    }
}

pub(crate) struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
    pub request_id: String,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Checks a Lambda-shaped error: status, `x-amzn-ErrorType`, and a JSON body with `Type`
    /// and a message. Returns the message.
    pub(crate) fn assert_error(&self, status: u16, error_type: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.header("x-amzn-ErrorType"), Some(error_type));
        let body = self.json();
        assert_eq!(body["Type"], "User", "{body}");
        body.get("Message")
            .or_else(|| body.get("message"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no message in {body}"))
            .to_owned()
    }
}

pub(crate) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, body) in entries {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(body).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn handler_zip() -> Vec<u8> {
    zip_of(&[(
        "index.py",
        b"def handler(event, context):\n    return event\n",
    )])
}

pub(crate) fn create_body(name: &str) -> Value {
    json!({
        "FunctionName": name,
        "Runtime": "python3.12",
        "Handler": "index.handler",
        "Code": { "ZipFile": base64(&handler_zip()) },
    })
}
