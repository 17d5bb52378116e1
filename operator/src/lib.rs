//! Silo operator: reconciles `DatabaseServer` and `Database` resources.

pub mod cli;
pub mod crd;
pub mod crd_yaml;
pub mod engine;
pub mod names;
pub mod password;
pub mod scram;
pub mod uri;
