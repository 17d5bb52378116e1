//! The booking system's payment-service: one payment per booking, charged through a
//! gateway, with the outcome published through an outbox.

pub mod api;
pub mod charging;
pub mod config;
pub mod consumers;
pub mod gateway;
pub mod payment;
pub mod recovery;
pub mod startup;
pub mod store;

pub use config::PaymentConfig;
pub use startup::Application;
