//! MongoDB is optional: no server can be installed from this project's package
//! sources, so tests that need one run only when `SILO_MONGODB_URL` is set.

use std::io::Write;

/// The MongoDB URL when one is configured; otherwise records and prints the
/// skip of `test_name`, and returns `None`.
pub fn mongodb_url(test_name: &str) -> Option<String> {
    match crate::env_file::lookup("SILO_MONGODB_URL") {
        Some(url) if !url.is_empty() => Some(url),
        _ => {
            record_skip(test_name, "SILO_MONGODB_URL is not set (no MongoDB server)");
            None
        }
    }
}

/// Prints a visible skip line and appends it to `target/silo-env/skipped.log`,
/// which `tests/run-tests` counts and prints after the suite.
pub fn record_skip(test_name: &str, reason: &str) {
    let line = format!("SKIPPED {test_name}: {reason}");
    eprintln!("{line}");
    let dir = crate::env_file::env_dir();
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("skipped.log"))
    {
        let _ = writeln!(log, "{line}");
    }
}
