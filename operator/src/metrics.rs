//! Prometheus metrics. Every label value comes from a fixed set (controller names, error variant
//! names, phases): never an object name or error text.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::process_metrics::ProcessMetrics;

/// Labels naming the controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `database` or `databaseserver`.
    pub controller: &'static str,
}

/// Labels of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `database` or `databaseserver`.
    pub controller: &'static str,
    /// The error variant (`Error::reason`).
    pub reason: &'static str,
}

/// Labels of the databases-by-phase gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// `Ready`, `Pending`, `Failed` or `Invalid`.
    pub phase: &'static str,
}

/// Labels of the admin-connections gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineLabels {
    /// `postgres` or `mongodb`.
    pub engine: &'static str,
}

/// Where a `Database` stands, for the gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Ready=True.
    Ready,
    /// Waiting for its server.
    Pending,
    /// The last reconcile failed and will be retried.
    Failed,
    /// The spec is invalid.
    Invalid,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Ready => "Ready",
            Phase::Pending => "Pending",
            Phase::Failed => "Failed",
            Phase::Invalid => "Invalid",
        }
    }
}

/// The operator's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    databases: Family<PhaseLabels, Gauge>,
    admin_connections: Family<EngineLabels, Gauge>,
    leader: Gauge,
    phases: Mutex<HashMap<String, Phase>>,
    process: ProcessMetrics,
}

/// Labels of the build-info gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The operator's version (`Cargo.toml`).
    pub version: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("silo");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let databases = Family::<PhaseLabels, Gauge>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        registry.register("databases", "Databases by phase", databases.clone());
        let admin_connections = Family::<EngineLabels, Gauge>::default();
        registry.register(
            "admin_connections",
            "Servers the operator keeps an admin connection pool (client) for",
            admin_connections.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and runs the controllers",
            leader.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "The operator's build, always 1",
            build.clone(),
        );
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        let metrics = Self {
            registry,
            reconciles,
            errors,
            duration,
            databases,
            admin_connections,
            leader,
            phases: Mutex::new(HashMap::new()),
            process: ProcessMetrics::default(),
        };
        // Every phase is exported from the start, at zero.
        metrics.set_phase("", None);
        metrics
    }
}

impl Metrics {
    /// Records one reconcile of `controller` and its outcome.
    pub fn reconciled(
        &self,
        controller: &'static str,
        took: Duration,
        error_reason: Option<&'static str>,
    ) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(reason) = error_reason {
            self.errors
                .get_or_create(&ErrorLabels { controller, reason })
                .inc();
        }
    }

    /// Sets the phase of the database `key` (`None` once it is gone) and refreshes the gauge.
    pub fn set_phase(&self, key: &str, phase: Option<Phase>) {
        let mut phases = self.phases();
        match phase {
            Some(phase) => phases.insert(key.to_string(), phase),
            None => phases.remove(key),
        };
        self.count_phases(&phases);
    }

    /// Keeps the phases of the databases `keep` says yes to only (the others are gone).
    pub fn retain_phases(&self, keep: impl Fn(&str) -> bool) {
        let mut phases = self.phases();
        phases.retain(|key, _| keep(key));
        self.count_phases(&phases);
    }

    /// Sets how many servers of `engine` have an admin connection pool (client) kept.
    pub fn set_admin_connections(&self, engine: &'static str, count: usize) {
        self.admin_connections
            .get_or_create(&EngineLabels { engine })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    fn phases(&self) -> std::sync::MutexGuard<'_, HashMap<String, Phase>> {
        self.phases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count_phases(&self, phases: &HashMap<String, Phase>) {
        for phase in [Phase::Ready, Phase::Pending, Phase::Failed, Phase::Invalid] {
            let count = phases.values().filter(|p| **p == phase).count();
            self.databases
                .get_or_create(&PhaseLabels {
                    phase: phase.label(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Reconciles run so far by `controller`.
    pub fn reconciles(&self, controller: &'static str) -> u64 {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .get()
    }

    /// Records whether this replica leads (and runs the controllers).
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The Prometheus text exposition of every metric, the process metrics read afresh.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut text = String::new();
        encode_registry(&mut text, &self.registry)?;
        if let Some(process) = self.process.refresh() {
            encode_registry(&mut text, process)?;
        }
        encode_eof(&mut text)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_labelled_by_kind_and_phases_are_counted() {
        let metrics = Metrics::default();
        metrics.reconciled("database", Duration::from_millis(20), Some("InvalidSpec"));
        metrics.set_phase("shop/a", Some(Phase::Ready));
        metrics.set_phase("shop/b", Some(Phase::Ready));
        metrics.set_phase("shop/b", Some(Phase::Invalid));
        metrics.set_phase("shop/c", Some(Phase::Pending));
        metrics.set_phase("shop/c", None);
        let text = metrics.encode().unwrap();
        assert!(text.contains(
            "silo_reconcile_errors_total{controller=\"database\",reason=\"InvalidSpec\"} 1"
        ));
        assert!(text.contains("silo_databases{phase=\"Ready\"} 1"));
        assert!(text.contains("silo_databases{phase=\"Invalid\"} 1"));
        assert!(text.contains("silo_databases{phase=\"Pending\"} 0"));
        assert!(!text.contains("shop/"));
    }

    #[test]
    fn build_leader_and_process_metrics_are_exported() {
        let metrics = Metrics::default();
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(&format!(
                "silo_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(text.contains("silo_leader 0"), "{text}");
        metrics.set_leader(true);
        let text = metrics.encode().unwrap();
        assert!(text.contains("silo_leader 1"), "{text}");
        for name in [
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "{name} missing: {text}");
        }
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
