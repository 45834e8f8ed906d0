//! Function code on disk: fetched from the store by hash and unpacked once per hash into
//! `code/<sha256>/`. Unpacking goes to a private temporary folder that is sealed read-only and
//! renamed into place, so a crash or a concurrent cold start never leaves or sees a
//! half-written folder, and no instance can change code that others run.

use std::collections::HashMap;
use std::io::{Cursor, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nimbus_core::{CodeSha256, Error, Result, limits};
use nimbus_store::Store;

use crate::scratch;

const STAGING_PREFIX: &str = ".unpacking-";

pub(crate) struct CodeCache {
    root: PathBuf,
    store: Arc<dyn Store>,
    /// One unpacking per hash at a time: a burst of cold starts of new code fetches and
    /// unpacks it once, the others wait for that folder.
    unpacking: Mutex<HashMap<CodeSha256, Arc<tokio::sync::Mutex<()>>>>,
}

impl CodeCache {
    /// A cache in `root`, rid of the staging folders a crashed invoker may have left.
    pub(crate) fn open(root: PathBuf, store: Arc<dyn Store>) -> Self {
        scratch::remove_leftovers(&root, STAGING_PREFIX);
        Self {
            root,
            store,
            unpacking: Mutex::new(HashMap::new()),
        }
    }

    /// The folder holding the code with this hash, unpacking it first if needed.
    pub(crate) async fn unpacked(&self, sha: &CodeSha256) -> Result<PathBuf> {
        let target = self.root.join(sha.to_hex());
        if is_dir(&target).await {
            return Ok(target);
        }
        let gate = self.lock_unpacking().entry(*sha).or_default().clone();
        let unpacked = {
            let _turn = gate.lock().await;
            if is_dir(&target).await {
                Ok(())
            } else {
                self.fetch_and_unpack(sha, &target).await
            }
        };
        self.lock_unpacking().remove(sha);
        unpacked.map(|()| target)
    }

    async fn fetch_and_unpack(&self, sha: &CodeSha256, target: &Path) -> Result<()> {
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
        let target = target.to_path_buf();
        tokio::task::spawn_blocking(move || unpack_into_place(&zip, &root, &target))
            .await
            .map_err(|e| Error::Service(format!("unpacking code {sha} failed: {e}")))?
    }

    fn lock_unpacking(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<CodeSha256, Arc<tokio::sync::Mutex<()>>>> {
        crate::sync::lock(&self.unpacking)
    }
}

async fn is_dir(path: &Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir())
}

fn unpack_into_place(zip: &[u8], root: &Path, target: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::Service(format!("cannot unpack code: {e}"));
    std::fs::create_dir_all(root).map_err(io)?;
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(root)
        .map_err(io)?
        .keep();
    let placed = unpack(zip, &staging)
        .and_then(|()| scratch::seal(&staging).map_err(io))
        .and_then(|()| match std::fs::rename(&staging, target) {
            Ok(()) => Ok(true),
            // Another invoker process won the race; its copy is identical.
            Err(_) if target.is_dir() => Ok(false),
            Err(e) => Err(io(e)),
        });
    if !matches!(placed, Ok(true))
        && let Err(error) = scratch::remove_tree(&staging)
    {
        tracing::warn!(path = %staging.display(), %error, "cannot remove a staging folder");
    }
    placed.map(|_| ())
}

/// Writes every entry under `dir`, refusing escapes and counting the bytes really written
/// against Lambda's unzipped limit.
fn unpack(zip: &[u8], dir: &Path) -> Result<()> {
    unpack_within(zip, dir, limits::MAX_UNZIPPED_CODE_BYTES)
}

fn unpack_within(zip: &[u8], dir: &Path, limit: u64) -> Result<()> {
    let invalid = |m: String| Error::InvalidZipFile(m);
    let io = |e: std::io::Error| Error::Service(format!("cannot unpack code: {e}"));
    let mut archive =
        zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| invalid(format!("corrupt zip: {e}")))?;
    if archive.len() > limits::MAX_ZIP_ENTRIES {
        return Err(invalid(format!(
            "the zip has more than {} entries",
            limits::MAX_ZIP_ENTRIES
        )));
    }
    let mut budget = limit;
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
                return Err(invalid(format!("code unpacks beyond {limit} bytes")));
            }
            budget -= n64;
            file.write_all(&buffer[..n]).map_err(io)?;
        }
        let mode = match entry.unix_mode() {
            Some(mode) => mode,
            // Zips made without unix modes still need an executable bootstrap.
            None if relative.as_os_str() == "bootstrap" => 0o755,
            None => 0o644,
        };
        // Code is read-only input; read and execute bits are kept as the zip says.
        let mode = (mode & 0o555) | 0o400;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
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
        assert_eq!(mode & 0o777, 0o555);
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

    #[test]
    fn a_bootstrap_without_a_mode_is_executable() {
        let mut zip = zip_of(&[("bootstrap", b"#!/bin/sh", None)]);
        // Clear the external attributes in the central directory, as a zip made by a tool
        // that records no unix modes has them: version made by (offset 4, high byte: the
        // system) and external attributes (offset 38).
        let central = zip
            .windows(4)
            .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
            .unwrap();
        zip[central + 5] = 0;
        zip[central + 38..central + 42].fill(0);
        let dir = tempfile::tempdir().unwrap();
        unpack(&zip, dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join("bootstrap"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{mode:o}");
    }

    #[test]
    fn size_bombs_are_refused_by_the_bytes_written() {
        let limit = 1024 * 1024;
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        writer.start_file("small", options).unwrap();
        writer.write_all(&[0u8; 1000]).unwrap();
        writer.start_file("bomb", options).unwrap();
        writer.write_all(&vec![0u8; 2 * limit as usize]).unwrap();
        let zip = writer.finish().unwrap().into_inner();
        assert!(zip.len() < 64 * 1024, "compressed to {}", zip.len());
        let dir = tempfile::tempdir().unwrap();
        let refused = unpack_within(&zip, dir.path(), limit);
        assert!(
            matches!(refused, Err(Error::InvalidZipFile(_))),
            "{refused:?}"
        );
        let written = std::fs::metadata(dir.path().join("bomb")).unwrap().len();
        assert!(written + 1000 <= limit);
    }
}
