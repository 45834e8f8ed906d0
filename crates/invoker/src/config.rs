//! The invoker's settings, with the defaults `nimbus dev` uses.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

pub(crate) const DEFAULT_FUNCTION_CONCURRENCY: u32 = 100;
pub(crate) const DEFAULT_MAX_INSTANCES: u32 = 256;
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub(crate) const DEFAULT_PROVISION_PERIOD: Duration = Duration::from_secs(1);
/// User ids for instances when the invoker runs as root: below the ids of rootless
/// containers' subordinate ranges (100000 and up) and systemd's dynamic users (61184 and up),
/// so they exist even in a user namespace that maps only 65536 ids.
pub(crate) const DEFAULT_FUNCTION_UIDS: Range<u32> = 50_000..60_000;
/// Lambda's limits on file descriptors and on processes and threads per execution environment.
pub(crate) const DEFAULT_FUNCTION_OPEN_FILES: u64 = 1024;
pub(crate) const DEFAULT_FUNCTION_PROCESSES: u64 = 1024;
/// Lambda gives a runtime 10 s to initialise, whatever the function's timeout.
pub(crate) const INIT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct InvokerConfig {
    /// Holds unpacked code (`code/<sha256>`), the runtime bootstraps (`runtimes/`) and each
    /// instance's scratch folder (`instances/`). Belongs to one invoker at a time: what a
    /// previous one left in `instances/` is removed at start.
    pub data_dir: PathBuf,
    /// Concurrent instances of a function without reserved concurrency.
    pub default_function_concurrency: u32,
    /// Instances this node runs at most, over all functions.
    pub max_instances: u32,
    /// An instance idle this long is stopped (unless provisioned concurrency keeps it).
    pub idle_timeout: Duration,
    /// How often the provisioner reads the provisioned concurrency configurations and starts
    /// (or lets go of) instances to match.
    pub provision_period: Duration,
    /// The interpreter that runs `python3.x` functions (looked up on `PATH` if bare).
    pub python: PathBuf,
    /// The interpreter that runs `nodejs*.x` functions (looked up on `PATH` if bare).
    pub node: PathBuf,
    /// `AWS_REGION` of functions and the region in their ARNs.
    pub region: String,
    /// When the invoker runs as root, each instance runs as a user id of its own from this
    /// range (its group id the same number), held by one instance on the host at a time.
    /// `None`, or an invoker that is not root: instances run as the invoker's user, and
    /// functions are kept apart only by resource limits (docs/security.md).
    pub function_uids: Option<Range<u32>>,
    /// `RLIMIT_NOFILE` of every instance's processes.
    pub function_open_files: u64,
    /// `RLIMIT_NPROC` (processes and threads) of an instance, with a user id of its own.
    pub function_processes: u64,
}

impl Default for InvokerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".nimbus"),
            default_function_concurrency: DEFAULT_FUNCTION_CONCURRENCY,
            max_instances: DEFAULT_MAX_INSTANCES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            provision_period: DEFAULT_PROVISION_PERIOD,
            python: PathBuf::from("python3"),
            node: PathBuf::from("node"),
            region: "us-east-1".to_owned(),
            function_uids: Some(DEFAULT_FUNCTION_UIDS),
            function_open_files: DEFAULT_FUNCTION_OPEN_FILES,
            function_processes: DEFAULT_FUNCTION_PROCESSES,
        }
    }
}

/// `--function-uids`: `FIRST-LAST` (inclusive), or `off` to run instances as the invoker's
/// user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionUids(pub Option<Range<u32>>);

impl std::str::FromStr for FunctionUids {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        if value.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        let parse = |id: &str| {
            id.trim()
                .parse::<u32>()
                .map_err(|e| format!("'{id}' is not a user id: {e}"))
        };
        let (first, last) = value
            .split_once('-')
            .ok_or_else(|| format!("'{value}' is neither FIRST-LAST nor off"))?;
        let (first, last) = (parse(first)?, parse(last)?);
        if first == 0 || last < first || last == u32::MAX {
            return Err(format!(
                "'{value}': the range must not be empty, hold root (0) or end at {}",
                u32::MAX
            ));
        }
        Ok(Self(Some(first..last + 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_uid_ranges_are_inclusive_or_off() {
        let parse = |s: &str| s.parse::<FunctionUids>().map(|uids| uids.0);
        assert_eq!(parse("50000-59999"), Ok(Some(50_000..60_000)));
        assert_eq!(parse("7-7"), Ok(Some(7..8)));
        assert_eq!(parse("OFF"), Ok(None));
        for bad in ["0-10", "10-9", "x-2", "12", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
