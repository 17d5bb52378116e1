//! Generated passwords. The type's `Debug` never shows the value, so it cannot leak through a
//! `tracing` field or an error message.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

/// A secret password.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// 32 random bytes, URL-safe base64 (43 characters: no quoting trouble in URIs or shells).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Wraps a password read back from a Secret.
    pub fn from_secret_value(value: String) -> Self {
        Self(value)
    }

    /// The plaintext, for the few places that must hand it on (the Secret, a login).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short digest that tells passwords apart without revealing them (keys of per-login
    /// caches, so that a changed password gets a new connection).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.0.as_bytes())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_random_and_url_safe() {
        let a = Password::generate();
        let b = Password::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn digests_tell_passwords_apart_without_showing_them() {
        let a = Password::from_secret_value("hunter2".into());
        let b = Password::from_secret_value("hunter3".into());
        assert_eq!(a.digest(), a.clone().digest());
        assert_ne!(a.digest(), b.digest());
        assert!(!a.digest().contains("hunter2"));
    }

    #[test]
    fn debug_output_hides_the_value() {
        let p = Password::from_secret_value("hunter2".into());
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
