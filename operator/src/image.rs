//! Container images of the servers the operator runs: the image references it accepts (the
//! grammar container runtimes parse, `[registry[:port]/]path[:tag][@digest]`) and the default
//! image of each engine (`<repository>:<version>`, the repository configurable for private
//! registries and air-gapped clusters).

use thiserror::Error;

use crate::crd::{Engine, ManagedServerSpec};

/// Longest image name (registry and path, without tag or digest) a runtime accepts.
const NAME_MAX: usize = 255;
/// Longest tag.
const TAG_MAX: usize = 128;
/// Fewest hex digits of a digest.
const DIGEST_HEX_MIN: usize = 32;

/// Why a text is not an image reference (or repository); the message completes "image … ".
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ImageError {
    /// Nothing was given.
    #[error("is empty")]
    Empty,
    /// The name (registry and path) exceeds what runtimes accept.
    #[error("has a name longer than {NAME_MAX} characters")]
    NameTooLong,
    /// A path component breaks the rules.
    #[error(
        "has an invalid path component {0:?}: lower-case letters and digits, separated by '.', '_', '__' or '-'"
    )]
    InvalidPath(String),
    /// The registry host (and port) is malformed.
    #[error("has an invalid registry {0:?}: a host name or IP address, optionally with :port")]
    InvalidRegistry(String),
    /// The tag breaks the rules.
    #[error(
        "has an invalid tag {0:?}: letters, digits, '_', '.' and '-', at most {TAG_MAX}, not starting with '.' or '-'"
    )]
    InvalidTag(String),
    /// The digest breaks the rules.
    #[error("has an invalid digest {0:?}: algorithm:hex, such as sha256:<64 hex digits>")]
    InvalidDigest(String),
    /// A repository was expected, but a tag or digest was given with it.
    #[error("carries a tag or digest ({0:?}); give the repository only (the tag is the version)")]
    NotARepository(String),
}

/// The repositories of the default images, per engine (`postgres` and `mongo` on Docker Hub
/// unless the operator is told otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRepositories {
    /// Repository of PostgreSQL images (tag: the version).
    pub postgres: String,
    /// Repository of MongoDB images (tag: the version).
    pub mongodb: String,
}

impl Default for ImageRepositories {
    fn default() -> Self {
        Self {
            postgres: "postgres".to_string(),
            mongodb: "mongo".to_string(),
        }
    }
}

impl ImageRepositories {
    /// The repository of `engine`'s default image.
    pub fn of(&self, engine: Engine) -> &str {
        match engine {
            Engine::Postgres => &self.postgres,
            Engine::Mongodb => &self.mongodb,
        }
    }

    /// The image a server of `engine` with `spec` runs: `spec.image`, else `<repository>:<version>`.
    pub fn resolve(&self, engine: Engine, spec: &ManagedServerSpec) -> String {
        match &spec.image {
            Some(image) => image.clone(),
            None => format!(
                "{}:{}",
                self.of(engine),
                spec.version.as_deref().unwrap_or(engine.default_version())
            ),
        }
    }
}

/// Checks `text` as a full image reference: `[registry[:port]/]path[:tag][@digest]`.
pub fn check_reference(text: &str) -> Result<(), ImageError> {
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (text, None),
    };
    let (name, tag) = split_tag(rest);
    check_name(name)?;
    if let Some(tag) = tag
        && !is_tag(tag)
    {
        return Err(ImageError::InvalidTag(tag.to_string()));
    }
    if let Some(digest) = digest
        && !is_digest(digest)
    {
        return Err(ImageError::InvalidDigest(digest.to_string()));
    }
    Ok(())
}

/// Parses a repository (a reference without tag or digest), for the operator's flags.
pub fn parse_repository(text: &str) -> Result<String, ImageError> {
    if let Some(at) = text.find('@') {
        return Err(ImageError::NotARepository(text[at..].to_string()));
    }
    if let (_, Some(tag)) = split_tag(text) {
        return Err(ImageError::NotARepository(format!(":{tag}")));
    }
    check_name(text)?;
    Ok(text.to_string())
}

/// Whether `text` is a valid image tag (also what a `version` becomes).
pub fn is_tag(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && text.len() <= TAG_MAX
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Splits `name[:tag]`: a tag is what follows the last ':' after the last '/' (a ':' before
/// a '/' belongs to the registry's port).
fn split_tag(text: &str) -> (&str, Option<&str>) {
    let last_slash = text.rfind('/').map_or(0, |i| i + 1);
    match text[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (&text[..at], Some(&text[at + 1..]))
        }
        None => (text, None),
    }
}

/// `[registry[:port]/]component[/component…]`.
fn check_name(name: &str) -> Result<(), ImageError> {
    if name.is_empty() {
        return Err(ImageError::Empty);
    }
    if name.len() > NAME_MAX {
        return Err(ImageError::NameTooLong);
    }
    let mut components = name.split('/');
    let first = components.next().unwrap_or_default();
    let rest: Vec<&str> = components.collect();
    // The first component is a registry only when more follow and it is not a valid path.
    if !rest.is_empty() && !is_path_component(first) && !is_registry(first) {
        return Err(if first.contains([':', '.']) {
            ImageError::InvalidRegistry(first.to_string())
        } else {
            ImageError::InvalidPath(first.to_string())
        });
    }
    if rest.is_empty() && !is_path_component(first) {
        return Err(ImageError::InvalidPath(first.to_string()));
    }
    match rest.into_iter().find(|c| !is_path_component(c)) {
        Some(bad) => Err(ImageError::InvalidPath(bad.to_string())),
        None => Ok(()),
    }
}

/// `[a-z0-9]+` runs joined by one of `.`, `_`, `__`, `-+`.
fn is_path_component(text: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = text.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    text.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        .filter(|separator| !separator.is_empty())
        .all(|separator| {
            matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-')
        })
}

/// `host[:port]`: DNS labels (either case) joined by '.', or `[ipv6]`.
fn is_registry(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (host, Some(port)),
        _ => (text, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `algorithm:hex`, the algorithm letters and digits joined by `+ . _ -`.
fn is_digest(text: &str) -> bool {
    let Some((algorithm, hex)) = text.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|part| {
        part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && part.chars().all(|c| c.is_ascii_alphanumeric())
    });
    algorithm_ok && hex.len() >= DIGEST_HEX_MIN && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::StorageSpec;

    fn spec(version: Option<&str>, image: Option<&str>) -> ManagedServerSpec {
        ManagedServerSpec {
            version: version.map(Into::into),
            image: image.map(Into::into),
            storage: StorageSpec {
                size: "1Gi".into(),
                storage_class_name: None,
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_default_image_is_the_engine_repository_tagged_with_the_version() {
        let defaults = ImageRepositories::default();
        assert_eq!(
            defaults.resolve(Engine::Postgres, &spec(None, None)),
            "postgres:16"
        );
        assert_eq!(
            defaults.resolve(Engine::Mongodb, &spec(Some("6.0"), None)),
            "mongo:6.0"
        );
        let private = ImageRepositories {
            postgres: "localhost/silo/postgres".into(),
            mongodb: "registry.internal:5000/mirror/mongo".into(),
        };
        assert_eq!(
            private.resolve(Engine::Postgres, &spec(Some("15"), None)),
            "localhost/silo/postgres:15"
        );
        assert_eq!(
            private.resolve(Engine::Mongodb, &spec(None, None)),
            "registry.internal:5000/mirror/mongo:7.0"
        );
    }

    #[test]
    fn an_image_in_the_spec_wins_over_repository_and_version() {
        let private = ImageRepositories {
            postgres: "localhost/silo/postgres".into(),
            ..Default::default()
        };
        assert_eq!(
            private.resolve(
                Engine::Postgres,
                &spec(Some("16"), Some("ghcr.io/acme/pg:16.4"))
            ),
            "ghcr.io/acme/pg:16.4"
        );
    }

    #[test]
    fn references_runtimes_accept_are_accepted() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for valid in [
            "postgres".to_string(),
            "postgres:16".to_string(),
            "library/postgres:16.4-bookworm".to_string(),
            "localhost/silo/postgres:15".to_string(),
            "localhost:5000/postgres".to_string(),
            "Registry.Example.com:443/team/pg_image__x/a-b--c:v1_2".to_string(),
            "[fd00::1]:5000/postgres:16".to_string(),
            format!("postgres@{digest}"),
            format!("ghcr.io/acme/pg:16@{digest}"),
        ] {
            assert_eq!(check_reference(&valid), Ok(()), "{valid}");
        }
    }

    #[test]
    fn garbage_is_refused_saying_which_part_is_wrong() {
        let cases = [
            ("", ImageError::Empty),
            ("Postgres:16", ImageError::InvalidPath("Postgres".into())),
            ("postgres 16", ImageError::InvalidPath("postgres 16".into())),
            ("postgres:", ImageError::InvalidTag(String::new())),
            ("postgres:-16", ImageError::InvalidTag("-16".into())),
            (
                "postgres:16:1",
                ImageError::InvalidPath("postgres:16".into()),
            ),
            ("acme//pg", ImageError::InvalidPath(String::new())),
            ("acme/pg./x", ImageError::InvalidPath("pg.".into())),
            ("acme/a._b", ImageError::InvalidPath("a._b".into())),
            (
                "bad_host:x/pg",
                ImageError::InvalidRegistry("bad_host:x".into()),
            ),
            (
                "pg@sha256:abc",
                ImageError::InvalidDigest("sha256:abc".into()),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(check_reference(text), Err(expected), "{text:?}");
        }
        assert_eq!(
            check_reference(&"a".repeat(256)),
            Err(ImageError::NameTooLong)
        );
    }

    #[test]
    fn a_repository_flag_takes_no_tag_or_digest() {
        assert_eq!(
            parse_repository("registry.internal:5000/mirror/postgres").as_deref(),
            Ok("registry.internal:5000/mirror/postgres")
        );
        assert!(matches!(
            parse_repository("postgres:16"),
            Err(ImageError::NotARepository(_))
        ));
        assert!(matches!(
            parse_repository("acme/Postgres"),
            Err(ImageError::InvalidPath(_))
        ));
    }
}
