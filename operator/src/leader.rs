//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas only one acts.
//!
//! kube-runtime 5 has no elector, so this is a small one in the manner of client-go: every write
//! is a compare-and-swap on the Lease's `resourceVersion` (two candidates can never both win
//! the same version), expiry is judged from when *this* replica last saw the record change
//! (immune to clock skew between nodes), and a leader that cannot renew within the renew
//! deadline, which is shorter than the lease, stops acting before anyone else may take over.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

/// Timing and identity of one candidate.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long stops acting; shorter than `lease_duration`.
    pub renew_deadline: Duration,
    /// Pause between attempts.
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// Defaults like client-go's: 15s lease, 10s renew deadline, 2s retry.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate does with the Lease as it finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a live lease.
    Wait,
}

/// Decides from the holder and how long ago this candidate saw the record last change.
pub fn decide(
    holder: Option<&str>,
    me: &str,
    unchanged_for: Duration,
    lease_duration: Duration,
) -> Decision {
    match holder {
        None | Some("") => Decision::Acquire,
        Some(holder) if holder == me => Decision::Renew,
        Some(_) if unchanged_for >= lease_duration => Decision::Acquire,
        Some(_) => Decision::Wait,
    }
}

/// One candidate in an election.
pub struct LeaderElector {
    api: Api<Lease>,
    config: ElectionConfig,
    /// The record version last seen and when it was first seen.
    observed: Mutex<Option<(String, Instant)>>,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl LeaderElector {
    /// A candidate using `client`.
    pub fn new(client: Client, config: ElectionConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: Mutex::new(None),
        }
    }

    /// The candidate's settings.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    fn unchanged_for(&self, version: &str) -> Duration {
        let mut observed = self
            .observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match observed.as_ref() {
            Some((seen, at)) if seen == version => at.elapsed(),
            _ => {
                *observed = Some((version.to_string(), Instant::now()));
                Duration::ZERO
            }
        }
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// Takes or renews the lease if allowed; `Ok(true)` when this candidate holds it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let me = self.config.identity.as_str();
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.to_string()),
                    lease_duration_seconds: Some(self.lease_seconds()),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let unchanged_for = self.unchanged_for(&version);
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        match decide(
            spec.holder_identity.as_deref(),
            me,
            unchanged_for,
            self.config.lease_duration,
        ) {
            Decision::Wait => return Ok(false),
            Decision::Renew => spec.renew_time = Some(now()),
            Decision::Acquire => {
                spec.holder_identity = Some(me.to_string());
                spec.acquire_time = Some(now());
                spec.renew_time = Some(now());
                spec.lease_transitions =
                    Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            }
        }
        spec.lease_duration_seconds = Some(self.lease_seconds());
        // `replace` carries the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Blocks until this candidate holds the lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read or write the leader Lease"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews until a renewal has not succeeded for `renew_deadline`; returns when leadership is lost.
    pub async fn hold(&self) {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => return,
                Err(e) => tracing::warn!(error = %e, "cannot renew the leader Lease"),
            }
            if last_renewal.elapsed() >= self.config.renew_deadline {
                return;
            }
        }
    }

    /// Gives the lease up (if held) so that a standby takes over without waiting for expiry.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    #[test]
    fn a_free_lease_is_taken() {
        assert_eq!(decide(None, "a", Duration::ZERO, LEASE), Decision::Acquire);
        assert_eq!(
            decide(Some(""), "a", Duration::ZERO, LEASE),
            Decision::Acquire
        );
    }

    #[test]
    fn the_holder_renews() {
        assert_eq!(
            decide(Some("a"), "a", Duration::from_secs(60), LEASE),
            Decision::Renew
        );
    }

    #[test]
    fn a_live_lease_of_another_is_respected() {
        assert_eq!(
            decide(Some("b"), "a", Duration::from_secs(14), LEASE),
            Decision::Wait
        );
    }

    #[test]
    fn an_expired_lease_of_another_is_taken_over() {
        assert_eq!(decide(Some("b"), "a", LEASE, LEASE), Decision::Acquire);
    }

    #[test]
    fn default_deadline_leaves_margin_before_expiry() {
        let config = ElectionConfig::new("ns", "lease", "me");
        assert!(config.renew_deadline + config.retry_period < config.lease_duration);
    }
}
