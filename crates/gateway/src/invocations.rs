//! `/nimbus/v1/invocations`: the record of one invocation, including one whose record is still
//! waiting in the writer's batch, and a listing of records, newest first, by function and
//! status. The listing reads the store, so it shows a record once its batch is written
//! (within the writer's flush interval); the single lookup sees it at once.

use axum::Json;
use axum::extract::State;
use nimbus_core::{Cursor, Error, FunctionName, InvocationFilter, InvocationStatus, RequestId};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{LambdaQuery, PathParam};
use crate::shapes::{InvocationList, InvocationRecordView};
use crate::state::AppState;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// `GET /nimbus/v1/invocations/{RequestId}`.
pub(crate) async fn get_invocation(
    State(state): State<AppState>,
    PathParam(request_id): PathParam,
) -> Result<Json<InvocationRecordView>, ApiError> {
    let request_id = RequestId::parse(&request_id)?;
    let record =
        state.records().get(&request_id).await?.ok_or_else(|| {
            Error::ResourceNotFound(format!("Invocation not found: {request_id}"))
        })?;
    Ok(Json(record.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListInvocationsQuery {
    function: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
    /// The `nextToken` of the previous page.
    next: Option<String>,
}

/// `GET /nimbus/v1/invocations?function=&status=&limit=&next=`.
pub(crate) async fn list_invocations(
    State(state): State<AppState>,
    LambdaQuery(query): LambdaQuery<ListInvocationsQuery>,
) -> Result<Json<InvocationList>, ApiError> {
    let limit = page_limit(query.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let filter = InvocationFilter {
        function_name: query
            .function
            .as_deref()
            .map(FunctionName::parse)
            .transpose()?,
        status: query.status.as_deref().map(parse_status).transpose()?,
    };
    let after = query.next.as_deref().map(Cursor::parse_token).transpose()?;
    // One more than a page tells whether another page follows.
    let mut records = state
        .store()
        .list_invocations(&filter, after.as_ref(), limit + 1)
        .await?;
    let next_token = if records.len() > limit {
        records.truncate(limit);
        records.last().map(|record| {
            Cursor {
                at: record.created_at,
                request_id: record.request_id,
            }
            .to_token()
        })
    } else {
        None
    };
    Ok(Json(InvocationList {
        invocations: records.into_iter().map(Into::into).collect(),
        next_token,
    }))
}

fn parse_status(status: &str) -> Result<InvocationStatus, Error> {
    status.parse().map_err(|_| {
        Error::InvalidParameterValue(format!(
            "Unknown status '{status}': use queued, running, succeeded, failed, retrying or \
             dead_lettered"
        ))
    })
}

/// `limit`, or `default`; `400` outside `1..=max`.
pub(crate) fn page_limit(limit: Option<usize>, default: usize, max: usize) -> Result<usize, Error> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(Error::InvalidParameterValue(format!(
            "limit must be between 1 and {max}, not {limit}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_checked() {
        assert_eq!(
            parse_status("dead_lettered").unwrap(),
            InvocationStatus::DeadLettered
        );
        assert!(matches!(
            parse_status("done"),
            Err(Error::InvalidParameterValue(_))
        ));
    }

    #[test]
    fn limits_stay_in_bounds() {
        assert_eq!(page_limit(None, 50, 1000).unwrap(), 50);
        assert_eq!(page_limit(Some(1000), 50, 1000).unwrap(), 1000);
        assert!(page_limit(Some(0), 50, 1000).is_err());
        assert!(page_limit(Some(1001), 50, 1000).is_err());
    }
}
