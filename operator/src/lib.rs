//! Silo operator: reconciles `DatabaseServer` and `Database` resources.

pub mod access;
pub mod apply;
pub mod build;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod crd_yaml;
pub mod engine;
pub mod error;
pub mod image;
pub mod isolation;
pub mod metrics;
pub mod names;
pub mod password;
pub mod process_metrics;
pub mod reachability;
pub mod scram;
pub mod status;
pub mod uri;
pub mod validate;

pub use controller::{OperatorConfig, run_controllers, run_controllers_with};
pub mod health;
pub mod leader;
