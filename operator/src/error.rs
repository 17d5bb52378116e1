//! The reconcile error type. Its variant name is the metric label and the condition reason.

use thiserror::Error;

use crate::engine::EngineError;

/// Why a reconcile did not finish.
#[derive(Debug, Error)]
pub enum Error {
    /// The spec cannot be acted on until the user changes it; the message names the field.
    #[error("{0}")]
    InvalidSpec(String),
    /// The credentials Secret's name is taken by a Secret of someone else; resolves when that
    /// Secret goes away, so it is retried.
    #[error("{0}")]
    SecretConflict(String),
    /// The referenced server runs another engine; resolves if the server is recreated, so it
    /// is retried.
    #[error("{0}")]
    EngineMismatch(String),
    /// The referenced `DatabaseServer` does not exist.
    #[error("DatabaseServer {0} does not exist")]
    ServerNotFound(String),
    /// The server exists but cannot be used yet.
    #[error("{0}")]
    ServerNotReady(String),
    /// The admin Secret is missing or lacks a key.
    #[error("{0}")]
    AdminSecret(String),
    /// The engine refused or failed an operation.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The Kubernetes API failed.
    #[error("Kubernetes API: {}", describe_kube_error(.0))]
    Kube(#[from] kube::Error),
    /// An object could not be built or read.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
}

impl Error {
    /// A bounded label for metrics and condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::SecretConflict(_) => "SecretConflict",
            Error::EngineMismatch(_) => "EngineMismatch",
            Error::ServerNotFound(_) => "ServerNotFound",
            Error::ServerNotReady(_) => "ServerNotReady",
            Error::AdminSecret(_) => "AdminSecret",
            Error::Engine(EngineError::AdminConnect(_)) => "ServerUnreachable",
            Error::Engine(EngineError::LoginFailed(_)) => "LoginFailed",
            Error::Engine(EngineError::NameTaken(_)) => "NameTaken",
            Error::Engine(_) => "EngineError",
            Error::Kube(_) => "KubeError",
            Error::Serialization(_) => "SerializationError",
        }
    }
}

/// A Kubernetes API error in one line: the API server's code, reason and message, without the
/// debug dump kube's own text appends.
pub fn describe_kube_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => other.to_string(),
    }
}

impl Error {
    /// Whether only a change of the spec can fix this, so retrying is pointless.
    pub fn needs_spec_change(&self) -> bool {
        matches!(self, Error::InvalidSpec(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_that_resolve_without_a_spec_change_are_retried_under_their_own_reason() {
        let conflict = Error::SecretConflict("Secret users-db is taken".into());
        let mismatch = Error::EngineMismatch("server runs mongodb".into());
        assert_eq!(conflict.reason(), "SecretConflict");
        assert_eq!(mismatch.reason(), "EngineMismatch");
        assert!(!conflict.needs_spec_change());
        assert!(!mismatch.needs_spec_change());
        assert!(Error::InvalidSpec("spec.owner".into()).needs_spec_change());
    }

    #[test]
    fn a_kubernetes_api_error_reads_as_one_line_without_a_debug_dump() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 422, "reason": "Invalid",
            "message": "Secret \"x\" is invalid: metadata.labels: Invalid value",
        }))
        .unwrap();
        let error = Error::Kube(kube::Error::Api(Box::new(status)));
        assert_eq!(
            error.to_string(),
            "Kubernetes API: 422 Invalid: Secret \"x\" is invalid: metadata.labels: Invalid value"
        );
    }
}
