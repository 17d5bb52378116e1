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
pub fn print_targets<'a>(saga: &'a [Phase], floor: &'a [Phase]) {
    println!(
        "targets (saga = the three services over HTTP and NATS; floor = the same transactions alone):"
    );
    let unbounded = |phases: &'a [Phase]| phases.iter().filter(|phase| phase.rate.is_none());
    let rounds: Vec<(f64, f64)> = unbounded(saga)
        .zip(unbounded(floor))
        .map(|(saga, floor)| (saga.saga_throughput, floor.saga_throughput))
        .collect();
    let mut shares: Vec<f64> = rounds
        .iter()
        .map(|(saga, floor)| 100.0 * saga / floor)
        .collect();
    shares.sort_by(f64::total_cmp);
    match shares.get(shares.len() / 2) {
        Some(&share) => {
            let each: Vec<String> = rounds
                .iter()
                .map(|(saga, floor)| format!("{saga:.1} / {floor:.1}"))
                .collect();
            println!(
                "  unbounded saga throughput / saga floor  {share:6.1} %  (target >= {THROUGHPUT_SHARE} %)  {}   (median of {} rounds, sagas/s: {})",
                verdict(share >= THROUGHPUT_SHARE),
                rounds.len(),
                each.join(", ")
            );
        }
        None => println!(
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
        let floor = at(floor, Some(rate));
        let offered = |phase: &Phase| {
            if phase.sustained() {
                ""
            } else {
                ", rate not sustained"
            }
        };
        println!(
            "  {name:<40}{:7.2} ms (target <= {limit} ms)  {}{}   (floor {:.2} ms{})",
            of(phase),
            verdict(of(phase) <= limit),
            offered(phase),
            floor.map_or(f64::NAN, of),
            floor.map_or("", offered),
        );
    }
}
