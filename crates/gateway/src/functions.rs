//! The Lambda control API: create, read, list, update and delete functions.
//!
//! Every write is validated in full before anything is stored, code included; every update
//! gets a new `RevisionId` and is written only over the revision it was computed from.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use nimbus_core::function::{LATEST, validate_memory, validate_timeout};
use nimbus_core::{CodeSha256, Error, FunctionConfig, FunctionName, Runtime, limits};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::code;
use crate::error::ApiError;
use crate::extract::{FunctionRef, LambdaJson, LambdaQuery, QualifiedFunctionRef};
use crate::shapes::{
    ARCHITECTURE, Concurrency, CreateFunctionRequest, FunctionCodeLocation, FunctionConfiguration,
    GetFunctionResponse, ListFunctionsQuery, ListFunctionsResponse, UpdateFunctionCodeRequest,
    UpdateFunctionConfigurationRequest,
};
use crate::state::AppState;
use crate::{page, tags, versions};

/// `MaxItems` bound of `ListFunctions` and `ListVersionsByFunction`, from the service model.
pub(crate) const MAX_MAX_ITEMS: u32 = 10_000;
/// How often an update without a caller's `RevisionId` is re-applied when it loses a race.
const UPDATE_RETRIES: usize = 3;

/// `CreateFunction`: `POST /2015-03-31/functions`.
pub(crate) async fn create_function(
    State(state): State<AppState>,
    LambdaJson(request): LambdaJson<CreateFunctionRequest>,
) -> Result<(StatusCode, Json<FunctionConfiguration>), ApiError> {
    let (name, qualifier) =
        FunctionName::parse_reference(required(request.function_name.as_deref(), "FunctionName")?)?;
    if qualifier.is_some() {
        return Err(Error::InvalidParameterValue(
            "FunctionName of a new function can not carry a qualifier".to_owned(),
        )
        .into());
    }
    if let Some(package_type) = request.package_type.as_deref()
        && package_type != "Zip"
    {
        return Err(Error::InvalidParameterValue(format!(
            "PackageType {package_type} is not supported: Nimbus runs Zip functions only"
        ))
        .into());
    }
    check_architectures(request.architectures.as_deref())?;
    let zip_base64 = code::zip_file(required(request.code, "Code")?)?;
    let runtime: Runtime = required(request.runtime.as_deref(), "Runtime")?.parse()?;
    let role = match request.role {
        Some(role) => checked_role(role)?,
        None => state.config().default_role(),
    };
    let mut function = FunctionConfig {
        name,
        runtime,
        handler: request.handler,
        role,
        description: request.description.unwrap_or_default(),
        timeout_secs: request.timeout.unwrap_or(limits::DEFAULT_TIMEOUT_SECS),
        memory_mb: request.memory_size.unwrap_or(limits::DEFAULT_MEMORY_MB),
        environment: request
            .environment
            .and_then(|e| e.variables)
            .unwrap_or_default(),
        reserved_concurrency: None,
        // Filled in below: the zip is the expensive part, so it is checked last.
        code_sha256: CodeSha256::of(&[]),
        code_size: 0,
        version: LATEST.to_owned(),
        revision_id: new_revision(),
        last_modified: OffsetDateTime::now_utc(),
    };
    function.validate()?;
    let tags = request.tags.unwrap_or_default();
    tags::validate(&tags)?;
    // Refuse a duplicate before decoding and unpacking its code; the store still has the
    // last word for two creates that race.
    if state.store().get_function(&function.name).await?.is_some() {
        return Err(already_exists(&function.name).into());
    }

    let zip = code::check(zip_base64).await?;
    function.code_sha256 = zip.sha;
    function.code_size = zip.size();
    state.store().put_code(&zip.sha, zip.zip).await?;
    state
        .store()
        .create_function(&function)
        .await
        .map_err(|e| match Error::from(e) {
            Error::ResourceConflict(_) => already_exists(&function.name),
            other => other,
        })?;
    if !tags.is_empty() {
        state.store().put_tags(&function.name, &tags).await?;
    }
    tracing::info!(function = %function.name, code = %function.code_sha256, "function created");
    let function = if request.publish == Some(true) {
        versions::publish(&state, &function, None).await?
    } else {
        function
    };
    let configuration = FunctionConfiguration::new(&function, state.config())?;
    Ok((StatusCode::CREATED, Json(configuration)))
}

/// `GetFunction`: `GET /2015-03-31/functions/{FunctionName}`.
pub(crate) async fn get_function(
    State(state): State<AppState>,
    QualifiedFunctionRef { name, qualifier }: QualifiedFunctionRef,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<GetFunctionResponse>, ApiError> {
    let function = versions::resolve_main(&state, &name, qualifier.as_deref()).await?;
    // Tags belong to the function; Lambda shows them with the unqualified function only.
    let tags = match qualifier {
        None => state.store().get_tags(&name).await?,
        Some(_) => None,
    };
    Ok(Json(GetFunctionResponse {
        tags: tags.filter(|tags| !tags.is_empty()),
        configuration: FunctionConfiguration::new(&function, state.config())?,
        code: FunctionCodeLocation {
            repository_type: "S3",
            location: code::location(state.config(), &headers, &uri, &function.code_sha256),
        },
        concurrency: function.reserved_concurrency.map(|reserved| Concurrency {
            reserved_concurrent_executions: reserved,
        }),
    }))
}

/// `GetFunctionConfiguration`: `GET /2015-03-31/functions/{FunctionName}/configuration`.
pub(crate) async fn get_function_configuration(
    State(state): State<AppState>,
    QualifiedFunctionRef { name, qualifier }: QualifiedFunctionRef,
) -> Result<Json<FunctionConfiguration>, ApiError> {
    let function = versions::resolve_main(&state, &name, qualifier.as_deref()).await?;
    Ok(Json(FunctionConfiguration::new(&function, state.config())?))
}

/// `ListFunctions`: `GET /2015-03-31/functions/`, by name, a page at a time. The marker is
/// the last name of the previous page.
pub(crate) async fn list_functions(
    State(state): State<AppState>,
    LambdaQuery(query): LambdaQuery<ListFunctionsQuery>,
) -> Result<Json<ListFunctionsResponse>, ApiError> {
    let page = page::size(query.max_items, MAX_MAX_ITEMS)?;
    let after = query
        .marker
        .as_deref()
        .map(|marker| {
            FunctionName::parse(marker)
                .map_err(|_| Error::InvalidParameterValue(format!("Invalid Marker: {marker}")))
        })
        .transpose()?;
    // One more than a page tells whether another page follows.
    let mut functions = state
        .store()
        .list_functions(after.as_ref(), page + 1)
        .await?;
    let next_marker = page::cut(&mut functions, page, |f| f.name.to_string());
    let functions = functions
        .iter()
        .map(|f| FunctionConfiguration::new(f, state.config()))
        .collect::<Result<_, _>>()?;
    Ok(Json(ListFunctionsResponse {
        functions,
        next_marker,
    }))
}

/// `UpdateFunctionCode`: `PUT /2015-03-31/functions/{FunctionName}/code`.
pub(crate) async fn update_function_code(
    State(state): State<AppState>,
    FunctionRef(name): FunctionRef,
    LambdaJson(request): LambdaJson<UpdateFunctionCodeRequest>,
) -> Result<Json<FunctionConfiguration>, ApiError> {
    check_architectures(request.architectures.as_deref())?;
    let zip_base64 = code::zip_file(request.code())?;
    let current = load(&state, &name).await?;
    check_revision(request.revision_id.as_deref(), &current)?;
    let zip = code::check(zip_base64).await?;
    let with_code = |function: FunctionConfig| FunctionConfig {
        code_sha256: zip.sha,
        code_size: zip.size(),
        ..function
    };
    if request.dry_run == Some(true) {
        // What the update would give, without writing it.
        let preview = with_code(current);
        return Ok(Json(FunctionConfiguration::new(&preview, state.config())?));
    }
    state.store().put_code(&zip.sha, zip.zip.clone()).await?;
    let updated = update(
        &state,
        current,
        request.revision_id.as_deref(),
        |function| Ok(with_code(function)),
    )
    .await?;
    tracing::info!(function = %updated.name, code = %updated.code_sha256, "function code updated");
    let updated = if request.publish == Some(true) {
        versions::publish(&state, &updated, None).await?
    } else {
        updated
    };
    Ok(Json(FunctionConfiguration::new(&updated, state.config())?))
}

/// `UpdateFunctionConfiguration`: `PUT /2015-03-31/functions/{FunctionName}/configuration`.
/// Only the members given change; the result is validated as a whole (a new runtime with the
/// old handler, say).
pub(crate) async fn update_function_configuration(
    State(state): State<AppState>,
    FunctionRef(name): FunctionRef,
    LambdaJson(request): LambdaJson<UpdateFunctionConfigurationRequest>,
) -> Result<Json<FunctionConfiguration>, ApiError> {
    let runtime: Option<Runtime> = request.runtime.as_deref().map(str::parse).transpose()?;
    let role = request.role.clone().map(checked_role).transpose()?;
    if let Some(timeout) = request.timeout {
        validate_timeout(timeout)?;
    }
    if let Some(memory) = request.memory_size {
        validate_memory(memory)?;
    }
    let current = load(&state, &name).await?;
    let updated = update(&state, current, request.revision_id.as_deref(), |mut f| {
        if let Some(runtime) = runtime {
            f.runtime = runtime;
        }
        if let Some(role) = &role {
            f.role.clone_from(role);
        }
        if let Some(handler) = &request.handler {
            f.handler = Some(handler.clone());
        }
        if let Some(description) = &request.description {
            f.description.clone_from(description);
        }
        if let Some(timeout) = request.timeout {
            f.timeout_secs = timeout;
        }
        if let Some(memory) = request.memory_size {
            f.memory_mb = memory;
        }
        if let Some(environment) = &request.environment {
            f.environment = environment.variables.clone().unwrap_or_default();
        }
        Ok(f)
    })
    .await?;
    tracing::info!(function = %updated.name, "function configuration updated");
    Ok(Json(FunctionConfiguration::new(&updated, state.config())?))
}

/// `DeleteFunction`: `DELETE /2015-03-31/functions/{FunctionName}`.
pub(crate) async fn delete_function(
    State(state): State<AppState>,
    QualifiedFunctionRef { name, qualifier }: QualifiedFunctionRef,
) -> Result<StatusCode, ApiError> {
    if let Some(qualifier) = qualifier {
        return delete_version(&state, &name, &qualifier).await;
    }
    if !state.store().delete_function(&name).await? {
        return Err(not_found(&state, &name).into());
    }
    tracing::info!(function = %name, "function deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `DeleteFunction` with a version `Qualifier`: deletes that version, unless an alias still
/// sends it traffic.
async fn delete_version(
    state: &AppState,
    name: &FunctionName,
    qualifier: &str,
) -> Result<StatusCode, ApiError> {
    if qualifier == LATEST {
        return Err(Error::InvalidParameterValue(
            "$LATEST version cannot be deleted without deleting the function.".to_owned(),
        )
        .into());
    }
    if !nimbus_core::alias::is_version_number(qualifier) {
        return Err(Error::InvalidParameterValue(format!(
            "Deletion of aliases is not supported by DeleteFunction: use DeleteAlias for \
             {qualifier}"
        ))
        .into());
    }
    load(state, name).await?;
    let aliases = versions::aliases_of(state, name, qualifier).await?;
    if !aliases.is_empty() {
        return Err(Error::ResourceConflict(format!(
            "Unable to delete version because the following aliases reference it: {aliases:?}"
        ))
        .into());
    }
    if !state
        .store()
        .delete_function_version(name, qualifier)
        .await?
    {
        return Err(Error::ResourceNotFound(format!(
            "Function not found: {}",
            state.config().qualified_arn(name, qualifier)
        ))
        .into());
    }
    tracing::info!(function = %name, version = qualifier, "version deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The stored function, or Lambda's `ResourceNotFoundException`.
pub(crate) async fn load(
    state: &AppState,
    name: &FunctionName,
) -> Result<FunctionConfig, ApiError> {
    state
        .store()
        .get_function(name)
        .await?
        .ok_or_else(|| not_found(state, name).into())
}

fn not_found(state: &AppState, name: &FunctionName) -> Error {
    Error::ResourceNotFound(format!(
        "Function not found: {}",
        state.config().function_arn(name)
    ))
}

fn already_exists(name: &FunctionName) -> Error {
    Error::ResourceConflict(format!("Function already exist: {name}"))
}

/// Writes `change(current)` with a new revision over `current`'s revision. A caller that named
/// a `RevisionId` gets `412` when someone else got there first; a caller that did not has its
/// change re-applied to the newer revision.
pub(crate) async fn update(
    state: &AppState,
    mut current: FunctionConfig,
    expected_revision: Option<&str>,
    change: impl Fn(FunctionConfig) -> Result<FunctionConfig, Error>,
) -> Result<FunctionConfig, ApiError> {
    let mut retries = 0;
    loop {
        check_revision(expected_revision, &current)?;
        let mut next = change(current.clone())?;
        next.revision_id = new_revision();
        next.last_modified = OffsetDateTime::now_utc();
        next.validate()?;
        match state
            .store()
            .update_function(&next, &current.revision_id)
            .await
            .map_err(Error::from)
        {
            Ok(()) => return Ok(next),
            Err(Error::PreconditionFailed(_)) if retries < UPDATE_RETRIES => {
                retries += 1;
                current = load(state, &current.name).await?;
            }
            Err(Error::PreconditionFailed(_)) => {
                return Err(Error::ResourceConflict(format!(
                    "The operation cannot be performed at this time. An update is in progress \
                     for resource: {}",
                    state.config().function_arn(&current.name)
                ))
                .into());
            }
            Err(other) => return Err(other.into()),
        }
    }
}

pub(crate) fn check_revision(
    expected: Option<&str>,
    current: &FunctionConfig,
) -> Result<(), Error> {
    match expected {
        Some(expected) if expected != current.revision_id => Err(Error::PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. Call the \
             GetFunction/GetAlias API to retrieve the latest Revision Id"
                .to_owned(),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn new_revision() -> String {
    Uuid::new_v4().to_string()
}

pub(crate) fn required<T>(member: Option<T>, name: &str) -> Result<T, Error> {
    member.ok_or_else(|| Error::InvalidParameterValue(format!("{name} is required")))
}

/// Functions run on the host, which Nimbus reports as the one architecture it knows.
fn check_architectures(architectures: Option<&[String]>) -> Result<(), Error> {
    match architectures {
        None => Ok(()),
        Some([only]) if only == ARCHITECTURE => Ok(()),
        Some(other) => Err(Error::InvalidParameterValue(format!(
            "Architectures {other:?} is not supported: Nimbus accepts [\"{ARCHITECTURE}\"]"
        ))),
    }
}

/// A role ARN as the service model's pattern has it:
/// `arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+`. Nimbus does not assume
/// roles, but tools that read the role back expect one of that form.
fn checked_role(role: String) -> Result<String, Error> {
    let valid = role
        .strip_prefix("arn:")
        .and_then(|rest| rest.split_once(":iam::"))
        .filter(|(partition, _)| {
            partition.is_empty()
                || partition.strip_prefix("aws").is_some_and(|suffix| {
                    suffix.chars().all(|c| c.is_ascii_alphabetic() || c == '-')
                })
        })
        .and_then(|(_, rest)| rest.split_once(":role"))
        .is_some_and(|(account, path)| {
            let path = path.strip_prefix('/').unwrap_or(path);
            account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && !path.is_empty()
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-/".contains(c))
        });
    if valid {
        Ok(role)
    } else {
        Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value '{role}' at 'role' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: \
             arn:(aws[a-zA-Z-]*)?:iam::\\d{{12}}:role/?[a-zA-Z_0-9+=,.@\\-_/]+"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_model_pattern() {
        for role in [
            "arn:aws:iam::000000000000:role/nimbus",
            "arn:aws-cn:iam::123456789012:role/service-role/x_y",
            "arn::iam::123456789012:role/r",
        ] {
            assert!(checked_role(role.to_owned()).is_ok(), "{role}");
        }
        for role in [
            "",
            "nimbus",
            "arn:aws:iam::0000:role/r",
            "arn:aws:iam::000000000000:user/r",
            "arn:aws:iam::000000000000:role/",
            "arn:aws:iam::000000000000:role/a b",
        ] {
            assert!(checked_role(role.to_owned()).is_err(), "{role}");
        }
    }

    #[test]
    fn only_x86_64_is_accepted() {
        assert!(check_architectures(None).is_ok());
        assert!(check_architectures(Some(&["x86_64".to_owned()])).is_ok());
        assert!(check_architectures(Some(&["arm64".to_owned()])).is_err());
        assert!(check_architectures(Some(&[])).is_err());
    }
}
