//! Cross-origin resource sharing for HTTP triggers (function URLs and routes): the `Cors`
//! shape of the Lambda model, its validation, and the headers it puts on a preflight and on
//! an ordinary response. The gateway answers preflights itself, without invoking the function,
//! as Lambda and API Gateway do.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Lambda's bounds on the lists of a `Cors` (the model's `max` of each list).
const MAX_HEADERS: usize = 100;
const MAX_METHODS: usize = 6;
const MAX_ORIGINS: usize = 100;
const MAX_HEADER_CHARS: usize = 1024;
const MAX_ORIGIN_CHARS: usize = 253;
/// `MaxAge` is at most a day.
pub const MAX_AGE_SECS: u32 = 86_400;

const METHODS: [&str; 8] = [
    "GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "*",
];

/// `Cors` as `CreateFunctionUrlConfig` takes and returns it. Absent lists allow nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Cors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
}

/// A response header a CORS configuration adds: name (lowercase) and value.
pub type CorsHeader = (&'static str, String);

impl Cors {
    /// Checks the model's bounds, and that methods are HTTP methods and origins are `*` or
    /// `scheme://host[:port]`.
    pub fn validate(&self) -> Result<()> {
        check_list("AllowHeaders", &self.allow_headers, MAX_HEADERS, |h| {
            h.len() <= MAX_HEADER_CHARS && is_token_or_star(h)
        })?;
        check_list("ExposeHeaders", &self.expose_headers, MAX_HEADERS, |h| {
            h.len() <= MAX_HEADER_CHARS && is_token_or_star(h)
        })?;
        check_list("AllowMethods", &self.allow_methods, MAX_METHODS, |m| {
            METHODS.contains(&m.to_ascii_uppercase().as_str())
        })?;
        check_list("AllowOrigins", &self.allow_origins, MAX_ORIGINS, |o| {
            !o.is_empty() && o.len() <= MAX_ORIGIN_CHARS && is_origin(o)
        })?;
        if self.max_age.is_some_and(|age| age > MAX_AGE_SECS) {
            return Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value at 'cors.maxAge' failed to satisfy \
                 constraint: Member must have value less than or equal to {MAX_AGE_SECS}"
            )));
        }
        Ok(())
    }

    /// The headers answering a preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`), or `None` when the origin or the method is not
    /// allowed: the browser then refuses the request itself.
    pub fn preflight(
        &self,
        origin: &str,
        request_method: &str,
        request_headers: Option<&str>,
    ) -> Option<Vec<CorsHeader>> {
        let allow_origin = self.allowed_origin(origin)?;
        let methods = self.allow_methods.as_deref().unwrap_or_default();
        let method_allowed = methods
            .iter()
            .any(|m| m == "*" || m.eq_ignore_ascii_case(request_method));
        if !method_allowed {
            return None;
        }
        let mut headers = vec![
            ("access-control-allow-origin", allow_origin),
            ("access-control-allow-methods", methods.join(",")),
        ];
        let allowed_headers = self.allow_headers.as_deref().unwrap_or_default();
        if let Some(requested) = request_headers.filter(|h| !h.trim().is_empty()) {
            let all_allowed = requested.split(',').map(str::trim).all(|name| {
                allowed_headers
                    .iter()
                    .any(|h| h == "*" || h.eq_ignore_ascii_case(name))
            });
            if !all_allowed {
                return None;
            }
            headers.push(("access-control-allow-headers", allowed_headers.join(",")));
        }
        if self.allow_credentials == Some(true) {
            headers.push(("access-control-allow-credentials", "true".to_owned()));
        }
        if let Some(age) = self.max_age {
            headers.push(("access-control-max-age", age.to_string()));
        }
        headers.push(("vary", "Origin".to_owned()));
        Some(headers)
    }

    /// The headers an ordinary response to a cross-origin request from `origin` carries;
    /// none when the origin is not allowed.
    pub fn response_headers(&self, origin: &str) -> Vec<CorsHeader> {
        let Some(allow_origin) = self.allowed_origin(origin) else {
            return Vec::new();
        };
        let mut headers = vec![("access-control-allow-origin", allow_origin)];
        if let Some(expose) = self.expose_headers.as_deref().filter(|e| !e.is_empty()) {
            headers.push(("access-control-expose-headers", expose.join(",")));
        }
        if self.allow_credentials == Some(true) {
            headers.push(("access-control-allow-credentials", "true".to_owned()));
        }
        headers.push(("vary", "Origin".to_owned()));
        headers
    }

    /// The `Access-Control-Allow-Origin` value for `origin`: `*` when any origin may call
    /// without credentials, else the origin itself (a credentialed response may not say `*`).
    fn allowed_origin(&self, origin: &str) -> Option<String> {
        let origins = self.allow_origins.as_deref().unwrap_or_default();
        let any = origins.iter().any(|o| o == "*");
        if any && self.allow_credentials != Some(true) {
            return Some("*".to_owned());
        }
        let listed = origins.iter().any(|o| o.eq_ignore_ascii_case(origin));
        (any || listed).then(|| origin.to_owned())
    }
}

fn check_list(
    field: &str,
    list: &Option<Vec<String>>,
    max: usize,
    valid: impl Fn(&str) -> bool,
) -> Result<()> {
    let Some(list) = list else { return Ok(()) };
    if list.len() > max {
        return Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value at 'cors.{}' failed to satisfy constraint: \
             Member must have length less than or equal to {max}",
            lower_first(field)
        )));
    }
    if let Some(bad) = list.iter().find(|item| !valid(item)) {
        return Err(Error::InvalidParameterValue(format!(
            "Invalid value '{bad}' in Cors.{field}"
        )));
    }
    Ok(())
}

fn lower_first(field: &str) -> String {
    let mut chars = field.chars();
    chars
        .next()
        .map(|first| first.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// A header name (an RFC 9110 token) or `*`.
fn is_token_or_star(name: &str) -> bool {
    name == "*"
        || (!name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
}

/// `*`, or `scheme://host` with an optional port and nothing after it.
fn is_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], methods: &[&str], headers: &[&str]) -> Cors {
        let list = |items: &[&str]| Some(items.iter().map(|s| (*s).to_owned()).collect());
        Cors {
            allow_origins: list(origins),
            allow_methods: list(methods),
            allow_headers: list(headers),
            ..Cors::default()
        }
    }

    fn header<'a>(headers: &'a [CorsHeader], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_listed_origin_and_method_pass_the_preflight() {
        let mut config = cors(
            &["https://app.example"],
            &["GET", "POST"],
            &["content-type"],
        );
        config.max_age = Some(300);
        let headers = config
            .preflight("https://app.example", "POST", Some("Content-Type"))
            .unwrap();
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(
            header(&headers, "access-control-allow-methods"),
            Some("GET,POST")
        );
        assert_eq!(
            header(&headers, "access-control-allow-headers"),
            Some("content-type")
        );
        assert_eq!(header(&headers, "access-control-max-age"), Some("300"));
    }

    #[test]
    fn unlisted_origins_methods_and_headers_fail_the_preflight() {
        let config = cors(&["https://app.example"], &["GET"], &[]);
        assert!(
            config
                .preflight("https://evil.example", "GET", None)
                .is_none()
        );
        assert!(
            config
                .preflight("https://app.example", "DELETE", None)
                .is_none()
        );
        assert!(
            config
                .preflight("https://app.example", "GET", Some("x-secret"))
                .is_none()
        );
        assert!(
            Cors::default()
                .preflight("https://app.example", "GET", None)
                .is_none()
        );
    }

    #[test]
    fn a_wildcard_origin_is_echoed_only_with_credentials() {
        let mut config = cors(&["*"], &["*"], &["*"]);
        let open = config.response_headers("https://a.example");
        assert_eq!(header(&open, "access-control-allow-origin"), Some("*"));
        config.allow_credentials = Some(true);
        let credentialed = config.response_headers("https://a.example");
        assert_eq!(
            header(&credentialed, "access-control-allow-origin"),
            Some("https://a.example")
        );
        assert_eq!(
            header(&credentialed, "access-control-allow-credentials"),
            Some("true")
        );
    }

    #[test]
    fn validation_follows_the_model() {
        assert!(
            cors(&["https://a.example:8443", "*"], &["get", "*"], &["x-a"])
                .validate()
                .is_ok()
        );
        assert!(cors(&["a.example"], &[], &[]).validate().is_err());
        assert!(
            cors(&["https://a.example/path"], &[], &[])
                .validate()
                .is_err()
        );
        assert!(cors(&[], &["FETCH"], &[]).validate().is_err());
        assert!(cors(&[], &["GET"; 7], &[]).validate().is_err());
        assert!(cors(&[], &[], &["bad header"]).validate().is_err());
        let old = Cors {
            max_age: Some(MAX_AGE_SECS + 1),
            ..Cors::default()
        };
        assert!(old.validate().is_err());
    }
}
