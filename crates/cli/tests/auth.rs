//! End to end, authentication: the real `nimbus` binary given keys (a credentials file for
//! `nimbus dev`, the environment for a gateway) serves only requests signed by them, to the
//! `nimbus` CLI, hand-signed HTTP and the aws CLI (when one is installed) alike; and in the
//! distributed topology with a service token, the invoker and the DLQ service refuse gRPC
//! callers without it while the services, which present it, work as ever.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Platform, function_dir};
use nimbus_core::sigv4::{self, Credentials, Scope, SignableRequest};
use nimbus_proto::dlq as dlq_pb;
use nimbus_proto::invoker as invoker_pb;
use serde_json::Value;
use time::OffsetDateTime;

const KEY_ID: &str = "AKIDNIMBUSE2E";
const SECRET: &str = "e2e-right-secret";
const WRONG_SECRET: &str = "e2e-wrong-secret";
const SERVICE_TOKEN: &str = "e2e-service-token";

const HANDLER: &str = "def handler(event, context):\n    return {\"echo\": event}\n";

fn write_credentials_file(dir: &Path) -> PathBuf {
    let path = dir.join("credentials");
    std::fs::write(
        &path,
        format!(
            "# keys this Nimbus accepts\n[default]\naws_access_key_id = {KEY_ID}\n\
             aws_secret_access_key = {SECRET}\n\n[ci]\naws_access_key_id = AKIDSECOND\n\
             aws_secret_access_key = second-secret\n"
        ),
    )
    .unwrap();
    path
}

/// The environment under which the `nimbus` CLI signs with `secret`.
fn signing_env(secret: &str) -> [(&'static str, &str); 2] {
    [
        ("NIMBUS_ACCESS_KEY_ID", KEY_ID),
        ("NIMBUS_SECRET_ACCESS_KEY", secret),
    ]
}

/// Runs the `nimbus` CLI signing with `secret`; returns (success, stdout, stderr).
fn nimbus(platform: &Platform, args: &[&str], secret: &str) -> (bool, String, String) {
    let output = platform.cli_with_env(args, &signing_env(secret));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn deploy(platform: &Platform, name: &str) {
    let dir = function_dir(&[("app.py", HANDLER)]);
    let (ok, _, stderr) = nimbus(
        platform,
        &[
            "fn",
            "deploy",
            dir.path().to_str().unwrap(),
            "--name",
            name,
            "--runtime",
            "python3.12",
            "--handler",
            "app.handler",
        ],
        SECRET,
    );
    assert!(ok, "deploy {name}: {stderr}");
}

/// A request signed by hand (SigV4 over `host`, `x-amz-date` and `headers`), as botocore
/// signs one.
fn signed(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    secret: &str,
) -> reqwest::RequestBuilder {
    let url = reqwest::Url::parse(url).unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let now = OffsetDateTime::now_utc();
    let amz_date = sigv4::format_amz_date(now);
    let mut signed_headers = vec![("host", host.as_str()), ("x-amz-date", amz_date.as_str())];
    signed_headers.extend_from_slice(headers);
    let payload = sigv4::sha256_hex(body);
    let authorization = sigv4::authorization(
        &Credentials::new(KEY_ID, secret),
        &Scope::new(now, "us-east-1", "lambda"),
        &amz_date,
        &SignableRequest {
            method: method.as_str(),
            path: url.path(),
            query: url.query().unwrap_or(""),
            headers: &signed_headers,
            payload_sha256: &payload,
        },
    );
    let mut request = reqwest::Client::new()
        .request(method, url)
        .header("x-amz-date", amz_date)
        .header("authorization", authorization);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body.to_vec())
}

fn error_type(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("x-amzn-ErrorType")
        .map(|value| value.to_str().unwrap().to_owned())
}

/// The aws CLI to drive the platform with: the one on `PATH`, else the compatibility
/// suite's virtualenv's (`scripts/compat` makes it).
fn aws_cli() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("aws"))
            .find(|candidate| candidate.is_file())
    });
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/compat-venv/bin/aws");
    on_path.or_else(|| venv.is_file().then_some(venv))
}

/// Runs `aws lambda ARGS` against the platform with `secret`, isolated from the user's aws
/// configuration; returns (success, stdout, stderr).
fn aws(cli: &Path, platform: &Platform, args: &[&str], secret: &str) -> (bool, String, String) {
    let output = Command::new(cli)
        .arg("lambda")
        .args(args)
        .args(["--endpoint-url", &platform.endpoint, "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_DEFAULT_REGION", "eu-central-1")
        .env("AWS_CONFIG_FILE", "/nonexistent/nimbus-e2e")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/nimbus-e2e")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_PAGER", "")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run the aws CLI");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn dev_with_a_credentials_file_serves_only_signed_requests() {
    let keys = tempfile::tempdir().unwrap();
    let file = write_credentials_file(keys.path());
    let platform = Platform::dev(&[("NIMBUS_CREDENTIALS_FILE", file.to_str().unwrap())]);
    let functions = format!("{}/2015-03-31/functions/", platform.endpoint);

    // Unsigned: refused before anything else.
    let response = reqwest::get(&functions).await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        error_type(&response).as_deref(),
        Some("MissingAuthenticationTokenException")
    );

    // The nimbus CLI signs with the keys in its environment.
    deploy(&platform, "locked");
    let (ok, stdout, stderr) = nimbus(
        &platform,
        &["invoke", "locked", "--payload", r#"{"n":1}"#],
        SECRET,
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        serde_json::json!({"echo": {"n": 1}})
    );
    // AWS_* keys serve when NIMBUS_* are not set.
    let output = platform.cli_with_env(
        &["fn", "list"],
        &[
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("locked"));
    // A wrong secret is a signature error, and nothing runs.
    let (ok, _, stderr) = nimbus(&platform, &["invoke", "locked"], WRONG_SECRET);
    assert!(!ok);
    assert!(stderr.contains("InvalidSignatureException"), "{stderr}");

    // Hand-signed HTTP: right and wrong secrets.
    let invoke = platform.invoke_url("locked");
    let response = signed(
        reqwest::Method::POST,
        &invoke,
        &[],
        br#"{"by":"hand"}"#,
        SECRET,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        serde_json::json!({"echo": {"by": "hand"}})
    );
    let response = signed(reqwest::Method::POST, &invoke, &[], b"{}", WRONG_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        error_type(&response).as_deref(),
        Some("InvalidSignatureException")
    );

    let Some(cli) = aws_cli() else {
        eprintln!(
            "skipping the aws CLI half: no `aws` on PATH nor in target/compat-venv \
             (scripts/compat installs one)"
        );
        return;
    };
    let (ok, stdout, stderr) = aws(&cli, &platform, &["list-functions"], SECRET);
    assert!(ok, "aws with the right keys failed: {stderr}");
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["Functions"][0]["FunctionName"], "locked");
    let (ok, _, stderr) = aws(&cli, &platform, &["list-functions"], WRONG_SECRET);
    assert!(!ok, "aws with a wrong secret succeeded");
    assert!(stderr.contains("InvalidSignatureException"), "{stderr}");
    assert!(
        stderr.contains("signature we calculated does not match"),
        "{stderr}"
    );

    // GetFunction's code URL is presigned: a plain GET of it fetches the zip.
    let (ok, stdout, stderr) = aws(
        &cli,
        &platform,
        &["get-function", "--function-name", "locked"],
        SECRET,
    );
    assert!(ok, "{stderr}");
    let location = serde_json::from_str::<Value>(&stdout).unwrap()["Code"]["Location"]
        .as_str()
        .unwrap()
        .to_owned();
    let zip = reqwest::get(&location).await.unwrap();
    assert_eq!(zip.status(), 200);
    assert!(zip.bytes().await.unwrap().starts_with(b"PK"));
    let bare = location.split_once('?').unwrap().0;
    assert_eq!(reqwest::get(bare).await.unwrap().status(), 403);
}

/// Waits until the invocation's record says `succeeded`, reading it with signed requests.
async fn wait_until_succeeded(platform: &Platform, request_id: &str) {
    let url = format!("{}/nimbus/v1/invocations/{request_id}", platform.endpoint);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let response = signed(reqwest::Method::GET, &url, &[], b"", SECRET)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let record: Value = response.json().await.unwrap_or(Value::Null);
        if status == 200 && record["status"] == "succeeded" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{request_id} never succeeded: {status} {record}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn distributed_services_require_the_service_token() {
    let platform = Platform::distributed(&[
        ("NIMBUS_SERVICE_TOKEN", SERVICE_TOKEN),
        ("NIMBUS_ACCESS_KEY_ID", KEY_ID),
        ("NIMBUS_SECRET_ACCESS_KEY", SECRET),
    ]);

    // The services present the token to each other: sync invokes (gateway to invoker),
    // events (queue-worker to invoker) and dead letters (gateway to DLQ service) all work.
    deploy(&platform, "guarded");
    let (ok, stdout, stderr) = nimbus(
        &platform,
        &["invoke", "guarded", "--payload", r#"{"sync":true}"#],
        SECRET,
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains(r#""sync": true"#) || stdout.contains(r#""sync":true"#));
    let response = signed(
        reqwest::Method::POST,
        &platform.invoke_url("guarded"),
        &[("x-amz-invocation-type", "Event")],
        br#"{"event":true}"#,
        SECRET,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 202);
    let request_id = response.headers()["x-amzn-RequestId"]
        .to_str()
        .unwrap()
        .to_owned();
    wait_until_succeeded(&platform, &request_id).await;
    let (ok, _, stderr) = nimbus(&platform, &["dlq", "list"], SECRET);
    assert!(ok, "{stderr}");
    // Unsigned HTTP is still refused at the gateway.
    let response = reqwest::get(format!("{}/nimbus/v1/dead-letters", platform.endpoint))
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // Direct gRPC callers: refused without the token or with another; past the guard with it.
    let (invoker_url, dlq_url) = platform.grpc_urls();
    let mut invoker = invoker_pb::invoker_client::InvokerClient::connect(invoker_url)
        .await
        .unwrap();
    let mut dlq = dlq_pb::dead_letters_client::DeadLettersClient::connect(dlq_url)
        .await
        .unwrap();
    for request in [
        tonic::Request::new(invoker_pb::InvokeRequest::default()),
        with_token(invoker_pb::InvokeRequest::default(), "not-the-token"),
    ] {
        let status = invoker.invoke(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    }
    for request in [
        tonic::Request::new(dlq_pb::ListRequest::default()),
        with_token(dlq_pb::ListRequest::default(), "not-the-token"),
    ] {
        let status = dlq.list(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    }
    // With the token, an empty invoke request gets as far as being found malformed.
    let status = invoker
        .invoke(with_token(
            invoker_pb::InvokeRequest::default(),
            SERVICE_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    dlq.list(with_token(
        dlq_pb::ListRequest {
            limit: 10,
            ..dlq_pb::ListRequest::default()
        },
        SERVICE_TOKEN,
    ))
    .await
    .unwrap();
}
