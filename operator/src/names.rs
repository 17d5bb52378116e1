//! Names of databases and roles on the server, derived from a `Database`'s namespace and name.
//!
//! Kubernetes names may hold `-` and `.`, which most engines reject unquoted and which collapse
//! to the same `_` here; a short hash of the exact original keeps two different resources from
//! ever deriving the same server name. PostgreSQL reserves role names starting with `pg_`, so
//! such a name (namespace `pg`, or one starting `pg-`) gets a `silo_` prefix and the hash.

use sha2::{Digest, Sha256};

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1).
pub const POSTGRES_IDENTIFIER_LIMIT: usize = 63;
/// Longest database name MongoDB accepts (64 bytes including the terminator).
pub const MONGODB_DATABASE_LIMIT: usize = 63;

const HASH_HEX_LEN: usize = 8;
/// Role names PostgreSQL keeps for itself (CREATE ROLE fails with 42939).
const RESERVED_PREFIX: &str = "pg_";
/// Put in front of a name that would start with [`RESERVED_PREFIX`].
const RESERVED_ESCAPE: &str = "silo_";

/// Derives `<namespace>_<name>` lower-cased to `[a-z0-9_]`, at most `limit` bytes; a `_<hash>`
/// suffix is added whenever characters were replaced, the result had to be cut, or it had to be
/// prefixed because it started with the reserved `pg_`.
pub fn derive_server_name(namespace: &str, name: &str, limit: usize) -> String {
    let original = format!("{namespace}_{name}");
    let mut lossy = false;
    let sanitized: String = original
        .chars()
        .map(|c| {
            let lower = c.to_ascii_lowercase();
            if lower.is_ascii_lowercase() || lower.is_ascii_digit() || lower == '_' {
                if lower != c {
                    lossy = true;
                }
                lower
            } else {
                lossy = true;
                '_'
            }
        })
        .collect();
    let reserved = sanitized.starts_with(RESERVED_PREFIX);
    let sanitized = if reserved {
        format!("{RESERVED_ESCAPE}{sanitized}")
    } else {
        sanitized
    };
    if !lossy && !reserved && sanitized.len() <= limit {
        return sanitized;
    }
    // The hash covers namespace and name separately ('/' cannot occur in either), so
    // `a-b/c` and `a/b-c` differ.
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    let hash: String = digest
        .iter()
        .take(HASH_HEX_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    let keep = limit.saturating_sub(HASH_HEX_LEN + 1).min(sanitized.len());
    format!("{}_{hash}", &sanitized[..keep])
}

/// Longest label value Kubernetes accepts.
pub const LABEL_VALUE_LIMIT: usize = 63;

/// An object name (a DNS subdomain, up to 253 characters) as a label value: as it is when it
/// fits in 63 characters, else cut and ended with `-<8 hex digits of SHA-256(name)>`, so that
/// two long names never share a value.
pub fn label_value(name: &str) -> String {
    if name.len() <= LABEL_VALUE_LIMIT {
        return name.to_string();
    }
    let hash: String = Sha256::digest(name.as_bytes())
        .iter()
        .take(HASH_HEX_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    // Object names are ASCII, so any byte index is a character boundary.
    let keep = LABEL_VALUE_LIMIT - HASH_HEX_LEN - 1;
    format!("{}-{hash}", &name[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_become_valid_distinct_label_values() {
        assert_eq!(label_value("users"), "users");
        let exact = "a".repeat(63);
        assert_eq!(label_value(&exact), exact);
        let long_a = format!("orders-archive-{}", "x".repeat(64));
        let long_b = format!("orders-archive-{}y", "x".repeat(63));
        let (a, b) = (label_value(&long_a), label_value(&long_b));
        assert_eq!(a.len(), 63);
        assert!(a.starts_with("orders-archive-xxx"), "{a}");
        assert_ne!(a, b);
        // Ends with a letter or digit, as a label value must.
        assert!(a.ends_with(|c: char| c.is_ascii_alphanumeric()));
        let dotted = format!("{}.{}", "a".repeat(53), "b".repeat(40));
        assert!(label_value(&dotted).starts_with(&format!("{}.-", "a".repeat(53))));
    }

    fn is_safe(name: &str) -> bool {
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    }

    #[test]
    fn plain_names_are_kept_readable() {
        assert_eq!(
            derive_server_name("shop", "users", POSTGRES_IDENTIFIER_LIMIT),
            "shop_users"
        );
    }

    #[test]
    fn dashes_and_dots_are_replaced_and_a_hash_is_added() {
        let name = derive_server_name("shop-prod", "user.db", POSTGRES_IDENTIFIER_LIMIT);
        assert!(name.starts_with("shop_prod_user_db_"), "{name}");
        assert_eq!(name.len(), "shop_prod_user_db_".len() + 8);
        assert!(is_safe(&name));
    }

    #[test]
    fn names_that_sanitize_alike_do_not_collide() {
        let a = derive_server_name("shop", "user-db", POSTGRES_IDENTIFIER_LIMIT);
        let b = derive_server_name("shop", "user.db", POSTGRES_IDENTIFIER_LIMIT);
        let c = derive_server_name("shop-user", "db", POSTGRES_IDENTIFIER_LIMIT);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
    }

    #[test]
    fn long_names_are_cut_to_the_limit_and_stay_distinct() {
        let long = "n".repeat(253);
        let a = derive_server_name("team-a", &long, POSTGRES_IDENTIFIER_LIMIT);
        let b = derive_server_name("team-b", &long, POSTGRES_IDENTIFIER_LIMIT);
        assert_eq!(a.len(), POSTGRES_IDENTIFIER_LIMIT);
        assert_eq!(b.len(), POSTGRES_IDENTIFIER_LIMIT);
        assert_ne!(a, b);
        assert!(is_safe(&a) && is_safe(&b));
    }

    #[test]
    fn injection_shaped_names_become_harmless_identifiers() {
        let name = derive_server_name(
            "shop",
            "x\"; DROP DATABASE postgres; --",
            POSTGRES_IDENTIFIER_LIMIT,
        );
        assert!(is_safe(&name), "{name}");
        assert!(
            name.starts_with("shop_x___drop_database_postgres____"),
            "{name}"
        );
        let unicode = derive_server_name("shop", "bücher'", POSTGRES_IDENTIFIER_LIMIT);
        assert!(is_safe(&unicode), "{unicode}");
    }

    #[test]
    fn names_postgres_reserves_are_prefixed_and_hashed() {
        let name = derive_server_name("pg", "x", POSTGRES_IDENTIFIER_LIMIT);
        assert!(!name.starts_with("pg_"), "{name}");
        assert!(name.starts_with("silo_pg_x_"), "{name}");
        assert_eq!(name.len(), "silo_pg_x_".len() + 8);
        // Distinct from what namespace `silo` with name `pg_x` would get.
        assert_ne!(
            name,
            derive_server_name("silo", "pg_x", POSTGRES_IDENTIFIER_LIMIT)
        );
        let long = derive_server_name("pg-team", &"n".repeat(253), POSTGRES_IDENTIFIER_LIMIT);
        assert!(long.starts_with("silo_pg_team_"), "{long}");
        assert_eq!(long.len(), POSTGRES_IDENTIFIER_LIMIT);
    }

    #[test]
    fn names_merely_containing_pg_are_kept() {
        assert_eq!(
            derive_server_name("shop", "pg_stats", POSTGRES_IDENTIFIER_LIMIT),
            "shop_pg_stats"
        );
    }

    #[test]
    fn derivation_is_stable() {
        assert_eq!(
            derive_server_name("a-b", "c", 63),
            derive_server_name("a-b", "c", 63)
        );
    }

    #[test]
    fn upper_case_counts_as_a_change_and_gets_a_hash() {
        let name = derive_server_name("Shop", "users", POSTGRES_IDENTIFIER_LIMIT);
        assert!(name.starts_with("shop_users_"), "{name}");
        assert_ne!(name, derive_server_name("shop", "users", 63));
    }
}
