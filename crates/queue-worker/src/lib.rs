//! The queue-worker: takes `Event` invocations from the [`EventQueue`](nimbus_queue::EventQueue),
//! runs them through the invoker, and sees each to exactly one end: succeeded, or
//! dead-lettered once its attempts or its age are spent.
//!
//! A function error or timeout spends an attempt and is retried after a growing wait; a
//! throttle or a Nimbus failure spends none and backs off until the event is too old. Results
//! go to the function's `OnSuccess` / `OnFailure` destinations and to the caller's callback
//! URL (public addresses only, unless configured otherwise: see [`callback`]). Delivery is
//! at-least-once: an event is acked only after its outcome is recorded
//! where it must be (dead letter stored, destination queued).

pub mod callback;
pub mod config;
mod destination;
mod process;
mod worker;

pub use callback::CallbackNetworks;
pub use config::WorkerConfig;
pub use worker::{QueueWorker, WorkerStats};
