//! The invoker over gRPC (`proto/nimbus/invoker/v1/invoker.proto`): a thin server adapter
//! around any [`Invoker`], the [`RemoteInvoker`] client, and the conversions between the
//! wire messages and `nimbus-core` types. With a [`ServiceToken`], the server answers only
//! callers presenting it, and the client presents it. Domain errors travel as a gRPC status carrying the
//! Lambda error name in `x-amzn-errortype`, so they come out the other side unchanged.

use std::future::Future;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::{
    CodeSha256, Error, FunctionConfig, FunctionError, FunctionName, InvokeOutcome, InvokeRequest,
    Invoker, RequestId, Result, Runtime,
};
use nimbus_proto::auth::{AttachToken, RequireToken, ServiceToken};
use nimbus_proto::invoker as pb;
use nimbus_proto::status::{from_status, to_status};
use nimbus_telemetry::trace::TRACEPARENT;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::Status;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Server};
use tracing::Instrument as _;

/// Room for a 6 MB payload plus the rest of the message.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The gRPC service for `invoker`, answering only callers that present `token` (any caller
/// without one).
pub fn service(
    invoker: Arc<dyn Invoker>,
    token: Option<ServiceToken>,
) -> InterceptedService<pb::invoker_server::InvokerServer<InvokerService>, RequireToken> {
    let server = pb::invoker_server::InvokerServer::new(InvokerService { invoker })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    InterceptedService::new(server, RequireToken::new(token))
}

/// Serves `invoker` on `listener` until `shutdown`, then lets in-flight calls finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    invoker: Arc<dyn Invoker>,
    token: Option<ServiceToken>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::result::Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .add_service(service(invoker, token))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

pub struct InvokerService {
    invoker: Arc<dyn Invoker>,
}

#[tonic::async_trait]
impl pb::invoker_server::Invoker for InvokerService {
    async fn invoke(
        &self,
        request: tonic::Request<pb::InvokeRequest>,
    ) -> std::result::Result<tonic::Response<pb::InvokeResponse>, Status> {
        // The caller's span (the gateway's invoke, a worker's attempt) is this call's parent.
        let span = tracing::info_span!("invoker.rpc", trace_id = tracing::field::Empty);
        if let Some(parent) = request
            .metadata()
            .get(TRACEPARENT)
            .and_then(|value| value.to_str().ok())
        {
            nimbus_telemetry::trace::set_parent(&span, parent);
        }
        nimbus_telemetry::trace::record_trace_id(&span);
        let request = request_from_wire(request.into_inner()).map_err(to_status)?;
        let outcome = self
            .invoker
            .invoke(request)
            .instrument(span)
            .await
            .map_err(to_status)?;
        Ok(tonic::Response::new(outcome_to_wire(outcome)))
    }
}

/// An [`Invoker`] in another process, reached over gRPC.
#[derive(Clone)]
pub struct RemoteInvoker {
    client: pb::invoker_client::InvokerClient<InterceptedService<Channel, AttachToken>>,
}

impl RemoteInvoker {
    /// Connects lazily: the invoker may come up after the caller. Every call presents
    /// `token`, if given.
    pub async fn connect(url: &str, token: Option<&ServiceToken>) -> Result<Self> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Error::Service(format!("invalid invoker URL {url}: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5));
        let client = pb::invoker_client::InvokerClient::with_interceptor(
            endpoint.connect_lazy(),
            AttachToken::new(token),
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self { client })
    }
}

#[async_trait::async_trait]
impl Invoker for RemoteInvoker {
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeOutcome> {
        let mut request = tonic::Request::new(request_to_wire(request));
        if let Some(value) = nimbus_telemetry::trace::current_traceparent()
            .and_then(|parent| MetadataValue::try_from(parent).ok())
        {
            request.metadata_mut().insert(TRACEPARENT, value);
        }
        let response = self
            .client
            .clone()
            .invoke(request)
            .await
            .map_err(|status| from_status(status, "invoker"))?;
        outcome_from_wire(response.into_inner())
    }
}

fn function_to_wire(f: FunctionConfig) -> pb::FunctionSpec {
    pb::FunctionSpec {
        name: f.name.to_string(),
        version: f.version,
        runtime: f.runtime.to_string(),
        handler: f.handler,
        code_sha256: f.code_sha256.to_hex(),
        code_size: f.code_size,
        timeout_secs: f.timeout_secs,
        memory_mb: f.memory_mb,
        environment: f.environment.into_iter().collect(),
        reserved_concurrency: f.reserved_concurrency,
        revision_id: f.revision_id,
        role: f.role,
        description: f.description,
        last_modified: f.last_modified.format(&Rfc3339).unwrap_or_default(),
    }
}

fn function_from_wire(f: pb::FunctionSpec) -> Result<FunctionConfig> {
    let invalid =
        |what: &str| Error::InvalidParameterValue(format!("invalid {what} in invoke request"));
    Ok(FunctionConfig {
        name: FunctionName::parse(&f.name)?,
        runtime: Runtime::from_str(&f.runtime)?,
        handler: f.handler,
        role: f.role,
        description: f.description,
        timeout_secs: f.timeout_secs,
        memory_mb: f.memory_mb,
        environment: f.environment.into_iter().collect(),
        reserved_concurrency: f.reserved_concurrency,
        code_sha256: CodeSha256::from_hex(&f.code_sha256)?,
        code_size: f.code_size,
        version: f.version,
        revision_id: f.revision_id,
        last_modified: OffsetDateTime::parse(&f.last_modified, &Rfc3339)
            .map_err(|_| invalid("last_modified"))?,
    })
}

fn request_to_wire(r: InvokeRequest) -> pb::InvokeRequest {
    pb::InvokeRequest {
        request_id: r.request_id.to_string(),
        function: Some(function_to_wire(r.function)),
        payload: r.payload.to_vec(),
        client_context: r.client_context,
        want_log_tail: r.want_log_tail,
        trace_id: r.trace_id,
    }
}

fn request_from_wire(r: pb::InvokeRequest) -> Result<InvokeRequest> {
    let function = r.function.ok_or_else(|| {
        Error::InvalidParameterValue("invoke request without a function".to_owned())
    })?;
    Ok(InvokeRequest {
        request_id: RequestId::parse(&r.request_id)?,
        function: function_from_wire(function)?,
        payload: Bytes::from(r.payload),
        client_context: r.client_context,
        want_log_tail: r.want_log_tail,
        trace_id: r.trace_id,
    })
}

fn outcome_to_wire(o: InvokeOutcome) -> pb::InvokeResponse {
    pb::InvokeResponse {
        payload: o.payload.to_vec(),
        function_error: o.function_error.map(|e| e.as_str().to_owned()),
        error_type: o.error_type,
        executed_version: o.executed_version,
        duration_micros: u64::try_from(o.duration.as_micros()).unwrap_or(u64::MAX),
        init_duration_micros: o
            .init_duration
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        max_memory_used_mb: o.max_memory_used_mb,
        log_tail: o.log_tail,
    }
}

fn outcome_from_wire(r: pb::InvokeResponse) -> Result<InvokeOutcome> {
    let function_error = match r.function_error.as_deref() {
        None => None,
        Some("Unhandled") => Some(FunctionError::Unhandled),
        Some(other) => return Err(Error::Service(format!("unknown function error '{other}'"))),
    };
    Ok(InvokeOutcome {
        payload: Bytes::from(r.payload),
        function_error,
        error_type: r.error_type,
        executed_version: r.executed_version,
        duration: Duration::from_micros(r.duration_micros),
        init_duration: r.init_duration_micros.map(Duration::from_micros),
        max_memory_used_mb: r.max_memory_used_mb,
        log_tail: r.log_tail,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn requests_survive_the_wire() {
        let function = FunctionConfig {
            name: FunctionName::parse("f").unwrap(),
            runtime: Runtime::from_str("nodejs20.x").unwrap(),
            handler: Some("index.handler".to_owned()),
            role: "arn:aws:iam::000000000000:role/r".to_owned(),
            description: "d".to_owned(),
            timeout_secs: 30,
            memory_mb: 512,
            environment: BTreeMap::from([("K".to_owned(), "v".to_owned())]),
            reserved_concurrency: Some(3),
            code_sha256: CodeSha256::of(b"zip"),
            code_size: 3,
            version: "$LATEST".to_owned(),
            revision_id: "rev".to_owned(),
            last_modified: OffsetDateTime::now_utc(),
        };
        let request = InvokeRequest {
            request_id: RequestId::new(),
            function,
            payload: Bytes::from_static(b"{}"),
            client_context: Some("{}".to_owned()),
            want_log_tail: true,
            trace_id: Some("Root=1".to_owned()),
        };
        let back = request_from_wire(request_to_wire(request.clone())).unwrap();
        assert_eq!(back.function, request.function);
        assert_eq!(back.request_id, request.request_id);
        assert_eq!(back.payload, request.payload);
        assert_eq!(back.client_context, request.client_context);
        assert_eq!(back.trace_id, request.trace_id);
        assert!(back.want_log_tail);
    }
}
