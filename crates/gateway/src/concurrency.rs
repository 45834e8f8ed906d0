//! Reserved concurrency (`PutFunctionConcurrency`, `GetFunctionConcurrency`,
//! `DeleteFunctionConcurrency`) and `GetAccountSettings`.
//!
//! Reserved concurrency is a function's own share of the account's concurrency: its limit on
//! concurrent instances, for every version alike. Zero stops the function: synchronous calls
//! are throttled and queued events go to the dead-letter queue.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nimbus_core::{Error, FunctionConfig, FunctionName};

use crate::error::ApiError;
use crate::extract::{FunctionRef, LambdaJson};
use crate::functions::{load, update};
use crate::shapes::{AccountLimit, AccountSettings, AccountUsage, ConcurrencyBody};
use crate::state::AppState;

/// What reserved concurrency must leave to the functions without any, as on Lambda.
pub(crate) const MIN_UNRESERVED_CONCURRENCY: u32 = 100;

/// Functions read per page when summing over all of them.
const SCAN_PAGE: usize = 500;

/// `PutFunctionConcurrency`: `PUT /2017-10-31/functions/{FunctionName}/concurrency`.
pub(crate) async fn put(
    State(state): State<AppState>,
    FunctionRef(name): FunctionRef,
    LambdaJson(request): LambdaJson<ConcurrencyBody>,
) -> Result<Json<ConcurrencyBody>, ApiError> {
    let requested = request.reserved_concurrent_executions.ok_or_else(|| {
        Error::InvalidParameterValue(
            "1 validation error detected: Value null at 'reservedConcurrentExecutions' failed \
             to satisfy constraint: Member must not be null"
                .to_owned(),
        )
    })?;
    let account = state.config().account_concurrency;
    let reserved = u32::try_from(requested)
        .ok()
        .filter(|reserved| *reserved <= account)
        .ok_or_else(|| {
            Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{requested}' at \
                 'reservedConcurrentExecutions' failed to satisfy constraint: Member must \
                 have value between 0 and {account}"
            ))
        })?;
    let current = load(&state, &name).await?;
    let provisioned: u64 = state
        .store()
        .list_provisioned_concurrency(&name)
        .await?
        .iter()
        .map(|config| u64::from(config.requested))
        .sum();
    if u64::from(reserved) < provisioned {
        return Err(Error::InvalidParameterValue(format!(
            "Specified ReservedConcurrentExecutions ({reserved}) for function is less than the \
             function's provisioned concurrency ({provisioned})."
        ))
        .into());
    }
    let others = reserved_by_others(&state, &name).await?;
    if u64::from(account)
        < u64::from(others) + u64::from(reserved) + u64::from(MIN_UNRESERVED_CONCURRENCY)
    {
        return Err(Error::InvalidParameterValue(format!(
            "Specified ReservedConcurrentExecutions for function decreases account's \
             UnreservedConcurrentExecution below its minimum value of \
             [{MIN_UNRESERVED_CONCURRENCY}]."
        ))
        .into());
    }
    set(&state, current, Some(reserved)).await?;
    Ok(Json(ConcurrencyBody {
        reserved_concurrent_executions: Some(i64::from(reserved)),
    }))
}

/// `GetFunctionConcurrency`: `GET /2019-09-30/functions/{FunctionName}/concurrency`.
pub(crate) async fn get(
    State(state): State<AppState>,
    FunctionRef(name): FunctionRef,
) -> Result<Json<ConcurrencyBody>, ApiError> {
    let function = load(&state, &name).await?;
    Ok(Json(ConcurrencyBody {
        reserved_concurrent_executions: function.reserved_concurrency.map(i64::from),
    }))
}

/// `DeleteFunctionConcurrency`: `DELETE /2017-10-31/functions/{FunctionName}/concurrency`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    FunctionRef(name): FunctionRef,
) -> Result<StatusCode, ApiError> {
    let current = load(&state, &name).await?;
    set(&state, current, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set(
    state: &AppState,
    current: FunctionConfig,
    reserved: Option<u32>,
) -> Result<(), ApiError> {
    let name = current.name.clone();
    update(state, current, None, |function| {
        Ok(FunctionConfig {
            reserved_concurrency: reserved,
            ..function
        })
    })
    .await?;
    tracing::info!(function = %name, ?reserved, "reserved concurrency set");
    Ok(())
}

/// The functions of the account, a page at a time, until `visit` has seen them all.
async fn each_function(
    state: &AppState,
    mut visit: impl FnMut(&FunctionConfig),
) -> Result<(), ApiError> {
    let mut after: Option<FunctionName> = None;
    loop {
        let page = state
            .store()
            .list_functions(after.as_ref(), SCAN_PAGE)
            .await?;
        page.iter().for_each(&mut visit);
        match page.last() {
            Some(last) if page.len() == SCAN_PAGE => after = Some(last.name.clone()),
            _ => return Ok(()),
        }
    }
}

async fn reserved_by_others(state: &AppState, name: &FunctionName) -> Result<u32, ApiError> {
    let mut total = 0u32;
    each_function(state, |function| {
        if function.name != *name {
            total = total.saturating_add(function.reserved_concurrency.unwrap_or(0));
        }
    })
    .await?;
    Ok(total)
}

/// `GetAccountSettings`: `GET /2016-08-19/account-settings/`.
pub(crate) async fn account_settings(
    State(state): State<AppState>,
) -> Result<Json<AccountSettings>, ApiError> {
    let (mut count, mut code_size, mut reserved) = (0u64, 0u64, 0u32);
    each_function(&state, |function| {
        count += 1;
        code_size += function.code_size;
        reserved = reserved.saturating_add(function.reserved_concurrency.unwrap_or(0));
    })
    .await?;
    let account = state.config().account_concurrency;
    Ok(Json(AccountSettings {
        account_limit: AccountLimit {
            total_code_size: 80 * 1024 * 1024 * 1024,
            code_size_unzipped: nimbus_core::limits::MAX_UNZIPPED_CODE_BYTES,
            code_size_zipped: nimbus_core::limits::MAX_ZIPPED_CODE_BYTES as u64,
            concurrent_executions: account,
            unreserved_concurrent_executions: account.saturating_sub(reserved),
        },
        account_usage: AccountUsage {
            total_code_size: code_size,
            function_count: count,
        },
    }))
}
