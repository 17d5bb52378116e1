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

/// How long the next renewal may take: what is left of `renew_deadline` since the last
/// successful one, or `None` when nothing is left and the leader must step down.
pub fn renewal_budget(renew_deadline: Duration, since_last_renewal: Duration) -> Option<Duration> {
    renew_deadline
        .checked_sub(since_last_renewal)
        .filter(|left| !left.is_zero())
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
    ///
    /// Each attempt is bounded by what is left of the deadline: the client has no read timeout,
    /// so a request to an API server that stopped answering would otherwise never return and
    /// this replica would keep acting after a standby took over.
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let Some(budget) = renewal_budget(self.config.renew_deadline, last_renewal.elapsed())
            else {
                return;
            };
            match tokio::time::timeout(budget, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => last_renewal = tokio::time::Instant::now(),
                Ok(Ok(false)) => return,
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the leader Lease"),
                Err(_) => {
                    tracing::warn!(
                        "renewing the leader Lease did not finish within the renew deadline"
                    );
                    return;
                }
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
    fn a_renewal_may_use_only_what_is_left_of_the_deadline() {
        let deadline = Duration::from_secs(10);
        assert_eq!(
            renewal_budget(deadline, Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(renewal_budget(deadline, Duration::ZERO), Some(deadline));
    }

    #[test]
    fn a_leader_past_its_renew_deadline_steps_down() {
        let deadline = Duration::from_secs(10);
        assert_eq!(renewal_budget(deadline, deadline), None);
        assert_eq!(renewal_budget(deadline, Duration::from_secs(11)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_that_never_gets_an_answer_ends_leadership() {
        use axum::http::{Request, Response};
        use kube::client::Body;
        // The API server accepts the request and never answers.
        let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let elector = LeaderElector::new(
            Client::new(service, "default"),
            ElectionConfig::new("default", "silo-operator", "me"),
        );
        let started = tokio::time::Instant::now();
        let held = tokio::time::timeout(Duration::from_secs(300), elector.hold()).await;
        assert!(held.is_ok(), "hold() kept waiting on a hung renewal");
        // Virtual time (the clock is paused), so this is exact, not a timing measurement.
        let config = elector.config();
        assert!(started.elapsed() <= config.retry_period + config.renew_deadline);
    }

    #[test]
    fn default_deadline_leaves_margin_before_expiry() {
        let config = ElectionConfig::new("ns", "lease", "me");
        assert!(config.renew_deadline + config.retry_period < config.lease_duration);
    }
}
