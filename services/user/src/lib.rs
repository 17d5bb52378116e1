//! The booking system's user-service.
