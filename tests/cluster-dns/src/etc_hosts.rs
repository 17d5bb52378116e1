//! The block of records this crate keeps in the host's /etc/hosts, so that processes on the
//! host (the operator run out of the cluster) resolve cluster names without the machine's
//! resolver configuration ever changing. Every line outside the block stays as it was.

use std::io;
use std::path::Path;

use crate::Error;
use crate::replace_file::replace_file;

/// The line that opens the block.
pub const BLOCK_BEGIN: &str = "# BEGIN silo-cluster-dns";
/// The line that closes the block.
pub const BLOCK_END: &str = "# END silo-cluster-dns";

/// `existing` with its block holding `lines` instead: where the first old block was, or at
/// the end when there was none.
pub fn with_block(existing: &str, lines: &str) -> String {
    let rest = RestOfFile::parse(existing);
    let at = rest.first_block_at.unwrap_or(rest.lines.len());
    let mut text: String = rest.lines[..at].concat();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(BLOCK_BEGIN);
    text.push('\n');
    text.push_str(lines);
    if !lines.is_empty() && !lines.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(BLOCK_END);
    text.push('\n');
    text.push_str(&rest.lines[at..].concat());
    text
}

/// `existing` without the block; unchanged, byte for byte, when it holds no marker line.
pub fn without_block(existing: &str) -> String {
    RestOfFile::parse(existing).lines.concat()
}

/// Puts `lines` into the block of the hosts file at `path`, replacing the file atomically.
/// A missing file is created.
pub fn write_block(path: &Path, lines: &str) -> Result<(), Error> {
    let existing = read_hosts(path)?;
    let updated = with_block(&existing, lines);
    if updated != existing {
        replace_file(path, &updated).map_err(|source| Error::WriteFile {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Removes the block from the hosts file at `path`; returns whether there was one.
pub fn remove_block(path: &Path) -> Result<bool, Error> {
    let existing = read_hosts(path)?;
    let updated = without_block(&existing);
    if updated == existing {
        return Ok(false);
    }
    replace_file(path, &updated).map_err(|source| Error::WriteFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(true)
}

fn read_hosts(path: &Path) -> Result<String, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(Error::ReadFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A hosts file split into the lines outside any block (each with its own line ending).
struct RestOfFile<'a> {
    lines: Vec<&'a str>,
    /// Index into `lines` where the first complete block stood.
    first_block_at: Option<usize>,
}

impl<'a> RestOfFile<'a> {
    /// A block runs from a BEGIN line to the next END line. A marker without its partner
    /// (a hand edit) is dropped alone: deleting up to the end of the file, or up to some
    /// later END, could take the machine's own entries with it.
    fn parse(text: &'a str) -> Self {
        let mut rest = RestOfFile {
            lines: Vec::new(),
            first_block_at: None,
        };
        let mut open_block: Option<Vec<&'a str>> = None;
        for line in text.split_inclusive('\n') {
            let marker = line.trim_end();
            if marker == BLOCK_BEGIN {
                if let Some(unclosed) = open_block.replace(Vec::new()) {
                    rest.lines.extend(unclosed);
                }
            } else if marker == BLOCK_END {
                if open_block.take().is_some() {
                    rest.first_block_at.get_or_insert(rest.lines.len());
                }
            } else if let Some(block) = open_block.as_mut() {
                block.push(line);
            } else {
                rest.lines.push(line);
            }
        }
        rest.lines.extend(open_block.unwrap_or_default());
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::{with_block, without_block};

    const MACHINE: &str = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n";
    const RECORDS: &str = "10.96.0.10 web.shop.svc.cluster.local web.shop.svc\n";

    #[test]
    fn block_is_appended_after_the_machines_own_lines() {
        assert_eq!(
            with_block(MACHINE, RECORDS),
            format!("{MACHINE}# BEGIN silo-cluster-dns\n{RECORDS}# END silo-cluster-dns\n")
        );
    }

    #[test]
    fn block_is_replaced_in_place_and_the_lines_around_it_are_kept() {
        let before = with_block(MACHINE, RECORDS);
        let file = format!("{before}192.0.2.9 added-later\n");
        let updated = with_block(&file, "10.96.0.11 api.shop.svc\n");
        assert_eq!(
            updated,
            format!(
                "{MACHINE}# BEGIN silo-cluster-dns\n10.96.0.11 api.shop.svc\n\
                 # END silo-cluster-dns\n192.0.2.9 added-later\n"
            )
        );
    }

    #[test]
    fn removing_the_block_restores_the_file_byte_for_byte() {
        let file = "# comment\n127.0.0.1 localhost\n\n10.0.0.1   spaced\tname\n";
        assert_eq!(without_block(&with_block(file, RECORDS)), file);
        let unterminated = "127.0.0.1 localhost";
        assert_eq!(without_block(unterminated), unterminated);
    }

    #[test]
    fn file_without_a_final_newline_gets_one_before_the_block() {
        let updated = with_block("127.0.0.1 localhost", RECORDS);
        assert!(updated.starts_with("127.0.0.1 localhost\n# BEGIN silo-cluster-dns\n"));
    }

    #[test]
    fn empty_records_leave_an_empty_block() {
        assert_eq!(
            with_block("", ""),
            "# BEGIN silo-cluster-dns\n# END silo-cluster-dns\n"
        );
    }

    #[test]
    fn every_block_is_removed_and_stray_markers_drop_alone() {
        let file = format!(
            "127.0.0.1 localhost\n# BEGIN silo-cluster-dns\n{RECORDS}# END silo-cluster-dns\n\
             # END silo-cluster-dns\n192.0.2.1 mine\n# BEGIN silo-cluster-dns\n192.0.2.2 also-mine\n"
        );
        assert_eq!(
            without_block(&file),
            "127.0.0.1 localhost\n192.0.2.1 mine\n192.0.2.2 also-mine\n"
        );
    }

    #[test]
    fn markers_with_crlf_endings_are_recognised() {
        let file =
            "127.0.0.1 localhost\r\n# BEGIN silo-cluster-dns\r\nx y\r\n# END silo-cluster-dns\r\n";
        assert_eq!(without_block(file), "127.0.0.1 localhost\r\n");
    }
}
