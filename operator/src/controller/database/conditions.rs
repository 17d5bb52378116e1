//! The conditions a pass writes: each set with the pass's generation, keeping its transition
//! time when its status did not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::resolve::Isolation;
use crate::crd::{DatabaseStatus, Endpoint};
use crate::engine::{ProvisionReport, ServerNames};
use crate::isolation::Assessment;
use crate::status::{condition, types, upsert};
use crate::validate::ValidDatabase;

/// Sets conditions on a status, against the conditions it had when the pass began.
pub struct Conditions {
    prior: Vec<Condition>,
    generation: Option<i64>,
}

impl Conditions {
    /// A writer for a pass over `status` at `generation`.
    pub fn new(status: &DatabaseStatus, generation: Option<i64>) -> Self {
        Self {
            prior: status.conditions.clone(),
            generation,
        }
    }

    /// Sets condition `type_`.
    pub fn set(
        &self,
        status: &mut DatabaseStatus,
        type_: &str,
        ok: bool,
        reason: &str,
        message: String,
    ) {
        upsert(
            &mut status.conditions,
            condition(&self.prior, type_, ok, reason, message, self.generation),
        );
    }

    /// The server is not usable yet: `ServerReady` and `Ready` say why.
    pub fn waiting(&self, status: &mut DatabaseStatus, reason: &str, message: String) {
        self.set(status, types::SERVER_READY, false, reason, message.clone());
        self.set(status, types::READY, false, reason, message);
    }

    /// The server took the admin login and the database and role exist.
    pub fn provisioned(&self, status: &mut DatabaseStatus, names: &ServerNames) {
        self.set(
            status,
            types::SERVER_READY,
            true,
            "ServerReady",
            "the operator connected to the server as its administrator".into(),
        );
        self.set(
            status,
            types::PROVISIONED,
            true,
            "Provisioned",
            format!("database {} owned by role {}", names.database, names.role),
        );
    }

    /// The Secret holds the checked login.
    pub fn credentials_ready(&self, status: &mut DatabaseStatus, secret_name: &str) {
        self.set(
            status,
            types::CREDENTIALS_READY,
            true,
            "SecretWritten",
            format!("Secret {secret_name} holds a login that was checked against the server"),
        );
    }

    /// `NetworkIsolated`, `AccessVerified` and `Ready` from what was measured, and where
    /// clients connect; returns whether the Database is Ready.
    pub fn measured(
        &self,
        status: &mut DatabaseStatus,
        measured: &Measured<'_>,
        valid: &ValidDatabase,
    ) -> bool {
        let (isolated, reason, message) = match (measured.isolation, measured.reach) {
            // A server of its own: who reaches it is measured over the cluster's policies.
            (Isolation::Dedicated, Some(reach)) => {
                (reach.isolated, reach.reason, reach.message.clone())
            }
            (isolation, _) => network_isolation(isolation, &valid.owner),
        };
        self.set(status, types::NETWORK_ISOLATED, isolated, reason, message);
        let verified = measured.report.access_verified();
        if verified {
            self.set(
                status,
                types::ACCESS_VERIFIED,
                true,
                "Measured",
                format!(
                    "the server's catalog shows that only role {} (and the admin) can reach the database",
                    measured.names.role
                ),
            );
            self.set(
                status,
                types::READY,
                true,
                "Ready",
                format!("credentials are in Secret {}", valid.secret_name),
            );
        } else {
            self.set(
                status,
                types::ACCESS_VERIFIED,
                false,
                "ForeignAccess",
                format!(
                    "still able to reach the database after repair: {}",
                    measured.report.remaining_access.join(", ")
                ),
            );
            self.set(
                status,
                types::READY,
                false,
                "ForeignAccess",
                "other logins can reach the database".into(),
            );
        }
        status.endpoint = Some(measured.endpoint.clone());
        status.secret_name = Some(valid.secret_name.clone());
        verified
    }
}

/// What a provisioning pass measured.
pub struct Measured<'a> {
    /// What fences the server.
    pub isolation: Isolation,
    /// What provisioning did and found.
    pub report: &'a ProvisionReport,
    /// The names on the server.
    pub names: &'a ServerNames,
    /// Where clients connect.
    pub endpoint: Endpoint,
    /// Who reaches the server's port under the NetworkPolicies present, when measured.
    pub reach: Option<&'a Assessment>,
}

/// `NetworkIsolated`: status, reason and message for a server fenced as `isolation`.
fn network_isolation(isolation: Isolation, owner: &str) -> (bool, &'static str, String) {
    match isolation {
        Isolation::Dedicated => (
            true,
            "Dedicated",
            format!(
                "the server runs for this database alone and admits only pods labelled silo.dev/service={owner}"
            ),
        ),
        Isolation::Shared => (
            false,
            "Shared",
            "the server is shared: its NetworkPolicy admits the owners of all databases on it, so isolation is by database privileges only".to_string(),
        ),
        Isolation::External => (
            false,
            "External",
            "the server is external: the operator cannot restrict network access to it; isolation is by database privileges only".to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dedicated_server_counts_as_network_isolated() {
        assert!(network_isolation(Isolation::Dedicated, "orders").0);
        assert!(
            network_isolation(Isolation::Dedicated, "orders")
                .2
                .contains("silo.dev/service=orders")
        );
        assert_eq!(network_isolation(Isolation::Shared, "orders").1, "Shared");
        assert_eq!(
            network_isolation(Isolation::External, "orders").1,
            "External"
        );
        assert!(!network_isolation(Isolation::External, "orders").0);
    }
}
