//! Reads a request body that must stay under a limit without ever holding more than the
//! limit: a declared `Content-Length` over it is refused before the body is read, and a body
//! of unknown length is read only until it passes the limit.

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use nimbus_core::Error;

/// The whole body, or `too_large()` as soon as it is known to exceed `limit` bytes.
pub(crate) async fn read_bounded(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    too_large: impl Fn() -> Error,
) -> Result<Bytes, Error> {
    if declared_length(headers).is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(error) => Err(Error::InvalidRequestContent(format!(
            "Could not read request body: {error}"
        ))),
    }
}

/// hyper has already refused a malformed `Content-Length`, so an unparsable one is absent.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::HeaderValue;
    use futures::StreamExt as _;
    use futures::stream;

    use super::*;

    fn too_large() -> Error {
        Error::RequestTooLarge("too large".into())
    }

    /// A body of `chunks` chunks of `size` bytes that counts how many were pulled.
    fn counted_body(chunks: usize, size: usize, pulled: Arc<AtomicUsize>) -> Body {
        let frames = stream::iter(0..chunks).map(move |_| {
            pulled.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Bytes::from(vec![b'x'; size]))
        });
        Body::from_stream(frames)
    }

    #[tokio::test]
    async fn reads_a_body_within_the_limit() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let body = counted_body(4, 10, pulled.clone());
        let bytes = read_bounded(&HeaderMap::new(), body, 40, too_large)
            .await
            .unwrap();
        assert_eq!(bytes.len(), 40);
    }

    #[tokio::test]
    async fn stops_reading_at_the_limit() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let body = counted_body(1000, 10, pulled.clone());
        let error = read_bounded(&HeaderMap::new(), body, 45, too_large)
            .await
            .unwrap_err();
        assert_eq!(error, too_large());
        assert_eq!(pulled.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn refuses_a_declared_length_without_reading() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let body = counted_body(1, 10, pulled.clone());
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("46"));
        let error = read_bounded(&headers, body, 45, too_large)
            .await
            .unwrap_err();
        assert_eq!(error, too_large());
        assert_eq!(pulled.load(Ordering::SeqCst), 0);
    }
}
