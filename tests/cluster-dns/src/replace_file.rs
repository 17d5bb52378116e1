//! Replacing a file so that its readers see the old or the new contents, never a part.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `contents` to a temporary file beside `path` and renames it over `path`, keeping
/// the old file's permissions. The temporary name starts with a dot: dnsmasq's `--hostsdir`
/// ignores dotfiles, so it never reads a half-written one.
pub fn replace_file(path: &Path, contents: &str) -> io::Result<()> {
    let temp = temp_path(path)?;
    let permissions = match fs::metadata(path) {
        Ok(metadata) => Some(metadata.permissions()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let written = write_synced(&temp, contents, permissions);
    let renamed = written.and_then(|()| fs::rename(&temp, path));
    match renamed {
        Ok(()) => Ok(()),
        // A bind-mounted file (a container's /etc/hosts) cannot be renamed over; writing it
        // in place is the best there is.
        Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
            let _ = fs::remove_file(&temp);
            fs::write(path, contents)
        }
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(".silo-cluster-dns.tmp");
    Ok(path.with_file_name(temp_name))
}

fn write_synced(
    path: &Path,
    contents: &str,
    permissions: Option<fs::Permissions>,
) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(contents.as_bytes())?;
    if let Some(permissions) = permissions {
        file.set_permissions(permissions)?;
    }
    file.sync_all()
}
