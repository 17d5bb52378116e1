//! The report as a table: one row per Service, callers of its namespace by name alone and
//! other pods counted (the JSON names them), then why each database that is not isolated is
//! not.

use super::report::{AccessReport, POD_SUFFIX, ServiceAccess};

const HEADERS: [&str; 8] = [
    "NAMESPACE",
    "SERVICE",
    "PORT",
    "REACHABLE FROM",
    "NOT REACHABLE FROM",
    "DATABASE",
    "DATABASE REACHABLE FROM",
    "ISOLATED",
];

/// Callers as the table shows them: those of `namespace` without it.
fn callers<'a>(items: impl IntoIterator<Item = &'a String>, namespace: &str) -> Vec<String> {
    let prefix = format!("{namespace}/");
    items
        .into_iter()
        .map(|caller| caller.strip_prefix(&prefix).unwrap_or(caller).to_string())
        .collect()
}

fn list(items: Vec<String>) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(",")
    }
}

/// Silo services by name, other pods only counted (the JSON names them).
fn summary(list_of: &[String], namespace: &str) -> String {
    let (pods, services): (Vec<&String>, Vec<&String>) =
        list_of.iter().partition(|c| c.ends_with(POD_SUFFIX));
    let shown = list(callers(services, namespace));
    match (pods.len(), shown.as_str()) {
        (0, _) => shown,
        (1, "-") => "(+1 pod)".to_string(),
        (1, _) => format!("{shown} (+1 pod)"),
        (count, "-") => format!("(+{count} pods)"),
        (count, _) => format!("{shown} (+{count} pods)"),
    }
}

fn row(service: &ServiceAccess) -> [String; 8] {
    let ns = service.namespace.as_str();
    let (database, database_callers, isolated) = match &service.database {
        Some(db) => {
            let port = db.port.map(|p| format!(", {p}")).unwrap_or_default();
            let reached = match db.placement {
                "external" | "unknown" => "(no pods to evaluate)".to_string(),
                _ => summary(&db.callers.allowed, ns),
            };
            (
                format!("{} ({}{port})", db.name, db.placement),
                reached,
                format!(
                    "{} ({})",
                    if db.isolated { "True" } else { "False" },
                    db.reason
                ),
            )
        }
        None => ("-".into(), "-".into(), "-".into()),
    };
    [
        ns.to_string(),
        service.name.clone(),
        service.port.to_string(),
        summary(&service.callers.allowed, ns),
        summary(&service.callers.denied, ns),
        database,
        database_callers,
        isolated,
    ]
}

/// The report as text.
pub fn render(report: &AccessReport) -> String {
    let rows: Vec<[String; 8]> = report.services.iter().map(row).collect();
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
