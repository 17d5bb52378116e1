//! PostgreSQL provisioning with sqlx, connected as the server's administrator.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Row};

use super::connection_cache::ConnectionCache;
use super::sql_quote::{quote_ident, quote_literal};
use super::{AdminConnection, Engine, EngineError, ProvisionReport, ServerNames};
use crate::crd::TlsMode;
use crate::password::Password;
use crate::scram;

/// The database the admin connects to for server-wide statements.
const MAINTENANCE_DATABASE: &str = "postgres";
const DUPLICATE_OBJECT: &str = "42710";
const DUPLICATE_DATABASE: &str = "42P04";

/// Admin connection pools shared by every reconcile, one per server.
#[derive(Default)]
pub struct PoolCache {
    pools: ConnectionCache<PgPool>,
}

impl PoolCache {
    /// The pool of `server` (the key of the object naming it) for `admin`, created lazily (no
    /// connection is made until first use). Any change of what it connects with (host, port,
    /// login, password, TLS mode, size) replaces it; the old pool is closed in the background.
    pub fn pool(&self, server: &str, admin: &AdminConnection, max_connections: u32) -> PgPool {
        let settings = format!("{}/{max_connections}", admin.fingerprint());
        let lookup = self.pools.get(server, &settings, || {
            Ok::<_, std::convert::Infallible>(
                PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_lazy_with(connect_options(admin, MAINTENANCE_DATABASE)),
            )
        });
        let Ok(lookup) = lookup;
        if let Some(old) = lookup.replaced {
            close_in_background(old);
        }
        lookup.current
    }

    /// Closes and drops the pool of `server`, which is gone.
    pub fn forget(&self, server: &str) {
        if let Some(old) = self.pools.forget(server) {
            close_in_background(old);
        }
    }

    /// Closes and drops the pools of the servers `keep` says no to (they are gone).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        for old in self.pools.retain(keep) {
            close_in_background(old);
        }
    }

    /// How many servers have a pool.
    pub fn len(&self) -> usize {
        self.pools.len()
    }

    /// Whether no server has a pool.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }
}

fn close_in_background(pool: PgPool) {
    tokio::spawn(async move { pool.close().await });
}

fn ssl_mode(tls: TlsMode) -> PgSslMode {
    match tls {
        TlsMode::Disable => PgSslMode::Disable,
        TlsMode::Require => PgSslMode::Require,
        TlsMode::VerifyFull => PgSslMode::VerifyFull,
    }
}

/// Connection options with statement logging off: statements carry password verifiers.
fn connect_options(admin: &AdminConnection, database: &str) -> PgConnectOptions {
    PgConnectOptions::new()
        .host(&admin.host)
        .port(admin.port)
        .username(&admin.username)
        .password(admin.password.expose())
        .database(database)
        .ssl_mode(ssl_mode(admin.tls))
        .application_name("silo-operator")
        .disable_statement_logging()
}

/// Provisions on one PostgreSQL server.
pub struct PostgresEngine {
    admin: AdminConnection,
    pool: PgPool,
}

impl PostgresEngine {
    /// An engine using `pool` for server-wide statements as `admin`.
    pub fn new(admin: AdminConnection, pool: PgPool) -> Self {
        Self { admin, pool }
    }

    async fn role_exists(&self, role: &str) -> Result<Option<RoleFlags>, EngineError> {
        let row = sqlx::query(
            "SELECT rolcanlogin, rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls AS elevated, \
             shobj_description(oid, 'pg_authid') AS comment \
             FROM pg_roles WHERE rolname = $1",
        )
        .bind(role)
        .fetch_optional(&self.pool)
        .await
        .map_err(command("reading the role"))?;
        Ok(row.map(|r| RoleFlags {
            can_login: r.get("rolcanlogin"),
            elevated: r.get("elevated"),
            comment: r.get("comment"),
        }))
    }

    /// Owner and comment (the Silo mark, if any) of `database`, if it exists.
    async fn database_record(
        &self,
        database: &str,
    ) -> Result<Option<(String, Option<String>)>, EngineError> {
        sqlx::query_as(
            "SELECT pg_get_userbyid(datdba)::text, shobj_description(oid, 'pg_database') \
             FROM pg_database WHERE datname = $1",
        )
        .bind(database)
        .fetch_optional(&self.pool)
        .await
        .map_err(command("reading the database"))
    }

    async fn set_password(&self, role: &str, password: &Password) -> Result<(), EngineError> {
        let statement = format!(
            "ALTER ROLE {} PASSWORD {}",
            quote_ident(role)?,
            quote_literal(&scram::verifier(password.expose()))?
        );
        sqlx::raw_sql(&statement)
            .execute(&self.pool)
            .await
            .map_err(command("setting the role's password"))?;
        Ok(())
    }

    /// Creates the role with `password` unless it exists; returns whether it created it.
    async fn ensure_role(
        &self,
        names: &ServerNames,
        password: &Password,
        report: &mut ProvisionReport,
    ) -> Result<bool, EngineError> {
        let role = names.role.as_str();
        match self.role_exists(role).await? {
            None => {
                // One simple-query string runs as one transaction: the role never exists unmarked.
                let statement = format!(
                    "CREATE ROLE {role_ident} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}; \
                     COMMENT ON ROLE {role_ident} IS {}",
                    quote_literal(&scram::verifier(password.expose()))?,
                    quote_literal(&names.marker)?,
                    role_ident = quote_ident(role)?,
                );
                match sqlx::raw_sql(&statement).execute(&self.pool).await {
                    Ok(_) => Ok(true),
                    // Created concurrently: ours only if it carries this Database's marker.
                    Err(e) if sql_state(&e).as_deref() == Some(DUPLICATE_OBJECT) => {
                        let marked = self.role_exists(role).await?.is_some_and(|flags| {
                            flags.comment.as_deref() == Some(names.marker.as_str())
                        });
                        if marked {
                            Ok(false)
                        } else {
                            Err(EngineError::NameTaken(format!(
                                "role {role} was created concurrently by someone else"
                            )))
                        }
                    }
                    Err(e) => Err(command("creating the role")(e)),
                }
            }
            Some(flags) if flags.comment.as_deref() != Some(names.marker.as_str()) => {
                Err(EngineError::NameTaken(format!(
                    "role {role} already exists and was not created by Silo for this Database; drop or rename it, or create the Database under another name"
                )))
            }
            Some(flags) => {
                if !flags.can_login || flags.elevated {
                    let statement = format!(
                        "ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS",
                        quote_ident(role)?
                    );
                    sqlx::raw_sql(&statement)
                        .execute(&self.pool)
                        .await
                        .map_err(command("restoring the role's attributes"))?;
                    report
                        .repaired
                        .push(format!("role {role} had its attributes changed; restored LOGIN without extra privileges"));
                }
                Ok(false)
            }
        }
    }

    /// Creates the database owned by `role` unless it exists; fixes its owner if it changed.
    async fn ensure_database(
        &self,
        names: &ServerNames,
        report: &mut ProvisionReport,
    ) -> Result<bool, EngineError> {
        let found = self.database_record(&names.database).await?;
        let database = quote_ident(&names.database)?;
        let role = quote_ident(&names.role)?;
        let mark = format!(
            "COMMENT ON DATABASE {database} IS {}",
            quote_literal(&names.marker)?
        );
        let owner = match found {
            None => None,
            Some((owner, comment)) if comment.as_deref() == Some(names.marker.as_str()) => {
                Some(owner)
            }
            // CREATE DATABASE cannot share a transaction with COMMENT: a pass interrupted in
            // between leaves it unmarked but owned by this Database's (marked) role.
            Some((owner, None)) if owner == names.role => {
                sqlx::raw_sql(&mark)
                    .execute(&self.pool)
                    .await
                    .map_err(command("marking the database"))?;
                Some(owner)
            }
            Some(_) => {
                return Err(EngineError::NameTaken(format!(
                    "database {} already exists and was not created by Silo for this Database; drop or rename it, or create the Database under another name",
                    names.database
                )));
            }
        };
        match owner {
            None => {
                let statement = format!("CREATE DATABASE {database} OWNER {role}");
                let created = match sqlx::raw_sql(&statement).execute(&self.pool).await {
                    Ok(_) => true,
                    // Created concurrently: still close PUBLIC access below; a wrong owner is
                    // restored by the next pass, which finds the database.
                    Err(e) if sql_state(&e).as_deref() == Some(DUPLICATE_DATABASE) => false,
                    Err(e) => return Err(command("creating the database")(e)),
                };
                if created {
                    sqlx::raw_sql(&mark)
                        .execute(&self.pool)
                        .await
                        .map_err(command("marking the database"))?;
                }
                // A new database lets PUBLIC connect; close that before anyone can use it. Should
                // this be interrupted, `revoke_foreign_access` finds PUBLIC in the default ACL.
                let statement = format!("REVOKE ALL ON DATABASE {database} FROM PUBLIC");
                sqlx::raw_sql(&statement)
                    .execute(&self.pool)
                    .await
                    .map_err(command("revoking PUBLIC access to the database"))?;
                Ok(created)
            }
            Some(owner) if owner != names.role => {
                let statement = format!("ALTER DATABASE {database} OWNER TO {role}");
                sqlx::raw_sql(&statement)
                    .execute(&self.pool)
                    .await
                    .map_err(command("restoring the database owner"))?;
                report.repaired.push(format!(
                    "database owner was {owner}; restored to {}",
                    names.role
                ));
                Ok(false)
            }
            Some(_) => Ok(false),
        }
    }

    /// Revokes every database privilege held by anyone but the owner and the admin, and every
    /// membership in the owner role. A NULL `datacl` means the built-in default, which lets
    /// PUBLIC connect, so it is read through `acldefault`.
    async fn revoke_foreign_access(
        &self,
        names: &ServerNames,
        report: &mut ProvisionReport,
    ) -> Result<(), EngineError> {
        let grantees: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END \
             FROM pg_database d CROSS JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a \
             WHERE d.datname = $1 AND a.grantee <> d.datdba",
        )
        .bind(&names.database)
        .fetch_all(&self.pool)
        .await
        .map_err(command("reading the database's privileges"))?;
        let database = quote_ident(&names.database)?;
        for grantee in grantees.into_iter().filter(|g| g != &self.admin.username) {
            let target = if grantee == "PUBLIC" {
                "PUBLIC".to_string()
            } else {
                quote_ident(&grantee)?
            };
            let statement = format!("REVOKE ALL ON DATABASE {database} FROM {target}");
            sqlx::raw_sql(&statement)
                .execute(&self.pool)
                .await
                .map_err(command("revoking a privilege on the database"))?;
            report
                .repaired
                .push(format!("revoked privileges on the database from {grantee}"));
        }
        let members: Vec<String> = sqlx::query_scalar(
            "SELECT m.rolname::text FROM pg_auth_members am \
             JOIN pg_roles m ON m.oid = am.member JOIN pg_roles r ON r.oid = am.roleid \
             WHERE r.rolname = $1 AND m.rolname <> $2",
        )
        .bind(&names.role)
        .bind(&self.admin.username)
        .fetch_all(&self.pool)
        .await
        .map_err(command("reading members of the role"))?;
        let role = quote_ident(&names.role)?;
        for member in members {
            let statement = format!("REVOKE {role} FROM {}", quote_ident(&member)?);
            sqlx::raw_sql(&statement)
                .execute(&self.pool)
                .await
                .map_err(command("revoking membership in the role"))?;
            report.repaired.push(format!(
                "revoked membership in role {} from {member}",
                names.role
            ));
        }
        Ok(())
    }

    /// Every login role, other than the owner, the admin and superusers, that the catalog says
    /// can connect to, create in, or make temporary tables in the database.
    ///
    /// `has_database_privilege` decides, but it is asked only of the roles that could hold a
    /// privilege: members (transitively) of the owner or of a grantee in the database's ACL, or
    /// every login role when PUBLIC holds one. Asking every role on the server would cost a
    /// membership lookup per role and database, quadratic in the number of databases.
    pub async fn measure_foreign_access(
        &self,
        names: &ServerNames,
    ) -> Result<Vec<String>, EngineError> {
        sqlx::query_scalar(
            "WITH RECURSIVE db AS ( \
               SELECT datdba, coalesce(datacl, acldefault('d', datdba)) AS acl \
               FROM pg_database WHERE datname = $1), \
             grants AS ( \
               SELECT a.grantee FROM db CROSS JOIN LATERAL aclexplode(db.acl) a \
               WHERE a.privilege_type IN ('CONNECT', 'CREATE', 'TEMPORARY')), \
             reach(roleid) AS ( \
               SELECT grantee FROM grants WHERE grantee <> 0 \
               UNION SELECT datdba FROM db \
               UNION SELECT m.member FROM pg_auth_members m JOIN reach r ON m.roleid = r.roleid) \
             SELECT r.rolname::text FROM pg_roles r \
             WHERE r.rolcanlogin AND NOT r.rolsuper AND r.rolname <> $2 AND r.rolname <> $3 \
             AND (EXISTS (SELECT 1 FROM grants WHERE grantee = 0) \
                  OR r.oid IN (SELECT roleid FROM reach)) \
             AND (has_database_privilege(r.oid, $1, 'CONNECT') \
               OR has_database_privilege(r.oid, $1, 'CREATE') \
               OR has_database_privilege(r.oid, $1, 'TEMPORARY')) \
             ORDER BY 1",
        )
        .bind(&names.database)
        .bind(&names.role)
        .bind(&self.admin.username)
        .fetch_all(&self.pool)
        .await
        .map_err(command("measuring access to the database"))
    }

    /// Runs `statement` as the admin inside `database` (statements such as `DROP OWNED` act on
    /// the database of the session only).
    async fn run_in_database(
        &self,
        database: &str,
        statement: &str,
        action: &'static str,
    ) -> Result<(), EngineError> {
        // A one-connection pool: sqlx's `&mut PgConnection` executor trips the Send check of
        // trait futures, `&PgPool` does not.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(connect_options(&self.admin, database))
            .await
            .map_err(|e| EngineError::AdminConnect(e.to_string()))?;
        let result = sqlx::raw_sql(statement)
            .execute(&pool)
            .await
            .map_err(command(action));
        pool.close().await;
        result.map(|_| ())
    }

    /// Inside the database: the owner owns schema `public` and PUBLIC cannot create in it.
    async fn secure_public_schema(&self, names: &ServerNames) -> Result<(), EngineError> {
        let statement = format!(
            "ALTER SCHEMA public OWNER TO {}; REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            quote_ident(&names.role)?
        );
        self.run_in_database(&names.database, &statement, "securing schema public")
            .await
    }

    /// The databases other than the maintenance one in which `role` owns objects or holds
    /// privileges (`pg_shdepend`), each of which `DROP ROLE` would otherwise stumble on.
    async fn databases_holding(&self, role: &str) -> Result<Vec<String>, EngineError> {
        sqlx::query_scalar(
            "SELECT DISTINCT d.datname::text FROM pg_shdepend s \
             JOIN pg_database d ON d.oid = s.dbid \
             WHERE s.refclassid = 'pg_authid'::regclass \
               AND s.refobjid = (SELECT oid FROM pg_roles WHERE rolname = $1) \
               AND d.datname <> current_database() AND d.datallowconn \
             ORDER BY 1",
        )
        .bind(role)
        .fetch_all(&self.pool)
        .await
        .map_err(command("finding what the role holds in other databases"))
    }

    /// Drops what `role` owns and revokes what it was granted in every database, then the role.
    async fn drop_role(&self, role: &str) -> Result<(), EngineError> {
        let drop_owned = format!("DROP OWNED BY {}", quote_ident(role)?);
        for database in self.databases_holding(role).await? {
            self.run_in_database(
                &database,
                &drop_owned,
                "dropping what the role holds in another database",
            )
            .await?;
        }
        // Here too: objects in the maintenance database, and privileges on shared objects.
        let statement = format!("{drop_owned}; DROP ROLE IF EXISTS {}", quote_ident(role)?);
        sqlx::raw_sql(&statement)
            .execute(&self.pool)
            .await
            .map_err(command("dropping the role"))?;
        Ok(())
    }

    /// Logs in as the role to its database with `password`. `None` when the login is refused;
    /// otherwise whether schema `public` is safe, read over that same session: owned by the
    /// database's owner (directly, or through `pg_database_owner` since PostgreSQL 15) and
    /// PUBLIC cannot create in it. One session checks both, so a healthy pass opens no other.
    async fn log_in_and_inspect(&self, names: &ServerNames, password: &Password) -> Option<bool> {
        let options = connect_options(&self.admin, &names.database)
            .username(&names.role)
            .password(password.expose());
        let mut connection = PgConnection::connect_with(&options).await.ok()?;
        let safe: Result<Option<bool>, sqlx::Error> = sqlx::query_scalar(
            "SELECT (n.nspowner = d.datdba OR n.nspowner = 'pg_database_owner'::regrole) \
               AND NOT EXISTS (SELECT 1 FROM aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a \
                               WHERE a.grantee = 0 AND a.privilege_type = 'CREATE') \
             FROM pg_namespace n CROSS JOIN pg_database d \
             WHERE n.nspname = 'public' AND d.datname = current_database()",
        )
        .fetch_optional(&mut connection)
        .await;
        let _ = connection.close().await;
        // A database without schema `public` has nothing to secure; an unreadable answer is
        // treated as unsafe, which only costs a repair.
        Some(safe.map(|row| row.unwrap_or(true)).unwrap_or(false))
    }
}

struct RoleFlags {
    can_login: bool,
    elevated: bool,
    comment: Option<String>,
}

fn sql_state(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// SQLSTATE class 28, invalid authorization: the server refused the admin login itself.
const INVALID_AUTHORIZATION_CLASS: &str = "28";

fn command(action: &'static str) -> impl Fn(sqlx::Error) -> EngineError {
    move |e| match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
            EngineError::AdminConnect(e.to_string())
        }
        _ if sql_state(&e).is_some_and(|s| s.starts_with(INVALID_AUTHORIZATION_CLASS)) => {
            EngineError::AdminConnect(e.to_string())
        }
        other => EngineError::Command {
            action,
            message: other.to_string(),
        },
    }
}

impl Engine for PostgresEngine {
    async fn server_version(&self) -> Result<String, EngineError> {
        sqlx::query_scalar("SHOW server_version")
            .fetch_one(&self.pool)
            .await
            .map_err(command("reading the server version"))
    }

    async fn provision(
        &self,
        names: &ServerNames,
        password: &Password,
        set_password: bool,
    ) -> Result<ProvisionReport, EngineError> {
        let mut report = ProvisionReport::default();
        report.role_created = self.ensure_role(names, password, &mut report).await?;
        if set_password && !report.role_created {
            self.set_password(&names.role, password).await?;
        }
        report.password_set = set_password || report.role_created;
        report.database_created = self.ensure_database(names, &mut report).await?;
        self.revoke_foreign_access(names, &mut report).await?;
        let schema_safe = match self.log_in_and_inspect(names, password).await {
            Some(safe) => safe,
            None => {
                // Someone changed the password by hand: the Secret is the source of truth.
                self.set_password(&names.role, password).await?;
                let Some(safe) = self.log_in_and_inspect(names, password).await else {
                    return Err(EngineError::LoginFailed(format!(
                        "role {} cannot log in to database {} (check pg_hba.conf)",
                        names.role, names.database
                    )));
                };
                report.password_set = true;
                if !set_password {
                    report.repaired.push(format!(
                        "role {} could not log in; password reset",
                        names.role
                    ));
                }
                safe
            }
        };
        if !schema_safe {
            self.secure_public_schema(names).await?;
            if !report.database_created {
                report.repaired.push(
                    "schema public was open to other roles; owner restored and CREATE revoked from PUBLIC"
                        .to_string(),
                );
            }
        }
        report.remaining_access = self.measure_foreign_access(names).await?;
        Ok(report)
    }

    async fn deprovision(&self, names: &ServerNames) -> Result<(), EngineError> {
        // Only what carries this Database's marker is dropped: a role or database of the same
        // name that Silo refused to adopt (NameTaken) is left alone.
        let role_ours = self
            .role_exists(&names.role)
            .await?
            .is_some_and(|flags| flags.comment.as_deref() == Some(names.marker.as_str()));
        let found = self.database_record(&names.database).await?;
        let database_ours = found.is_some_and(|(owner, comment)| match comment {
            Some(comment) => comment == names.marker,
            None => role_ours && owner == names.role,
        });
        let role = quote_ident(&names.role)?;
        let database = quote_ident(&names.database)?;
        if !role_ours && !database_ours {
            return Ok(());
        }
        if role_ours {
            // NOLOGIN first so that no new session slips in between termination and DROP.
            let statement = format!("ALTER ROLE {role} NOLOGIN");
            sqlx::raw_sql(&statement)
                .execute(&self.pool)
                .await
                .map_err(command("disabling the role's login"))?;
        }
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE (datname = $1 OR usename = $2) AND pid <> pg_backend_pid()",
        )
        .bind(&names.database)
        .bind(&names.role)
        .execute(&self.pool)
        .await
        .map_err(command("terminating the role's sessions"))?;
        if database_ours {
            let statement = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
            sqlx::raw_sql(&statement)
                .execute(&self.pool)
                .await
                .map_err(command("dropping the database"))?;
        }
        if role_ours {
            self.drop_role(&names.role).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(password: &str) -> AdminConnection {
        AdminConnection {
            host: "db.example".into(),
            port: 5432,
            username: "silo_admin".into(),
            password: Password::from_secret_value(password.into()),
            tls: TlsMode::Disable,
        }
    }

    async fn closes(pool: &PgPool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !pool.is_closed() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the old pool closes");
    }

    #[tokio::test]
    async fn a_changed_admin_password_replaces_the_old_pool() {
        let cache = PoolCache::default();
        let first = cache.pool("DatabaseServer//pg", &admin("one"), 2);
        let again = cache.pool("DatabaseServer//pg", &admin("one"), 2);
        assert_eq!(cache.len(), 1);
        assert!(!first.is_closed() && !again.is_closed());
        let _second = cache.pool("DatabaseServer//pg", &admin("two"), 2);
        assert_eq!(cache.len(), 1);
        closes(&first).await;
        let _other = cache.pool("DatabaseServer//other", &admin("one"), 2);
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn any_change_of_what_the_pool_connects_with_gives_a_new_pool() {
        let cache = PoolCache::default();
        let server = "DatabaseServer//pg";
        let mut settings = admin("one");
        settings.tls = TlsMode::VerifyFull;
        let verifying = cache.pool(server, &settings, 2);
        settings.tls = TlsMode::Disable;
        let plain = cache.pool(server, &settings, 2);
        assert!(matches!(
            plain.connect_options().get_ssl_mode(),
            PgSslMode::Disable
        ));
        closes(&verifying).await;
        let changes: [fn(&mut AdminConnection); 3] = [
            |a| a.host = "moved.example".into(),
            |a| a.port = 6432,
            |a| a.username = "other_admin".into(),
        ];
        let mut previous = plain;
        for change in changes {
            change(&mut settings);
            let next = cache.pool(server, &settings, 2);
            closes(&previous).await;
            previous = next;
        }
        let resized = cache.pool(server, &settings, 5);
        closes(&previous).await;
        assert_eq!(resized.options().get_max_connections(), 5);
        assert_eq!(cache.len(), 1, "one pool per server");
        cache.forget(server);
        closes(&resized).await;
        assert!(cache.is_empty());
    }
}
