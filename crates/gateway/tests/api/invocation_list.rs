//! `GET /nimbus/v1/invocations`: records newest first, filtered and paged, and the attempt
//! history and redrive link of a record.

use std::time::Duration;

use nimbus_core::{
    Attempt, FunctionName, InvocationRecord, InvocationStatus, InvocationType, RequestId,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

use nimbus_store::RecordWriterConfig;

use crate::harness::{FUNCTIONS, Gateway};

/// A gateway whose record writer commits each record at once: the listing reads the store,
/// so these tests should not depend on when the writer flushes a partial batch.
async fn gateway() -> Gateway {
    Gateway::start_with(
        None,
        RecordWriterConfig {
            max_batch: 1,
            ..RecordWriterConfig::default()
        },
    )
    .await
}

/// The listing reads the store, which the record writer fills a little after the answer.
async fn list_until(gateway: &Gateway, query: &str, count: usize) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = gateway.get(&format!("/nimbus/v1/invocations{query}")).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let body = answer.json();
        let found = body["invocations"].as_array().unwrap().len();
        if found >= count || tokio::time::Instant::now() > deadline {
            assert_eq!(found, count, "{body}");
            return body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ids(body: &Value) -> Vec<String> {
    body["invocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requestId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn invocations_are_listed_newest_first_by_function_and_status() {
    let gateway = gateway().await;
    gateway.create("echo").await;
    gateway.create("fail-often").await;
    let mut invoked = Vec::new();
    for name in ["echo", "fail-often", "echo", "fail-often", "echo"] {
        let answer = gateway.invoke(name, "{}").await;
        assert_eq!(answer.status, 200);
        invoked.push(answer.request_id);
    }
    let event = gateway
        .send(
            gateway
                .http
                .post(gateway.url(&format!("{FUNCTIONS}/echo/invocations")))
                .header("x-amz-invocation-type", "Event")
                .body("{}"),
        )
        .await;
    assert_eq!(event.status, 202);
    invoked.push(event.request_id.clone());

    let all = list_until(&gateway, "", 6).await;
    let newest_first: Vec<String> = invoked.iter().rev().cloned().collect();
    assert_eq!(ids(&all), newest_first);
    assert!(all["nextToken"].is_null());

    let echo = list_until(&gateway, "?function=echo", 4).await;
    assert!(
        echo["invocations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["functionName"] == "echo")
    );
    let failed = list_until(&gateway, "?function=fail-often&status=failed", 2).await;
    assert_eq!(failed["invocations"][0]["errorType"], "ValueError");
    list_until(&gateway, "?function=fail-often&status=succeeded", 0).await;
    let queued = list_until(&gateway, "?status=queued", 1).await;
    assert_eq!(
        queued["invocations"][0]["requestId"],
        event.request_id.as_str()
    );
    assert_eq!(queued["invocations"][0]["invocationType"], "Event");
    list_until(&gateway, "?function=nobody", 0).await;
}

#[tokio::test]
async fn invocations_are_paged_with_next_tokens() {
    let gateway = gateway().await;
    gateway.create("echo").await;
    for _ in 0..5 {
        assert_eq!(gateway.invoke("echo", "{}").await.status, 200);
    }
    let all = ids(&list_until(&gateway, "", 5).await);

    let mut paged = Vec::new();
    let mut query = "?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = gateway
            .get(&format!("/nimbus/v1/invocations{query}"))
            .await
            .json();
        pages += 1;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 2);
        paged.extend(page_ids);
        match page["nextToken"].as_str() {
            Some(token) => query = format!("?limit=2&next={token}"),
            None => break,
        }
    }
    assert_eq!(paged, all);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn bad_listing_parameters_are_refused() {
    let gateway = gateway().await;
    for query in [
        "?status=done",
        "?status=Succeeded",
        "?next=garbage",
        "?next=12_not-an-id",
        "?limit=0",
        "?limit=1001",
        "?limit=ten",
        "?function=bad%20name",
        "?fn=echo",
    ] {
        gateway
            .get(&format!("/nimbus/v1/invocations{query}"))
            .await
            .assert_error(400, "InvalidParameterValueException");
    }
    let ok = gateway.get("/nimbus/v1/invocations?limit=1000").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json(), json!({"invocations": [], "nextToken": null}));
}

#[tokio::test]
async fn a_record_shows_each_attempt_and_what_it_was_redriven_from() {
    let gateway = gateway().await;
    let started = OffsetDateTime::now_utc() - time::Duration::seconds(90);
    let original = RequestId::new();
    let record = InvocationRecord {
        request_id: RequestId::new(),
        function_name: FunctionName::parse("worker").unwrap(),
        function_version: "$LATEST".to_owned(),
        invocation_type: InvocationType::Event,
        status: InvocationStatus::Succeeded,
        attempts: 2,
        created_at: started,
        started_at: Some(started),
        finished_at: Some(started + time::Duration::seconds(61)),
        duration_ms: Some(250.0),
        error_type: None,
        error_message: None,
        attempt_history: vec![
            Attempt {
                started_at: started,
                finished_at: started + time::Duration::milliseconds(500),
                error_type: Some("ValueError".to_owned()),
                error_message: Some("boom".to_owned()),
            },
            Attempt {
                started_at: started + time::Duration::seconds(60),
                finished_at: started + time::Duration::milliseconds(60_250),
                error_type: None,
                error_message: None,
            },
        ],
        redrive_of: Some(original),
    };
    gateway
        .store
        .put_invocations(std::slice::from_ref(&record))
        .await
        .unwrap();

    let view = gateway
        .get(&format!("/nimbus/v1/invocations/{}", record.request_id))
        .await
        .json();
    assert_eq!(view["attempts"], 2);
    assert_eq!(view["redriveOf"], original.to_string());
    let history = view["attemptHistory"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["errorType"], "ValueError");
    assert_eq!(history[0]["errorMessage"], "boom");
    assert_eq!(history[0]["durationMs"], 500.0);
    assert!(history[1]["errorType"].is_null());
    for attempt in history {
        for at in ["startedAt", "finishedAt"] {
            let text = attempt[at].as_str().unwrap();
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
        }
    }
    // The listing carries the same view.
    let listed = list_until(&gateway, "?function=worker", 1).await;
    assert_eq!(listed["invocations"][0], view);
}
