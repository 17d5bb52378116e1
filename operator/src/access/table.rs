//! The report as a table: one row per Service, then why each database that is not isolated
//! is not.

use super::report::{AccessReport, Reach, ServiceAccess};

const HEADERS: [&str; 7] = [
    "SERVICE",
    "PORT",
    "REACHABLE FROM",
    "NOT REACHABLE FROM",
    "DATABASE",
    "DATABASE REACHABLE FROM",
    "ISOLATED",
];

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(",")
    }
}

fn row(service: &ServiceAccess) -> [String; 7] {
    let (database, database_callers, isolated) = match &service.database {
        Some(db) => {
            let port = db.port.map(|p| format!(", port {p}")).unwrap_or_default();
            let callers = match db.placement {
                "external" | "unknown" => "(no pods to evaluate)".to_string(),
                _ => list(&db.callers.allowed),
            };
            (
                format!("{} ({}{port})", db.name, db.placement),
                callers,
                format!(
                    "{} ({})",
                    if db.isolated { "True" } else { "False" },
                    db.reason
                ),
            )
        }
        None => ("-".into(), "-".into(), "-".into()),
    };
    let Reach { allowed, denied } = &service.callers;
    [
        format!("{}/{}", service.namespace, service.name),
        service.port.to_string(),
        list(allowed),
        list(denied),
        database,
        database_callers,
        isolated,
    ]
}

/// The report as text.
pub fn render(report: &AccessReport) -> String {
    let rows: Vec<[String; 7]> = report.services.iter().map(row).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let headers = HEADERS.map(str::to_string);
    for cells in std::iter::once(&headers).chain(&rows) {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    for service in &report.services {
        if let Some(db) = service.database.as_ref().filter(|db| !db.isolated) {
            text.push_str(&format!(
                "\n{}/{}: {}",
                service.namespace, service.name, db.message
            ));
        }
    }
    if text.ends_with('\n') {
        text
    } else {
        text + "\n"
    }
}
