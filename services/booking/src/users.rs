//! What booking-service asks user-service: whether a user exists, and their profile.

use serde::Deserialize;
use std::time::Duration;
use uuid::Uuid;

/// How long one call to user-service may take before it counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// user-service did not answer usefully.
#[derive(Debug, thiserror::Error)]
pub enum UserServiceError {
    /// No answer (connection refused, timeout).
    #[error("user-service is unreachable: {0}")]
    Unreachable(String),
    /// An answer that was neither success nor "not found".
    #[error("user-service answered {0}")]
    UnexpectedStatus(u16),
}

/// The profile fields booking-service shows or copies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    /// The user's id.
    pub id: Uuid,
    /// Their email.
    pub email: String,
    /// Their full name.
    pub full_name: String,
}

/// An HTTP client of user-service; calls carry the caller's own bearer token.
#[derive(Debug, Clone)]
pub struct UserServiceClient {
    http: reqwest::Client,
    base_url: String,
}

impl UserServiceClient {
    /// A client of the user-service at `base_url` (`USER_SERVICE_URL`).
    pub fn new(base_url: &str) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?,
            base_url: base_url.trim_end_matches('/').to_string(),
        })
    }

    /// `GET /api/users/{id}/exists`: `true` on 200, `false` on 404.
    pub async fn exists(&self, user_id: Uuid, bearer: &str) -> Result<bool, UserServiceError> {
        let url = format!("{}/api/users/{user_id}/exists", self.base_url);
        let response = self.send(&url, bearer).await?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            other => Err(UserServiceError::UnexpectedStatus(other)),
        }
    }

    /// `GET /api/users/{id}`: the profile, `None` on 404.
    pub async fn profile(
        &self,
        user_id: Uuid,
        bearer: &str,
    ) -> Result<Option<UserProfile>, UserServiceError> {
        let url = format!("{}/api/users/{user_id}", self.base_url);
        let response = self.send(&url, bearer).await?;
        match response.status().as_u16() {
            200 => response
                .json::<UserProfile>()
                .await
                .map(Some)
                .map_err(|e| UserServiceError::Unreachable(format!("unreadable profile: {e}"))),
            404 => Ok(None),
            other => Err(UserServiceError::UnexpectedStatus(other)),
        }
    }

    async fn send(&self, url: &str, bearer: &str) -> Result<reqwest::Response, UserServiceError> {
        self.http
            .get(url)
            .bearer_auth(bearer)
            .send()
            .await
            .map_err(|e| UserServiceError::Unreachable(without_url(&e)))
    }
}

/// The error's kind without the URL (which the client already knows).
fn without_url(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    }
}
