//! silo-kit against the real PostgreSQL and NATS of `tests/env/up`.

mod consumer;
mod outbox;
mod private_nats;
mod support;
