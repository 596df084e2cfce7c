//! The kubelet's AtomicWriter (pkg/volume/util/atomic_writer.go) for Secret, ConfigMap,
//! downward API and projected volumes: the files live in a timestamped directory
//! (`..2024_01_02_15_04_05.123456789`), `..data` is a symlink to it swapped atomically by
//! rename, and each top-level name is a symlink through `..data`. A reader never sees a half
//! written update. Also the kubelet's fsGroup ownership change (pkg/volume/volume_linux.go).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path};

use chrono::{DateTime, Utc};

/// One file of a volume: content and mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative path -> file.
pub type Payload = BTreeMap<String, File>;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

fn validate(path: &str) -> io::Result<()> {
    let p = Path::new(path);
    let bad = p.is_absolute()
        || path.is_empty()
        || path.starts_with("..")
        || p.components().any(|c| !matches!(c, Component::Normal(_)));
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid path in volume payload: {path:?}"),
        ));
    }
    Ok(())
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// The timestamped directory name the kubelet uses (`..2006_01_02_15_04_05.` + a unique
/// suffix; here the nanoseconds).
pub fn ts_dir_name(now: DateTime<Utc>) -> String {
    format!("..{}", now.format("%Y_%m_%d_%H_%M_%S.%f"))
}

/// Whether `dir` already holds exactly `payload` (same paths, same bytes).
fn unchanged(dir: &Path, payload: &Payload) -> bool {
    let data = dir.join(DATA);
    let Ok(target) = fs::read_link(&data) else {
        return false;
    };
    let current = dir.join(target);
    let mut on_disk = BTreeSet::new();
    collect_files(&current, &current, &mut on_disk);
    let wanted: BTreeSet<String> = payload.keys().cloned().collect();
    if on_disk != wanted {
        return false;
    }
    payload
        .iter()
        .all(|(p, f)| fs::read(current.join(p)).is_ok_and(|d| d == f.data))
}

fn collect_files(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.insert(rel.to_string_lossy().into_owned());
        }
    }
}

/// Write `payload` into volume directory `dir` if it differs from what is there. Returns
/// whether anything was written.
pub fn write(dir: &Path, payload: &Payload, now: DateTime<Utc>) -> io::Result<bool> {
    for p in payload.keys() {
        validate(p)?;
    }
    fs::create_dir_all(dir)?;
    if unchanged(dir, payload) {
        return Ok(false);
    }
    let old_ts = fs::read_link(dir.join(DATA)).ok();
    let old_visible: BTreeSet<String> = match &old_ts {
        Some(t) => {
            let mut files = BTreeSet::new();
            collect_files(&dir.join(t), &dir.join(t), &mut files);
            files.iter().map(|p| top_level(p).to_string()).collect()
        }
        None => BTreeSet::new(),
    };
    let mut ts_name = ts_dir_name(now);
    while dir.join(&ts_name).exists() {
        ts_name.push('x');
    }
    let ts = dir.join(&ts_name);
    fs::create_dir(&ts)?;
    fs::set_permissions(&ts, fs::Permissions::from_mode(0o755))?;
    for (p, f) in payload {
        let file = ts.join(p);
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&file, &f.data)?;
        fs::set_permissions(&file, fs::Permissions::from_mode(f.mode & 0o7777))?;
    }
    let tmp = dir.join(DATA_TMP);
    let _ = fs::remove_file(&tmp);
    symlink(&ts_name, &tmp)?;
    fs::rename(&tmp, dir.join(DATA))?;
    let new_visible: BTreeSet<String> = payload.keys().map(|p| top_level(p).to_string()).collect();
    for name in &new_visible {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(name), &link)?;
        }
    }
    for name in old_visible.difference(&new_visible) {
        let _ = fs::remove_file(dir.join(name));
    }
    if let Some(old) = old_ts {
        let _ = fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

/// The kubelet's `SetVolumeOwnership`: group `gid` on everything, files `rw` (or `r` for
/// read-only volumes) for the group, directories also `x` and setgid. Symlinks are only
/// re-owned.
pub fn set_ownership(dir: &Path, gid: u32, read_only: bool) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    std::os::unix::fs::lchown(dir, None, Some(gid))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mut mask = if read_only { 0o440 } else { 0o660 };
    if meta.is_dir() {
        mask |= 0o2000 | 0o110;
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode | mask != mode {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | mask))?;
    }
    if meta.is_dir() {
        for e in fs::read_dir(dir)? {
            set_ownership(&e?.path(), gid, read_only)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn t(n: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, n).unwrap()
    }

    fn payload(items: &[(&str, &str, u32)]) -> Payload {
        items
            .iter()
            .map(|(p, d, m)| {
                (
                    p.to_string(),
                    File {
                        data: d.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn writes_swaps_and_removes() {
        let dir = std::env::temp_dir().join(format!("atomic-writer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p1 = payload(&[("password", "one", 0o440), ("sub/x", "y", 0o644)]);
        assert!(write(&dir, &p1, t(1)).unwrap());
        assert_eq!(fs::read_to_string(dir.join("password")).unwrap(), "one");
        assert_eq!(fs::read_to_string(dir.join("sub/x")).unwrap(), "y");
        assert_eq!(
            fs::read_link(dir.join("password")).unwrap(),
            Path::new("..data/password")
        );
        let first_ts = fs::read_link(dir.join("..data")).unwrap();
        assert_eq!(
            first_ts.to_str().unwrap(),
            "..2023_11_14_22_13_20.000000001"
        );
        let mode = fs::metadata(dir.join("password"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o440);
        // Same content: nothing written.
        assert!(!write(&dir, &p1, t(2)).unwrap());
        // Rotated: new timestamp dir, old one and the dropped name gone.
        let p2 = payload(&[("password", "two", 0o440)]);
        assert!(write(&dir, &p2, t(3)).unwrap());
        assert_eq!(fs::read_to_string(dir.join("password")).unwrap(), "two");
        assert!(!dir.join(&first_ts).exists());
        assert!(fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(write(&dir, &payload(&[("../evil", "x", 0o644)]), t(4)).is_err());

        // fsGroup: group-readable files, setgid directories.
        set_ownership(&dir, 12345, true).unwrap();
        let target = dir.join("..data").join("password");
        let meta = fs::metadata(&target).unwrap();
        assert_eq!(meta.gid(), 12345);
        assert_eq!(meta.mode() & 0o777, 0o440);
        let ts = fs::metadata(dir.join(fs::read_link(dir.join("..data")).unwrap())).unwrap();
        assert_eq!(ts.mode() & 0o2000, 0o2000);
        let _ = fs::remove_dir_all(&dir);
    }
}
