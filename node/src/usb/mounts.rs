//! Finding a plugged-in stick when `cardmesh sync usb` is run without a path: the
//! mounted filesystems of `/proc/mounts` that a desktop automounter or a field worker
//! would have put a stick on, or whose disk the kernel calls removable.

use std::fs;
use std::path::{Path, PathBuf};

/// Where automounters (udisks: `/media/<user>/<label>`, `/run/media/<user>/<label>`) and
/// people (`/mnt/usb`) mount sticks.
const STICK_PLACES: [&str; 3] = ["/media/", "/run/media/", "/mnt/"];

/// Mounted removable drives, from this machine's `/proc/mounts` and `/sys/block`.
pub fn find_removable_mounts() -> Vec<PathBuf> {
    match fs::read_to_string("/proc/mounts") {
        Ok(text) => parse_mounts(&text, &removable_from_sysfs),
        Err(_) => Vec::new(),
    }
}

/// The mount points in `mounts` (the format of `/proc/mounts`) that hold a stick.
/// `removable` tells, for a block device name such as `sdb1`, whether the kernel says
/// its disk is removable (`None` when it cannot tell). A mount in a usual stick place
/// counts unless its disk is known to be fixed; a mount elsewhere counts only if its
/// disk is known to be removable.
pub fn parse_mounts(mounts: &str, removable: &dyn Fn(&str) -> Option<bool>) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, point) = (fields.next()?, fields.next()?);
            let point = unescape(point);
            let device = device.strip_prefix("/dev/")?;
            let in_place = point == "/mnt" || STICK_PLACES.iter().any(|p| point.starts_with(p));
            let counts = match removable(device) {
                Some(r) => r,
                None => in_place,
            };
            counts.then(|| PathBuf::from(point))
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// `/proc/mounts` writes space, tab, newline and backslash in paths as octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The kernel's `removable` flag for a block device's disk: the device's own folder for
/// a whole disk (`sdb`), its parent's for a partition (`sdb1`). Device-mapper and other
/// names resolve through `/dev` symlinks first.
fn removable_from_sysfs(device: &str) -> Option<bool> {
    let name = fs::canonicalize(Path::new("/dev").join(device))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| device.to_string());
    let block = fs::canonicalize(Path::new("/sys/class/block").join(&name)).ok()?;
    let flag = [
        Some(block.join("removable")),
        block.parent().map(|p| p.join("removable")),
    ]
    .into_iter()
    .flatten()
    .find_map(|p| fs::read_to_string(p).ok())?;
    Some(flag.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_are_decoded() {
        assert_eq!(unescape(r"/media/li/MY\040STICK"), "/media/li/MY STICK");
        assert_eq!(unescape(r"/mnt/a\134b"), r"/mnt/a\b");
        assert_eq!(unescape(r"/mnt/odd\9"), r"/mnt/odd\9");
    }
}
