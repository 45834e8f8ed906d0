//! Turns what a user points `nimbus fn deploy` at into a function zip: a zip file is taken
//! as is; a folder, or a single other file (such as a compiled `bootstrap`), is zipped in
//! memory, keeping the executable bits a `bootstrap` needs.

use std::io::{Cursor, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The bytes every zip file starts with.
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Reads `path` as a zip file, or zips the folder or single file it names.
pub fn function_zip(path: &Path) -> anyhow::Result<Vec<u8>> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if metadata.is_dir() {
        let mut files = Vec::new();
        collect_files(path, path, &mut files)?;
        files.sort();
        return zip_files(path, files);
    }
    if !metadata.is_file() {
        bail!("{} is neither a file nor a folder", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.starts_with(ZIP_MAGIC) {
        return Ok(bytes);
    }
    let (Some(root), Some(name)) = (path.parent(), path.file_name()) else {
        bail!("{} has no file name", path.display());
    };
    zip_files(root, vec![PathBuf::from(name)])
}

fn zip_files(root: &Path, files: Vec<PathBuf>) -> anyhow::Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for relative in files {
        let absolute = root.join(&relative);
        let mode = file_mode(&absolute)?;
        let options = zip::write::SimpleFileOptions::default().unix_permissions(mode);
        let name = relative.to_string_lossy().replace('\\', "/");
        writer.start_file(name, options)?;
        let body = std::fs::read(&absolute)
            .with_context(|| format!("cannot read {}", absolute.display()))?;
        writer.write_all(&body)?;
    }
    Ok(writer.finish()?.into_inner())
}

fn collect_files(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        if name == "__pycache__" || name == ".git" || name == "node_modules/.cache" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(root, &path, files)?;
        } else if kind.is_file() || kind.is_symlink() && path.is_file() {
            files.push(path.strip_prefix(root)?.to_path_buf());
        }
    }
    Ok(())
}

fn file_mode(path: &Path) -> anyhow::Result<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    Ok(if mode & 0o111 != 0 { 0o755 } else { 0o644 })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_folder_is_zipped_with_its_executable_bits() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bootstrap"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("bootstrap"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        std::fs::write(dir.path().join("lib/data.txt"), "x").unwrap();

        let zip = function_zip(dir.path()).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
        let bootstrap = archive.by_name("bootstrap").unwrap();
        assert_eq!(bootstrap.unix_mode().unwrap() & 0o777, 0o755);
        drop(bootstrap);
        let data = archive.by_name("lib/data.txt").unwrap();
        assert_eq!(data.unix_mode().unwrap() & 0o777, 0o644);
    }

    #[test]
    fn a_single_executable_is_zipped_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap");
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();

        let zip = function_zip(&path).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(zip.clone())).unwrap();
        assert_eq!(archive.len(), 1);
        assert_eq!(
            archive.by_name("bootstrap").unwrap().unix_mode().unwrap() & 0o777,
            0o755
        );

        // A zip is passed through untouched.
        let zip_path = dir.path().join("code.zip");
        std::fs::write(&zip_path, &zip).unwrap();
        assert_eq!(function_zip(&zip_path).unwrap(), zip);
    }
}
