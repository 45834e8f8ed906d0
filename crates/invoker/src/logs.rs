//! An instance's stdout and stderr: every line goes to `tracing` with the function and the
//! request id, and to the log of the invocation running at the time (framed by Lambda's
//! `START` / `END` / `REPORT` lines, for `X-Amz-Log-Type: Tail`).
//!
//! A line printed just before the runtime posts its response may still sit in the pipe when
//! the response arrives. [`InstanceLogs::settle`] closes that race exactly: it asks the
//! kernel how many bytes are unread (`FIONREAD`) and waits until the readers have taken them.

use crate::sync::lock;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nimbus_core::{RequestId, limits};
use tokio::net::unix::pipe;
use tokio::sync::watch;

/// How much of an invocation's log is kept: enough for the tail, bounded for chatty functions.
const KEPT_LOG_BYTES: usize = 4 * limits::LOG_TAIL_BYTES;
/// Output before the first invocation (init) kept for that invocation's log.
const KEPT_INIT_BYTES: usize = limits::LOG_TAIL_BYTES;
/// Upper bound on waiting for unread output; only a stuck reader could hit it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);
const READ_CHUNK_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub(crate) struct InstanceLogs {
    inner: Arc<Shared>,
}

struct Shared {
    function: String,
    state: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    request_id: Option<RequestId>,
    /// The span of the current invocation: its output lines are logged (and traced) in it.
    span: Option<tracing::Span>,
    /// The current invocation's log, or init output while none runs.
    text: String,
}

/// One captured stream (stdout or stderr).
pub(crate) struct Stream {
    /// A duplicate of the pipe's read end, only for asking how much is unread.
    probe: OwnedFd,
    /// Held by the reader from taking bytes out of the pipe until they are counted in
    /// `consumed`, so that `FIONREAD` plus `consumed` is exactly what was written.
    reading: Arc<Mutex<()>>,
    consumed: watch::Receiver<u64>,
    /// Output read but not yet ended by a newline.
    partial: Arc<Mutex<Vec<u8>>>,
}

impl InstanceLogs {
    pub(crate) fn new(function: &str) -> Self {
        Self {
            inner: Arc::new(Shared {
                function: function.to_owned(),
                state: Mutex::new(LogState::default()),
            }),
        }
    }

    /// Starts reading one pipe of the instance; the returned [`Stream`] lets
    /// [`settle`](Self::settle) wait for it.
    pub(crate) fn capture(&self, pipe: OwnedFd) -> std::io::Result<Stream> {
        let probe = pipe.try_clone()?;
        let pipe = pipe::Receiver::from_owned_fd(pipe)?;
        let (consumed_tx, consumed) = watch::channel(0u64);
        let reading = Arc::new(Mutex::new(()));
        let partial = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(read_lines(
            self.clone(),
            pipe,
            reading.clone(),
            consumed_tx,
            partial.clone(),
        ));
        Ok(Stream {
            probe,
            reading,
            consumed,
            partial,
        })
    }

    /// Begins an invocation's log with Lambda's `START` line (after any init output).
    pub(crate) fn begin(&self, request_id: RequestId, version: &str) {
        let mut state = self.lock();
        let init = std::mem::take(&mut state.text);
        state.request_id = Some(request_id);
        state.span = Some(tracing::Span::current());
        state.text = format!("{init}START RequestId: {request_id} Version: {version}\n");
    }

    /// Waits until every byte written to `streams` so far has been read into the log.
    pub(crate) async fn settle(&self, streams: &mut [Stream]) {
        for stream in streams {
            let (unread, target) = {
                let _reading = lock(&stream.reading);
                let unread = rustix::io::ioctl_fionread(stream.probe.as_fd()).unwrap_or(0);
                (unread, *stream.consumed.borrow() + unread)
            };
            if unread > 0 {
                let caught_up = stream.consumed.wait_for(|consumed| *consumed >= target);
                if tokio::time::timeout(SETTLE_TIMEOUT, caught_up)
                    .await
                    .is_err()
                {
                    tracing::debug!(function = %self.inner.function, "instance output did not settle in time");
                }
            }
            // A last line without its newline is logged as it is.
            let partial = std::mem::take(&mut *lock(&stream.partial));
            if !partial.is_empty() {
                self.append(&String::from_utf8_lossy(&partial));
            }
        }
    }

    /// Ends the invocation's log with `END` and `REPORT` and returns it.
    pub(crate) fn finish(&self, report: &str) -> String {
        let mut state = self.lock();
        let request_id = state.request_id.take();
        state.span = None;
        let mut text = std::mem::take(&mut state.text);
        if let Some(id) = request_id {
            text.push_str(&format!("END RequestId: {id}\n{report}\n"));
        }
        text
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        lock(&self.inner.state)
    }

    /// Adds one line to the current invocation's log (and to `tracing`).
    pub(crate) fn append(&self, line: &str) {
        let (request_id, span) = {
            let mut state = self.lock();
            let keep = if state.request_id.is_some() {
                KEPT_LOG_BYTES
            } else {
                KEPT_INIT_BYTES
            };
            state.text.push_str(line);
            state.text.push('\n');
            trim_front(&mut state.text, keep);
            (state.request_id, state.span.clone())
        };
        match (request_id, span) {
            (Some(id), Some(span)) => {
                tracing::info!(parent: &span, function = %self.inner.function, request_id = %id, "{line}");
            }
            (Some(id), None) => {
                tracing::info!(function = %self.inner.function, request_id = %id, "{line}");
            }
            (None, _) => tracing::info!(function = %self.inner.function, "{line}"),
        }
    }
}

/// The last `limits::LOG_TAIL_BYTES` of a log, cut on a character boundary.
pub(crate) fn tail(log: &str) -> String {
    let mut start = log.len().saturating_sub(limits::LOG_TAIL_BYTES);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    log[start..].to_owned()
}

fn trim_front(text: &mut String, keep: usize) {
    if text.len() > keep {
        let mut cut = text.len() - keep;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text.drain(..cut);
    }
}

async fn read_lines(
    logs: InstanceLogs,
    pipe: pipe::Receiver,
    reading: Arc<Mutex<()>>,
    consumed: watch::Sender<u64>,
    partial: Arc<Mutex<Vec<u8>>>,
) {
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        if pipe.readable().await.is_err() {
            break;
        }
        let _reading = lock(&reading);
        let n = match pipe.try_read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        };
        for line in split_lines(&mut lock(&partial), &chunk[..n]) {
            logs.append(&line);
        }
        consumed.send_modify(|total| *total += n as u64);
    }
    let rest = std::mem::take(&mut *lock(&partial));
    if !rest.is_empty() {
        logs.append(&String::from_utf8_lossy(&rest));
    }
}

/// Appends `bytes` to `partial` and takes out every complete line.
fn split_lines(partial: &mut Vec<u8>, bytes: &[u8]) -> Vec<String> {
    partial.extend_from_slice(bytes);
    let mut lines = Vec::new();
    while let Some(end) = partial.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = partial.drain(..=end).collect();
        lines.push(
            String::from_utf8_lossy(&line[..end])
                .trim_end_matches('\r')
                .to_owned(),
        );
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_cut_on_character_boundaries() {
        let log = "é".repeat(limits::LOG_TAIL_BYTES);
        let tail = tail(&log);
        assert!(tail.len() <= limits::LOG_TAIL_BYTES);
        assert!(tail.chars().all(|c| c == 'é'));
    }

    // On a current-thread runtime the reader cannot run between the write and `settle`, so
    // the line is still in the pipe: only waiting for what FIONREAD reports brings it in.
    #[tokio::test]
    async fn settling_takes_in_what_is_still_in_the_pipe() {
        use std::io::Write as _;
        let (reader, mut writer) = std::io::pipe().unwrap();
        let logs = InstanceLogs::new("f");
        let mut streams = vec![logs.capture(OwnedFd::from(reader)).unwrap()];
        let id = RequestId::new();
        logs.begin(id, "$LATEST");
        writer
            .write_all(b"printed just before the response\n")
            .unwrap();
        logs.settle(&mut streams).await;
        let text = logs.finish("REPORT x");
        assert!(
            text.contains("\nprinted just before the response\nEND RequestId: "),
            "{text}"
        );
    }

    #[tokio::test]
    async fn lines_land_in_the_current_invocation() {
        let logs = InstanceLogs::new("f");
        let id = RequestId::new();
        logs.append("init line");
        logs.begin(id, "$LATEST");
        logs.append("hello");
        let text = logs.finish("REPORT x");
        assert_eq!(
            text,
            format!(
                "init line\nSTART RequestId: {id} Version: $LATEST\nhello\nEND RequestId: {id}\nREPORT x\n"
            )
        );
    }
}
