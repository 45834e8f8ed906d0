//! The event invoke configuration API (`/2019-09-25/functions/{FunctionName}/
//! event-invoke-config`): its five operations, their validation, and their 404s.

use nimbus_core::EventInvokeConfig;
use nimbus_core::FunctionName;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::harness::{FUNCTIONS, Gateway};

const ARN_PREFIX: &str = "arn:aws:lambda:us-east-1:000000000000:function:";

fn config_path(name: &str) -> String {
    format!("/2019-09-25/functions/{name}/event-invoke-config")
}

fn arn(name: &str) -> String {
    format!("{ARN_PREFIX}{name}")
}

async fn get_config(gateway: &Gateway, name: &str) -> Value {
    let answer = gateway.get(&config_path(name)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

async fn put(gateway: &Gateway, name: &str, body: &Value) -> Value {
    let answer = gateway.put_json(&config_path(name), body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

async fn update(gateway: &Gateway, name: &str, body: &Value) -> Value {
    let answer = gateway.post_json(&config_path(name), body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

#[tokio::test]
async fn a_config_is_put_read_and_deleted_in_lambdas_shape() {
    let gateway = Gateway::start().await;
    gateway.create("worker").await;
    gateway.create("sink").await;
    let before = OffsetDateTime::now_utc().unix_timestamp() as f64 - 1.0;

    let body = json!({
        "MaximumRetryAttempts": 1,
        "MaximumEventAgeInSeconds": 3600,
        "DestinationConfig": {"OnFailure": {"Destination": arn("sink")}},
    });
    let stored = put(&gateway, "worker", &body).await;
    assert_eq!(stored["FunctionArn"], format!("{}:$LATEST", arn("worker")));
    assert_eq!(stored["MaximumRetryAttempts"], 1);
    assert_eq!(stored["MaximumEventAgeInSeconds"], 3600);
    assert_eq!(
        stored["DestinationConfig"],
        json!({"OnSuccess": {}, "OnFailure": {"Destination": arn("sink")}})
    );
    // rest-json timestamps: epoch seconds, a number.
    let last_modified = stored["LastModified"].as_f64().expect("a number");
    assert!(last_modified >= before && last_modified < before + 60.0);

    assert_eq!(get_config(&gateway, "worker").await, stored);
    // By ARN and with the $LATEST qualifier too.
    assert_eq!(get_config(&gateway, &arn("worker")).await, stored);
    let by_qualifier = gateway
        .get(&format!("{}?Qualifier=$LATEST", config_path("worker")))
        .await;
    assert_eq!(by_qualifier.json(), stored);

    let deleted = gateway.delete(&config_path("worker")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(deleted.body.is_empty());
    gateway
        .get(&config_path("worker"))
        .await
        .assert_error(404, "ResourceNotFoundException");
    gateway
        .delete(&config_path("worker"))
        .await
        .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn put_replaces_the_whole_config() {
    let gateway = Gateway::start().await;
    gateway.create("f").await;
    put(
        &gateway,
        "f",
        &json!({"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 600}),
    )
    .await;
    let replaced = put(&gateway, "f", &json!({"MaximumRetryAttempts": 2})).await;
    assert_eq!(replaced["MaximumRetryAttempts"], 2);
    assert!(
        replaced.get("MaximumEventAgeInSeconds").is_none(),
        "{replaced}"
    );
    // An empty put is a config of defaults.
    let empty = put(&gateway, "f", &json!({})).await;
    assert!(empty.get("MaximumRetryAttempts").is_none(), "{empty}");
    assert_eq!(
        empty["DestinationConfig"],
        json!({"OnSuccess": {}, "OnFailure": {}})
    );
}

#[tokio::test]
async fn update_merges_the_members_given_and_creates_a_missing_config() {
    let gateway = Gateway::start().await;
    gateway.create("f").await;
    gateway.create("ok-sink").await;
    gateway.create("bad-sink").await;

    // No config yet: update creates one.
    let created = update(&gateway, "f", &json!({"MaximumRetryAttempts": 1})).await;
    assert_eq!(created["MaximumRetryAttempts"], 1);
    assert_eq!(get_config(&gateway, "f").await, created);

    let merged = update(&gateway, "f", &json!({"MaximumEventAgeInSeconds": 120})).await;
    assert_eq!(merged["MaximumRetryAttempts"], 1);
    assert_eq!(merged["MaximumEventAgeInSeconds"], 120);
    assert!(merged["LastModified"].as_f64() >= created["LastModified"].as_f64());

    let with_success = update(
        &gateway,
        "f",
        &json!({"DestinationConfig": {"OnSuccess": {"Destination": arn("ok-sink")}}}),
    )
    .await;
    let with_both = update(
        &gateway,
        "f",
        &json!({"DestinationConfig": {"OnFailure": {"Destination": arn("bad-sink")}}}),
    )
    .await;
    assert_eq!(
        with_success["DestinationConfig"]["OnSuccess"]["Destination"],
        arn("ok-sink")
    );
    assert_eq!(
        with_both["DestinationConfig"],
        json!({
            "OnSuccess": {"Destination": arn("ok-sink")},
            "OnFailure": {"Destination": arn("bad-sink")},
        })
    );
    assert_eq!(with_both["MaximumRetryAttempts"], 1);
    assert_eq!(with_both["MaximumEventAgeInSeconds"], 120);

    // A destination given without an ARN is removed; the other stays.
    let removed = update(
        &gateway,
        "f",
        &json!({"DestinationConfig": {"OnSuccess": {}}}),
    )
    .await;
    assert_eq!(
        removed["DestinationConfig"],
        json!({"OnSuccess": {}, "OnFailure": {"Destination": arn("bad-sink")}})
    );
    assert_eq!(get_config(&gateway, "f").await, removed);
}

#[tokio::test]
async fn invalid_configs_are_refused_and_change_nothing() {
    let gateway = Gateway::start().await;
    gateway.create("f").await;
    let stored = put(&gateway, "f", &json!({"MaximumRetryAttempts": 1})).await;

    let cases = [
        (json!({"MaximumRetryAttempts": 3}), "maximumRetryAttempts"),
        (json!({"MaximumRetryAttempts": -1}), "maximumRetryAttempts"),
        (
            json!({"MaximumEventAgeInSeconds": 59}),
            "maximumEventAgeInSeconds",
        ),
        (
            json!({"MaximumEventAgeInSeconds": 21601}),
            "maximumEventAgeInSeconds",
        ),
        (
            json!({"DestinationConfig": {"OnFailure": {
                "Destination": "arn:aws:sqs:us-east-1:000000000000:failures"}}}),
            "only to Lambda functions",
        ),
        (
            json!({"DestinationConfig": {"OnSuccess": {
                "Destination": "arn:aws:sns:us-east-1:000000000000:topic"}}}),
            "only to Lambda functions",
        ),
        (
            json!({"DestinationConfig": {"OnSuccess": {"Destination": arn("ghost")}}}),
            "not a function of this Nimbus",
        ),
        (
            json!({"DestinationConfig": {"OnSuccess": {"Destination": format!("{}:3", arn("f"))}}}),
            "is not a function of this Nimbus",
        ),
        (
            json!({"DestinationConfig": {"OnSuccess": {"Destination": "f"}}}),
            "Lambda function ARN",
        ),
        (json!({"MaximumRetryAttempts": "two"}), ""),
    ];
    for (body, expected) in cases {
        for answer in [
            gateway.put_json(&config_path("f"), &body).await,
            gateway.post_json(&config_path("f"), &body).await,
        ] {
            let message = answer.assert_error(400, "InvalidParameterValueException");
            assert!(message.contains(expected), "{body}: {message}");
        }
    }
    let not_json = gateway
        .send(
            gateway
                .http
                .put(gateway.url(&config_path("f")))
                .body("{\"MaximumRetryAttempts\": "),
        )
        .await;
    not_json.assert_error(400, "InvalidRequestContentException");
    assert_eq!(get_config(&gateway, "f").await, stored);
}

#[tokio::test]
async fn unknown_functions_and_versions_are_404_for_every_operation() {
    let gateway = Gateway::start().await;
    gateway.create("real").await;
    let body = json!({"MaximumRetryAttempts": 0});
    for path in [
        config_path("ghost"),
        format!("{}?Qualifier=1", config_path("real")),
        config_path("real:prod"),
    ] {
        gateway
            .get(&path)
            .await
            .assert_error(404, "ResourceNotFoundException");
        gateway
            .put_json(&path, &body)
            .await
            .assert_error(404, "ResourceNotFoundException");
        gateway
            .post_json(&path, &body)
            .await
            .assert_error(404, "ResourceNotFoundException");
        gateway
            .delete(&path)
            .await
            .assert_error(404, "ResourceNotFoundException");
    }
    gateway
        .get(&format!("{}/list", config_path("ghost")))
        .await
        .assert_error(404, "ResourceNotFoundException");
    // A function without a config: 404 with its own message.
    let message = gateway
        .get(&config_path("real"))
        .await
        .assert_error(404, "ResourceNotFoundException");
    assert!(message.contains("EventInvokeConfig"), "{message}");
    // A name and a Qualifier that disagree are a bad request.
    gateway
        .get(&format!("{}?Qualifier=1", config_path("real:$LATEST")))
        .await
        .assert_error(400, "InvalidParameterValueException");
}

#[tokio::test]
async fn configs_are_listed_a_page_at_a_time() {
    let gateway = Gateway::start().await;
    gateway.create("f").await;
    let list = |query: &'static str| {
        let path = format!("{}/list{query}", config_path("f"));
        let gateway = &gateway;
        async move { gateway.get(&path).await }
    };

    let empty = list("").await;
    assert_eq!(empty.status, 200, "{}", empty.text());
    assert_eq!(empty.json(), json!({"FunctionEventInvokeConfigs": []}));

    let latest = put(&gateway, "f", &json!({"MaximumRetryAttempts": 0})).await;
    // Nimbus' API only writes $LATEST; a second qualifier is written underneath, to page.
    let mut other = EventInvokeConfig::empty();
    other.maximum_event_age_secs = Some(60);
    gateway
        .store
        .put_event_invoke_config(&FunctionName::parse("f").unwrap(), "v1", &other)
        .await
        .unwrap();

    let all = list("").await.json();
    let configs = all["FunctionEventInvokeConfigs"].as_array().unwrap();
    assert_eq!(configs.len(), 2);
    assert_eq!(configs[0], latest);
    assert_eq!(configs[1]["FunctionArn"], format!("{}:v1", arn("f")));
    assert_eq!(configs[1]["MaximumEventAgeInSeconds"], 60);
    assert!(all.get("NextMarker").is_none());

    let first = list("?MaxItems=1").await.json();
    assert_eq!(first["FunctionEventInvokeConfigs"], json!([latest]));
    assert_eq!(first["NextMarker"], "$LATEST");
    let second = list("?MaxItems=1&Marker=$LATEST").await.json();
    assert_eq!(
        second["FunctionEventInvokeConfigs"][0]["FunctionArn"],
        configs[1]["FunctionArn"]
    );
    assert!(second.get("NextMarker").is_none(), "{second}");

    for bad in ["?MaxItems=0", "?MaxItems=51", "?MaxItems=many"] {
        list(bad)
            .await
            .assert_error(400, "InvalidParameterValueException");
    }
}

#[tokio::test]
async fn a_config_is_deleted_with_its_function() {
    let gateway = Gateway::start().await;
    gateway.create("brief").await;
    put(&gateway, "brief", &json!({"MaximumRetryAttempts": 0})).await;
    let deleted = gateway.delete(&format!("{FUNCTIONS}/brief")).await;
    assert_eq!(deleted.status, 204);
    gateway
        .get(&config_path("brief"))
        .await
        .assert_error(404, "ResourceNotFoundException");
    // A new function of the same name starts without one.
    gateway.create("brief").await;
    let message = gateway
        .get(&config_path("brief"))
        .await
        .assert_error(404, "ResourceNotFoundException");
    assert!(message.contains("EventInvokeConfig"), "{message}");
}
