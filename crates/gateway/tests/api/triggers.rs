//! HTTP triggers' control side and the rules the serving side keeps: function URL
//! configurations through the Lambda API (validation, conflicts, paging), routes through
//! `/nimbus/v1/routes` (templates, methods, conflicts, targets), and what a route hands the
//! invoker and the queue. (`crates/cli/tests/http_triggers.rs` runs real functions.)

use serde_json::{Value, json};

use crate::harness::{FUNCTIONS, Gateway};

const URLS: &str = "/2021-10-31/functions";
const ROUTES: &str = "/nimbus/v1/routes";

#[tokio::test]
async fn function_url_configs_are_validated_like_lambda() {
    let gateway = Gateway::start().await;
    gateway.create("web").await;
    let url = format!("{URLS}/web/url");
    for (body, error) in [
        (json!({}), "InvalidParameterValueException"),
        (
            json!({"AuthType": "OPEN"}),
            "InvalidParameterValueException",
        ),
        (
            json!({"AuthType": "NONE", "InvokeMode": "RESPONSE_STREAM"}),
            "InvalidParameterValueException",
        ),
        (
            json!({"AuthType": "NONE", "Cors": {"AllowOrigins": ["not an origin"]}}),
            "InvalidParameterValueException",
        ),
        (
            json!({"AuthType": "NONE", "Cors": {"MaxAge": 86401}}),
            "InvalidParameterValueException",
        ),
    ] {
        gateway
            .post_json(&url, &body)
            .await
            .assert_error(400, error);
    }
    let none = json!({"AuthType": "NONE"});
    gateway
        .post_json(&format!("{URLS}/nope/url"), &none)
        .await
        .assert_error(404, "ResourceNotFoundException");
    // A qualifier is an alias that exists, never a version number.
    gateway
        .post_json(&format!("{url}?Qualifier=1"), &none)
        .await
        .assert_error(400, "InvalidParameterValueException");
    gateway
        .post_json(&format!("{url}?Qualifier=live"), &none)
        .await
        .assert_error(404, "ResourceNotFoundException");
    // Nothing was created by any of that.
    gateway
        .get(&url)
        .await
        .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn function_urls_are_created_once_listed_by_page_updated_and_deleted() {
    let gateway = Gateway::start().await;
    gateway.create("web").await;
    let published = gateway
        .post_json(&format!("{FUNCTIONS}/web/versions"), &json!({}))
        .await;
    assert_eq!(published.status, 201, "{}", published.text());
    let alias = gateway
        .post_json(
            &format!("{FUNCTIONS}/web/aliases"),
            &json!({"Name": "live", "FunctionVersion": "1"}),
        )
        .await;
    assert_eq!(alias.status, 201, "{}", alias.text());

    let url = format!("{URLS}/web/url");
    let created = gateway
        .post_json(&url, &json!({"AuthType": "AWS_IAM"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    assert!(created.get("LastModifiedTime").is_none());
    assert!(
        created["FunctionArn"]
            .as_str()
            .unwrap()
            .ends_with(":function:web")
    );
    gateway
        .post_json(&url, &json!({"AuthType": "NONE"}))
        .await
        .assert_error(409, "ResourceConflictException");
    let live = gateway
        .post_json(
            &format!("{URLS}/web:live/url"),
            &json!({"AuthType": "NONE"}),
        )
        .await;
    assert_eq!(live.status, 201, "{}", live.text());
    assert!(
        live.json()["FunctionArn"]
            .as_str()
            .unwrap()
            .ends_with(":function:web:live")
    );
    assert_ne!(live.json()["FunctionUrl"], created["FunctionUrl"]);

    let first = gateway
        .get(&format!("{URLS}/web/urls?MaxItems=1"))
        .await
        .json();
    assert_eq!(first["FunctionUrlConfigs"].as_array().unwrap().len(), 1);
    let marker = first["NextMarker"].as_str().unwrap();
    let second = gateway
        .get(&format!("{URLS}/web/urls?MaxItems=1&Marker={marker}"))
        .await
        .json();
    assert_eq!(second["FunctionUrlConfigs"].as_array().unwrap().len(), 1);
    assert!(second.get("NextMarker").is_none());
    assert_ne!(
        first["FunctionUrlConfigs"][0]["FunctionUrl"],
        second["FunctionUrlConfigs"][0]["FunctionUrl"]
    );

    let updated = gateway
        .put_json(
            &url,
            &json!({"AuthType": "NONE", "Cors": {"AllowOrigins": ["*"]}}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    let updated = updated.json();
    assert_eq!(updated["AuthType"], "NONE");
    assert_eq!(updated["FunctionUrl"], created["FunctionUrl"]);
    assert_eq!(updated["CreationTime"], created["CreationTime"]);
    assert_eq!(
        gateway.get(&url).await.json()["Cors"],
        json!({"AllowOrigins": ["*"]})
    );

    assert_eq!(gateway.delete(&url).await.status, 204);
    gateway
        .delete(&url)
        .await
        .assert_error(404, "ResourceNotFoundException");
    // Deleting the function takes its URLs with it.
    assert_eq!(
        gateway.delete(&format!("{FUNCTIONS}/web")).await.status,
        204
    );
    gateway.create("web").await;
    gateway
        .get(&format!("{url}?Qualifier=live"))
        .await
        .assert_error(404, "ResourceNotFoundException");
}

fn route(method: &str, path: &str, function: &str) -> Value {
    json!({"method": method, "path": path, "functionName": function})
}

#[tokio::test]
async fn routes_are_checked_before_they_are_stored() {
    let gateway = Gateway::start().await;
    gateway.create("getOrder").await;
    for body in [
        route("FETCH", "/orders", "getOrder"),
        route("GET", "orders", "getOrder"),
        route("GET", "/orders/{id}/{id}", "getOrder"),
        route("GET", "/{proxy+}/more", "getOrder"),
        route("GET", "/lambda-url/x", "getOrder"),
        json!({"method": "GET", "path": "/a", "functionName": "getOrder", "timeoutMs": 10}),
        json!({"method": "GET", "path": "/a", "functionName": "getOrder", "invocationType": "DryRun"}),
        json!({"method": "GET", "path": "/a", "functionName": "getOrder", "authType": "KEY"}),
        json!({"method": "GET", "path": "/a", "functionName": "getOrder", "colour": "red"}),
    ] {
        gateway
            .post_json(ROUTES, &body)
            .await
            .assert_error(400, "InvalidParameterValueException");
    }
    gateway
        .post_json(ROUTES, &route("GET", "/orders", "nope"))
        .await
        .assert_error(404, "ResourceNotFoundException");
    gateway
        .post_json(
            ROUTES,
            &json!({"method": "GET", "path": "/a", "functionName": "getOrder", "qualifier": "9"}),
        )
        .await
        .assert_error(404, "ResourceNotFoundException");
    assert_eq!(gateway.get(ROUTES).await.json(), json!({"routes": []}));
}

#[tokio::test]
async fn routes_conflict_by_method_and_path_shape_and_are_removed_by_id() {
    let gateway = Gateway::start().await;
    gateway.create("getOrder").await;
    let created = gateway
        .post_json(ROUTES, &route("get", "/orders/{id}", "getOrder"))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    assert_eq!(created["routeKey"], "GET /orders/{id}");
    assert_eq!(created["invocationType"], "RequestResponse");
    assert_eq!(created["timeoutMs"], 29_000);
    assert_eq!(created["authType"], "NONE");
    gateway
        .post_json(ROUTES, &route("GET", "/orders/{orderId}", "getOrder"))
        .await
        .assert_error(409, "ResourceConflictException");
    let other_method = gateway
        .post_json(ROUTES, &route("PUT", "/orders/{orderId}", "getOrder"))
        .await;
    assert_eq!(other_method.status, 201, "{}", other_method.text());

    let id = created["routeId"].as_str().unwrap();
    assert_eq!(gateway.get(&format!("{ROUTES}/{id}")).await.json(), created);
    assert_eq!(
        gateway.get(ROUTES).await.json()["routes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(gateway.delete(&format!("{ROUTES}/{id}")).await.status, 204);
    gateway
        .get(&format!("{ROUTES}/{id}"))
        .await
        .assert_error(404, "ResourceNotFoundException");
    gateway
        .delete(&format!("{ROUTES}/{id}"))
        .await
        .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn a_route_hands_the_invoker_an_event_and_an_async_one_queues_it() {
    let gateway = Gateway::start().await;
    gateway.create("echo").await;
    gateway.create("fail-route").await;
    for body in [
        route("POST", "/echo/{name}", "echo"),
        json!({"method": "PUT", "path": "/later", "functionName": "echo", "invocationType": "Event"}),
        route("GET", "/fails", "fail-route"),
    ] {
        assert_eq!(gateway.post_json(ROUTES, &body).await.status, 201);
    }

    // The in-test invoker answers its payload: the event, a bare JSON value, so a 200.
    let answer = gateway
        .post_json("/api/echo/ada?x=1", &json!({"hello": "world"}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let event = answer.json();
    assert_eq!(event["routeKey"], "POST /echo/{name}");
    assert_eq!(event["pathParameters"], json!({"name": "ada"}));
    assert_eq!(event["body"], r#"{"hello":"world"}"#);
    assert_eq!(gateway.invoker.last().function.name.as_str(), "echo");

    let queued = gateway
        .send(gateway.http.put(gateway.url("/api/later")))
        .await;
    assert_eq!(queued.status, 202, "{}", queued.text());
    let request_id = queued.header("x-amzn-requestid").unwrap().to_owned();
    assert_eq!(queued.json()["requestId"], request_id.as_str());
    let events = gateway.take_queued().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].request_id.to_string(), request_id);
    let payload: Value = serde_json::from_slice(&events[0].payload).unwrap();
    assert_eq!(payload["routeKey"], "PUT /later");
    let record = gateway
        .get(&format!("/nimbus/v1/invocations/{request_id}"))
        .await;
    assert_eq!(record.status, 200, "{}", record.text());
    assert_eq!(record.json()["status"], "queued");

    let failed = gateway.get("/api/fails").await;
    assert_eq!(failed.status, 502);
    assert_eq!(failed.json(), json!({"message": "Internal Server Error"}));
    // A body over the sync limit is refused before the function runs.
    let calls = gateway.invoker.calls();
    let big = "x".repeat(7 * 1024 * 1024);
    let answer = gateway
        .send(gateway.http.post(gateway.url("/api/echo/big")).body(big))
        .await;
    assert_eq!(answer.status, 413);
    assert_eq!(gateway.invoker.calls(), calls);
}
