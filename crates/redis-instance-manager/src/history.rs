//! Whose data a sync would keep, pure: the decisions behind the replication gate
//! (docs/instance-manager.md, "The replication gate").
//!
//! A replica that syncs from an upstream whose replication history does not contain the data it
//! holds performs a full resync and flushes that data (a source recreated empty, `source.host`
//! changed to another Redis, the primary of a promoted cluster restarted with an emptied volume).
//! Redis reconnects on its own within a second, so the instance manager keeps every replica's
//! gate closed (its `masteruser`/`masterauth` cannot authenticate, see `gate`) and opens it only
//! after [`decide`] said that a sync from what the upstream address leads to now keeps our data:
//!
//! | our data | the upstream's history | decision |
//! |---|---|---|
//! | recorded as the primary of H | a replica whose id is H (it replicates us) | wait, demoted ([`Wait::Promotion`]) |
//! | no keys | anything | safe: nothing to lose |
//! | our history id at offset O | a replica with that id, below O | wait for it to catch up ([`Wait::CatchUp`]) |
//! | our history id (Redis's own, or the one recorded) | `master_replid` is it | safe: the same history (bytes we hold beyond the upstream's offset are reported) |
//! | | `master_replid2` is it | safe: a failover in the same lineage (bytes beyond `second_repl_offset` are the honest exception, `divergedBytes`) |
//! | our Redis's own `master_replid2` | `master_replid2` is the same | safe: siblings promoted out of the same history (what we hold beyond the upstream's share of it is the honest exception, `divergedBytes`) |
//! | | anything else, `master_replid` = `acceptHistory` | safe: the user accepted replacing our data |
//! | | anything else | blocked: unrelated history |
//!
//! With `appendonly yes` a restarted Redis gets a new replication id, so "our history" is also the
//! [`Record`] the instance manager keeps of what this pod's data followed (in memory, and in a
//! state file on the data volume with `--state-dir`, see `state`).
//!
//! The same restart makes a source that restarted with its data look unrelated. While the
//! cluster replicates an external source, a block is therefore judged once more on the data
//! itself ([`with_sample`]): keys sampled from this replica and read on the upstream (see
//! `similarity`); when at least [`similarity::NEEDED_PERCENT`](crate::similarity::NEEDED_PERCENT)
//! of them match, the upstream is the same dataset restarted under a new id and the gate opens
//! (a full resync follows). A primary of this cluster is never judged that way: its replicas may
//! hold acknowledged writes it lost in its restart, and a primary that restarted under a new id
//! is kept fenced ([`restarted_primary`]) until the operator fails over or accepts the restart.

use redis_cluster_api::report::{
    DataSample, HistoryBlock, HistoryPosition, PrimaryRestart, UpstreamHistory,
};
use serde::{Deserialize, Serialize};

use crate::info::{Observed, RedisRole};

/// Redis's "no id" (`master_replid2` before any failover).
const NO_ID: &str = "0000000000000000000000000000000000000000";

fn is_id(id: &str) -> bool {
    !id.is_empty() && id != NO_ID
}

/// What the instance manager remembers about the history of this pod's data: where it was the
/// last time it was known to hold a real history (a replica with its link up, or a primary that
/// is not fenced).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub replid: String,
    pub offset: i64,
    pub keys: u64,
    /// `primary` or `replica`: a primary's replicas may hold writes it loses in a restart.
    pub role: String,
    /// The redis-server process (`run_id`) this was recorded from: a primary whose replication
    /// id changed in another process restarted (absent from older state files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

impl Record {
    pub fn position(&self) -> HistoryPosition {
        HistoryPosition {
            replid: self.replid.clone(),
            offset: self.offset,
            keys: self.keys,
        }
    }
}

/// The record this tick's reading of the local Redis gives, if it shows a real history: a
/// replica with its link up and no sync in progress (its ids are its upstream's), or a primary
/// that is not fenced and not loading (it takes writes: its history is the data's). A fenced
/// master is not recorded: it may have booted without its data, which is exactly what the
/// record must still tell afterwards.
pub fn record_of(o: &Observed, fenced: bool) -> Option<Record> {
    if o.loading || !is_id(&o.master_replid) {
        return None;
    }
    let role = match o.role {
        RedisRole::Slave if o.master_link_status_up && !o.master_sync_in_progress => "replica",
        RedisRole::Master if !fenced => "primary",
        _ => return None,
    };
    Some(Record {
        replid: o.master_replid.clone(),
        offset: o.master_repl_offset,
        keys: o.keys,
        role: role.into(),
        run_id: (!o.run_id.is_empty()).then(|| o.run_id.clone()),
    })
}

/// What the upstream says about its history (the gate's own fresh read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamState {
    /// `host:port` the local Redis is pointed at.
    pub address: String,
    pub replid: String,
    pub replid2: String,
    pub offset: i64,
    pub second_offset: i64,
    pub keys: u64,
    /// `run_id`: the redis-server process.
    pub run_id: String,
    /// `role:master`.
    pub master: bool,
    /// `loading:1`: it is still loading its dataset (its keys are not all there yet).
    pub loading: bool,
}

impl UpstreamState {
    /// From the upstream's `INFO` (default sections: server, replication, keyspace); None when
    /// the reply has no replication id (not a Redis we can judge).
    pub fn parse(address: &str, info: &str) -> Option<UpstreamState> {
        let f = crate::info::info_fields(info);
        let num = |k: &str| f.get(k).and_then(|v| v.parse::<i64>().ok());
        let replid = f.get("master_replid").filter(|v| is_id(v))?.to_string();
        Some(UpstreamState {
            address: address.to_string(),
            replid,
            replid2: f.get("master_replid2").unwrap_or(&NO_ID).to_string(),
            offset: num("master_repl_offset").unwrap_or(0),
            second_offset: num("second_repl_offset").unwrap_or(-1),
            keys: crate::info::keyspace_keys(&f),
            run_id: f.get("run_id").unwrap_or(&"").to_string(),
            master: f.get("role") == Some(&"master"),
            loading: f.get("loading") == Some(&"1"),
        })
    }
}

/// The replication ids one upstream process (one `run_id`) has shown while it started new
/// histories of the same data. A master that has had no replica since it started creates its
/// replication backlog when the first one attaches, and then starts a **new** replication id
/// without any `master_replid2`: the id a user accepted (or that a replica saw) changes under
/// the other replicas although the data is the same. So an id accepted for this process also
/// covers the ids it started that way: same `run_id`, still a master, no `master_replid2`. A
/// process that became a replica (another dataset) or shifted ids at a promotion
/// (`master_replid2` set) starts over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Incarnation {
    address: String,
    run_id: String,
    ids: Vec<String>,
}

impl Incarnation {
    /// Note `up`; returns the other ids the same process had (for [`decide`]'s `aliases`).
    pub fn observe(&mut self, up: &UpstreamState) -> Vec<String> {
        let same = !up.run_id.is_empty()
            && up.run_id == self.run_id
            && up.address == self.address
            && up.master
            && !is_id(&up.replid2);
        if !same {
            *self = Incarnation {
                address: up.address.clone(),
                run_id: up.run_id.clone(),
                ids: Vec::new(),
            };
        }
        let aliases: Vec<String> = self
            .ids
            .iter()
            .filter(|i| **i != up.replid)
            .cloned()
            .collect();
        if !self.ids.contains(&up.replid) {
            self.ids.push(up.replid.clone());
            // A backlog is created once per process: a handful is plenty.
            if self.ids.len() > 8 {
                self.ids.remove(0);
            }
        }
        aliases
    }
}

/// Why a sync from the upstream keeps our data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Safe {
    /// The local Redis holds no keys.
    Empty,
    /// The upstream continues our history. `behind`: bytes we hold beyond the upstream's
    /// offset (it restarted from an older copy of the same history), lost by the resync.
    SameHistory { behind: Option<i64> },
    /// The upstream took over our history at a failover (its `master_replid2` is ours).
    /// `diverged`: bytes we hold beyond its `second_repl_offset`, lost by the resync (the
    /// honest exception, reported as `divergedBytes`).
    Failover { diverged: Option<i64> },
    /// The user accepted the upstream's history (`acceptHistory`).
    Accepted,
    /// The upstream's history is unrelated, but its data is ours: enough of our keys, sampled
    /// and read on both sides, match (a source that restarted with its data under a new id).
    /// A full resync follows; what the upstream lost in its restart is lost here too.
    SameData(DataSample),
}

impl Safe {
    /// For the log line of the opened gate.
    pub fn describe(&self) -> String {
        match self {
            Safe::Empty => "this replica holds no keys".into(),
            Safe::SameHistory { behind: None } => "the same replication history".into(),
            Safe::SameHistory { behind: Some(b) } => format!(
                "the same replication history, but {b} bytes behind this replica (the upstream restarted from an older copy): they are lost"
            ),
            Safe::Failover { diverged: None } => "a failover in the same history".into(),
            Safe::Failover { diverged: Some(b) } => format!(
                "a failover in the same history, this replica {b} bytes beyond the new upstream's share of it: the honest exception, see divergedBytes"
            ),
            Safe::Accepted => {
                "the user accepted this history (acceptHistory): this replica's data is replaced"
                    .into()
            }
            Safe::SameData(sample) => format!(
                "another replication history, but the same data: {}; the upstream restarted with its data under a new replication id, this replica resynchronises in full and loses what the upstream lost in its restart",
                sample.describe()
            ),
        }
    }
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Safe(Safe),
    /// A sync would flush our data for an unrelated history.
    Blocked(Block),
    /// Not now, nothing wrong: the gate stays closed until the upstream moves on.
    Wait(Wait),
}

/// Why the gate waits ([`Decision::Wait`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The upstream is a replica in the history this pod led as primary: it replicates this pod
    /// (directly or through others). Syncing from it would close a replication loop; this pod
    /// stays a read-only replica whose data no longer moves (a replica appends nothing to its
    /// stream), at `ours`: the planned switchover's demotion, whose token `ours` is. The gate
    /// opens once the upstream was promoted out of this history (its `master_replid2`), and
    /// then a partial resync continues it.
    Promotion { ours: HistoryPosition },
    /// The upstream is a replica `behind` bytes short of us in our own history: a PSYNC now
    /// would ask it for bytes it does not hold yet, and Redis answers that with a full resync
    /// of everything. It is still receiving them (from the pod that held them): wait.
    CatchUp { ours: HistoryPosition, behind: i64 },
}

impl Wait {
    /// The `linkError` while waiting.
    pub fn message(&self, upstream: &str) -> String {
        match self {
            Wait::Promotion { ours } => format!(
                "demoted for a planned switchover: this pod was the primary of replication history {} and {upstream} is a replica in it (it replicates this pod), so this pod stays a read-only replica, its data frozen at {}:{} (the promotion token), and waits for {upstream} to be promoted with that token; then it continues from it with a partial resync",
                ours.replid, ours.replid, ours.offset
            ),
            Wait::CatchUp { behind, ours } => format!(
                "{upstream} is a replica {behind} bytes behind this pod in replication history {} (this pod is at {}): waiting for it to catch up, so that this pod continues with a partial resync instead of a full one",
                ours.replid, ours.offset
            ),
        }
    }

    /// The frozen position of a demoted primary.
    pub fn token(&self) -> Option<&HistoryPosition> {
        match self {
            Wait::Promotion { ours } => Some(ours),
            Wait::CatchUp { .. } => None,
        }
    }
}

/// Both histories of a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Our history: the recorded one if there is a record, else Redis's own.
    pub ours: HistoryPosition,
    /// Whether `ours` comes from a record.
    pub recorded: bool,
    pub upstream: UpstreamState,
    /// How our data compares with the upstream's, when it was compared (too few keys match).
    pub sample: Option<DataSample>,
}

impl Block {
    /// Same histories (the offsets may move while the block lasts) and the same comparison of
    /// the data.
    pub fn same_ids(&self, other: &Block) -> bool {
        self.ours.replid == other.ours.replid
            && self.upstream.replid == other.upstream.replid
            && self.upstream.address == other.upstream.address
            && self.sample == other.sample
    }

    /// The `linkError` while blocked. `cluster` and `namespace` name the RedisCluster to
    /// annotate.
    pub fn message(&self, cluster: &str, namespace: &str) -> String {
        let (o, u) = (&self.ours, &self.upstream);
        let ours = if self.recorded {
            format!("ours {}@{}, {} keys", o.replid, o.offset, o.keys)
        } else {
            format!(
                "ours: {} keys with no record of their history (redis-server restarted with the new id {}; run the instance manager with --state-dir to keep the record)",
                o.keys, o.replid
            )
        };
        let data = match &self.sample {
            Some(s) if s.error.is_some() => format!(", and {}", s.describe()),
            Some(s) => format!(
                ", and the upstream does not hold the same data ({}; so it is not this data restarted under a new replication id)",
                s.describe()
            ),
            None => String::new(),
        };
        format!(
            "upstream {} has an unrelated replication history ({ours}; upstream {}@{}, {} keys): a sync would replace our data{data}, so this replica keeps its data and does not replicate; to accept the upstream's history: kubectl annotate rediscluster -n {namespace} {cluster} {}={}",
            u.address,
            u.replid,
            u.offset,
            u.keys,
            redis_cluster_api::topology::ACCEPT_HISTORY_ANNOTATION,
            u.replid
        )
    }

    /// For `/status`, with when it began.
    pub fn report(&self, since: &str) -> HistoryBlock {
        HistoryBlock {
            ours: self.ours.clone(),
            ours_recorded: self.recorded,
            upstream: self.upstream.history(),
            since: since.to_string(),
            sample: self.sample.clone(),
        }
    }

    /// Whether our data is worth comparing with the upstream's ([`with_sample`]): only while
    /// the cluster replicates an external source (`follows_source`: the topology names no
    /// primary; the upstream is the source, or in a cascading topology the pod that replicates
    /// it), when both sides hold keys and the upstream has loaded its dataset. A primary of
    /// this cluster is never taken for the same data: its replicas may hold writes it lost.
    ///
    /// Nor is an upstream that carries a second replication id: a restart starts a history with
    /// none, while a second id says the upstream was promoted out of another history (a DR
    /// cluster that took over, then maybe failed over). Data that merely *looks* the same there
    /// is the split-brain case (the "Recover Primary Region" workflow: the old primary region
    /// replicating the promoted one), where this replica may hold writes the upstream never got;
    /// only the user decides to drop them (`acceptHistory`).
    pub fn worth_sampling(&self, follows_source: bool) -> bool {
        follows_source
            && self.ours.keys > 0
            && self.upstream.keys > 0
            && !self.upstream.loading
            && !is_id(&self.upstream.replid2)
    }
}

impl UpstreamState {
    /// For reports.
    pub fn history(&self) -> UpstreamHistory {
        UpstreamHistory {
            address: self.address.clone(),
            replid: self.replid.clone(),
            replid2: self.replid2.clone(),
            offset: self.offset,
            second_offset: self.second_offset,
            keys: self.keys,
        }
    }
}

/// A block judged once more on the data itself: the upstream holds the same data when the
/// sample says so ([`DataSample::same_data`]), else the block stands and carries the sample.
pub fn with_sample(block: Block, sample: DataSample) -> Decision {
    if sample.same_data() {
        Decision::Safe(Safe::SameData(sample))
    } else {
        Decision::Blocked(Block {
            sample: Some(sample),
            ..block
        })
    }
}

/// What the local Redis says about its own history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    pub replid: String,
    pub offset: i64,
    pub replid2: String,
    pub second_offset: i64,
    pub keys: u64,
}

impl Local {
    pub fn of(o: &Observed) -> Local {
        Local {
            replid: o.master_replid.clone(),
            offset: o.master_repl_offset,
            replid2: o.master_replid2.clone(),
            second_offset: o.second_repl_offset,
            keys: o.keys,
        }
    }

    /// The positions the local data is known to be at, most specific first: Redis's own id;
    /// the history it continued from when it holds nothing beyond it (a replica promoted by
    /// hand and not written to); the recorded one.
    fn positions(&self, record: Option<&Record>) -> Vec<(String, i64)> {
        let mut v = vec![(self.replid.clone(), self.offset)];
        if self.offset == self.second_offset - 1 {
            v.push((self.replid2.clone(), self.offset));
        }
        if let Some(r) = record {
            v.push((r.replid.clone(), r.offset));
        }
        v.retain(|(id, _)| is_id(id));
        v
    }
}

/// Whether a sync from `up` keeps the local data (see the module's table). `accept` is the
/// topology's `acceptHistory`; `aliases` are the ids the same upstream process showed before
/// its current one for the same data (see [`Incarnation`]): accepting one of them accepts it.
pub fn decide(
    local: &Local,
    record: Option<&Record>,
    up: &UpstreamState,
    accept: Option<&str>,
    aliases: &[String],
) -> Decision {
    // A primary of this history that is told to follow one of its own replicas: the demotion
    // of a planned switchover. Checked before "empty": an empty primary's replicas are its
    // replicas all the same, and a loop is a loop.
    if !up.master
        && let Some(r) = record.filter(|r| r.role == "primary" && r.replid == up.replid)
    {
        let ours = if local.replid == r.replid {
            HistoryPosition {
                replid: local.replid.clone(),
                offset: local.offset,
                keys: local.keys,
            }
        } else {
            r.position()
        };
        return Decision::Wait(Wait::Promotion { ours });
    }
    if local.keys == 0 {
        return Decision::Safe(Safe::Empty);
    }
    let positive = |b: i64| (b > 0).then_some(b);
    let positions = local.positions(record);
    if let Some((_, off)) = positions.iter().find(|(id, _)| *id == up.replid) {
        if !up.master && *off > up.offset {
            return Decision::Wait(Wait::CatchUp {
                ours: HistoryPosition {
                    replid: up.replid.clone(),
                    offset: *off,
                    keys: local.keys,
                },
                behind: off - up.offset,
            });
        }
        return Decision::Safe(Safe::SameHistory {
            behind: positive(off - up.offset),
        });
    }
    if let Some((_, off)) = positions
        .iter()
        .find(|(id, _)| is_id(&up.replid2) && *id == up.replid2)
    {
        // The replica asks for offset + 1; the new upstream serves up to second_repl_offset.
        return Decision::Safe(Safe::Failover {
            diverged: positive(off + 1 - up.second_offset),
        });
    }
    // Siblings: this Redis and the upstream were both promoted out of the same history (a
    // failover that promoted this pod, then another: Sentinel aborting a failover leaves its
    // first choice a master; a source whose Sentinels did the same). Like a failover in the
    // lineage: what this pod holds beyond the upstream's share of that history is the honest
    // exception, reported (often only the Sentinels' hello messages and the pings a master
    // writes into its stream, no data).
    if is_id(&local.replid2) && local.replid2 == up.replid2 {
        let fork = local.second_offset - 1;
        let upstream_share = up.second_offset - 1;
        return Decision::Safe(Safe::Failover {
            diverged: positive(local.offset - fork + (fork - upstream_share).max(0)),
        });
    }
    if accept.is_some_and(|a| a == up.replid || aliases.iter().any(|x| x == a)) {
        return Decision::Safe(Safe::Accepted);
    }
    let (ours, recorded) = match record {
        Some(r) => (
            HistoryPosition {
                keys: local.keys,
                ..r.position()
            },
            true,
        ),
        None => (
            HistoryPosition {
                replid: local.replid.clone(),
                offset: local.offset,
                keys: local.keys,
            },
            false,
        ),
    };
    Decision::Blocked(Block {
        ours,
        recorded,
        upstream: up.clone(),
        sample: None,
    })
}

/// A Redis that would become (or stay) a writable primary although it holds no keys while the
/// record says this pod held some: its data was lost (volume replaced or emptied) and taking
/// writes would make an empty dataset the one everybody follows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "booted without its data (had {had_replid}@{had_offset}, {had_keys} keys; now empty): not taking writes; the operator will fail over or rejoin it as a replica (to take writes with the empty dataset anyway, annotate the RedisCluster with {annotation}={now_replid})",
    annotation = redis_cluster_api::topology::ACCEPT_HISTORY_ANNOTATION
)]
pub struct BootedWithoutData {
    pub had_replid: String,
    pub had_offset: i64,
    pub had_keys: u64,
    /// Redis's new replication id, the one to accept.
    pub now_replid: String,
}

/// Whether this Redis lost the data the record says it held (see [`BootedWithoutData`]);
/// `accept` (the topology's `acceptHistory`) equal to Redis's new id accepts the empty dataset.
pub fn lost_data(
    o: &Observed,
    record: Option<&Record>,
    accept: Option<&str>,
) -> Option<BootedWithoutData> {
    let r = record?;
    let lost = o.keys == 0 && r.keys > 0 && !o.loading && r.replid != o.master_replid;
    (lost && accept != Some(o.master_replid.as_str())).then(|| BootedWithoutData {
        had_replid: r.replid.clone(),
        had_offset: r.offset,
        had_keys: r.keys,
        now_replid: o.master_replid.clone(),
    })
}

/// A primary that restarted with its data under a new replication id (Redis 7.0 with
/// `appendonly yes` gets one at every restart) after it was recorded taking writes under
/// another: its replicas may hold writes it lost in the restart (`appendfsync everysec`), so it
/// must not take writes again on its own (see [`restarted_primary`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "restarted under a new replication history ({now_replid}@{now_offset}, {now_keys} keys; as a primary it held {had_replid}@{had_offset}, {had_keys} keys): not taking writes, since its replicas may hold writes it lost in the restart; the operator fails over to the replica that holds the most of {had_replid}, or accepts the restart when no replica holds it (to take writes with what it restarted with now, annotate the RedisCluster with {annotation}={now_replid})",
    annotation = redis_cluster_api::topology::ACCEPT_HISTORY_ANNOTATION
)]
pub struct RestartedPrimary {
    pub had_replid: String,
    pub had_offset: i64,
    pub had_keys: u64,
    /// Redis's new replication id, the one to accept.
    pub now_replid: String,
    pub now_offset: i64,
    pub now_keys: u64,
}

impl RestartedPrimary {
    /// For `/status`.
    pub fn report(&self) -> PrimaryRestart {
        PrimaryRestart {
            had: HistoryPosition {
                replid: self.had_replid.clone(),
                offset: self.had_offset,
                keys: self.had_keys,
            },
            now: HistoryPosition {
                replid: self.now_replid.clone(),
                offset: self.now_offset,
                keys: self.now_keys,
            },
        }
    }
}

/// Whether this Redis is a primary that restarted under a new replication id: it is a master
/// holding keys (an empty one is [`lost_data`]'s), the record says this pod was a primary taking
/// writes under another id, and the id changed in another redis-server process (a record
/// without a `run_id`, from an older state file, counts any change). Not when its new history
/// continues the recorded one (`master_replid2`), nor when `accept` (the topology's
/// `acceptHistory`) is its new id: the operator accepted the restart.
pub fn restarted_primary(
    o: &Observed,
    record: Option<&Record>,
    accept: Option<&str>,
) -> Option<RestartedPrimary> {
    let r = record?;
    let restarted = r.role == "primary"
        && o.role == RedisRole::Master
        && !o.loading
        && o.keys > 0
        && is_id(&o.master_replid)
        && o.master_replid != r.replid
        && o.master_replid2 != r.replid
        && r.run_id.as_ref().is_none_or(|run| *run != o.run_id);
    (restarted && accept != Some(o.master_replid.as_str())).then(|| RestartedPrimary {
        had_replid: r.replid.clone(),
        had_offset: r.offset,
        had_keys: r.keys,
        now_replid: o.master_replid.clone(),
        now_offset: o.master_repl_offset,
        now_keys: o.keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::observed;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
    const R: &str = "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr";

    fn local(replid: &str, offset: i64, keys: u64) -> Local {
        Local {
            replid: replid.into(),
            offset,
            replid2: NO_ID.into(),
            second_offset: -1,
            keys,
        }
    }

    fn rec(replid: &str, offset: i64) -> Record {
        Record {
            replid: replid.into(),
            offset,
            keys: 10,
            role: "replica".into(),
            run_id: None,
        }
    }

    fn up(replid: &str, replid2: &str, offset: i64, second: i64) -> UpstreamState {
        UpstreamState {
            address: "src:6379".into(),
            replid: replid.into(),
            replid2: replid2.into(),
            offset,
            second_offset: second,
            keys: 0,
            run_id: "p1".into(),
            master: true,
            loading: false,
        }
    }

    fn blocked(ours: (&str, i64), recorded: bool, u: UpstreamState) -> Decision {
        Decision::Blocked(Block {
            ours: HistoryPosition {
                replid: ours.0.into(),
                offset: ours.1,
                keys: 5,
            },
            recorded,
            upstream: u,
            sample: None,
        })
    }

    /// The decision table: (what, local Redis, record, upstream, acceptHistory, decision).
    #[test]
    fn decision_table() {
        /// (what, local Redis, record, upstream, acceptHistory, decision)
        type Row<'a> = (
            &'a str,
            Local,
            Option<Record>,
            UpstreamState,
            Option<&'a str>,
            Decision,
        );
        let rows: Vec<Row> = vec![
            (
                "empty: nothing to lose, whatever the upstream",
                local(R, 0, 0),
                Some(rec(A, 900)),
                up(C, NO_ID, 14, -1),
                None,
                Decision::Safe(Safe::Empty),
            ),
            (
                "same history, caught up or behind",
                local(A, 900, 5),
                None,
                up(A, NO_ID, 1000, -1),
                None,
                Decision::Safe(Safe::SameHistory { behind: None }),
            ),
            (
                "same history, the upstream restarted from an older copy",
                local(A, 900, 5),
                None,
                up(A, NO_ID, 850, -1),
                None,
                Decision::Safe(Safe::SameHistory { behind: Some(50) }),
            ),
            (
                "a failover in the lineage, not ahead: partial resync",
                local(A, 500, 5),
                None,
                up(B, A, 700, 501),
                None,
                Decision::Safe(Safe::Failover { diverged: None }),
            ),
            (
                "a failover, this replica ahead of the promoted one: the honest exception",
                local(A, 620, 5),
                None,
                up(B, A, 700, 501),
                None,
                Decision::Safe(Safe::Failover {
                    diverged: Some(120),
                }),
            ),
            (
                "siblings promoted out of A at the same point, 20 bytes of ours beyond it",
                Local {
                    replid2: A.into(),
                    second_offset: 501,
                    ..local(C, 520, 5)
                },
                None,
                up(B, A, 700, 501),
                None,
                Decision::Safe(Safe::Failover { diverged: Some(20) }),
            ),
            (
                "siblings, the upstream promoted 100 bytes earlier in A",
                Local {
                    replid2: A.into(),
                    second_offset: 501,
                    ..local(C, 520, 5)
                },
                None,
                up(B, A, 700, 401),
                None,
                Decision::Safe(Safe::Failover {
                    diverged: Some(120),
                }),
            ),
            (
                "siblings, ours promoted earlier and nothing written: nothing lost",
                Local {
                    replid2: A.into(),
                    second_offset: 401,
                    ..local(C, 400, 5)
                },
                None,
                up(B, A, 700, 501),
                None,
                Decision::Safe(Safe::Failover { diverged: None }),
            ),
            (
                "restarted with appendonly (new id), the record says A: same history",
                local(R, 0, 5),
                Some(rec(A, 900)),
                up(A, NO_ID, 1000, -1),
                None,
                Decision::Safe(Safe::SameHistory { behind: None }),
            ),
            (
                "restarted with appendonly, the record says A, the source failed over",
                local(R, 0, 5),
                Some(rec(A, 900)),
                up(B, A, 1000, 901),
                None,
                Decision::Safe(Safe::Failover { diverged: None }),
            ),
            (
                "a replica promoted by hand and not written to continues A",
                Local {
                    replid2: A.into(),
                    second_offset: 901,
                    ..local(C, 900, 5)
                },
                None,
                up(A, NO_ID, 1000, -1),
                None,
                Decision::Safe(Safe::SameHistory { behind: None }),
            ),
            (
                "... but one that took writes since holds history A never had",
                Local {
                    replid2: A.into(),
                    second_offset: 901,
                    ..local(C, 950, 5)
                },
                None,
                up(A, NO_ID, 1000, -1),
                None,
                blocked((C, 950), false, up(A, NO_ID, 1000, -1)),
            ),
            (
                "the source recreated empty on the same address",
                local(A, 900, 5),
                Some(rec(A, 900)),
                up(C, NO_ID, 14, -1),
                None,
                blocked((A, 900), true, up(C, NO_ID, 14, -1)),
            ),
            (
                "source.host changed to another Redis that failed over itself",
                local(A, 900, 5),
                Some(rec(A, 900)),
                up(C, B, 14, 3),
                None,
                blocked((A, 900), true, up(C, B, 14, 3)),
            ),
            (
                "restarted with appendonly and no record: nothing shows where the data came from",
                local(R, 0, 5),
                None,
                up(A, NO_ID, 1000, -1),
                None,
                blocked((R, 0), false, up(A, NO_ID, 1000, -1)),
            ),
            (
                "accepted: the id the user accepted is the upstream's",
                local(A, 900, 5),
                Some(rec(A, 900)),
                up(C, NO_ID, 14, -1),
                Some(C),
                Decision::Safe(Safe::Accepted),
            ),
            (
                "accepting another id accepts nothing",
                local(A, 900, 5),
                Some(rec(A, 900)),
                up(C, NO_ID, 14, -1),
                Some(B),
                blocked((A, 900), true, up(C, NO_ID, 14, -1)),
            ),
            (
                "Redis's zero replid2 never matches an upstream without one",
                Local {
                    replid2: NO_ID.into(),
                    second_offset: 901,
                    ..local(C, 900, 5)
                },
                None,
                up(B, NO_ID, 1, -1),
                None,
                blocked((C, 900), false, up(B, NO_ID, 1, -1)),
            ),
        ];
        for (what, l, r, u, accept, expected) in rows {
            assert_eq!(decide(&l, r.as_ref(), &u, accept, &[]), expected, "{what}");
        }
        // Accepting an id the same upstream process had before it started its current one.
        let u = up(C, NO_ID, 14, -1);
        assert_eq!(
            decide(&local(A, 900, 5), None, &u, Some(B), &[B.to_string()]),
            Decision::Safe(Safe::Accepted)
        );
        assert!(matches!(
            decide(&local(A, 900, 5), None, &u, Some(R), &[B.to_string()]),
            Decision::Blocked(_)
        ));
    }

    /// The two waits of the gate: a primary told to follow one of its own replicas (the
    /// demotion of a planned switchover) and a replica ahead of its upstream replica.
    #[test]
    fn a_demoted_primary_waits_for_its_replica_to_be_promoted() {
        let primary = Record {
            role: "primary".into(),
            ..rec(A, 900)
        };
        let replica_up = |offset| UpstreamState {
            master: false,
            ..up(A, NO_ID, offset, -1)
        };
        let frozen = |offset| {
            Decision::Wait(Wait::Promotion {
                ours: HistoryPosition {
                    replid: A.into(),
                    offset,
                    keys: 5,
                },
            })
        };
        let rows: Vec<(&str, Local, Option<Record>, UpstreamState, Decision)> = vec![
            (
                "the primary of A told to follow a replica in A (caught up): wait, token at our offset",
                local(A, 950, 5),
                Some(primary.clone()),
                replica_up(950),
                frozen(950),
            ),
            (
                "... and while that replica is still behind",
                local(A, 950, 5),
                Some(primary.clone()),
                replica_up(700),
                frozen(950),
            ),
            (
                "... and when empty: a loop is a loop",
                local(A, 950, 0),
                Some(primary.clone()),
                replica_up(950),
                Decision::Wait(Wait::Promotion {
                    ours: HistoryPosition {
                        replid: A.into(),
                        offset: 950,
                        keys: 0,
                    },
                }),
            ),
            (
                "restarted under another id since: the record is the token",
                local(R, 10, 5),
                Some(primary.clone()),
                replica_up(950),
                Decision::Wait(Wait::Promotion {
                    ours: HistoryPosition {
                        replid: A.into(),
                        offset: 900,
                        keys: 10,
                    },
                }),
            ),
            (
                "the replica was promoted out of A at our offset: a partial resync continues A",
                local(A, 950, 5),
                Some(primary.clone()),
                up(B, A, 1200, 951),
                Decision::Safe(Safe::Failover { diverged: None }),
            ),
            (
                "a replica of A that recorded A as a replica is chained to another replica: no loop",
                local(A, 950, 5),
                Some(rec(A, 950)),
                replica_up(950),
                Decision::Safe(Safe::SameHistory { behind: None }),
            ),
            (
                "... ahead of it: waits for it to catch up instead of a full resync",
                local(A, 950, 5),
                Some(rec(A, 950)),
                replica_up(800),
                Decision::Wait(Wait::CatchUp {
                    ours: HistoryPosition {
                        replid: A.into(),
                        offset: 950,
                        keys: 5,
                    },
                    behind: 150,
                }),
            ),
            (
                "a master behind us in our history will not catch up: as before (reported loss)",
                local(A, 950, 5),
                Some(rec(A, 950)),
                up(A, NO_ID, 800, -1),
                Decision::Safe(Safe::SameHistory { behind: Some(150) }),
            ),
            (
                "a primary of A told to follow a master of A (not a replica): no wait",
                local(A, 950, 5),
                Some(primary.clone()),
                up(A, NO_ID, 950, -1),
                Decision::Safe(Safe::SameHistory { behind: None }),
            ),
            (
                "a primary of A told to follow a replica of another history: blocked as before",
                local(A, 950, 5),
                Some(primary),
                UpstreamState {
                    master: false,
                    ..up(C, NO_ID, 14, -1)
                },
                blocked(
                    (A, 900),
                    true,
                    UpstreamState {
                        master: false,
                        ..up(C, NO_ID, 14, -1)
                    },
                ),
            ),
        ];
        for (what, l, r, u, expected) in rows {
            assert_eq!(decide(&l, r.as_ref(), &u, None, &[]), expected, "{what}");
        }
        let w = Wait::Promotion {
            ours: HistoryPosition {
                replid: A.into(),
                offset: 950,
                keys: 5,
            },
        };
        assert!(w.message("dr:6379").contains(&format!("{A}:950")));
        assert_eq!(w.token().map(|t| t.offset), Some(950));
    }

    /// A block judged on the data: (what, sample, the same data?). The source recreated empty
    /// on the same address, another Redis at that address and an old backup are refused; a
    /// source that restarted with its data is followed (a full resync).
    #[test]
    fn a_block_is_judged_once_more_on_the_data() {
        let sample = |compared, matched| DataSample {
            compared,
            matched,
            needed_percent: crate::similarity::NEEDED_PERCENT,
            error: None,
        };
        let Decision::Blocked(block) = decide(
            &local(A, 900, 200),
            Some(&rec(A, 900)),
            &UpstreamState {
                keys: 200,
                ..up(C, NO_ID, 14, -1)
            },
            None,
            &[],
        ) else {
            panic!()
        };
        type Row<'a> = (&'a str, DataSample, bool);
        let rows: Vec<Row> = vec![
            (
                "restarted from its AOF, its last second lost",
                sample(200, 197),
                true,
            ),
            ("the threshold exactly", sample(200, 180), true),
            ("just below", sample(200, 179), false),
            ("another dataset of the same size", sample(200, 0), false),
            (
                "an old backup: half the keys changed",
                sample(200, 101),
                false,
            ),
            ("a handful of keys, all the same", sample(3, 3), true),
            (
                "could not compare",
                DataSample {
                    error: Some("the upstream: NOPERM".into()),
                    ..sample(0, 0)
                },
                false,
            ),
        ];
        for (what, s, same) in rows {
            match history_with(&block, s.clone()) {
                Decision::Safe(Safe::SameData(got)) => {
                    assert!(same, "{what}");
                    assert_eq!(got, s);
                }
                Decision::Blocked(b) => {
                    assert!(!same, "{what}");
                    assert_eq!(b.sample.as_ref(), Some(&s), "{what}");
                    assert!(!b.same_ids(&block), "the message changes with the sample");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        // What the block says with the sample.
        let Decision::Blocked(b) = history_with(&block, sample(200, 12)) else {
            panic!()
        };
        assert_eq!(
            b.message("dr", "ns"),
            format!(
                "upstream src:6379 has an unrelated replication history (ours {A}@900, 200 keys; upstream {C}@14, 200 keys): a sync would replace our data, and the upstream does not hold the same data (12 of 200 keys sampled on both sides match (6%, 90% needed); so it is not this data restarted under a new replication id), so this replica keeps its data and does not replicate; to accept the upstream's history: kubectl annotate rediscluster -n ns dr redis.io/accept-replication-history={C}"
            )
        );
        assert_eq!(b.report("t").sample, Some(sample(200, 12)));
        assert!(
            Safe::SameData(sample(200, 197))
                .describe()
                .starts_with("another replication history, but the same data: 197 of 200 keys")
        );
    }

    fn history_with(block: &Block, sample: DataSample) -> Decision {
        with_sample(block.clone(), sample)
    }

    /// When the data is worth comparing: (what, the cluster follows a source, ours, upstream
    /// keys, upstream loading, compared?).
    #[test]
    fn the_data_is_compared_only_for_a_source_holding_keys() {
        let rows = [
            ("a source with keys", true, 5, 5, false, true),
            ("a source recreated empty", true, 5, 0, false, false),
            ("a source still loading", true, 5, 5, true, false),
            (
                "a primary of this cluster: its replicas may hold more",
                false,
                5,
                5,
                false,
                false,
            ),
        ];
        for (what, follows, ours, theirs, loading, expected) in rows {
            let b = Block {
                ours: HistoryPosition {
                    replid: A.into(),
                    offset: 9,
                    keys: ours,
                },
                recorded: true,
                upstream: UpstreamState {
                    keys: theirs,
                    loading,
                    ..up(C, NO_ID, 14, -1)
                },
                sample: None,
            };
            assert_eq!(b.worth_sampling(follows), expected, "{what}");
        }
        // An upstream promoted out of another history (a second id): never judged on the data.
        let promoted = Block {
            ours: HistoryPosition {
                replid: A.into(),
                offset: 9,
                keys: 5,
            },
            recorded: true,
            upstream: UpstreamState {
                keys: 5,
                ..up(C, B, 14, 10)
            },
            sample: None,
        };
        assert!(!promoted.worth_sampling(true), "a promoted upstream");
    }

    /// Which earlier ids of an upstream count as the same data: (what, seen before, now,
    /// aliases of now).
    #[test]
    fn the_ids_one_upstream_process_started() {
        let st = |run: &str, replid: &str, replid2: &str, master: bool| UpstreamState {
            run_id: run.into(),
            master,
            ..up(replid, replid2, 0, -1)
        };
        type Row<'a> = (&'a str, Vec<UpstreamState>, UpstreamState, Vec<&'a str>);
        let rows: Vec<Row> = vec![
            ("first sight", vec![], st("p1", A, NO_ID, true), vec![]),
            (
                "the backlog created: a new id, same process",
                vec![st("p1", A, NO_ID, true)],
                st("p1", B, NO_ID, true),
                vec![A],
            ),
            (
                "seen again: nothing new",
                vec![st("p1", A, NO_ID, true), st("p1", B, NO_ID, true)],
                st("p1", B, NO_ID, true),
                vec![A],
            ),
            (
                "restarted (another process)",
                vec![st("p1", A, NO_ID, true)],
                st("p2", B, NO_ID, true),
                vec![],
            ),
            (
                "became a replica of other data",
                vec![st("p1", A, NO_ID, true)],
                st("p1", B, NO_ID, false),
                vec![],
            ),
            (
                "shifted at a promotion",
                vec![st("p1", A, NO_ID, true)],
                st("p1", B, C, true),
                vec![],
            ),
        ];
        for (what, before, now, expected) in rows {
            let mut inc = Incarnation::default();
            for b in &before {
                inc.observe(b);
            }
            assert_eq!(inc.observe(&now), expected, "{what}");
        }
    }

    #[test]
    fn the_block_message_names_both_histories_and_the_way_to_accept() {
        let Decision::Blocked(b) = decide(
            &local(A, 900, 5),
            Some(&rec(A, 900)),
            &up(C, NO_ID, 14, -1),
            None,
            &[],
        ) else {
            panic!()
        };
        assert_eq!(
            b.message("dr-redis", "production"),
            format!(
                "upstream src:6379 has an unrelated replication history (ours {A}@900, 5 keys; upstream {C}@14, 0 keys): a sync would replace our data, so this replica keeps its data and does not replicate; to accept the upstream's history: kubectl annotate rediscluster -n production dr-redis redis.io/accept-replication-history={C}"
            )
        );
        let Decision::Blocked(b) = decide(&local(R, 0, 5), None, &up(A, NO_ID, 9, -1), None, &[])
        else {
            panic!()
        };
        assert!(
            b.message("dr", "ns")
                .contains("no record of their history (redis-server restarted with the new id"),
            "{}",
            b.message("dr", "ns")
        );
        let report = b.report("2026-01-01T00:00:00Z");
        assert_eq!(report.upstream.replid, A);
        assert!(!report.ours_recorded);
    }

    /// What a tick's reading of the local Redis adds to the record.
    #[test]
    fn what_is_recorded() {
        let replica = || {
            let mut o = observed(RedisRole::Slave, Some(("src", 6379)));
            o.master_replid = A.into();
            o.master_repl_offset = 900;
            o.keys = 5;
            o
        };
        let master = || {
            let mut o = observed(RedisRole::Master, None);
            o.master_replid = B.into();
            o.master_repl_offset = 70;
            o.keys = 3;
            o
        };
        /// (what, Redis, fenced, recorded (replid, offset, role))
        type Row<'a> = (&'a str, Observed, bool, Option<(&'a str, i64, &'a str)>);
        let rows: Vec<Row> = vec![
            (
                "a linked replica",
                replica(),
                false,
                Some((A, 900, "replica")),
            ),
            (
                "a replica whose link is down",
                Observed {
                    master_link_status_up: false,
                    ..replica()
                },
                false,
                None,
            ),
            (
                "a replica syncing",
                Observed {
                    master_sync_in_progress: true,
                    ..replica()
                },
                false,
                None,
            ),
            (
                "a primary taking writes",
                master(),
                false,
                Some((B, 70, "primary")),
            ),
            ("a fenced master (maybe booted empty)", master(), true, None),
            (
                "loading",
                Observed {
                    loading: true,
                    ..master()
                },
                false,
                None,
            ),
        ];
        for (what, o, fenced, expected) in rows {
            let got = record_of(&o, fenced);
            let got = got
                .as_ref()
                .map(|r| (r.replid.as_str(), r.offset, r.role.as_str()));
            assert_eq!(got, expected, "{what}");
        }
    }

    #[test]
    fn a_redis_that_lost_its_data_is_recognised() {
        let empty = || {
            let mut o = observed(RedisRole::Master, None);
            o.master_replid = R.into();
            o
        };
        let had = Record {
            keys: 10,
            ..rec(A, 900)
        };
        let lost = lost_data(&empty(), Some(&had), None).unwrap();
        assert_eq!(
            lost.to_string(),
            format!(
                "booted without its data (had {A}@900, 10 keys; now empty): not taking writes; the operator will fail over or rejoin it as a replica (to take writes with the empty dataset anyway, annotate the RedisCluster with redis.io/accept-replication-history={R})"
            )
        );
        // (what, Redis, record, acceptHistory, lost?)
        let with_keys = Observed { keys: 1, ..empty() };
        type Row<'a> = (&'a str, Observed, Option<Record>, Option<&'a str>, bool);
        let rows: Vec<Row> = vec![
            ("empty, had keys", empty(), Some(had.clone()), None, true),
            ("no record", empty(), None, None, false),
            (
                "had no keys either",
                empty(),
                Some(Record {
                    keys: 0,
                    ..had.clone()
                }),
                None,
                false,
            ),
            ("holds keys", with_keys, Some(had.clone()), None, false),
            (
                "still loading",
                Observed {
                    loading: true,
                    ..empty()
                },
                Some(had.clone()),
                None,
                false,
            ),
            (
                "the empty dataset accepted",
                empty(),
                Some(had.clone()),
                Some(R),
                false,
            ),
            (
                "another id accepted",
                empty(),
                Some(had.clone()),
                Some(C),
                true,
            ),
        ];
        for (what, o, r, accept, expected) in rows {
            assert_eq!(
                lost_data(&o, r.as_ref(), accept).is_some(),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn the_upstream_state_is_read_from_its_info() {
        let u = UpstreamState::parse(
            "src:6379",
            "# Server\r\nrun_id:p1\r\n# Replication\r\nrole:master\r\nmaster_replid:bbb\r\nmaster_replid2:aaa\r\nmaster_repl_offset:900\r\nsecond_repl_offset:501\r\n# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n",
        )
        .unwrap();
        assert_eq!(
            u,
            UpstreamState {
                address: "src:6379".into(),
                replid: "bbb".into(),
                replid2: "aaa".into(),
                offset: 900,
                second_offset: 501,
                keys: 3,
                run_id: "p1".into(),
                master: true,
                loading: false,
            }
        );
        assert_eq!(UpstreamState::parse("a:1", "role:master\r\n"), None);
    }
}
