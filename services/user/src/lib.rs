//! The booking system's user-service: registration, login with EdDSA JWTs,
//! the JWKS the other services verify tokens with, and user profiles. Owns
//! its PostgreSQL database (`users`, `roles`, `user_roles`, `signing_keys`,
//! `outbox`); emits `UserRegistered` and `UserEmailChanged` through the outbox.
//!
//! Modules: [`config`] (environment), [`startup`] ([`Application::build`]),
//! [`api`] (routes), [`repository`] (SQL), [`validation`] (request fields as
//! domain values), [`password`] (Argon2id), [`keys`] (signing key storage).

pub mod api;
pub mod config;
pub mod keys;
pub mod password;
pub mod repository;
pub mod startup;
pub mod validation;

pub use config::UserConfig;
pub use startup::{Application, StartupError};
