//! Function code on disk: fetched from the store by hash and unpacked once per hash into
//! `code/<sha256>/`. Unpacking goes to a private temporary folder that is renamed into place,
//! so a crash or a concurrent cold start never leaves or sees a half-written folder.

use std::io::{Cursor, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nimbus_core::{CodeSha256, Error, Result, limits};
use nimbus_store::Store;

pub(crate) struct CodeCache {
    root: PathBuf,
    store: Arc<dyn Store>,
}

impl CodeCache {
    pub(crate) fn new(root: PathBuf, store: Arc<dyn Store>) -> Self {
        Self { root, store }
    }

    /// The folder holding the code with this hash, unpacking it first if needed.
    pub(crate) async fn unpacked(&self, sha: &CodeSha256) -> Result<PathBuf> {
        let target = self.root.join(sha.to_hex());
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            return Ok(target);
        }
        let zip = self
            .store
            .get_code(sha)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::Service(format!("code {sha} is not in the store")))?;
        if CodeSha256::of(&zip) != *sha {
            return Err(Error::Service(format!(
                "code {sha} in the store does not match its hash"
            )));
        }
        let root = self.root.clone();
        let target_for_task = target.clone();
        tokio::task::spawn_blocking(move || unpack_into_place(&zip, &root, &target_for_task))
            .await
            .map_err(|e| Error::Service(format!("unpacking code {sha} failed: {e}")))??;
        Ok(target)
    }
}

fn unpack_into_place(zip: &[u8], root: &Path, target: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::Service(format!("cannot unpack code: {e}"));
    std::fs::create_dir_all(root).map_err(io)?;
    let staging = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(root)
        .map_err(io)?;
    unpack(zip, staging.path())?;
    match std::fs::rename(staging.path(), target) {
        Ok(()) => {
            // The folder now lives on under its final name.
            let _ = staging.keep();
            Ok(())
        }
        // Another cold start won the race; its copy is identical.
        Err(_) if target.is_dir() => Ok(()),
        Err(e) => Err(io(e)),
    }
}

/// Writes every entry under `dir`, refusing escapes and counting the bytes really written
/// against Lambda's unzipped limit.
fn unpack(zip: &[u8], dir: &Path) -> Result<()> {
    let invalid = |m: String| Error::InvalidZipFile(m);
    let io = |e: std::io::Error| Error::Service(format!("cannot unpack code: {e}"));
    let mut archive =
        zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| invalid(format!("corrupt zip: {e}")))?;
    let mut budget = limits::MAX_UNZIPPED_CODE_BYTES;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| invalid(format!("corrupt zip: {e}")))?;
        let Some(relative) = entry.enclosed_name() else {
            return Err(invalid(format!(
                "entry '{}' escapes its folder",
                entry.name()
            )));
        };
        let path = dir.join(&relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(io)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file = std::fs::File::create(&path).map_err(io)?;
        let mut limited = (&mut entry).take(budget + 1);
        let mut buffer = [0u8; 64 * 1024];
        loop {
            let n = limited
                .read(&mut buffer)
                .map_err(|e| invalid(format!("corrupt zip: {e}")))?;
            if n == 0 {
                break;
            }
            let n64 = n as u64;
            if n64 > budget {
                return Err(invalid(format!(
                    "code unpacks beyond {} bytes",
                    limits::MAX_UNZIPPED_CODE_BYTES
                )));
            }
            budget -= n64;
            file.write_all(&buffer[..n]).map_err(io)?;
        }
        let mode = match entry.unix_mode() {
            Some(mode) => mode & 0o777,
            // Zips made without unix modes still need an executable bootstrap.
            None if relative.as_os_str() == "bootstrap" => 0o755,
            None => 0o644,
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o400))
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_of(entries: &[(&str, &[u8], Option<u32>)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, body, mode) in entries {
            let mut options = zip::write::SimpleFileOptions::default();
            if let Some(mode) = mode {
                options = options.unix_permissions(*mode);
            }
            writer.start_file(*name, options).unwrap();
            writer.write_all(body).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn unpacks_with_modes_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_of(&[
            ("bootstrap", b"#!/bin/sh", Some(0o755)),
            ("lib/a.py", b"x", None),
        ]);
        unpack(&zip, dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("bootstrap"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(std::fs::read(dir.path().join("lib/a.py")).unwrap(), b"x");

        let evil = zip_of(&[("../evil", b"x", None)]);
        let other = tempfile::tempdir().unwrap();
        assert!(matches!(
            unpack(&evil, other.path()),
            Err(Error::InvalidZipFile(_))
        ));
    }

    #[test]
    fn moves_into_place_once() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("abc");
        let zip = zip_of(&[("a", b"1", None)]);
        unpack_into_place(&zip, root.path(), &target).unwrap();
        unpack_into_place(&zip, root.path(), &target).unwrap();
        assert_eq!(std::fs::read(target.join("a")).unwrap(), b"1");
        let leftovers = std::fs::read_dir(root.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no staging folder is left behind");
    }
}
