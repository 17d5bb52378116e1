//! MongoDB provisioning with the official driver, connected as the server's administrator.

pub mod access_plan;
mod client_cache;
mod foreign_access;
pub mod ownership;
pub mod replica_set;

use mongodb::Client;
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, Credential, ServerAddress, Tls, TlsOptions};

use self::access_plan::ADMIN_DATABASE;
use self::ownership::{
    Claim, UserFound, claim, custom_data, database_listed, may_drop, user_found,
};
use super::{AdminConnection, Engine, EngineError, ProvisionReport, ServerNames};
use crate::crd::TlsMode;
use crate::password::Password;

pub use client_cache::MongoClientCache;

/// `UserAlreadyExists`, from a `createUser` racing an earlier, interrupted pass.
const USER_ALREADY_EXISTS: i32 = 51003;

/// Provisions on one MongoDB server.
pub struct MongoEngine {
    admin: AdminConnection,
    client: Client,
}

fn client_options(
    admin: &AdminConnection,
    username: &str,
    password: &Password,
    auth_source: &str,
) -> ClientOptions {
    let mut options = ClientOptions::default();
    options.hosts = vec![ServerAddress::Tcp {
        host: admin.host.clone(),
        port: Some(admin.port),
    }];
    options.credential = Some(
        Credential::builder()
            .username(username.to_string())
            .password(password.expose().to_string())
            .source(auth_source.to_string())
            .build(),
    );
    options.direct_connection = Some(true);
    options.app_name = Some("silo-operator".to_string());
    options.server_selection_timeout = Some(std::time::Duration::from_secs(10));
    options.tls = match admin.tls {
        TlsMode::Disable => None,
        TlsMode::Require => Some(Tls::Enabled(
            TlsOptions::builder()
                .allow_invalid_certificates(true)
                .build(),
        )),
        TlsMode::VerifyFull => Some(Tls::Enabled(TlsOptions::default())),
    };
    options
}

fn command(action: &'static str) -> impl Fn(mongodb::error::Error) -> EngineError {
    move |e| EngineError::Command {
        action,
        message: e.to_string(),
    }
}

fn command_error_code(error: &mongodb::error::Error) -> Option<i32> {
    match error.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

impl MongoEngine {
    /// An engine using `client` (from [`MongoClientCache`]) as `admin`.
    pub fn new(admin: AdminConnection, client: Client) -> Self {
        Self { admin, client }
    }

    /// The user of the derived name, judged by its mark.
    async fn find_user(&self, names: &ServerNames) -> Result<UserFound, EngineError> {
        let reply = self
            .client
            .database(&names.database)
            .run_command(doc! { "usersInfo": { "user": &names.role, "db": &names.database } })
            .await
            .map_err(command("reading the user"))?;
        Ok(user_found(&reply, &names.marker))
    }

    /// Whether the database exists, i.e. holds a collection.
    async fn database_holds_data(&self, database: &str) -> Result<bool, EngineError> {
        let reply = self
            .client
            .database(ADMIN_DATABASE)
            .run_command(
                doc! { "listDatabases": 1, "nameOnly": true, "filter": { "name": database } },
            )
            .await
            .map_err(command("listing databases"))?;
        Ok(database_listed(&reply))
    }

    /// Creates the user, marked as this Database's. `Ok(false)` when a concurrent pass of the
    /// same Database created it first.
    async fn create_user(
        &self,
        names: &ServerNames,
        password: &Password,
    ) -> Result<bool, EngineError> {
        let create = doc! {
            "createUser": &names.role,
            "pwd": password.expose(),
            "customData": custom_data(&names.marker),
            "roles": owner_roles(names),
            "mechanisms": ["SCRAM-SHA-256"],
        };
        match self
            .client
            .database(&names.database)
            .run_command(create)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if command_error_code(&e) == Some(USER_ALREADY_EXISTS) => {
                match self.find_user(names).await? {
                    UserFound::Ours => Ok(false),
                    _ => Err(EngineError::NameTaken(format!(
                        "user {} in database {} was created concurrently by someone else",
                        names.role, names.database
                    ))),
                }
            }
            Err(e) => Err(command("creating the user")(e)),
        }
    }

    /// Resets the role list of Silo's user (removing anything granted to it by hand), and its
    /// password when `set_password`.
    async fn keep_user(
        &self,
        names: &ServerNames,
        password: &Password,
        set_password: bool,
    ) -> Result<(), EngineError> {
        let mut update = doc! { "updateUser": &names.role, "roles": owner_roles(names) };
        if set_password {
            update.insert("pwd", password.expose());
        }
        self.client
            .database(&names.database)
            .run_command(update)
            .await
            .map_err(command("updating the user"))?;
        Ok(())
    }

    async fn can_log_in(&self, names: &ServerNames, password: &Password) -> bool {
        let options = client_options(&self.admin, &names.role, password, &names.database);
        let Ok(client) = Client::with_options(options) else {
            return false;
        };
        let ok = client
            .database(&names.database)
            .run_command(doc! { "listCollections": 1, "nameOnly": true })
            .await
            .is_ok();
        client.shutdown().await;
        ok
    }

    /// Makes sure the user logs in with `password`, resetting it once if it does not.
    async fn ensure_login(
        &self,
        names: &ServerNames,
        password: &Password,
        report: &mut ProvisionReport,
    ) -> Result<(), EngineError> {
        if self.can_log_in(names, password).await {
            return Ok(());
        }
        self.client
            .database(&names.database)
            .run_command(doc! { "updateUser": &names.role, "pwd": password.expose() })
            .await
            .map_err(command("resetting the user's password"))?;
        if !self.can_log_in(names, password).await {
            return Err(EngineError::LoginFailed(format!(
                "user {} cannot authenticate against database {}",
                names.role, names.database
            )));
        }
        report.password_set = true;
        Ok(())
    }
}

/// The one role the owner holds: `readWrite` on its database.
fn owner_roles(names: &ServerNames) -> Vec<Document> {
    vec![doc! { "role": "readWrite", "db": &names.database }]
}

impl Engine for MongoEngine {
    async fn server_version(&self) -> Result<String, EngineError> {
        let reply = self
            .client
            .database(ADMIN_DATABASE)
            .run_command(doc! { "buildInfo": 1 })
            .await
            .map_err(|e| EngineError::AdminConnect(e.to_string()))?;
        Ok(reply.get_str("version").unwrap_or("unknown").to_string())
    }

    async fn provision(
        &self,
        names: &ServerNames,
        password: &Password,
        set_password: bool,
    ) -> Result<ProvisionReport, EngineError> {
        let mut report = ProvisionReport::default();
        let found = self.find_user(names).await?;
        let holds_data =
            found == UserFound::Absent && self.database_holds_data(&names.database).await?;
        match claim(found, holds_data, &names.role, &names.database) {
            Claim::Taken(why) => return Err(EngineError::NameTaken(why)),
            Claim::Create => report.role_created = self.create_user(names, password).await?,
            Claim::Keep => self.keep_user(names, password, set_password).await?,
        }
        report.password_set = set_password || report.role_created;
        report.remaining_access = self.check_foreign_access(names, &mut report).await?;
        self.ensure_login(names, password, &mut report).await?;
        Ok(report)
    }

    async fn deprovision(&self, names: &ServerNames) -> Result<(), EngineError> {
        // Only what Silo made for this Database is dropped: a user of the same name that it
        // refused to adopt (NameTaken), and that user's database, are left alone.
        if !may_drop(self.find_user(names).await?) {
            return Ok(());
        }
        let admin = self.client.database(ADMIN_DATABASE);
        let _ = admin
            .run_command(doc! {
                "killAllSessionsByPattern": [ { "users": [ { "user": &names.role, "db": &names.database } ] } ]
            })
            .await;
        let database = self.client.database(&names.database);
        // The database first: were the user dropped first and the drop of the database to fail,
        // the next pass would no longer know the database as Silo's.
        database
            .drop()
            .await
            .map_err(command("dropping the database"))?;
        database
            .run_command(doc! { "dropUser": &names.role })
            .await
            .map_err(command("dropping the user"))?;
        Ok(())
    }
}
