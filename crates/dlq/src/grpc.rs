//! The DLQ service over gRPC (`proto/nimbus/dlq/v1/dlq.proto`): a thin server adapter around
//! any [`DeadLetters`], the [`RemoteDeadLetters`] client, and the conversions between wire
//! messages and `nimbus-core` types. With a [`ServiceToken`], the server answers only callers
//! presenting it, and the client presents it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::{
    Attempt, Cursor, DeadLetter, DeadLetterFilter, DeadLetterPage, DeadLetters, Error,
    FunctionName, RedriveMark, Redriven, RequestId, Result, Selection,
};
use nimbus_proto::auth::{AttachToken, RequireToken, ServiceToken};
use nimbus_proto::dlq as pb;
use nimbus_proto::status::{from_status, to_status};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

/// A page of dead letters holds up to 100 payloads of 256 KB each, plus their attempts.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

type GuardedServer = InterceptedService<
    pb::dead_letters_server::DeadLettersServer<DeadLettersService>,
    RequireToken,
>;

/// The gRPC service for `dead_letters`, answering only callers that present `token` (any
/// caller without one).
pub fn service(dead_letters: Arc<dyn DeadLetters>, token: Option<ServiceToken>) -> GuardedServer {
    let server =
        pb::dead_letters_server::DeadLettersServer::new(DeadLettersService { dead_letters })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
    InterceptedService::new(server, RequireToken::new(token))
}

/// Serves `dead_letters` on `listener` until `shutdown`, then lets in-flight calls finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    dead_letters: Arc<dyn DeadLetters>,
    token: Option<ServiceToken>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::result::Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .add_service(service(dead_letters, token))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

pub struct DeadLettersService {
    dead_letters: Arc<dyn DeadLetters>,
}

type GrpcResult<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::dead_letters_server::DeadLetters for DeadLettersService {
    async fn put(&self, request: Request<pb::PutRequest>) -> GrpcResult<pb::PutResponse> {
        let letter = request
            .into_inner()
            .letter
            .ok_or_else(|| invalid("a dead letter is required"))
            .and_then(letter_from_wire)
            .map_err(to_status)?;
        self.dead_letters.put(letter).await.map_err(to_status)?;
        Ok(Response::new(pb::PutResponse {}))
    }

    async fn list(&self, request: Request<pb::ListRequest>) -> GrpcResult<pb::ListResponse> {
        let request = request.into_inner();
        let filter = filter_from_wire(request.filter.unwrap_or_default()).map_err(to_status)?;
        let after = request
            .after
            .as_deref()
            .map(Cursor::parse_token)
            .transpose()
            .map_err(to_status)?;
        let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
        let page = self
            .dead_letters
            .list(filter, after, limit)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListResponse {
            letters: page.letters.into_iter().map(letter_to_wire).collect(),
            next: page.next.map(|cursor| cursor.to_token()),
        }))
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> GrpcResult<pb::DeadLetter> {
        let request_id = RequestId::parse(&request.into_inner().request_id).map_err(to_status)?;
        let letter = self.dead_letters.get(request_id).await.map_err(to_status)?;
        Ok(Response::new(letter_to_wire(letter)))
    }

    async fn redrive(&self, request: Request<pb::Selection>) -> GrpcResult<pb::RedriveResponse> {
        let selection = selection_from_wire(request.into_inner()).map_err(to_status)?;
        let redriven = self
            .dead_letters
            .redrive(selection)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RedriveResponse {
            redriven: redriven
                .into_iter()
                .map(|r| pb::Redriven {
                    original_request_id: r.original.to_string(),
                    request_id: r.request_id.to_string(),
                })
                .collect(),
        }))
    }

    async fn purge(&self, request: Request<pb::Selection>) -> GrpcResult<pb::PurgeResponse> {
        let selection = selection_from_wire(request.into_inner()).map_err(to_status)?;
        let purged = self
            .dead_letters
            .purge(selection)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::PurgeResponse { purged }))
    }
}

/// The DLQ service in another process, reached over gRPC.
#[derive(Clone)]
pub struct RemoteDeadLetters {
    client: Client,
}

type Client = pb::dead_letters_client::DeadLettersClient<InterceptedService<Channel, AttachToken>>;

impl RemoteDeadLetters {
    /// Connects lazily: the DLQ service may come up after its clients. Every call presents
    /// `token`, if given.
    pub fn connect(url: &str, token: Option<&ServiceToken>) -> Result<Self> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Error::Service(format!("invalid DLQ service URL {url}: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5));
        let client = pb::dead_letters_client::DeadLettersClient::with_interceptor(
            endpoint.connect_lazy(),
            AttachToken::new(token),
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Self { client })
    }

    fn client(&self) -> Client {
        self.client.clone()
    }
}

fn remote(status: Status) -> Error {
    from_status(status, "DLQ service")
}

#[async_trait::async_trait]
impl DeadLetters for RemoteDeadLetters {
    async fn put(&self, letter: DeadLetter) -> Result<()> {
        let request = pb::PutRequest {
            letter: Some(letter_to_wire(letter)),
        };
        self.client().put(request).await.map_err(remote)?;
        Ok(())
    }

    async fn list(
        &self,
        filter: DeadLetterFilter,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<DeadLetterPage> {
        let request = pb::ListRequest {
            filter: Some(filter_to_wire(filter)),
            after: after.map(|cursor| cursor.to_token()),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        };
        let response = self.client().list(request).await.map_err(remote)?;
        let response = response.into_inner();
        Ok(DeadLetterPage {
            letters: response
                .letters
                .into_iter()
                .map(letter_from_wire)
                .collect::<Result<_>>()?,
            next: response
                .next
                .as_deref()
                .map(Cursor::parse_token)
                .transpose()?,
        })
    }

    async fn get(&self, request_id: RequestId) -> Result<DeadLetter> {
        let request = pb::GetRequest {
            request_id: request_id.to_string(),
        };
        let letter = self.client().get(request).await.map_err(remote)?;
        letter_from_wire(letter.into_inner())
    }

    async fn redrive(&self, selection: Selection) -> Result<Vec<Redriven>> {
        let response = self
            .client()
            .redrive(selection_to_wire(selection))
            .await
            .map_err(remote)?;
        response
            .into_inner()
            .redriven
            .into_iter()
            .map(|r| {
                Ok(Redriven {
                    original: RequestId::parse(&r.original_request_id)?,
                    request_id: RequestId::parse(&r.request_id)?,
                })
            })
            .collect()
    }

    async fn purge(&self, selection: Selection) -> Result<u64> {
        let response = self
            .client()
            .purge(selection_to_wire(selection))
            .await
            .map_err(remote)?;
        Ok(response.into_inner().purged)
    }
}

fn invalid(message: &str) -> Error {
    Error::InvalidParameterValue(message.to_owned())
}

fn timestamp_to_wire(at: OffsetDateTime) -> String {
    // RFC 3339 formats every UTC time Nimbus produces.
    at.format(&Rfc3339).unwrap_or_default()
}

fn timestamp_from_wire(text: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| invalid(&format!("'{text}' is not an RFC 3339 time")))
}

fn letter_to_wire(letter: DeadLetter) -> pb::DeadLetter {
    pb::DeadLetter {
        request_id: letter.request_id.to_string(),
        function_name: letter.function_name.as_str().to_owned(),
        qualifier: letter.qualifier,
        payload: letter.payload.to_vec(),
        attempts: letter
            .attempts
            .into_iter()
            .map(|attempt| pb::Attempt {
                started_at: timestamp_to_wire(attempt.started_at),
                finished_at: timestamp_to_wire(attempt.finished_at),
                error_type: attempt.error_type,
                error_message: attempt.error_message,
            })
            .collect(),
        reason: letter.reason.as_str().to_owned(),
        enqueued_at: timestamp_to_wire(letter.enqueued_at),
        dead_lettered_at: timestamp_to_wire(letter.dead_lettered_at),
        redriven_at: letter.redrive.map(|mark| timestamp_to_wire(mark.at)),
        redrive_request_id: letter.redrive.map(|mark| mark.request_id.to_string()),
    }
}

fn letter_from_wire(letter: pb::DeadLetter) -> Result<DeadLetter> {
    let redrive = match (letter.redriven_at, letter.redrive_request_id) {
        (Some(at), Some(request_id)) => Some(RedriveMark {
            at: timestamp_from_wire(&at)?,
            request_id: RequestId::parse(&request_id)?,
        }),
        _ => None,
    };
    Ok(DeadLetter {
        request_id: RequestId::parse(&letter.request_id)?,
        function_name: FunctionName::parse(&letter.function_name)?,
        qualifier: letter.qualifier,
        payload: Bytes::from(letter.payload),
        attempts: letter
            .attempts
            .into_iter()
            .map(|attempt| {
                Ok(Attempt {
                    started_at: timestamp_from_wire(&attempt.started_at)?,
                    finished_at: timestamp_from_wire(&attempt.finished_at)?,
                    error_type: attempt.error_type,
                    error_message: attempt.error_message,
                })
            })
            .collect::<Result<_>>()?,
        reason: letter
            .reason
            .parse()
            .map_err(|_| invalid(&format!("unknown reason '{}'", letter.reason)))?,
        enqueued_at: timestamp_from_wire(&letter.enqueued_at)?,
        dead_lettered_at: timestamp_from_wire(&letter.dead_lettered_at)?,
        redrive,
    })
}

fn filter_to_wire(filter: DeadLetterFilter) -> pb::Filter {
    pb::Filter {
        function_name: filter.function_name.map(|name| name.as_str().to_owned()),
        since: filter.since.map(timestamp_to_wire),
        until: filter.until.map(timestamp_to_wire),
    }
}

fn filter_from_wire(filter: pb::Filter) -> Result<DeadLetterFilter> {
    Ok(DeadLetterFilter {
        function_name: filter
            .function_name
            .as_deref()
            .map(FunctionName::parse)
            .transpose()?,
        since: filter
            .since
            .as_deref()
            .map(timestamp_from_wire)
            .transpose()?,
        until: filter
            .until
            .as_deref()
            .map(timestamp_from_wire)
            .transpose()?,
    })
}

fn selection_to_wire(selection: Selection) -> pb::Selection {
    use pb::selection::Selection as Wire;
    pb::Selection {
        selection: Some(match selection {
            Selection::One(request_id) => Wire::RequestId(request_id.to_string()),
            Selection::Matching(filter) => Wire::Filter(filter_to_wire(filter)),
        }),
    }
}

fn selection_from_wire(selection: pb::Selection) -> Result<Selection> {
    use pb::selection::Selection as Wire;
    match selection.selection {
        Some(Wire::RequestId(request_id)) => Ok(Selection::One(RequestId::parse(&request_id)?)),
        Some(Wire::Filter(filter)) => Ok(Selection::Matching(filter_from_wire(filter)?)),
        None => Err(invalid("a request id or a filter is required")),
    }
}

#[cfg(test)]
mod tests {
    use nimbus_core::DeadLetterReason;

    use super::*;

    fn letter() -> DeadLetter {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        DeadLetter {
            request_id: RequestId::new(),
            function_name: FunctionName::parse("f").unwrap(),
            qualifier: "$LATEST".into(),
            payload: Bytes::from_static(b"\x00{\"a\":1}"),
            attempts: vec![Attempt {
                started_at: at,
                finished_at: at + time::Duration::milliseconds(3),
                error_type: Some("ValueError".into()),
                error_message: Some("boom".into()),
            }],
            reason: DeadLetterReason::RetriesExhausted,
            enqueued_at: at,
            dead_lettered_at: at + time::Duration::seconds(1),
            redrive: Some(RedriveMark {
                at: at + time::Duration::seconds(2),
                request_id: RequestId::new(),
            }),
        }
    }

    #[test]
    fn letters_survive_the_wire() {
        let letter = letter();
        assert_eq!(
            letter_from_wire(letter_to_wire(letter.clone())).unwrap(),
            letter
        );
    }

    #[test]
    fn selections_survive_the_wire() {
        let filter = DeadLetterFilter {
            function_name: Some(FunctionName::parse("f").unwrap()),
            since: Some(OffsetDateTime::UNIX_EPOCH),
            until: None,
        };
        for selection in [
            Selection::One(RequestId::new()),
            Selection::Matching(filter),
        ] {
            let back = selection_from_wire(selection_to_wire(selection.clone())).unwrap();
            assert_eq!(back, selection);
        }
        assert!(selection_from_wire(pb::Selection { selection: None }).is_err());
    }

    #[test]
    fn malformed_letters_are_refused() {
        let mut wire = letter_to_wire(letter());
        wire.enqueued_at = "yesterday".into();
        assert!(matches!(
            letter_from_wire(wire),
            Err(Error::InvalidParameterValue(_))
        ));
    }
}
