//! Writing files on a stick so that a yanked stick or a power cut leaves either the old
//! file or the new one: temporary file, fsync, rename, fsync of the folder.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Suffix of files being written; any left over are from an interrupted write.
pub const TMP_SUFFIX: &str = ".tmp";

pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(TMP_SUFFIX);
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically. The folder is not synced: call `sync_dir` once
/// after a batch of writes to it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let written = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| fs::rename(&tmp, path));
    if written.is_err() {
        // Best effort: a stick that refuses the write may refuse the cleanup too, and the
        // next sync removes leftovers anyway.
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Makes the renames in a folder durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}
