//! Connection URIs written into the credentials Secret.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::crd::{Engine, TlsMode};

/// Everything except RFC 3986 unreserved characters is escaped in user info and path.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The parts of a service's login; its `Debug` leaves the password out.
#[derive(Clone)]
pub struct LoginParts<'a> {
    /// Engine the URI is for.
    pub engine: Engine,
    /// Role or user name.
    pub username: &'a str,
    /// Plaintext password.
    pub password: &'a str,
    /// Host name.
    pub host: &'a str,
    /// TCP port.
    pub port: u16,
    /// Database name.
    pub database: &'a str,
    /// TLS mode of the server.
    pub tls: TlsMode,
}

impl std::fmt::Debug for LoginParts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginParts")
            .field("engine", &self.engine)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("tls", &self.tls)
            .finish()
    }
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

fn host_part(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `postgres://user:pass@host:port/db?sslmode=..` or `mongodb://user:pass@host:port/db?authSource=db..`.
pub fn connection_uri(login: &LoginParts<'_>) -> String {
    let base = format!(
        "{}://{}:{}@{}:{}/{}",
        login.engine_scheme(),
        encode(login.username),
        encode(login.password),
        host_part(login.host),
        login.port,
        encode(login.database)
    );
    match login.engine {
        Engine::Postgres => format!("{base}?sslmode={}", postgres_sslmode(login.tls)),
        Engine::Mongodb => {
            let tls = match login.tls {
                TlsMode::Disable => "false",
                TlsMode::Require | TlsMode::VerifyFull => "true",
            };
            let insecure = if login.tls == TlsMode::Require {
                "&tlsInsecure=true"
            } else {
                ""
            };
            format!(
                "{base}?authSource={}&tls={tls}{insecure}",
                encode(login.database)
            )
        }
    }
}

/// `jdbc:postgresql://host:port/db?sslmode=..` (credentials are separate keys for JDBC).
pub fn jdbc_uri(login: &LoginParts<'_>) -> String {
    format!(
        "jdbc:postgresql://{}:{}/{}?sslmode={}",
        host_part(login.host),
        login.port,
        encode(login.database),
        postgres_sslmode(login.tls)
    )
}

/// libpq's `sslmode` for a TLS mode.
pub fn postgres_sslmode(tls: TlsMode) -> &'static str {
    match tls {
        TlsMode::Disable => "disable",
        TlsMode::Require => "require",
        TlsMode::VerifyFull => "verify-full",
    }
}

impl LoginParts<'_> {
    fn engine_scheme(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => "postgres",
            Engine::Mongodb => "mongodb",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(engine: Engine, password: &str) -> LoginParts<'_> {
        LoginParts {
            engine,
            username: "shop_users",
            password,
            host: "pg.example.com",
            port: 5432,
            database: "shop_users",
            tls: TlsMode::Disable,
        }
    }

    #[test]
    fn debug_output_leaves_the_password_out() {
        let shown = format!("{:?}", parts(Engine::Postgres, "s3cret-value"));
        assert!(!shown.contains("s3cret-value"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("shop_users"),
            "{shown}"
        );
    }

    #[test]
    fn postgres_uri_has_all_parts() {
        assert_eq!(
            connection_uri(&parts(Engine::Postgres, "abc")),
            "postgres://shop_users:abc@pg.example.com:5432/shop_users?sslmode=disable"
        );
    }

    #[test]
    fn reserved_characters_in_the_password_are_percent_encoded() {
        let uri = connection_uri(&parts(Engine::Postgres, "p@ss:w/rd?#%"));
        assert!(uri.contains(":p%40ss%3Aw%2Frd%3F%23%25@"), "{uri}");
    }

    #[test]
    fn mongodb_uri_names_its_auth_source() {
        let mut login = parts(Engine::Mongodb, "abc");
        login.port = 27017;
        login.tls = TlsMode::VerifyFull;
        assert_eq!(
            connection_uri(&login),
            "mongodb://shop_users:abc@pg.example.com:27017/shop_users?authSource=shop_users&tls=true"
        );
    }

    #[test]
    fn jdbc_uri_leaves_credentials_out() {
        let login = parts(Engine::Postgres, "abc");
        assert_eq!(
            jdbc_uri(&login),
            "jdbc:postgresql://pg.example.com:5432/shop_users?sslmode=disable"
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let mut login = parts(Engine::Postgres, "abc");
        login.host = "::1";
        assert!(connection_uri(&login).contains("@[::1]:5432/"));
    }
}
