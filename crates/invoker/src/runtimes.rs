//! How each runtime is launched. `provided*` runs the zip's own `bootstrap`; Python and
//! Node.js run Nimbus' bootstraps (embedded in the binary, written to `runtimes/` at start)
//! on the host's interpreters.

use std::path::{Path, PathBuf};

use nimbus_core::{FunctionConfig, Runtime};
use tokio::process::Command;

use crate::config::InvokerConfig;

const PYTHON_BOOTSTRAP: &str = include_str!("../runtimes/python/bootstrap.py");
const NODE_BOOTSTRAP: &str = include_str!("../runtimes/node/bootstrap.mjs");

pub(crate) fn runtime_dir(config: &InvokerConfig) -> PathBuf {
    config.data_dir.join("runtimes")
}

/// Writes the bootstraps where instances will find them.
pub(crate) fn install(config: &InvokerConfig) -> std::io::Result<()> {
    let dir = runtime_dir(config);
    for (relative, source) in [
        ("python/bootstrap.py", PYTHON_BOOTSTRAP),
        ("node/bootstrap.mjs", NODE_BOOTSTRAP),
    ] {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Write then rename: a running instance never reads a half-written bootstrap.
        let staging = path.with_extension("new");
        std::fs::write(&staging, source)?;
        std::fs::rename(&staging, &path)?;
    }
    Ok(())
}

/// The command that starts an instance of `function` (environment set by the caller).
pub(crate) fn command(
    config: &InvokerConfig,
    function: &FunctionConfig,
    code_dir: &Path,
) -> Command {
    let dir = runtime_dir(config);
    match function.runtime {
        Runtime::Provided(_) => Command::new(code_dir.join("bootstrap")),
        Runtime::Python { .. } => {
            let mut command = Command::new(&config.python);
            command.arg("-u").arg(dir.join("python/bootstrap.py"));
            command
        }
        Runtime::NodeJs { .. } => {
            let mut command = Command::new(&config.node);
            command.arg(dir.join("node/bootstrap.mjs"));
            command
        }
    }
}
