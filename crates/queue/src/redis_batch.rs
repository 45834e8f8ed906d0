//! Group commit for Redis enqueues: concurrent `enqueue` calls share one script call, so a
//! burst of events costs one round trip and one Lua run instead of one each. One batch is in
//! flight at a time, which keeps events in the order they were handed over; while it is,
//! the next one gathers.

use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use crate::{Error, Result};

/// Events per script call at most, and bytes of events per call at most (beyond the first).
const MAX_BATCH: usize = 256;
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Enqueues waiting for a batch at most; more wait for room (back-pressure).
const MAX_WAITING: usize = 8192;

/// KEYS: events, delayed. ARGV: max_len (0: no bound), then one JSON event per argument.
/// Appends as many as fit and returns how many that is.
const ENQUEUE_MANY: &str = r"
local max, n = tonumber(ARGV[1]), #ARGV - 1
if max > 0 then
  local room = max - redis.call('XLEN', KEYS[1]) - redis.call('ZCARD', KEYS[2])
  if room < n then n = math.max(room, 0) end
end
for i = 2, n + 1 do
  redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
end
return n
";

struct Waiting {
    json: Vec<u8>,
    done: oneshot::Sender<Result<()>>,
}

/// Hands events to the batching task; cheap to clone.
#[derive(Clone)]
pub(crate) struct EnqueueBatcher {
    waiting: mpsc::Sender<Waiting>,
}

impl EnqueueBatcher {
    /// Starts the batching task on the current runtime; it ends when every clone is dropped.
    pub(crate) fn start(
        conn: ConnectionManager,
        events_key: String,
        delayed_key: String,
        max_len: usize,
    ) -> Self {
        let (waiting, queue) = mpsc::channel(MAX_WAITING);
        let task = BatchTask {
            conn,
            events_key,
            delayed_key,
            max_len,
            script: Script::new(ENQUEUE_MANY),
        };
        tokio::spawn(task.run(queue));
        Self { waiting }
    }

    /// Appends one event (JSON); `Ok` once Redis has it.
    pub(crate) async fn enqueue(&self, json: Vec<u8>) -> Result<()> {
        let (done, result) = oneshot::channel();
        let stopped = || Error::Config("the enqueue task has stopped".to_owned());
        self.waiting
            .send(Waiting { json, done })
            .await
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

struct BatchTask {
    conn: ConnectionManager,
    events_key: String,
    delayed_key: String,
    max_len: usize,
    script: Script,
}

impl BatchTask {
    async fn run(mut self, mut queue: mpsc::Receiver<Waiting>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = queue.recv().await {
            let mut bytes = first.json.len();
            batch.push(first);
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match queue.try_recv() {
                    Ok(next) => {
                        bytes += next.json.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.append(&mut batch).await;
        }
    }

    /// Appends `batch` in one script call and answers each waiter.
    async fn append(&mut self, batch: &mut Vec<Waiting>) {
        let mut invocation = self.script.key(&self.events_key);
        invocation.key(&self.delayed_key).arg(self.max_len);
        for waiting in batch.iter() {
            invocation.arg(&waiting.json);
        }
        let appended: redis::RedisResult<usize> = invocation.invoke_async(&mut self.conn).await;
        for (n, waiting) in batch.drain(..).enumerate() {
            let result = match &appended {
                Ok(count) if n < *count => Ok(()),
                Ok(_) => Err(Error::Full(self.max_len)),
                // Each waiter gets its own copy of what went wrong.
                Err(error) => Err(Error::Redis(redis::RedisError::from((
                    error.kind(),
                    "enqueue failed",
                    error.to_string(),
                )))),
            };
            // The caller may have gone away; the event is queued regardless.
            let _ = waiting.done.send(result);
        }
    }
}
