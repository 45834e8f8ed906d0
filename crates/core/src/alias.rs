//! Published versions and aliases: a version is an immutable snapshot of `$LATEST` named by a
//! number; an alias names a version, and may send a share of its traffic to a second one
//! (weighted routing, for canary releases).

use std::collections::BTreeMap;

use crate::function::LATEST;
use crate::{Error, FunctionName, Result};

/// An alias of a function, as `CreateAlias` and `UpdateAlias` leave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alias {
    pub function_name: FunctionName,
    pub name: String,
    /// The version most of the traffic goes to: a published version or `$LATEST`.
    pub function_version: String,
    pub description: String,
    /// `RoutingConfig.AdditionalVersionWeights`: at most one other version and the share
    /// (0.0 to 1.0) of invocations it gets.
    pub routing: BTreeMap<String, f64>,
    pub revision_id: String,
}

impl Alias {
    /// Checks what Lambda checks: the name, the description, and that routing sends a share
    /// to one published version other than the main one.
    pub fn validate(&self) -> Result<()> {
        validate_alias_name(&self.name)?;
        if self.description.chars().count() > crate::limits::MAX_DESCRIPTION_CHARS {
            return Err(Error::InvalidParameterValue(format!(
                "Description must be at most {} characters",
                crate::limits::MAX_DESCRIPTION_CHARS
            )));
        }
        if self.routing.len() > 1 {
            return Err(Error::InvalidParameterValue(
                "RoutingConfig can route to at most one additional version".to_owned(),
            ));
        }
        for (version, weight) in &self.routing {
            if !is_version_number(version) {
                return Err(Error::InvalidParameterValue(format!(
                    "Invalid function version {version} in RoutingConfig: only published \
                     versions can take a share of an alias' traffic"
                )));
            }
            if *version == self.function_version {
                return Err(Error::InvalidParameterValue(format!(
                    "Cannot route to the alias' own version {version} in RoutingConfig"
                )));
            }
            if !(0.0..=1.0).contains(weight) {
                return Err(Error::InvalidParameterValue(format!(
                    "1 validation error detected: Value '{weight}' at \
                     'routingConfig.additionalVersionWeights' failed to satisfy constraint: \
                     weights must be between 0.0 and 1.0"
                )));
            }
        }
        if !self.routing.is_empty() && !is_version_number(&self.function_version) {
            return Err(Error::InvalidParameterValue(
                "Alias with weighted routing must point to a published version, not $LATEST"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The version to run for one invocation, given `draw`, a uniform number in `[0, 1)`.
    pub fn pick_version(&self, draw: f64) -> &str {
        let mut threshold = 0.0;
        for (version, weight) in &self.routing {
            threshold += weight;
            if draw < threshold {
                return version;
            }
        }
        &self.function_version
    }
}

/// `1`, `2`, ...: a published version, not `$LATEST` and not an alias.
pub fn is_version_number(qualifier: &str) -> bool {
    !qualifier.is_empty()
        && qualifier.len() <= 10
        && qualifier.bytes().all(|b| b.is_ascii_digit())
        && !qualifier.starts_with('0')
}

/// What a qualifier names: `$LATEST`, a published version, or an alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QualifierKind {
    Latest,
    Version,
    Alias,
}

impl QualifierKind {
    pub fn of(qualifier: &str) -> Self {
        if qualifier == LATEST {
            Self::Latest
        } else if is_version_number(qualifier) {
            Self::Version
        } else {
            Self::Alias
        }
    }
}

/// Lambda's alias name rule: 1 to 128 of `[a-zA-Z0-9-_]`, not all digits.
pub fn validate_alias_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.bytes().all(|b| b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value '{name}' at 'name' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: \
             (?!^[0-9]+$)([a-zA-Z0-9-_]+)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(version: &str, routing: &[(&str, f64)]) -> Alias {
        Alias {
            function_name: FunctionName::parse("f").unwrap(),
            name: "live".into(),
            function_version: version.into(),
            description: String::new(),
            routing: routing.iter().map(|(v, w)| ((*v).to_owned(), *w)).collect(),
            revision_id: "r".into(),
        }
    }

    #[test]
    fn qualifiers_are_told_apart() {
        assert_eq!(QualifierKind::of("$LATEST"), QualifierKind::Latest);
        assert_eq!(QualifierKind::of("12"), QualifierKind::Version);
        assert_eq!(QualifierKind::of("live"), QualifierKind::Alias);
        assert_eq!(QualifierKind::of("01"), QualifierKind::Alias);
    }

    #[test]
    fn alias_names_follow_lambdas_pattern() {
        for good in ["live", "v2-canary", "a_b", "1a"] {
            assert!(validate_alias_name(good).is_ok(), "{good}");
        }
        for bad in ["", "123", "has space", "a:b", &"x".repeat(129)] {
            assert!(validate_alias_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn routing_is_checked() {
        assert!(alias("1", &[("2", 0.1)]).validate().is_ok());
        assert!(alias("1", &[]).validate().is_ok());
        assert!(alias("$LATEST", &[]).validate().is_ok());
        assert!(alias("$LATEST", &[("2", 0.1)]).validate().is_err());
        assert!(alias("1", &[("1", 0.1)]).validate().is_err());
        assert!(alias("1", &[("2", 1.5)]).validate().is_err());
        assert!(alias("1", &[("$LATEST", 0.5)]).validate().is_err());
        assert!(alias("1", &[("2", 0.1), ("3", 0.1)]).validate().is_err());
    }

    #[test]
    fn weights_split_the_draws() {
        let canary = alias("1", &[("2", 0.25)]);
        assert_eq!(canary.pick_version(0.0), "2");
        assert_eq!(canary.pick_version(0.2499), "2");
        assert_eq!(canary.pick_version(0.25), "1");
        assert_eq!(canary.pick_version(0.999), "1");
        assert_eq!(alias("1", &[]).pick_version(0.0), "1");
    }
}
