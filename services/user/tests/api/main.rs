//! user-service API tests: the real application on a random port, against a
//! fresh PostgreSQL database and the shared NATS (private stream namespace).

// Test support code may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod helpers;
mod key_rotation;
mod login;
mod register;
mod startup;
mod users;
