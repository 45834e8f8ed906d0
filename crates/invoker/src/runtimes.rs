//! How each runtime is launched. `provided*` runs the zip's own `bootstrap`; Python and
//! Node.js run Nimbus' bootstraps (embedded in the binary, written to `runtimes/` at start)
//! on the host's interpreters.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use nimbus_core::{FunctionConfig, Runtime};
use tokio::process::Command;

use crate::config::InvokerConfig;
use crate::isolation::Interpreters;

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
            // Instances may run as other users: they read the bootstraps, whatever the umask.
            for folder in [&dir, parent] {
                std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        // Write then rename: a running instance never reads a half-written bootstrap.
        let staging = path.with_extension("new");
        std::fs::write(&staging, source)?;
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&staging, &path)?;
    }
    Ok(())
}

/// The command that starts an instance of `function` whose code is in `task_root`
/// (environment set by the caller).
pub(crate) fn command(
    config: &InvokerConfig,
    interpreters: &Interpreters,
    function: &FunctionConfig,
    task_root: &Path,
) -> Command {
    let dir = runtime_dir(config);
    match function.runtime {
        Runtime::Provided(_) => Command::new(task_root.join("bootstrap")),
        Runtime::Python { .. } => {
            let mut command = Command::new(&interpreters.python);
            command.arg("-u").arg(dir.join("python/bootstrap.py"));
            command
        }
        Runtime::NodeJs { .. } => {
            let mut command = Command::new(&interpreters.node);
            command.arg(dir.join("node/bootstrap.mjs"));
            command
        }
    }
}
