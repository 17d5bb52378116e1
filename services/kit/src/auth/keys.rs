//! Ed25519 signing keys, the JWKS document, and token issuing (user-service).

use super::{Claims, ISSUER};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::{PoisonError, RwLock};
use uuid::Uuid;

/// A key could not be loaded or a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The stored key is not a PKCS#8 Ed25519 key.
    #[error("invalid Ed25519 PKCS#8 key")]
    InvalidKey,
    /// Signing failed.
    #[error("signing failed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// One public key of a JWKS document (RFC 8037 OKP / Ed25519).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwk {
    /// Key type: `OKP`.
    pub kty: String,
    /// Curve: `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// Key id.
    pub kid: String,
    /// Algorithm: `EdDSA`.
    #[serde(default)]
    pub alg: Option<String>,
    /// Use: `sig`.
    #[serde(rename = "use", default)]
    pub use_: Option<String>,
}

/// A JWKS document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// An Ed25519 signing key with its key id (the RFC 7638 thumbprint of its public key).
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Self::from_key(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    fn from_key(key: ed25519_dalek::SigningKey) -> Self {
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        // RFC 7638: hash of the required members in lexicographic order.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Self { kid, key }
    }

    /// Loads a key from PKCS#8 DER (as stored by user-service).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        ed25519_dalek::SigningKey::from_pkcs8_der(der)
            .map(Self::from_key)
            .map_err(|_| KeyError::InvalidKey)
    }

    /// The key as PKCS#8 DER, for storage.
    pub fn to_pkcs8_der(&self) -> Result<Vec<u8>, KeyError> {
        self.key
            .to_pkcs8_der()
            .map(|document| document.as_bytes().to_vec())
            .map_err(|_| KeyError::InvalidKey)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as a JWK.
    pub fn public_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes()),
            kid: self.kid.clone(),
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
        }
    }

    /// Signs `claims` into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let der = self.to_pkcs8_der()?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_ed_der(&der),
        )?)
    }
}

/// The keys of a [`TokenIssuer`]: the one it signs with and the older ones still published.
#[derive(Debug, Clone)]
struct KeySet {
    current: SigningKey,
    previous: Vec<SigningKey>,
}

/// Issues tokens with the current key; publishes current and previous keys. The keys can be
/// replaced while it runs ([`Self::replace_keys`]): a rotation needs no restart.
#[derive(Debug)]
pub struct TokenIssuer {
    keys: RwLock<KeySet>,
    lifetime: Duration,
}

impl TokenIssuer {
    /// Issues with `current`; `previous` keys stay published so their tokens verify until expiry.
    pub fn new(current: SigningKey, previous: Vec<SigningKey>, lifetime: Duration) -> Self {
        Self {
            keys: RwLock::new(KeySet { current, previous }),
            lifetime,
        }
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Signs with `current` from now on and publishes `current` and `previous` only; returns
    /// whether anything changed.
    pub fn replace_keys(&self, current: SigningKey, previous: Vec<SigningKey>) -> bool {
        let kids = |set: &KeySet| -> Vec<String> {
            std::iter::once(&set.current)
                .chain(&set.previous)
                .map(|key| key.kid.clone())
                .collect()
        };
        let next = KeySet { current, previous };
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let changed = kids(&keys) != kids(&next);
        *keys = next;
        changed
    }

    /// The kid tokens are signed with now.
    pub fn current_kid(&self) -> String {
        self.keys().current.kid.clone()
    }

    /// A token for `user_id` with `roles`, and its expiry.
    pub fn issue(
        &self,
        user_id: Uuid,
        roles: &[String],
    ) -> Result<(String, DateTime<Utc>), KeyError> {
        let now = Utc::now();
        let expires_at = now + self.lifetime;
        let claims = Claims {
            sub: user_id,
            roles: roles.to_vec(),
            exp: expires_at.timestamp(),
            iat: now.timestamp(),
            iss: ISSUER.to_string(),
        };
        Ok((self.sign(&claims)?, expires_at))
    }

    /// Signs arbitrary claims with the current key (tests use it for expired tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        self.keys().current.sign(claims)
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Jwks {
        let keys = self.keys();
        Jwks {
            keys: std::iter::once(&keys.current)
                .chain(&keys.previous)
                .map(SigningKey::public_jwk)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_survives_a_pkcs8_round_trip_with_the_same_kid() {
        let key = SigningKey::generate();
        let restored = SigningKey::from_pkcs8_der(&key.to_pkcs8_der().unwrap()).unwrap();
        assert_eq!(restored.kid(), key.kid());
        assert_eq!(restored.public_jwk(), key.public_jwk());
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(SigningKey::from_pkcs8_der(b"nope").is_err());
    }

    #[test]
    fn jwks_publishes_current_and_previous_keys() {
        let current = SigningKey::generate();
        let previous = SigningKey::generate();
        let issuer = TokenIssuer::new(current.clone(), vec![previous.clone()], Duration::hours(1));
        let kids: Vec<_> = issuer.jwks().keys.into_iter().map(|k| k.kid).collect();
        assert_eq!(
            kids,
            vec![current.kid().to_string(), previous.kid().to_string()]
        );
        let json = serde_json::to_value(issuer.jwks()).unwrap();
        assert_eq!(json["keys"][0]["kty"], "OKP");
        assert_eq!(json["keys"][0]["use"], "sig");
    }
}
