//! A small client of the gateway's Lambda API, for the `nimbus fn` and `nimbus invoke`
//! commands. Errors come back as the Lambda error name and message the gateway sent.
//!
//! Requests are signed (AWS Signature Version 4) when credentials are in the environment:
//! `NIMBUS_ACCESS_KEY_ID` and `NIMBUS_SECRET_ACCESS_KEY`, else `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY`, for the region in `NIMBUS_REGION`, `AWS_REGION` or
//! `AWS_DEFAULT_REGION` (default `us-east-1`).

use anyhow::{Context as _, anyhow};
use base64::Engine as _;
use nimbus_core::sigv4::{self, Credentials, Scope, SignableRequest};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use time::OffsetDateTime;

const FUNCTIONS: &str = "2015-03-31/functions";

pub struct LambdaClient {
    endpoint: String,
    http: reqwest::Client,
    signer: Option<Signer>,
}

/// Signs requests as botocore does for Lambda: `host`, `x-amz-date` and the `x-amz-*`
/// headers the request carries, over the hash of the body.
struct Signer {
    credentials: Credentials,
    region: String,
}

impl Signer {
    fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let credentials = match (var("NIMBUS_ACCESS_KEY_ID"), var("NIMBUS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Credentials::new(id, secret),
            _ => Credentials::new(var("AWS_ACCESS_KEY_ID")?, var("AWS_SECRET_ACCESS_KEY")?),
        };
        let region = ["NIMBUS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"]
            .into_iter()
            .find_map(var)
            .unwrap_or_else(|| "us-east-1".to_owned());
        Some(Self {
            credentials,
            region,
        })
    }

    /// The `x-amz-date` and `authorization` headers for a request to `url` with `headers`
    /// (all signed) and `body`.
    fn headers(
        &self,
        method: &Method,
        url: &Url,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> [(&'static str, String); 2] {
        let now = OffsetDateTime::now_utc();
        let amz_date = sigv4::format_amz_date(now);
        // The Host header reqwest sends: the port only when it is not the scheme's default.
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => String::new(),
        };
        let mut signed = vec![("host", host.as_str()), ("x-amz-date", amz_date.as_str())];
        signed.extend_from_slice(headers);
        let payload = sigv4::sha256_hex(body);
        let authorization = sigv4::authorization(
            &self.credentials,
            &Scope::new(now, &self.region, "lambda"),
            &amz_date,
            &SignableRequest {
                method: method.as_str(),
                path: url.path(),
                query: url.query().unwrap_or(""),
                headers: &signed,
                payload_sha256: &payload,
            },
        );
        [("x-amz-date", amz_date), ("authorization", authorization)]
    }
}

/// What `Invoke` answered.
pub struct Invocation {
    pub status: StatusCode,
    pub request_id: Option<String>,
    pub function_error: Option<String>,
    pub executed_version: Option<String>,
    pub log: Option<String>,
    pub payload: Vec<u8>,
}

/// The settings `nimbus fn deploy` sends; `None` keeps the server's default (or, on update,
/// the current value).
pub struct FunctionSettings {
    pub runtime: String,
    pub handler: Option<String>,
    pub timeout: Option<u32>,
    pub memory: Option<u32>,
    pub environment: Option<serde_json::Map<String, Value>>,
    pub description: Option<String>,
}

impl LambdaClient {
    pub fn new(endpoint: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            http,
            signer: Signer::from_env(),
        })
    }

    /// A request with `headers` and `body`, signed if there are credentials.
    fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let url = Url::parse(url).with_context(|| format!("invalid URL {url}"))?;
        let mut request = self.http.request(method.clone(), url.clone());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(signer) = &self.signer {
            for (name, value) in signer.headers(&method, &url, headers, &body) {
                request = request.header(name, value);
            }
        }
        Ok(request.body(body))
    }

    /// Creates the function, or updates its code and configuration if it exists.
    pub async fn deploy(
        &self,
        name: &str,
        zip: &[u8],
        settings: &FunctionSettings,
    ) -> anyhow::Result<Value> {
        let zip_base64 = base64::engine::general_purpose::STANDARD.encode(zip);
        let mut configuration = json!({ "Runtime": settings.runtime });
        let fields = [
            ("Handler", settings.handler.clone().map(Value::from)),
            ("Timeout", settings.timeout.map(Value::from)),
            ("MemorySize", settings.memory.map(Value::from)),
            ("Description", settings.description.clone().map(Value::from)),
            (
                "Environment",
                settings
                    .environment
                    .clone()
                    .map(|vars| json!({ "Variables": vars })),
            ),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                configuration[key] = value;
            }
        }
        let mut create = configuration.clone();
        create["FunctionName"] = json!(name);
        create["Code"] = json!({ "ZipFile": zip_base64 });

        match self.call(Method::POST, FUNCTIONS, Some(&create)).await {
            Err(error) if is_conflict(&error) => {
                self.call(
                    Method::PUT,
                    &format!("{FUNCTIONS}/{name}/code"),
                    Some(&json!({ "ZipFile": zip_base64 })),
                )
                .await?;
                self.call(
                    Method::PUT,
                    &format!("{FUNCTIONS}/{name}/configuration"),
                    Some(&configuration),
                )
                .await
            }
            other => other,
        }
    }

    pub async fn list(&self) -> anyhow::Result<Vec<Value>> {
        let mut functions = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let path = match &marker {
                Some(marker) => format!("{FUNCTIONS}/?Marker={marker}"),
                None => format!("{FUNCTIONS}/"),
            };
            let page = self.call(Method::GET, &path, None).await?;
            if let Some(items) = page["Functions"].as_array() {
                functions.extend(items.iter().cloned());
            }
            match page["NextMarker"].as_str() {
                Some(next) => marker = Some(next.to_owned()),
                None => return Ok(functions),
            }
        }
    }

    pub async fn get(&self, name: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, &format!("{FUNCTIONS}/{name}"), None)
            .await
    }

    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.call(Method::DELETE, &format!("{FUNCTIONS}/{name}"), None)
            .await
            .map(drop)
    }

    /// A `/nimbus/v1` call; `query` pairs with a `None` value are left out.
    pub async fn nimbus(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, Option<String>)],
    ) -> anyhow::Result<Value> {
        // Only the query of this URL is used: it encodes the pairs.
        let mut encoder = reqwest::Url::parse("http://query.invalid/")?;
        encoder.query_pairs_mut().extend_pairs(
            query
                .iter()
                .filter_map(|(key, value)| value.as_deref().map(|value| (*key, value))),
        );
        let path = match encoder.query() {
            Some(query) if !query.is_empty() => format!("nimbus/v1/{path}?{query}"),
            _ => format!("nimbus/v1/{path}"),
        };
        self.call(method, &path, None).await
    }

    /// `POST` of a JSON body to `path` (under the endpoint).
    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn invocation_record(&self, request_id: &str) -> anyhow::Result<Value> {
        self.call(
            Method::GET,
            &format!("nimbus/v1/invocations/{request_id}"),
            None,
        )
        .await
    }

    pub async fn invoke(
        &self,
        name: &str,
        payload: Vec<u8>,
        invocation_type: &str,
        tail: bool,
    ) -> anyhow::Result<Invocation> {
        let url = format!("{}/{FUNCTIONS}/{name}/invocations", self.endpoint);
        let mut headers = vec![("x-amz-invocation-type", invocation_type)];
        if tail {
            headers.push(("x-amz-log-type", "Tail"));
        }
        let response = self
            .request(Method::POST, &url, &headers, payload)?
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header("x-amzn-RequestId");
        let function_error = header("X-Amz-Function-Error");
        let executed_version = header("X-Amz-Executed-Version");
        let log = header("X-Amz-Log-Result")
            .map(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded))
            .transpose()
            .context("the gateway sent a log that is not base64")?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        let error_type = header("x-amzn-ErrorType");
        let payload = response.bytes().await?.to_vec();
        if let Some(error_type) = error_type {
            return Err(lambda_error(status, &error_type, &payload));
        }
        Ok(Invocation {
            status,
            request_id,
            function_error,
            executed_version,
            log,
            payload,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/{path}", self.endpoint);
        let request = match body {
            Some(body) => self.request(
                method,
                &url,
                &[("content-type", "application/json")],
                serde_json::to_vec(body)?,
            )?,
            None => self.request(method, &url, &[], Vec::new())?,
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let error_type = response
            .headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await?;
        if let Some(error_type) = error_type {
            return Err(lambda_error(status, &error_type, &bytes));
        }
        if !status.is_success() {
            return Err(anyhow!("{url} answered {status}"));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{url} did not answer JSON"))
    }
}

fn lambda_error(status: StatusCode, error_type: &str, body: &[u8]) -> anyhow::Error {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|body| {
            body.get("Message")
                .or_else(|| body.get("message"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    anyhow!(ApiError {
        status,
        error_type: error_type.to_owned(),
        message,
    })
}

/// An error the gateway answered with, kept typed so callers can tell a conflict apart.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: String,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.error_type, self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

fn is_conflict(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<ApiError>()
        .is_some_and(|e| e.error_type == "ResourceConflictException")
}
