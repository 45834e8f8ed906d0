//! The invoker's settings, with the defaults `nimbus dev` uses.

use std::path::PathBuf;
use std::time::Duration;

pub(crate) const DEFAULT_FUNCTION_CONCURRENCY: u32 = 100;
pub(crate) const DEFAULT_MAX_INSTANCES: u32 = 256;
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub(crate) const DEFAULT_PROVISION_PERIOD: Duration = Duration::from_secs(1);
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
        }
    }
}
