//! Lambda's asynchronous invocation settings of a function (`/2019-09-25/functions/
//! {FunctionName}/event-invoke-config`): put (replace), update (merge), get, delete and list.
//!
//! Each qualifier (`$LATEST`, a version, an alias) has its own configuration; events sent to
//! that qualifier follow it. Destinations must be Lambda functions of this Nimbus (any
//! qualifier): the queue-worker delivers nowhere else.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use nimbus_core::function::LATEST;
use nimbus_core::{Error, EventInvokeConfig, FunctionName};
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::extract::{FunctionRef, LambdaJson, LambdaQuery, QualifiedFunctionRef};
use crate::shapes::{
    DestinationRequest, EventInvokeConfigRequest, FunctionEventInvokeConfig,
    ListFunctionEventInvokeConfigsResponse, ListFunctionsQuery,
};
use crate::state::AppState;
use crate::{functions, page, versions};

/// `MaxItems` bound of `ListFunctionEventInvokeConfigs`, from the service model.
const MAX_MAX_ITEMS: u32 = 50;

/// `PutFunctionEventInvokeConfig`: `PUT`, replaces the whole configuration; members left out
/// return to their defaults.
pub(crate) async fn put_config(
    State(state): State<AppState>,
    function: QualifiedFunctionRef,
    LambdaJson(request): LambdaJson<EventInvokeConfigRequest>,
) -> Result<Json<FunctionEventInvokeConfig>, ApiError> {
    let (name, qualifier) = target(&state, function).await?;
    let config = merged(&state, EventInvokeConfig::empty(), request).await?;
    store(&state, &name, &qualifier, config).await
}

/// `UpdateFunctionEventInvokeConfig`: `POST`, changes the members given and keeps the others;
/// within `DestinationConfig`, an `OnSuccess` or `OnFailure` given replaces that destination
/// (one without a `Destination` removes it). Creates the configuration if there is none, as
/// Lambda does.
pub(crate) async fn update_config(
    State(state): State<AppState>,
    function: QualifiedFunctionRef,
    LambdaJson(request): LambdaJson<EventInvokeConfigRequest>,
) -> Result<Json<FunctionEventInvokeConfig>, ApiError> {
    let (name, qualifier) = target(&state, function).await?;
    let current = state
        .store()
        .get_event_invoke_config(&name, &qualifier)
        .await?
        .unwrap_or_else(EventInvokeConfig::empty);
    let config = merged(&state, current, request).await?;
    store(&state, &name, &qualifier, config).await
}

/// `GetFunctionEventInvokeConfig`: `GET`.
pub(crate) async fn get_config(
    State(state): State<AppState>,
    function: QualifiedFunctionRef,
) -> Result<Json<FunctionEventInvokeConfig>, ApiError> {
    let (name, qualifier) = target(&state, function).await?;
    let config = state
        .store()
        .get_event_invoke_config(&name, &qualifier)
        .await?
        .ok_or_else(|| no_config(&state, &name, &qualifier))?;
    Ok(Json(FunctionEventInvokeConfig::new(
        state.config().qualified_arn(&name, &qualifier),
        &config,
    )))
}

/// `DeleteFunctionEventInvokeConfig`: `DELETE`, `204`.
pub(crate) async fn delete_config(
    State(state): State<AppState>,
    function: QualifiedFunctionRef,
) -> Result<StatusCode, ApiError> {
    let (name, qualifier) = target(&state, function).await?;
    if !state
        .store()
        .delete_event_invoke_config(&name, &qualifier)
        .await?
    {
        return Err(no_config(&state, &name, &qualifier).into());
    }
    tracing::info!(function = %name, "event invoke configuration deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `ListFunctionEventInvokeConfigs`: `GET .../event-invoke-config/list`, by qualifier. The
/// marker is the last qualifier of the previous page.
pub(crate) async fn list_configs(
    State(state): State<AppState>,
    FunctionRef(name): FunctionRef,
    LambdaQuery(query): LambdaQuery<ListFunctionsQuery>,
) -> Result<Json<ListFunctionEventInvokeConfigsResponse>, ApiError> {
    let page = page::size(query.max_items, MAX_MAX_ITEMS)?;
    functions::load(&state, &name).await?;
    let mut configs = state.store().list_event_invoke_configs(&name).await?;
    configs.sort_by(|(a, _), (b, _)| a.cmp(b));
    if let Some(marker) = &query.marker {
        configs.retain(|(qualifier, _)| qualifier > marker);
    }
    let next_marker = page::cut(&mut configs, page, |(qualifier, _)| qualifier.clone());
    let function_event_invoke_configs = configs
        .iter()
        .map(|(qualifier, config)| {
            FunctionEventInvokeConfig::new(state.config().qualified_arn(&name, qualifier), config)
        })
        .collect();
    Ok(Json(ListFunctionEventInvokeConfigsResponse {
        function_event_invoke_configs,
        next_marker,
    }))
}

/// The function and qualifier (`$LATEST` when none is given) a configuration is for, once it
/// is known that they exist.
async fn target(
    state: &AppState,
    QualifiedFunctionRef { name, qualifier }: QualifiedFunctionRef,
) -> Result<(FunctionName, String), ApiError> {
    versions::resolve_main(state, &name, qualifier.as_deref()).await?;
    Ok((name, qualifier.unwrap_or_else(|| LATEST.to_owned())))
}

/// Stores `config` for `name:qualifier`; the store refuses it if the function was deleted
/// since it was loaded.
async fn store(
    state: &AppState,
    name: &FunctionName,
    qualifier: &str,
    config: EventInvokeConfig,
) -> Result<Json<FunctionEventInvokeConfig>, ApiError> {
    state
        .store()
        .put_event_invoke_config(name, qualifier, &config)
        .await?;
    tracing::info!(
        function = %name,
        retries = ?config.maximum_retry_attempts,
        max_age = ?config.maximum_event_age_secs,
        "event invoke configuration stored"
    );
    Ok(Json(FunctionEventInvokeConfig::new(
        state.config().qualified_arn(name, qualifier),
        &config,
    )))
}

/// `config` with the request's members applied, validated as a whole and modified now.
async fn merged(
    state: &AppState,
    mut config: EventInvokeConfig,
    request: EventInvokeConfigRequest,
) -> Result<EventInvokeConfig, ApiError> {
    if let Some(attempts) = request.maximum_retry_attempts {
        config.maximum_retry_attempts = Some(non_negative(attempts, "maximumRetryAttempts")?);
    }
    if let Some(age) = request.maximum_event_age_in_seconds {
        config.maximum_event_age_secs = Some(non_negative(age, "maximumEventAgeInSeconds")?);
    }
    if let Some(destinations) = request.destination_config {
        if let Some(on_success) = destinations.on_success {
            config.on_success = destination(state, on_success, "OnSuccess").await?;
        }
        if let Some(on_failure) = destinations.on_failure {
            config.on_failure = destination(state, on_failure, "OnFailure").await?;
        }
    }
    config.validate()?;
    config.last_modified = OffsetDateTime::now_utc();
    Ok(config)
}

/// A member as `u32`; the upper bounds are checked by [`EventInvokeConfig::validate`], with
/// the rest, and anything past `u32` is over them anyway.
fn non_negative(value: i64, member: &str) -> Result<u32, Error> {
    if value < 0 {
        return Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy \
             constraint: Member must have value greater than or equal to 0"
        )));
    }
    Ok(u32::try_from(value).unwrap_or(u32::MAX))
}

/// A destination as given, checked to be a function of this Nimbus that exists; `None`
/// removes the destination.
async fn destination(
    state: &AppState,
    given: DestinationRequest,
    member: &str,
) -> Result<Option<String>, ApiError> {
    let arn = match given.destination {
        Some(arn) if !arn.is_empty() => arn,
        _ => return Ok(None),
    };
    let (name, qualifier) = destination_function(&arn, state.config(), member)?;
    let qualifier = qualifier.as_deref().unwrap_or(LATEST);
    if nimbus_store::resolve(state.store(), &name, qualifier, 1.0)
        .await?
        .is_none()
    {
        return Err(Error::InvalidParameterValue(format!(
            "{member} destination {arn} is not a function of this Nimbus (or that version or \
             alias does not exist)"
        ))
        .into());
    }
    Ok(Some(arn))
}

/// The function a destination ARN names: `arn:PARTITION:lambda:REGION:ACCOUNT:function:
/// NAME[:QUALIFIER]`, in this gateway's region and account. Any other service is refused by
/// name, since Nimbus delivers only to functions.
fn destination_function(
    arn: &str,
    config: &crate::state::GatewayConfig,
    member: &str,
) -> Result<(FunctionName, Option<String>), Error> {
    let invalid = |why: String| {
        Error::InvalidParameterValue(format!("{member} destination {arn} is not valid: {why}"))
    };
    let parts: Vec<&str> = arn.split(':').collect();
    let ["arn", partition, service, region, account, resource @ ..] = parts.as_slice() else {
        return Err(invalid(
            "expected a Lambda function ARN, arn:aws:lambda:REGION:ACCOUNT:function:NAME".into(),
        ));
    };
    if !partition.starts_with("aws") {
        return Err(invalid(format!("unknown partition '{partition}'")));
    }
    if *service != "lambda" {
        let what = match *service {
            "sqs" => "an SQS queue".to_owned(),
            "sns" => "an SNS topic".to_owned(),
            "events" => "an EventBridge event bus".to_owned(),
            "s3" => "an S3 bucket".to_owned(),
            other => format!("a resource of service '{other}'"),
        };
        return Err(Error::InvalidParameterValue(format!(
            "{member} destination {arn} is {what}: Nimbus delivers asynchronous invocation \
             results only to Lambda functions"
        )));
    }
    if !matches!(resource, ["function", _] | ["function", _, _]) {
        return Err(invalid(
            "a Lambda destination must be a function, arn:aws:lambda:REGION:ACCOUNT:function:NAME"
                .into(),
        ));
    }
    if *region != config.region || *account != config.account_id {
        return Err(invalid(format!(
            "it is in region '{region}' and account '{account}'; this Nimbus is region '{}', \
             account '{}'",
            config.region, config.account_id
        )));
    }
    FunctionName::parse_reference(arn).map_err(|e| invalid(e.to_string()))
}

fn no_config(state: &AppState, name: &FunctionName, qualifier: &str) -> Error {
    Error::ResourceNotFound(format!(
        "The function {} doesn't have an EventInvokeConfig",
        state.config().qualified_arn(name, qualifier)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::GatewayConfig;

    fn parse(arn: &str) -> Result<(FunctionName, Option<String>), Error> {
        destination_function(arn, &GatewayConfig::default(), "OnFailure")
    }

    #[test]
    fn function_arns_are_destinations() {
        let (name, qualifier) =
            parse("arn:aws:lambda:us-east-1:000000000000:function:sink").unwrap();
        assert_eq!((name.as_str(), qualifier), ("sink", None));
        let (name, qualifier) =
            parse("arn:aws:lambda:us-east-1:000000000000:function:sink:$LATEST").unwrap();
        assert_eq!(
            (name.as_str(), qualifier.as_deref()),
            ("sink", Some("$LATEST"))
        );
    }

    #[test]
    fn other_resources_are_refused_by_name() {
        let Err(Error::InvalidParameterValue(message)) =
            parse("arn:aws:sqs:us-east-1:000000000000:failures")
        else {
            panic!("an SQS queue was accepted");
        };
        assert!(message.contains("an SQS queue"), "{message}");
        assert!(message.contains("only to Lambda functions"), "{message}");
        for arn in [
            "sink",
            "arn:aws:sns:us-east-1:000000000000:topic",
            "arn:aws:lambda:us-east-1:000000000000:layer:l:1",
            "arn:aws:lambda:eu-west-1:000000000000:function:sink",
            "arn:aws:lambda:us-east-1:111111111111:function:sink",
            "arn:aws:lambda:us-east-1:000000000000:function:bad name",
            "arn:aws:lambda:us-east-1:000000000000:function:a:b:c",
            "arn:gcp:lambda:us-east-1:000000000000:function:sink",
        ] {
            assert!(
                matches!(parse(arn), Err(Error::InvalidParameterValue(_))),
                "{arn}"
            );
        }
    }

    #[test]
    fn negative_and_huge_numbers_are_out_of_range() {
        assert!(non_negative(-1, "maximumRetryAttempts").is_err());
        assert_eq!(non_negative(1, "maximumRetryAttempts").unwrap(), 1);
        let huge = non_negative(i64::MAX, "maximumRetryAttempts").unwrap();
        let config = EventInvokeConfig {
            maximum_retry_attempts: Some(huge),
            ..EventInvokeConfig::empty()
        };
        assert!(config.validate().is_err());
    }
}
