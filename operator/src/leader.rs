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
use thiserror::Error;

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

/// Why the leader Lease could not be read or written. The variant name is the reason.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum LeaseError {
    /// The Lease's namespace does not exist (out of the cluster, nothing creates the default
    /// `silo-system`).
    #[error(
        "namespace {namespace} does not exist, so the leader Lease {name} cannot be created there; create it (kubectl create namespace {namespace}) or run with --operator-namespace (env POD_NAMESPACE) naming an existing namespace"
    )]
    NamespaceMissing {
        /// The namespace the operator was told to use.
        namespace: String,
        /// The Lease's name.
        name: String,
    },
    /// RBAC refuses the operator the Lease.
    #[error(
        "not allowed to use Lease {namespace}/{name} ({message}); the operator needs get, create and update on leases in its namespace (crds/rbac/clusterrole.yaml)"
    )]
    Forbidden {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// What the API server said.
        message: String,
    },
    /// Any other refusal of the API server.
    #[error("the API server refused the leader Lease: {code} {reason}: {message}")]
    Refused {
        /// HTTP status.
        code: u16,
        /// The API server's reason.
        reason: String,
        /// What the API server said.
        message: String,
    },
    /// No answer from the API server.
    #[error("cannot reach the API server: {0}")]
    Unreachable(String),
}

impl LeaseError {
    /// The reason, for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            LeaseError::NamespaceMissing { .. } => "NamespaceMissing",
            LeaseError::Forbidden { .. } => "Forbidden",
            LeaseError::Refused { .. } => "Refused",
            LeaseError::Unreachable(_) => "Unreachable",
        }
    }

    /// Classifies `error` of a request about the Lease of `config`. Only creating the Lease
    /// can fail with 404: its namespace is missing.
    fn from_kube(error: kube::Error, config: &ElectionConfig, creating: bool) -> Self {
        match error {
            kube::Error::Api(status) if creating && status.code == 404 => {
                LeaseError::NamespaceMissing {
                    namespace: config.namespace.clone(),
                    name: config.name.clone(),
                }
            }
            kube::Error::Api(status) if status.code == 403 => LeaseError::Forbidden {
                namespace: config.namespace.clone(),
                name: config.name.clone(),
                message: status.message,
            },
            kube::Error::Api(status) => LeaseError::Refused {
                code: status.code,
                reason: status.reason,
                message: status.message,
            },
            other => LeaseError::Unreachable(other.to_string()),
        }
    }
}

/// Logs each problem with the Lease once, when it starts, and when it is over; a problem that
/// merely persists is logged at debug only (the elector retries every few seconds).
#[derive(Debug, Default)]
pub struct ProblemLog {
    current: Option<LeaseError>,
}

impl ProblemLog {
    /// Records a failed attempt.
    pub fn failed(&mut self, error: LeaseError) {
        let repeated = self
            .current
            .as_ref()
            .is_some_and(|current| current.reason() == error.reason());
        if repeated {
            tracing::debug!(reason = error.reason(), %error, "leader Lease still unusable");
        } else if matches!(
            error,
            LeaseError::NamespaceMissing { .. } | LeaseError::Forbidden { .. }
        ) {
            // Nothing changes until someone acts: say what to do, once.
            tracing::error!(reason = error.reason(), "{error}");
        } else {
            tracing::warn!(reason = error.reason(), "{error}");
        }
        self.current = Some(error);
    }

    /// Records a successful attempt.
    pub fn succeeded(&mut self) {
        if let Some(previous) = self.current.take() {
            tracing::info!(
                previous = previous.reason(),
                "the leader Lease is usable again"
            );
        }
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
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaseError> {
        let me = self.config.identity.as_str();
        let read = self.api.get_opt(&self.config.name).await;
        let read = read.map_err(|e| LeaseError::from_kube(e, &self.config, false))?;
        let Some(mut lease) = read else {
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
                Err(e) => Err(LeaseError::from_kube(e, &self.config, true)),
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
            // Changed (409) or deleted (404) since it was read: read it again next time.
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(false),
            Err(e) => Err(LeaseError::from_kube(e, &self.config, false)),
        }
    }

    /// Blocks until this candidate holds the lease. A problem is logged once (see
    /// [`ProblemLog`]); the attempts go on, so fixing it (e.g. creating the namespace) is enough.
    pub async fn acquire(&self) {
        let mut problems = ProblemLog::default();
        loop {
            match self.try_acquire_or_renew().await {
                Ok(held) => {
                    problems.succeeded();
                    if held {
                        return;
                    }
                }
                Err(e) => problems.failed(e),
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
                Ok(Err(e)) => {
                    tracing::warn!(reason = e.reason(), "cannot renew the leader Lease: {e}");
                }
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
    pub async fn release(&self) -> Result<(), LeaseError> {
        let unusable = |e| LeaseError::from_kube(e, &self.config, false);
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(unusable)?
        else {
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
            .map_err(unusable)
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

    /// Log lines written while the returned guard lives, without colour codes.
    fn capture_logs() -> (
        std::sync::Arc<Mutex<Vec<u8>>>,
        tracing::subscriber::DefaultGuard,
    ) {
        let buffer = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        (buffer, tracing::subscriber::set_default(subscriber))
    }

    struct LogSink(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for LogSink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn api_status(code: u16, reason: &str, message: &str, kind: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": { "kind": kind }, "code": code,
        }))
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_lease_namespace_is_reported_once_with_the_fix_and_waited_for() {
        use axum::http::{Method, Request, Response, StatusCode};
        use kube::client::Body;
        let (logs, _guard) = capture_logs();
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let elector = LeaderElector::new(
            Client::new(service, "default"),
            ElectionConfig::new("silo-system", "silo-operator-leader", "me"),
        );
        let api_server = tokio::spawn(async move {
            // Ten attempts while the namespace is missing, then someone creates it.
            for attempt in 0..=10 {
                let (request, respond) = handle.next_request().await.expect("a read");
                assert_eq!(request.method(), Method::GET);
                let missing = api_status(
                    404,
                    "NotFound",
                    "leases.coordination.k8s.io \"silo-operator-leader\" not found",
                    "leases",
                );
                respond.send_response(
                    Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Body::from(missing))
                        .unwrap(),
                );
                let (request, respond) = handle.next_request().await.expect("a create");
                assert_eq!(request.method(), Method::POST);
                let response = if attempt < 10 {
                    let body = api_status(
                        404,
                        "NotFound",
                        "namespaces \"silo-system\" not found",
                        "namespaces",
                    );
                    Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Body::from(body))
                } else {
                    let body = request.into_body().collect_bytes().await.unwrap();
                    Response::builder()
                        .status(StatusCode::CREATED)
                        .body(Body::from(body.to_vec()))
                };
                respond.send_response(response.unwrap());
            }
        });
        tokio::time::timeout(Duration::from_secs(120), elector.acquire())
            .await
            .expect("the elector takes the lease once the namespace exists");
        api_server.await.unwrap();

        let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = logs.lines().collect();
        let errors: Vec<&&str> = lines.iter().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{logs}");
        assert!(
            errors[0].contains("namespace silo-system does not exist")
                && errors[0].contains("kubectl create namespace silo-system")
                && errors[0].contains("--operator-namespace"),
            "{logs}"
        );
        assert!(!logs.contains("WARN"), "{logs}");
        assert!(!logs.contains("Status {"), "no debug dump: {logs}");
        assert!(logs.contains("the leader Lease is usable again"), "{logs}");
    }

    #[test]
    fn default_deadline_leaves_margin_before_expiry() {
        let config = ElectionConfig::new("ns", "lease", "me");
        assert!(config.renew_deadline + config.retry_period < config.lease_duration);
    }
}
