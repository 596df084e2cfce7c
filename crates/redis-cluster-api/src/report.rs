//! What an instance manager reports about its own Redis (`GET /status` on the sidecar's HTTP
//! port, JSON). The operator reads it to fill `status.instancesStatus`, decide when a promotion
//! step is done and set `currentPrimary`. It never carries a secret.

use serde::{Deserialize, Serialize};

/// The observed state of one Redis instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceReport {
    /// Pod name.
    pub pod: String,
    /// The highest topology epoch the instance manager has applied (None: nothing applied yet).
    pub applied_epoch: Option<u64>,
    /// `primary` or `replica`, from `INFO replication` (`master`/`slave`); None if Redis is
    /// unreachable.
    pub role: Option<ObservedRole>,
    /// `host:port` Redis replicates from, when it is a replica.
    pub upstream: Option<String>,
    /// The replication link is up: Redis says `master_link_status:up` AND the instance manager's
    /// own probe of the upstream answered within its timeout (catches silent cuts in seconds).
    pub master_link_up: bool,
    /// Why the link is down, in words a user can act on (wrong password, unreachable, TLS, ...).
    pub link_error: Option<String>,
    /// `master_repl_offset` of this Redis (for a replica, what it has processed).
    pub repl_offset: Option<i64>,
    /// The upstream's current `master_repl_offset`, read from the upstream itself.
    pub upstream_offset: Option<i64>,
    /// `upstream_offset - repl_offset` for a replica with a known upstream offset.
    pub lag_bytes: Option<i64>,
    /// Lag in seconds: time since the upstream's offset first went beyond this replica's offset,
    /// from the instance manager's history of upstream offsets (resolution: one probe interval).
    /// Absent from reports of older instance managers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// A full or partial sync is in progress (`master_sync_in_progress`).
    pub sync_in_progress: bool,
    /// `sync_full` from `INFO stats`: full resyncs this Redis served as a primary.
    pub sync_full: u64,
    /// `sync_partial_ok` from `INFO stats`: partial resyncs this Redis served as a primary.
    pub sync_partial_ok: u64,
    /// `connected_slaves`.
    pub connected_replicas: u32,
    /// The pod serves data as its role requires: a primary accepts writes, a replica is linked and
    /// not loading.
    pub ready: bool,
    /// The last error applying the topology (not a link error), if any.
    pub error: Option<String>,
    /// Redis refuses every write because `min-replicas-to-write` is at the fence value: it booted
    /// that way and nothing lifted it yet, or the operator fenced it.
    #[serde(default)]
    pub fenced: bool,
    /// In sentinel mode: the primary the Sentinels elected, as `host:port`, from the Sentinel with
    /// the highest config epoch this instance manager reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel_primary: Option<String>,
    /// The config epoch of `sentinel_primary` (grows with every Sentinel failover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel_epoch: Option<u64>,
    /// How many of the cluster's Sentinels answered this instance manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinels_reachable: Option<u32>,
    /// The last time this replica's upstream failed over and this replica held writes the new
    /// upstream never received (its offset beyond the new upstream's `second_repl_offset`), the
    /// number of those bytes. Such a replica cannot resume partially: it resynchronises in full
    /// and those writes are gone. Kept until the instance manager restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_bytes: Option<i64>,
}

/// The role Redis itself reports.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ObservedRole {
    Primary,
    Replica,
}
