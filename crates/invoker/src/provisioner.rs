//! Provisioned concurrency on this node: every period, reads each configuration from the
//! store, resolves it to the configuration it runs (an alias to its main version), keeps that
//! many instances of it started and initialised in the pool, and writes back what it
//! allocated and the status (`IN_PROGRESS`, `READY`, or `FAILED` with the reason).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use nimbus_core::alias::QualifierKind;
use nimbus_core::{FunctionConfig, ProvisionedConcurrencyConfig, ProvisionedStatus};
use nimbus_store::Store;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::invoker::Node;
use crate::pool::PoolKey;

/// How long a configuration whose instances failed to start waits before the next attempt.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Runs until `stop` or until the node is gone.
pub(crate) async fn run(node: Weak<Node>, store: Arc<dyn Store>, stop: CancellationToken) {
    let mut provisioner = Provisioner {
        store,
        failed: HashMap::new(),
    };
    loop {
        let period = {
            let Some(node) = node.upgrade() else {
                return;
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = provisioner.pass(&node) => {}
            }
            node.config.provision_period
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}

struct Provisioner {
    store: Arc<dyn Store>,
    /// Configurations whose last start failed: why, and when to try again.
    failed: HashMap<PoolKey, (String, Instant)>,
}

impl Provisioner {
    async fn pass(&mut self, node: &Node) {
        let configs = match self.store.list_all_provisioned_concurrency().await {
            Ok(configs) => configs,
            Err(error) => {
                tracing::warn!(%error, "cannot read the provisioned concurrency configurations");
                return;
            }
        };
        let mut targets: HashMap<PoolKey, (usize, FunctionConfig)> = HashMap::new();
        let mut resolved = Vec::with_capacity(configs.len());
        for config in configs {
            match self.resolve(&config).await {
                Ok(function) => {
                    if let Some(function) = &function {
                        let key = PoolKey::of(function);
                        targets
                            .entry(key)
                            .or_insert_with(|| (0, function.clone()))
                            .0 += config.requested as usize;
                    }
                    resolved.push((config, function.map(|f| PoolKey::of(&f))));
                }
                // Better to keep what is provisioned than to let it go on a store hiccup.
                Err(error) => {
                    tracing::warn!(%error, "cannot resolve a provisioned concurrency target");
                    return;
                }
            }
        }
        node.pool.set_provisioned(
            targets
                .iter()
                .map(|(key, (count, _))| (key.clone(), *count))
                .collect(),
        );
        self.failed.retain(|key, _| targets.contains_key(key));

        let now = Instant::now();
        let mut starts = Vec::new();
        for (key, (target, function)) in &targets {
            let missing = target.saturating_sub(node.pool.instances_of(key));
            let waiting = self.failed.get(key).is_some_and(|(_, retry)| now < *retry);
            if missing > 0 && !waiting {
                starts.push(async move {
                    let started = futures::future::join_all(
                        (0..missing).map(|_| node.start_provisioned(function)),
                    )
                    .await;
                    (key.clone(), started.into_iter().find_map(Result::err))
                });
            }
        }
        for (key, failure) in futures::future::join_all(starts).await {
            match failure {
                Some(reason) => {
                    tracing::warn!(reason, "cannot start a provisioned instance");
                    self.failed
                        .insert(key, (reason, Instant::now() + RETRY_AFTER_FAILURE));
                }
                None => {
                    self.failed.remove(&key);
                }
            }
        }

        for (config, key) in resolved {
            let (allocated, status, reason) = match key {
                None => (
                    0,
                    ProvisionedStatus::Failed,
                    Some("The function version or alias no longer exists.".to_owned()),
                ),
                Some(key) => {
                    let have = u32::try_from(node.pool.instances_of(&key)).unwrap_or(u32::MAX);
                    let allocated = have.min(config.requested);
                    if allocated >= config.requested {
                        (allocated, ProvisionedStatus::Ready, None)
                    } else if let Some((reason, _)) = self.failed.get(&key) {
                        (allocated, ProvisionedStatus::Failed, Some(reason.clone()))
                    } else {
                        (allocated, ProvisionedStatus::InProgress, None)
                    }
                }
            };
            if (allocated, status, reason.as_ref())
                == (
                    config.allocated,
                    config.status,
                    config.status_reason.as_ref(),
                )
            {
                continue;
            }
            if let Err(error) = self
                .store
                .set_provisioned_allocation(
                    &config.function_name,
                    &config.qualifier,
                    allocated,
                    status,
                    reason.as_deref(),
                )
                .await
            {
                tracing::warn!(%error, "cannot record a provisioned concurrency allocation");
            }
        }
    }

    /// What `function:qualifier` runs; an alias gives its main version. `None` when the
    /// version or alias is gone.
    async fn resolve(
        &self,
        config: &ProvisionedConcurrencyConfig,
    ) -> nimbus_store::Result<Option<FunctionConfig>> {
        let name = &config.function_name;
        let version = match QualifierKind::of(&config.qualifier) {
            QualifierKind::Alias => match self.store.get_alias(name, &config.qualifier).await? {
                Some(alias) => alias.function_version,
                None => return Ok(None),
            },
            _ => config.qualifier.clone(),
        };
        nimbus_store::resolve(self.store.as_ref(), name, &version, 1.0).await
    }
}
