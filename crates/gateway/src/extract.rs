//! Extractors that refuse bad input the way Lambda does: a Lambda-shaped [`ApiError`] instead
//! of axum's plain-text rejections, and the `FunctionName` path parameter resolved to a
//! function name (plain, full ARN or partial ARN, with its qualifier checked).

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use nimbus_core::function::LATEST;
use nimbus_core::{Error, FunctionName};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::MAX_CONTROL_BODY_BYTES;
use crate::error::ApiError;
use crate::payload;
use crate::state::AppState;

/// A JSON request body. Content types are not checked: SDKs disagree on what they send.
/// An empty body reads as `{}`, so that a missing member is reported as such.
pub(crate) struct LambdaJson<T>(pub(crate) T);

impl<S, T> FromRequest<S> for LambdaJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let too_large = || {
            Error::RequestTooLarge(format!(
                "Request must be smaller than {MAX_CONTROL_BODY_BYTES} bytes"
            ))
        };
        // The body limit alone would only trip after reading that much.
        if payload::declared_length(request.headers())
            .is_some_and(|length| length > MAX_CONTROL_BODY_BYTES as u64)
        {
            return Err(too_large().into());
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    Error::InvalidRequestContent(format!(
                        "Could not read request body: {}",
                        rejection.body_text()
                    ))
                }
            })?;
        if body.len() <= BLOCKING_PARSE_BYTES {
            return parse(&body).map(Self);
        }
        // A code upload is tens of megabytes of JSON: too long a parse for the reactor.
        tokio::task::spawn_blocking(move || parse(&body))
            .await
            .map_err(|e| Error::Service(format!("request parsing task failed: {e}")))?
            .map(Self)
    }
}

/// Bodies larger than this are parsed on the blocking pool.
const BLOCKING_PARSE_BYTES: usize = 256 * 1024;

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| json_error(&e).into())
}

/// Well-formed JSON of the wrong shape is a bad parameter; anything else is bad content.
fn json_error(error: &serde_json::Error) -> Error {
    match error.classify() {
        serde_json::error::Category::Data => Error::InvalidParameterValue(error.to_string()),
        _ => {
            Error::InvalidRequestContent(format!("Could not parse request body into json: {error}"))
        }
    }
}

/// Query string members.
pub(crate) struct LambdaQuery<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for LambdaQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(query)| Self(query))
            .map_err(|rejection| Error::InvalidParameterValue(rejection.body_text()).into())
    }
}

/// The one path parameter of a route, percent-decoded.
pub(crate) struct PathParam(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(param)| Self(param))
            .map_err(|rejection| Error::InvalidParameterValue(rejection.body_text()).into())
    }
}

#[derive(Deserialize)]
struct QualifierQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

/// The function a `{FunctionName}` path names and its qualifier, from the name
/// (`NAME:QUALIFIER` or a qualified ARN) or from `?Qualifier=`; when both are given they must
/// agree. The qualifier is `None` when neither gives one.
pub(crate) struct QualifiedFunctionRef {
    pub(crate) name: FunctionName,
    pub(crate) qualifier: Option<String>,
}

impl FromRequestParts<AppState> for QualifiedFunctionRef {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let PathParam(reference) = PathParam::from_request_parts(parts, state).await?;
        let LambdaQuery(query) =
            LambdaQuery::<QualifierQuery>::from_request_parts(parts, state).await?;
        let (name, in_name) = FunctionName::parse_reference(&reference)?;
        let qualifier = match (in_name, query.qualifier) {
            (Some(in_name), Some(in_query)) if in_name != in_query => {
                return Err(Error::InvalidParameterValue(
                    "The derived qualifier from the function name does not match the \
                     specified qualifier."
                        .to_owned(),
                )
                .into());
            }
            (in_name, in_query) => in_name.or(in_query),
        };
        Ok(Self { name, qualifier })
    }
}

/// The function a `{FunctionName}` path names, for operations on the function itself (its
/// `$LATEST`): any other qualifier names a function that does not exist.
pub(crate) struct FunctionRef(pub(crate) FunctionName);

impl FromRequestParts<AppState> for FunctionRef {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let QualifiedFunctionRef { name, qualifier } =
            QualifiedFunctionRef::from_request_parts(parts, state).await?;
        match qualifier {
            Some(qualifier) if qualifier != LATEST => Err(Error::ResourceNotFound(format!(
                "Function not found: {}:{qualifier}",
                state.config().function_arn(&name)
            ))
            .into()),
            _ => Ok(Self(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_is_bad_content_and_wrong_shapes_are_bad_parameters() {
        let syntax = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
        assert!(matches!(
            json_error(&syntax),
            Error::InvalidRequestContent(_)
        ));
        let data = serde_json::from_slice::<u32>(b"\"x\"").unwrap_err();
        assert!(matches!(json_error(&data), Error::InvalidParameterValue(_)));
    }
}
