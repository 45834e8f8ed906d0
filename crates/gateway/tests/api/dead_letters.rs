//! `/nimbus/v1/dead-letters`: listing, inspecting, redriving and purging, through the
//! `DeadLetters` trait (an in-memory stand-in here; the DLQ service has its own tests).

use bytes::Bytes;
use nimbus_core::{
    Attempt, DeadLetter, DeadLetterReason, DeadLetters as _, FunctionName, RequestId,
};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::harness::Gateway;

const DLQ: &str = "/nimbus/v1/dead-letters";

fn letter(function: &str, dead_lettered_at: OffsetDateTime, payload: &'static [u8]) -> DeadLetter {
    let started = dead_lettered_at - time::Duration::minutes(3);
    DeadLetter {
        request_id: RequestId::new(),
        function_name: FunctionName::parse(function).unwrap(),
        qualifier: "$LATEST".to_owned(),
        payload: Bytes::from_static(payload),
        attempts: (0..3)
            .map(|n| Attempt {
                started_at: started + time::Duration::minutes(n),
                finished_at: started + time::Duration::minutes(n) + time::Duration::seconds(1),
                error_type: Some("ValueError".to_owned()),
                error_message: Some(format!("attempt {n} failed")),
            })
            .collect(),
        reason: DeadLetterReason::RetriesExhausted,
        enqueued_at: started - time::Duration::seconds(1),
        dead_lettered_at,
        redrive: None,
    }
}

/// Five letters: three of `f` on May 1st, 2nd and 3rd, two of `g` on the 4th and 5th.
async fn five_letters(gateway: &Gateway) -> Vec<DeadLetter> {
    let letters = vec![
        letter("f", datetime!(2024-05-01 12:00 UTC), b"{\"n\":1}"),
        letter("f", datetime!(2024-05-02 12:00 UTC), b"{\"n\":2}"),
        letter("f", datetime!(2024-05-03 12:00 UTC), b"{\"n\":3}"),
        letter("g", datetime!(2024-05-04 12:00 UTC), b"{\"n\":4}"),
        letter("g", datetime!(2024-05-05 12:00 UTC), b"{\"n\":5}"),
    ];
    // Stored out of order: the listing sorts.
    for letter in letters.iter().rev() {
        gateway.dead_letters.put(letter.clone()).await.unwrap();
    }
    letters
}

fn ids(body: &Value) -> Vec<String> {
    body["deadLetters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["requestId"].as_str().unwrap().to_owned())
        .collect()
}

fn id_of(letters: &[DeadLetter], indexes: &[usize]) -> Vec<String> {
    indexes
        .iter()
        .map(|&i| letters[i].request_id.to_string())
        .collect()
}

async fn list(gateway: &Gateway, query: &str) -> Value {
    let answer = gateway.get(&format!("{DLQ}{query}")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

#[tokio::test]
async fn dead_letters_are_listed_oldest_first_filtered_and_paged() {
    let gateway = Gateway::start().await;
    let letters = five_letters(&gateway).await;

    let all = list(&gateway, "").await;
    assert_eq!(ids(&all), id_of(&letters, &[0, 1, 2, 3, 4]));
    assert!(all["nextToken"].is_null());
    let first = &all["deadLetters"][0];
    assert_eq!(first["functionName"], "f");
    assert_eq!(first["qualifier"], "$LATEST");
    assert_eq!(first["reason"], "RetriesExhausted");
    assert_eq!(first["attempts"], 3);
    assert_eq!(
        first["attemptHistory"][2]["errorMessage"],
        "attempt 2 failed"
    );
    assert_eq!(first["deadLetteredAt"], "2024-05-01T12:00:00Z");
    assert!(first["redrive"].is_null());
    // Listings leave the payload out and say how big it is.
    assert_eq!(first["payloadBytes"], 7);
    assert!(first.get("payload").is_none() && first.get("payloadBase64").is_none());

    assert_eq!(
        ids(&list(&gateway, "?function=g").await),
        id_of(&letters, &[3, 4])
    );
    assert_eq!(
        ids(&list(
            &gateway,
            "?since=2024-05-02T12:00:00Z&until=2024-05-04T12:00:00Z"
        )
        .await),
        id_of(&letters, &[1, 2])
    );
    // An unescaped `+` offset reads as a space in a query string; it still means `+`.
    assert_eq!(
        ids(&list(&gateway, "?function=f&since=2024-05-02T14:00:00+02:00").await),
        id_of(&letters, &[1, 2])
    );

    let mut paged = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = list(&gateway, &query).await;
        paged.extend(ids(&page));
        match page["nextToken"].as_str() {
            Some(token) => query = format!("?limit=2&next={token}"),
            None => break,
        }
    }
    assert_eq!(paged, id_of(&letters, &[0, 1, 2, 3, 4]));

    for bad in [
        "?since=yesterday",
        "?until=2024-13-01T00:00:00Z",
        "?since=2024-05-03T00:00:00Z&until=2024-05-01T00:00:00Z",
        "?limit=0",
        "?limit=101",
        "?next=nope",
        "?function=no%20such%20name",
        "?functon=f",
    ] {
        gateway
            .get(&format!("{DLQ}{bad}"))
            .await
            .assert_error(400, "InvalidParameterValueException");
    }
}

#[tokio::test]
async fn one_dead_letter_shows_its_payload() {
    let gateway = Gateway::start().await;
    // A number no f64 holds: the payload must come back as written.
    let json = letter(
        "f",
        datetime!(2024-05-01 12:00 UTC),
        b"{\"id\": 123456789012345678901234567890}",
    );
    let binary = letter("f", datetime!(2024-05-02 12:00 UTC), b"\x00\xffnot json");
    for letter in [&json, &binary] {
        gateway.dead_letters.put(letter.clone()).await.unwrap();
    }

    let answer = gateway.get(&format!("{DLQ}/{}", json.request_id)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer
            .text()
            .contains("\"payload\":{\"id\": 123456789012345678901234567890}"),
        "{}",
        answer.text()
    );
    let view = answer.json();
    assert_eq!(view["requestId"], json.request_id.to_string());
    assert_eq!(view["attempts"], 3);
    assert_eq!(view["attemptHistory"].as_array().unwrap().len(), 3);
    assert_eq!(view["enqueuedAt"], "2024-05-01T11:56:59Z");
    assert!(view.get("payloadBase64").is_none());

    let view = gateway
        .get(&format!("{DLQ}/{}", binary.request_id))
        .await
        .json();
    assert!(view.get("payload").is_none(), "{view}");
    assert_eq!(view["payloadBase64"], "AP9ub3QganNvbg==");

    gateway
        .get(&format!("{DLQ}/{}", RequestId::new()))
        .await
        .assert_error(404, "ResourceNotFoundException");
    gateway
        .get(&format!("{DLQ}/not-an-id"))
        .await
        .assert_error(400, "InvalidParameterValueException");
}

#[tokio::test]
async fn a_dead_letter_is_redriven_once() {
    let gateway = Gateway::start().await;
    let letters = five_letters(&gateway).await;
    let id = letters[1].request_id;

    let answer = gateway.post(&format!("{DLQ}/{id}/redrive")).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body = answer.json();
    let redriven = body["redriven"].as_array().unwrap();
    assert_eq!(redriven.len(), 1);
    assert_eq!(redriven[0]["originalRequestId"], id.to_string());
    let new_id = redriven[0]["requestId"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id.to_string());

    let view = gateway.get(&format!("{DLQ}/{id}")).await.json();
    assert_eq!(view["redrive"]["requestId"], new_id.as_str());
    assert!(view["redrive"]["at"].is_string());

    gateway
        .post(&format!("{DLQ}/{id}/redrive"))
        .await
        .assert_error(409, "ResourceConflictException");
    gateway
        .post(&format!("{DLQ}/{}/redrive", RequestId::new()))
        .await
        .assert_error(404, "ResourceNotFoundException");
    gateway
        .post(&format!("{DLQ}/nope/redrive"))
        .await
        .assert_error(400, "InvalidParameterValueException");
}

#[tokio::test]
async fn redriving_by_filter_needs_a_function_or_all() {
    let gateway = Gateway::start().await;
    let letters = five_letters(&gateway).await;

    for query in [
        "",
        "?all=false",
        "?since=2024-05-01T00:00:00Z",
        "?functon=f&all=true",
    ] {
        gateway
            .post(&format!("{DLQ}/redrive{query}"))
            .await
            .assert_error(400, "InvalidParameterValueException");
    }
    assert!(
        gateway
            .dead_letters
            .all()
            .iter()
            .all(|l| l.redrive.is_none())
    );

    let originals = |body: &Value| -> Vec<String> {
        body["redriven"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["originalRequestId"].as_str().unwrap().to_owned())
            .collect()
    };
    let answer = gateway
        .post(&format!(
            "{DLQ}/redrive?function=f&until=2024-05-03T00:00:00Z"
        ))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(originals(&answer.json()), id_of(&letters, &[0, 1]));

    // Letters already redriven are skipped.
    let rest = gateway
        .post(&format!("{DLQ}/redrive?all=true"))
        .await
        .json();
    assert_eq!(originals(&rest), id_of(&letters, &[2, 3, 4]));
    let none = gateway
        .post(&format!("{DLQ}/redrive?all=true"))
        .await
        .json();
    assert_eq!(originals(&none), Vec::<String>::new());
}

#[tokio::test]
async fn dead_letters_are_deleted_one_at_a_time_or_by_filter() {
    let gateway = Gateway::start().await;
    let letters = five_letters(&gateway).await;

    let id = letters[0].request_id;
    let deleted = gateway.delete(&format!("{DLQ}/{id}")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(deleted.body.is_empty());
    gateway
        .delete(&format!("{DLQ}/{id}"))
        .await
        .assert_error(404, "ResourceNotFoundException");
    gateway
        .get(&format!("{DLQ}/{id}"))
        .await
        .assert_error(404, "ResourceNotFoundException");

    for query in [
        "",
        "?all=false",
        "?until=2024-06-01T00:00:00Z",
        "?all=true&function=f&x=1",
    ] {
        gateway
            .delete(&format!("{DLQ}{query}"))
            .await
            .assert_error(400, "InvalidParameterValueException");
    }
    assert_eq!(gateway.dead_letters.all().len(), 4);

    let purged = gateway
        .delete(&format!("{DLQ}?function=g&since=2024-05-05T00:00:00Z"))
        .await;
    assert_eq!(purged.status, 200, "{}", purged.text());
    assert_eq!(purged.json(), serde_json::json!({"purged": 1}));
    let purged = gateway.delete(&format!("{DLQ}?function=f")).await.json();
    assert_eq!(purged["purged"], 2);
    assert_eq!(ids(&list(&gateway, "").await), id_of(&letters, &[3]));
    let purged = gateway.delete(&format!("{DLQ}?all=true")).await.json();
    assert_eq!(purged["purged"], 1);
    assert!(gateway.dead_letters.all().is_empty());
}
