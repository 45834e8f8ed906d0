//! Folders the invoker creates and must be able to remove whatever a function did to them:
//! each instance's own folder (its `TMPDIR` and `HOME`, its view of its code: see
//! `isolation::Sandbox`), and code folders that were sealed read-only but never made it into
//! place.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Creates a fresh folder, private to the invoker's user, under `root` for one instance of
/// `function`.
pub(crate) fn create(root: &Path, function: &str) -> io::Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{function}-"))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(root)?;
    Ok(dir.keep())
}

/// Removes `path` and everything under it. A function may have left read-only or
/// inaccessible folders behind, so every folder is made writable before it is emptied.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(meta) if !meta.is_dir() => return std::fs::remove_file(path),
        Ok(_) => {}
    }
    open_up(path)?;
    std::fs::remove_dir_all(path)
}

/// Gives the owner full access to `dir` and every folder below it (symlinks not followed).
fn open_up(dir: &Path) -> io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            open_up(&entry.path())?;
        }
    }
    Ok(())
}

/// Makes `dir` and every folder below it read-only, so that no instance can change code that
/// other instances share.
pub(crate) fn seal(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            seal(&entry.path())?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555))
}

/// Removes what a crashed invoker left in `root`: entries whose name starts with `prefix`, or
/// every entry when `prefix` is empty.
pub(crate) fn remove_leftovers(root: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(prefix)
            && let Err(error) = remove_tree(&entry.path())
        {
            tracing::warn!(path = %entry.path().display(), %error, "cannot remove a leftover folder");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_trees_a_function_locked_down() {
        let root = tempfile::tempdir().unwrap();
        let dir = create(root.path(), "f").unwrap();
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/file"), "x").unwrap();
        std::fs::set_permissions(dir.join("a/b"), std::fs::Permissions::from_mode(0o000)).unwrap();
        std::fs::set_permissions(dir.join("a"), std::fs::Permissions::from_mode(0o500)).unwrap();
        remove_tree(&dir).unwrap();
        assert!(!dir.exists());
        remove_tree(&dir).unwrap();
    }

    #[test]
    fn sealed_folders_are_read_only_and_still_removable() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("code");
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(dir.join("lib/a.py"), "x").unwrap();
        seal(&dir).unwrap();
        let mode = std::fs::metadata(dir.join("lib"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o555);
        remove_leftovers(root.path(), "co");
        assert!(!dir.exists());
    }
}
