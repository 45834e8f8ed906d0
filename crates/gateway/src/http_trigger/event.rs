//! The event a function gets for an HTTP request: API Gateway's HTTP API payload format 2.0,
//! which function URLs use too, so that web frameworks' Lambda adapters (`lambda_http`,
//! Mangum, ...) serve their routes unchanged.

use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use nimbus_core::RequestId;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

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

/// The payload 2.0 event for a request with `body`, as JSON text.
pub(crate) fn build(parts: &Parts, body: &[u8], source: &Source<'_>) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    let headers = &parts.headers;
    let host = text(headers, header::HOST.as_str()).unwrap_or_default();
    let raw_query = parts.uri.query().unwrap_or_default();

    let mut http = Map::new();
    http.insert("method".into(), parts.method.as_str().into());
    http.insert("path".into(), source.raw_path.into());
    http.insert("protocol".into(), format!("{:?}", parts.version).into());
    http.insert("sourceIp".into(), source.source_ip.into());
    http.insert(
        "userAgent".into(),
        text(headers, header::USER_AGENT.as_str())
            .unwrap_or_default()
            .into(),
    );
    let mut context = Map::new();
    context.insert("accountId".into(), source.account_id.into());
    context.insert("apiId".into(), source.api_id.into());
    context.insert("domainName".into(), host.into());
    context.insert(
        "domainPrefix".into(),
        host.split('.').next().unwrap_or_default().into(),
    );
    context.insert("http".into(), Value::Object(http));
    context.insert("requestId".into(), source.request_id.to_string().into());
    context.insert("routeKey".into(), source.route_key.into());
    context.insert("stage".into(), "$default".into());
    context.insert("time".into(), request_time(now).into());
    context.insert(
        "timeEpoch".into(),
        i64::try_from(now.unix_timestamp_nanos() / 1_000_000)
            .unwrap_or_default()
            .into(),
    );
    if let Some(access_key) = source.access_key {
        context.insert(
            "authorizer".into(),
            json!({ "iam": { "accessKey": access_key, "accountId": source.account_id } }),
        );
    }

    let mut event = Map::new();
    event.insert("version".into(), "2.0".into());
    event.insert("routeKey".into(), source.route_key.into());
    event.insert("rawPath".into(), source.raw_path.into());
    event.insert("rawQueryString".into(), raw_query.into());
    let cookies = cookies(headers);
    if !cookies.is_empty() {
        event.insert("cookies".into(), cookies.into());
    }
    event.insert("headers".into(), Value::Object(joined_headers(headers)));
    let query = query_parameters(raw_query);
    if !query.is_empty() {
        event.insert("queryStringParameters".into(), Value::Object(query));
    }
    if !source.path_parameters.is_empty() {
        let parameters: Map<String, Value> = source
            .path_parameters
            .iter()
            .map(|(name, value)| (name.clone(), value.as_str().into()))
            .collect();
        event.insert("pathParameters".into(), Value::Object(parameters));
    }
    event.insert("requestContext".into(), Value::Object(context));
    let is_base64 = !body.is_empty() && !is_text(headers, body);
    if !body.is_empty() {
        let body = if is_base64 {
            BASE64.encode(body)
        } else {
            // is_text checked it is UTF-8.
            String::from_utf8_lossy(body).into_owned()
        };
        event.insert("body".into(), body.into());
    }
    event.insert("isBase64Encoded".into(), is_base64.into());
    // A map of strings and numbers always serializes.
    serde_json::to_vec(&Value::Object(event)).unwrap_or_default()
}

fn text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Header names in lower case; repeated headers joined with commas; cookies left to
/// `cookies`. A value that is not UTF-8 is passed on lossily decoded.
fn joined_headers(headers: &HeaderMap) -> Map<String, Value> {
    let mut joined: Map<String, Value> = Map::new();
    for name in headers.keys() {
        if name == header::COOKIE {
            continue;
        }
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        joined.insert(name.as_str().to_owned(), values.join(",").into());
    }
    joined
}

/// Every cookie of every `Cookie` header, one item each (`name=value`).
fn cookies(headers: &HeaderMap) -> Vec<Value> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|cookie| !cookie.is_empty())
        .map(|cookie| Value::from(cookie.to_owned()))
        .collect()
}

/// Decoded query parameters; a repeated one has its values joined with commas.
fn query_parameters(raw_query: &str) -> Map<String, Value> {
    let mut parameters: Map<String, Value> = Map::new();
    for (name, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        match parameters.get_mut(name.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                parameters.insert(name.into_owned(), value.into_owned().into());
            }
        }
    }
    parameters
}

/// Whether the body goes to the function as text: it is UTF-8 and its content type is a
/// textual one (or absent). Everything else is base64-encoded.
fn is_text(headers: &HeaderMap, body: &[u8]) -> bool {
    let textual = match text(headers, header::CONTENT_TYPE.as_str()) {
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
