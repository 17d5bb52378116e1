//! The standard process metrics (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`), read from `/proc` at
//! each scrape. Elsewhere than Linux they are left out.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on every Linux port).
const TICKS_PER_SECOND: f64 = 100.0;

/// The process metrics, in a registry of their own (they carry no `silo_` prefix).
#[derive(Debug)]
pub struct ProcessMetrics {
    registry: Registry,
    resident_memory: Gauge,
    cpu_seconds: Counter<f64, AtomicU64>,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge<f64, AtomicU64>,
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let resident_memory = Gauge::default();
        let cpu_seconds = Counter::<f64, AtomicU64>::default();
        let open_fds = Gauge::default();
        let max_fds = Gauge::default();
        let start_time = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            resident_memory.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time spent in seconds",
            cpu_seconds.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors",
            open_fds.clone(),
        );
        registry.register(
            "process_max_fds",
            "Most file descriptors allowed",
            max_fds.clone(),
        );
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            start_time.clone(),
        );
        Self {
            registry,
            resident_memory,
            cpu_seconds,
            open_fds,
            max_fds,
            start_time,
        }
    }
}

impl ProcessMetrics {
    /// Reads the current values; `None` where `/proc` is not there to read.
    pub fn refresh(&self) -> Option<&Registry> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let times = StatTimes::parse(&stat)?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let rss_kib = field_value(&status, "VmRSS:")?;
        self.resident_memory
            .set(i64::try_from(rss_kib.saturating_mul(1024)).unwrap_or(i64::MAX));
        let cpu = times.cpu_ticks as f64 / TICKS_PER_SECOND;
        let counted = self.cpu_seconds.get();
        if cpu > counted {
            self.cpu_seconds.inc_by(cpu - counted);
        }
        let open = std::fs::read_dir("/proc/self/fd")
            .map(Iterator::count)
            .unwrap_or(0);
        self.open_fds.set(i64::try_from(open).unwrap_or(i64::MAX));
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        if let Some(max) = max_open_files(&limits) {
            self.max_fds.set(i64::try_from(max).unwrap_or(i64::MAX));
        }
        let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        if let Some(boot_time) = field_value(&boot, "btime") {
            self.start_time
                .set(boot_time as f64 + times.start_ticks as f64 / TICKS_PER_SECOND);
        }
        Some(&self.registry)
    }
}

/// CPU and start times from `/proc/self/stat`.
#[derive(Debug, PartialEq, Eq)]
struct StatTimes {
    cpu_ticks: u64,
    start_ticks: u64,
}

impl StatTimes {
    /// Fields 14 (utime), 15 (stime) and 22 (starttime); the command name (field 2) may hold
    /// spaces and parentheses, so counting starts after its closing parenthesis.
    fn parse(stat: &str) -> Option<Self> {
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // `after_name` starts at field 3.
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            cpu_ticks: field(14)? + field(15)?,
            start_ticks: field(22)?,
        })
    }
}

/// The first number after `name` at the start of a line of `text` (`VmRSS:   1234 kB`).
fn field_value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft limit of open files in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_read_past_a_command_name_with_spaces() {
        let stat = "4242 (silo (op) x) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 8 0 12345 1000 200";
        assert_eq!(
            StatTimes::parse(stat),
            Some(StatTimes {
                cpu_ticks: 300,
                start_ticks: 12345
            })
        );
    }

    #[test]
    fn limits_and_status_fields_are_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 1048576              files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            field_value("Name:\tx\nVmRSS:\t   2048 kB\n", "VmRSS:"),
            Some(2048)
        );
    }

    #[test]
    fn this_process_reports_memory_cpu_and_descriptors() {
        let metrics = ProcessMetrics::default();
        assert!(metrics.refresh().is_some(), "/proc is readable on Linux");
        assert!(metrics.resident_memory.get() > 0);
        assert!(metrics.open_fds.get() > 0);
        assert!(metrics.max_fds.get() >= metrics.open_fds.get());
        assert!(metrics.start_time.get() > 1_600_000_000.0);
    }
}
