//! silo-kit: what every booking-system service shares.
//!
//! Module map:
//! - [`config`]: typed configuration from the environment ([`config::Env`],
//!   [`config::BaseConfig`] with `LISTEN_ADDR`/`DATABASE_URL`/`BROKER_URL`, [`config::Secret`]).
//! - [`error`]: [`error::ApiError`], the `{"error":{"code","message","field"?}}` body.
//! - [`extract`]: `Json`, `Path`, `Query` extractors whose rejections are `ApiError`s.
//! - [`events`]: [`events::Envelope`], every event payload (implementing [`events::Event`]),
//!   [`events::EventNamespace`] (stream names/subjects, optionally prefixed for tests) and
//!   `ensure_stream`.

pub mod config;
pub mod error;
pub mod events;
pub mod extract;
