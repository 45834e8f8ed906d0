//! One suite, every backend: the embedded SQLite store and Postgres (a fresh database per
//! test, on the server `NIMBUS_TEST_DATABASE_URL` names) must behave the same.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::function::LATEST;
use nimbus_core::{
    Alias, Attempt, AuthType, CodeSha256, Cors, Cursor, DeadLetter, DeadLetterFilter,
    DeadLetterReason, EventInvokeConfig, FunctionConfig, FunctionName, FunctionUrlConfig,
    HttpRoute, InvocationFilter, InvocationRecord, InvocationStatus, InvocationType, InvokeMode,
    ProvisionedConcurrencyConfig, ProvisionedStatus, RedriveMark, RequestId, RoutePath, Runtime,
};
use nimbus_store::{Error, RecordWriter, RecordWriterConfig, Store};
use sqlx::Connection as _;
use time::macros::datetime;
use time::{OffsetDateTime, UtcOffset};

/// A store under test, with whatever must outlive it.
struct Backend {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    database: Option<(String, String)>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.database.take() {
            // Best effort: a leftover test database is harmless.
            let _ = std::thread::spawn(move || {
                tokio::runtime::Runtime::new().unwrap().block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nested/nimbus.db").display());
    Backend {
        store: nimbus_store::connect(&url).await.unwrap(),
        _dir: Some(dir),
        database: None,
    }
}

async fn postgres() -> Backend {
    let admin = std::env::var("NIMBUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("nimbus_store_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    Backend {
        store: nimbus_store::connect(&url).await.unwrap(),
        _dir: None,
        database: Some((admin, name)),
    }
}

fn function(name: &str, code: &CodeSha256) -> FunctionConfig {
    FunctionConfig {
        name: FunctionName::parse(name).unwrap(),
        runtime: "python3.12".parse::<Runtime>().unwrap(),
        handler: Some("app.handler".to_owned()),
        role: "arn:aws:iam::000000000000:role/nimbus".to_owned(),
        description: "a test function".to_owned(),
        timeout_secs: 3,
        memory_mb: 128,
        environment: BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]),
        reserved_concurrency: None,
        code_sha256: *code,
        code_size: 3,
        version: LATEST.to_owned(),
        revision_id: uuid::Uuid::new_v4().to_string(),
        last_modified: OffsetDateTime::now_utc()
            .replace_nanosecond(123_456_000)
            .unwrap(),
    }
}

async fn with_code(store: &dyn Store) -> CodeSha256 {
    let zip = Bytes::from_static(b"zip");
    let sha = CodeSha256::of(&zip);
    store.put_code(&sha, zip).await.unwrap();
    sha
}

fn record(status: InvocationStatus) -> InvocationRecord {
    let now = OffsetDateTime::now_utc().replace_nanosecond(7_000).unwrap();
    InvocationRecord {
        request_id: RequestId::new(),
        function_name: FunctionName::parse("f").unwrap(),
        function_version: LATEST.to_owned(),
        invocation_type: InvocationType::RequestResponse,
        status,
        attempts: 1,
        created_at: now,
        started_at: Some(now),
        finished_at: status.is_terminal().then_some(now),
        duration_ms: Some(12.5),
        error_type: Some("ValueError".to_owned()),
        error_message: Some("bad".to_owned()),
        attempt_history: Vec::new(),
        redrive_of: None,
    }
}

fn name(name: &str) -> FunctionName {
    FunctionName::parse(name).unwrap()
}

fn attempt(at: OffsetDateTime, error: Option<&str>) -> Attempt {
    Attempt {
        started_at: at,
        finished_at: at + Duration::from_millis(1500),
        error_type: error.map(str::to_owned),
        error_message: error.map(|e| format!("{e}: it went wrong")),
    }
}

fn letter(function: &str, dead_lettered_at: OffsetDateTime) -> DeadLetter {
    let enqueued_at = datetime!(2026-05-01 10:00:00.000001 UTC);
    DeadLetter {
        request_id: RequestId::new(),
        function_name: name(function),
        qualifier: LATEST.to_owned(),
        payload: Bytes::from_static(br#"{"order": 42}"#),
        attempts: vec![
            attempt(enqueued_at, Some("ValueError")),
            attempt(
                enqueued_at + Duration::from_secs(60),
                Some("Sandbox.Timedout"),
            ),
        ],
        reason: DeadLetterReason::RetriesExhausted,
        enqueued_at,
        dead_lettered_at,
        redrive: None,
    }
}

fn event_config(retries: Option<u32>) -> EventInvokeConfig {
    EventInvokeConfig {
        maximum_retry_attempts: retries,
        maximum_event_age_secs: Some(3600),
        on_success: None,
        on_failure: Some("arn:aws:lambda:us-east-1:000000000000:function:sink".to_owned()),
        last_modified: datetime!(2026-05-01 10:00:00.123456 UTC),
    }
}

/// Reads a whole listing page by page, checking every page is full but the last.
async fn all_pages<T, F, Fut>(page_size: usize, cursor_of: fn(&T) -> Cursor, mut page: F) -> Vec<T>
where
    F: FnMut(Option<Cursor>) -> Fut,
    Fut: std::future::Future<Output = Vec<T>>,
{
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let items = page(after).await;
        assert!(items.len() <= page_size);
        let last = items.len() < page_size;
        after = items.last().map(cursor_of);
        all.extend(items);
        // A cursor that does not move on would page forever.
        assert!(all.len() <= 1000, "paging does not end");
        if last {
            return all;
        }
    }
}

async fn code_is_stored_once_by_hash(store: Arc<dyn Store>) {
    let zip = Bytes::from_static(b"PK fake zip");
    let sha = CodeSha256::of(&zip);
    assert_eq!(store.get_code(&sha).await.unwrap(), None);
    store.put_code(&sha, zip.clone()).await.unwrap();
    store.put_code(&sha, zip.clone()).await.unwrap();
    assert_eq!(store.get_code(&sha).await.unwrap(), Some(zip));
}

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

async fn functions_round_trip(store: Arc<dyn Store>) {
    let code = with_code(&*store).await;
    let mut f = function("alpha", &code);
    f.reserved_concurrency = Some(4);
    store.create_function(&f).await.unwrap();
    assert_eq!(store.get_function(&f.name).await.unwrap(), Some(f.clone()));

    let mut bare = function("beta", &code);
    bare.handler = None;
    bare.environment.clear();
    bare.runtime = "provided.al2023".parse().unwrap();
    store.create_function(&bare).await.unwrap();
    assert_eq!(store.get_function(&bare.name).await.unwrap(), Some(bare));

    let missing = FunctionName::parse("missing").unwrap();
    assert_eq!(store.get_function(&missing).await.unwrap(), None);
}

async fn a_taken_name_conflicts(store: Arc<dyn Store>) {
    let code = with_code(&*store).await;
    store
        .create_function(&function("dup", &code))
        .await
        .unwrap();
    let err = store
        .create_function(&function("dup", &code))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(matches!(
        nimbus_core::Error::from(err),
        nimbus_core::Error::ResourceConflict(_)
    ));
}

async fn listing_pages_by_name(store: Arc<dyn Store>) {
    let code = with_code(&*store).await;
    for name in ["c", "a", "e", "b", "d"] {
        store.create_function(&function(name, &code)).await.unwrap();
    }
    let names = |fs: Vec<FunctionConfig>| {
        fs.into_iter()
            .map(|f| f.name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.list_functions(None, 2).await.unwrap()),
        ["a", "b"]
    );
    let b = FunctionName::parse("b").unwrap();
    assert_eq!(
        names(store.list_functions(Some(&b), 2).await.unwrap()),
        ["c", "d"]
    );
    let d = FunctionName::parse("d").unwrap();
    assert_eq!(
        names(store.list_functions(Some(&d), 2).await.unwrap()),
        ["e"]
    );
    let e = FunctionName::parse("e").unwrap();
    assert!(store.list_functions(Some(&e), 2).await.unwrap().is_empty());
}

async fn updates_compare_the_revision(store: Arc<dyn Store>) {
    let code = with_code(&*store).await;
    let original = function("upd", &code);
    store.create_function(&original).await.unwrap();

    let mut changed = original.clone();
    changed.timeout_secs = 30;
    changed.revision_id = "r2".to_owned();
    store
        .update_function(&changed, &original.revision_id)
        .await
        .unwrap();
    assert_eq!(
        store.get_function(&original.name).await.unwrap(),
        Some(changed.clone())
    );

    let mut stale = changed.clone();
    stale.revision_id = "r3".to_owned();
    let err = store
        .update_function(&stale, &original.revision_id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RevisionMismatch(_)), "{err:?}");

    let ghost = function("ghost", &code);
    let err = store.update_function(&ghost, "any").await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

async fn deletes_say_whether_there_was_one(store: Arc<dyn Store>) {
    let code = with_code(&*store).await;
    let f = function("gone", &code);
    store.create_function(&f).await.unwrap();
    assert!(store.delete_function(&f.name).await.unwrap());
    assert!(!store.delete_function(&f.name).await.unwrap());
    assert_eq!(store.get_function(&f.name).await.unwrap(), None);
}

async fn invocation_records_upsert_and_round_trip(store: Arc<dyn Store>) {
    let running = record(InvocationStatus::Running);
    let other = record(InvocationStatus::Succeeded);
    store
        .put_invocations(&[running.clone(), other.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.get_invocation(&running.request_id).await.unwrap(),
        Some(running.clone())
    );

    let mut finished = running.clone();
    finished.status = InvocationStatus::Failed;
    finished.attempts = 3;
    finished.error_type = None;
    store
        .put_invocations(std::slice::from_ref(&finished))
        .await
        .unwrap();
    assert_eq!(
        store.get_invocation(&running.request_id).await.unwrap(),
        Some(finished)
    );
    assert_eq!(
        store.get_invocation(&other.request_id).await.unwrap(),
        Some(other)
    );
    assert_eq!(store.get_invocation(&RequestId::new()).await.unwrap(), None);
}

async fn the_record_writer_batches_and_drains(store: Arc<dyn Store>) {
    let writer = RecordWriter::start(
        store.clone(),
        RecordWriterConfig {
            // Only full batches and shutdown flush, whatever the machine's speed.
            flush_interval: Duration::from_secs(3600),
            ..RecordWriterConfig::default()
        },
    );
    let records: Vec<_> = (0..1000)
        .map(|_| record(InvocationStatus::Succeeded))
        .collect();
    for r in &records {
        writer.record(r.clone()).await;
        // Visible at once, flushed or not.
        assert_eq!(writer.get(&r.request_id).await.unwrap().as_ref(), Some(r));
    }
    writer.shutdown().await;
    let stats = writer.stats();
    assert_eq!(stats.records_written, 1000);
    assert!(stats.flushes <= 1000 / 100, "batched: {stats:?}");
    assert!(stats.largest_batch > 100, "batched: {stats:?}");
    for r in &records {
        assert_eq!(
            store.get_invocation(&r.request_id).await.unwrap().as_ref(),
            Some(r)
        );
    }
    assert_eq!(
        writer.get(&records[0].request_id).await.unwrap().as_ref(),
        Some(&records[0])
    );
}

async fn creating_a_function_needs_its_code(store: Arc<dyn Store>) {
    let never_stored = CodeSha256::of(b"never stored");
    let f = function("codeless", &never_stored);
    assert!(store.create_function(&f).await.is_err());
    assert_eq!(store.get_function(&f.name).await.unwrap(), None);
}

async fn a_batch_keeps_the_last_record_of_each_request(store: Arc<dyn Store>) {
    let queued = record(InvocationStatus::Queued);
    let running = InvocationRecord {
        status: InvocationStatus::Running,
        ..queued.clone()
    };
    let done = InvocationRecord {
        status: InvocationStatus::Succeeded,
        attempts: 2,
        ..queued.clone()
    };
    let other = record(InvocationStatus::Failed);
    store
        .put_invocations(&[queued.clone(), running, other.clone(), done.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.get_invocation(&queued.request_id).await.unwrap(),
        Some(done)
    );
    assert_eq!(
        store.get_invocation(&other.request_id).await.unwrap(),
        Some(other)
    );
    store.put_invocations(&[]).await.unwrap();
}

async fn large_batches_are_written_whole(store: Arc<dyn Store>) {
    // More records than one statement may bind.
    let records: Vec<_> = (0..2500)
        .map(|_| record(InvocationStatus::Succeeded))
        .collect();
    store.put_invocations(&records).await.unwrap();
    for r in [&records[0], &records[1234], &records[2499]] {
        assert_eq!(
            store.get_invocation(&r.request_id).await.unwrap().as_ref(),
            Some(r)
        );
    }
}

async fn times_are_kept_in_utc_to_the_microsecond(store: Arc<dyn Store>) {
    let given = datetime!(2026-03-04 05:06:07.123456789 +02:00);
    let kept = datetime!(2026-03-04 03:06:07.123456 UTC);

    let code = with_code(&*store).await;
    let mut f = function("precise", &code);
    f.last_modified = given;
    store.create_function(&f).await.unwrap();
    let stored = store.get_function(&f.name).await.unwrap().unwrap();
    assert_eq!(stored.last_modified, kept);
    assert_eq!(stored.last_modified.offset(), UtcOffset::UTC);

    let whole_second = datetime!(2026-03-04 03:06:07 UTC);
    let mut r = record(InvocationStatus::Succeeded);
    r.created_at = given;
    r.started_at = Some(whole_second);
    r.finished_at = None;
    store
        .put_invocations(std::slice::from_ref(&r))
        .await
        .unwrap();
    let stored = store.get_invocation(&r.request_id).await.unwrap().unwrap();
    assert_eq!(stored.created_at, kept);
    assert_eq!(stored.started_at, Some(whole_second));
    assert_eq!(stored.finished_at, None);
}

async fn invocations_list_newest_first_by_page(store: Arc<dyn Store>) {
    let base = datetime!(2026-05-01 10:00:00.000001 UTC);
    let mut records = Vec::new();
    // Three records share each time, so some page boundaries fall among equal times.
    for i in 0..12u32 {
        let mut r = record(if i % 3 == 0 {
            InvocationStatus::Failed
        } else {
            InvocationStatus::Succeeded
        });
        r.created_at = base + Duration::from_micros(u64::from(i / 3));
        if i % 2 == 1 {
            r.function_name = name("g");
        }
        records.push(r);
    }
    store.put_invocations(&records).await.unwrap();

    let newest_first = |mut expected: Vec<InvocationRecord>| {
        expected.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.request_id)));
        expected
    };
    let cursor_of = |r: &InvocationRecord| Cursor {
        at: r.created_at,
        request_id: r.request_id,
    };
    let list = |filter: InvocationFilter, page_size: usize| {
        let store = store.clone();
        all_pages(page_size, cursor_of, move |after| {
            let store = store.clone();
            let filter = filter.clone();
            async move {
                store
                    .list_invocations(&filter, after.as_ref(), page_size)
                    .await
                    .unwrap()
            }
        })
    };

    for page_size in [1, 2, 5, 12, 50] {
        assert_eq!(
            list(InvocationFilter::default(), page_size).await,
            newest_first(records.clone()),
            "page size {page_size}"
        );
    }
    let of_g = InvocationFilter {
        function_name: Some(name("g")),
        status: None,
    };
    assert_eq!(
        list(of_g, 2).await,
        newest_first(
            records
                .iter()
                .filter(|r| r.function_name == name("g"))
                .cloned()
                .collect()
        )
    );
    let failed_of_f = InvocationFilter {
        function_name: Some(name("f")),
        status: Some(InvocationStatus::Failed),
    };
    assert_eq!(
        list(failed_of_f, 1).await,
        newest_first(
            records
                .iter()
                .filter(|r| r.function_name == name("f") && r.status == InvocationStatus::Failed)
                .cloned()
                .collect()
        )
    );
    let running = InvocationFilter {
        function_name: None,
        status: Some(InvocationStatus::Running),
    };
    assert!(
        store
            .list_invocations(&running, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_invocations(&InvocationFilter::default(), None, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn stored_records_are_replaced_only_by_ones_that_supersede_them(store: Arc<dyn Store>) {
    let stored = |store: Arc<dyn Store>, id: RequestId| async move {
        store.get_invocation(&id).await.unwrap().unwrap()
    };
    let with = |r: &InvocationRecord, status| InvocationRecord {
        status,
        attempts: r.attempts + 1,
        ..r.clone()
    };

    // The gateway's `queued` arriving after the worker's `running` is ignored.
    let running = record(InvocationStatus::Running);
    store
        .put_invocations(std::slice::from_ref(&running))
        .await
        .unwrap();
    let queued = with(&running, InvocationStatus::Queued);
    store.put_invocations(&[queued]).await.unwrap();
    assert_eq!(stored(store.clone(), running.request_id).await, running);

    // A duplicate delivery's `running` after the end is ignored.
    let succeeded = with(&running, InvocationStatus::Succeeded);
    store
        .put_invocations(std::slice::from_ref(&succeeded))
        .await
        .unwrap();
    store
        .put_invocations(&[with(&succeeded, InvocationStatus::Running)])
        .await
        .unwrap();
    assert_eq!(stored(store.clone(), running.request_id).await, succeeded);

    // A terminal record replaces a terminal one.
    let failed = with(&succeeded, InvocationStatus::Failed);
    store
        .put_invocations(std::slice::from_ref(&failed))
        .await
        .unwrap();
    assert_eq!(stored(store.clone(), running.request_id).await, failed);

    // `dead_lettered` after `retrying` is applied.
    let retrying = record(InvocationStatus::Retrying);
    store
        .put_invocations(std::slice::from_ref(&retrying))
        .await
        .unwrap();
    let dead = with(&retrying, InvocationStatus::DeadLettered);
    store
        .put_invocations(std::slice::from_ref(&dead))
        .await
        .unwrap();
    assert_eq!(stored(store.clone(), retrying.request_id).await, dead);

    // `queued` is stored when there is nothing yet, and the rule holds inside one batch.
    let first = record(InvocationStatus::Queued);
    store
        .put_invocations(std::slice::from_ref(&first))
        .await
        .unwrap();
    assert_eq!(stored(store.clone(), first.request_id).await, first);
    let started = with(&first, InvocationStatus::Running);
    let done = with(&started, InvocationStatus::Succeeded);
    store
        .put_invocations(&[
            started.clone(),
            done.clone(),
            with(&done, InvocationStatus::Running),
            with(&done, InvocationStatus::Queued),
        ])
        .await
        .unwrap();
    assert_eq!(stored(store.clone(), first.request_id).await, done);
    let late = record(InvocationStatus::Running);
    store
        .put_invocations(&[late.clone(), with(&late, InvocationStatus::Queued)])
        .await
        .unwrap();
    assert_eq!(stored(store.clone(), late.request_id).await, late);
}

async fn attempt_history_and_redrive_origin_round_trip(store: Arc<dyn Store>) {
    let mut r = record(InvocationStatus::Succeeded);
    r.invocation_type = InvocationType::Event;
    r.attempt_history = vec![
        attempt(
            datetime!(2026-05-01 10:00:00.000001 UTC),
            Some("ValueError"),
        ),
        attempt(datetime!(2026-05-01 10:01:00.5 UTC), None),
    ];
    r.redrive_of = Some(RequestId::new());
    store
        .put_invocations(std::slice::from_ref(&r))
        .await
        .unwrap();
    assert_eq!(
        store.get_invocation(&r.request_id).await.unwrap(),
        Some(r.clone())
    );
    let listed = store
        .list_invocations(&InvocationFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(listed, [r]);
}

async fn event_invoke_configs_upsert_list_and_delete(store: Arc<dyn Store>) {
    let code = with_code(&*store).await;
    let f = function("async", &code);
    store.create_function(&f).await.unwrap();
    assert_eq!(
        store
            .get_event_invoke_config(&f.name, LATEST)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .list_event_invoke_configs(&f.name)
            .await
            .unwrap()
            .is_empty()
    );

    let first = event_config(Some(1));
    store
        .put_event_invoke_config(&f.name, LATEST, &first)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_event_invoke_config(&f.name, LATEST)
            .await
            .unwrap(),
        Some(first)
    );
    let replaced = EventInvokeConfig {
        maximum_event_age_secs: None,
        on_failure: None,
        on_success: Some("arn:aws:lambda:us-east-1:000000000000:function:ok".to_owned()),
        ..event_config(Some(0))
    };
    store
        .put_event_invoke_config(&f.name, LATEST, &replaced)
        .await
        .unwrap();
    let empty = EventInvokeConfig::empty();
    store
        .put_event_invoke_config(&f.name, "1", &empty)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_event_invoke_config(&f.name, LATEST)
            .await
            .unwrap(),
        Some(replaced.clone())
    );
    // Stored to the microsecond, like every time.
    let empty_as_stored = EventInvokeConfig {
        last_modified: empty
            .last_modified
            .replace_nanosecond(empty.last_modified.nanosecond() / 1000 * 1000)
            .unwrap(),
        ..empty
    };
    assert_eq!(
        store.list_event_invoke_configs(&f.name).await.unwrap(),
        [
            ("$LATEST".to_owned(), replaced.clone()),
            ("1".to_owned(), empty_as_stored)
        ]
    );

    assert!(
        store
            .delete_event_invoke_config(&f.name, "1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_event_invoke_config(&f.name, "1")
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_event_invoke_config(&f.name, "1").await.unwrap(),
        None
    );
    assert_eq!(
        store.list_event_invoke_configs(&f.name).await.unwrap(),
        [("$LATEST".to_owned(), replaced)]
    );
}

async fn event_invoke_configs_belong_to_their_function(store: Arc<dyn Store>) {
    let missing = name("missing");
    let err = store
        .put_event_invoke_config(&missing, LATEST, &event_config(None))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert_eq!(
        store
            .get_event_invoke_config(&missing, LATEST)
            .await
            .unwrap(),
        None
    );

    let code = with_code(&*store).await;
    let f = function("doomed", &code);
    let other = function("other", &code);
    store.create_function(&f).await.unwrap();
    store.create_function(&other).await.unwrap();
    for qualifier in [LATEST, "1"] {
        store
            .put_event_invoke_config(&f.name, qualifier, &event_config(Some(2)))
            .await
            .unwrap();
    }
    store
        .put_event_invoke_config(&other.name, LATEST, &event_config(Some(2)))
        .await
        .unwrap();
    assert!(store.delete_function(&f.name).await.unwrap());
    assert!(
        store
            .list_event_invoke_configs(&f.name)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .list_event_invoke_configs(&other.name)
            .await
            .unwrap()
            .len(),
        1
    );

    // A function created again under the name starts without configuration.
    store.create_function(&f).await.unwrap();
    assert_eq!(
        store
            .get_event_invoke_config(&f.name, LATEST)
            .await
            .unwrap(),
        None
    );
}

async fn a_dead_letter_is_stored_once(store: Arc<dyn Store>) {
    // No function named "f" exists: dead letters do not need theirs.
    let mut first = letter("f", datetime!(2026-05-01 16:00:00.654321 UTC));
    // Every byte value, not only valid UTF-8.
    first.payload = Bytes::from((0..=255u8).rev().collect::<Vec<_>>());
    first.reason = DeadLetterReason::EventAgeExceeded;
    assert!(store.put_dead_letter(&first).await.unwrap());
    assert_eq!(
        store.get_dead_letter(&first.request_id).await.unwrap(),
        Some(first.clone())
    );

    let again = DeadLetter {
        payload: Bytes::from_static(b"{}"),
        attempts: Vec::new(),
        reason: DeadLetterReason::FunctionNotFound,
        ..first.clone()
    };
    assert!(!store.put_dead_letter(&again).await.unwrap());
    assert_eq!(
        store.get_dead_letter(&first.request_id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.get_dead_letter(&RequestId::new()).await.unwrap(),
        None
    );

    // A letter may arrive already marked (a copy of a redriven one).
    let mut marked = letter("g", datetime!(2026-05-01 17:00:00 UTC));
    marked.attempts.clear();
    marked.redrive = Some(RedriveMark {
        at: datetime!(2026-05-02 08:00:00.000002 UTC),
        request_id: RequestId::new(),
    });
    assert!(store.put_dead_letter(&marked).await.unwrap());
    assert_eq!(
        store.get_dead_letter(&marked.request_id).await.unwrap(),
        Some(marked)
    );
}

async fn dead_letters_list_oldest_first_by_page(store: Arc<dyn Store>) {
    let base = datetime!(2026-05-01 12:00:00.000001 UTC);
    let mut letters = Vec::new();
    // Three letters share each time, so some page boundaries fall among equal times.
    for i in 0..12u32 {
        let function = if i % 2 == 0 { "f" } else { "g" };
        let l = letter(function, base + Duration::from_secs(u64::from(i / 3)));
        assert!(store.put_dead_letter(&l).await.unwrap());
        letters.push(l);
    }
    let oldest_first = |filter: &dyn Fn(&DeadLetter) -> bool| {
        let mut expected: Vec<DeadLetter> = letters.iter().filter(|l| filter(l)).cloned().collect();
        expected.sort_by_key(|l| (l.dead_lettered_at, l.request_id));
        expected
    };
    let cursor_of = |l: &DeadLetter| Cursor {
        at: l.dead_lettered_at,
        request_id: l.request_id,
    };
    let list = |filter: DeadLetterFilter, page_size: usize| {
        let store = store.clone();
        all_pages(page_size, cursor_of, move |after| {
            let store = store.clone();
            let filter = filter.clone();
            async move {
                store
                    .list_dead_letters(&filter, after.as_ref(), page_size)
                    .await
                    .unwrap()
            }
        })
    };

    for page_size in [1, 2, 5, 12, 50] {
        assert_eq!(
            list(DeadLetterFilter::default(), page_size).await,
            oldest_first(&|_| true),
            "page size {page_size}"
        );
    }
    let of_g = DeadLetterFilter {
        function_name: Some(name("g")),
        ..DeadLetterFilter::default()
    };
    assert_eq!(
        list(of_g, 2).await,
        oldest_first(&|l| l.function_name == name("g"))
    );
    // `since` is inclusive, `until` exclusive, both exact to the microsecond.
    let since = base + Duration::from_secs(1);
    let until = base + Duration::from_secs(3);
    let window = DeadLetterFilter {
        function_name: None,
        since: Some(since),
        until: Some(until),
    };
    let in_window = list(window, 4).await;
    assert_eq!(
        in_window,
        oldest_first(&|l| l.dead_lettered_at >= since && l.dead_lettered_at < until)
    );
    assert_eq!(in_window.len(), 6);
    let f_since = DeadLetterFilter {
        function_name: Some(name("f")),
        since: Some(base + Duration::from_secs(3)),
        until: None,
    };
    assert_eq!(
        list(f_since, 1).await,
        oldest_first(&|l| l.function_name == name("f")
            && l.dead_lettered_at >= base + Duration::from_secs(3))
    );
    let a_microsecond_late = DeadLetterFilter {
        since: Some(base + Duration::from_micros(1)),
        until: Some(base + Duration::from_secs(1)),
        ..DeadLetterFilter::default()
    };
    assert!(
        store
            .list_dead_letters(&a_microsecond_late, None, 50)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_redrive_mark_is_set_once_and_taken_back_by_its_owner(store: Arc<dyn Store>) {
    let l = letter("f", datetime!(2026-05-01 16:00:00 UTC));
    store.put_dead_letter(&l).await.unwrap();
    let mark = RedriveMark {
        at: datetime!(2026-05-02 09:00:00.000003 UTC),
        request_id: RequestId::new(),
    };
    let rival = RedriveMark {
        at: datetime!(2026-05-02 09:00:01 UTC),
        request_id: RequestId::new(),
    };
    let redrive_of = |store: Arc<dyn Store>, id: RequestId| async move {
        store.get_dead_letter(&id).await.unwrap().unwrap().redrive
    };

    assert!(store.mark_redriven(&l.request_id, &mark).await.unwrap());
    assert!(!store.mark_redriven(&l.request_id, &rival).await.unwrap());
    assert_eq!(redrive_of(store.clone(), l.request_id).await, Some(mark));
    assert!(!store.mark_redriven(&RequestId::new(), &mark).await.unwrap());

    // Only the redrive that set the mark may take it back.
    store.unmark_redriven(&l.request_id, &rival).await.unwrap();
    assert_eq!(redrive_of(store.clone(), l.request_id).await, Some(mark));
    store.unmark_redriven(&l.request_id, &mark).await.unwrap();
    assert_eq!(redrive_of(store.clone(), l.request_id).await, None);
    store.unmark_redriven(&l.request_id, &mark).await.unwrap();
    store
        .unmark_redriven(&RequestId::new(), &mark)
        .await
        .unwrap();

    assert!(store.mark_redriven(&l.request_id, &rival).await.unwrap());
    assert_eq!(redrive_of(store.clone(), l.request_id).await, Some(rival));
    // Nothing else about the letter changed.
    assert_eq!(
        store.get_dead_letter(&l.request_id).await.unwrap(),
        Some(DeadLetter {
            redrive: Some(rival),
            ..l
        })
    );
}

async fn dead_letters_are_deleted_and_purged(store: Arc<dyn Store>) {
    let base = datetime!(2026-05-01 12:00:00 UTC);
    let mut letters = Vec::new();
    for i in 0..10u64 {
        let function = if i < 6 { "f" } else { "g" };
        let l = letter(function, base + Duration::from_secs(i));
        store.put_dead_letter(&l).await.unwrap();
        letters.push(l);
    }
    let count = |store: Arc<dyn Store>| async move {
        store
            .list_dead_letters(&DeadLetterFilter::default(), None, 100)
            .await
            .unwrap()
            .len()
    };

    assert!(
        store
            .delete_dead_letter(&letters[0].request_id)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_dead_letter(&letters[0].request_id)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_dead_letter(&letters[0].request_id).await.unwrap(),
        None
    );
    assert_eq!(count(store.clone()).await, 9);

    // Letters 1..6 are f's; 1 and 2 are before the window.
    let f_from_3 = DeadLetterFilter {
        function_name: Some(name("f")),
        since: Some(base + Duration::from_secs(3)),
        until: None,
    };
    assert_eq!(store.purge_dead_letters(&f_from_3).await.unwrap(), 3);
    assert_eq!(store.purge_dead_letters(&f_from_3).await.unwrap(), 0);
    assert_eq!(count(store.clone()).await, 6);
    assert!(
        store
            .get_dead_letter(&letters[2].request_id)
            .await
            .unwrap()
            .is_some()
    );

    let until_8 = DeadLetterFilter {
        until: Some(base + Duration::from_secs(8)),
        ..DeadLetterFilter::default()
    };
    assert_eq!(store.purge_dead_letters(&until_8).await.unwrap(), 4);
    let left: Vec<RequestId> = store
        .list_dead_letters(&DeadLetterFilter::default(), None, 100)
        .await
        .unwrap()
        .iter()
        .map(|l| l.request_id)
        .collect();
    assert_eq!(left, [letters[8].request_id, letters[9].request_id]);

    let of_nobody = DeadLetterFilter {
        function_name: Some(name("nobody")),
        ..DeadLetterFilter::default()
    };
    assert_eq!(store.purge_dead_letters(&of_nobody).await.unwrap(), 0);
    assert_eq!(
        store
            .purge_dead_letters(&DeadLetterFilter::default())
            .await
            .unwrap(),
        2
    );
    assert_eq!(count(store.clone()).await, 0);
}

fn alias(function: &str, name: &str, version: &str, routing: &[(&str, f64)]) -> Alias {
    Alias {
        function_name: self::name(function),
        name: name.into(),
        function_version: version.into(),
        description: format!("{name} points at {version}"),
        routing: routing.iter().map(|(v, w)| ((*v).to_owned(), *w)).collect(),
        revision_id: format!("{name}-{version}"),
    }
}

async fn versions_are_numbered_snapshots(store: Arc<dyn Store>) {
    let code = with_code(store.as_ref()).await;
    let mut latest = function("f", &code);
    store.create_function(&latest).await.unwrap();
    let one = store
        .publish_version(&latest, "first", "rev-v1")
        .await
        .unwrap();
    assert_eq!(one.version, "1");
    assert_eq!(one.description, "first");
    assert_eq!(one.revision_id, "rev-v1");

    // $LATEST moves on; version 1 stays what it was.
    let old_revision = latest.revision_id.clone();
    latest.timeout_secs = 42;
    latest.revision_id = "rev-2".into();
    store.update_function(&latest, &old_revision).await.unwrap();
    let stale = FunctionConfig {
        revision_id: old_revision,
        ..latest.clone()
    };
    assert!(matches!(
        store.publish_version(&stale, "", "x").await,
        Err(Error::RevisionMismatch(_))
    ));
    let two = store.publish_version(&latest, "", "rev-v2").await.unwrap();
    assert_eq!(two.version, "2");
    assert_eq!(two.timeout_secs, 42);
    let read = store
        .get_function_version(&name("f"), "1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.timeout_secs, one.timeout_secs);
    assert_eq!(read.version, "1");
    assert_eq!(
        store.get_function_version(&name("f"), "3").await.unwrap(),
        None
    );
    assert_eq!(
        store
            .get_function_version(&name("f"), LATEST)
            .await
            .unwrap(),
        None
    );

    // Numbers are never reused, even after a delete.
    assert!(
        store
            .delete_function_version(&name("f"), "2")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_function_version(&name("f"), "2")
            .await
            .unwrap()
    );
    let three = store.publish_version(&latest, "", "rev-v3").await.unwrap();
    assert_eq!(three.version, "3");
    assert_eq!(
        store.last_version_number(&name("f")).await.unwrap(),
        Some(3)
    );
    let listed: Vec<String> = store
        .list_function_versions(&name("f"), 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(listed, ["1", "3"]);
    let after_one = store
        .list_function_versions(&name("f"), 1, 10)
        .await
        .unwrap();
    assert_eq!(after_one.len(), 1);

    let missing = function("nope", &code);
    assert!(matches!(
        store.publish_version(&missing, "", "x").await,
        Err(Error::NotFound(_))
    ));
    // Deleting the function takes its versions with it; a new one starts again at 1.
    assert!(store.delete_function(&name("f")).await.unwrap());
    let recreated = function("f", &code);
    store.create_function(&recreated).await.unwrap();
    assert_eq!(
        store.get_function_version(&name("f"), "1").await.unwrap(),
        None
    );
    let again = store.publish_version(&recreated, "", "r").await.unwrap();
    assert_eq!(again.version, "1");
}

async fn aliases_round_trip_and_compare_revisions(store: Arc<dyn Store>) {
    let code = with_code(store.as_ref()).await;
    store.create_function(&function("f", &code)).await.unwrap();
    let live = alias("f", "live", "1", &[("2", 0.25)]);
    store.create_alias(&live).await.unwrap();
    assert!(matches!(
        store.create_alias(&live).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.create_alias(&alias("nope", "live", "1", &[])).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        store.get_alias(&name("f"), "live").await.unwrap(),
        Some(live.clone())
    );

    let moved = Alias {
        function_version: "2".into(),
        routing: BTreeMap::new(),
        revision_id: "moved".into(),
        ..live.clone()
    };
    assert!(matches!(
        store.update_alias(&moved, "wrong").await,
        Err(Error::RevisionMismatch(_))
    ));
    store.update_alias(&moved, &live.revision_id).await.unwrap();
    assert_eq!(
        store.get_alias(&name("f"), "live").await.unwrap(),
        Some(moved)
    );
    assert!(matches!(
        store
            .update_alias(&alias("f", "ghost", "1", &[]), "x")
            .await,
        Err(Error::NotFound(_))
    ));

    store
        .create_alias(&alias("f", "beta", "$LATEST", &[]))
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_aliases(&name("f"))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["beta", "live"]);
    assert!(store.delete_alias(&name("f"), "beta").await.unwrap());
    assert!(!store.delete_alias(&name("f"), "beta").await.unwrap());
    assert!(store.delete_function(&name("f")).await.unwrap());
    store.create_function(&function("f", &code)).await.unwrap();
    assert!(store.list_aliases(&name("f")).await.unwrap().is_empty());
}

async fn tags_belong_to_their_function(store: Arc<dyn Store>) {
    let code = with_code(store.as_ref()).await;
    store.create_function(&function("f", &code)).await.unwrap();
    assert_eq!(
        store.get_tags(&name("f")).await.unwrap(),
        Some(BTreeMap::new())
    );
    let tags = BTreeMap::from([("team".to_owned(), "orders".to_owned())]);
    assert!(store.put_tags(&name("f"), &tags).await.unwrap());
    assert_eq!(
        store.get_tags(&name("f")).await.unwrap(),
        Some(tags.clone())
    );
    assert!(!store.put_tags(&name("nope"), &tags).await.unwrap());
    assert_eq!(store.get_tags(&name("nope")).await.unwrap(), None);
}

fn provisioned(function: &str, qualifier: &str, requested: u32) -> ProvisionedConcurrencyConfig {
    ProvisionedConcurrencyConfig {
        function_name: name(function),
        qualifier: qualifier.to_owned(),
        requested,
        allocated: 0,
        status: ProvisionedStatus::InProgress,
        status_reason: None,
        last_modified: OffsetDateTime::now_utc()
            .replace_nanosecond(654_321_000)
            .unwrap(),
    }
}

async fn provisioned_concurrency_upserts_allocates_and_deletes(store: Arc<dyn Store>) {
    let code = with_code(store.as_ref()).await;
    store.create_function(&function("f", &code)).await.unwrap();
    store.create_function(&function("g", &code)).await.unwrap();
    assert_eq!(
        store
            .get_provisioned_concurrency(&name("f"), "1")
            .await
            .unwrap(),
        None
    );
    let live = provisioned("f", "live", 2);
    store.put_provisioned_concurrency(&live).await.unwrap();
    store
        .put_provisioned_concurrency(&provisioned("f", "1", 1))
        .await
        .unwrap();
    store
        .put_provisioned_concurrency(&provisioned("g", "3", 4))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_provisioned_concurrency(&name("f"), "live")
            .await
            .unwrap(),
        Some(live.clone())
    );
    let qualifiers = |configs: Vec<ProvisionedConcurrencyConfig>| {
        configs
            .into_iter()
            .map(|c| format!("{}:{}", c.function_name, c.qualifier))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        qualifiers(
            store
                .list_provisioned_concurrency(&name("f"))
                .await
                .unwrap()
        ),
        ["f:1", "f:live"]
    );
    assert_eq!(
        qualifiers(store.list_all_provisioned_concurrency().await.unwrap()),
        ["f:1", "f:live", "g:3"]
    );

    // The invoker's write-back leaves the request and its time alone.
    assert!(
        store
            .set_provisioned_allocation(&name("f"), "live", 2, ProvisionedStatus::Ready, None)
            .await
            .unwrap()
    );
    let ready = store
        .get_provisioned_concurrency(&name("f"), "live")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ready,
        ProvisionedConcurrencyConfig {
            allocated: 2,
            status: ProvisionedStatus::Ready,
            ..live.clone()
        }
    );
    assert!(
        store
            .set_provisioned_allocation(
                &name("f"),
                "1",
                0,
                ProvisionedStatus::Failed,
                Some("cannot start")
            )
            .await
            .unwrap()
    );
    let failed = store
        .get_provisioned_concurrency(&name("f"), "1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, ProvisionedStatus::Failed);
    assert_eq!(failed.status_reason.as_deref(), Some("cannot start"));
    assert!(
        !store
            .set_provisioned_allocation(&name("f"), "9", 1, ProvisionedStatus::Ready, None)
            .await
            .unwrap()
    );

    // A new request replaces the old one, allocation included.
    let more = provisioned("f", "live", 5);
    store.put_provisioned_concurrency(&more).await.unwrap();
    assert_eq!(
        store
            .get_provisioned_concurrency(&name("f"), "live")
            .await
            .unwrap(),
        Some(more)
    );

    assert!(
        store
            .delete_provisioned_concurrency(&name("f"), "1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_provisioned_concurrency(&name("f"), "1")
            .await
            .unwrap()
    );
    assert!(matches!(
        store
            .put_provisioned_concurrency(&provisioned("nope", "1", 1))
            .await,
        Err(Error::NotFound(_))
    ));
    // Deleting the function deletes its configurations.
    assert!(store.delete_function(&name("g")).await.unwrap());
    assert_eq!(
        qualifiers(store.list_all_provisioned_concurrency().await.unwrap()),
        ["f:live"]
    );
}

fn function_url(function: &str, qualifier: Option<&str>) -> FunctionUrlConfig {
    let at = OffsetDateTime::now_utc()
        .replace_nanosecond(123_456_000)
        .unwrap();
    FunctionUrlConfig {
        url_id: FunctionUrlConfig::new_url_id(),
        function_name: name(function),
        qualifier: qualifier.map(str::to_owned),
        auth_type: AuthType::None,
        cors: Some(Cors {
            allow_origins: Some(vec!["https://app.example".to_owned()]),
            allow_methods: Some(vec!["GET".to_owned()]),
            max_age: Some(60),
            ..Cors::default()
        }),
        invoke_mode: InvokeMode::Buffered,
        created_at: at,
        last_modified: at,
    }
}

async fn function_urls_round_trip_and_belong_to_their_function(store: Arc<dyn Store>) {
    let code = with_code(store.as_ref()).await;
    store.create_function(&function("f", &code)).await.unwrap();
    let plain = function_url("f", None);
    let live = function_url("f", Some("live"));
    store.create_function_url(&plain).await.unwrap();
    store.create_function_url(&live).await.unwrap();
    assert!(matches!(
        store.create_function_url(&function_url("f", None)).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.create_function_url(&function_url("nope", None)).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        store.get_function_url(&name("f"), None).await.unwrap(),
        Some(plain.clone())
    );
    assert_eq!(
        store.get_function_url_by_id(&live.url_id).await.unwrap(),
        Some(live.clone())
    );
    assert_eq!(store.get_function_url_by_id("0").await.unwrap(), None);
    let listed = store.list_function_urls(&name("f")).await.unwrap();
    assert_eq!(listed, [plain.clone(), live.clone()]);

    let updated = FunctionUrlConfig {
        auth_type: AuthType::AwsIam,
        cors: None,
        last_modified: plain.last_modified + time::Duration::seconds(5),
        ..plain.clone()
    };
    assert!(store.update_function_url(&updated).await.unwrap());
    assert_eq!(
        store.get_function_url(&name("f"), None).await.unwrap(),
        Some(updated)
    );
    assert!(
        !store
            .update_function_url(&function_url("f", Some("gone")))
            .await
            .unwrap()
    );

    assert!(
        store
            .delete_function_url(&name("f"), Some("live"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_function_url(&name("f"), Some("live"))
            .await
            .unwrap()
    );
    store.delete_function(&name("f")).await.unwrap();
    assert_eq!(
        store.get_function_url_by_id(&plain.url_id).await.unwrap(),
        None
    );
}

fn route(method: &str, path: &str, function: &str) -> HttpRoute {
    HttpRoute {
        route_id: HttpRoute::new_route_id(),
        method: method.to_owned(),
        path: RoutePath::parse(path).unwrap(),
        function_name: name(function),
        qualifier: Some("live".to_owned()),
        invocation_type: InvocationType::Event,
        integration_timeout: Duration::from_millis(2500),
        auth_type: AuthType::AwsIam,
        cors: None,
        created_at: OffsetDateTime::now_utc().replace_nanosecond(7_000).unwrap(),
    }
}

async fn routes_conflict_on_method_and_path_shape(store: Arc<dyn Store>) {
    let by_id = route("GET", "/orders/{id}", "getOrder");
    let put = route("PUT", "/orders/{id}", "putOrder");
    let any = route("ANY", "/{proxy+}", "fallback");
    for r in [&by_id, &put, &any] {
        store.create_route(r).await.unwrap();
    }
    // The same method and path, whatever the parameter is called.
    assert!(matches!(
        store
            .create_route(&route("GET", "/orders/{orderId}", "other"))
            .await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store.get_route(&by_id.route_id).await.unwrap(),
        Some(by_id.clone())
    );
    let listed: Vec<String> = store
        .list_routes()
        .await
        .unwrap()
        .iter()
        .map(HttpRoute::route_key)
        .collect();
    assert_eq!(
        listed,
        ["GET /orders/{id}", "PUT /orders/{id}", "ANY /{proxy+}"]
    );
    assert!(store.delete_route(&by_id.route_id).await.unwrap());
    assert!(!store.delete_route(&by_id.route_id).await.unwrap());
    store
        .create_route(&route("GET", "/orders/{orderId}", "other"))
        .await
        .unwrap();
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::sqlite().await;
                    super::$case(backend.store.clone()).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let backend = super::postgres().await;
                    super::$case(backend.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    ping_answers,
    code_is_stored_once_by_hash,
    functions_round_trip,
    a_taken_name_conflicts,
    listing_pages_by_name,
    updates_compare_the_revision,
    deletes_say_whether_there_was_one,
    invocation_records_upsert_and_round_trip,
    the_record_writer_batches_and_drains,
    creating_a_function_needs_its_code,
    a_batch_keeps_the_last_record_of_each_request,
    large_batches_are_written_whole,
    times_are_kept_in_utc_to_the_microsecond,
    invocations_list_newest_first_by_page,
    stored_records_are_replaced_only_by_ones_that_supersede_them,
    attempt_history_and_redrive_origin_round_trip,
    event_invoke_configs_upsert_list_and_delete,
    event_invoke_configs_belong_to_their_function,
    a_dead_letter_is_stored_once,
    dead_letters_list_oldest_first_by_page,
    a_redrive_mark_is_set_once_and_taken_back_by_its_owner,
    dead_letters_are_deleted_and_purged,
    versions_are_numbered_snapshots,
    aliases_round_trip_and_compare_revisions,
    tags_belong_to_their_function,
    provisioned_concurrency_upserts_allocates_and_deletes,
    function_urls_round_trip_and_belong_to_their_function,
    routes_conflict_on_method_and_path_shape,
);

#[tokio::test]
async fn sqlite_runs_in_memory() {
    let store = nimbus_store::connect("sqlite::memory:").await.unwrap();
    functions_round_trip(store.clone()).await;
    invocation_records_upsert_and_round_trip(store).await;
}

#[tokio::test]
async fn unknown_database_urls_are_refused() {
    let refused = nimbus_store::connect("mysql://localhost/nimbus").await;
    assert!(matches!(refused, Err(Error::Config(_))));
}

/// Two gateways over one database: each sees its own writes at once; the other one keeps
/// its cached copy until the time-to-live runs out.
#[tokio::test]
async fn a_cached_store_sees_its_own_writes_at_once() {
    let backend = sqlite().await;
    let here = nimbus_store::CachedStore::new(backend.store.clone(), Duration::from_secs(3600));
    let there = nimbus_store::CachedStore::new(backend.store.clone(), Duration::from_secs(3600));
    let code = with_code(&*backend.store).await;
    let original = function("cached", &code);
    assert_eq!(here.get_function(&original.name).await.unwrap(), None);
    here.create_function(&original).await.unwrap();
    assert_eq!(
        here.get_function(&original.name).await.unwrap(),
        Some(original.clone())
    );
    assert_eq!(
        there.get_function(&original.name).await.unwrap(),
        Some(original.clone())
    );

    let mut changed = original.clone();
    changed.memory_mb = 256;
    changed.revision_id = "r2".to_owned();
    here.update_function(&changed, &original.revision_id)
        .await
        .unwrap();
    assert_eq!(
        here.get_function(&original.name).await.unwrap(),
        Some(changed)
    );
    assert_eq!(
        there.get_function(&original.name).await.unwrap(),
        Some(original.clone())
    );

    here.delete_function(&original.name).await.unwrap();
    assert_eq!(here.get_function(&original.name).await.unwrap(), None);
}

/// The queue-worker reads an event invoke configuration per event: it is cached, "none"
/// included, and this store's own writes are seen at once.
#[tokio::test]
async fn a_cached_store_caches_event_invoke_configs() {
    let backend = sqlite().await;
    let here = nimbus_store::CachedStore::new(backend.store.clone(), Duration::from_secs(3600));
    let there = nimbus_store::CachedStore::new(backend.store.clone(), Duration::from_secs(3600));
    let code = with_code(&*backend.store).await;
    let f = function("configured", &code);
    backend.store.create_function(&f).await.unwrap();

    assert_eq!(
        here.get_event_invoke_config(&f.name, LATEST).await.unwrap(),
        None
    );
    let first = event_config(Some(1));
    there
        .put_event_invoke_config(&f.name, LATEST, &first)
        .await
        .unwrap();
    // Another process's write waits for the time-to-live; this one's own is seen at once.
    assert_eq!(
        here.get_event_invoke_config(&f.name, LATEST).await.unwrap(),
        None
    );
    assert_eq!(
        there
            .get_event_invoke_config(&f.name, LATEST)
            .await
            .unwrap(),
        Some(first.clone())
    );
    let second = event_config(Some(0));
    here.put_event_invoke_config(&f.name, LATEST, &second)
        .await
        .unwrap();
    assert_eq!(
        here.get_event_invoke_config(&f.name, LATEST).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        there
            .get_event_invoke_config(&f.name, LATEST)
            .await
            .unwrap(),
        Some(first)
    );

    assert!(
        there
            .delete_event_invoke_config(&f.name, LATEST)
            .await
            .unwrap()
    );
    assert_eq!(
        here.get_event_invoke_config(&f.name, LATEST).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        there
            .get_event_invoke_config(&f.name, LATEST)
            .await
            .unwrap(),
        None
    );

    // Deleting the function forgets all of its configurations.
    here.put_event_invoke_config(&f.name, "1", &second)
        .await
        .unwrap();
    assert!(
        here.get_event_invoke_config(&f.name, "1")
            .await
            .unwrap()
            .is_some()
    );
    here.delete_function(&f.name).await.unwrap();
    assert_eq!(
        here.get_event_invoke_config(&f.name, LATEST).await.unwrap(),
        None
    );
    assert_eq!(
        here.get_event_invoke_config(&f.name, "1").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_cached_store_refetches_event_invoke_configs_after_the_ttl() {
    let backend = sqlite().await;
    let ttl = Duration::from_secs(1);
    let cached = nimbus_store::CachedStore::new(backend.store.clone(), ttl);
    let code = with_code(&*backend.store).await;
    let f = function("expiring", &code);
    backend.store.create_function(&f).await.unwrap();
    assert_eq!(
        cached
            .get_event_invoke_config(&f.name, LATEST)
            .await
            .unwrap(),
        None
    );
    let config = event_config(Some(2));
    backend
        .store
        .put_event_invoke_config(&f.name, LATEST, &config)
        .await
        .unwrap();
    assert_eq!(
        cached
            .get_event_invoke_config(&f.name, LATEST)
            .await
            .unwrap(),
        None
    );
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(
        cached
            .get_event_invoke_config(&f.name, LATEST)
            .await
            .unwrap(),
        Some(config)
    );
}
