//! SigV4 on every request of a gateway given keys: signed requests reach their handler with
//! their body unchanged; unsigned, garbled, unknown-key, wrong-secret, stale, early and
//! tampered ones are refused with `403` and the name AWS answers with; `GetFunction`'s code
//! URL is presigned.

use nimbus_core::sigv4::{self, Credentials, Scope, SignableRequest};
use nimbus_gateway::GatewayConfig;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::harness::{Answer, FUNCTIONS, Gateway, create_body, handler_zip};

const KEY_ID: &str = "AKIDNIMBUSTEST";
const SECRET: &str = "the-right-secret";

fn key() -> Credentials {
    Credentials::new(KEY_ID, SECRET)
}

async fn locked_gateway() -> Gateway {
    Gateway::start_configured(GatewayConfig {
        credentials: vec![Credentials::new("AKIDOTHER", "other-secret"), key()],
        ..GatewayConfig::default()
    })
    .await
}

/// How a test signs: with which key, at what time, over which extra headers.
struct Signer {
    key: Credentials,
    at: OffsetDateTime,
    /// Sent and signed, besides `host` and `x-amz-date`.
    headers: Vec<(&'static str, &'static str)>,
}

impl Signer {
    fn new() -> Self {
        Self {
            key: key(),
            at: OffsetDateTime::now_utc(),
            headers: Vec::new(),
        }
    }

    /// `method path` with `body`, signed over `body`, as botocore signs (no
    /// `x-amz-content-sha256`).
    fn request(
        &self,
        gateway: &Gateway,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> reqwest::RequestBuilder {
        let url = reqwest::Url::parse(&gateway.url(path)).unwrap();
        let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
        let amz_date = sigv4::format_amz_date(self.at);
        let payload = sigv4::sha256_hex(body);
        let mut headers = vec![("host", host.as_str()), ("x-amz-date", amz_date.as_str())];
        headers.extend(self.headers.iter().copied());
        let authorization = sigv4::authorization(
            &self.key,
            &Scope::new(self.at, "eu-west-1", "lambda"),
            &amz_date,
            &SignableRequest {
                method,
                path: url.path(),
                query: url.query().unwrap_or(""),
                headers: &headers,
                payload_sha256: &payload,
            },
        );
        let mut request = gateway
            .http
            .request(method.parse().unwrap(), url)
            .header("x-amz-date", amz_date)
            .header("authorization", authorization);
        for (name, value) in &self.headers {
            request = request.header(*name, *value);
        }
        request.body(body.to_vec())
    }

    async fn send(&self, gateway: &Gateway, method: &str, path: &str, body: &[u8]) -> Answer {
        gateway
            .send(self.request(gateway, method, path, body))
            .await
    }
}

fn invocations(name: &str) -> String {
    format!("{FUNCTIONS}/{name}/invocations")
}

/// Creates `name` with a signed request.
async fn create(gateway: &Gateway, name: &str) {
    let body = serde_json::to_vec(&create_body(name)).unwrap();
    let answer = Signer::new().send(gateway, "POST", FUNCTIONS, &body).await;
    assert_eq!(answer.status, 201, "{}", answer.text());
}

#[tokio::test]
async fn signed_requests_reach_their_handler_with_the_body_unchanged() {
    let gateway = locked_gateway().await;
    create(&gateway, "echo").await;
    let payload = br#"{"greeting":"signed","n":[1,2,3]}"#;
    let answer = Signer::new()
        .send(&gateway, "POST", &invocations("echo"), payload)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.body.as_ref(), payload);
    assert_eq!(gateway.invoker.last().payload.as_ref(), payload);

    // Any configured key will do; queries are signed too.
    let other = Signer {
        key: Credentials::new("AKIDOTHER", "other-secret"),
        ..Signer::new()
    };
    let answer = other
        .send(&gateway, "GET", &format!("{FUNCTIONS}/?MaxItems=5"), b"")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["Functions"][0]["FunctionName"], "echo");
}

#[tokio::test]
async fn unsigned_requests_miss_the_authentication_token() {
    let gateway = locked_gateway().await;
    for answer in [
        gateway.get(&format!("{FUNCTIONS}/")).await,
        gateway.invoke("echo", "{}").await,
        gateway.get("/nimbus/v1/invocations").await,
        gateway.get("/no/such/route").await,
    ] {
        let message = answer.assert_error(403, "MissingAuthenticationTokenException");
        assert_eq!(message, "Missing Authentication Token");
    }
    assert_eq!(gateway.invoker.calls(), 0);
}

#[tokio::test]
async fn a_wrong_secret_is_an_invalid_signature() {
    let gateway = locked_gateway().await;
    let signer = Signer {
        key: Credentials::new(KEY_ID, "not-the-secret"),
        ..Signer::new()
    };
    let message = signer
        .send(&gateway, "GET", &format!("{FUNCTIONS}/"), b"")
        .await
        .assert_error(403, "InvalidSignatureException");
    assert!(
        message.starts_with("The request signature we calculated does not match"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unknown_key_is_unrecognized() {
    let gateway = locked_gateway().await;
    let signer = Signer {
        key: Credentials::new("AKIDUNKNOWN", SECRET),
        ..Signer::new()
    };
    let message = signer
        .send(&gateway, "GET", &format!("{FUNCTIONS}/"), b"")
        .await
        .assert_error(403, "UnrecognizedClientException");
    assert_eq!(
        message,
        "The security token included in the request is invalid."
    );
}

#[tokio::test]
async fn requests_signed_outside_the_time_window_are_refused() {
    let gateway = locked_gateway().await;
    let now = OffsetDateTime::now_utc();
    for (at, expected) in [
        (now - Duration::minutes(20), "Signature expired: "),
        (now + Duration::minutes(20), "Signature not yet current: "),
    ] {
        let signer = Signer {
            at,
            ..Signer::new()
        };
        let message = signer
            .send(&gateway, "GET", &format!("{FUNCTIONS}/"), b"")
            .await
            .assert_error(403, "InvalidSignatureException");
        assert!(message.starts_with(expected), "{message}");
    }
    // Within 15 minutes either way is fine (clocks drift).
    for at in [now - Duration::minutes(10), now + Duration::minutes(10)] {
        let signer = Signer {
            at,
            ..Signer::new()
        };
        let answer = signer
            .send(&gateway, "GET", &format!("{FUNCTIONS}/"), b"")
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
}

#[tokio::test]
async fn a_tampered_body_or_header_is_refused() {
    let gateway = locked_gateway().await;
    create(&gateway, "echo").await;

    // Signed over one body, sent with another of the same length.
    let signer = Signer::new();
    let request = signer
        .request(&gateway, "POST", &invocations("echo"), br#"{"amount":1}"#)
        .body(r#"{"amount":9}"#);
    gateway
        .send(request)
        .await
        .assert_error(403, "InvalidSignatureException");

    // Signed as a dry run, sent as a real invoke.
    let signer = Signer {
        headers: vec![("x-amz-invocation-type", "DryRun")],
        ..Signer::new()
    };
    let answer = signer
        .send(&gateway, "POST", &invocations("echo"), b"{}")
        .await;
    assert_eq!(answer.status, 204, "{}", answer.text());
    let request = signer
        .request(&gateway, "POST", &invocations("echo"), b"{}")
        .header("x-amz-invocation-type", "RequestResponse");
    gateway
        .send(request)
        .await
        .assert_error(403, "InvalidSignatureException");
    // Signed for one function, sent to another.
    let signed = signer
        .request(&gateway, "POST", &invocations("echo"), b"{}")
        .build()
        .unwrap();
    let request = gateway
        .http
        .post(gateway.url(&invocations("other")))
        .headers(signed.headers().clone())
        .body("{}");
    gateway
        .send(request)
        .await
        .assert_error(403, "InvalidSignatureException");
    assert_eq!(gateway.invoker.calls(), 0);
}

#[tokio::test]
async fn garbled_authorization_is_an_incomplete_signature() {
    let gateway = locked_gateway().await;
    let url = gateway.url(&format!("{FUNCTIONS}/"));
    let amz_date = sigv4::format_amz_date(OffsetDateTime::now_utc());
    for (authorization, with_date) in [
        ("AWS4-HMAC-SHA256 Credential=AKIDNIMBUSTEST", true),
        ("Basic dXNlcjpwYXNz", true),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDNIMBUSTEST/20240101/us-east-1/lambda/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=00",
            false,
        ),
    ] {
        let mut request = gateway
            .http
            .get(&url)
            .header("authorization", authorization);
        if with_date {
            request = request.header("x-amz-date", &amz_date);
        }
        gateway
            .send(request)
            .await
            .assert_error(403, "IncompleteSignatureException");
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused_at_the_routes_limit_without_being_read() {
    let gateway = locked_gateway().await;
    let now = OffsetDateTime::now_utc();
    let amz_date = sigv4::format_amz_date(now);
    let scope = Scope::new(now, "us-east-1", "lambda");
    // The claims hold (key, time); the signature cannot be checked before the body is read,
    // and the body is too large to read.
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nX-Amz-Date: {amz_date}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential={KEY_ID}/{scope}, \
         SignedHeaders=host;x-amz-date, Signature={}\r\nContent-Length: {}\r\n\r\n",
        invocations("echo"),
        gateway.addr,
        "0".repeat(64),
        nimbus_core::limits::MAX_SYNC_PAYLOAD_BYTES + 1,
    );
    gateway
        .raw(&head, b"{}")
        .await
        .assert_error(413, "RequestTooLargeException");
}

#[tokio::test]
async fn the_code_location_is_a_presigned_url_a_plain_get_can_fetch() {
    let gateway = locked_gateway().await;
    create(&gateway, "echo").await;
    let answer = Signer::new()
        .send(&gateway, "GET", &format!("{FUNCTIONS}/echo"), b"")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let location = answer.json()["Code"]["Location"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(location.contains("X-Amz-Expires=600"), "{location}");

    let download = gateway.send(gateway.http.get(&location)).await;
    assert_eq!(download.status, 200, "{}", download.text());
    assert_eq!(download.body.as_ref(), handler_zip().as_slice());

    let (path, query) = location.split_once('?').unwrap();
    gateway
        .send(gateway.http.get(path))
        .await
        .assert_error(403, "MissingAuthenticationTokenException");
    let last = if location.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{last}", &location[..location.len() - 1]);
    gateway
        .send(gateway.http.get(&tampered))
        .await
        .assert_error(403, "InvalidSignatureException");
    let other_code = format!(
        "{}/nimbus/v1/code/{}?{query}",
        gateway.url,
        nimbus_core::CodeSha256::of(b"other").to_hex()
    );
    gateway
        .send(gateway.http.get(&other_code))
        .await
        .assert_error(403, "InvalidSignatureException");
}

#[tokio::test]
async fn without_keys_unsigned_and_signed_requests_are_both_served() {
    let gateway = Gateway::start().await;
    let answer = gateway.post_json(FUNCTIONS, &create_body("open")).await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    let answer = Signer::new()
        .send(&gateway, "POST", &invocations("open"), br#"{"a":1}"#)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json(), json!({"a": 1}));
    let location = gateway.get(&format!("{FUNCTIONS}/open")).await.json()["Code"]["Location"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!location.contains('?'), "{location}");
}

#[tokio::test]
async fn an_aws_iam_trigger_takes_only_signed_requests_and_a_none_one_takes_any() {
    let gateway = locked_gateway().await;
    create(&gateway, "echo").await;
    for (path, auth_type) in [("/private", "AWS_IAM"), ("/public", "NONE")] {
        let body = serde_json::to_vec(&json!({
            "method": "GET", "path": path, "functionName": "echo", "authType": auth_type
        }))
        .unwrap();
        let answer = Signer::new()
            .send(&gateway, "POST", "/nimbus/v1/routes", &body)
            .await;
        assert_eq!(answer.status, 201, "{}", answer.text());
    }

    let unsigned = gateway.get("/api/private").await;
    assert_eq!(unsigned.status, 403);
    assert_eq!(unsigned.json(), json!({"message": "Forbidden"}));
    let wrong_secret = Signer {
        key: Credentials::new(KEY_ID, "the-wrong-secret"),
        ..Signer::new()
    };
    let forged = wrong_secret
        .send(&gateway, "GET", "/api/private", b"")
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(gateway.invoker.calls(), 0);

    let signed = Signer::new()
        .send(&gateway, "GET", "/api/private", b"")
        .await;
    assert_eq!(signed.status, 200, "{}", signed.text());
    assert_eq!(
        signed.json()["requestContext"]["authorizer"]["iam"]["accessKey"],
        KEY_ID
    );
    // A public route needs no signature, though the Lambda API around it does.
    let public = gateway.get("/api/public").await;
    assert_eq!(public.status, 200, "{}", public.text());
    assert!(public.json()["requestContext"].get("authorizer").is_none());
    assert_eq!(gateway.invoker.calls(), 2);
}
