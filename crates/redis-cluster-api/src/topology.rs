//! The topology contract: what the operator wants one Redis pod to be.
//!
//! The operator publishes a [`DesiredTopology`] as JSON in the pod annotation
//! [`crate::labels::TOPOLOGY_ANNOTATION`] (`redis.io/topology`). The instance manager in that pod
//! reads it (by watching its own pod, or from a downward-API annotations file) and applies it to
//! the local Redis. It is the only channel from operator to instance manager.
//!
//! Rules of the contract (format version [`FORMAT_VERSION`]):
//! - `version` names the format. An instance manager refuses a version it does not know rather
//!   than guess, and keeps the last topology it applied.
//! - `epoch` only ever grows. An instance manager never applies an epoch lower than the highest it
//!   has applied, so a stale instruction (an old file, a slow watch) cannot undo a newer one such
//!   as a promotion.
//! - Credentials are *named*, never embedded: `passwordFile` is the path of a file mounted from a
//!   Secret. No secret value ever appears in an annotation.
//!
//! Example, a DR pod replicating the external source:
//! ```json
//! {"version":1,"cluster":"dr-redis","epoch":3,
//!  "role":"replica",
//!  "upstream":{"kind":"external","host":"prod-redis-leader.production.svc.cluster.local",
//!              "port":6379,"tls":false,"passwordFile":"/etc/redis-source/password",
//!              "clusterName":"prod-redis-us-east"},
//!  "replicaPriority":0,"replicaAnnounced":false}
//! ```

use serde::{Deserialize, Serialize};

/// The format version this crate writes and understands.
pub const FORMAT_VERSION: u32 = 1;

/// What one Redis pod should be.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredTopology {
    /// Format version, [`FORMAT_VERSION`].
    pub version: u32,
    /// The `RedisCluster` this pod belongs to.
    pub cluster: String,
    /// Monotonic counter: higher wins, lower is ignored.
    pub epoch: u64,
    /// Primary, or replica of an upstream.
    pub role: Role,
    /// The upstream to replicate from; present exactly when `role` is `replica`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    /// `replica-priority`: 0 means no Sentinel may ever promote this pod. The operator sets 0 on
    /// every pod of a cluster in replica mode, so the source region's Sentinels never pick a DR pod.
    pub replica_priority: u32,
    /// `replica-announced`: false hides this replica from the upstream's Sentinels.
    pub replica_announced: bool,
    /// `min-replicas-to-write` while primary (0 disables).
    #[serde(default)]
    pub min_replicas_to_write: u32,
    /// `min-replicas-max-lag` in seconds while primary.
    #[serde(default = "default_max_lag")]
    pub min_replicas_max_lag: u32,
    /// The pod this topology considers the cluster's primary (itself, its upstream peer, or the
    /// pod promoted in its place when it is fenced); absent while the cluster replicates an
    /// external source. The operator reads it back after a restart, so a failover it decided is
    /// remembered even if it died before writing the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Present when a Sentinel quorum decides which pod is primary (`mode: sentinel`). Then the
    /// instance manager never changes replication itself, except to point a Redis that has just
    /// booted fenced at the primary the Sentinels elected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<SentinelTopology>,
    /// The name `REPLICAOF` has in this pod's Redis. The operator's redis.conf renames it per
    /// cluster (and disables `SLAVEOF`), so that nobody else holding the password can re-point
    /// the pod: in particular not the Sentinels of the source region, which otherwise "fix" DR
    /// pods to replicate the source primary's own address instead of the stable endpoint.
    /// Absent: `REPLICAOF`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicaof_command: Option<String>,
    /// A replication id the user accepted (the RedisCluster annotation
    /// [`ACCEPT_HISTORY_ANNOTATION`], `redis.io/accept-replication-history: <replid>`).
    ///
    /// An instance manager never lets its Redis sync from an upstream whose replication history
    /// does not contain the data it holds (a source recreated empty, `source.host` changed to
    /// another Redis): a full resync would flush that data. It reports the block with both
    /// replication ids instead. When the blocked upstream's `master_replid` equals this id, the
    /// user has accepted to replace the pod's data with the upstream's: the full resync
    /// proceeds. The same id lets a primary whose Redis booted without its data take writes
    /// with the empty dataset (its own new replication id). Any other upstream stays blocked.
    /// Absent: nothing accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_history: Option<String>,
}

/// The RedisCluster annotation with which a user accepts a replication history (see
/// [`DesiredTopology::accept_history`]): its value is the upstream's replication id, as shown in
/// the pods' `historyBlocked.upstream.replid` and in the block's message.
pub const ACCEPT_HISTORY_ANNOTATION: &str = "redis.io/accept-replication-history";

/// The per-cluster name of `REPLICAOF` (see [`DesiredTopology::replicaof_command`]): derived
/// from the cluster's UID when it has one (two regions may use the same cluster name), else from
/// its namespace and name.
pub fn replicaof_command(uid: Option<&str>, namespace: &str, name: &str) -> String {
    let key = match uid {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => format!("{namespace}/{name}"),
    };
    // FNV-1a: stable across builds and platforms, no dependency; this is a name, not a secret.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("REPLICAOF-{:012x}", hash & 0xffff_ffff_ffff)
}

impl DesiredTopology {
    /// The command to send for `REPLICAOF` to this pod's Redis.
    pub fn replicaof_name(&self) -> &str {
        self.replicaof_command.as_deref().unwrap_or("REPLICAOF")
    }
}

/// Where the Sentinels of a `mode: sentinel` cluster are, and how they know this pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SentinelTopology {
    /// The name the Sentinels monitor the cluster under (`sentinel monitor <masterName> ...`).
    pub master_name: String,
    /// `host:port` of every Sentinel (stable DNS names in Kubernetes).
    pub addresses: Vec<String>,
    /// The host this pod's Redis is known by to the Sentinels (`replica-announce-ip`), to
    /// recognise itself in `SENTINEL get-master-addr-by-name`.
    pub announce_host: String,
    /// Path of the file holding the Sentinels' password (the cluster's `authSecret`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

/// `min-replicas-to-write` value that no primary can satisfy: a Redis configured with it accepts
/// no writes (`-NOREPLICAS`). Pods boot with it (see [`boot_fence_args`]) and a fenced pod gets
/// it.
pub const FENCE_MIN_REPLICAS: u32 = 1_000_000;

/// The redis-server arguments that start it fenced whatever its configuration file says:
/// options on the command line are applied after the file, so they win. The data pods' redis
/// container passes them after `/data/redis.conf`, which the instance manager's `CONFIG
/// REWRITE` keeps current (unfenced once the fence is lifted): without them a redis container
/// restarted alone (the init container does not run again) would take writes until the
/// instance manager's next tick, and could take them as a primary the Sentinels have already
/// replaced. The instance manager lifts the fence when its topology says so.
pub fn boot_fence_args() -> [String; 2] {
    [
        "--min-replicas-to-write".to_string(),
        FENCE_MIN_REPLICAS.to_string(),
    ]
}

fn default_max_lag() -> u32 {
    10
}

/// The role the pod should have.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Accept writes: `REPLICAOF NO ONE`.
    Primary,
    /// Replicate `upstream`: `REPLICAOF host port`.
    Replica,
    /// Accept no writes (`min-replicas-to-write` set to [`FENCE_MIN_REPLICAS`]) and change
    /// nothing else: a primary the operator is failing over away from. It rejoins as a replica
    /// with a later topology.
    Fenced,
}

/// Where a replica replicates from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Upstream {
    /// An in-cluster peer, or the external source of replica mode.
    pub kind: UpstreamKind,
    /// Hostname or IP of the upstream Redis.
    pub host: String,
    /// Port of the upstream Redis.
    pub port: u16,
    /// Replicate over TLS (`tls-replication yes`) with the pod's mounted certificates.
    #[serde(default)]
    pub tls: bool,
    /// Path of a file holding the upstream's password (`masterauth`), mounted from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// ACL user for the upstream (`masteruser`), if it is not `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The source cluster's display name, for metrics and messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
}

/// Kind of upstream.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum UpstreamKind {
    /// Another pod of the same cluster.
    Peer,
    /// The external source of replica mode (another region).
    External,
}

/// Why an annotation could not be used.
#[derive(Debug, PartialEq, Eq)]
pub enum ContractError {
    /// Not JSON of the expected shape.
    Malformed(String),
    /// A format version this build does not know.
    UnknownVersion(u32),
    /// Internally inconsistent (a replica without upstream, a primary with one).
    Inconsistent(&'static str),
}

impl std::fmt::Display for ContractError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContractError::Malformed(e) => write!(f, "topology annotation is not valid: {e}"),
            ContractError::UnknownVersion(v) => write!(
                f,
                "topology annotation has format version {v}, this instance manager understands {FORMAT_VERSION}: upgrade the instance manager image"
            ),
            ContractError::Inconsistent(why) => {
                write!(f, "topology annotation is inconsistent: {why}")
            }
        }
    }
}

impl std::error::Error for ContractError {}

impl DesiredTopology {
    /// Parse and check an annotation value.
    pub fn parse(annotation: &str) -> Result<Self, ContractError> {
        // Read the version first so a newer format is reported as such, not as "malformed".
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly = serde_json::from_str(annotation)
            .map_err(|e| ContractError::Malformed(e.to_string()))?;
        if v.version != FORMAT_VERSION {
            return Err(ContractError::UnknownVersion(v.version));
        }
        let t: DesiredTopology = serde_json::from_str(annotation)
            .map_err(|e| ContractError::Malformed(e.to_string()))?;
        t.check()?;
        Ok(t)
    }

    /// Serialize for the annotation (compact JSON, stable field order).
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("topology always serializes")
    }

    /// Check the invariants the types cannot express.
    pub fn check(&self) -> Result<(), ContractError> {
        match (self.role, &self.upstream) {
            (Role::Replica, None) => Err(ContractError::Inconsistent(
                "role replica needs an upstream",
            )),
            (Role::Primary | Role::Fenced, Some(_)) => Err(ContractError::Inconsistent(
                "roles primary and fenced must not have an upstream",
            )),
            (_, Some(u)) if u.host.is_empty() || u.port == 0 => Err(ContractError::Inconsistent(
                "upstream needs a host and a non-zero port",
            )),
            _ => Ok(()),
        }
    }

    /// Whether `self` should replace `applied`: only a strictly newer epoch does.
    pub fn supersedes(&self, applied: Option<&DesiredTopology>) -> bool {
        applied.is_none_or(|a| self.epoch > a.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica() -> DesiredTopology {
        DesiredTopology {
            version: FORMAT_VERSION,
            cluster: "dr-redis".into(),
            epoch: 3,
            role: Role::Replica,
            upstream: Some(Upstream {
                kind: UpstreamKind::External,
                host: "prod-redis-leader.production.svc.cluster.local".into(),
                port: 6379,
                tls: false,
                password_file: Some("/etc/redis-source/password".into()),
                username: None,
                cluster_name: Some("prod-redis-us-east".into()),
            }),
            replica_priority: 0,
            replica_announced: false,
            min_replicas_to_write: 0,
            min_replicas_max_lag: 10,
            primary: None,
            sentinel: None,
            replicaof_command: None,
            accept_history: None,
        }
    }

    #[test]
    fn the_replicaof_name_is_stable_and_per_cluster() {
        let a = replicaof_command(Some("5c1e2f3a-uid"), "production", "dr-redis");
        assert_eq!(a, replicaof_command(Some("5c1e2f3a-uid"), "other", "other"));
        assert_ne!(
            a,
            replicaof_command(Some("another-uid"), "production", "dr-redis")
        );
        assert_ne!(
            replicaof_command(None, "production", "redis"),
            replicaof_command(None, "staging", "redis")
        );
        assert!(a.starts_with("REPLICAOF-") && a.len() == "REPLICAOF-".len() + 12);
        assert!(!a.contains(' '));
    }

    #[test]
    fn round_trips_and_matches_the_documented_example() {
        let t = replica();
        assert_eq!(DesiredTopology::parse(&t.to_annotation()).unwrap(), t);
        let documented = r#"{"version":1,"cluster":"dr-redis","epoch":3,
            "role":"replica",
            "upstream":{"kind":"external","host":"prod-redis-leader.production.svc.cluster.local",
                        "port":6379,"tls":false,"passwordFile":"/etc/redis-source/password",
                        "clusterName":"prod-redis-us-east"},
            "replicaPriority":0,"replicaAnnounced":false}"#;
        assert_eq!(DesiredTopology::parse(documented).unwrap(), t);
    }

    #[test]
    fn rejects_unknown_versions_and_inconsistent_roles() {
        let mut t = replica();
        t.version = 2;
        assert_eq!(
            DesiredTopology::parse(&t.to_annotation()),
            Err(ContractError::UnknownVersion(2))
        );
        let mut t = replica();
        t.upstream = None;
        assert!(matches!(
            DesiredTopology::parse(&t.to_annotation()),
            Err(ContractError::Inconsistent(_))
        ));
        let mut t = replica();
        t.role = Role::Primary;
        assert!(matches!(t.check(), Err(ContractError::Inconsistent(_))));
        assert!(matches!(
            DesiredTopology::parse("{\"version\":1}"),
            Err(ContractError::Malformed(_))
        ));
        assert!(matches!(
            DesiredTopology::parse("not json"),
            Err(ContractError::Malformed(_))
        ));
    }

    #[test]
    fn a_secret_value_has_nowhere_to_go() {
        // deny_unknown_fields: a "password" field is rejected, not silently carried along.
        let mut v: serde_json::Value = serde_json::from_str(&replica().to_annotation()).unwrap();
        v["upstream"]["password"] = "hunter2".into();
        assert!(matches!(
            DesiredTopology::parse(&v.to_string()),
            Err(ContractError::Malformed(_))
        ));
    }

    /// `acceptHistory` is optional: annotations written before it existed parse unchanged (the
    /// struct denies unknown fields, so the field must be known and optional), and a topology
    /// without it writes no such key, so an older instance manager still accepts it.
    #[test]
    fn accept_history_is_optional_and_round_trips() {
        let t = replica();
        assert!(!t.to_annotation().contains("acceptHistory"));
        let mut accepted = replica();
        accepted.accept_history = Some("7509078fd6b600d18857f5f39c2c74433c02399e".into());
        let a = accepted.to_annotation();
        assert!(
            a.contains("\"acceptHistory\":\"7509078fd6b600d18857f5f39c2c74433c02399e\""),
            "{a}"
        );
        assert_eq!(DesiredTopology::parse(&a).unwrap(), accepted);
        assert_ne!(DesiredTopology::parse(&a).unwrap(), t);
    }

    #[test]
    fn only_newer_epochs_supersede() {
        let applied = replica();
        let mut newer = replica();
        newer.epoch = 4;
        let mut older = replica();
        older.epoch = 2;
        assert!(newer.supersedes(Some(&applied)));
        assert!(!older.supersedes(Some(&applied)));
        assert!(!applied.clone().supersedes(Some(&applied)));
        assert!(older.supersedes(None));
    }
}
