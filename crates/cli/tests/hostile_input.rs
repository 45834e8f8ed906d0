//! Hostile clients against a real `nimbus dev`: bodies over the limit (declared, lying and
//! undeclared), uploads that trickle, invalid UTF-8, JSON nested 100,000 deep and 10,000
//! connections that never finish their request. Each gets a clear 4xx or a closed
//! connection, the gateway's memory stays bounded, and other callers keep being served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Platform, function_dir};
use futures::StreamExt as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const ECHO: &str = "def echo(event, context):\n    return {\"echo\": event}\n";
/// Longer than the gateway's default read deadlines (30 s) with room for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(120);
/// The bound on the gateway's resident memory, whatever the clients do.
const MAX_RSS_BYTES: u64 = 512 * 1024 * 1024;
const CONNECTIONS: usize = 10_000;

fn platform_with_echo() -> Platform {
    let platform = Platform::dev(&[]);
    let dir = function_dir(&[("app.py", ECHO)]);
    platform.deploy(dir.path(), "echo", "python3.12", &["--handler", "app.echo"]);
    platform
}

fn address(platform: &Platform) -> String {
    platform
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// A raw HTTP exchange: what the server sent until it closed the connection (or reset it).
/// The request is written while the answer is read: the server may answer and close before
/// it has read everything, which is allowed.
async fn raw(platform: &Platform, request: &[u8]) -> String {
    let tcp = TcpStream::connect(address(platform)).await.unwrap();
    let (mut reader, mut writer) = tcp.into_split();
    let request = request.to_vec();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        // Keeps the write half open: dropping it would half-close the connection.
        writer
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut answer)).await;
    writing.abort();
    assert!(
        read.is_ok(),
        "the gateway neither answered nor closed the connection"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status and `x-amzn-ErrorType` of the first response in `answer`.
fn first_response(answer: &str) -> (u16, Option<String>) {
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response in {answer:?}"));
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    let error_type = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("x-amzn-errortype")
            .then(|| value.trim().to_owned())
    });
    (status, error_type)
}

fn assert_refused(answer: &str, status: u16, error_type: &str) {
    let (got, got_type) = first_response(answer);
    assert_eq!(got, status, "{answer:.600}");
    assert_eq!(got_type.as_deref(), Some(error_type), "{answer:.600}");
}

/// The gateway still answers other callers correctly.
async fn assert_serving(platform: &Platform) {
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/2015-03-31/functions/echo", platform.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["Configuration"]["FunctionName"], "echo");
    let response = client
        .post(platform.invoke_url("echo"))
        .body(r#"{"n":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["echo"]["n"], 1);
}

/// The head of an invoke of `echo`; `extra` is more header lines, each ending in CRLF.
fn invoke_head(content_length: &str, extra: &str) -> String {
    format!(
        "POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: nimbus\r\n\
         Content-Type: application/json\r\nContent-Length: {content_length}\r\n{extra}\r\n"
    )
}

const CLOSE: &str = "Connection: close\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_without_being_read() {
    let platform = platform_with_echo();

    // A declared size over the limit is refused from the headers alone, on both APIs.
    let answer = raw(&platform, invoke_head("10737418240", CLOSE).as_bytes()).await;
    assert_refused(&answer, 413, "RequestTooLargeException");
    let create = "POST /2015-03-31/functions HTTP/1.1\r\nHost: nimbus\r\n\
                  Content-Length: 10737418240\r\nConnection: close\r\n\r\n{";
    let answer = raw(&platform, create.as_bytes()).await;
    assert_refused(&answer, 413, "RequestTooLargeException");

    // A body of unknown length is read only up to the limit, then refused.
    let chunk = vec![b' '; 1024 * 1024];
    let mut chunked = b"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\n\
                        Host: nimbus\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    for _ in 0..8 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(&platform, &chunked).await;
    assert_refused(&answer, 413, "RequestTooLargeException");

    // A lying, small Content-Length: the gateway takes the declared bytes as the payload and
    // the 7 MB after them as a next request, which is refused or the connection closed.
    let mut lying = invoke_head("2", "").into_bytes();
    lying.extend_from_slice(b"{}");
    lying.extend(std::iter::repeat_n(b'x', 7 * 1024 * 1024));
    let answer = raw(&platform, &lying).await;
    let (status, _) = first_response(&answer);
    assert_eq!(status, 200, "{answer:.600}");
    let rest = &answer[answer.find("{\"echo\"").unwrap()..];
    assert!(
        !rest.contains("HTTP/1.1 ") || rest.contains("HTTP/1.1 4"),
        "{rest:.600}"
    );

    assert_serving(&platform).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_are_cut_off() {
    let platform = platform_with_echo();

    // Headers that trickle in a byte a second never finish; the connection is closed.
    let headers = {
        let mut tcp = TcpStream::connect(address(&platform)).await.unwrap();
        tcp.write_all(b"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\n")
            .await
            .unwrap();
        let (mut reader, mut writer) = tcp.into_split();
        let trickle = tokio::spawn(async move {
            for byte in b"X-Slow: ".iter().cycle() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if writer.write_all(&[*byte]).await.is_err() {
                    break;
                }
            }
        });
        async move {
            let mut answer = Vec::new();
            let read = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut answer)).await;
            trickle.abort();
            assert!(
                read.is_ok(),
                "a trickle of header bytes kept its connection"
            );
            String::from_utf8_lossy(&answer).into_owned()
        }
    };

    // A body that trickles in a byte a second is refused long before it is complete.
    let body = {
        let mut tcp = TcpStream::connect(address(&platform)).await.unwrap();
        tcp.write_all(invoke_head("100000", "").as_bytes())
            .await
            .unwrap();
        let (mut reader, mut writer) = tcp.into_split();
        let trickle = tokio::spawn(async move {
            for _ in 0..100_000 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if writer.write_all(b" ").await.is_err() {
                    break;
                }
            }
        });
        async move {
            let mut answer = Vec::new();
            let read = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut answer)).await;
            trickle.abort();
            assert!(read.is_ok(), "a trickling body kept its connection");
            String::from_utf8_lossy(&answer).into_owned()
        }
    };

    let (headers, body) = tokio::join!(headers, body);
    assert!(
        headers.is_empty() || first_response(&headers).0 == 408,
        "{headers:.600}"
    );
    assert_refused(&body, 400, "InvalidRequestContentException");
    assert_serving(&platform).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_and_deep_json_are_refused() {
    let platform = platform_with_echo();
    let client = reqwest::Client::new();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let invoke = |body: Vec<u8>| client.post(platform.invoke_url("echo")).body(body).send();
    let error_type = |response: &reqwest::Response| {
        response
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_owned())
    };

    // Invoke payloads: invalid UTF-8 inside a JSON string, and deep nesting.
    for payload in [
        b"{\"name\":\"\xff\xfe\"}".to_vec(),
        deep.clone().into_bytes(),
        format!("{{\"a\":{deep}}}").into_bytes(),
    ] {
        let response = invoke(payload.clone()).await.unwrap();
        assert_eq!(
            response.status(),
            400,
            "{:.80}",
            String::from_utf8_lossy(&payload)
        );
        assert_eq!(
            error_type(&response).as_deref(),
            Some("InvalidRequestContentException")
        );
    }
    // An async invoke goes through the same check.
    let response = client
        .post(platform.invoke_url("echo"))
        .header("X-Amz-Invocation-Type", "Event")
        .body(b"[\"\xc3\x28\"]".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // Control API bodies: deep nesting at the top and inside a member, invalid UTF-8.
    let functions = format!("{}/2015-03-31/functions", platform.endpoint);
    let configuration = format!("{functions}/echo/configuration");
    for (method, url, body) in [
        (reqwest::Method::POST, &functions, deep.clone().into_bytes()),
        (
            reqwest::Method::PUT,
            &configuration,
            format!(r#"{{"Environment":{{"Variables":{deep}}}}}"#).into_bytes(),
        ),
        (
            reqwest::Method::PUT,
            &configuration,
            b"{\"Description\":\"\xff\"}".to_vec(),
        ),
        (
            reqwest::Method::POST,
            &functions,
            b"{\"FunctionName\":\"caf\xe9\",\"Runtime\":\"python3.12\"}".to_vec(),
        ),
    ] {
        let response = client.request(method, url).body(body).send().await.unwrap();
        assert_eq!(response.status().as_u16() / 100, 4, "{url}");
        assert!(
            matches!(
                error_type(&response).as_deref(),
                Some("InvalidRequestContentException" | "InvalidParameterValueException")
            ),
            "{url}: {:?}",
            error_type(&response)
        );
    }

    // Names and paths: percent-encoded invalid UTF-8, raw bytes in the request line, and a
    // header value that is not visible ASCII.
    let response = invoke_with_path(&client, &platform, "%FF%FE").await;
    assert_eq!(response.status().as_u16() / 100, 4);
    let answer = raw(
        &platform,
        b"GET /2015-03-31/functions/\xff\xfe HTTP/1.1\r\nHost: nimbus\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.is_empty() || first_response(&answer).0 / 100 == 4,
        "{answer:.600}"
    );
    let mut context = invoke_head("2", CLOSE).into_bytes();
    let at = context.len() - 2;
    context.splice(
        at..at,
        b"X-Amz-Client-Context: \xff\xfe\r\n".iter().copied(),
    );
    context.extend_from_slice(b"{}");
    let answer = raw(&platform, &context).await;
    assert_refused(&answer, 400, "InvalidParameterValueException");

    // Nothing above changed the function.
    let response = client
        .get(format!("{functions}/echo/configuration"))
        .send()
        .await
        .unwrap();
    let config: Value = response.json().await.unwrap();
    assert!(config.get("Environment").is_none(), "{config}");
    assert_serving(&platform).await;
}

async fn invoke_with_path(
    client: &reqwest::Client,
    platform: &Platform,
    name: &str,
) -> reqwest::Response {
    client
        .post(format!(
            "{}/2015-03-31/functions/{name}/invocations",
            platform.endpoint
        ))
        .body("{}")
        .send()
        .await
        .unwrap()
}

/// The resident memory of a process, from `/proc/PID/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// Lets this process (and the `nimbus dev` it starts, which inherits the limit) open as many
/// files as the hard limit allows; returns that limit.
fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(1 << 20);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(hard),
            maximum: limit.maximum,
        },
    )
    .expect("raise RLIMIT_NOFILE to its hard limit");
    hard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_stalled_connections_leave_the_gateway_serving() {
    let limit = raise_open_files_limit();
    // Both ends live on this machine: this process holds one side, the gateway the other.
    let connections = CONNECTIONS.min(usize::try_from(limit).unwrap_or(usize::MAX) - 512);
    let platform = platform_with_echo();
    let pid = platform.pids()[0];
    assert_serving(&platform).await;
    let before = rss_bytes(pid);

    // Each connection sends the start of a request and stops.
    let address = address(&platform);
    let partial =
        b"POST /2015-03-31/functions/echo/invocations HTTP/1.1\r\nHost: nimbus\r\nContent-Le";
    let mut stalled: Vec<TcpStream> = futures::stream::iter(0..connections)
        .map(|_| {
            let address = address.clone();
            async move {
                let mut tcp = TcpStream::connect(&address).await.unwrap();
                tcp.write_all(partial).await.unwrap();
                tcp
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    assert_eq!(stalled.len(), connections);

    // Other callers are served while they all wait.
    let mut during = rss_bytes(pid);
    for _ in 0..5 {
        assert_serving(&platform).await;
        during = during.max(rss_bytes(pid));
    }

    // The gateway gives up on every one of them: each is closed (or answered 408).
    let closed = futures::stream::iter(stalled.iter_mut())
        .map(|tcp| async move {
            let mut answer = Vec::new();
            match tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer)).await {
                Ok(_) => answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
                Err(_) => false,
            }
        })
        .buffer_unordered(connections)
        .filter(|closed| std::future::ready(*closed))
        .count()
        .await;
    during = during.max(rss_bytes(pid));
    drop(stalled);
    assert_eq!(closed, connections, "connections the gateway left open");
    assert_serving(&platform).await;
    let after = rss_bytes(pid);
    let mb = |bytes: u64| bytes / (1024 * 1024);
    eprintln!(
        "{connections} stalled connections: gateway RSS {} MB before, {} MB at most during, \
         {} MB after",
        mb(before),
        mb(during),
        mb(after)
    );
    assert!(during < MAX_RSS_BYTES, "RSS reached {} MB", mb(during));
    assert!(after < MAX_RSS_BYTES, "RSS stayed at {} MB", mb(after));
}
