//! Which instance serves an invocation: a warm idle one of the same function configuration
//! (most recently used first), else a new one if the function's concurrency and the node's
//! instance limit allow, else a throttle. Idle instances past the idle timeout are reaped,
//! except the ones provisioned concurrency keeps (see [`InstancePool::set_provisioned`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nimbus_core::error::ThrottleReason;
use nimbus_core::{CodeSha256, Error, FunctionConfig, FunctionName, Result};
use tokio::time::Instant;

use crate::instance::{Instance, InstanceId};

/// Instances are shared only between invocations of the exact same configuration: an
/// update (new revision) gets fresh instances while the old ones idle out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    name: FunctionName,
    version: String,
    code: CodeSha256,
    revision: String,
}

impl PoolKey {
    pub(crate) fn of(function: &FunctionConfig) -> Self {
        Self {
            name: function.name.clone(),
            version: function.version.clone(),
            code: function.code_sha256,
            revision: function.revision_id.clone(),
        }
    }
}

pub(crate) struct InstancePool {
    max_instances: usize,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    idle: HashMap<PoolKey, Vec<IdleInstance>>,
    /// Busy (running or starting) instances per function, across its configurations.
    busy: HashMap<FunctionName, usize>,
    /// Instances running an invocation, so that shutdown can stop them too.
    running: HashMap<InstanceId, (PoolKey, Arc<Instance>)>,
    /// Instances of each configuration that provisioned concurrency keeps: neither reaped
    /// nor evicted below that many.
    provisioned: HashMap<PoolKey, usize>,
    /// Idle, running and starting instances: what the node-wide limit counts.
    live: usize,
    closed: bool,
}

struct IdleInstance {
    instance: Arc<Instance>,
    since: Instant,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PoolStats {
    pub(crate) live: usize,
    pub(crate) idle: usize,
    pub(crate) busy: usize,
}

/// What [`InstancePool::acquire`] grants.
pub(crate) struct Acquired<'a> {
    pub(crate) lease: Lease<'a>,
    /// An idle instance of another function evicted to make room, for the caller to stop.
    pub(crate) evicted: Option<Arc<Instance>>,
}

/// Room for one invocation, from [`InstancePool::acquire`] until [`Lease::finish`]: a warm
/// instance, or room (already counted) for a new one to [`attach`](Lease::attach). Dropped
/// unfinished (a failed start, a panic), it gives the room back and kills its instance, whose
/// state is unknown.
pub(crate) struct Lease<'a> {
    pool: &'a InstancePool,
    key: PoolKey,
    instance: Option<Arc<Instance>>,
    finished: bool,
}

impl InstancePool {
    pub(crate) fn new(max_instances: usize) -> Self {
        Self {
            max_instances,
            state: Mutex::new(PoolState::default()),
        }
    }

    /// Takes a warm instance of `key` (the most recently used) or room for a new one, within
    /// the function's concurrency and the node's instance limit.
    pub(crate) fn acquire(&self, key: &PoolKey, function_limit: u32) -> Result<Acquired<'_>> {
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Service("the invoker is shutting down".to_owned()));
        }
        let busy = state.busy.get(&key.name).copied().unwrap_or(0);
        if busy >= function_limit as usize {
            return Err(throttled(ThrottleReason::FunctionConcurrency));
        }
        let mut warm = None;
        while let Some(idle) = state.idle.get_mut(key).and_then(Vec::pop) {
            if idle.instance.has_exited() {
                state.live -= 1;
                continue;
            }
            warm = Some(idle.instance);
            break;
        }
        let mut evicted = None;
        if warm.is_none() {
            if state.live >= self.max_instances {
                evicted = state.evict_oldest_idle();
                if evicted.is_none() {
                    return Err(throttled(ThrottleReason::NodeConcurrency));
                }
            }
            state.live += 1;
        }
        *state.busy.entry(key.name.clone()).or_default() += 1;
        if let Some(instance) = &warm {
            state
                .running
                .insert(instance.id, (key.clone(), instance.clone()));
        }
        state.publish();
        Ok(Acquired {
            lease: Lease {
                pool: self,
                key: key.clone(),
                instance: warm,
                finished: false,
            },
            evicted,
        })
    }

    /// Removes and returns instances idle for at least `idle_timeout`, keeping (the most
    /// recently used) as many idle instances of a configuration as are provisioned for it.
    pub(crate) fn reap(&self, idle_timeout: Duration) -> Vec<Arc<Instance>> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let now = Instant::now();
        let mut reaped = Vec::new();
        for (key, instances) in &mut state.idle {
            let keep = state.provisioned.get(key).copied().unwrap_or(0);
            let mut kept = Vec::with_capacity(instances.len());
            // Newest first, so that the ones kept for provisioning are the warmest.
            for idle in instances.drain(..).rev() {
                let stale = now.duration_since(idle.since) >= idle_timeout;
                if idle.instance.has_exited() || (stale && kept.len() >= keep) {
                    reaped.push(idle.instance);
                } else {
                    kept.push(idle);
                }
            }
            kept.reverse();
            *instances = kept;
        }
        state.idle.retain(|_, instances| !instances.is_empty());
        state.live -= reaped.len();
        state.publish();
        reaped
    }

    /// Stops accepting work and returns every instance to stop: the idle ones (no longer
    /// in the pool) and the running ones (whose invocations then end as the process exits).
    pub(crate) fn close(&self) -> Vec<Arc<Instance>> {
        let mut state = self.lock();
        state.closed = true;
        let mut instances: Vec<_> = state
            .idle
            .drain()
            .flat_map(|(_, instances)| instances.into_iter().map(|idle| idle.instance))
            .collect();
        state.live -= instances.len();
        instances.extend(state.running.values().map(|(_, instance)| instance.clone()));
        instances
    }

    /// Replaces what provisioned concurrency keeps: `targets` instances of each
    /// configuration. A configuration left out is reaped and evicted like any other.
    pub(crate) fn set_provisioned(&self, targets: HashMap<PoolKey, usize>) {
        self.lock().provisioned = targets;
    }

    /// Live instances of `key`: idle (and not exited) or running an invocation.
    pub(crate) fn instances_of(&self, key: &PoolKey) -> usize {
        let state = self.lock();
        let idle = state.idle.get(key).map_or(0, |instances| {
            instances
                .iter()
                .filter(|idle| !idle.instance.has_exited())
                .count()
        });
        let running = state
            .running
            .values()
            .filter(|(running, _)| running == key)
            .count();
        idle + running
    }

    /// Room for an instance started ahead of traffic (provisioned concurrency), within the
    /// node's instance limit; an idle instance of an unprovisioned configuration may be
    /// evicted for it (returned for the caller to stop). Give the room back with
    /// [`release`](Self::release) if the instance does not start, or fill it with
    /// [`add_idle`](Self::add_idle).
    pub(crate) fn reserve(&self) -> Result<Option<Arc<Instance>>> {
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Service("the invoker is shutting down".to_owned()));
        }
        let mut evicted = None;
        if state.live >= self.max_instances {
            evicted = state.evict_oldest_idle();
            if evicted.is_none() {
                return Err(Error::Service(format!(
                    "the invoker node runs its maximum of {} instances",
                    self.max_instances
                )));
            }
        }
        state.live += 1;
        Ok(evicted)
    }

    /// Gives back room taken by [`reserve`](Self::reserve) for an instance that did not start.
    pub(crate) fn release(&self) {
        let mut state = self.lock();
        state.live -= 1;
        state.publish();
    }

    /// Puts an instance started in room from [`reserve`](Self::reserve) among the idle ones
    /// of `key`; when shutting down, returns it for the caller to stop.
    pub(crate) fn add_idle(&self, key: &PoolKey, instance: Arc<Instance>) -> Option<Arc<Instance>> {
        let mut state = self.lock();
        if state.closed {
            state.live -= 1;
            return Some(instance);
        }
        state
            .idle
            .entry(key.clone())
            .or_default()
            .push(IdleInstance {
                instance,
                since: Instant::now(),
            });
        state.publish();
        None
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let state = self.lock();
        PoolStats {
            live: state.live,
            idle: state.idle.values().map(Vec::len).sum(),
            busy: state.busy.values().sum(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        crate::sync::lock(&self.state)
    }
}

impl Lease<'_> {
    /// The instance this lease runs on: warm from the pool, or attached after a cold start.
    pub(crate) fn instance(&self) -> Option<Arc<Instance>> {
        self.instance.clone()
    }

    /// Puts a freshly started instance in the room this lease holds.
    pub(crate) fn attach(&mut self, instance: Instance) -> Result<Arc<Instance>> {
        let instance = Arc::new(instance);
        let mut state = self.pool.lock();
        if state.closed {
            // Dropping the instance kills it; dropping the lease gives the room back.
            return Err(Error::Service("the invoker is shutting down".to_owned()));
        }
        state
            .running
            .insert(instance.id, (self.key.clone(), instance.clone()));
        self.instance = Some(instance.clone());
        Ok(instance)
    }

    /// Ends the invocation. A reusable instance goes back to idle; otherwise (or when
    /// shutting down) it is returned for the caller to stop.
    pub(crate) fn finish(mut self, reusable: bool) -> Option<Arc<Instance>> {
        // Without an instance there is only room to give back, which dropping does.
        let instance = self.instance.take()?;
        self.finished = true;
        let mut state = self.pool.lock();
        state.finish_busy(&self.key.name);
        state.running.remove(&instance.id);
        if reusable && !state.closed && !instance.has_exited() {
            state
                .idle
                .entry(self.key.clone())
                .or_default()
                .push(IdleInstance {
                    instance,
                    since: Instant::now(),
                });
            state.publish();
            None
        } else {
            state.live -= 1;
            state.publish();
            Some(instance)
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut state = self.pool.lock();
        state.finish_busy(&self.key.name);
        if let Some(instance) = self.instance.take() {
            state.running.remove(&instance.id);
            instance.kill();
        }
        state.live -= 1;
        state.publish();
    }
}

fn throttled(reason: ThrottleReason) -> Error {
    metrics::counter!("nimbus_throttles_total", "reason" => reason.as_str()).increment(1);
    Error::TooManyRequests(reason)
}

impl PoolState {
    /// Sets the instance gauges to what this state holds.
    fn publish(&self) {
        let idle: usize = self.idle.values().map(Vec::len).sum();
        let busy: usize = self.busy.values().sum();
        metrics::gauge!("nimbus_instances", "state" => "idle").set(idle as f64);
        metrics::gauge!("nimbus_instances", "state" => "busy").set(busy as f64);
    }

    fn finish_busy(&mut self, name: &FunctionName) {
        if let Some(busy) = self.busy.get_mut(name) {
            *busy = busy.saturating_sub(1);
            if *busy == 0 {
                self.busy.remove(name);
            }
        }
    }

    fn evict_oldest_idle(&mut self) -> Option<Arc<Instance>> {
        let key = self
            .idle
            .iter()
            // Provisioned instances are not evicted (only those beyond the provisioned count).
            .filter(|(key, instances)| {
                instances.len() > self.provisioned.get(*key).copied().unwrap_or(0)
            })
            .filter_map(|(key, instances)| instances.first().map(|oldest| (key, oldest.since)))
            .min_by_key(|(_, since)| *since)
            .map(|(key, _)| key.clone())?;
        let instances = self.idle.get_mut(&key)?;
        let oldest = instances.remove(0);
        if instances.is_empty() {
            self.idle.remove(&key);
        }
        self.live -= 1;
        Some(oldest.instance)
    }
}
