//! Durable JetStream consumers with inbox de-duplication and dead-lettering.
//!
//! One durable pull consumer per (service, stream): every service sees every
//! event of the streams it reads, replicas of one service share the consumer.
//! For each message the [`MessageHandler`] runs the effect together with the
//! inbox record (see [`crate::inbox`]); then:
//! - applied, duplicate or ignored → ack;
//! - the service's database unreachable ([`HandlerError::Unavailable`]) → NAK
//!   with a growing delay, never dead-lettered (an outage is not the event's fault);
//! - transient failure → NAK with an exponential delay;
//! - permanent failure, undecodable payload, or a transient failure on the
//!   last allowed delivery → recorded by the [`DeadLetterSink`], republished
//!   to `<subject>.dlq`, and terminated.

use crate::correlation::CORRELATION_ID_HEADER;
use crate::events::{Envelope, EventNamespace, StreamKind, dead_letter_subject};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer};
use futures::StreamExt;
use std::future::Future;
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

/// Header on dead letters carrying the final error.
pub const DEAD_LETTER_ERROR_HEADER: &str = "Silo-Dead-Letter-Error";
/// Header on dead letters naming the consumer that gave up.
pub const DEAD_LETTER_CONSUMER_HEADER: &str = "Silo-Dead-Letter-Consumer";

/// What a handler did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// The effect was applied and the inbox record written.
    Applied,
    /// The inbox already held this event: nothing done.
    Duplicate,
    /// The handler does not care about this event type.
    Ignored,
}

/// A handler failure.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The service's own database (or another dependency every event needs) is
    /// unreachable: not the event's fault, so retried with the longest delay
    /// and never dead-lettered.
    #[error("unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// May succeed later (conflict, deadlock, flaky dependency): retried with
    /// a growing delay, dead-lettered after the maximum number of deliveries.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Will never succeed (invalid payload): dead-lettered at once.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
}

impl HandlerError {
    /// An unavailable dependency.
    pub fn unavailable(error: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable(error.into())
    }

    /// A transient failure.
    pub fn transient(error: impl Into<anyhow::Error>) -> Self {
        Self::Transient(error.into())
    }

    /// A permanent failure.
    pub fn permanent(error: impl Into<anyhow::Error>) -> Self {
        Self::Permanent(error.into())
    }
}

/// Whether a PostgreSQL SQLSTATE says the server, not the statement, is the
/// problem: connection exceptions (`08`), insufficient resources (`53`:
/// too many connections, disk full, out of memory) and shutdowns (`57P01`
/// admin shutdown, `57P02` crash shutdown, `57P03` cannot connect now…).
pub fn sqlstate_means_unavailable(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P0")
}

impl From<sqlx::Error> for HandlerError {
    /// Connection-level failures, and server errors whose SQLSTATE says the
    /// server is restarting or out of resources, mean the database is
    /// unavailable; other errors the server returned for a statement are transient.
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(error.into()),
            sqlx::Error::Database(database)
                if database
                    .code()
                    .is_some_and(|code| sqlstate_means_unavailable(&code)) =>
            {
                Self::Unavailable(error.into())
            }
            _ => Self::Transient(error.into()),
        }
    }
}

impl From<crate::events::EventError> for HandlerError {
    fn from(error: crate::events::EventError) -> Self {
        Self::Permanent(error.into())
    }
}

/// Applies events; implementations write the effect and the inbox record in
/// one transaction (see [`crate::inbox::postgres::PgInbox`]).
pub trait MessageHandler: Send + Sync + 'static {
    /// Whether [`Self::handle_batch`] is cheaper than handling the events of a
    /// run one at a time (one transaction, multi-row statements). Only then
    /// does the consumer hand it runs of messages that arrived together.
    const BATCHES: bool = false;

    /// Handles one event.
    fn handle(
        &self,
        envelope: &Envelope,
    ) -> impl Future<Output = Result<Processed, HandlerError>> + Send;

    /// Handles a run of events delivered together; returns one outcome per
    /// envelope, in order. An error means nothing of the run may be taken as
    /// done: the consumer then handles each event on its own with
    /// [`Self::handle`], so an implementation must be atomic (or leave only
    /// effects the inbox makes idempotent). The default handles them one by one.
    fn handle_batch(
        &self,
        envelopes: &[Envelope],
    ) -> impl Future<Output = Result<Vec<Processed>, HandlerError>> + Send {
        async move {
            let mut outcomes = Vec::with_capacity(envelopes.len());
            for envelope in envelopes {
                outcomes.push(self.handle(envelope).await?);
            }
            Ok(outcomes)
        }
    }
}

/// A message the consumer gave up on.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The durable consumer that gave up.
    pub consumer: String,
    /// The event id, when the payload was a decodable envelope.
    pub event_id: Option<Uuid>,
    /// The subject the message arrived on.
    pub subject: String,
    /// The raw payload.
    pub payload: Vec<u8>,
    /// The final error.
    pub error: String,
    /// Deliveries so far.
    pub deliveries: i64,
}

/// Where a message is stored: with the consumer it identifies a dead letter
/// even when the payload has no event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    /// The JetStream stream's name.
    pub stream: String,
    /// The message's sequence in that stream.
    pub sequence: u64,
}

impl DeadLetter {
    /// The `Nats-Msg-Id` of the republished `.dlq` message: distinct from the
    /// producer's id (still in the de-duplication window) and stable across
    /// redeliveries of the same stored message, so a retried dead-lettering
    /// is de-duplicated instead of stored twice.
    pub fn message_id(&self, position: Option<&StreamPosition>) -> String {
        match (position, self.event_id) {
            (Some(position), _) => format!(
                "{}:{}.dlq.{}",
                position.stream, position.sequence, self.consumer
            ),
            (None, Some(event_id)) => format!("{event_id}.dlq.{}", self.consumer),
            (None, None) => format!("{}.dlq.{}", Uuid::new_v4(), self.consumer),
        }
    }
}

/// Where dead letters are recorded (a table or collection of the consuming service).
pub trait DeadLetterSink: Send + Sync + 'static {
    /// Records `letter`; on error the message is NAKed and retried instead.
    fn record(&self, letter: &DeadLetter)
    -> impl Future<Output = Result<(), anyhow::Error>> + Send;

    /// Records `letter` stored at `position`; sinks that can use the position
    /// to stay idempotent override this (the default calls [`Self::record`]).
    fn record_at(
        &self,
        letter: &DeadLetter,
        position: Option<&StreamPosition>,
    ) -> impl Future<Output = Result<(), anyhow::Error>> + Send {
        let _ = position;
        self.record(letter)
    }
}

/// Settings of a [`Consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Durable consumer name: the consuming service (`booking-service`).
    pub durable_name: String,
    /// The stream read.
    pub stream: StreamKind,
    /// Deliveries before a transiently failing message is dead-lettered.
    pub max_deliveries: i64,
    /// First NAK delay; doubles per delivery, capped at `max_nak_delay`.
    pub nak_delay: Duration,
    /// Longest NAK delay.
    pub max_nak_delay: Duration,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Messages handled concurrently (handlers must not depend on order across
    /// events); for a handler that [batches](MessageHandler::BATCHES), runs
    /// handled concurrently.
    pub concurrency: usize,
    /// Most messages handed to [`MessageHandler::handle_batch`] at once. Only
    /// messages already received form a run, so an idle consumer still
    /// handles each message as soon as it arrives.
    pub max_batch: usize,
}

impl ConsumerConfig {
    /// Defaults for `durable_name` reading `stream`.
    pub fn new(durable_name: impl Into<String>, stream: StreamKind) -> Self {
        Self {
            durable_name: durable_name.into(),
            stream,
            max_deliveries: 5,
            nak_delay: Duration::from_millis(200),
            max_nak_delay: Duration::from_secs(30),
            ack_wait: Duration::from_secs(30),
            concurrency: 8,
            max_batch: 64,
        }
    }

    fn nak_delay_after(&self, deliveries: i64) -> Duration {
        let exponent = u32::try_from(deliveries.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
        self.nak_delay
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.max_nak_delay)
    }
}

/// Creating or reading the durable consumer failed.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The stream could not be created or read.
    #[error("stream {stream}: {reason}")]
    Stream {
        /// Stream name.
        stream: String,
        /// Server error.
        reason: String,
    },
    /// The durable consumer could not be created.
    #[error("consumer {consumer} on {stream}: {reason}")]
    Consumer {
        /// Consumer name.
        consumer: String,
        /// Stream name.
        stream: String,
        /// Server error.
        reason: String,
    },
}

/// A durable pull consumer feeding a [`MessageHandler`].
pub struct Consumer<H, D> {
    jetstream: jetstream::Context,
    namespace: EventNamespace,
    config: ConsumerConfig,
    handler: H,
    dead_letters: D,
    metrics: Metrics,
}

impl<H, D> std::fmt::Debug for Consumer<H, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("namespace", &self.namespace)
            .field("config", &self.config)
            .finish()
    }
}

enum Settle {
    Ack(&'static str),
    Nak(Duration),
    DeadLetter(Option<Uuid>, String),
}

impl<H: MessageHandler, D: DeadLetterSink> Consumer<H, D> {
    /// A consumer of `config.stream` under `namespace`.
    pub fn new(
        jetstream: jetstream::Context,
        namespace: EventNamespace,
        config: ConsumerConfig,
        handler: H,
        dead_letters: D,
        metrics: Metrics,
    ) -> Self {
        Self {
            jetstream,
            namespace,
            config,
            handler,
            dead_letters,
            metrics,
        }
    }

    /// Creates the stream (if its producer has not yet) and the durable consumer.
    pub async fn durable(&self) -> Result<consumer::PullConsumer, ConsumerError> {
        let stream_name = self.namespace.stream_name(self.config.stream);
        let stream = self
            .namespace
            .ensure_stream(&self.jetstream, self.config.stream)
            .await
            .map_err(|e| ConsumerError::Stream {
                stream: stream_name.clone(),
                reason: e.to_string(),
            })?;
        stream
            .get_or_create_consumer(
                &self.config.durable_name,
                consumer::pull::Config {
                    durable_name: Some(self.config.durable_name.clone()),
                    filter_subject: self.namespace.events_filter(self.config.stream),
                    ack_policy: consumer::AckPolicy::Explicit,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_wait: self.config.ack_wait,
                    // The consumer terminates messages itself after `max_deliveries`,
                    // so it can record and republish them first.
                    max_deliver: -1,
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ConsumerError::Consumer {
                consumer: self.config.durable_name.clone(),
                stream: stream_name,
                reason: e.to_string(),
            })
    }

    /// Consumes until `shutdown` fires; in-flight messages are finished first.
    pub async fn run(self, shutdown: Shutdown) {
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_triggered() {
            match self.consume(&shutdown).await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(error) => {
                    tracing::warn!(consumer = %self.config.durable_name, error = %error, "consumer interrupted; retrying");
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        tracing::info!(consumer = %self.config.durable_name, "consumer stopped");
    }

    async fn consume(&self, shutdown: &Shutdown) -> Result<(), ConsumerError> {
        let durable = self.durable().await?;
        let messages = durable
            .messages()
            .await
            .map_err(|e| ConsumerError::Consumer {
                consumer: self.config.durable_name.clone(),
                stream: self.namespace.stream_name(self.config.stream),
                reason: e.to_string(),
            })?;
        let messages = messages
            .take_until(shutdown.wait())
            .filter_map(|message| async move {
                message
                    .inspect_err(|error| tracing::warn!(consumer = %self.config.durable_name, error = %error, "pull error"))
                    .ok()
            });
        let concurrency = self.config.concurrency.max(1);
        if H::BATCHES {
            messages
                .ready_chunks(self.config.max_batch.max(1))
                .for_each_concurrent(concurrency, |run| self.process_run(run))
                .await;
        } else {
            messages
                .for_each_concurrent(concurrency, |message| self.process(message))
                .await;
        }
        Ok(())
    }

    /// Handles a run of messages that arrived together with one
    /// [`MessageHandler::handle_batch`] call and acks each with its outcome.
    /// A run the handler refuses, and messages that are not decodable
    /// envelopes or are redeliveries, take the one-by-one path (retry delays,
    /// dead letters).
    async fn process_run(&self, run: Vec<jetstream::Message>) {
        let (mut batch, mut single) = (Vec::with_capacity(run.len()), Vec::new());
        for message in run {
            let first_delivery = message.info().is_ok_and(|info| info.delivered == 1);
            match Envelope::from_slice(&message.payload) {
                Ok(envelope) if first_delivery => batch.push((message, envelope)),
                _ => single.push(message),
            }
        }
        if batch.len() == 1 {
            single.extend(batch.drain(..).map(|(message, _)| message));
        }
        if !batch.is_empty() {
            let envelopes: Vec<Envelope> = batch.iter().map(|(_, e)| e.clone()).collect();
            let started = std::time::Instant::now();
            let span = tracing::info_span!("consume_batch", consumer = %self.config.durable_name, events = envelopes.len());
            match self.handler.handle_batch(&envelopes).instrument(span).await {
                Ok(outcomes) if outcomes.len() == batch.len() => {
                    tracing::debug!(consumer = %self.config.durable_name, events = outcomes.len(), handle_us = started.elapsed().as_micros() as u64, "run handled");
                    let acks = batch.iter().zip(outcomes).map(|((message, _), processed)| {
                        self.metrics.count_consumed(&self.config.durable_name, outcome_label(processed));
                        async move {
                            if let Err(error) = message.ack().await {
                                tracing::warn!(consumer = %self.config.durable_name, error = %error, "acknowledgement failed");
                            }
                        }
                    });
                    futures::future::join_all(acks).await;
                }
                Ok(outcomes) => {
                    tracing::error!(consumer = %self.config.durable_name, events = batch.len(), outcomes = outcomes.len(), "handler returned the wrong number of outcomes; handling the run one by one");
                    single.extend(batch.into_iter().map(|(message, _)| message));
                }
                Err(error) => {
                    tracing::info!(consumer = %self.config.durable_name, events = batch.len(), error = %error, "run failed as a whole; handling its events one by one");
                    single.extend(batch.into_iter().map(|(message, _)| message));
                }
            }
        }
        futures::stream::iter(single)
            .for_each_concurrent(self.config.concurrency.max(1), |message| {
                self.process(message)
            })
            .await;
    }

    async fn process(&self, message: jetstream::Message) {
        let (deliveries, position) = match message.info() {
            Ok(info) => (
                info.delivered,
                Some(StreamPosition {
                    stream: info.stream.to_string(),
                    sequence: info.stream_sequence,
                }),
            ),
            Err(_) => (1, None),
        };
        let correlation_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(CORRELATION_ID_HEADER))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        let span = tracing::info_span!("consume", consumer = %self.config.durable_name, subject = %message.subject, correlation_id = %correlation_id, deliveries);
        let started = std::time::Instant::now();
        let settle = self
            .decide(&message.payload, deliveries)
            .instrument(span)
            .await;
        tracing::debug!(consumer = %self.config.durable_name, handle_us = started.elapsed().as_micros() as u64, "event handled");
        let ack = match settle {
            Settle::Ack(outcome) => {
                self.metrics
                    .count_consumed(&self.config.durable_name, outcome);
                AckKind::Ack
            }
            Settle::Nak(delay) => {
                self.metrics
                    .count_consumed(&self.config.durable_name, "retried");
                AckKind::Nak(Some(delay))
            }
            Settle::DeadLetter(event_id, error) => {
                let letter = DeadLetter {
                    consumer: self.config.durable_name.clone(),
                    event_id,
                    subject: message.subject.to_string(),
                    payload: message.payload.to_vec(),
                    error,
                    deliveries,
                };
                match self
                    .dead_letter(&letter, position.as_ref(), message.headers.as_ref())
                    .await
                {
                    Ok(()) => {
                        self.metrics
                            .count_consumed(&self.config.durable_name, "dead_lettered");
                        tracing::error!(consumer = %letter.consumer, subject = %letter.subject, deliveries, error = %letter.error, "message dead-lettered");
                        AckKind::Term
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "cannot record dead letter; retrying the message later");
                        AckKind::Nak(Some(self.config.max_nak_delay))
                    }
                }
            }
        };
        if let Err(error) = message.ack_with(ack).await {
            // The server redelivers after ack_wait; the inbox makes that harmless.
            tracing::warn!(consumer = %self.config.durable_name, error = %error, "acknowledgement failed");
        }
    }

    async fn decide(&self, payload: &[u8], deliveries: i64) -> Settle {
        let envelope = match Envelope::from_slice(payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                return Settle::DeadLetter(None, format!("undecodable envelope: {error}"));
            }
        };
        match self.handler.handle(&envelope).await {
            Ok(processed) => Settle::Ack(outcome_label(processed)),
            Err(HandlerError::Unavailable(error)) => {
                tracing::warn!(event_id = %envelope.event_id, deliveries, error = format!("{error:#}"), "dependency unavailable; will retry");
                Settle::Nak(
                    self.config
                        .max_nak_delay
                        .min(self.config.nak_delay_after(deliveries)),
                )
            }
            Err(HandlerError::Transient(error)) if deliveries < self.config.max_deliveries => {
                tracing::warn!(event_id = %envelope.event_id, deliveries, error = format!("{error:#}"), "handler failed; will retry");
                Settle::Nak(self.config.nak_delay_after(deliveries))
            }
            Err(error) => Settle::DeadLetter(Some(envelope.event_id), error.to_string()),
        }
    }

    async fn dead_letter(
        &self,
        letter: &DeadLetter,
        position: Option<&StreamPosition>,
        original_headers: Option<&HeaderMap>,
    ) -> Result<(), anyhow::Error> {
        self.dead_letters.record_at(letter, position).await?;
        let mut headers = original_headers.cloned().unwrap_or_default();
        headers.insert(DEAD_LETTER_ERROR_HEADER, truncate(&letter.error, 512));
        headers.insert(DEAD_LETTER_CONSUMER_HEADER, letter.consumer.as_str());
        // Always replace the producer's id: it is still in the de-duplication
        // window and would make JetStream drop the `.dlq` copy.
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            letter.message_id(position).as_str(),
        );
        let ack = self
            .jetstream
            .publish_with_headers(
                dead_letter_subject(&letter.subject),
                headers,
                letter.payload.clone().into(),
            )
            .await?
            .await?;
        if ack.duplicate {
            // An earlier attempt stored it (then failed to terminate the message).
            tracing::info!(consumer = %letter.consumer, sequence = ack.sequence, "dead letter was already republished");
        }
        Ok(())
    }
}

/// The `outcome` metric label of a handled event.
fn outcome_label(processed: Processed) -> &'static str {
    match processed {
        Processed::Applied => "processed",
        Processed::Duplicate => "duplicate",
        Processed::Ignored => "ignored",
    }
}

fn truncate(text: &str, max: usize) -> String {
    let single_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match single_line.char_indices().nth(max) {
        Some((index, _)) => single_line[..index].to_string(),
        None => single_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nak_delay_doubles_per_delivery_up_to_the_cap() {
        let config = ConsumerConfig::new("c", StreamKind::Users);
        assert_eq!(config.nak_delay_after(1), Duration::from_millis(200));
        assert_eq!(config.nak_delay_after(2), Duration::from_millis(400));
        assert_eq!(config.nak_delay_after(3), Duration::from_millis(800));
        assert_eq!(config.nak_delay_after(40), Duration::from_secs(30));
    }

    #[test]
    fn connection_failures_are_unavailable_and_statement_failures_transient() {
        assert!(matches!(
            HandlerError::from(sqlx::Error::PoolTimedOut),
            HandlerError::Unavailable(_)
        ));
        assert!(matches!(
            HandlerError::from(sqlx::Error::RowNotFound),
            HandlerError::Transient(_)
        ));
    }

    fn letter(event_id: Option<Uuid>) -> DeadLetter {
        DeadLetter {
            consumer: "booking-service".into(),
            event_id,
            subject: "silo.users.events.UserRegistered".into(),
            payload: b"x".to_vec(),
            error: "e".into(),
            deliveries: 1,
        }
    }

    #[test]
    fn dead_letter_message_id_names_the_stored_message_and_the_consumer() {
        let event_id = Uuid::new_v4();
        let position = StreamPosition {
            stream: "USERS".into(),
            sequence: 42,
        };
        assert_eq!(
            letter(Some(event_id)).message_id(Some(&position)),
            "USERS:42.dlq.booking-service"
        );
        assert_eq!(
            letter(Some(event_id)).message_id(None),
            format!("{event_id}.dlq.booking-service")
        );
        // Without any identity, each attempt gets its own id rather than the producer's.
        assert_ne!(letter(None).message_id(None), letter(None).message_id(None));
    }

    /// A server error with only a SQLSTATE, as sqlx hands it over.
    #[derive(Debug)]
    struct ServerError(&'static str);

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "server error {}", self.0)
        }
    }

    impl std::error::Error for ServerError {}

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            "server error"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn classify(sqlstate: &'static str) -> HandlerError {
        HandlerError::from(sqlx::Error::Database(Box::new(ServerError(sqlstate))))
    }

    #[test]
    fn database_restart_and_exhaustion_sqlstates_are_unavailable() {
        // admin_shutdown, crash_shutdown, cannot_connect_now, connection_failure,
        // too_many_connections, disk_full
        for sqlstate in [
            "57P01", "57P02", "57P03", "08006", "08001", "53300", "53100",
        ] {
            assert!(
                matches!(classify(sqlstate), HandlerError::Unavailable(_)),
                "{sqlstate}"
            );
        }
    }

    #[test]
    fn statement_sqlstates_stay_transient() {
        // serialization_failure, deadlock_detected, unique_violation, query_canceled
        for sqlstate in ["40001", "40P01", "23505", "57014"] {
            assert!(
                matches!(classify(sqlstate), HandlerError::Transient(_)),
                "{sqlstate}"
            );
        }
    }

    #[test]
    fn dead_letter_error_header_is_one_bounded_line() {
        assert_eq!(truncate("a\nb", 10), "a b");
        assert_eq!(truncate(&"x".repeat(600), 512).len(), 512);
    }
}
