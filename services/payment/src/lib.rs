//! The booking system's payment-service.
