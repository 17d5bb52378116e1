//! The booking system's payment-service: one payment per booking, charged through a
//! gateway, with the outcome published through an outbox.

pub mod charging;
pub mod gateway;
pub mod payment;
pub mod store;
