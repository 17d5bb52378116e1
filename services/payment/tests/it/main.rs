//! payment-service integration tests (one binary).

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too; they are tests.

mod payments_api;
mod saga_steps;
mod startup;
mod store_contract;
mod support;
