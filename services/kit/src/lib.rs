//! Shared library of the booking system services.
