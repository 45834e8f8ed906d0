//! The distributed backend: a Redis stream read through a consumer group.
//!
//! Keys under `{prefix}`: `:events`, a stream of ready and in-flight events (field `e`, the
//! event's JSON) read by consumer group `group`; `:delayed`, a sorted set of re-scheduled
//! events scored by their due time in Unix ms, each member a 36-character UUID (so equal
//! events stay distinct) followed by the JSON. Claims move due members into the stream and
//! reclaim expired ones (`XAUTOCLAIM`) in one Lua script, so any number of workers can run
//! it; the stream's pending list is the set of in-flight events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Script, Value};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::redis_batch::EnqueueBatcher;
use crate::{
    Delivery, Error, EventQueue, QueueStats, QueuedEvent, Result, duration_ms, from_unix_ms,
    unix_ms,
};

/// The stream entry field that holds the event.
const FIELD: &str = "e";
/// Length of the unique tag in front of each delayed member (a hyphenated UUID).
const TAG_LEN: usize = 36;
/// Delayed events moved into the stream per claim; the rest follow with the next claims.
const PROMOTE_BATCH: usize = 100;
/// Longest single blocking read, so a waiting claim still notices due delayed events and
/// expired claims.
const MAX_BLOCK: Duration = Duration::from_secs(1);
const MIN_BLOCK: Duration = Duration::from_millis(10);
/// Head-room over a blocking read's own timeout before its connection is given up on.
const BLOCK_GRACE: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// KEYS: events, delayed. ARGV: now_ms, group, consumer, max, min_idle_ms, promote_batch,
/// tag_len. Returns {next_due_ms or -1, id, body, redelivered (0/1), ...}.
const CLAIM: &str = r"
local now, max = tonumber(ARGV[1]), tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[1], '*', 'e', string.sub(member, tonumber(ARGV[7]) + 1))
  redis.call('ZREM', KEYS[2], member)
end
local function field(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'e' then return fields[i + 1] end
  end
  return ''
end
local out, n = {-1}, 0
local cursor = '0-0'
repeat
  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[2], ARGV[3], ARGV[5], cursor, 'COUNT', max - n)
  cursor = r[1]
  for _, entry in ipairs(r[2]) do
    if entry then
      out[#out + 1] = entry[1]; out[#out + 1] = field(entry[2]); out[#out + 1] = 1
      n = n + 1
    end
  end
until cursor == '0-0' or n >= max
if n < max then
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', max - n,
    'STREAMS', KEYS[1], '>')
  if r then
    for _, entry in ipairs(r[1][2]) do
      out[#out + 1] = entry[1]; out[#out + 1] = field(entry[2]); out[#out + 1] = 0
    end
  end
end
local next = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if next[2] then out[1] = tonumber(next[2]) end
return out
";

/// KEYS: events, delayed. ARGV: group, id, due_ms, member. Schedules only if this call is
/// the one that acks, so a stale consumer can not add a duplicate.
const RETRY_LATER: &str = r"
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if acked == 1 then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4]) end
return acked
";

/// KEYS: events, delayed. ARGV: group. Returns {stream length, delayed, pending, head event
/// or false, earliest-due delayed member or false}.
const STATS: &str = r"
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
local body = false
if head then
  for i = 1, #head[2], 2 do
    if head[2][i] == 'e' then body = head[2][i + 1] end
  end
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0)[1] or false
return {redis.call('XLEN', KEYS[1]), redis.call('ZCARD', KEYS[2]),
  redis.call('XPENDING', KEYS[1], ARGV[1])[1], body, first}
";

/// Resets the idle time of a pending entry if `ARGV[3]` still holds it. Returns 1 if so.
/// KEYS: events. ARGV: group, entry id, consumer.
const TOUCH: &str = r"
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)[1]
if not pending or pending[2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
";

/// Settings of a [`RedisQueue`].
#[derive(Debug, Clone)]
pub struct RedisQueueConfig {
    /// Prefix of the queue's keys, e.g. `nimbus`. On Redis Cluster make it a hash tag
    /// (`{nimbus}`) so both keys share a slot, as the scripts require.
    pub key_prefix: String,
    /// The consumer group all workers of this queue share.
    pub group: String,
    /// How long a claimed, un-acked event stays hidden before another consumer may claim it.
    pub visibility_timeout: Duration,
    /// Refuse enqueues ([`Error::Full`]) once this many events are queued (ready, delayed and
    /// in flight). A bound rather than `XADD MAXLEN`, which would silently drop events.
    pub max_len: Option<usize>,
}

/// An [`EventQueue`] on Redis Streams. Clones share connections.
///
/// Durability is Redis's: run it with AOF (`appendfsync everysec` or `always`) and replicas
/// for invariant 1 to hold across a Redis crash.
#[derive(Clone)]
pub struct RedisQueue {
    client: Client,
    conn: ConnectionManager,
    /// Connections for blocking reads, one per waiting claim: a blocked connection would
    /// hold up every other command multiplexed on it.
    blocking: Arc<Mutex<Vec<MultiplexedConnection>>>,
    events_key: String,
    delayed_key: String,
    config: RedisQueueConfig,
    enqueuer: EnqueueBatcher,
    claim_script: Script,
    retry_script: Script,
    touch_script: Script,
    stats_script: Script,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("events_key", &self.events_key)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// Connects to `url` (`redis://HOST:PORT/DB`) and creates the stream and its consumer
    /// group if missing.
    pub async fn connect(url: &str, config: RedisQueueConfig) -> Result<Self> {
        if config.visibility_timeout < Duration::from_millis(1) {
            return Err(Error::Config(
                "the visibility timeout must be at least 1ms".into(),
            ));
        }
        if config.key_prefix.is_empty() || config.group.is_empty() {
            return Err(Error::Config(
                "the key prefix and group must not be empty".into(),
            ));
        }
        let client = Client::open(url)?;
        let conn = ConnectionManager::new_with_config(
            client.clone(),
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT)),
        )
        .await?;
        let events_key = format!("{}:events", config.key_prefix);
        let delayed_key = format!("{}:delayed", config.key_prefix);
        let enqueuer = EnqueueBatcher::start(
            conn.clone(),
            events_key.clone(),
            delayed_key.clone(),
            config.max_len.unwrap_or(0),
        );
        let queue = Self {
            client,
            conn,
            blocking: Arc::default(),
            events_key,
            delayed_key,
            config,
            enqueuer,
            claim_script: Script::new(CLAIM),
            retry_script: Script::new(RETRY_LATER),
            touch_script: Script::new(TOUCH),
            stats_script: Script::new(STATS),
        };
        queue.ensure_group().await?;
        Ok(queue)
    }

    /// The keys this queue uses, e.g. for an operator or a test to delete them.
    pub fn keys(&self) -> [&str; 2] {
        [&self.events_key, &self.delayed_key]
    }

    async fn ensure_group(&self) -> Result<()> {
        let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.events_key)
            .arg(&self.config.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Runs `f`, recreating the group once if the keys vanished under us (`FLUSHDB`, a
    /// deleted stream) so workers recover without a restart.
    async fn with_group<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match f().await {
            Err(e) if e.code() == Some("NOGROUP") => {
                tracing::warn!(stream = %self.events_key, "consumer group missing; recreating it");
                self.ensure_group().await?;
                Ok(f().await?)
            }
            other => Ok(other?),
        }
    }

    /// One non-blocking claim; also returns when the next delayed event is due.
    async fn claim_now(
        &self,
        consumer: &str,
        max: usize,
    ) -> Result<(Vec<Delivery>, Option<OffsetDateTime>)> {
        let now = unix_ms(OffsetDateTime::now_utc());
        let reply: Vec<Value> = self
            .with_group(|| {
                let mut conn = self.conn.clone();
                let mut invocation = self.claim_script.key(&self.events_key);
                invocation
                    .key(&self.delayed_key)
                    .arg(now)
                    .arg(&self.config.group)
                    .arg(consumer)
                    .arg(max)
                    .arg(duration_ms(self.config.visibility_timeout))
                    .arg(PROMOTE_BATCH)
                    .arg(TAG_LEN);
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        let mut values = reply.into_iter();
        let next_due = match values.next() {
            Some(Value::Int(ms)) if ms >= 0 => from_unix_ms(ms),
            _ => None,
        };
        let rest: Vec<Value> = values.collect();
        let mut deliveries = Vec::with_capacity(rest.len() / 3);
        for triple in rest.chunks(3) {
            let [id, body, redelivered] = triple else {
                return Err(Error::Corrupt(
                    "a claim reply is not id/body/flag triples".into(),
                ));
            };
            let id = text(id)?;
            match self.decode(&id, body).await? {
                Some(event) => deliveries.push(Delivery {
                    id,
                    event,
                    redelivered: matches!(redelivered, Value::Int(1)),
                }),
                None => continue,
            }
        }
        Ok((deliveries, next_due))
    }

    /// Parses an entry's event. An entry that does not parse can never succeed: it is logged
    /// and removed rather than redelivered forever.
    async fn decode(&self, id: &str, body: &Value) -> Result<Option<QueuedEvent>> {
        let parsed = match body {
            Value::BulkString(bytes) => QueuedEvent::from_json(bytes),
            other => Err(Error::Corrupt(format!("unexpected entry value {other:?}"))),
        };
        match parsed {
            Ok(event) => Ok(Some(event)),
            Err(error) => {
                tracing::error!(stream = %self.events_key, id, %error, "dropping an unreadable event");
                self.ack_id(id).await?;
                Ok(None)
            }
        }
    }

    /// One blocking read of new entries, on a connection of its own.
    async fn claim_blocking(
        &self,
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>> {
        let pooled = self.blocking.lock().ok().and_then(|mut pool| pool.pop());
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                self.client
                    .get_multiplexed_async_connection_with_config(
                        &AsyncConnectionConfig::new()
                            .set_connection_timeout(Some(CONNECT_TIMEOUT))
                            .set_response_timeout(Some(MAX_BLOCK + BLOCK_GRACE)),
                    )
                    .await?
            }
        };
        let block_ms = duration_ms(block.max(MIN_BLOCK));
        let reply: Value = self
            .with_group(|| {
                let mut conn = conn.clone();
                let mut cmd = redis::cmd("XREADGROUP");
                cmd.arg("GROUP")
                    .arg(&self.config.group)
                    .arg(consumer)
                    .arg("COUNT")
                    .arg(max)
                    .arg("BLOCK")
                    .arg(block_ms)
                    .arg("STREAMS")
                    .arg(&self.events_key)
                    .arg(">");
                async move { cmd.query_async(&mut conn).await }
            })
            .await?;
        // Only a connection that answered goes back; a failed one is dropped.
        if let Ok(mut pool) = self.blocking.lock() {
            pool.push(conn.clone());
        }
        let mut deliveries = Vec::new();
        for (id, body) in stream_entries(reply)? {
            if let Some(event) = self.decode(&id, &body).await? {
                deliveries.push(Delivery {
                    id,
                    event,
                    redelivered: false,
                });
            }
        }
        Ok(deliveries)
    }

    async fn ack_id(&self, id: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .cmd("XACK")
            .arg(&self.events_key)
            .arg(&self.config.group)
            .arg(id)
            .ignore()
            .cmd("XDEL")
            .arg(&self.events_key)
            .arg(id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl EventQueue for RedisQueue {
    async fn enqueue(&self, event: &QueuedEvent) -> Result<()> {
        self.enqueuer.enqueue(event.to_json()?).await
    }

    async fn claim(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        // Expired claims surface without any write, so poll for them often enough.
        let reclaim_poll = (self.config.visibility_timeout / 2).clamp(MIN_BLOCK, MAX_BLOCK);
        loop {
            let (deliveries, next_due) = self.claim_now(consumer, max).await?;
            let now = Instant::now();
            if !deliveries.is_empty() || now >= deadline {
                return Ok(deliveries);
            }
            let mut block = (deadline - now).min(reclaim_poll);
            if let Some(due) = next_due {
                let until_due = due - OffsetDateTime::now_utc();
                block = block.min(until_due.try_into().unwrap_or(Duration::ZERO));
            }
            let deliveries = self.claim_blocking(consumer, max, block).await?;
            if !deliveries.is_empty() {
                return Ok(deliveries);
            }
        }
    }

    async fn touch(&self, consumer: &str, delivery: &Delivery) -> Result<bool> {
        let touched: i64 = self
            .with_group(|| {
                let mut conn = self.conn.clone();
                let mut invocation = self.touch_script.key(&self.events_key);
                invocation
                    .arg(&self.config.group)
                    .arg(&delivery.id)
                    .arg(consumer);
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        Ok(touched == 1)
    }

    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        self.ack_id(&delivery.id).await
    }

    async fn retry_later(
        &self,
        delivery: &Delivery,
        event: &QueuedEvent,
        at: OffsetDateTime,
    ) -> Result<()> {
        let mut member = uuid::Uuid::new_v4().hyphenated().to_string().into_bytes();
        member.extend(event.to_json()?);
        let mut conn = self.conn.clone();
        self.retry_script
            .key(&self.events_key)
            .key(&self.delayed_key)
            .arg(&self.config.group)
            .arg(&delivery.id)
            .arg(unix_ms(at))
            .arg(member)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// `XLEN` and `ZCARD` in one round trip: both O(1), no script, nothing decoded.
    async fn backlog(&self) -> Result<u64> {
        let mut conn = self.conn.clone();
        let (length, delayed): (u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(&self.events_key)
            .cmd("ZCARD")
            .arg(&self.delayed_key)
            .query_async(&mut conn)
            .await?;
        Ok(length + delayed)
    }

    /// `ready` counts events never delivered; expired claims not yet reclaimed still count as
    /// `in_flight`. `oldest_enqueued_at` looks only at the head of the stream and the
    /// earliest-due delayed event, the two places the oldest event almost always is.
    async fn stats(&self) -> Result<QueueStats> {
        let reply: (u64, u64, u64, Option<Vec<u8>>, Option<Vec<u8>>) = self
            .with_group(|| {
                let mut conn = self.conn.clone();
                let mut invocation = self.stats_script.key(&self.events_key);
                invocation.key(&self.delayed_key).arg(&self.config.group);
                async move { invocation.invoke_async(&mut conn).await }
            })
            .await?;
        let (length, delayed, in_flight, head, first_delayed) = reply;
        let enqueued_at = |json: &[u8]| QueuedEvent::from_json(json).ok().map(|e| e.enqueued_at);
        let oldest = [
            head.as_deref().and_then(enqueued_at),
            first_delayed
                .as_deref()
                .and_then(|m| m.get(TAG_LEN..))
                .and_then(enqueued_at),
        ]
        .into_iter()
        .flatten()
        .min();
        Ok(QueueStats {
            ready: length.saturating_sub(in_flight),
            delayed,
            in_flight,
            oldest_enqueued_at: oldest,
        })
    }
}

fn text(value: &Value) -> Result<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone())
            .map_err(|_| Error::Corrupt("a stream id is not UTF-8".into())),
        Value::SimpleString(s) => Ok(s.clone()),
        other => Err(Error::Corrupt(format!("unexpected stream id {other:?}"))),
    }
}

/// The `(id, event field)` pairs of an `XREADGROUP` reply on one stream, RESP2 or RESP3.
fn stream_entries(reply: Value) -> Result<Vec<(String, Value)>> {
    let streams: Vec<Value> = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        other => {
            return Err(Error::Corrupt(format!(
                "unexpected XREADGROUP reply {other:?}"
            )));
        }
    };
    let mut out = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else {
            continue;
        };
        for entry in entries {
            let Value::Array(parts) = entry else { continue };
            let [id, fields] = <[Value; 2]>::try_from(parts)
                .map_err(|_| Error::Corrupt("a stream entry is not [id, fields]".into()))?;
            let id = text(&id)?;
            let body = match fields {
                Value::Array(fields) => fields
                    .chunks(2)
                    .find(|kv| matches!(&kv[0], Value::BulkString(k) if k == FIELD.as_bytes()))
                    .and_then(|kv| kv.get(1).cloned())
                    .unwrap_or(Value::Nil),
                _ => Value::Nil,
            };
            out.push((id, body));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_xreadgroup_replies_in_resp2_and_resp3() {
        let entries = Value::Array(vec![
            Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("e"), bulk("{}")])]),
            Value::Array(vec![bulk("2-0"), Value::Array(vec![bulk("x"), bulk("y")])]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("q:events"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk("q:events"), entries)]);
        for reply in [resp2, resp3] {
            let got = stream_entries(reply).unwrap();
            assert_eq!(
                got,
                vec![("1-0".into(), bulk("{}")), ("2-0".into(), Value::Nil)]
            );
        }
        assert!(stream_entries(Value::Nil).unwrap().is_empty());
    }
}
