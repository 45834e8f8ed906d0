//! HTTP routes, API Gateway style: a method and a path template (`/orders/{id}`,
//! `/files/{proxy+}`) mapped to a function, run synchronously or queued as an event. A
//! [`RouteTable`] picks the route a request takes: the most specific path wins, segment by
//! segment from the left (a literal beats a `{parameter}`, which beats a greedy
//! `{name+}`), then an exact method beats `ANY`.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::cors::Cors;
use crate::function_url::AuthType;
use crate::{Error, FunctionName, InvocationType, Result};

/// API Gateway's integration timeout: how long a synchronous route waits for its function.
pub const DEFAULT_INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);
/// The longest integration timeout a route may ask for: a function's own longest run.
pub const MAX_INTEGRATION_TIMEOUT: Duration = Duration::from_secs(900);
const MIN_INTEGRATION_TIMEOUT: Duration = Duration::from_millis(50);
const MAX_PATH_CHARS: usize = 1024;
const METHODS: [&str; 8] = [
    "ANY", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
];

/// A declared route.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    pub route_id: String,
    /// An HTTP method in upper case, or `ANY`.
    pub method: String,
    pub path: RoutePath,
    pub function_name: FunctionName,
    /// A version or alias; `None` runs `$LATEST`.
    pub qualifier: Option<String>,
    /// `RequestResponse` or `Event`: how a request runs unless it asks otherwise (only an
    /// `Event` route lets the caller choose, with `X-Amz-Invocation-Type`).
    pub invocation_type: InvocationType,
    /// How long a synchronous request waits before it is answered `504`.
    pub integration_timeout: Duration,
    pub auth_type: AuthType,
    pub cors: Option<Cors>,
    pub created_at: OffsetDateTime,
}

impl HttpRoute {
    /// A fresh route id: 12 lowercase hex characters.
    pub fn new_route_id() -> String {
        let mut id = uuid::Uuid::new_v4().simple().to_string();
        id.truncate(12);
        id
    }

    /// `METHOD /path`, as API Gateway's `routeKey`.
    pub fn route_key(&self) -> String {
        format!("{} {}", self.method, self.path.as_str())
    }

    /// Checks what is not checked by the types: the method, the invocation type, the timeout.
    pub fn validate(&self) -> Result<()> {
        validate_method(&self.method)?;
        if self.invocation_type == InvocationType::DryRun {
            return Err(Error::InvalidParameterValue(
                "InvocationType of a route must be RequestResponse or Event".to_owned(),
            ));
        }
        if !(MIN_INTEGRATION_TIMEOUT..=MAX_INTEGRATION_TIMEOUT).contains(&self.integration_timeout)
        {
            return Err(Error::InvalidParameterValue(format!(
                "TimeoutInMillis must be between {} and {}",
                MIN_INTEGRATION_TIMEOUT.as_millis(),
                MAX_INTEGRATION_TIMEOUT.as_millis()
            )));
        }
        if let Some(cors) = &self.cors {
            cors.validate()?;
        }
        Ok(())
    }
}

/// `ANY` or one of the methods a route can take, in upper case.
pub fn validate_method(method: &str) -> Result<()> {
    if METHODS.contains(&method) {
        Ok(())
    } else {
        Err(Error::InvalidParameterValue(format!(
            "Invalid route method '{method}': must be one of {}",
            METHODS.join(", ")
        )))
    }
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Parameter(String),
    /// `{name+}`: one or more trailing segments.
    Greedy(String),
}

impl Segment {
    /// How specific a segment is: a literal beats a parameter beats a greedy one.
    fn rank(&self) -> u8 {
        match self {
            Self::Literal(_) => 2,
            Self::Parameter(_) => 1,
            Self::Greedy(_) => 0,
        }
    }
}

/// A route's path template, e.g. `/orders/{id}` or `/{proxy+}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath {
    template: String,
    segments: Vec<Segment>,
}

impl RoutePath {
    /// Parses a template: it starts with `/`, has no empty segment, each `{name}` is a whole
    /// segment with a unique name of letters, digits and `_`, and only the last segment may
    /// be greedy.
    pub fn parse(template: &str) -> Result<Self> {
        let invalid = |why: &str| {
            Error::InvalidParameterValue(format!("Invalid route path '{template}': {why}"))
        };
        if !template.starts_with('/') {
            return Err(invalid("it must start with /"));
        }
        if template.len() > MAX_PATH_CHARS {
            return Err(invalid("it is longer than 1024 characters"));
        }
        let mut segments = Vec::new();
        let parts: Vec<&str> = if template == "/" {
            Vec::new()
        } else {
            template[1..].split('/').collect()
        };
        for (index, part) in parts.iter().enumerate() {
            let segment = if let Some(name) =
                part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
            {
                let (name, greedy) = match name.strip_suffix('+') {
                    Some(name) => (name, true),
                    None => (name, false),
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(invalid(
                        "a parameter name may hold only letters, digits and _",
                    ));
                }
                if greedy && index + 1 != parts.len() {
                    return Err(invalid("only the last segment may be greedy ({name+})"));
                }
                let taken = segments
                    .iter()
                    .any(|s| matches!(s, Segment::Parameter(n) | Segment::Greedy(n) if n == name));
                if taken {
                    return Err(invalid("a parameter name is used twice"));
                }
                if greedy {
                    Segment::Greedy(name.to_owned())
                } else {
                    Segment::Parameter(name.to_owned())
                }
            } else {
                if part.is_empty() {
                    return Err(invalid("it has an empty segment"));
                }
                if !part.bytes().all(is_path_byte) {
                    return Err(invalid("a segment holds a character paths cannot hold"));
                }
                Segment::Literal((*part).to_owned())
            };
            segments.push(segment);
        }
        Ok(Self {
            template: template.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// The template with parameter names erased: two routes of one method whose keys are equal
    /// would match the same requests, so they conflict.
    pub fn conflict_key(&self) -> String {
        if self.segments.is_empty() {
            return "/".to_owned();
        }
        self.segments
            .iter()
            .map(|segment| match segment {
                Segment::Literal(literal) => format!("/{literal}"),
                Segment::Parameter(_) => "/{}".to_owned(),
                Segment::Greedy(_) => "/{+}".to_owned(),
            })
            .collect()
    }

    /// The path parameters if `path` (split into its non-empty, still percent-encoded
    /// segments) matches this template.
    fn matches(&self, path: &[&str]) -> Option<Vec<(String, String)>> {
        let mut parameters = Vec::new();
        for (index, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(literal) => {
                    if path.get(index) != Some(&literal.as_str()) {
                        return None;
                    }
                }
                Segment::Parameter(name) => {
                    parameters.push((name.clone(), decode(path.get(index)?)));
                }
                Segment::Greedy(name) => {
                    let rest = path.get(index..).filter(|rest| !rest.is_empty())?;
                    parameters.push((name.clone(), decode(&rest.join("/"))));
                    return Some(parameters);
                }
            }
        }
        (path.len() == self.segments.len()).then_some(parameters)
    }

    fn ranks(&self) -> Vec<u8> {
        self.segments.iter().map(Segment::rank).collect()
    }
}

/// RFC 3986 `pchar` bytes, less `{` and `}` which only parameters use.
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%".contains(&b)
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// The route a request took, and the path parameters it bound.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub route: Arc<HttpRoute>,
    pub path_parameters: Vec<(String, String)>,
}

/// Every route, ordered so that the first that matches a request is the one it takes.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<HttpRoute>>,
}

impl RouteTable {
    pub fn new(routes: impl IntoIterator<Item = HttpRoute>) -> Self {
        let mut routes: Vec<Arc<HttpRoute>> = routes.into_iter().map(Arc::new).collect();
        // Most specific path first; then an exact method before ANY.
        routes.sort_by(|a, b| {
            b.path
                .ranks()
                .cmp(&a.path.ranks())
                .then_with(|| (a.method == "ANY").cmp(&(b.method == "ANY")))
        });
        Self { routes }
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The route a `method` request for `path` (as sent, percent-encoded, without a query)
    /// takes, if any.
    pub fn find(&self, method: &str, path: &str) -> Option<RouteMatch> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.routes
            .iter()
            .filter(|route| route.method == "ANY" || route.method == method)
            .find_map(|route| {
                route
                    .path
                    .matches(&segments)
                    .map(|path_parameters| RouteMatch {
                        route: Arc::clone(route),
                        path_parameters,
                    })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> HttpRoute {
        HttpRoute {
            route_id: HttpRoute::new_route_id(),
            method: method.to_owned(),
            path: RoutePath::parse(path).unwrap(),
            function_name: FunctionName::parse("f").unwrap(),
            qualifier: None,
            invocation_type: InvocationType::RequestResponse,
            integration_timeout: DEFAULT_INTEGRATION_TIMEOUT,
            auth_type: AuthType::None,
            cors: None,
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn taken(
        table: &RouteTable,
        method: &str,
        path: &str,
    ) -> Option<(String, Vec<(String, String)>)> {
        table
            .find(method, path)
            .map(|m| (m.route.route_key(), m.path_parameters))
    }

    #[test]
    fn templates_are_checked() {
        for good in [
            "/",
            "/orders",
            "/orders/{id}",
            "/{proxy+}",
            "/a/{b}/c/{d_2+}",
            "/v1.0/x~y",
        ] {
            assert!(RoutePath::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "orders",
            "/orders/",
            "//x",
            "/{}",
            "/{a-b}",
            "/{p+}/x",
            "/{id}/{id}",
            "/a b",
            "/x{id}",
        ] {
            assert!(RoutePath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conflict_keys_ignore_parameter_names() {
        let key = |p: &str| RoutePath::parse(p).unwrap().conflict_key();
        assert_eq!(key("/orders/{id}"), key("/orders/{orderId}"));
        assert_ne!(key("/orders/{id}"), key("/orders/{id+}"));
        assert_eq!(key("/"), "/");
    }

    #[test]
    fn the_most_specific_route_wins() {
        let table = RouteTable::new([
            route("ANY", "/{proxy+}"),
            route("GET", "/orders/{id}"),
            route("GET", "/orders/latest"),
            route("ANY", "/orders/{id}"),
            route("GET", "/"),
        ]);
        assert_eq!(
            taken(&table, "GET", "/orders/42"),
            Some((
                "GET /orders/{id}".to_owned(),
                vec![("id".to_owned(), "42".to_owned())]
            ))
        );
        assert_eq!(
            taken(&table, "GET", "/orders/latest").unwrap().0,
            "GET /orders/latest"
        );
        assert_eq!(
            taken(&table, "DELETE", "/orders/42").unwrap().0,
            "ANY /orders/{id}"
        );
        assert_eq!(
            taken(&table, "POST", "/files/a/b%20c.txt"),
            Some((
                "ANY /{proxy+}".to_owned(),
                vec![("proxy".to_owned(), "files/a/b c.txt".to_owned())]
            ))
        );
        assert_eq!(taken(&table, "GET", "/").unwrap().0, "GET /");
        // A greedy parameter needs at least one segment.
        assert_eq!(taken(&table, "POST", "/"), None);
    }

    #[test]
    fn methods_must_match_unless_any() {
        let table = RouteTable::new([route("GET", "/getOrder"), route("PUT", "/putOrder")]);
        assert!(table.find("GET", "/getOrder").is_some());
        assert!(table.find("POST", "/getOrder").is_none());
        assert!(table.find("GET", "/getOrder/extra").is_none());
    }

    #[test]
    fn routes_are_validated() {
        assert!(route("GET", "/a").validate().is_ok());
        assert!(route("FETCH", "/a").validate().is_err());
        let mut slow = route("GET", "/a");
        slow.integration_timeout = Duration::from_secs(901);
        assert!(slow.validate().is_err());
        let mut dry = route("GET", "/a");
        dry.invocation_type = InvocationType::DryRun;
        assert!(dry.validate().is_err());
    }
}
