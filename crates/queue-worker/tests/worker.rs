//! The queue-worker's decisions, end to end in one process: a real SQLite store and queue,
//! the real DLQ service, and a scripted invoker standing in for functions (the invoker has
//! its own tests; the multi-process tests in nimbus-cli run real functions).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::error::ThrottleReason;
use nimbus_core::function::LATEST;
use nimbus_core::{
    Attempt, CodeSha256, DeadLetter, DeadLetterFilter, DeadLetterReason, DeadLetters, Error,
    EventInvokeConfig, FunctionConfig, FunctionError, FunctionName, InvocationRecord,
    InvocationStatus, InvokeOutcome, InvokeRequest, Invoker, RequestId, RetryPolicy,
};
use nimbus_dlq::DeadLetterService;
use nimbus_queue::{EventQueue, QueuedEvent, SqliteQueue, SqliteQueueConfig};
use nimbus_queue_worker::{CallbackNetworks, QueueWorker, WorkerConfig};
use nimbus_store::{RecordWriter, RecordWriterConfig, SqliteStore, Store};
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a test waits for an event to end before failing.
const PATIENCE: Duration = Duration::from_secs(20);
const RETRY_BASE: Duration = Duration::from_millis(100);

/// What the scripted function does on its n-th call (1-based) for a request.
type Behaviour = Box<dyn Fn(u32) -> Result<InvokeOutcome, Error> + Send + Sync>;

#[derive(Default)]
struct ScriptedInvoker {
    behaviours: Mutex<HashMap<String, Arc<Behaviour>>>,
    calls: Mutex<HashMap<RequestId, Vec<Instant>>>,
    payloads: Mutex<HashMap<String, Vec<Bytes>>>,
}

impl ScriptedInvoker {
    fn script(
        &self,
        function: &str,
        behaviour: impl Fn(u32) -> Result<InvokeOutcome, Error> + Send + Sync + 'static,
    ) {
        self.behaviours
            .lock()
            .unwrap()
            .insert(function.to_owned(), Arc::new(Box::new(behaviour)));
    }

    fn calls(&self, request_id: RequestId) -> Vec<Instant> {
        self.calls
            .lock()
            .unwrap()
            .get(&request_id)
            .cloned()
            .unwrap_or_default()
    }

    fn payloads(&self, function: &str) -> Vec<Bytes> {
        self.payloads
            .lock()
            .unwrap()
            .get(function)
            .cloned()
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Invoker for ScriptedInvoker {
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeOutcome, Error> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            let calls = calls.entry(request.request_id).or_default();
            calls.push(Instant::now());
            u32::try_from(calls.len()).unwrap()
        };
        let name = request.function.name.as_str().to_owned();
        self.payloads
            .lock()
            .unwrap()
            .entry(name.clone())
            .or_default()
            .push(request.payload);
        let behaviour = self.behaviours.lock().unwrap().get(&name).cloned();
        match behaviour {
            Some(behaviour) => behaviour(n),
            None => Ok(ok()),
        }
    }
}

fn ok() -> InvokeOutcome {
    outcome(r#"{"ok":true}"#, None)
}

fn failure(message: &str) -> InvokeOutcome {
    let document = format!(r#"{{"errorMessage":"{message}","errorType":"ValueError"}}"#);
    outcome(&document, Some(FunctionError::Unhandled))
}

fn outcome(payload: &str, function_error: Option<FunctionError>) -> InvokeOutcome {
    InvokeOutcome {
        payload: Bytes::from(payload.to_owned()),
        function_error,
        error_type: None,
        executed_version: LATEST.to_owned(),
        duration: Duration::from_millis(1),
        init_duration: None,
        max_memory_used_mb: 0,
        log_tail: None,
    }
}

struct Fixture {
    store: Arc<dyn Store>,
    queue: Arc<dyn EventQueue>,
    dead_letters: Arc<dyn DeadLetters>,
    invoker: Arc<ScriptedInvoker>,
    records: RecordWriter,
    worker: QueueWorker,
    stop: CancellationToken,
    running: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Self {
        Self::start_with(|dead_letters| dead_letters).await
    }

    /// Starts a worker whose DLQ client is `wrap` of the real one.
    async fn start_with(wrap: impl FnOnce(Arc<dyn DeadLetters>) -> Arc<dyn DeadLetters>) -> Self {
        let mut fixture = Self::build(wrap, Duration::from_secs(30), CallbackNetworks::Any).await;
        fixture.run_worker();
        fixture
    }

    /// Starts a worker that calls back public addresses only, as a deployed one does.
    async fn start_public_callbacks_only() -> Self {
        let mut fixture = Self::build(
            |dead_letters| dead_letters,
            Duration::from_secs(30),
            CallbackNetworks::PublicOnly,
        )
        .await;
        fixture.run_worker();
        fixture
    }

    /// Everything but the running worker (see [`run_worker`](Self::run_worker)).
    async fn build(
        wrap: impl FnOnce(Arc<dyn DeadLetters>) -> Arc<dyn DeadLetters>,
        visibility_timeout: Duration,
        callback_networks: CallbackNetworks,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store_url = format!("sqlite://{}", dir.path().join("store.db").display());
        let queue_url = format!("sqlite://{}", dir.path().join("queue.db").display());
        let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&store_url).await.unwrap());
        let queue: Arc<dyn EventQueue> = Arc::new(
            SqliteQueue::connect(&queue_url, SqliteQueueConfig { visibility_timeout })
                .await
                .unwrap(),
        );
        let dead_letters: Arc<dyn DeadLetters> =
            Arc::new(DeadLetterService::new(store.clone(), queue.clone()));
        let invoker = Arc::new(ScriptedInvoker::default());
        let records = RecordWriter::start(store.clone(), RecordWriterConfig::default());
        let config = WorkerConfig {
            max_inflight: 4,
            retry: RetryPolicy {
                function_error_base: RETRY_BASE,
                system_error_base: Duration::from_millis(20),
                system_error_max: Duration::from_millis(200),
            },
            claim_wait: Duration::from_millis(100),
            // The tests' callback servers listen on loopback.
            callback_networks,
            ..WorkerConfig::default()
        };
        let worker = QueueWorker::new(
            queue.clone(),
            invoker.clone(),
            wrap(dead_letters.clone()),
            store.clone(),
            records.clone(),
            config,
        );
        let stop = CancellationToken::new();
        let fixture = Self {
            store,
            queue,
            dead_letters,
            invoker,
            records,
            worker,
            stop,
            running: None,
            _dir: dir,
        };
        fixture.create_function("fn").await;
        fixture
    }

    fn run_worker(&mut self) {
        let worker = self.worker.clone();
        let stop = self.stop.clone();
        self.running = Some(tokio::spawn(async move { worker.run(stop).await }));
    }

    async fn create_function(&self, name: &str) {
        let zip = Bytes::from_static(b"zip");
        let code = CodeSha256::of(&zip);
        self.store.put_code(&code, zip).await.unwrap();
        self.store
            .create_function(&FunctionConfig {
                name: FunctionName::parse(name).unwrap(),
                runtime: "python3.12".parse().unwrap(),
                handler: Some("app.handler".into()),
                role: "arn:aws:iam::000000000000:role/nimbus".into(),
                description: String::new(),
                timeout_secs: 3,
                memory_mb: 128,
                environment: BTreeMap::new(),
                reserved_concurrency: None,
                code_sha256: code,
                code_size: 3,
                version: LATEST.into(),
                revision_id: RequestId::new().to_string(),
                last_modified: OffsetDateTime::now_utc(),
            })
            .await
            .unwrap();
    }

    async fn configure(&self, config: EventInvokeConfig) {
        self.store
            .put_event_invoke_config(&FunctionName::parse("fn").unwrap(), LATEST, &config)
            .await
            .unwrap();
    }

    async fn send(&self, function: &str, payload: &str) -> QueuedEvent {
        let event = QueuedEvent::new(
            RequestId::new(),
            FunctionName::parse(function).unwrap(),
            LATEST,
            Bytes::from(payload.to_owned()),
        );
        self.queue.enqueue(&event).await.unwrap();
        event
    }

    /// Waits until the event's record is terminal, and returns it.
    async fn finished(&self, request_id: RequestId) -> InvocationRecord {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(record) = self.records.get(&request_id).await.unwrap()
                && record.status.is_terminal()
            {
                return record;
            }
            assert!(
                Instant::now() < deadline,
                "{request_id} did not finish in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        if let Some(running) = self.running {
            running.await.unwrap();
        }
        self.records.shutdown().await;
        let stats = self.queue.stats().await.unwrap();
        assert_eq!(
            (stats.ready, stats.delayed, stats.in_flight),
            (0, 0, 0),
            "queue drained"
        );
    }
}

#[tokio::test]
async fn a_success_is_recorded_and_acked() {
    let f = Fixture::start().await;
    let event = f.send("fn", r#"{"n":1}"#).await;
    let record = f.finished(event.request_id).await;
    assert_eq!(record.status, InvocationStatus::Succeeded);
    assert_eq!(record.attempts, 1);
    assert_eq!(record.attempt_history.len(), 1);
    assert!(record.attempt_history[0].error_type.is_none());
    assert_eq!(
        f.invoker.payloads("fn"),
        [Bytes::from_static(br#"{"n":1}"#)]
    );
    // Counted once acked, which follows the record's commit: read after the drain.
    let worker = f.worker.clone();
    f.stop().await;
    assert_eq!(worker.stats().succeeded, 1);
}

#[tokio::test]
async fn failed_attempts_are_retried_with_growing_waits() {
    let f = Fixture::start().await;
    f.invoker.script("fn", |n| {
        Ok(if n <= 2 {
            failure(&format!("attempt {n}"))
        } else {
            ok()
        })
    });
    let event = f.send("fn", "{}").await;
    let record = f.finished(event.request_id).await;
    assert_eq!(record.status, InvocationStatus::Succeeded);
    assert_eq!(record.attempts, 3);
    let errors: Vec<_> = record
        .attempt_history
        .iter()
        .map(|a| a.error_message.clone())
        .collect();
    assert_eq!(
        errors,
        [Some("attempt 1".into()), Some("attempt 2".into()), None]
    );

    let calls = f.invoker.calls(event.request_id);
    let (first_wait, second_wait) = (calls[1] - calls[0], calls[2] - calls[1]);
    assert!(first_wait >= RETRY_BASE, "{first_wait:?}");
    assert!(second_wait >= RETRY_BASE * 2, "{second_wait:?}");
    assert!(
        second_wait > first_wait,
        "{first_wait:?} then {second_wait:?}"
    );
    assert_eq!(f.worker.stats().retried, 2);
    f.stop().await;
}

#[tokio::test]
async fn an_event_sent_to_an_alias_is_recorded_with_the_version_it_ran() {
    let f = Fixture::start().await;
    let name = FunctionName::parse("fn").unwrap();
    let latest = f.store.get_function(&name).await.unwrap().unwrap();
    let published = f
        .store
        .publish_version(&latest, "", &latest.revision_id)
        .await
        .unwrap();
    assert_eq!(published.version, "1");
    f.store
        .create_alias(&nimbus_core::Alias {
            function_name: name.clone(),
            name: "live".into(),
            function_version: "1".into(),
            description: String::new(),
            routing: BTreeMap::new(),
            revision_id: RequestId::new().to_string(),
        })
        .await
        .unwrap();
    f.invoker
        .script("fn", |n| Ok(failure(&format!("attempt {n}"))));

    let send = |qualifier: &str| {
        let event = QueuedEvent::new(
            RequestId::new(),
            name.clone(),
            qualifier,
            Bytes::from_static(b"{}"),
        );
        let queue = f.queue.clone();
        async move {
            queue.enqueue(&event).await.unwrap();
            event
        }
    };
    let to_alias = send("live").await;
    let record = f.finished(to_alias.request_id).await;
    assert_eq!(record.status, InvocationStatus::DeadLettered);
    assert_eq!(record.attempts, 3);
    assert_eq!(
        record.function_version, "1",
        "the alias' version, not its name"
    );
    // A qualifier that names nothing never ran: the record keeps it as it was sent.
    let to_nothing = send("gone").await;
    let record = f.finished(to_nothing.request_id).await;
    assert_eq!(record.error_type.as_deref(), Some("FunctionNotFound"));
    assert_eq!(record.function_version, "gone");
    f.stop().await;
}

#[tokio::test]
async fn an_always_failing_event_is_dead_lettered_after_three_attempts() {
    let f = Fixture::start().await;
    f.invoker
        .script("fn", |n| Ok(failure(&format!("attempt {n}"))));
    let event = f.send("fn", r#"{"k":"v"}"#).await;
    let record = f.finished(event.request_id).await;
    assert_eq!(record.status, InvocationStatus::DeadLettered);
    assert_eq!(record.attempts, 3);

    let letter = f.dead_letters.get(event.request_id).await.unwrap();
    assert_eq!(letter.reason, DeadLetterReason::RetriesExhausted);
    assert_eq!(letter.payload, event.payload);
    let errors: Vec<_> = letter
        .attempts
        .iter()
        .map(|a| a.error_message.clone().unwrap())
        .collect();
    assert_eq!(errors, ["attempt 1", "attempt 2", "attempt 3"]);
    assert!(
        letter
            .attempts
            .iter()
            .all(|a| a.error_type.as_deref() == Some("ValueError"))
    );
    assert_eq!(f.invoker.calls(event.request_id).len(), 3);
    f.stop().await;
}

#[tokio::test]
async fn zero_retries_dead_letters_after_one_attempt() {
    let f = Fixture::start().await;
    f.configure(EventInvokeConfig {
        maximum_retry_attempts: Some(0),
        ..EventInvokeConfig::empty()
    })
    .await;
    f.invoker.script("fn", |_| Ok(failure("no")));
    let event = f.send("fn", "{}").await;
    let record = f.finished(event.request_id).await;
    assert_eq!(
        (record.status, record.attempts),
        (InvocationStatus::DeadLettered, 1)
    );
    let letter = f.dead_letters.get(event.request_id).await.unwrap();
    assert_eq!(letter.attempts.len(), 1);
    f.stop().await;
}

#[tokio::test]
async fn a_retry_past_the_maximum_age_dead_letters_at_once() {
    let f = Fixture::start().await;
    f.configure(EventInvokeConfig {
        maximum_event_age_secs: Some(60),
        ..EventInvokeConfig::empty()
    })
    .await;
    f.invoker.script("fn", |_| Ok(failure("no")));
    // Accepted 59.95 s ago: the first retry (100 ms away) would be past the 60 s age.
    let mut event = QueuedEvent::new(
        RequestId::new(),
        FunctionName::parse("fn").unwrap(),
        LATEST,
        Bytes::from_static(b"{}"),
    );
    event.enqueued_at = OffsetDateTime::now_utc() - time::Duration::milliseconds(59_950);
    f.queue.enqueue(&event).await.unwrap();
    let record = f.finished(event.request_id).await;
    assert_eq!(record.status, InvocationStatus::DeadLettered);
    let letter = f.dead_letters.get(event.request_id).await.unwrap();
    assert_eq!(letter.reason, DeadLetterReason::EventAgeExceeded);
    assert_eq!(letter.attempts.len(), 1);
    f.stop().await;
}

#[tokio::test]
async fn an_event_older_than_its_maximum_age_is_not_run() {
    let f = Fixture::start().await;
    let mut event = QueuedEvent::new(
        RequestId::new(),
        FunctionName::parse("fn").unwrap(),
        LATEST,
        Bytes::from_static(b"{}"),
    );
    event.enqueued_at = OffsetDateTime::now_utc() - time::Duration::hours(7);
    f.queue.enqueue(&event).await.unwrap();
    let record = f.finished(event.request_id).await;
    assert_eq!(record.status, InvocationStatus::DeadLettered);
    assert_eq!(record.error_type.as_deref(), Some("EventAgeExceeded"));
    assert!(f.invoker.calls(event.request_id).is_empty());
    let letter = f.dead_letters.get(event.request_id).await.unwrap();
    assert_eq!(
        (letter.reason, letter.attempts.len()),
        (DeadLetterReason::EventAgeExceeded, 0)
    );
    f.stop().await;
}

#[tokio::test]
async fn throttles_back_off_without_spending_attempts() {
    let f = Fixture::start().await;
    f.configure(EventInvokeConfig {
        maximum_retry_attempts: Some(0),
        ..EventInvokeConfig::empty()
    })
    .await;
    f.invoker.script("fn", |n| match n {
        1..=3 => Err(Error::TooManyRequests(ThrottleReason::FunctionConcurrency)),
        4 => Err(Error::Service("invoker unreachable".into())),
        _ => Ok(ok()),
    });
    let event = f.send("fn", "{}").await;
    let record = f.finished(event.request_id).await;
    assert_eq!(record.status, InvocationStatus::Succeeded);
    assert_eq!(record.attempts, 1, "throttles spent no attempt");
    let calls = f.invoker.calls(event.request_id);
    assert_eq!(calls.len(), 5);
    // 20, 40, 80, 160 ms: each back-off at least doubles.
    for (n, pair) in calls.windows(2).enumerate() {
        let wait = pair[1] - pair[0];
        assert!(wait >= Duration::from_millis(20 << n), "wait {n}: {wait:?}");
    }
    assert_eq!(f.worker.stats().backed_off, 4);
    f.stop().await;
}

#[tokio::test]
async fn an_event_for_a_deleted_function_is_dead_lettered() {
    let f = Fixture::start().await;
    let event = f.send("gone", "{}").await;
    let record = f.finished(event.request_id).await;
    assert_eq!(record.status, InvocationStatus::DeadLettered);
    let letter = f.dead_letters.get(event.request_id).await.unwrap();
    assert_eq!(letter.reason, DeadLetterReason::FunctionNotFound);
    f.stop().await;
}

#[tokio::test]
async fn destinations_receive_the_invocation_record() {
    let f = Fixture::start().await;
    f.create_function("audit").await;
    f.create_function("alarm").await;
    f.configure(EventInvokeConfig {
        maximum_retry_attempts: Some(0),
        on_success: Some("arn:aws:lambda:us-east-1:000000000000:function:audit".into()),
        on_failure: Some("arn:aws:lambda:us-east-1:000000000000:function:alarm".into()),
        ..EventInvokeConfig::empty()
    })
    .await;
    f.invoker.script("fn", |_| Ok(ok()));
    let good = f.send("fn", r#"{"good":true}"#).await;
    f.finished(good.request_id).await;
    f.invoker.script("fn", |_| Ok(failure("bad")));
    let bad = f.send("fn", r#"{"good":false}"#).await;
    f.finished(bad.request_id).await;

    let deadline = Instant::now() + PATIENCE;
    while f.invoker.payloads("audit").is_empty() || f.invoker.payloads("alarm").is_empty() {
        assert!(Instant::now() < deadline, "destinations not invoked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let audit: serde_json::Value = serde_json::from_slice(&f.invoker.payloads("audit")[0]).unwrap();
    assert_eq!(
        audit["requestContext"]["requestId"],
        good.request_id.to_string()
    );
    assert_eq!(audit["requestContext"]["condition"], "Success");
    assert_eq!(audit["requestPayload"]["good"], true);
    assert_eq!(audit["responsePayload"]["ok"], true);
    let alarm: serde_json::Value = serde_json::from_slice(&f.invoker.payloads("alarm")[0]).unwrap();
    assert_eq!(alarm["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(alarm["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(alarm["responseContext"]["functionError"], "Unhandled");
    assert_eq!(alarm["responsePayload"]["errorMessage"], "bad");
    f.stop().await;
}

#[tokio::test]
async fn a_callback_url_gets_the_record_with_retries() {
    use axum::http::StatusCode;
    let received = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let received = received.clone();
            move |body: axum::body::Bytes| async move {
                let mut received = received.lock().unwrap();
                received.push(serde_json::from_slice(&body).unwrap());
                // The first POST fails; the worker must try again.
                if received.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let f = Fixture::start().await;
    let mut event = QueuedEvent::new(
        RequestId::new(),
        FunctionName::parse("fn").unwrap(),
        LATEST,
        Bytes::from_static(b"{}"),
    );
    event.callback_url = Some(url);
    f.queue.enqueue(&event).await.unwrap();
    f.finished(event.request_id).await;
    let deadline = Instant::now() + PATIENCE;
    while received.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "callback not retried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let record = received.lock().unwrap()[1].clone();
    assert_eq!(
        record["requestContext"]["requestId"],
        event.request_id.to_string()
    );
    assert_eq!(record["requestContext"]["condition"], "Success");
    assert_eq!(f.worker.stats().callbacks_failed, 0);
    f.stop().await;
}

#[tokio::test]
async fn callbacks_to_private_addresses_are_refused_by_default() {
    let hits = Arc::new(Mutex::new(0_u32));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let hits = hits.clone();
            move || async move {
                *hits.lock().unwrap() += 1;
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let f = Fixture::start_public_callbacks_only().await;
    // By address, and by a name that resolves to it.
    let urls = [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://localhost:{port}/hook"),
    ];
    for url in &urls {
        let mut event = QueuedEvent::new(
            RequestId::new(),
            FunctionName::parse("fn").unwrap(),
            LATEST,
            Bytes::from_static(b"{}"),
        );
        event.callback_url = Some(url.clone());
        f.queue.enqueue(&event).await.unwrap();
        let record = f.finished(event.request_id).await;
        assert_eq!(record.status, InvocationStatus::Succeeded, "{url}");
    }
    let worker = f.worker.clone();
    // Stopping waits for the callbacks still being sent.
    f.stop().await;
    assert_eq!(worker.stats().callbacks_failed, 2);
    assert_eq!(
        *hits.lock().unwrap(),
        0,
        "a refused callback reached the server"
    );
}

/// A DLQ service that refuses the first `refusals` letters.
struct FlakyDeadLetters {
    inner: Arc<dyn DeadLetters>,
    refusals: Mutex<u32>,
}

#[async_trait::async_trait]
impl DeadLetters for FlakyDeadLetters {
    async fn put(&self, letter: nimbus_core::DeadLetter) -> Result<(), Error> {
        {
            let mut refusals = self.refusals.lock().unwrap();
            if *refusals > 0 {
                *refusals -= 1;
                return Err(Error::Service("DLQ service unreachable".into()));
            }
        }
        self.inner.put(letter).await
    }
    async fn list(
        &self,
        filter: DeadLetterFilter,
        after: Option<nimbus_core::Cursor>,
        limit: usize,
    ) -> Result<nimbus_core::DeadLetterPage, Error> {
        self.inner.list(filter, after, limit).await
    }
    async fn get(&self, request_id: RequestId) -> Result<nimbus_core::DeadLetter, Error> {
        self.inner.get(request_id).await
    }
    async fn redrive(
        &self,
        selection: nimbus_core::Selection,
    ) -> Result<Vec<nimbus_core::Redriven>, Error> {
        self.inner.redrive(selection).await
    }
    async fn purge(&self, selection: nimbus_core::Selection) -> Result<u64, Error> {
        self.inner.purge(selection).await
    }
}

#[tokio::test]
async fn an_unreachable_dlq_delays_the_ack_but_never_reruns_a_spent_event() {
    let f = Fixture::start_with(|inner| {
        Arc::new(FlakyDeadLetters {
            inner,
            refusals: Mutex::new(2),
        })
    })
    .await;
    f.invoker.script("fn", |_| Ok(failure("no")));
    let event = f.send("fn", "{}").await;
    let record = f.finished(event.request_id).await;
    assert_eq!(record.status, InvocationStatus::DeadLettered);
    assert_eq!(
        f.invoker.calls(event.request_id).len(),
        3,
        "no attempt after the third"
    );
    assert_eq!(
        f.dead_letters
            .get(event.request_id)
            .await
            .unwrap()
            .attempts
            .len(),
        3
    );
    f.stop().await;
}

/// A worker that stored an event's end (its final record, or its dead letter) and died
/// before acking it: the event comes back after the visibility timeout, and is acked
/// without running again, its record final.
#[tokio::test]
async fn a_redelivered_event_that_had_already_ended_is_acked_not_run_again() {
    let mut f = Fixture::build(
        |dead_letters| dead_letters,
        Duration::from_millis(200),
        CallbackNetworks::Any,
    )
    .await;
    let succeeded = f.send("fn", "{}").await;
    let dead_lettered = f.send("fn", "{}").await;
    let claimed = f
        .queue
        .claim("died", 2, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let mut record = succeeded.record(InvocationStatus::Succeeded);
    record.attempts = 1;
    f.store.put_invocations(&[record]).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let attempt = Attempt {
        started_at: now,
        finished_at: now,
        error_type: Some("Unhandled".into()),
        error_message: Some("no".into()),
    };
    f.dead_letters
        .put(DeadLetter {
            request_id: dead_lettered.request_id,
            function_name: dead_lettered.function_name.clone(),
            qualifier: LATEST.into(),
            payload: dead_lettered.payload.clone(),
            attempts: vec![attempt.clone(), attempt.clone(), attempt],
            reason: DeadLetterReason::RetriesExhausted,
            enqueued_at: dead_lettered.enqueued_at,
            dead_lettered_at: now,
            redrive: None,
        })
        .await
        .unwrap();

    f.run_worker();
    let record = f.finished(dead_lettered.request_id).await;
    assert_eq!(record.status, InvocationStatus::DeadLettered);
    assert_eq!(record.attempt_history.len(), 3);
    assert_eq!(
        f.finished(succeeded.request_id).await.status,
        InvocationStatus::Succeeded
    );
    assert!(f.invoker.calls(succeeded.request_id).is_empty());
    assert!(f.invoker.calls(dead_lettered.request_id).is_empty());
    assert_eq!(f.worker.stats().redelivered, 2);
    f.stop().await;
}
