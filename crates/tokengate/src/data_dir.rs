//! The data directory's files are the server's alone (SPEC §12): the directory is made
//! `0700`, store files `0600`, and a key file others can read is refused.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) readable by the owner only. An existing
/// directory is left as it is: its mode is the operator's choice.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Makes sure `file` exists with mode `0600` (SQLite gives its `-wal` and `-shm` files
/// the database file's mode), tightening an existing file that is wider.
pub fn ensure_private_file(file: &Path) -> io::Result<()> {
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(file)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode & 0o700))?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The mode bits of a file that let group or others read or write it, if any.
pub fn group_or_other_bits(file: &Path) -> io::Result<Option<u32>> {
    let mode = std::fs::metadata(file)?.permissions().mode() & 0o777;
    Ok((mode & 0o077 != 0).then_some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_and_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let file = dir.join("store.db");
        ensure_private_file(&file).unwrap();
        assert_eq!(group_or_other_bits(&file).unwrap(), None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(group_or_other_bits(&file).unwrap(), Some(0o644));
        ensure_private_file(&file).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
