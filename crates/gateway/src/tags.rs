//! Tags: `TagResource`, `UntagResource`, `ListTags` on a function's ARN, and the rules tags
//! follow (Lambda's: at most 50, keys 1 to 128 characters not starting with `aws:`, values up
//! to 256).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use nimbus_core::{Error, FunctionName};

use crate::error::ApiError;
use crate::extract::{LambdaJson, PathParam};
use crate::functions::load;
use crate::shapes::{ListTagsResponse, TagResourceRequest};
use crate::state::AppState;

const MAX_TAGS: usize = 50;
const MAX_KEY_CHARS: usize = 128;
const MAX_VALUE_CHARS: usize = 256;

/// Checks a set of tags against Lambda's limits.
pub(crate) fn validate(tags: &BTreeMap<String, String>) -> Result<(), Error> {
    if tags.len() > MAX_TAGS {
        return Err(Error::InvalidParameterValue(format!(
            "A function can have at most {MAX_TAGS} tags; {} were given",
            tags.len()
        )));
    }
    for (key, value) in tags {
        validate_key(key)?;
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(Error::InvalidParameterValue(format!(
                "The value of tag {key} is longer than {MAX_VALUE_CHARS} characters"
            )));
        }
    }
    Ok(())
}

fn validate_key(key: &str) -> Result<(), Error> {
    let length = key.chars().count();
    if length == 0 || length > MAX_KEY_CHARS {
        return Err(Error::InvalidParameterValue(format!(
            "Tag keys must be 1 to {MAX_KEY_CHARS} characters long: '{key}'"
        )));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(Error::InvalidParameterValue(format!(
            "Tag keys starting with 'aws:' are reserved: '{key}'"
        )));
    }
    Ok(())
}

/// The function a `{Resource}` ARN names. Tags belong to the function, so a qualified ARN is
/// refused.
async fn tagged_function(state: &AppState, resource: &str) -> Result<FunctionName, ApiError> {
    if !resource.starts_with("arn:") {
        return Err(Error::InvalidParameterValue(format!(
            "Resource must be a function ARN: {resource}"
        ))
        .into());
    }
    let (name, qualifier) = FunctionName::parse_reference(resource)?;
    if qualifier.is_some() {
        return Err(Error::InvalidParameterValue(format!(
            "Tags are set on the function, not on a version or alias: {resource}"
        ))
        .into());
    }
    load(state, &name).await?;
    Ok(name)
}

/// `TagResource`: `POST /2017-03-31/tags/{Resource}`; adds to the tags, replacing the values
/// of keys already there.
pub(crate) async fn tag_resource(
    State(state): State<AppState>,
    PathParam(resource): PathParam,
    LambdaJson(request): LambdaJson<TagResourceRequest>,
) -> Result<StatusCode, ApiError> {
    let name = tagged_function(&state, &resource).await?;
    let added = request
        .tags
        .ok_or_else(|| Error::InvalidParameterValue("Tags is required".to_owned()))?;
    let mut tags = state.store().get_tags(&name).await?.unwrap_or_default();
    tags.extend(added);
    validate(&tags)?;
    state.store().put_tags(&name, &tags).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `UntagResource`: `DELETE /2017-03-31/tags/{Resource}?tagKeys=K&tagKeys=...`.
pub(crate) async fn untag_resource(
    State(state): State<AppState>,
    PathParam(resource): PathParam,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    let name = tagged_function(&state, &resource).await?;
    let keys: Vec<String> = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .filter(|(member, _)| member == "tagKeys")
        .map(|(_, key)| key.into_owned())
        .collect();
    if keys.is_empty() {
        return Err(Error::InvalidParameterValue("tagKeys is required".to_owned()).into());
    }
    let mut tags = state.store().get_tags(&name).await?.unwrap_or_default();
    for key in &keys {
        tags.remove(key);
    }
    state.store().put_tags(&name, &tags).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `ListTags`: `GET /2017-03-31/tags/{Resource}`.
pub(crate) async fn list_tags(
    State(state): State<AppState>,
    PathParam(resource): PathParam,
) -> Result<Json<ListTagsResponse>, ApiError> {
    let name = tagged_function(&state, &resource).await?;
    let tags = state.store().get_tags(&name).await?.unwrap_or_default();
    Ok(Json(ListTagsResponse { tags }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_lambdas_limits() {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(validate(&one("team", "orders")).is_ok());
        assert!(validate(&one("", "x")).is_err());
        assert!(validate(&one("aws:owner", "x")).is_err());
        assert!(validate(&one(&"k".repeat(129), "x")).is_err());
        assert!(validate(&one("k", &"v".repeat(257))).is_err());
        let many: BTreeMap<String, String> =
            (0..51).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(validate(&many).is_err());
    }
}
