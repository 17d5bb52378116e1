//! Token verification against a JWKS served over HTTP.

use axum::Router;
use axum::routing::get;
use silo_kit::auth::verifier::MAX_JWKS_BYTES;
use silo_kit::auth::{AuthError, Jwks, RefreshPolicy, SigningKey, TokenIssuer, TokenVerifier};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Serves whatever JWKS is in `keys` at the well-known path; returns the base URL.
async fn serve_jwks(keys: Arc<Mutex<Jwks>>) -> String {
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let keys = keys.clone();
            async move { axum::Json(keys.lock().unwrap().clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

fn issuer() -> TokenIssuer {
    TokenIssuer::new(SigningKey::generate(), vec![], chrono::Duration::hours(1))
}

#[tokio::test]
async fn verifier_refetches_keys_when_a_token_names_an_unknown_kid() {
    let first = issuer();
    let keys = Arc::new(Mutex::new(first.jwks()));
    let url = serve_jwks(keys.clone()).await;
    let verifier = TokenVerifier::remote_with_refresh_interval(&url, Duration::ZERO);
    let (token, _) = first.issue(Uuid::new_v4(), &[]).unwrap();
    verifier.verify(&token).await.unwrap();

    // user-service rotates its key: the new kid is unknown to the cache.
    let second = issuer();
    *keys.lock().unwrap() = second.jwks();
    let user = Uuid::new_v4();
    let (token, _) = second.issue(user, &["user".into()]).unwrap();
    assert_eq!(verifier.verify(&token).await.unwrap().sub, user);
}

#[tokio::test]
async fn unknown_kid_does_not_refetch_within_the_refresh_interval() {
    let published = issuer();
    let keys = Arc::new(Mutex::new(published.jwks()));
    let url = serve_jwks(keys.clone()).await;
    let verifier = TokenVerifier::remote_with_refresh_interval(&url, Duration::from_secs(3600));
    let (token, _) = published.issue(Uuid::new_v4(), &[]).unwrap();
    verifier.verify(&token).await.unwrap();
    let other = issuer();
    *keys.lock().unwrap() = other.jwks();
    let (token, _) = other.issue(Uuid::new_v4(), &[]).unwrap();
    assert_eq!(verifier.verify(&token).await, Err(AuthError::UnknownKey));
}

#[tokio::test]
async fn failed_key_fetches_are_rate_limited_too() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let verifier = TokenVerifier::remote_with_refresh_interval(
        &format!("http://{address}"),
        Duration::from_secs(3600),
    );
    let (token, _) = issuer().issue(Uuid::new_v4(), &[]).unwrap();
    for _ in 0..3 {
        assert_eq!(
            verifier.verify(&token).await,
            Err(AuthError::KeysUnavailable)
        );
    }
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_key_user_service_no_longer_publishes_stops_verifying_after_the_ttl() {
    let retired = issuer();
    let keys = Arc::new(Mutex::new(retired.jwks()));
    let url = serve_jwks(keys.clone()).await;
    let policy = RefreshPolicy {
        ttl: Duration::from_millis(100),
        min_interval: Duration::ZERO,
    };
    let verifier = TokenVerifier::remote_with_policy(&url, policy);
    let (token, _) = retired.issue(Uuid::new_v4(), &[]).unwrap();
    verifier.verify(&token).await.unwrap();
    // Retired: the JWKS holds only another key now. Within the TTL the cached key still
    // verifies; after it, the keys are fetched again and the token names an unknown key.
    *keys.lock().unwrap() = issuer().jwks();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(verifier.verify(&token).await, Err(AuthError::UnknownKey));
}

#[tokio::test]
async fn a_jwks_over_the_size_limit_is_not_read() {
    let padding = "x".repeat(MAX_JWKS_BYTES);
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let padding = padding.clone();
            async move { axum::Json(serde_json::json!({ "keys": [], "padding": padding })) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let verifier =
        TokenVerifier::remote_with_refresh_interval(&format!("http://{address}"), Duration::ZERO);
    let (token, _) = issuer().issue(Uuid::new_v4(), &[]).unwrap();
    assert_eq!(
        verifier.verify(&token).await,
        Err(AuthError::KeysUnavailable)
    );
}
