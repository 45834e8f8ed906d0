//! The event a function gets for an HTTP request: API Gateway's HTTP API payload format 2.0,
//! which function URLs use too, so that web frameworks' Lambda adapters (`lambda_http`,
//! Mangum, ...) serve their routes unchanged.

use std::borrow::Cow;
use std::collections::HashMap;

use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use nimbus_core::RequestId;
use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;

use super::text;
use crate::code::BASE64;

/// What the event says about where the request came in, besides the request itself.
pub(crate) struct Source<'a> {
    /// `METHOD /path/{param}` for a route, `$default` for a function URL.
    pub(crate) route_key: &'a str,
    /// The path the function sees: without the gateway's prefix or the URL's id.
    pub(crate) raw_path: &'a str,
    pub(crate) path_parameters: &'a [(String, String)],
    /// The route table's or the function URL's id.
    pub(crate) api_id: &'a str,
    pub(crate) account_id: &'a str,
    pub(crate) request_id: RequestId,
    pub(crate) source_ip: &'a str,
    /// The access key that signed an `AWS_IAM` request.
    pub(crate) access_key: Option<&'a str>,
}

/// The payload 2.0 event, borrowing from the request where it can: it is built on every
/// trigger request.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    version: &'static str,
    route_key: &'a str,
    raw_path: &'a str,
    raw_query_string: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cookies: Vec<&'a str>,
    headers: HashMap<&'a str, Cow<'a, str>>,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    query_string_parameters: HashMap<Cow<'a, str>, Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_parameters: Option<Pairs<'a>>,
    request_context: RequestContext<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Cow<'a, str>>,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext<'a> {
    account_id: &'a str,
    api_id: &'a str,
    domain_name: &'a str,
    domain_prefix: &'a str,
    http: Http<'a>,
    request_id: String,
    route_key: &'a str,
    stage: &'static str,
    time: String,
    time_epoch: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorizer: Option<Authorizer<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Http<'a> {
    method: &'a str,
    path: &'a str,
    protocol: String,
    source_ip: &'a str,
    user_agent: &'a str,
}

#[derive(Serialize)]
struct Authorizer<'a> {
    iam: Iam<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Iam<'a> {
    access_key: &'a str,
    account_id: &'a str,
}

/// Path parameters, as a JSON object.
struct Pairs<'a>(&'a [(String, String)]);

impl Serialize for Pairs<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

/// The payload 2.0 event for a request with `body`, as JSON text.
pub(crate) fn build(parts: &Parts, body: &[u8], source: &Source<'_>) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    let headers = &parts.headers;
    let host = text(headers, header::HOST).unwrap_or_default();
    let is_base64 = !body.is_empty() && !is_text(headers, body);
    let body = (!body.is_empty()).then(|| {
        if is_base64 {
            Cow::Owned(BASE64.encode(body))
        } else {
            // is_text checked it is UTF-8.
            String::from_utf8_lossy(body)
        }
    });
    let event = Event {
        version: "2.0",
        route_key: source.route_key,
        raw_path: source.raw_path,
        raw_query_string: parts.uri.query().unwrap_or_default(),
        cookies: cookies(headers),
        headers: joined_headers(headers),
        query_string_parameters: query_parameters(parts.uri.query().unwrap_or_default()),
        path_parameters: (!source.path_parameters.is_empty())
            .then_some(Pairs(source.path_parameters)),
        request_context: RequestContext {
            account_id: source.account_id,
            api_id: source.api_id,
            domain_name: host,
            domain_prefix: host.split('.').next().unwrap_or_default(),
            http: Http {
                method: parts.method.as_str(),
                path: source.raw_path,
                protocol: format!("{:?}", parts.version),
                source_ip: source.source_ip,
                user_agent: text(headers, header::USER_AGENT).unwrap_or_default(),
            },
            request_id: source.request_id.to_string(),
            route_key: source.route_key,
            stage: "$default",
            time: request_time(now),
            time_epoch: i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or_default(),
            authorizer: source.access_key.map(|access_key| Authorizer {
                iam: Iam {
                    access_key,
                    account_id: source.account_id,
                },
            }),
        },
        body,
        is_base64_encoded: is_base64,
    };
    // Strings, numbers and maps of strings always serialize.
    serde_json::to_vec(&event).unwrap_or_default()
}

/// Header names in lower case; repeated headers joined with commas; cookies left to
/// `cookies`. A value that is not UTF-8 is passed on lossily decoded.
fn joined_headers(headers: &HeaderMap) -> HashMap<&str, Cow<'_, str>> {
    let mut joined = HashMap::with_capacity(headers.keys_len());
    for name in headers.keys() {
        if name == header::COOKIE {
            continue;
        }
        let mut values = headers.get_all(name).iter();
        let first = values
            .next()
            .map(|value| String::from_utf8_lossy(value.as_bytes()))
            .unwrap_or_default();
        let value = values.fold(first, |mut all, value| {
            let all_mut = all.to_mut();
            all_mut.push(',');
            all_mut.push_str(&String::from_utf8_lossy(value.as_bytes()));
            all
        });
        joined.insert(name.as_str(), value);
    }
    joined
}

/// Every cookie of every `Cookie` header, one item each (`name=value`).
fn cookies(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|cookie| !cookie.is_empty())
        .collect()
}

/// Decoded query parameters; a repeated one has its values joined with commas.
fn query_parameters(raw_query: &str) -> HashMap<Cow<'_, str>, Cow<'_, str>> {
    let mut parameters: HashMap<Cow<'_, str>, Cow<'_, str>> = HashMap::new();
    for (name, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        match parameters.get_mut(&name) {
            Some(existing) => {
                let existing = existing.to_mut();
                existing.push(',');
                existing.push_str(&value);
            }
            None => {
                parameters.insert(name, value);
            }
        }
    }
    parameters
}

/// Whether the body goes to the function as text: it is UTF-8 and its content type is a
/// textual one (or absent). Everything else is base64-encoded.
fn is_text(headers: &HeaderMap, body: &[u8]) -> bool {
    let textual = match text(headers, header::CONTENT_TYPE) {
        None => true,
        Some(content_type) => {
            let essence = content_type
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            essence.starts_with("text/")
                || essence.ends_with("+json")
                || essence.ends_with("+xml")
                || matches!(
                    essence.as_str(),
                    "application/json"
                        | "application/javascript"
                        | "application/xml"
                        | "application/x-www-form-urlencoded"
                        | "application/graphql"
                )
        }
    };
    textual && std::str::from_utf8(body).is_ok()
}

/// `requestContext.time`: `12/Mar/2020:19:03:58 +0000`.
fn request_time(now: OffsetDateTime) -> String {
    now.format(format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    ))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use serde_json::{Value, json};

    use super::*;

    fn parts(request: Request<()>) -> Parts {
        request.into_parts().0
    }

    fn event(request: Request<()>, body: &[u8]) -> Value {
        let source = Source {
            route_key: "GET /orders/{id}",
            raw_path: "/orders/42",
            path_parameters: &[("id".to_owned(), "42".to_owned())],
            api_id: "nimbus",
            account_id: "000000000000",
            request_id: RequestId::new(),
            source_ip: "127.0.0.1",
            access_key: None,
        };
        serde_json::from_slice(&build(&parts(request), body, &source)).unwrap()
    }

    #[test]
    fn the_event_carries_the_request_in_payload_2_0_form() {
        let request = Request::get("/api/orders/42?a=1&a=2&b=x%20y")
            .header("host", "gw.example:9000")
            .header("x-multi", "one")
            .header("x-multi", "two")
            .header("cookie", "s=1; t=2")
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let event = event(request, br#"{"n":1}"#);
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "GET /orders/{id}");
        assert_eq!(event["rawPath"], "/orders/42");
        assert_eq!(event["rawQueryString"], "a=1&a=2&b=x%20y");
        assert_eq!(
            event["queryStringParameters"],
            json!({"a": "1,2", "b": "x y"})
        );
        assert_eq!(event["pathParameters"], json!({"id": "42"}));
        assert_eq!(event["cookies"], json!(["s=1", "t=2"]));
        assert_eq!(event["headers"]["x-multi"], "one,two");
        assert!(event["headers"].get("cookie").is_none());
        assert_eq!(event["requestContext"]["http"]["method"], "GET");
        assert_eq!(event["requestContext"]["http"]["path"], "/orders/42");
        assert_eq!(event["requestContext"]["domainName"], "gw.example:9000");
        assert_eq!(event["body"], r#"{"n":1}"#);
        assert_eq!(event["isBase64Encoded"], false);
    }

    #[test]
    fn binary_bodies_are_base64_and_empty_ones_absent() {
        let binary = Request::post("/x")
            .header("content-type", "application/octet-stream")
            .body(())
            .unwrap();
        let binary = event(binary, &[0, 159, 146, 150]);
        assert_eq!(binary["isBase64Encoded"], true);
        assert_eq!(binary["body"], BASE64.encode([0, 159, 146, 150]));

        let invalid_text = Request::post("/x")
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        assert_eq!(event(invalid_text, &[0xff, 0xfe])["isBase64Encoded"], true);

        let empty = Request::get("/x").body(()).unwrap();
        let empty = event(empty, b"");
        assert!(empty.get("body").is_none());
        assert!(empty.get("queryStringParameters").is_none());
        assert_eq!(empty["isBase64Encoded"], false);
    }

    #[test]
    fn the_time_is_in_api_gateway_form() {
        let at = time::macros::datetime!(2020-03-12 19:03:58 UTC);
        assert_eq!(request_time(at), "12/Mar/2020:19:03:58 +0000");
    }
}
