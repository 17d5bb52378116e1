//! Quoting for the few PostgreSQL statements that cannot take bind parameters
//! (`CREATE ROLE`, `CREATE DATABASE`, `GRANT`/`REVOKE` name identifiers and literals).

use thiserror::Error;

/// A value that PostgreSQL cannot represent in an identifier or literal.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("PostgreSQL text cannot contain a NUL character")]
pub struct NulCharacter;

/// `"name"` with embedded double quotes doubled, as `quote_ident` does.
pub fn quote_ident(name: &str) -> Result<String, NulCharacter> {
    if name.contains('\0') {
        return Err(NulCharacter);
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `'text'` with single quotes doubled; text holding a backslash becomes an `E'...'` literal
/// with doubled backslashes, so the result means the same whatever `standard_conforming_strings` is.
pub fn quote_literal(text: &str) -> Result<String, NulCharacter> {
    if text.contains('\0') {
        return Err(NulCharacter);
    }
    let doubled = text.replace('\'', "''");
    if text.contains('\\') {
        Ok(format!("E'{}'", doubled.replace('\\', "\\\\")))
    } else {
        Ok(format!("'{doubled}'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_wrapped_and_inner_quotes_doubled() {
        assert_eq!(quote_ident("shop_users").unwrap(), "\"shop_users\"");
        assert_eq!(
            quote_ident("x\"; DROP TABLE t; --").unwrap(),
            "\"x\"\"; DROP TABLE t; --\""
        );
    }

    #[test]
    fn literals_double_single_quotes() {
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert_eq!(
            quote_literal("'; DROP ROLE admin; --").unwrap(),
            "'''; DROP ROLE admin; --'"
        );
    }

    #[test]
    fn literals_with_backslashes_use_escape_syntax() {
        assert_eq!(quote_literal("a\\'b").unwrap(), "E'a\\\\''b'");
    }

    #[test]
    fn nul_characters_are_refused() {
        assert_eq!(quote_ident("a\0b"), Err(NulCharacter));
        assert_eq!(quote_literal("a\0b"), Err(NulCharacter));
    }

    #[test]
    fn scram_verifiers_pass_through_unchanged_inside_quotes() {
        let v = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$a+b/c=:d=";
        assert_eq!(quote_literal(v).unwrap(), format!("'{v}'"));
    }
}
