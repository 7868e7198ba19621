//! Files and directories that survive a power cut in one piece: the data directory,
//! the journal's first header, its upgrade, the generated staff token.
//!
//! A file is written under a temporary name, fsynced, renamed into place and its
//! directory fsynced, so the name shows either nothing (or the old file) or the whole
//! new file, never a prefix or a page of zeros. A directory made is fsynced into its
//! parent, so the files inside it cannot outlive their directory's entry.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Creates `path` and any missing parents, each made durable in its parent.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let parent = parent_of(path);
    create_dir_all(parent)?;
    match fs::create_dir(path) {
        Ok(()) => sync_dir(parent),
        // Made meanwhile by someone else, who syncs it.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(error) => Err(error),
    }
}

/// Puts a file holding `bytes` (mode `mode`) at `path`, replacing what is there.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (temporary, mut file) = create_temporary(path, mode)?;
    file.write_all(bytes)?;
    commit(&temporary, &file, path)
}

/// Creates (or truncates) the temporary file that [`commit`] later moves to `path`:
/// `<path>.new`, which a crash may leave behind and the next attempt overwrites.
pub fn create_temporary(path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    let mut name = path.as_os_str().to_owned();
    name.push(".new");
    let temporary = PathBuf::from(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)?;
    Ok((temporary, file))
}

/// Makes `file` (open at `temporary`) durable, then renames it to `path`, durably.
pub fn commit(temporary: &Path, file: &File, path: &Path) -> io::Result<()> {
    file.sync_all()?;
    fs::rename(temporary, path)?;
    sync_dir(parent_of(path))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_whole_files_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        replace_file(&path, b"first", 0o600).unwrap();
        replace_file(&path, b"second", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_leftover_temporary_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        fs::write(
            dir.path().join("journal.new"),
            b"half of an earlier attempt",
        )
        .unwrap();
        replace_file(&path, b"whole", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"whole");
        assert!(!dir.path().join("journal.new").exists());
    }

    #[test]
    fn creates_nested_directories_and_accepts_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/c");
        create_dir_all(&nested).unwrap();
        assert!(nested.is_dir());
        create_dir_all(&nested).unwrap();
        let file = dir.path().join("a/file");
        fs::write(&file, b"").unwrap();
        assert!(create_dir_all(&file).is_err());
    }
}
