//! Lookup of environment values, falling back to `target/silo-env/env.sh`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The directory `tests/env/up` writes into (overridable with `SILO_ENV_DIR`).
pub fn env_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SILO_ENV_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/silo-env")
}

fn file_values() -> &'static HashMap<String, String> {
    static VALUES: OnceLock<HashMap<String, String>> = OnceLock::new();
    VALUES.get_or_init(|| {
        let text = std::fs::read_to_string(env_dir().join("env.sh")).unwrap_or_default();
        parse_exports(&text)
    })
}

/// Parses the `export NAME='value'` lines that `tests/env/up` writes.
pub fn parse_exports(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|assignment| assignment.split_once('='))
        .map(|(name, value)| {
            let value = value.trim();
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(value);
            (name.trim().to_string(), value.to_string())
        })
        .collect()
}

/// The value of `var`: the process environment first, then `env.sh`.
pub fn lookup(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .or_else(|| file_values().get(var).cloned())
}

#[cfg(test)]
mod tests {
    use super::parse_exports;

    #[test]
    fn parses_quoted_and_bare_exports_and_ignores_other_lines() {
        let values = parse_exports(
            "# comment\nexport KUBECONFIG='/tmp/k c'\nexport SILO_NATS_URL=nats://127.0.0.1:4222\nPATH=x\n",
        );
        assert_eq!(
            values.get("KUBECONFIG").map(String::as_str),
            Some("/tmp/k c")
        );
        assert_eq!(
            values.get("SILO_NATS_URL").map(String::as_str),
            Some("nats://127.0.0.1:4222")
        );
        assert_eq!(values.len(), 2);
    }
}
