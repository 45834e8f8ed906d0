//! `/nimbus/v1/dead-letters`: list, inspect, redrive and purge the events that failed for
//! good. Every route goes through the DLQ service's [`DeadLetters`](nimbus_core::DeadLetters)
//! trait, never the store, so the service keeps its rules (a letter is redriven once).
//!
//! Redriving or purging by filter needs `function=NAME` or an explicit `all=true`, so that a
//! forgotten parameter never touches every letter.

use axum::Json;
use axum::extract::State;
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use nimbus_core::dead_letter::MAX_DEAD_LETTER_PAGE;
use nimbus_core::{Cursor, DeadLetterFilter, Error, FunctionName, RequestId, Selection};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;
use crate::extract::LambdaQuery;
use crate::invocations::page_limit;
use crate::shapes::{DeadLetterList, DeadLetterView, PurgeResult, RedriveResult};
use crate::state::AppState;

const DEFAULT_LIMIT: usize = 50;

/// `GET /nimbus/v1/dead-letters?function=&since=&until=&limit=&next=`: oldest first, without
/// payloads. `since` (inclusive) and `until` (exclusive) bound when the letters were
/// dead-lettered, in RFC 3339.
pub(crate) async fn list(
    State(state): State<AppState>,
    LambdaQuery(query): LambdaQuery<ListQuery>,
) -> Result<Json<DeadLetterList>, ApiError> {
    let limit = page_limit(query.limit, DEFAULT_LIMIT, MAX_DEAD_LETTER_PAGE)?;
    let filter = filter(query.function, query.since, query.until)?;
    let after = query.next.as_deref().map(Cursor::parse_token).transpose()?;
    let page = state.dead_letters().list(filter, after, limit).await?;
    Ok(Json(DeadLetterList {
        dead_letters: page
            .letters
            .into_iter()
            .map(DeadLetterView::summary)
            .collect(),
        next_token: page.next.map(|cursor| cursor.to_token()),
    }))
}

/// `GET /nimbus/v1/dead-letters/{RequestId}`: one letter with its payload.
pub(crate) async fn get(
    State(state): State<AppState>,
    LetterId(request_id): LetterId,
) -> Result<Json<DeadLetterView>, ApiError> {
    let letter = state.dead_letters().get(request_id).await?;
    Ok(Json(DeadLetterView::full(letter)))
}

/// `POST /nimbus/v1/dead-letters/{RequestId}/redrive`: re-queues one letter as a new
/// invocation; `409` if it was redriven already.
pub(crate) async fn redrive_one(
    State(state): State<AppState>,
    LetterId(request_id): LetterId,
) -> Result<Json<RedriveResult>, ApiError> {
    let redriven = state
        .dead_letters()
        .redrive(Selection::One(request_id))
        .await?;
    tracing::info!(%request_id, "dead letter redriven");
    Ok(Json(RedriveResult {
        redriven: redriven.into_iter().map(Into::into).collect(),
    }))
}

/// `POST /nimbus/v1/dead-letters/redrive?function=&since=&until=` (or `all=true`): re-queues
/// every matching letter not redriven yet.
pub(crate) async fn redrive_matching(
    State(state): State<AppState>,
    LambdaQuery(query): LambdaQuery<SelectionQuery>,
) -> Result<Json<RedriveResult>, ApiError> {
    let filter = query.filter("redrive")?;
    let redriven = state
        .dead_letters()
        .redrive(Selection::Matching(filter))
        .await?;
    tracing::info!(count = redriven.len(), "dead letters redriven");
    Ok(Json(RedriveResult {
        redriven: redriven.into_iter().map(Into::into).collect(),
    }))
}

/// `DELETE /nimbus/v1/dead-letters/{RequestId}`: `204`, or `404` if there is no such letter.
pub(crate) async fn delete_one(
    State(state): State<AppState>,
    LetterId(request_id): LetterId,
) -> Result<StatusCode, ApiError> {
    let purged = state
        .dead_letters()
        .purge(Selection::One(request_id))
        .await?;
    if purged == 0 {
        return Err(not_found(request_id).into());
    }
    tracing::info!(%request_id, "dead letter deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /nimbus/v1/dead-letters?function=&since=&until=` (or `all=true`): deletes every
/// matching letter, redriven or not.
pub(crate) async fn purge_matching(
    State(state): State<AppState>,
    LambdaQuery(query): LambdaQuery<SelectionQuery>,
) -> Result<Json<PurgeResult>, ApiError> {
    let filter = query.filter("purge")?;
    let purged = state
        .dead_letters()
        .purge(Selection::Matching(filter))
        .await?;
    tracing::info!(purged, "dead letters purged");
    Ok(Json(PurgeResult { purged }))
}

/// Unknown members are refused: a misspelt filter must not widen what a call touches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    function: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    /// The `nextToken` of the previous page.
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SelectionQuery {
    function: Option<String>,
    since: Option<String>,
    until: Option<String>,
    all: Option<bool>,
}

impl SelectionQuery {
    fn filter(self, action: &str) -> Result<DeadLetterFilter, Error> {
        if self.function.is_none() && self.all != Some(true) {
            return Err(Error::InvalidParameterValue(format!(
                "Name the letters to {action}: function=NAME (with since/until if you like), \
                 or all=true for every function"
            )));
        }
        filter(self.function, self.since, self.until)
    }
}

fn filter(
    function: Option<String>,
    since: Option<String>,
    until: Option<String>,
) -> Result<DeadLetterFilter, Error> {
    let since = since
        .as_deref()
        .map(|s| timestamp(s, "since"))
        .transpose()?;
    let until = until
        .as_deref()
        .map(|u| timestamp(u, "until"))
        .transpose()?;
    if let (Some(since), Some(until)) = (since, until)
        && since > until
    {
        return Err(Error::InvalidParameterValue(
            "since must not be after until".to_owned(),
        ));
    }
    Ok(DeadLetterFilter {
        function_name: function.as_deref().map(FunctionName::parse).transpose()?,
        since,
        until,
    })
}

/// An RFC 3339 time. A `+` offset that arrived unescaped in the query string reads as a
/// space; it is taken back rather than refused.
fn timestamp(value: &str, member: &str) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::parse(value, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(&value.replace(' ', "+"), &Rfc3339))
        .map_err(|_| {
            Error::InvalidParameterValue(format!(
                "{member} must be an RFC 3339 time such as 2024-05-01T12:00:00Z, not '{value}'"
            ))
        })
}

fn not_found(request_id: RequestId) -> Error {
    Error::ResourceNotFound(format!("Dead letter not found: {request_id}"))
}

/// The `{RequestId}` of a dead-letter route.
pub(crate) struct LetterId(RequestId);

impl<S: Send + Sync> FromRequestParts<S> for LetterId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| Error::InvalidParameterValue(rejection.body_text()))?;
        Ok(Self(RequestId::parse(&id)?))
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn selection(function: Option<&str>, all: Option<bool>) -> SelectionQuery {
        SelectionQuery {
            function: function.map(str::to_owned),
            since: None,
            until: None,
            all,
        }
    }

    #[test]
    fn a_selection_names_a_function_or_says_all() {
        assert!(selection(None, None).filter("purge").is_err());
        assert!(selection(None, Some(false)).filter("purge").is_err());
        assert_eq!(
            selection(None, Some(true)).filter("purge").unwrap(),
            DeadLetterFilter::default()
        );
        let filter = selection(Some("f"), None).filter("purge").unwrap();
        assert_eq!(filter.function_name.unwrap().as_str(), "f");
        assert!(selection(Some("bad name"), None).filter("purge").is_err());
    }

    #[test]
    fn times_are_rfc3339_even_with_an_unescaped_plus() {
        assert_eq!(
            timestamp("2024-05-01T12:00:00Z", "since").unwrap(),
            datetime!(2024-05-01 12:00:00 UTC)
        );
        assert_eq!(
            timestamp("2024-05-01T14:00:00 02:00", "since").unwrap(),
            datetime!(2024-05-01 12:00:00 UTC)
        );
        assert!(timestamp("yesterday", "since").is_err());
        assert!(
            filter(
                None,
                Some("2024-05-02T00:00:00Z".into()),
                Some("2024-05-01T00:00:00Z".into())
            )
            .is_err()
        );
    }
}
