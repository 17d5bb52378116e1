//! Checks beyond the OpenAPI schema (the 1.20 API server has no CEL): exactly-one-of, immutable
//! fields (including what a running server's StatefulSet cannot change), durations and names. Each failure says which field to fix and how.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;

use crate::crd::{
    Database, DatabaseServer, DeletionPolicy, Engine, ExternalServerSpec, ManagedServerSpec,
};
use crate::error::Error;
use crate::image;

/// Where a validated `Database` lives.
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// On the named shared `DatabaseServer`.
    Shared(String),
    /// On a server run just for it.
    Dedicated(ManagedServerSpec),
}

/// `status.boundServer` of a `Database` on a dedicated server.
pub const DEDICATED_BINDING: &str = "dedicated";

impl Placement {
    /// The value recorded in `status.boundServer`.
    pub fn binding(&self) -> String {
        match self {
            Placement::Shared(name) => format!("serverRef/{name}"),
            Placement::Dedicated(_) => DEDICATED_BINDING.to_string(),
        }
    }
}

/// A `Database` spec that passed validation.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidDatabase {
    /// Engine.
    pub engine: Engine,
    /// Owning service.
    pub owner: String,
    /// Where it lives.
    pub placement: Placement,
    /// What deletion does on the server.
    pub deletion_policy: DeletionPolicy,
    /// Name of the credentials Secret.
    pub secret_name: String,
    /// Rotation period, if any.
    pub rotate_every: Option<Duration>,
}

/// Validates a `Database` against its own spec and what its status recorded.
pub fn database(db: &Database) -> Result<ValidDatabase, Error> {
    let spec = &db.spec;
    if !is_dns_label(&spec.owner) {
        return Err(Error::InvalidSpec(format!(
            "spec.owner {:?} must be a DNS label (lower-case letters, digits and '-', at most 63 characters): it becomes the label silo.dev/service",
            spec.owner
        )));
    }
    let placement = match (&spec.server.server_ref, &spec.server.dedicated) {
        (Some(name), None) if !name.is_empty() => Placement::Shared(name.clone()),
        (None, Some(managed)) => {
            managed_server(managed, "spec.server.dedicated")?;
            workload_name_fits(&db.name_any(), "-dbserver", "metadata.name")?;
            Placement::Dedicated(managed.clone())
        }
        _ => {
            return Err(Error::InvalidSpec(
                "spec.server must set exactly one of serverRef (a DatabaseServer name) or dedicated"
                    .into(),
            ));
        }
    };
    if let Some(status) = &db.status {
        if let Some(bound) = status.bound_engine
            && bound != spec.engine
        {
            return Err(Error::InvalidSpec(format!(
                "spec.engine is immutable: this database was created as {}; set it back or create a new Database",
                bound.as_str()
            )));
        }
        if let Some(bound) = &status.bound_server
            && *bound != placement.binding()
        {
            return Err(Error::InvalidSpec(format!(
                "spec.server is immutable: this database was created on {bound}; set it back or create a new Database"
            )));
        }
    }
    let secret_name = credentials_secret_name(db)?;
    let rotate_every = match &spec.credentials.rotate_every {
        None => None,
        Some(text) => {
            let period = humantime::parse_duration(text).map_err(|e| {
                Error::InvalidSpec(format!(
                    "spec.credentials.rotateEvery {text:?} is not a duration like 720h: {e}"
                ))
            })?;
            if period < Duration::from_secs(60) {
                return Err(Error::InvalidSpec(format!(
                    "spec.credentials.rotateEvery {text:?} is shorter than the minimum of 1m"
                )));
            }
            Some(period)
        }
    };
    Ok(ValidDatabase {
        engine: spec.engine,
        owner: spec.owner.clone(),
        placement,
        deletion_policy: spec.deletion_policy,
        secret_name,
        rotate_every,
    })
}

/// The credentials Secret's name: `spec.credentials.secretName`, else `<name>-db`. Checked as
/// the API server will check it, and a refusal names where the name came from.
fn credentials_secret_name(db: &Database) -> Result<String, Error> {
    const RULES: &str = "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters";
    match &db.spec.credentials.secret_name {
        Some(name) if is_dns_subdomain(name) => Ok(name.clone()),
        Some(name) => Err(Error::InvalidSpec(format!(
            "spec.credentials.secretName {name:?} is not a valid Secret name ({RULES})"
        ))),
        None => {
            let derived = format!("{}-db", db.name_any());
            if is_dns_subdomain(&derived) {
                return Ok(derived);
            }
            Err(Error::InvalidSpec(format!(
                "the credentials Secret name {derived:?}, derived from metadata.name as <name>-db, is not a valid Secret name ({RULES}; it has {} characters); set spec.credentials.secretName",
                derived.len()
            )))
        }
    }
}

/// Where a validated `DatabaseServer` runs.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerKind {
    /// The operator runs it.
    Managed(ManagedServerSpec),
    /// It exists already.
    External(ExternalServerSpec),
}

/// Validates a `DatabaseServer`.
pub fn server(server: &DatabaseServer) -> Result<ServerKind, Error> {
    match (&server.spec.managed, &server.spec.external) {
        (Some(managed), None) => {
            managed_server(managed, "spec.managed")?;
            workload_name_fits(&server.name_any(), "silo-", "metadata.name")?;
            Ok(ServerKind::Managed(managed.clone()))
        }
        (None, Some(external)) => {
            if external.host.is_empty() {
                return Err(Error::InvalidSpec(
                    "spec.external.host must not be empty".into(),
                ));
            }
            if external.port == Some(0) {
                return Err(Error::InvalidSpec(
                    "spec.external.port must not be 0".into(),
                ));
            }
            Ok(ServerKind::External(external.clone()))
        }
        _ => Err(Error::InvalidSpec(
            "spec must set exactly one of managed or external".into(),
        )),
    }
}

/// The namespace to read the admin Secret of `external` from: the operator's own, which
/// `adminSecretRef.namespace` may name or leave out. Any other is refused, so that creating a
/// DatabaseServer never makes the operator read another namespace's Secrets (and send them to
/// a host of the creator's choosing).
pub fn admin_secret_namespace(
    external: &ExternalServerSpec,
    operator_namespace: &str,
) -> Result<String, Error> {
    match external.admin_secret_ref.namespace.as_deref() {
        None => Ok(operator_namespace.to_string()),
        Some(namespace) if namespace == operator_namespace => Ok(namespace.to_string()),
        Some(namespace) => Err(Error::InvalidSpec(format!(
            "spec.external.adminSecretRef.namespace is {namespace}, but the operator reads admin Secrets only from its own namespace {operator_namespace} (otherwise whoever may create a DatabaseServer could have it read any Secret); put the Secret in {operator_namespace} and name that namespace or leave it out"
        ))),
    }
}

fn managed_server(managed: &ManagedServerSpec, field: &str) -> Result<(), Error> {
    if managed.storage.size.is_empty() {
        return Err(Error::InvalidSpec(format!(
            "{field}.storage.size must be a quantity such as 10Gi"
        )));
    }
    if let Some(version) = &managed.version
        && !image::is_tag(version)
    {
        return Err(Error::InvalidSpec(format!(
            "{field}.version {version:?} must be an image tag such as 16 or 7.0"
        )));
    }
    if let Some(reference) = &managed.image
        && let Err(why) = image::check_reference(reference)
    {
        return Err(Error::InvalidSpec(format!(
            "{field}.image {reference:?} is not an image reference such as registry.example.com/postgres:16: it {why}"
        )));
    }
    if let Some(namespace) = &managed.namespace
        && !is_dns_label(namespace)
    {
        return Err(Error::InvalidSpec(format!(
            "{field}.namespace {namespace:?} is not a valid namespace name"
        )));
    }
    Ok(())
}

/// Where a server's workload settings are written, for messages about them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadField {
    /// `spec.managed` of a `DatabaseServer`.
    Managed,
    /// `spec.server.dedicated` of a `Database`.
    Dedicated,
}

impl WorkloadField {
    fn path(self) -> &'static str {
        match self {
            WorkloadField::Managed => "spec.managed",
            WorkloadField::Dedicated => "spec.server.dedicated",
        }
    }

    fn remedy(self) -> &'static str {
        match self {
            WorkloadField::Managed => {
                "restore it, or create a new DatabaseServer and new Databases on it (a Database's spec.server cannot change)"
            }
            WorkloadField::Dedicated => "restore it, or create a new Database and move the data",
        }
    }
}

/// A running server's volume cannot be resized or moved to another storage class: the
/// StatefulSet's `volumeClaimTemplates` are immutable. Compares `existing` with `spec`.
pub fn storage_unchanged(
    existing: &StatefulSet,
    spec: &ManagedServerSpec,
    field: WorkloadField,
) -> Result<(), Error> {
    // The builder writes exactly one claim template, the data volume.
    let Some(claim) = existing
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .and_then(|templates| templates.first())
        .and_then(|claim| claim.spec.as_ref())
    else {
        return Ok(());
    };
    let size = claim
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|requests| requests.get("storage"));
    if let Some(size) = size
        && !same_quantity(&size.0, &spec.storage.size)
    {
        return Err(Error::InvalidSpec(format!(
            "{}.storage.size cannot change after creation (was {}): a StatefulSet's volume claim template is immutable; {}",
            field.path(),
            size.0,
            field.remedy()
        )));
    }
    if claim.storage_class_name != spec.storage.storage_class_name {
        return Err(Error::InvalidSpec(format!(
            "{}.storage.storageClassName cannot change after creation (was {}): a StatefulSet's volume claim template is immutable; {}",
            field.path(),
            claim
                .storage_class_name
                .as_deref()
                .unwrap_or("unset, the cluster default"),
            field.remedy()
        )));
    }
    Ok(())
}

/// A managed server's workload stays in the namespace it was created in (`recorded`), where its
/// volume is.
pub fn namespace_unchanged(recorded: Option<&str>, desired: &str) -> Result<(), Error> {
    match recorded {
        Some(recorded) if recorded != desired => Err(Error::InvalidSpec(format!(
            "spec.managed.namespace cannot change after creation (was {recorded}): the server's volume lives there; {}",
            WorkloadField::Managed.remedy()
        ))),
        _ => Ok(()),
    }
}

/// Whether two Kubernetes quantities are equal (`1Gi` and `1024Mi` are); forms this does not
/// read are compared as text.
fn same_quantity(a: &str, b: &str) -> bool {
    match (quantity_value(a), quantity_value(b)) {
        (Some((a_num, a_den)), Some((b_num, b_den))) => {
            match (a_num.checked_mul(b_den), b_num.checked_mul(a_den)) {
                (Some(left), Some(right)) => left == right,
                _ => a.trim() == b.trim(),
            }
        }
        _ => a.trim() == b.trim(),
    }
}

/// A quantity such as `1.5Gi` or `500M` as an exact fraction (numerator, denominator).
fn quantity_value(text: &str) -> Option<(u128, u128)> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let mantissa: u128 = format!("{whole}{fraction}").parse().ok()?;
    let denominator = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
    Some((mantissa.checked_mul(multiplier)?, denominator))
}

/// Longest StatefulSet name whose pods still get a valid `controller-revision-hash` label.
const MAX_STATEFULSET_NAME: usize = 52;

fn workload_name_fits(name: &str, affix: &str, field: &str) -> Result<(), Error> {
    let limit = MAX_STATEFULSET_NAME - affix.len();
    if name.len() > limit {
        return Err(Error::InvalidSpec(format!(
            "{field} is {} characters; a server the operator runs needs it to be at most {limit} (its StatefulSet name gets {affix:?}); create it under a shorter name",
            name.len()
        )));
    }
    Ok(())
}

/// Longest DNS label (namespace names, label values such as the owner).
const DNS_LABEL_MAX: usize = 63;
/// Longest DNS subdomain (names of most objects, Secrets among them).
const DNS_SUBDOMAIN_MAX: usize = 253;

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` with no length limit: the pattern of one RFC 1123 label.
fn matches_label_pattern(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// Kubernetes' `IsDNS1123Label`: the label pattern, at most 63 characters.
pub(crate) fn is_dns_label(text: &str) -> bool {
    text.len() <= DNS_LABEL_MAX && matches_label_pattern(text)
}

/// Kubernetes' `IsDNS1123Subdomain`, which the API server applies to Secret names: at most 253
/// characters and labels joined by '.'. Exactly that: unlike DNS, Kubernetes does not limit
/// each dot-separated part to 63 characters.
pub(crate) fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= DNS_SUBDOMAIN_MAX && text.split('.').all(matches_label_pattern)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{DatabaseSpec, DatabaseStatus, ServerBinding, StorageSpec};

    fn shared(server: &str) -> Database {
        Database::new(
            "users",
            DatabaseSpec {
                engine: Engine::Postgres,
                owner: "user-service".into(),
                server: ServerBinding {
                    server_ref: Some(server.into()),
                    dedicated: None,
                },
                deletion_policy: DeletionPolicy::Retain,
                credentials: Default::default(),
            },
        )
    }

    fn invalid_message(db: &Database) -> String {
        match database(db) {
            Err(Error::InvalidSpec(message)) => message,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn a_shared_database_validates_with_a_default_secret_name() {
        let valid = database(&shared("pg")).unwrap();
        assert_eq!(valid.placement, Placement::Shared("pg".into()));
        assert_eq!(valid.secret_name, "users-db");
    }

    #[test]
    fn both_or_neither_server_choice_is_rejected_naming_the_field() {
        let mut db = shared("pg");
        db.spec.server.dedicated = Some(ManagedServerSpec {
            storage: StorageSpec {
                size: "1Gi".into(),
                storage_class_name: None,
            },
            ..Default::default()
        });
        assert!(invalid_message(&db).contains("spec.server"));
        db.spec.server = ServerBinding::default();
        assert!(invalid_message(&db).contains("exactly one of serverRef"));
    }

    #[test]
    fn changing_engine_or_server_after_creation_is_rejected() {
        let mut db = shared("pg");
        db.status = Some(DatabaseStatus {
            bound_engine: Some(Engine::Mongodb),
            bound_server: Some("serverRef/pg".into()),
            ..Default::default()
        });
        assert!(invalid_message(&db).contains("spec.engine is immutable"));
        db.status = Some(DatabaseStatus {
            bound_engine: Some(Engine::Postgres),
            bound_server: Some("serverRef/other".into()),
            ..Default::default()
        });
        assert!(invalid_message(&db).contains("spec.server is immutable"));
    }

    #[test]
    fn a_dedicated_database_name_must_leave_room_for_its_statefulset() {
        let mut db = shared("pg");
        db.spec.server = ServerBinding {
            server_ref: None,
            dedicated: Some(ManagedServerSpec {
                storage: StorageSpec {
                    size: "1Gi".into(),
                    storage_class_name: None,
                },
                ..Default::default()
            }),
        };
        assert!(database(&db).is_ok());
        db.metadata.name = Some("n".repeat(44));
        assert!(invalid_message(&db).contains("at most 43"));
    }

    fn existing_statefulset(size: &str, class: Option<&str>) -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "silo-pg" },
            "spec": {
                "selector": {},
                "serviceName": "silo-pg",
                "template": {},
                "volumeClaimTemplates": [ {
                    "metadata": { "name": "data" },
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": { "requests": { "storage": size } },
                        "storageClassName": class,
                    },
                } ],
            },
        }))
        .unwrap()
    }

    fn storage(size: &str, class: Option<&str>) -> ManagedServerSpec {
        ManagedServerSpec {
            storage: StorageSpec {
                size: size.into(),
                storage_class_name: class.map(Into::into),
            },
            ..Default::default()
        }
    }

    fn storage_message(
        existing: &StatefulSet,
        spec: &ManagedServerSpec,
        field: WorkloadField,
    ) -> String {
        match storage_unchanged(existing, spec, field) {
            Err(Error::InvalidSpec(message)) => message,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn a_changed_volume_size_is_rejected_naming_the_field_and_the_old_value() {
        let existing = existing_statefulset("1Gi", None);
        assert!(
            storage_unchanged(&existing, &storage("1Gi", None), WorkloadField::Managed).is_ok()
        );
        let message = storage_message(&existing, &storage("2Gi", None), WorkloadField::Managed);
        assert!(
            message.starts_with("spec.managed.storage.size cannot change after creation (was 1Gi)"),
            "{message}"
        );
        let message = storage_message(&existing, &storage("5Gi", None), WorkloadField::Dedicated);
        assert!(
            message.starts_with("spec.server.dedicated.storage.size"),
            "{message}"
        );
        assert!(message.contains("create a new Database"), "{message}");
    }

    #[test]
    fn the_same_size_written_differently_is_no_change() {
        let existing = existing_statefulset("1Gi", None);
        for same in ["1024Mi", "1073741824", " 1Gi", "1.0Gi", "1048576Ki"] {
            assert!(
                storage_unchanged(&existing, &storage(same, None), WorkloadField::Managed).is_ok(),
                "{same}"
            );
        }
        let decimal = existing_statefulset("1.5G", None);
        assert!(
            storage_unchanged(&decimal, &storage("1500M", None), WorkloadField::Managed).is_ok()
        );
        assert!(
            storage_unchanged(&decimal, &storage("1500Mi", None), WorkloadField::Managed).is_err()
        );
        assert!(
            storage_unchanged(&decimal, &storage("lots", None), WorkloadField::Managed).is_err()
        );
    }

    #[test]
    fn a_changed_or_added_storage_class_is_rejected() {
        let default_class = existing_statefulset("1Gi", None);
        let message = storage_message(
            &default_class,
            &storage("1Gi", Some("fast")),
            WorkloadField::Managed,
        );
        assert!(
            message.starts_with(
                "spec.managed.storage.storageClassName cannot change after creation (was unset"
            ),
            "{message}"
        );
        let fast = existing_statefulset("1Gi", Some("fast"));
        assert!(
            storage_unchanged(&fast, &storage("1Gi", Some("fast")), WorkloadField::Managed).is_ok()
        );
        let message = storage_message(&fast, &storage("1Gi", Some("slow")), WorkloadField::Managed);
        assert!(message.contains("(was fast)"), "{message}");
    }

    #[test]
    fn a_managed_server_cannot_move_to_another_namespace() {
        assert!(namespace_unchanged(None, "silo-system").is_ok());
        assert!(namespace_unchanged(Some("silo-system"), "silo-system").is_ok());
        match namespace_unchanged(Some("silo-system"), "databases") {
            Err(Error::InvalidSpec(message)) => assert!(
                message.starts_with(
                    "spec.managed.namespace cannot change after creation (was silo-system)"
                ),
                "{message}"
            ),
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    fn dedicated(change: impl FnOnce(&mut ManagedServerSpec)) -> Database {
        let mut spec = ManagedServerSpec {
            storage: StorageSpec {
                size: "1Gi".into(),
                storage_class_name: None,
            },
            ..Default::default()
        };
        change(&mut spec);
        let mut db = shared("pg");
        db.spec.server = ServerBinding {
            server_ref: None,
            dedicated: Some(spec),
        };
        db
    }

    #[test]
    fn an_image_that_is_no_image_reference_is_rejected_naming_the_field() {
        let db = dedicated(|spec| spec.image = Some("registry.example.com/Postgres:16".into()));
        let message = invalid_message(&db);
        assert!(
            message.starts_with("spec.server.dedicated.image \"registry.example.com/Postgres:16\" is not an image reference"),
            "{message}"
        );
        assert!(message.contains("\"Postgres\""), "{message}");
        let db = dedicated(|spec| spec.image = Some("localhost:5000/silo/postgres:15".into()));
        assert!(database(&db).is_ok());

        let mut managed = DatabaseServer::new(
            "pg",
            crate::crd::DatabaseServerSpec {
                engine: Engine::Postgres,
                managed: dedicated(|spec| spec.image = Some("pg:".into()))
                    .spec
                    .server
                    .dedicated,
                external: None,
            },
        );
        match server(&managed) {
            Err(Error::InvalidSpec(message)) => {
                assert!(
                    message.starts_with("spec.managed.image \"pg:\""),
                    "{message}"
                )
            }
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
        managed.spec.managed.as_mut().unwrap().image = None;
        assert!(server(&managed).is_ok());
    }

    #[test]
    fn a_version_must_be_usable_as_an_image_tag() {
        for bad in ["", "-16", "16 beta", "16/x"] {
            let db = dedicated(|spec| spec.version = Some(bad.into()));
            assert!(
                invalid_message(&db).starts_with("spec.server.dedicated.version"),
                "{bad:?}"
            );
        }
        let db = dedicated(|spec| spec.version = Some("16.4-bookworm".into()));
        assert!(database(&db).is_ok());
    }

    #[test]
    fn a_long_database_name_gets_its_secret_as_kubernetes_allows_it() {
        // 79 characters without a dot: one part longer than a DNS label may be.
        let mut db = shared("pg");
        let name = format!("orders-{}", "x".repeat(72));
        db.metadata.name = Some(name.clone());
        assert_eq!(database(&db).unwrap().secret_name, format!("{name}-db"));
        db.spec.credentials.secret_name = Some(format!("{}.{}", "a".repeat(120), "b".repeat(120)));
        assert!(database(&db).is_ok());
        db.spec.credentials.secret_name = Some("a".repeat(253));
        assert!(database(&db).is_ok());
    }

    #[test]
    fn a_bad_secret_name_is_refused_naming_where_it_came_from() {
        let mut db = shared("pg");
        for bad in [
            "Users",
            "users_db",
            "users..db",
            "-users",
            "users.",
            &"a".repeat(254),
        ] {
            db.spec.credentials.secret_name = Some(bad.to_string());
            let message = invalid_message(&db);
            assert!(
                message.starts_with(&format!("spec.credentials.secretName {bad:?}")),
                "{message}"
            );
        }
        // The longest name the API server allows leaves no room for "-db".
        db.spec.credentials.secret_name = None;
        db.metadata.name = Some("n".repeat(252));
        let message = invalid_message(&db);
        assert!(
            message.contains("derived from metadata.name")
                && message.contains("it has 255 characters")
                && message.ends_with("set spec.credentials.secretName"),
            "{message}"
        );
        assert!(
            !message.starts_with("spec.credentials.secretName"),
            "{message}"
        );
    }

    #[test]
    fn admin_secrets_are_read_from_the_operators_namespace_only() {
        let external = |namespace: Option<&str>| ExternalServerSpec {
            host: "pg.example".into(),
            port: None,
            admin_secret_ref: crate::crd::SecretReference {
                name: "pg-admin".into(),
                namespace: namespace.map(Into::into),
            },
            tls: None,
        };
        assert_eq!(
            admin_secret_namespace(&external(None), "silo-system").unwrap(),
            "silo-system"
        );
        assert_eq!(
            admin_secret_namespace(&external(Some("silo-system")), "silo-system").unwrap(),
            "silo-system"
        );
        match admin_secret_namespace(&external(Some("payments")), "silo-system") {
            Err(Error::InvalidSpec(message)) => assert!(
                message.starts_with("spec.external.adminSecretRef.namespace is payments, but the operator reads admin Secrets only from its own namespace silo-system"),
                "{message}"
            ),
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn bad_rotation_periods_and_owners_are_rejected() {
        let mut db = shared("pg");
        db.spec.credentials.rotate_every = Some("often".into());
        assert!(invalid_message(&db).contains("spec.credentials.rotateEvery"));
        db.spec.credentials.rotate_every = Some("720h".into());
        assert_eq!(
            database(&db).unwrap().rotate_every,
            Some(Duration::from_secs(720 * 3600))
        );
        db.spec.owner = "User Service".into();
        assert!(invalid_message(&db).contains("spec.owner"));
    }
}
