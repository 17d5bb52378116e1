//! The booking system's booking-service: bookings kept in its own PostgreSQL database,
//! moved through the payment saga by events.

pub mod api;
pub mod booking;
pub mod config;
pub mod consumers;
pub mod cursor;
pub mod new_booking;
pub mod repository;
pub mod saga_run;
pub mod startup;
pub mod users;

pub use config::BookingConfig;
pub use startup::Application;
