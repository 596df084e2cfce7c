//! The instance manager's state file (`--state-dir`): the last [`Record`] of this pod's data,
//! kept on the pod's data volume so it survives restarts of Redis and of the instance manager.
//!
//! With `appendonly yes` a restarted redis-server loads its keys but gets a new replication id,
//! so only this record still tells which history those keys belong to (the gate's decision) and
//! that a Redis that comes back empty had data (it is then never made a writable primary).
//!
//! The file is `<state-dir>/history.json`, written atomically (a temporary file, `fsync`,
//! `rename`, `fsync` of the directory), and only when the record moves on in a way that
//! matters ([`worth_writing`]): a new replication id, role or redis-server process at once, the key count crossing
//! zero at once, a moving offset at most every [`MIN_INTERVAL`]. A steadily replicating pod
//! writes it every ten seconds, an idle one never.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::history::Record;

/// The file's format version.
const VERSION: u32 = 1;

/// A moving offset is written at most this often.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// File name inside `--state-dir`.
pub const FILE_NAME: &str = "history.json";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnDisk {
    version: u32,
    #[serde(flatten)]
    record: Record,
}

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("the state file {path} is not valid ({error}); it is replaced at the next write")]
    Invalid { path: String, error: String },
    #[error("cannot write the state file {path}: {error}")]
    Write { path: String, error: std::io::Error },
}

/// Whether `new` is worth a write, given the last record written and how long ago.
pub fn worth_writing(last: Option<(&Record, Duration)>, new: &Record) -> bool {
    let Some((old, age)) = last else {
        return true;
    };
    if old == new {
        return false;
    }
    old.replid != new.replid
        || old.role != new.role
        || old.run_id != new.run_id
        || (old.keys == 0) != (new.keys == 0)
        || age >= MIN_INTERVAL
}

/// The state file of one `--state-dir`.
pub struct StateFile {
    path: PathBuf,
    last: Option<(Record, std::time::Instant)>,
}

impl StateFile {
    pub fn new(dir: &Path) -> StateFile {
        StateFile {
            path: dir.join(FILE_NAME),
            last: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record in the file; `Ok(None)` when there is no file yet.
    pub fn load(&mut self) -> Result<Option<Record>, StateError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(StateError::Read {
                    path: self.path.display().to_string(),
                    error,
                });
            }
        };
        let on_disk: OnDisk = serde_json::from_str(&text).map_err(|e| StateError::Invalid {
            path: self.path.display().to_string(),
            error: e.to_string(),
        })?;
        if on_disk.version != VERSION {
            return Err(StateError::Invalid {
                path: self.path.display().to_string(),
                error: format!("format version {}, expected {VERSION}", on_disk.version),
            });
        }
        Ok(Some(on_disk.record))
    }

    /// Write `record` if [`worth_writing`]; `Ok(true)` when written.
    pub fn save(&mut self, record: &Record) -> Result<bool, StateError> {
        let last = self.last.as_ref().map(|(r, at)| (r, at.elapsed()));
        if !worth_writing(last, record) {
            return Ok(false);
        }
        let body = serde_json::to_string(&OnDisk {
            version: VERSION,
            record: record.clone(),
        })
        .expect("a record always serializes");
        write_atomically(&self.path, body.as_bytes()).map_err(|error| StateError::Write {
            path: self.path.display().to_string(),
            error,
        })?;
        self.last = Some((record.clone(), std::time::Instant::now()));
        Ok(true)
    }
}

/// tmp + fsync + rename + fsync of the directory: after a crash the file is the old or the new
/// version, never a torn one.
fn write_atomically(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(replid: &str, offset: i64, keys: u64, role: &str) -> Record {
        Record {
            replid: replid.into(),
            offset,
            keys,
            role: role.into(),
            run_id: None,
        }
    }

    /// (what, last written and its age in seconds, new record, written?)
    #[test]
    fn writes_are_bounded() {
        let a = rec("aaa", 900, 5, "replica");
        type Row<'a> = (&'a str, Option<(Record, u64)>, Record, bool);
        let rows: Vec<Row> = vec![
            ("nothing written yet", None, a.clone(), true),
            ("unchanged", Some((a.clone(), 3600)), a.clone(), false),
            (
                "the offset moved, just written",
                Some((a.clone(), 1)),
                rec("aaa", 1000, 6, "replica"),
                false,
            ),
            (
                "the offset moved, written long enough ago",
                Some((a.clone(), 10)),
                rec("aaa", 1000, 6, "replica"),
                true,
            ),
            (
                "a new history: at once",
                Some((a.clone(), 0)),
                rec("bbb", 10, 5, "replica"),
                true,
            ),
            (
                "promoted: at once",
                Some((a.clone(), 0)),
                rec("aaa", 900, 5, "primary"),
                true,
            ),
            (
                "the first keys: at once",
                Some((rec("aaa", 900, 0, "primary"), 0)),
                rec("aaa", 950, 1, "primary"),
                true,
            ),
            (
                "flushed: at once",
                Some((a.clone(), 0)),
                rec("aaa", 950, 0, "replica"),
                true,
            ),
            (
                "another redis-server process: at once",
                Some((a.clone(), 0)),
                Record {
                    run_id: Some("run-2".into()),
                    ..a.clone()
                },
                true,
            ),
        ];
        for (what, last, new, expected) in rows {
            let last = last.map(|(r, s)| (r, Duration::from_secs(s)));
            assert_eq!(
                worth_writing(last.as_ref().map(|(r, d)| (r, *d)), &new),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn round_trips_atomically_and_reports_a_bad_file() {
        let dir = std::env::temp_dir().join(format!("im-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut f = StateFile::new(&dir);
        assert!(f.load().unwrap().is_none());
        let a = rec("aaa", 900, 5, "replica");
        assert!(f.save(&a).unwrap());
        assert!(!f.save(&a).unwrap(), "unchanged: not written again");
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert_eq!(
            text,
            "{\"version\":1,\"replid\":\"aaa\",\"offset\":900,\"keys\":5,\"role\":\"replica\"}\n"
        );
        assert!(!dir.join("history.json.tmp").exists());
        let mut again = StateFile::new(&dir);
        assert_eq!(again.load().unwrap(), Some(a));
        std::fs::write(f.path(), "{not json").unwrap();
        let e = again.load().unwrap_err().to_string();
        assert!(e.contains("is not valid"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
