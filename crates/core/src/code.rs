//! Checks a function's zip before anything is written: it must open, every entry must stay
//! inside the function's folder, and it must not unpack beyond Lambda's 250 MB.
//!
//! Sizes are measured by decompressing, not read from the headers, which a zip bomb can fake.

use std::io::{self, Cursor, Read};

use crate::error::{Error, Result};
use crate::limits;

/// What [`inspect_zip`] learnt of an acceptable zip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipSummary {
    pub entries: usize,
    pub unzipped_bytes: u64,
}

/// Validates a zip held in memory, reading every entry to its end (which also checks CRCs).
pub fn inspect_zip(zip: &[u8]) -> Result<ZipSummary> {
    inspect_zip_with_limit(zip, limits::MAX_UNZIPPED_CODE_BYTES)
}

pub fn inspect_zip_with_limit(zip: &[u8], max_unzipped_bytes: u64) -> Result<ZipSummary> {
    let corrupt = |e: &dyn std::fmt::Display| {
        Error::InvalidZipFile(format!("Could not unzip uploaded file: {e}"))
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| corrupt(&e))?;
    if archive.len() > limits::MAX_ZIP_ENTRIES {
        return Err(Error::InvalidZipFile(format!(
            "Unzipped code has more than {} entries",
            limits::MAX_ZIP_ENTRIES
        )));
    }
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| corrupt(&e))?;
        if entry.enclosed_name().is_none() {
            return Err(Error::InvalidZipFile(format!(
                "Zip entry '{}' escapes the function's folder",
                entry.name()
            )));
        }
        let budget = max_unzipped_bytes - total;
        let read = io::copy(&mut (&mut entry).take(budget + 1), &mut io::sink())
            .map_err(|e| corrupt(&e))?;
        total += read;
        if total > max_unzipped_bytes {
            return Err(Error::InvalidZipFile(format!(
                "Unzipped size must be smaller than {max_unzipped_bytes} bytes"
            )));
        }
    }
    Ok(ZipSummary {
        entries: archive.len(),
        unzipped_bytes: total,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, body) in entries {
            writer
                .start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            writer.write_all(body).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn accepts_a_plain_zip() {
        let source = b"def handler(e, c): return e";
        let zip = zip_of(&[("index.py", source), ("lib/util.py", b"")]);
        let summary = inspect_zip(&zip).unwrap();
        assert_eq!(summary.entries, 2);
        assert_eq!(summary.unzipped_bytes, source.len() as u64);
    }

    #[test]
    fn refuses_path_traversal() {
        for name in ["../evil.sh", "a/../../evil.sh", "/etc/passwd"] {
            let zip = zip_of(&[(name, b"x")]);
            let err = inspect_zip(&zip).unwrap_err();
            assert!(matches!(err, Error::InvalidZipFile(_)), "{name}: {err:?}");
        }
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(
            inspect_zip(b"definitely not a zip"),
            Err(Error::InvalidZipFile(_))
        ));
    }

    #[test]
    fn refuses_what_unpacks_beyond_the_limit() {
        let zip = zip_of(&[("a", &[0u8; 600]), ("b", &[0u8; 600])]);
        assert!(inspect_zip_with_limit(&zip, 2000).is_ok());
        assert!(matches!(
            inspect_zip_with_limit(&zip, 1000),
            Err(Error::InvalidZipFile(_))
        ));
    }
}
