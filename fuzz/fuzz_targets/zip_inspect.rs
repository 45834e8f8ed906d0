//! A function's zip as uploaded: `inspect_zip` must refuse or accept any bytes without
//! panicking, and what it accepts must be within the entry and unzipped-size limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_core::code::inspect_zip_with_limit;
use nimbus_core::limits;

/// Small enough that a deflate bomb inside a fuzz input reaches it quickly.
const LIMIT: u64 = 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    if let Ok(summary) = inspect_zip_with_limit(data, LIMIT) {
        assert!(summary.entries <= limits::MAX_ZIP_ENTRIES);
        assert!(summary.unzipped_bytes <= LIMIT);
    }
});
