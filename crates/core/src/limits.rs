//! Lambda's limits, as defaults and bounds. Services take configurable values where the
//! architecture says so and fall back to these.

/// Largest synchronous invoke payload, request and response (Lambda: 6 MB).
pub const MAX_SYNC_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Largest asynchronous invoke payload (Lambda: 256 KB).
pub const MAX_ASYNC_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest unpacked size of a function's code (Lambda: 250 MB).
pub const MAX_UNZIPPED_CODE_BYTES: u64 = 250 * 1024 * 1024;
/// Largest zip accepted in a `CreateFunction` / `UpdateFunctionCode` body (Lambda: 50 MB).
pub const MAX_ZIPPED_CODE_BYTES: usize = 50 * 1024 * 1024;
/// Largest number of entries in a function's zip; guards against entry-count bombs.
pub const MAX_ZIP_ENTRIES: usize = 20_000;

pub const DEFAULT_TIMEOUT_SECS: u32 = 3;
pub const MIN_TIMEOUT_SECS: u32 = 1;
pub const MAX_TIMEOUT_SECS: u32 = 900;

pub const DEFAULT_MEMORY_MB: u32 = 128;
pub const MIN_MEMORY_MB: u32 = 128;
pub const MAX_MEMORY_MB: u32 = 10_240;

/// Largest decoded `X-Amz-Client-Context` (Lambda: 3583 bytes).
pub const MAX_CLIENT_CONTEXT_BYTES: usize = 3583;
/// How deep an invoke payload's arrays and objects may nest. Nimbus' own: serde_json's
/// recursion limit, so that every part of Nimbus, and a Rust function, can parse what the
/// gateway accepts.
pub const MAX_PAYLOAD_NESTING: usize = 128;
/// How much of an invocation's log `X-Amz-Log-Type: Tail` returns.
pub const LOG_TAIL_BYTES: usize = 4 * 1024;

pub const MAX_DESCRIPTION_CHARS: usize = 256;
pub const MAX_HANDLER_CHARS: usize = 128;
/// Total size of a function's environment variables (Lambda: 4 KB).
pub const MAX_ENVIRONMENT_BYTES: usize = 4 * 1024;
