//! silo-kit against the real PostgreSQL and NATS of `tests/env/up`.

// Test support code may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod auth;
mod consumer;
mod mongo;
mod outbox;
mod server;
mod support;
