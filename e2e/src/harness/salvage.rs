//! What the drills read of a salvage (issue 14, docs/salvage.md): the `Salvaged` Event, the pod's
//! `status.instancesStatus[].salvage`, and the saved file, found on the pod's volume and used as
//! the documentation says (a tail replayed with `redis-cli --pipe` into an empty Redis, a snapshot
//! loaded into a redis-server from a copy).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use redis_cluster_api::report::Salvage;
use redis_test_support::process::ScratchDir;
use redis_test_support::redis::{RedisOpts, RedisServer};

use super::{Drill, NS, wait};

impl Drill<'_> {
    /// `cluster`'s `status.dataAtRisk` now, if any.
    pub fn data_at_risk(&self, cluster: &str) -> Option<redis_cluster_api::DataAtRisk> {
        let rc = self.kube.redis_cluster(NS, cluster)?;
        serde_json::from_value(rc["status"]["dataAtRisk"].clone()).ok()
    }

    /// The salvage `cluster`'s status shows for `pod` now, if any.
    pub fn salvage_of(&self, cluster: &str, pod: &str) -> Option<Salvage> {
        let rc = self.kube.redis_cluster(NS, cluster)?;
        let instance = rc["status"]["instancesStatus"]
            .as_array()?
            .iter()
            .find(|i| i["name"] == pod)?;
        serde_json::from_value(instance["salvage"].clone()).ok()
    }

    /// Wait for a salvage of `pod` other than `before` (what its status showed before the step:
    /// the file of an earlier salvage stays reported) and for `cluster`'s `Salvaged` Event that
    /// names its file: the Event's (type, note) and the salvage.
    pub fn salvaged(
        &self,
        cluster: &str,
        pod: &str,
        before: Option<&Salvage>,
        timeout: Duration,
    ) -> Result<((String, String), Salvage), String> {
        let (salvage, _) = wait(
            &format!("a new status.instancesStatus[{pod}].salvage"),
            timeout,
            || {
                self.salvage_of(cluster, pod)
                    .filter(|s| before.is_none_or(|b| b.file != s.file))
            },
        )?;
        let (event, _) = wait(
            &format!("the Salvaged Event for {}", salvage.file),
            Duration::from_secs(20),
            || {
                self.events(cluster, redis_topology::EventReason::Salvaged)
                    .into_iter()
                    .find(|(_, n)| {
                        n.starts_with(&format!("{pod} saved ")) && n.contains(&salvage.file)
                    })
            },
        )?;
        Ok((event, salvage))
    }

    /// The salvage's file as the host sees it (on `pod`'s data volume), and its mode.
    pub fn salvage_file(&self, pod: &str, s: &Salvage) -> Result<(PathBuf, u32), String> {
        let name = std::path::Path::new(&s.file)
            .file_name()
            .ok_or(format!("no file name in {}", s.file))?;
        let path = self
            .data_dir(pod)?
            .join("instance-manager/salvage")
            .join(name);
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((
            path,
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        ))
    }

    /// A salvaged tail replayed as docs/salvage.md says (`redis-cli --pipe` into an empty Redis):
    /// the keys it then holds, and redis-cli's last line (`errors: 0, replies: N`).
    pub fn replay_tail(
        &self,
        pod: &str,
        s: &Salvage,
    ) -> Result<(BTreeSet<String>, String), String> {
        let (path, _) = self.salvage_file(pod, s)?;
        let scratch = RedisServer::start(RedisOpts::default());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "redis-cli -p {} --pipe < '{}'",
                scratch.port(),
                path.display()
            ))
            .output()
            .map_err(|e| e.to_string())?;
        let said = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        let keys = scratch
            .cli(&["--scan"])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        Ok((keys, said))
    }

    /// A salvaged snapshot loaded into a redis-server (from a copy: a redis-server writes into
    /// its directory): the server to read from, and the copy's directory (removed when dropped).
    pub fn load_snapshot(
        &self,
        pod: &str,
        s: &Salvage,
    ) -> Result<(RedisServer, ScratchDir), String> {
        let (path, _) = self.salvage_file(pod, s)?;
        let scratch = ScratchDir::new("drill-salvage");
        std::fs::copy(&path, scratch.path("salvage.rdb")).map_err(|e| e.to_string())?;
        let server = RedisServer::start(RedisOpts {
            extra: vec![
                "--dir".into(),
                scratch.path("").display().to_string(),
                "--dbfilename".into(),
                "salvage.rdb".into(),
                "--save".into(),
                "".into(),
            ],
            ..Default::default()
        });
        Ok((server, scratch))
    }
}
