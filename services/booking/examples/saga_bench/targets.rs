//! The targets of the saga benchmark, each beside what this run measured and, where it helps,
//! what the floor measured in the same run.

use crate::figures::Phase;

/// Unbounded saga throughput, as a share of the saga floor's, at least.
const THROUGHPUT_SHARE: f64 = 75.0;
/// Saga latency limits at the offered rates they are set for: (rate, percentile, ms).
const LATENCY_LIMITS: [(f64, f64, f64); 3] = [
    (200.0, 50.0, 10.0),
    (200.0, 99.0, 25.0),
    (500.0, 99.0, 50.0),
];

fn at(phases: &[Phase], rate: Option<f64>) -> Option<&Phase> {
    phases.iter().find(|phase| phase.rate == rate)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}

/// Prints each target with the measured figure, the floor's, and whether it is met.
pub fn print_targets(saga: &[Phase], floor: &[Phase]) {
    println!(
        "targets (saga = the three services over HTTP and NATS; floor = the same transactions alone):"
    );
    match (at(saga, None), at(floor, None)) {
        (Some(saga), Some(floor)) => {
            let share = 100.0 * saga.saga_throughput / floor.saga_throughput;
            println!(
                "  unbounded saga throughput / saga floor  {share:6.1} %  (target >= {THROUGHPUT_SHARE} %)  {}   ({:.1} / {:.1} sagas/s)",
                verdict(share >= THROUGHPUT_SHARE),
                saga.saga_throughput,
                floor.saga_throughput
            );
        }
        _ => println!(
            "  unbounded saga throughput / saga floor: not run (add `unbounded` to --rates)"
        ),
    }
    for (rate, p, limit) in LATENCY_LIMITS {
        let name = format!("saga p{p} at {rate}/s");
        let Some(phase) = at(saga, Some(rate)) else {
            println!("  {name:<40}: not run (add {rate} to --rates)");
            continue;
        };
        let of = |phase: &Phase| {
            if p == 50.0 {
                phase.saga_p50
            } else {
                phase.saga_p99
            }
        };
        let floor = at(floor, Some(rate)).map_or(f64::NAN, of);
        println!(
            "  {name:<40}{:7.2} ms (target <= {limit} ms)  {}   (floor {floor:.2} ms)",
            of(phase),
            verdict(of(phase) <= limit),
        );
    }
}
