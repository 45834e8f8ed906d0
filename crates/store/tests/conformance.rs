//! One suite, every backend: the embedded SQLite store and Postgres (a fresh database per
//! test, on the server `NIMBUS_TEST_DATABASE_URL` names) must behave the same.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::function::LATEST;
use nimbus_core::{
    CodeSha256, FunctionConfig, FunctionName, InvocationRecord, InvocationStatus, InvocationType,
    RequestId, Runtime,
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
    store.put_invocations(&[finished.clone()]).await.unwrap();
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
    store.put_invocations(&[r.clone()]).await.unwrap();
    let stored = store.get_invocation(&r.request_id).await.unwrap().unwrap();
    assert_eq!(stored.created_at, kept);
    assert_eq!(stored.started_at, Some(whole_second));
    assert_eq!(stored.finished_at, None);
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
