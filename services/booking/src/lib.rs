//! The booking system's booking-service.
