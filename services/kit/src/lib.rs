//! silo-kit: what every booking-system service shares.
//!
//! Module map:
//! - [`config`]: typed configuration from the environment ([`config::Env`],
//!   [`config::BaseConfig`] with `LISTEN_ADDR`/`DATABASE_URL`/`BROKER_URL`, [`config::Secret`]).
//! - [`error`]: [`error::ApiError`], the `{"error":{"code","message","field"?}}` body.
//! - [`extract`]: `Json`, `Path`, `Query` extractors whose rejections are `ApiError`s.

pub mod config;
pub mod error;
pub mod extract;
