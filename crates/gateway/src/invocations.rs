//! `GET /nimbus/v1/invocations/{RequestId}`: the record of one invocation, including one whose
//! record is still waiting in the writer's batch.

use axum::Json;
use axum::extract::State;
use nimbus_core::{Error, RequestId};

use crate::error::ApiError;
use crate::extract::PathParam;
use crate::shapes::InvocationRecordView;
use crate::state::AppState;

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
