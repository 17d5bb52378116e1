//! The credentials Secret of a `Database`: the one it owns (never someone else's), the password
//! in it, and writing it only when its content changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Resource, ResourceExt};

use super::resolve::ServerAccess;
use super::rotation::Rotation;
use crate::apply::apply;
use crate::build::{CredentialsSecretInput, credentials_secret};
use crate::controller::server_access::secret_value;
use crate::controller::{Context, object_key};
use crate::crd::Database;
use crate::engine::ServerNames;
use crate::error::Error;
use crate::password::Password;
use crate::uri::LoginParts;
use crate::validate::ValidDatabase;

/// The credentials Secret, if it exists and belongs to this Database.
pub async fn current_secret(
    ctx: &Context,
    db: &Database,
    secret_name: &str,
) -> Result<Option<Arc<Secret>>, Error> {
    let namespace = db.namespace().unwrap_or_default();
    let secret = match ctx
        .caches
        .current_secret(&object_key(db), &namespace, secret_name)
    {
        Some(secret) => secret,
        None => match Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(secret_name)
            .await?
        {
            Some(secret) => Arc::new(secret),
            None => return Ok(None),
        },
    };
    let ours = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| Some(&r.uid) == db.metadata.uid.as_ref());
    if !ours {
        return Err(Error::SecretConflict(format!(
            "spec.credentials.secretName: Secret {secret_name} already exists and does not belong to this Database; choose another name or delete that Secret"
        )));
    }
    ctx.caches
        .saw_secret(&object_key(db), secret.resource_version());
    Ok(Some(secret))
}

/// The password to use, and whether it is new (to be set on the server): the one in the
/// Secret, unless there is none or a rotation is due.
pub fn password_to_use(existing: Option<&Secret>, rotation: Option<&Rotation>) -> (Password, bool) {
    let kept = existing
        .and_then(|secret| secret_value(secret, "password"))
        .map(Password::from_secret_value);
    match (kept, rotation) {
        (Some(password), None) => (password, false),
        _ => (Password::generate(), true),
    }
}

/// What a credentials Secret is written from.
pub struct Login<'a> {
    /// The names on the server.
    pub names: &'a ServerNames,
    /// Where clients connect.
    pub access: &'a ServerAccess,
    /// The role's password.
    pub password: &'a Password,
}

/// Writes the credentials Secret of `db` unless `existing` already holds the same content.
pub async fn write_secret(
    ctx: &Context,
    db: &Database,
    valid: &ValidDatabase,
    login: &Login<'_>,
    existing: Option<&Secret>,
) -> Result<(), Error> {
    let owner_reference = db
        .controller_owner_ref(&())
        .ok_or_else(|| Error::ServerNotReady("the Database has no uid yet".into()))?;
    let secret = credentials_secret(&CredentialsSecretInput {
        name: &valid.secret_name,
        namespace: &db.namespace().unwrap_or_default(),
        database_resource: &db.name_any(),
        owner: &valid.owner,
        owner_reference: &owner_reference,
        login: LoginParts {
            engine: valid.engine,
            username: &login.names.role,
            password: login.password.expose(),
            host: &login.access.host,
            port: login.access.port,
            database: &login.names.database,
            tls: login.access.tls,
        },
    })?;
    if existing.is_some_and(|existing| same_content(existing, &secret)) {
        return Ok(());
    }
    ctx.caches.writing_secret(&object_key(db), &secret);
    let applied = apply(&ctx.client, &secret).await?;
    ctx.caches
        .saw_secret(&object_key(db), applied.resource_version());
    Ok(())
}

/// Whether `existing` already holds what `desired` would write (data, labels, owner).
fn same_content(existing: &Secret, desired: &Secret) -> bool {
    let labels_kept = desired
        .labels()
        .iter()
        .all(|(k, v)| existing.labels().get(k) == Some(v));
    let data = |secret: &Secret| -> BTreeMap<String, Option<String>> {
        let keys = secret
            .data
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .chain(secret.string_data.iter().flatten().map(|(k, _)| k));
        keys.map(|k| (k.clone(), secret_value(secret, k))).collect()
    };
    labels_kept
        && existing.owner_references() == desired.owner_references()
        && data(existing) == data(desired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_with_password(password: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "users-db" },
            "stringData": { "password": password },
        }))
        .unwrap()
    }

    #[test]
    fn the_secrets_password_is_kept_until_a_rotation_is_due() {
        let secret = secret_with_password("kept-password");
        let (password, new) = password_to_use(Some(&secret), None);
        assert_eq!((password.expose(), new), ("kept-password", false));
        let (password, new) = password_to_use(Some(&secret), Some(&Rotation::Schedule));
        assert!(new && password.expose() != "kept-password");
        let (_, new) = password_to_use(None, None);
        assert!(new, "no Secret yet: a new password");
    }

    #[test]
    fn a_secret_with_the_same_data_labels_and_owner_is_not_written_again() {
        let mut existing = secret_with_password("p");
        existing.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        let mut desired = secret_with_password("p");
        desired.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert!(same_content(&existing, &desired));
        desired.string_data = Some([("password".to_string(), "q".to_string())].into());
        assert!(!same_content(&existing, &desired));
    }
}
