//! booking-service integration tests, and the booking system end to end (one binary).

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too; they are tests.

mod bookings_api;
mod broker;
mod isolation;
mod outage;
mod saga;
mod saga_steps;
mod startup;
mod support;
