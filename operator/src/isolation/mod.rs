//! Isolation of a service's database, measured: who can reach the port it listens on, under
//! the NetworkPolicies, Pods and Namespaces present (see [`crate::reachability`]).

mod assess;
mod location;

#[cfg(test)]
mod tests;

pub use assess::{Assessment, Expected, ForeignReach, assess, reasons, server_pods};
pub use location::{DatabaseLocation, ServerPods, locate};
