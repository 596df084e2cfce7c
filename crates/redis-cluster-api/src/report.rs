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
    /// The upstream's `repl_backlog_size`: the bytes of its stream it keeps for a replica that
    /// reconnects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_backlog_bytes: Option<i64>,
    /// The upstream's write rate over the last minute, bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_write_rate: Option<f64>,
    /// How long the link to the upstream can be down now before this replica can only come back
    /// with a full resync: (`upstreamBacklogBytes` - `lagBytes`) / `upstreamWriteRate`, capped
    /// at 86400 when nothing is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_outage_seconds: Option<f64>,
    /// The last time this replica's instance manager read its upstream's offset (every probe
    /// interval while the link is up), kept while the upstream does not answer: what a
    /// promotion or a failover now would lose is at least `lagBytes` of that moment plus what
    /// the upstream took since. Cleared when the topology names another upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_last_seen: Option<UpstreamContact>,
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
    /// In sentinel mode: whether the Sentinels that named `sentinel_primary` flag it down
    /// (`o_down`) or are failing it over (its address is about to change). A planned
    /// switchover does not demote the cluster meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel_failing_over: Option<bool>,
    /// The last time this replica's upstream failed over and this replica held writes the new
    /// upstream never received (its offset beyond the new upstream's `second_repl_offset`), the
    /// number of those bytes. Such a replica cannot resume partially: it resynchronises in full
    /// and those writes are gone. Kept until the instance manager restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_bytes: Option<i64>,
    /// Present while this replica refuses to replicate its upstream because the upstream's
    /// replication history does not contain the data this replica holds (the source was
    /// recreated empty, `source.host` now names another Redis, ...): a sync would flush this
    /// replica's data. It keeps its data, `masterLinkUp` is false, `linkError` says how to accept
    /// the upstream's history (the annotation `redis.io/accept-replication-history` on the
    /// RedisCluster, with the upstream's replication id). The values are those seen when the
    /// block began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_blocked: Option<HistoryBlock>,
    /// Present while this pod, the primary of its replication history until it was told to
    /// replicate the source, waits for that source (a replica in the same history: it
    /// replicates this pod) to be promoted: the demotion of a planned switchover. Its data no
    /// longer moves: this position is the promotion token (`status.demotionToken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demoted: Option<HistoryPosition>,
    /// This Redis's own `master_replid` (`INFO replication`): on a replica, the id of the
    /// replication history it follows; on a primary, its own. Absent from reports of older
    /// instance managers and while Redis cannot be read (as are the fields below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_replid: Option<String>,
    /// `master_replid2`: the history this Redis continued from (after a promotion or a failover
    /// of its upstream); `0000...` when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_replid2: Option<String>,
    /// `second_repl_offset`: the offset up to which `master_replid2` is shared (-1 when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_repl_offset: Option<i64>,
    /// `master_repl_offset`: how far this Redis is in its history (on a replica, what it has
    /// received; `replOffset` is what it has processed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_repl_offset: Option<i64>,
    /// Keys this Redis holds: the sum of `keys=` over the databases of `INFO keyspace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    /// Redis is loading its dataset from disk (`loading:1`): `keys` is still growing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loading: Option<bool>,
    /// Redis booted fenced and has stayed fenced since: it has accepted no write since it
    /// started. Only claimed when this instance manager has watched this redis-server process
    /// since it booted (else absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booted_fenced: Option<bool>,
    /// Seconds since this redis-server process started (`uptime_in_seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
    /// The last replication position the instance manager recorded for this pod's data (kept
    /// in its state file on the data volume when it runs with `--state-dir`, so it survives
    /// restarts): what this pod held the last time it replicated with its link up or was a
    /// primary taking writes. A pod whose Redis is now empty while this says it held keys lost
    /// its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_history: Option<HistoryPosition>,
    /// Present while this Redis is a primary that restarted with its data under a new
    /// replication id (Redis 7.0 with `appendonly yes` gets a new id at every restart) after
    /// the instance manager recorded it taking writes under another one: its replicas may hold
    /// writes it lost in the restart (`appendfsync everysec`), so the instance manager keeps it
    /// fenced (`error` says so) until the operator fails over to the replica that holds the
    /// most of the former history, or accepts the restart (`acceptHistory` = its new id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_primary: Option<PrimaryRestart>,
    /// The last time the replication gate let this replica resynchronise in full from an
    /// upstream under another replication history because that upstream holds the same data
    /// (its keys, sampled on both sides, match): a source that restarted with its data under a
    /// new replication id. Kept until the instance manager restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_data_resync: Option<SameDataResync>,
    /// The last salvage of this pod's data before a resync would have discarded it (issue 14,
    /// docs/salvage.md): the writes this pod held that its new upstream never received (the
    /// divergent tail of its replication stream), or a snapshot of its dataset when its backlog
    /// no longer held that tail. Read back from the salvage directory on the data volume, so
    /// it survives restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salvage: Option<Salvage>,
    /// Which of the auth Secret's passwords the local Redis accepts now (docs/password-rotation.md):
    /// `password`, or `password+previousPassword` while a rotation is under way. Absent without
    /// an auth Secret, or before the instance manager checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passwords: Option<String>,
}

/// What the instance manager saved of a pod's data before a resync replaced it (see
/// [`InstanceReport::salvage`]).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Salvage {
    /// `tail`: the commands of the replication stream the new upstream never received (a
    /// RESP file that `redis-cli --pipe` replays); `snapshot`: an RDB of the whole dataset.
    pub kind: String,
    /// The file, as the instance manager container sees it (the data volume's
    /// `instance-manager/salvage/` directory).
    pub file: String,
    /// Its size in bytes (for a tail: of the replication stream captured).
    pub bytes: u64,
    /// For a tail: the distinct keys its commands write. For a snapshot: the keys the dataset
    /// held.
    pub keys: u64,
    /// For a tail: the commands it holds (pings and replication acknowledgements left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<u64>,
    /// The replication history the salvaged data belongs to.
    pub replid: String,
    /// For a tail: its first offset in that history (the new upstream's share ends just
    /// before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_offset: Option<i64>,
    /// The offset this pod's data had reached in that history.
    pub to_offset: i64,
    /// The upstream whose resync it was salvaged from, `host:port`, and its replication id.
    pub upstream: String,
    pub upstream_replid: String,
    /// When (RFC 3339, UTC).
    pub at: String,
}

/// The last reading of a replica's upstream (see [`InstanceReport::upstream_last_seen`]).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamContact {
    /// The upstream's `master_repl_offset` then.
    pub offset: i64,
    /// The replication history this replica followed then (its `master_replid`).
    pub replid: String,
    /// This replica's lag then, in bytes; None when its own Redis could not be read then
    /// (the upstream's offset was still recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// ... and in seconds, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// How long before this report that was, in seconds.
    pub seconds_ago: f64,
    /// When that was (RFC 3339, whole seconds, the instance manager's clock): unlike
    /// `seconds_ago`, it does not change while the upstream stays silent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

impl InstanceReport {
    /// A digest of what the operator acts on in this report: everything but the readings that
    /// move with every write (offsets, lag, rates, keys, uptime, the recorded position's
    /// offset). The instance manager's `GET /status?since=<digest>&wait=<seconds>` answers when
    /// its report's digest differs from `since` (or when `wait` ran out), so the operator
    /// learns of a change at once without polling every pod (issue 16). FNV-1a over the JSON
    /// of the remaining fields: the same value on both sides of the wire.
    pub fn material_digest(&self) -> u64 {
        let mut m = self.clone();
        m.repl_offset = None;
        m.upstream_offset = None;
        m.lag_bytes = None;
        m.lag_seconds = None;
        m.upstream_backlog_bytes = None;
        m.upstream_write_rate = None;
        m.backlog_outage_seconds = None;
        m.master_repl_offset = None;
        m.keys = None;
        m.uptime_seconds = None;
        m.upstream_last_seen = None;
        if let Some(h) = m.recorded_history.as_mut() {
            h.offset = 0;
            h.keys = 0;
        }
        let json = serde_json::to_vec(&m).unwrap_or_default();
        json.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
}

/// A primary that restarted under a new replication id (see
/// [`InstanceReport::restarted_primary`]).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryRestart {
    /// What it held as a primary taking writes, as last recorded.
    pub had: HistoryPosition,
    /// What it holds now (its new replication id).
    pub now: HistoryPosition,
}

/// A comparison of this replica's data with its upstream's: keys sampled from the local Redis
/// (up to 200, all of them when it holds fewer), each read on both sides (type and value).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DataSample {
    /// Keys compared.
    pub compared: u32,
    /// Keys whose type and value are the same on the upstream.
    pub matched: u32,
    /// The share of matching keys (in percent) that shows the same data.
    pub needed_percent: u32,
    /// Why the data could not be compared (then `compared` is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DataSample {
    /// `matched` in percent of `compared` (rounded down; 0 when nothing was compared).
    pub fn percent(&self) -> u32 {
        if self.compared == 0 {
            0
        } else {
            (u64::from(self.matched) * 100 / u64::from(self.compared)) as u32
        }
    }

    /// Whether the sample shows the same data: at least `needed_percent` of at least one key.
    pub fn same_data(&self) -> bool {
        self.error.is_none()
            && self.compared > 0
            && u64::from(self.matched) * 100
                >= u64::from(self.needed_percent) * u64::from(self.compared)
    }

    /// `196 of 200 keys sampled on both sides match (98%, 90% needed)`, or why nothing was
    /// compared.
    pub fn describe(&self) -> String {
        match &self.error {
            Some(e) => format!("its data could not be compared with the upstream's ({e})"),
            None => format!(
                "{} of {} keys sampled on both sides match ({}%, {}% needed)",
                self.matched,
                self.compared,
                self.percent(),
                self.needed_percent
            ),
        }
    }
}

/// A full resync from an upstream under another replication history that holds the same data
/// (see [`InstanceReport::same_data_resync`]).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SameDataResync {
    /// What this replica held (its recorded history, or Redis's own id).
    pub ours: HistoryPosition,
    /// The upstream it resynchronised from.
    pub upstream: UpstreamHistory,
    /// The comparison that showed the same data.
    pub sample: DataSample,
    /// When the gate let it through (RFC 3339, UTC).
    pub at: String,
}

/// A position in a replication history, with the data held there.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPosition {
    /// Replication id.
    pub replid: String,
    /// Offset in that history.
    pub offset: i64,
    /// Keys held.
    pub keys: u64,
}

/// Why a replica refuses to follow its upstream: both histories, as seen when the block began.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryBlock {
    /// The history of the data this replica holds (the recorded one when Redis restarted with
    /// a new replication id) and how many keys it holds.
    pub ours: HistoryPosition,
    /// Whether `ours.replid` comes from a record of what this replica followed. False when
    /// there is none (Redis restarted with a new id and the instance manager has no state
    /// file): then nothing shows where the data came from.
    pub ours_recorded: bool,
    /// What the upstream holds.
    pub upstream: UpstreamHistory,
    /// When the block began (RFC 3339, UTC).
    pub since: String,
    /// While the cluster replicates an external source: how this replica's data compares with
    /// the upstream's (too few keys match to take the upstream for the same data restarted
    /// under a new replication id). Absent when no comparison was made (the upstream holds no
    /// keys, or it is a primary of this cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<DataSample>,
}

/// The upstream's replication history, from its `INFO replication` and `INFO keyspace`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamHistory {
    /// `host:port` the replica is pointed at.
    pub address: String,
    /// Its `master_replid`: the id to accept to replace this replica's data with the
    /// upstream's.
    pub replid: String,
    /// Its `master_replid2`.
    pub replid2: String,
    /// Its `master_repl_offset`.
    pub offset: i64,
    /// Its `second_repl_offset`.
    pub second_offset: i64,
    /// Keys it holds.
    pub keys: u64,
}

/// The role Redis itself reports.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ObservedRole {
    Primary,
    Replica,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report from an instance manager that predates the history fields still parses, and
    /// the new fields are left out of the JSON when absent (the operator of either version
    /// reads the other's reports).
    #[test]
    fn history_fields_are_optional_both_ways() {
        let old = r#"{"pod":"dr-0","appliedEpoch":3,"role":"replica","upstream":"src:6379",
            "masterLinkUp":true,"linkError":null,"replOffset":900,"upstreamOffset":1000,
            "lagBytes":100,"syncInProgress":false,"syncFull":0,"syncPartialOk":1,
            "connectedReplicas":0,"ready":true,"error":null}"#;
        let r: InstanceReport = serde_json::from_str(old).unwrap();
        assert_eq!(r.history_blocked, None);
        assert_eq!(r.keys, None);
        let json = serde_json::to_string(&r).unwrap();
        for absent in [
            "historyBlocked",
            "masterReplid",
            "keys",
            "loading",
            "bootedFenced",
            "recordedHistory",
            "restartedPrimary",
            "sameDataResync",
        ] {
            assert!(!json.contains(absent), "{absent} in {json}");
        }
    }

    #[test]
    fn a_block_round_trips_in_camel_case() {
        let r = InstanceReport {
            pod: "dr-0".into(),
            history_blocked: Some(HistoryBlock {
                ours: HistoryPosition {
                    replid: "aaa".into(),
                    offset: 900,
                    keys: 12,
                },
                ours_recorded: true,
                upstream: UpstreamHistory {
                    address: "src:6379".into(),
                    replid: "bbb".into(),
                    replid2: "0000".into(),
                    offset: 14,
                    second_offset: -1,
                    keys: 0,
                },
                since: "2026-01-01T00:00:00Z".into(),
                sample: Some(DataSample {
                    compared: 200,
                    matched: 12,
                    needed_percent: 90,
                    error: None,
                }),
            }),
            keys: Some(12),
            booted_fenced: Some(false),
            ..Default::default()
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["historyBlocked"]["upstream"]["secondOffset"], -1);
        assert_eq!(json["historyBlocked"]["oursRecorded"], true);
        assert_eq!(json["bootedFenced"], false);
        assert_eq!(json["historyBlocked"]["sample"]["neededPercent"], 90);
        assert!(json["historyBlocked"]["sample"].get("error").is_none());
        assert_eq!(serde_json::from_value::<InstanceReport>(json).unwrap(), r);
    }
}
