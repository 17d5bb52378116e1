//! The reconcile error type. Its variant name is the metric label and the condition reason.

use thiserror::Error;

use crate::engine::EngineError;

/// Why a reconcile did not finish.
#[derive(Debug, Error)]
pub enum Error {
    /// The spec cannot be acted on until the user changes it; the message names the field.
    #[error("{0}")]
    InvalidSpec(String),
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
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be built or read.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// A bounded label for metrics and condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::ServerNotFound(_) => "ServerNotFound",
            Error::ServerNotReady(_) => "ServerNotReady",
            Error::AdminSecret(_) => "AdminSecret",
            Error::Engine(EngineError::AdminConnect(_)) => "ServerUnreachable",
            Error::Engine(EngineError::LoginFailed(_)) => "LoginFailed",
            Error::Engine(_) => "EngineError",
            Error::Kube(_) => "KubeError",
            Error::Serialization(_) => "SerializationError",
            Error::Finalizer(_) => "FinalizerError",
        }
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(error: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match error {
            F::ApplyFailed(e) | F::CleanupFailed(e) => e,
            other => Error::Finalizer(other.to_string()),
        }
    }
}
