//! The shared service token with which Nimbus' services call each other over gRPC, sent as
//! `authorization: Bearer <token>` metadata: [`RequireToken`] checks it on the server (in
//! constant time), [`AttachToken`] sends it from the client. A server without a token
//! accepts every caller.

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq as _;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

const AUTHORIZATION: &str = "authorization";

/// The secret every service of one deployment shares.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceToken(Arc<str>);

impl ServiceToken {
    /// A token must be printable ASCII without spaces, as it travels in gRPC metadata.
    pub fn new(token: &str) -> Result<Self, String> {
        if token.is_empty() {
            return Err("the service token is empty".to_owned());
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the service token must be printable ASCII without spaces".to_owned());
        }
        Ok(Self(token.into()))
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

/// The token stays out of logs.
impl fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceToken(***)")
    }
}

/// Server side: refuses calls that do not present the token with `Unauthenticated`.
#[derive(Clone)]
pub struct RequireToken {
    expected: Option<Arc<[u8]>>,
}

impl RequireToken {
    /// `None` lets every call through.
    pub fn new(token: Option<ServiceToken>) -> Self {
        Self {
            expected: token.map(|token| token.bearer().into_bytes().into()),
        }
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get(AUTHORIZATION)
            .map(|value| value.as_bytes())
            .unwrap_or_default();
        // Differing lengths answer at once; equal ones take the same time whatever matches.
        if bool::from(given.ct_eq(expected)) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "this call needs the service token (authorization: Bearer <token>)",
            ))
        }
    }
}

/// Client side: sends the token with every call, if there is one.
#[derive(Clone)]
pub struct AttachToken {
    value: Option<AsciiMetadataValue>,
}

impl AttachToken {
    pub fn new(token: Option<&ServiceToken>) -> Self {
        Self {
            // `ServiceToken::new` admits only what a metadata value can hold.
            value: token.and_then(|token| token.bearer().parse().ok()),
        }
    }
}

impl Interceptor for AttachToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.value {
            request.metadata_mut().insert(AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_with(interceptor: &mut RequireToken, authorization: Option<&str>) -> bool {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert(AUTHORIZATION, value.parse().unwrap());
        }
        interceptor.call(request).is_ok()
    }

    #[test]
    fn only_the_token_opens_a_guarded_server() {
        let token = ServiceToken::new("s3cret-token").unwrap();
        let mut guard = RequireToken::new(Some(token.clone()));
        assert!(call_with(&mut guard, Some("Bearer s3cret-token")));
        assert!(!call_with(&mut guard, None));
        assert!(!call_with(&mut guard, Some("Bearer s3cret-tokem")));
        assert!(!call_with(&mut guard, Some("Bearer s3cret")));
        assert!(!call_with(&mut guard, Some("s3cret-token")));

        let attached = AttachToken::new(Some(&token))
            .call(Request::new(()))
            .unwrap();
        let value = attached.metadata().get(AUTHORIZATION).unwrap();
        assert!(call_with(&mut guard, Some(value.to_str().unwrap())));
    }

    #[test]
    fn an_open_server_takes_every_call() {
        let mut open = RequireToken::new(None);
        assert!(call_with(&mut open, None));
        assert!(
            AttachToken::new(None)
                .call(Request::new(()))
                .unwrap()
                .metadata()
                .get(AUTHORIZATION)
                .is_none()
        );
    }

    #[test]
    fn tokens_are_checked_and_hidden() {
        assert!(ServiceToken::new("").is_err());
        assert!(ServiceToken::new("has space").is_err());
        assert!(ServiceToken::new("tök").is_err());
        let token = ServiceToken::new("visible").unwrap();
        assert!(!format!("{token:?}").contains("visible"));
    }
}
