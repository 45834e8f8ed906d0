//! What a failed `accept` means to the accept loops of the gateway's and the invoker's HTTP
//! servers.

use std::io::{Error, ErrorKind};
use std::time::Duration;

/// How long an accept loop waits after an error that is not [`lost_one_connection`].
pub const PAUSE_AFTER_ACCEPT_ERROR: Duration = Duration::from_secs(1);

/// Whether a failed `accept` lost only its one connection, whose client went away before it
/// was accepted: the loop goes straight on. Any other error (out of file descriptors, most
/// likely) would fail the next accept alike, so the loop waits [`PAUSE_AFTER_ACCEPT_ERROR`]
/// rather than spin.
pub fn lost_one_connection(error: &Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_vanished_client_is_skipped_without_a_pause() {
        for kind in [
            ErrorKind::ConnectionAborted,
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionRefused,
        ] {
            assert!(lost_one_connection(&Error::from(kind)), "{kind:?}");
        }
        // EMFILE: the process is out of file descriptors.
        assert!(!lost_one_connection(&Error::from_raw_os_error(24)));
        assert!(!lost_one_connection(&Error::from(ErrorKind::OutOfMemory)));
    }
}
