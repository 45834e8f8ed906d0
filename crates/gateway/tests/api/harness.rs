//! A real gateway on a loopback port, over a real SQLite store and a real SQLite event queue
//! in a temporary folder, with an in-test invoker whose behaviour each function's name picks
//! and an in-memory stand-in for the DLQ service (the real one has its own tests). Stops when
//! dropped.

use std::io::{Cursor, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use nimbus_core::error::ThrottleReason;
use nimbus_core::invocation::error_document;
use nimbus_core::{
    Cursor as PageCursor, DeadLetter, DeadLetterFilter, DeadLetterPage, DeadLetters, Error,
    FunctionError, InvokeOutcome, InvokeRequest, Invoker, RedriveMark, Redriven, RequestId,
    Selection,
};
use nimbus_gateway::{AppState, GatewayConfig};
use nimbus_queue::{EventQueue, QueueStats, QueuedEvent, SqliteQueue, SqliteQueueConfig};
use nimbus_store::{RecordWriter, RecordWriterConfig, Store};
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
            executed_version: request.function.version.clone(),
            duration: Duration::from_millis(7),
            init_duration: None,
            max_memory_used_mb: 20,
            log_tail: request
                .want_log_tail
                .then(|| format!("START RequestId: {id} Version: $LATEST\nEND RequestId: {id}\n")),
        })
    }
}

/// The DLQ service as the gateway sees it, over a list in memory: enough to drive every
/// dead-letter route. Redriving only marks the letter (the real service also re-queues it).
#[derive(Default)]
pub(crate) struct TestDeadLetters {
    letters: Mutex<Vec<DeadLetter>>,
}

impl TestDeadLetters {
    pub(crate) fn all(&self) -> Vec<DeadLetter> {
        self.letters.lock().unwrap().clone()
    }

    fn matches(filter: &DeadLetterFilter, letter: &DeadLetter) -> bool {
        filter
            .function_name
            .as_ref()
            .is_none_or(|name| *name == letter.function_name)
            && filter
                .since
                .is_none_or(|since| letter.dead_lettered_at >= since)
            && filter
                .until
                .is_none_or(|until| letter.dead_lettered_at < until)
    }

    fn selected(selection: &Selection, letter: &DeadLetter) -> bool {
        match selection {
            Selection::One(id) => letter.request_id == *id,
            Selection::Matching(filter) => Self::matches(filter, letter),
        }
    }
}

fn not_found(id: RequestId) -> Error {
    Error::ResourceNotFound(format!("Dead letter not found: {id}"))
}

#[async_trait::async_trait]
impl DeadLetters for TestDeadLetters {
    async fn put(&self, letter: DeadLetter) -> nimbus_core::Result<()> {
        let mut letters = self.letters.lock().unwrap();
        if !letters.iter().any(|l| l.request_id == letter.request_id) {
            letters.push(letter);
            // Oldest first, as the service walks them.
            letters.sort_by_key(|l| (l.dead_lettered_at, l.request_id));
        }
        Ok(())
    }

    async fn list(
        &self,
        filter: DeadLetterFilter,
        after: Option<PageCursor>,
        limit: usize,
    ) -> nimbus_core::Result<DeadLetterPage> {
        let limit = limit.min(nimbus_core::dead_letter::MAX_DEAD_LETTER_PAGE);
        let key = |l: &DeadLetter| (l.dead_lettered_at, l.request_id);
        let mut letters: Vec<DeadLetter> = self
            .all()
            .into_iter()
            .filter(|l| Self::matches(&filter, l))
            .filter(|l| after.is_none_or(|c| key(l) > (c.at, c.request_id)))
            .collect();
        letters.sort_by_key(key);
        let next = (letters.len() > limit).then(|| {
            let last = &letters[limit - 1];
            PageCursor {
                at: last.dead_lettered_at,
                request_id: last.request_id,
            }
        });
        letters.truncate(limit);
        Ok(DeadLetterPage { letters, next })
    }

    async fn get(&self, request_id: RequestId) -> nimbus_core::Result<DeadLetter> {
        self.all()
            .into_iter()
            .find(|l| l.request_id == request_id)
            .ok_or_else(|| not_found(request_id))
    }

    async fn redrive(&self, selection: Selection) -> nimbus_core::Result<Vec<Redriven>> {
        let mut letters = self.letters.lock().unwrap();
        if let Selection::One(id) = selection {
            let letter = letters
                .iter()
                .find(|l| l.request_id == id)
                .ok_or_else(|| not_found(id))?;
            if letter.redrive.is_some() {
                return Err(Error::ResourceConflict(format!(
                    "Dead letter {id} was redriven already"
                )));
            }
        }
        let mut redriven = Vec::new();
        for letter in letters.iter_mut() {
            if Self::selected(&selection, letter) && letter.redrive.is_none() {
                let mark = RedriveMark {
                    at: time::OffsetDateTime::now_utc(),
                    request_id: RequestId::new(),
                };
                letter.redrive = Some(mark);
                redriven.push(Redriven {
                    original: letter.request_id,
                    request_id: mark.request_id,
                });
            }
        }
        Ok(redriven)
    }

    async fn purge(&self, selection: Selection) -> nimbus_core::Result<u64> {
        let mut letters = self.letters.lock().unwrap();
        let before = letters.len();
        letters.retain(|l| !Self::selected(&selection, l));
        Ok((before - letters.len()) as u64)
    }
}

/// A queue that is down: every call fails.
pub(crate) struct BrokenQueue;

#[async_trait::async_trait]
impl EventQueue for BrokenQueue {
    async fn enqueue(&self, _: &QueuedEvent) -> nimbus_queue::Result<()> {
        Err(nimbus_queue::Error::Config("the queue is down".into()))
    }

    async fn claim(
        &self,
        _: &str,
        _: usize,
        _: Duration,
    ) -> nimbus_queue::Result<Vec<nimbus_queue::Delivery>> {
        Err(nimbus_queue::Error::Config("the queue is down".into()))
    }

    async fn touch(&self, _: &str, _: &nimbus_queue::Delivery) -> nimbus_queue::Result<bool> {
        Err(nimbus_queue::Error::Config("the queue is down".into()))
    }

    async fn ack(&self, _: &nimbus_queue::Delivery) -> nimbus_queue::Result<()> {
        Err(nimbus_queue::Error::Config("the queue is down".into()))
    }

    async fn retry_later(
        &self,
        _: &nimbus_queue::Delivery,
        _: &QueuedEvent,
        _: time::OffsetDateTime,
    ) -> nimbus_queue::Result<()> {
        Err(nimbus_queue::Error::Config("the queue is down".into()))
    }

    async fn stats(&self) -> nimbus_queue::Result<QueueStats> {
        Err(nimbus_queue::Error::Config("the queue is down".into()))
    }
}

pub(crate) struct Gateway {
    pub url: String,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub invoker: Arc<TestInvoker>,
    /// The queue the gateway writes to (unused when it was started with another one).
    pub queue: Arc<SqliteQueue>,
    pub store: Arc<dyn Store>,
    /// The store's `sqlite://` URL, for a test that reaches under the gateway.
    pub database_url: String,
    pub dead_letters: Arc<TestDeadLetters>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _data: tempfile::TempDir,
}

impl Gateway {
    pub(crate) async fn start() -> Self {
        Self::start_with(None, RecordWriterConfig::default()).await
    }

    /// A gateway whose event queue is `queue` instead of the harness' SQLite one.
    pub(crate) async fn start_with_queue(queue: Arc<dyn EventQueue>) -> Self {
        Self::start_with(Some(queue), RecordWriterConfig::default()).await
    }

    pub(crate) async fn start_with(
        queue: Option<Arc<dyn EventQueue>>,
        records: RecordWriterConfig,
    ) -> Self {
        Self::start_full(queue, records, GatewayConfig::default()).await
    }

    /// A gateway with `config` (its keys, its limits).
    pub(crate) async fn start_configured(config: GatewayConfig) -> Self {
        Self::start_full(None, RecordWriterConfig::default(), config).await
    }

    /// A gateway with every part chosen: its queue (`None`: the harness' SQLite one), its
    /// record writer's settings and its configuration.
    pub(crate) async fn start_full(
        queue: Option<Arc<dyn EventQueue>>,
        records: RecordWriterConfig,
        config: GatewayConfig,
    ) -> Self {
        let data = tempfile::tempdir().unwrap();
        let database = format!("sqlite://{}", data.path().join("nimbus.db").display());
        let store = nimbus_store::connect(&database).await.unwrap();
        let records = RecordWriter::start(store.clone(), records);
        let invoker = Arc::new(TestInvoker::default());
        let sqlite_queue = Arc::new(
            SqliteQueue::connect(
                &format!("sqlite://{}", data.path().join("queue.db").display()),
                SqliteQueueConfig {
                    visibility_timeout: Duration::from_secs(60),
                },
            )
            .await
            .unwrap(),
        );
        let dead_letters = Arc::new(TestDeadLetters::default());
        let state = AppState::new(
            store.clone(),
            invoker.clone(),
            queue.unwrap_or_else(|| sqlite_queue.clone()),
            dead_letters.clone(),
            records,
            config,
        );
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
            queue: sqlite_queue,
            store,
            database_url: database,
            dead_letters,
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

    pub(crate) async fn post(&self, path: &str) -> Answer {
        self.send(self.http.post(self.url(path))).await
    }

    /// Every event waiting in the harness' queue, claimed (and so taken out of view).
    pub(crate) async fn take_queued(&self) -> Vec<QueuedEvent> {
        self.queue
            .claim("test", 1000, Duration::ZERO)
            .await
            .unwrap()
            .into_iter()
            .map(|delivery| delivery.event)
            .collect()
    }

    /// How many events wait in the harness' queue.
    pub(crate) async fn queued(&self) -> u64 {
        let stats = self.queue.stats().await.unwrap();
        stats.ready + stats.delayed + stats.in_flight
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
