//! One delivery, from claim to its next state: run the function, then succeed, retry after a
//! wait, back off, or dead-letter. Every path either hands the event back to the queue
//! (`retry_later`) or acks it, and acks only after what must survive the event (the dead
//! letter, a destination's event, the final record) is stored.

use std::sync::atomic::Ordering;
use std::time::Duration;

use nimbus_core::function::function_arn;
use nimbus_core::{
    Attempt, DeadLetter, DeadLetterReason, Error, EventInvokeConfig, FunctionConfig, FunctionName,
    InvocationStatus, InvokeOutcome, InvokeRequest, RequestId,
};
use nimbus_queue::{Delivery, QueuedEvent};
use time::OffsetDateTime;
use tracing::Instrument as _;

use crate::destination::{Condition, invocation_record};
use crate::worker::Shared;

/// Why handling a delivery stopped short; the delivery stays claimed and is redelivered.
#[derive(Debug, thiserror::Error)]
enum Unfinished {
    #[error("queue: {0}")]
    Queue(#[from] nimbus_queue::Error),
    #[error("store: {0}")]
    Store(#[from] nimbus_store::Error),
    #[error("{0}")]
    Service(#[from] Error),
}

type Result<T, E = Unfinished> = std::result::Result<T, E>;

impl Shared {
    pub(crate) async fn process(&self, delivery: Delivery) {
        let request_id = delivery.event.request_id;
        if delivery.redelivered {
            self.counters.redelivered.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("nimbus_event_redeliveries_total").increment(1);
            tracing::warn!(%request_id, "event redelivered after an expired claim; it may run twice");
        }
        let span = tracing::info_span!(
            "attempt",
            %request_id,
            function = %delivery.event.function_name,
            attempt = delivery.event.attempts.len() + 1,
            trace_id = tracing::field::Empty,
        );
        // Every attempt is a child of the gateway's enqueue: one trace per invocation.
        if let Some(parent) = &delivery.event.trace_context {
            nimbus_telemetry::trace::set_parent(&span, parent);
        }
        nimbus_telemetry::trace::record_trace_id(&span);
        if let Err(error) = self.try_process(&delivery).instrument(span).await {
            tracing::warn!(
                %request_id, %error,
                "event left claimed; it is redelivered after the visibility timeout"
            );
        }
    }

    async fn try_process(&self, delivery: &Delivery) -> Result<()> {
        if delivery.redelivered && self.already_finished(delivery).await? {
            return Ok(());
        }
        let mut event = delivery.event.clone();
        // A version is immutable, so an event sent to one runs it whatever $LATEST became; an
        // alias is resolved now, by its current weights.
        let resolved = nimbus_store::resolve(
            self.store.as_ref(),
            &event.function_name,
            &event.qualifier,
            fastrand::f64(),
        )
        .await?;
        let Some(function) = resolved else {
            let config = EventInvokeConfig::empty();
            return self
                .dead_letter(
                    delivery,
                    event,
                    DeadLetterReason::FunctionNotFound,
                    &config,
                    None,
                )
                .await;
        };
        event.resolved_version = Some(function.version.clone());
        let config = self
            .store
            .get_event_invoke_config(&event.function_name, &event.qualifier)
            .await?
            .unwrap_or_else(EventInvokeConfig::empty);
        let deadline = deadline(&event, &config);
        let allowed_attempts = 1 + config.retry_attempts() as usize;
        // An event whose dead letter could not be stored comes back with its attempts spent.
        if event.attempts.len() >= allowed_attempts {
            let reason = DeadLetterReason::RetriesExhausted;
            return self
                .dead_letter(delivery, event, reason, &config, None)
                .await;
        }
        if function.reserved_concurrency == Some(0) {
            let reason = DeadLetterReason::Throttled;
            return self
                .dead_letter(delivery, event, reason, &config, None)
                .await;
        }
        if OffsetDateTime::now_utc() >= deadline {
            let reason = DeadLetterReason::EventAgeExceeded;
            return self
                .dead_letter(delivery, event, reason, &config, None)
                .await;
        }

        let started_at = OffsetDateTime::now_utc();
        if event.attempts.is_empty() && event.system_retries == 0 {
            let waited = (started_at - event.enqueued_at).as_seconds_f64().max(0.0);
            metrics::histogram!("nimbus_event_queue_wait_seconds").record(waited);
        }
        let mut running = event.record(InvocationStatus::Running);
        running.attempts += 1;
        running.started_at.get_or_insert(started_at);
        self.records.record(running).await;

        let result = self.invoke(delivery, &event, function).await;
        let finished_at = OffsetDateTime::now_utc();
        // The worker whose claim expired may still have been running this event, and may
        // have ended it meanwhile: its end stands, rather than a second, different one.
        if delivery.redelivered && self.already_finished(delivery).await? {
            return Ok(());
        }
        let attempt_outcome = match &result {
            Ok(outcome) if outcome.function_error.is_none() => "succeeded",
            Ok(_) => "function_error",
            Err(Error::TooManyRequests(_)) => "throttled",
            Err(_) => "error",
        };
        metrics::counter!(
            "nimbus_event_attempts_total",
            "function" => event.function_name.as_str().to_owned(),
            "outcome" => attempt_outcome,
        )
        .increment(1);
        match result {
            Ok(outcome) if outcome.function_error.is_none() => {
                event.attempts.push(Attempt {
                    started_at,
                    finished_at,
                    error_type: None,
                    error_message: None,
                });
                self.succeed(delivery, event, &config, &outcome).await
            }
            Ok(outcome) => {
                let (error_type, error_message) = function_error(&outcome);
                tracing::info!(request_id = %event.request_id, %error_type, attempt = event.attempts.len() + 1, "attempt failed");
                event.attempts.push(Attempt {
                    started_at,
                    finished_at,
                    error_type: Some(error_type),
                    error_message: Some(error_message),
                });
                event.system_retries = 0;
                let made = u32::try_from(event.attempts.len()).unwrap_or(u32::MAX);
                if event.attempts.len() >= allowed_attempts {
                    let reason = DeadLetterReason::RetriesExhausted;
                    return self
                        .dead_letter(delivery, event, reason, &config, Some(&outcome))
                        .await;
                }
                let delay = self
                    .config
                    .retry
                    .function_error_delay(made, fastrand::f64());
                let failure = Failure::Function(&outcome);
                self.retry_after(delivery, event, delay, deadline, &config, failure)
                    .await
            }
            Err(error) => {
                tracing::info!(request_id = %event.request_id, %error, "event not run; backing off");
                event.system_retries = event.system_retries.saturating_add(1);
                let delay = self.config.retry.system_error_delay(event.system_retries);
                let failure = Failure::System(&error);
                self.retry_after(delivery, event, delay, deadline, &config, failure)
                    .await
            }
        }
    }

    /// Whether a redelivered event had already ended: a worker stored its final record, or
    /// its dead letter, and then died before it acked. Such an event is acked (with its
    /// record made final, if only the letter was stored) instead of being run again.
    async fn already_finished(&self, delivery: &Delivery) -> Result<bool> {
        let request_id = delivery.event.request_id;
        let record = self.records.get(&request_id).await?;
        if record.is_some_and(|record| record.status.is_terminal()) {
            tracing::info!(%request_id, "redelivered event had already ended; acking it");
            self.queue.ack(delivery).await?;
            return Ok(true);
        }
        let letter = match self.dead_letters.get(request_id).await {
            Ok(letter) => letter,
            Err(Error::ResourceNotFound(_)) => return Ok(false),
            Err(error) => return Err(error.into()),
        };
        tracing::info!(%request_id, "redelivered event had been dead-lettered; acking it");
        let mut event = delivery.event.clone();
        event.attempts = letter.attempts;
        let mut record = event.record(InvocationStatus::DeadLettered);
        if event.attempts.is_empty() {
            record.error_type = Some(letter.reason.as_str().to_owned());
        }
        self.records.record_durably(record).await;
        self.queue.ack(delivery).await?;
        Ok(true)
    }

    /// Runs the attempt, extending the delivery's claim while the function runs.
    async fn invoke(
        &self,
        delivery: &Delivery,
        event: &QueuedEvent,
        function: FunctionConfig,
    ) -> Result<InvokeOutcome, Error> {
        let request = InvokeRequest {
            request_id: event.request_id,
            function,
            payload: event.payload.clone(),
            client_context: None,
            want_log_tail: false,
            trace_id: nimbus_telemetry::trace::current_traceparent()
                .or_else(|| event.trace_context.clone())
                .as_deref()
                .and_then(nimbus_core::trace::xray_from_traceparent),
        };
        let invocation = self.invoker.invoke(request);
        tokio::pin!(invocation);
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                result = &mut invocation => return result,
                _ = heartbeat.tick() => {
                    match self.queue.touch(&self.config.consumer, delivery).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(
                            request_id = %event.request_id,
                            "claim lost while the function runs; another worker may run it too"
                        ),
                        Err(error) => tracing::warn!(
                            request_id = %event.request_id, %error, "cannot extend the claim"
                        ),
                    }
                }
            }
        }
    }

    async fn succeed(
        &self,
        delivery: &Delivery,
        event: QueuedEvent,
        config: &EventInvokeConfig,
        outcome: &InvokeOutcome,
    ) -> Result<()> {
        self.report(&event, config, Condition::Success, Some(outcome))
            .await?;
        let mut record = event.record(InvocationStatus::Succeeded);
        record
            .function_version
            .clone_from(&outcome.executed_version);
        record.duration_ms = Some(outcome.duration.as_secs_f64() * 1000.0);
        // The final record is stored before the event leaves the queue: a crash in between
        // redelivers an event whose record says it is over (see `already_finished`), never
        // an acked event whose record is lost with this process.
        self.records.record_durably(record).await;
        self.queue.ack(delivery).await?;
        self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
        finished(&event, "succeeded");
        Ok(())
    }

    /// Hands the event back to the queue for `delay` after `failure`, or dead-letters it if
    /// that would take it past its maximum age.
    async fn retry_after(
        &self,
        delivery: &Delivery,
        event: QueuedEvent,
        delay: Duration,
        deadline: OffsetDateTime,
        config: &EventInvokeConfig,
        failure: Failure<'_>,
    ) -> Result<()> {
        // A delay too long to add (an absurd configured base) is past any deadline.
        let at = time::Duration::try_from(delay)
            .ok()
            .and_then(|delay| OffsetDateTime::now_utc().checked_add(delay));
        let Some(at) = at.filter(|at| *at < deadline) else {
            let reason = DeadLetterReason::EventAgeExceeded;
            return self
                .dead_letter(delivery, event, reason, config, failure.outcome())
                .await;
        };
        self.queue.retry_later(delivery, &event, at).await?;
        let mut record = event.record(InvocationStatus::Retrying);
        match failure {
            Failure::Function(_) => {
                self.counters.retried.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("nimbus_event_retries_total", "kind" => "function_error")
                    .increment(1);
            }
            Failure::System(error) => {
                self.counters.backed_off.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("nimbus_event_retries_total", "kind" => "system").increment(1);
                // The record's last error is this one: no attempt ran.
                record.error_type = Some(error.lambda_type().to_owned());
                record.error_message = Some(error.public_message());
            }
        }
        self.records.record(record).await;
        Ok(())
    }

    /// Stores the dead letter, reports the failure, then acks. If the DLQ service can not
    /// take the letter, the event goes back to the queue with its attempts, to be
    /// dead-lettered when it comes back.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        mut event: QueuedEvent,
        reason: DeadLetterReason,
        config: &EventInvokeConfig,
        outcome: Option<&InvokeOutcome>,
    ) -> Result<()> {
        let letter = DeadLetter {
            request_id: event.request_id,
            function_name: event.function_name.clone(),
            qualifier: event.qualifier.clone(),
            payload: event.payload.clone(),
            attempts: event.attempts.clone(),
            reason,
            enqueued_at: event.enqueued_at,
            dead_lettered_at: OffsetDateTime::now_utc(),
            redrive: None,
        };
        let span = tracing::info_span!("dead_letter", reason = reason.as_str());
        if let Err(error) = self.dead_letters.put(letter).instrument(span).await {
            event.system_retries = event.system_retries.saturating_add(1);
            let at = OffsetDateTime::now_utc()
                + self.config.retry.system_error_delay(event.system_retries);
            self.queue.retry_later(delivery, &event, at).await?;
            return Err(error.into());
        }
        let condition = match reason {
            DeadLetterReason::RetriesExhausted => Some(Condition::RetriesExhausted),
            DeadLetterReason::EventAgeExceeded => Some(Condition::EventAgeExceeded),
            DeadLetterReason::FunctionNotFound | DeadLetterReason::Throttled => None,
        };
        if let Some(condition) = condition {
            self.report(&event, config, condition, outcome).await?;
        }
        let mut record = event.record(InvocationStatus::DeadLettered);
        if event.attempts.is_empty() {
            record.error_type = Some(reason.as_str().to_owned());
        }
        self.records.record_durably(record).await;
        self.queue.ack(delivery).await?;
        self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(
            "nimbus_dead_letters_total",
            "function" => event.function_name.as_str().to_owned(),
            "reason" => reason.as_str(),
        )
        .increment(1);
        finished(&event, "dead_lettered");
        Ok(())
    }

    /// Sends the invocation record to the configured destination (queued before the event
    /// is acked) and to the caller's callback URL (in the background, with retries).
    async fn report(
        &self,
        event: &QueuedEvent,
        config: &EventInvokeConfig,
        condition: Condition,
        outcome: Option<&InvokeOutcome>,
    ) -> Result<()> {
        let destination = match condition {
            Condition::Success => config.on_success.as_deref(),
            Condition::RetriesExhausted | Condition::EventAgeExceeded => {
                config.on_failure.as_deref()
            }
        };
        if destination.is_none() && event.callback_url.is_none() {
            return Ok(());
        }
        let arn = function_arn(
            &self.config.region,
            &self.config.account_id,
            &event.function_name,
        );
        let document = invocation_record(event, &arn, condition, outcome);
        if let Some(destination) = destination {
            let (name, qualifier) = FunctionName::parse_reference(destination)?;
            let mut delivered = QueuedEvent::new(
                RequestId::new(),
                name,
                qualifier.unwrap_or_else(|| nimbus_core::function::LATEST.to_owned()),
                document.clone(),
            );
            delivered.trace_context.clone_from(&event.trace_context);
            self.queue.enqueue(&delivered).await?;
            self.records
                .record(delivered.record(InvocationStatus::Queued))
                .await;
        }
        if let Some(url) = event.callback_url.clone() {
            self.spawn_callback(url, event.request_id, document);
        }
        Ok(())
    }

    fn spawn_callback(&self, url: String, request_id: RequestId, document: bytes::Bytes) {
        let sendable = match crate::callback::refusal(&url, self.config.callback_networks) {
            Some(reason) => Err(reason),
            None => (self.callback_http.clone())
                .ok_or_else(|| "the callback client did not start".to_owned()),
        };
        let http = match sendable {
            Ok(http) => http,
            Err(reason) => {
                tracing::warn!(%url, %request_id, %reason, "callback not sent");
                self.counters
                    .callbacks_failed
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let attempts = self.config.callback_attempts.max(1);
        let retry = self.config.retry;
        let counters = self.counters.clone();
        self.callbacks.spawn(async move {
            for attempt in 1..=attempts {
                let sent = http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("x-nimbus-request-id", request_id.to_string())
                    .body(document.clone())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => return,
                    Ok(response) => tracing::info!(%url, status = %response.status(), attempt, "callback refused"),
                    Err(error) => tracing::info!(%url, %error, attempt, "callback failed"),
                }
                if attempt < attempts {
                    tokio::time::sleep(retry.system_error_delay(attempt)).await;
                }
            }
            tracing::warn!(%url, %request_id, "callback gave up");
            counters.callbacks_failed.fetch_add(1, Ordering::Relaxed);
        });
    }
}

/// Why an event goes back to the queue.
#[derive(Clone, Copy)]
enum Failure<'a> {
    /// The function raised, crashed or timed out: an attempt is spent.
    Function(&'a InvokeOutcome),
    /// Throttled, or Nimbus could not run it: no attempt is spent.
    System(&'a Error),
}

impl<'a> Failure<'a> {
    fn outcome(self) -> Option<&'a InvokeOutcome> {
        match self {
            Self::Function(outcome) => Some(outcome),
            Self::System(_) => None,
        }
    }
}

/// Counts an event that reached its end, and times it from acceptance.
fn finished(event: &QueuedEvent, outcome: &'static str) {
    metrics::counter!(
        "nimbus_invocations_total",
        "function" => event.function_name.as_str().to_owned(),
        "type" => "Event",
        "outcome" => outcome,
    )
    .increment(1);
    let took = (OffsetDateTime::now_utc() - event.enqueued_at).as_seconds_f64();
    metrics::histogram!("nimbus_invocation_duration_seconds", "type" => "Event")
        .record(took.max(0.0));
}

fn deadline(event: &QueuedEvent, config: &EventInvokeConfig) -> OffsetDateTime {
    let age = time::Duration::try_from(config.maximum_event_age()).unwrap_or(time::Duration::MAX);
    event.enqueued_at.saturating_add(age)
}

/// The error type (`Unhandled` when the function gave none) and message of a failed attempt.
fn function_error(outcome: &InvokeOutcome) -> (String, String) {
    let (error_type, message) = outcome.error_details();
    (
        error_type.unwrap_or_else(|| "Unhandled".to_owned()),
        message.unwrap_or_default(),
    )
}
