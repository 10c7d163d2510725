//! Durable, atomic state files for simulated chips (virtual card, virtual PSAM) and the
//! file-backed terminal sequence: write a temp file, fsync, rename over the old file,
//! fsync the folder. A crash leaves either the old or the new file, never a torn one.
//! Files are created 0600 because a simulated chip's file holds its own keys.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// A state file could not be read or written.
#[derive(Debug, Error)]
pub enum StateFileError {
    /// The file could not be read or written (missing, permissions, disk full).
    #[error("cannot access state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file exists but does not hold this kind of state (wrong file or damaged).
    #[error("state file {path} is not a valid {kind} file (wrong file or damaged)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was expected in it.
        kind: &'static str,
    },
}

/// Writes `bytes` to `path` atomically and durably, mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Serializes `value` with a magic prefix and writes it atomically.
pub fn save<T: Serialize>(path: &Path, magic: &[u8; 8], value: &T) -> Result<(), StateFileError> {
    let io_err = |source| StateFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = magic.to_vec();
    let body = postcard::to_stdvec(value).map_err(|e| io_err(io::Error::other(e)))?;
    bytes.extend_from_slice(&body);
    write_atomic(path, &bytes).map_err(io_err)
}

/// Reads a file written by [`save`] with the same magic.
pub fn load<T: DeserializeOwned>(
    path: &Path,
    magic: &[u8; 8],
    kind: &'static str,
) -> Result<T, StateFileError> {
    let bytes = fs::read(path).map_err(|source| StateFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let corrupt = || StateFileError::Corrupt {
        path: path.to_owned(),
        kind,
    };
    let body = bytes.strip_prefix(magic.as_slice()).ok_or_else(corrupt)?;
    postcard::from_bytes(body).map_err(|_| corrupt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saved_state_reloads_and_is_private_to_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        save(&path, b"TESTMAG1", &(7u32, "x".to_string())).unwrap();
        let back: (u32, String) = load(&path, b"TESTMAG1", "test").unwrap();
        assert_eq!(back, (7, "x".to_string()));
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("state.tmp").exists());
    }

    #[test]
    fn wrong_magic_or_garbage_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        save(&path, b"TESTMAG1", &1u32).unwrap();
        let err = load::<u32>(&path, b"OTHERMAG", "card").unwrap_err();
        assert!(matches!(err, StateFileError::Corrupt { kind: "card", .. }));
        fs::write(&path, b"TESTMAG1").unwrap();
        assert!(matches!(
            load::<u32>(&path, b"TESTMAG1", "card"),
            Err(StateFileError::Corrupt { .. })
        ));
    }
}
