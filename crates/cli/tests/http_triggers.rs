//! End to end: HTTP triggers on the real `nimbus dev` binary. Routes declared with `nimbus
//! route add` and function URLs created through the Lambda API, called with a real HTTP
//! client: the payload 2.0 event the function sees, the response mapped back, async routes,
//! the integration timeout, CORS, and a web framework's Lambda adapter (`lambda_http` with
//! axum) serving its routes unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Platform, function_dir, target_dir};
use serde_json::{Value, json};

const FUNCTIONS: &str = r#"
import base64, json, time

def echo(event, context):
    return {
        "statusCode": 201,
        "headers": {"content-type": "application/json", "x-order": (event.get("pathParameters") or {}).get("id", "-")},
        "cookies": ["seen=1; Path=/", "theme=dark"],
        "body": json.dumps({"event": event}),
    }

def reverse(event, context):
    data = base64.b64decode(event["body"]) if event["isBase64Encoded"] else event["body"].encode()
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/octet-stream"},
        "body": base64.b64encode(data[::-1]).decode(),
        "isBase64Encoded": True,
    }

def plain(event, context):
    return {"plain": True, "path": event["rawPath"]}

def fail(event, context):
    raise RuntimeError("boom")

def slow(event, context):
    time.sleep(float(event.get("queryStringParameters", {}).get("s", "5")))
    return {"late": True}
"#;

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

fn deploy(platform: &Platform, name: &str, handler: &str) {
    let dir = function_dir(&[("app.py", FUNCTIONS)]);
    platform.deploy(
        dir.path(),
        name,
        "python3.12",
        &["--handler", handler, "--timeout", "10"],
    );
}

/// `nimbus route add ARGS`, which must succeed.
fn add_route(platform: &Platform, args: &[&str]) {
    let output = platform.cli(&[&["route", "add"], args].concat());
    assert!(
        output.status.success(),
        "route add {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn get_json(url: &str) -> Value {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

/// Polls the invocation's record until it says `succeeded`.
async fn wait_until_succeeded(platform: &Platform, request_id: &str) -> Value {
    let url = format!("{}/nimbus/v1/invocations/{request_id}", platform.endpoint);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = http().get(&url).send().await.unwrap();
        if response.status() == 200 {
            let record: Value = response.json().await.unwrap();
            if record["status"] == "succeeded" {
                return record;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the invocation did not succeed in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks an answer's status and its JSON body.
async fn expect_json(response: reqwest::Response, status: u16, body: Value) {
    assert_eq!(response.status(), status);
    assert_eq!(response.json::<Value>().await.unwrap(), body);
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_sync_route_maps_the_request_to_an_event_and_the_result_to_a_response() {
    let platform = Platform::dev(&[]);
    deploy(&platform, "getOrder", "app.echo");
    deploy(&platform, "reverse", "app.reverse");
    deploy(&platform, "plain", "app.plain");
    deploy(&platform, "broken", "app.fail");
    add_route(&platform, &["GET", "/orders/{id}", "getOrder"]);
    add_route(&platform, &["POST", "/reverse", "reverse"]);
    add_route(&platform, &["ANY", "/plain/{proxy+}", "plain"]);
    add_route(&platform, &["GET", "/broken", "broken"]);

    // The same method and path shape again is a conflict.
    let again = platform.cli(&["route", "add", "GET", "/orders/{orderId}", "plain"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("ResourceConflictException"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let listed = String::from_utf8(platform.cli(&["route", "list"]).stdout).unwrap();
    assert!(
        listed.contains("/orders/{id}") && listed.contains("getOrder"),
        "{listed}"
    );

    let api = format!("{}/api", platform.endpoint);
    let response = http()
        .get(format!("{api}/orders/42?color=red&color=blue&q=a%20b"))
        .header("x-custom", "yes")
        .header("cookie", "a=1; b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "x-order").as_deref(), Some("42"));
    let cookies: Vec<_> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies, ["seen=1; Path=/", "theme=dark"]);
    let request_id = header(&response, "x-amzn-requestid").unwrap();
    let event = response.json::<Value>().await.unwrap()["event"].clone();
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "GET /orders/{id}");
    assert_eq!(event["rawPath"], "/orders/42");
    assert_eq!(event["rawQueryString"], "color=red&color=blue&q=a%20b");
    assert_eq!(
        event["queryStringParameters"],
        json!({"color": "red,blue", "q": "a b"})
    );
    assert_eq!(event["pathParameters"], json!({"id": "42"}));
    assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
    assert_eq!(event["headers"]["x-custom"], "yes");
    assert_eq!(event["requestContext"]["http"]["method"], "GET");
    assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(event["requestContext"]["requestId"], request_id.as_str());
    assert_eq!(event["isBase64Encoded"], false);
    // The invocation has a record under the request's id, like any other.
    let record = wait_until_succeeded(&platform, &request_id).await;
    assert_eq!(record["functionName"], "getOrder");

    // A binary body goes in as base64 and comes back decoded.
    let response = http()
        .post(format!("{api}/reverse"))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 1, 2, 255, 254])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        [254, 255, 2, 1, 0]
    );

    // A result without statusCode is a 200 with that JSON; a greedy path takes the rest.
    let response = http()
        .delete(format!("{api}/plain/a/b/c"))
        .send()
        .await
        .unwrap();
    expect_json(
        response,
        200,
        json!({"plain": true, "path": "/plain/a/b/c"}),
    )
    .await;

    // A failing function is a 502; no route is a 404; neither is a Lambda error shape.
    let response = http().get(format!("{api}/broken")).send().await.unwrap();
    expect_json(response, 502, json!({"message": "Internal Server Error"})).await;
    for (method, path) in [("GET", "/nowhere"), ("POST", "/orders/42")] {
        let response = http()
            .request(method.parse().unwrap(), format!("{api}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"message": "Not Found"})
        );
    }

    // Removed by method and path, the route answers no more.
    let removed = platform.cli(&["route", "rm", "GET", "/orders/{id}"]);
    assert!(removed.status.success());
    let response = http().get(format!("{api}/orders/42")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn an_async_route_answers_202_and_the_event_runs() {
    let platform = Platform::dev(&[]);
    deploy(&platform, "putOrder", "app.plain");
    add_route(&platform, &["PUT", "/putOrder", "putOrder", "--async"]);
    let url = format!("{}/api/putOrder", platform.endpoint);

    let response = http().put(&url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 202);
    let request_id = header(&response, "x-amzn-requestid").unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["requestId"], request_id.as_str());
    let record = wait_until_succeeded(&platform, &request_id).await;
    assert_eq!(record["invocationType"], "Event");

    // The caller may ask for a synchronous run of an async route.
    let response = http()
        .put(&url)
        .header("x-amz-invocation-type", "RequestResponse")
        .send()
        .await
        .unwrap();
    expect_json(response, 200, json!({"plain": true, "path": "/putOrder"})).await;
}

#[tokio::test]
async fn a_sync_route_past_its_integration_timeout_answers_504() {
    let platform = Platform::dev(&[]);
    deploy(&platform, "slow", "app.slow");
    add_route(&platform, &["GET", "/slow", "slow", "--timeout", "500ms"]);
    let response = http()
        .get(format!("{}/api/slow?s=5", platform.endpoint))
        .send()
        .await
        .unwrap();
    expect_json(
        response,
        504,
        json!({"message": "Endpoint request timed out"}),
    )
    .await;
}

#[tokio::test]
async fn cors_preflights_are_answered_by_the_gateway() {
    let platform = Platform::dev(&[]);
    deploy(&platform, "plain", "app.plain");
    add_route(
        &platform,
        &[
            "POST",
            "/items",
            "plain",
            "--cors-origin",
            "https://app.example",
            "--cors-header",
            "content-type",
        ],
    );
    let url = format!("{}/api/items", platform.endpoint);
    let preflight = |origin: &'static str| {
        http()
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "Content-Type")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(
        header(&allowed, "access-control-allow-methods").as_deref(),
        Some("POST")
    );
    assert_eq!(
        header(&allowed, "access-control-allow-headers").as_deref(),
        Some("content-type")
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(header(&refused, "access-control-allow-origin"), None);

    // The function's own response carries the origin too.
    let response = http()
        .post(&url)
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
}

#[tokio::test]
async fn function_urls_are_managed_with_the_lambda_api_and_serve_requests() {
    let platform = Platform::dev(&[("NIMBUS_ROUTES_LISTEN", "127.0.0.1:0")]);
    deploy(&platform, "echo", "app.echo");
    let config_url = format!("{}/2021-10-31/functions/echo/url", platform.endpoint);
    let created = http()
        .post(&config_url)
        .json(&json!({"AuthType": "NONE", "Cors": {"AllowOrigins": ["*"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let function_url = created["FunctionUrl"].as_str().unwrap().to_owned();
    assert!(
        function_url.starts_with(&format!("{}/lambda-url/", platform.endpoint)),
        "{function_url}"
    );
    assert_eq!(created["AuthType"], "NONE");
    assert_eq!(created["InvokeMode"], "BUFFERED");
    let twice = http()
        .post(&config_url)
        .json(&json!({"AuthType": "NONE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 409);

    let response = http()
        .get(format!("{function_url}items/7?x=1"))
        .header("origin", "https://any.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    let event = response.json::<Value>().await.unwrap()["event"].clone();
    assert_eq!(event["routeKey"], "$default");
    assert_eq!(event["rawPath"], "/items/7");
    assert_eq!(event["queryStringParameters"], json!({"x": "1"}));

    // The same URL answers on the routes' own listener.
    let url_id = function_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let routes_listener = platform.listener("routes");
    let response = http()
        .get(format!("{routes_listener}/lambda-url/{url_id}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let updated: Value = http()
        .put(&config_url)
        .json(&json!({"Cors": {"AllowOrigins": ["https://app.example"]}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        updated["Cors"],
        json!({"AllowOrigins": ["https://app.example"]})
    );
    assert_eq!(updated["AuthType"], "NONE");
    let listed = get_json(&format!(
        "{}/2021-10-31/functions/echo/urls",
        platform.endpoint
    ))
    .await;
    assert_eq!(listed["FunctionUrlConfigs"].as_array().unwrap().len(), 1);

    let deleted = http().delete(&config_url).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = http().get(&function_url).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let missing = http().get(&config_url).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        header(&missing, "x-amzn-errortype").as_deref(),
        Some("ResourceNotFoundException")
    );
}

#[tokio::test]
async fn routes_serve_on_their_own_listener_at_its_root() {
    let platform = Platform::dev(&[
        ("NIMBUS_ROUTES_LISTEN", "127.0.0.1:0"),
        ("NIMBUS_ROUTES_PREFIX", ""),
    ]);
    deploy(&platform, "plain", "app.plain");
    add_route(&platform, &["GET", "/hello", "plain"]);
    let routes = platform.listener("routes");
    let response = http().get(format!("{routes}/hello")).send().await.unwrap();
    expect_json(response, 200, json!({"plain": true, "path": "/hello"})).await;
    // Not on the API's port, and the API is not on the routes' port.
    let on_api = http()
        .get(format!("{}/api/hello", platform.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(on_api.status(), 404);
    let api_on_routes = http()
        .get(format!("{routes}/2015-03-31/functions/"))
        .send()
        .await
        .unwrap();
    assert_eq!(api_on_routes.status(), 404);
}

/// An axum app behind `lambda_http` (examples/rust-http), deployed as it would be on Lambda,
/// serves both of its routes through one catch-all route.
#[tokio::test]
async fn a_lambda_http_app_serves_its_routes_unchanged() {
    let platform = Platform::dev(&[]);
    let bootstrap = std::env::var("NIMBUS_RUST_HTTP_EXAMPLE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| target_dir().join("rust-http-bootstrap"));
    assert!(
        bootstrap.exists(),
        "build the example first: cargo build -p nimbus-example-rust-http ({})",
        bootstrap.display()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&bootstrap, dir.path().join("bootstrap")).unwrap();
    platform.deploy(
        dir.path(),
        "orders",
        "provided.al2023",
        &["--handler", "bootstrap"],
    );
    add_route(&platform, &["ANY", "/{proxy+}", "orders"]);
    let api = format!("{}/api", platform.endpoint);

    let response = http()
        .get(format!("{api}/orders/17?verbose=1"))
        .send()
        .await
        .unwrap();
    expect_json(response, 200, json!({"id": 17, "verbose": true})).await;
    let response = http()
        .post(format!("{api}/orders"))
        .json(&json!({"item": "tea"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "location").as_deref(), Some("/orders/1"));
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"id": 1, "item": "tea"})
    );
    let response = http().get(format!("{api}/unknown")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

/// The same routes on the distributed topology: stored in Postgres, served by the gateway
/// process, run by the invoker and (queued on Redis) by a queue-worker.
#[tokio::test]
async fn routes_work_across_the_distributed_topology() {
    let platform = Platform::distributed(&[]);
    deploy(&platform, "plain", "app.plain");
    add_route(&platform, &["GET", "/hello/{name}", "plain"]);
    add_route(&platform, &["PUT", "/later", "plain", "--async"]);
    let api = format!("{}/api", platform.endpoint);

    let response = http().get(format!("{api}/hello/ada")).send().await.unwrap();
    expect_json(response, 200, json!({"plain": true, "path": "/hello/ada"})).await;

    let response = http().put(format!("{api}/later")).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let request_id = header(&response, "x-amzn-requestid").unwrap();
    wait_until_succeeded(&platform, &request_id).await;
}
