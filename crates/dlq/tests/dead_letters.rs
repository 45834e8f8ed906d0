//! The DLQ service's behaviour, run twice: in-process, and through its gRPC server and
//! client on a loopback port. Both run over a real SQLite store and the embedded queue.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::{
    Attempt, DeadLetter, DeadLetterFilter, DeadLetterReason, DeadLetters, Error, FunctionName,
    InvocationStatus, RequestId, Selection,
};
use nimbus_dlq::DeadLetterService;
use nimbus_dlq::grpc::{self, RemoteDeadLetters};
use nimbus_proto::auth::ServiceToken;
use nimbus_queue::{EventQueue, SqliteQueue, SqliteQueueConfig};
use nimbus_store::{SqliteStore, Store};
use time::OffsetDateTime;
use tokio::sync::oneshot;

struct Fixture {
    dead_letters: Arc<dyn DeadLetters>,
    store: Arc<dyn Store>,
    queue: Arc<dyn EventQueue>,
    _dir: tempfile::TempDir,
    _stop_server: Option<oneshot::Sender<()>>,
}

async fn local() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("store.db").display());
    let queue_url = format!("sqlite://{}", dir.path().join("queue.db").display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&store_url).await.unwrap());
    let queue: Arc<dyn EventQueue> = Arc::new(
        SqliteQueue::connect(
            &queue_url,
            SqliteQueueConfig {
                visibility_timeout: Duration::from_secs(30),
            },
        )
        .await
        .unwrap(),
    );
    Fixture {
        dead_letters: Arc::new(DeadLetterService::new(store.clone(), queue.clone())),
        store,
        queue,
        _dir: dir,
        _stop_server: None,
    }
}

async fn remote() -> Fixture {
    let mut fixture = local().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let token = token();
    tokio::spawn(grpc::serve(
        listener,
        fixture.dead_letters.clone(),
        Some(token.clone()),
        async {
            stopped.await.ok();
        },
    ));
    fixture.dead_letters = Arc::new(RemoteDeadLetters::connect(&url, Some(&token)).unwrap());
    fixture._stop_server = Some(stop);
    fixture
}

fn token() -> ServiceToken {
    ServiceToken::new("dlq-test-token").unwrap()
}

#[tokio::test]
async fn callers_without_the_service_token_are_refused() {
    let fixture = local().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(grpc::serve(
        listener,
        fixture.dead_letters.clone(),
        Some(token()),
        async {
            stopped.await.ok();
        },
    ));
    for wrong in [None, Some(ServiceToken::new("not-the-token").unwrap())] {
        let stranger = RemoteDeadLetters::connect(&url, wrong.as_ref()).unwrap();
        let refused = stranger
            .list(DeadLetterFilter::default(), None, 10)
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, Error::Service(m) if m.contains("service token")),
            "{refused:?}"
        );
    }
    let member = RemoteDeadLetters::connect(&url, Some(&token())).unwrap();
    assert!(
        member
            .list(DeadLetterFilter::default(), None, 10)
            .await
            .unwrap()
            .letters
            .is_empty()
    );
}

fn name(name: &str) -> FunctionName {
    FunctionName::parse(name).unwrap()
}

/// Whole milliseconds, so that times compare equal after the store's microsecond rounding.
fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
}

fn letter(function: &str, dead_lettered_ms: i64) -> DeadLetter {
    DeadLetter {
        request_id: RequestId::new(),
        function_name: name(function),
        qualifier: "$LATEST".into(),
        payload: Bytes::from(format!("{{\"at\":{dead_lettered_ms}}}")),
        attempts: (0..3)
            .map(|n| Attempt {
                started_at: at(dead_lettered_ms - 1000 + n * 100),
                finished_at: at(dead_lettered_ms - 1000 + n * 100 + 10),
                error_type: Some("ValueError".into()),
                error_message: Some(format!("attempt {n} failed")),
            })
            .collect(),
        reason: DeadLetterReason::RetriesExhausted,
        enqueued_at: at(dead_lettered_ms - 2000),
        dead_lettered_at: at(dead_lettered_ms),
        redrive: None,
    }
}

mod cases {
    use super::*;

    pub(super) async fn put_is_idempotent_and_get_returns_the_letter(f: Fixture) {
        let sent = letter("f", 1_700_000_000_000);
        f.dead_letters.put(sent.clone()).await.unwrap();
        let mut again = sent.clone();
        again.reason = DeadLetterReason::EventAgeExceeded;
        f.dead_letters.put(again).await.unwrap();
        assert_eq!(f.dead_letters.get(sent.request_id).await.unwrap(), sent);

        let missing = f.dead_letters.get(RequestId::new()).await;
        assert!(
            matches!(missing, Err(Error::ResourceNotFound(_))),
            "{missing:?}"
        );
    }

    pub(super) async fn list_pages_through_a_filter(f: Fixture) {
        let base = 1_700_000_000_000;
        let mut mine = Vec::new();
        for n in 0..5 {
            let letter = letter("mine", base + n * 1000);
            f.dead_letters.put(letter.clone()).await.unwrap();
            mine.push(letter.request_id);
            f.dead_letters
                .put(super::letter("other", base + n * 1000))
                .await
                .unwrap();
        }
        let filter = DeadLetterFilter {
            function_name: Some(name("mine")),
            since: Some(at(base + 1000)),
            until: Some(at(base + 4000)),
        };
        let first = f.dead_letters.list(filter.clone(), None, 2).await.unwrap();
        let ids: Vec<_> = first.letters.iter().map(|l| l.request_id).collect();
        assert_eq!(ids, mine[1..3]);
        let second = f.dead_letters.list(filter, first.next, 2).await.unwrap();
        let ids: Vec<_> = second.letters.iter().map(|l| l.request_id).collect();
        assert_eq!(ids, mine[3..4]);
        assert!(second.next.is_none());

        let everything = f
            .dead_letters
            .list(DeadLetterFilter::default(), None, 1000)
            .await
            .unwrap();
        assert_eq!(
            everything.letters.len(),
            10,
            "the page size is capped, not refused"
        );
    }

    pub(super) async fn redrive_queues_a_fresh_linked_event_once(f: Fixture) {
        let sent = letter("f", 1_700_000_000_000);
        f.dead_letters.put(sent.clone()).await.unwrap();

        let redriven = f
            .dead_letters
            .redrive(Selection::One(sent.request_id))
            .await
            .unwrap();
        assert_eq!(redriven.len(), 1);
        assert_eq!(redriven[0].original, sent.request_id);
        assert_ne!(redriven[0].request_id, sent.request_id);

        let deliveries = f.queue.claim("t", 10, Duration::ZERO).await.unwrap();
        assert_eq!(deliveries.len(), 1);
        let event = &deliveries[0].event;
        assert_eq!(event.request_id, redriven[0].request_id);
        assert_eq!(event.redrive_of, Some(sent.request_id));
        assert_eq!(event.payload, sent.payload);
        assert!(event.attempts.is_empty(), "a redriven event starts afresh");

        let record = f
            .store
            .get_invocation(&redriven[0].request_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.status, InvocationStatus::Queued);
        assert_eq!(record.redrive_of, Some(sent.request_id));

        let marked = f.dead_letters.get(sent.request_id).await.unwrap();
        assert_eq!(
            marked.redrive.map(|mark| mark.request_id),
            Some(redriven[0].request_id)
        );
        let twice = f
            .dead_letters
            .redrive(Selection::One(sent.request_id))
            .await;
        assert!(
            matches!(twice, Err(Error::ResourceConflict(_))),
            "{twice:?}"
        );
        assert!(
            f.queue
                .claim("t", 10, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub(super) async fn redrive_by_filter_skips_redriven_letters(f: Fixture) {
        let letters: Vec<_> = (0..3).map(|n| letter("f", 1_700_000_000_000 + n)).collect();
        for letter in &letters {
            f.dead_letters.put(letter.clone()).await.unwrap();
        }
        f.dead_letters
            .put(letter("g", 1_700_000_000_000))
            .await
            .unwrap();
        f.dead_letters
            .redrive(Selection::One(letters[0].request_id))
            .await
            .unwrap();

        let filter = DeadLetterFilter {
            function_name: Some(name("f")),
            ..DeadLetterFilter::default()
        };
        let redriven = f
            .dead_letters
            .redrive(Selection::Matching(filter.clone()))
            .await
            .unwrap();
        let originals: Vec<_> = redriven.iter().map(|r| r.original).collect();
        assert_eq!(originals, [letters[1].request_id, letters[2].request_id]);
        let again = f
            .dead_letters
            .redrive(Selection::Matching(filter))
            .await
            .unwrap();
        assert!(again.is_empty());
        assert_eq!(f.queue.stats().await.unwrap().ready, 3);
    }

    pub(super) async fn purge_deletes_one_or_a_filtered_set(f: Fixture) {
        let letters: Vec<_> = (0..3).map(|n| letter("f", 1_700_000_000_000 + n)).collect();
        for letter in &letters {
            f.dead_letters.put(letter.clone()).await.unwrap();
        }
        let kept = letter("g", 1_700_000_000_000);
        f.dead_letters.put(kept.clone()).await.unwrap();

        let one = Selection::One(letters[0].request_id);
        assert_eq!(f.dead_letters.purge(one.clone()).await.unwrap(), 1);
        let gone = f.dead_letters.purge(one).await;
        assert!(matches!(gone, Err(Error::ResourceNotFound(_))), "{gone:?}");

        let filter = DeadLetterFilter {
            function_name: Some(name("f")),
            ..DeadLetterFilter::default()
        };
        assert_eq!(
            f.dead_letters
                .purge(Selection::Matching(filter))
                .await
                .unwrap(),
            2
        );
        let left = f
            .dead_letters
            .list(DeadLetterFilter::default(), None, 10)
            .await
            .unwrap();
        assert_eq!(left.letters, [kept]);
    }
}

macro_rules! suite {
    ($transport:ident) => {
        mod $transport {
            suite!(@case $transport, put_is_idempotent_and_get_returns_the_letter);
            suite!(@case $transport, list_pages_through_a_filter);
            suite!(@case $transport, redrive_queues_a_fresh_linked_event_once);
            suite!(@case $transport, redrive_by_filter_skips_redriven_letters);
            suite!(@case $transport, purge_deletes_one_or_a_filtered_set);
        }
    };
    (@case $transport:ident, $case:ident) => {
        #[tokio::test]
        async fn $case() {
            super::cases::$case(super::$transport().await).await;
        }
    };
}

suite!(local);
suite!(remote);
