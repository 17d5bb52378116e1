//! user-service's SQL: users with their roles, written together with their
//! events in one transaction.

use crate::validation::{Email, FullName, Username};
use chrono::{DateTime, Utc};
use silo_kit::correlation::CorrelationId;
use silo_kit::events::{UserEmailChanged, UserRegistered};
use silo_kit::outbox::OutboxError;
use silo_kit::outbox::postgres::enqueue;
use sqlx::PgPool;
use uuid::Uuid;

/// The role every new user gets.
pub const DEFAULT_ROLE_ID: i16 = 1;

/// A stored user (without the password hash).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    /// Id.
    pub id: Uuid,
    /// Username as registered.
    pub username: String,
    /// Current email.
    pub email: String,
    /// Full name.
    pub full_name: String,
    /// Role names, sorted.
    pub roles: Vec<String>,
    /// Registration time.
    pub created_at: DateTime<Utc>,
}

/// A user about to be registered.
pub struct NewUser {
    /// Validated username.
    pub username: Username,
    /// Validated email.
    pub email: Email,
    /// Validated full name.
    pub full_name: FullName,
    /// Argon2id PHC string.
    pub password_hash: String,
}

impl std::fmt::Debug for NewUser {
    // By hand: the hash is an offline-crackable copy of the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("email", &self.email)
            .field("full_name", &self.full_name)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// What can go wrong in the repository.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// Another user has this username (case-insensitively).
    #[error("username is taken")]
    UsernameTaken,
    /// Another user has this email (case-insensitively).
    #[error("email is taken")]
    EmailTaken,
    /// No such user.
    #[error("user not found")]
    NotFound,
    /// PostgreSQL failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The outbox write failed.
    #[error("outbox: {0}")]
    Outbox(#[from] OutboxError),
}

fn classify(error: sqlx::Error) -> RepositoryError {
    if let sqlx::Error::Database(db) = &error {
        match db.constraint() {
            Some("users_username_key") => return RepositoryError::UsernameTaken,
            Some("users_email_key") => return RepositoryError::EmailTaken,
            _ => {}
        }
    }
    RepositoryError::Database(error)
}

const SELECT_USER: &str = "SELECT u.id, u.username, u.email, u.full_name, u.created_at, \
     COALESCE((SELECT array_agg(r.name ORDER BY r.name) FROM user_roles ur \
               JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = u.id), '{}') AS roles \
     FROM users u";

/// Access to the users database.
#[derive(Debug, Clone)]
pub struct UserRepository {
    pool: PgPool,
}

impl UserRepository {
    /// A repository on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Registers `new` with the default role and emits `UserRegistered`, atomically.
    pub async fn register(
        &self,
        new: NewUser,
        correlation_id: &CorrelationId,
    ) -> Result<User, RepositoryError> {
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, username, email, full_name, password_hash) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(new.username.as_str())
        .bind(new.email.as_str())
        .bind(new.full_name.as_str())
        .bind(&new.password_hash)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query("INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)")
            .bind(id)
            .bind(DEFAULT_ROLE_ID)
            .execute(&mut *tx)
            .await?;
        let user = fetch(&mut tx, id).await?.ok_or(RepositoryError::NotFound)?;
        enqueue(
            &mut tx,
            &UserRegistered {
                user_id: user.id,
                email: user.email.clone(),
                full_name: user.full_name.clone(),
            },
            correlation_id,
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// The user with `id`.
    pub async fn find(&self, id: Uuid) -> Result<Option<User>, RepositoryError> {
        let mut conn = self.pool.acquire().await?;
        fetch(&mut conn, id).await
    }

    /// Whether a user with `id` exists.
    pub async fn exists(&self, id: Uuid) -> Result<bool, RepositoryError> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
                .bind(id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The user whose username or email is `identifier` (case-insensitively), with the password hash.
    pub async fn find_for_login(
        &self,
        identifier: &str,
    ) -> Result<Option<(Uuid, String)>, RepositoryError> {
        Ok(sqlx::query_as(
            "SELECT id, password_hash FROM users WHERE lower(username) = lower($1) OR lower(email) = lower($1) LIMIT 1",
        )
        .bind(identifier.trim())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Changes email and/or full name; emits `UserEmailChanged` when the email changes.
    pub async fn update(
        &self,
        id: Uuid,
        email: Option<Email>,
        full_name: Option<FullName>,
        correlation_id: &CorrelationId,
    ) -> Result<User, RepositoryError> {
        let mut tx = self.pool.begin().await?;
        let old_email: Option<String> =
            sqlx::query_scalar("SELECT email FROM users WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let old_email = old_email.ok_or(RepositoryError::NotFound)?;
        sqlx::query(
            "UPDATE users SET email = COALESCE($2, email), full_name = COALESCE($3, full_name), \
             updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(email.as_ref().map(Email::as_str))
        .bind(full_name.as_ref().map(FullName::as_str))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if let Some(new_email) = email.filter(|new| new.as_str() != old_email) {
            enqueue(
                &mut tx,
                &UserEmailChanged {
                    user_id: id,
                    old_email,
                    new_email: new_email.as_str().to_string(),
                },
                correlation_id,
            )
            .await?;
        }
        let user = fetch(&mut tx, id).await?.ok_or(RepositoryError::NotFound)?;
        tx.commit().await?;
        Ok(user)
    }
}

async fn fetch(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<Option<User>, RepositoryError> {
    Ok(
        sqlx::query_as::<_, User>(&format!("{SELECT_USER} WHERE u.id = $1"))
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_user_debug_output_hides_the_password_hash() {
        let user = NewUser {
            username: Username::parse("ada").unwrap(),
            email: Email::parse("ada@example.com").unwrap(),
            full_name: FullName::parse("Ada").unwrap(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        };
        let shown = format!("{user:?}");
        assert!(!shown.contains("argon2id"), "{shown}");
        assert!(shown.contains("ada@example.com"), "{shown}");
    }
}
