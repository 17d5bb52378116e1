//! Silo operator: reconciles `DatabaseServer` and `Database` resources.
