//! Why a reconcile of a `Service` did not finish. The variant name is the condition reason and
//! the metric label.

use thiserror::Error;

/// Why a reconcile of a `Service` did not finish.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The spec cannot be acted on until it changes (or, for a dependency cycle or a referenced
    /// Database of another owner, until the other object does); the message names the field.
    #[error("{0}")]
    InvalidSpec(String),
    /// The `Database` named by `spec.database.ref` does not exist (yet).
    #[error("{0}")]
    DatabaseNotFound(String),
    /// A `Service` named in `spec.dependsOn` does not exist (yet): its port is unknown.
    #[error("{0}")]
    DependencyNotFound(String),
    /// An object the operator would create exists already and belongs to something else;
    /// resolves when it goes away, so it is retried.
    #[error("{0}")]
    NameConflict(String),
    /// The Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be built or read.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
}

impl ServiceError {
    /// A bounded label for metrics and condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => "InvalidSpec",
            Self::DatabaseNotFound(_) => "DatabaseNotFound",
            Self::DependencyNotFound(_) => "DependencyNotFound",
            Self::NameConflict(_) => "NameConflict",
            Self::Kube(_) => "KubeError",
            Self::Serialization(_) => "SerializationError",
        }
    }

    /// Whether only a change (of the spec, or of what it names) can fix this: retrying on a
    /// timer is pointless, the watches wake the Service when that happens.
    pub fn needs_spec_change(&self) -> bool {
        matches!(self, Self::InvalidSpec(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_invalid_specs_wait_for_a_change_and_reasons_are_variant_names() {
        assert!(ServiceError::InvalidSpec("spec.port".into()).needs_spec_change());
        let missing = ServiceError::DependencyNotFound("user-service".into());
        assert!(!missing.needs_spec_change());
        assert_eq!(missing.reason(), "DependencyNotFound");
        assert_eq!(
            ServiceError::NameConflict("x".into()).reason(),
            "NameConflict"
        );
    }
}
