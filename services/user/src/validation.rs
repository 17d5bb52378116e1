//! Request fields parsed into domain values at the edge: once a `Username`
//! exists, it is valid. A refusal is the message the client sees for that field.

/// 3–50 characters of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

/// A syntactically plausible email address (≤ 254 characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

/// 8–128 characters; never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

/// A non-blank name of at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl Username {
    /// Validates `raw`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let length = raw.chars().count();
        if !(3..=50).contains(&length) {
            return Err("username must be 3 to 50 characters long".to_string());
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err("username may contain only letters, digits, '_', '.' and '-'".to_string());
        }
        Ok(Self(raw.to_string()))
    }

    /// The username.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Email {
    /// Validates `raw` (surrounding whitespace is trimmed).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim();
        let invalid = || "email is not a valid address".to_string();
        if email.is_empty()
            || email.len() > 254
            || email.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-'));
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(email.to_string()))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Password {
    /// Validates `raw` (by length only; never echoed).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if !(8..=128).contains(&raw.chars().count()) {
            return Err("password must be 8 to 128 characters long".to_string());
        }
        Ok(Self(raw.to_string()))
    }

    /// The password, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl FullName {
    /// Validates `raw` (surrounding whitespace is trimmed).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err("fullName must be 1 to 200 characters long".to_string());
        }
        if name.chars().any(char::is_control) {
            return Err("fullName must not contain control characters".to_string());
        }
        Ok(Self(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_length_and_charset_rules() {
        assert!(Username::parse("al").is_err());
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("a.l-i_ce9").is_ok());
        assert!(Username::parse(&"a".repeat(50)).is_ok());
        assert!(Username::parse(&"a".repeat(51)).is_err());
        assert!(Username::parse("ali ce").is_err());
        assert!(Username::parse("alice@x").is_err());
        assert_eq!(
            Username::parse("x").unwrap_err(),
            "username must be 3 to 50 characters long"
        );
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        for good in ["a@b.co", "first.last+tag@sub.example.org"] {
            assert!(Email::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "", "plain", "@x.io", "a@", "a@b", "a@.b.c", "a b@c.io", "a@b..c", "a@b.c.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_are_8_to_128_characters() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"p".repeat(128)).is_ok());
        assert!(Password::parse(&"p".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("hunter22").unwrap()),
            "Password(***)"
        );
    }

    #[test]
    fn full_name_must_not_be_blank() {
        assert!(FullName::parse("   ").is_err());
        assert_eq!(
            FullName::parse(" Ada Lovelace ").unwrap().as_str(),
            "Ada Lovelace"
        );
    }
}
