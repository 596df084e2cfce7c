//! Where promotion, demotion, failover and every pod's replication topology are decided.
//!
//! The plan is a pure function of the spec and what was observed: each pod's published topology
//! annotation, its instance manager's report, and what Kubernetes says about its container. It
//! keeps no memory of its own, so an operator that dies at any line and restarts derives the same
//! next step from the same observations (the primary it chose last is read back from the
//! published annotations, or from `status.currentPrimary` when every annotation is gone).
//!
//! Who decides which pod is primary:
//! - replica mode (not promoted): nobody; the designated leader is pod 0 (README.md, "Safety
//!   rules the planner enforces");
//! - a promotion: the pod whose data holds every other reporting pod's data (pod 0 when it
//!   does), after a bounded wait for silent pods, or the pod the user names
//!   (`redis.io/promote-pod`); see `choose_promotion` and docs/data-safety.md, path 2;
//! - `mode: sentinel` with its own primary: the Sentinels. The operator follows their election
//!   (read by the instance managers from the Sentinels themselves) and publishes it;
//! - otherwise the operator: the primary stays where it is until it has been unavailable for
//!   `failover.primaryUnavailableSeconds` and can be proven unable to take writes; then it is
//!   fenced and the replica furthest along in its replication history is promoted, unless it is
//!   further behind than `failover.maxLagBytes` (`failover_candidate`, path 4).
//!
//! A primary that came back without its data (`lost_data`, path 3) is never published primary
//! nor labelled so, in any mode. What a pod's data is, and which copy holds another, is
//! `crate::history`.
//!
//! Safety rules, in order of importance:
//! 1. At most one pod is published as primary, and a failover publishes the fence of the old
//!    primary before the promotion of the new one, and only once the old primary is proven not
//!    to accept writes (its Redis container is not running, its pod is gone, or it reports
//!    itself fenced or a replica). A primary that merely does not answer is never replaced.
//! 2. Leader first: while the leader is being made primary in a failover, the other pods keep
//!    their current upstream until the leader reports, at the published epoch, that it is
//!    primary. Only then are they re-pointed to it. A promotion out of replica mode whose leader
//!    reports is the exception: the others are re-pointed to the leader first, in the same pass,
//!    and replicate it (chained) while it still replicates the source; the leader is told to be
//!    primary last. Left on the source until the leader confirmed, they would go on taking the
//!    source's stream past the leader's promotion point whenever the source is still alive (a DR
//!    test, an operator that dies between two writes) and then need a full resync of
//!    everything; chained, they never get ahead of it, whatever write the operator dies after,
//!    and continue with a partial resync once it is primary (Redis keeps the source's history as
//!    its second replication id). A leader that does not report keeps the others on the source.
//! 3. Epochs only grow: a changed topology is published with an epoch above every epoch
//!    currently published in the cluster, so an instance manager never applies a stale one.
//! 4. Only what changed is published; an unchanged cluster yields an empty plan.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use redis_cluster_api::conditions as cond;
use redis_cluster_api::labels::{ROLE_PRIMARY, ROLE_REPLICA};
use redis_cluster_api::names;
use redis_cluster_api::report::{InstanceReport, ObservedRole};
use redis_cluster_api::topology::{
    DesiredTopology, FENCE_MIN_REPLICAS, FORMAT_VERSION, Role, SentinelTopology, Upstream,
    UpstreamKind, replicaof_command,
};
use redis_cluster_api::{
    DataAtRisk, RedisClusterSpec, RedisClusterStatus, ReplicaSourceSpec, ReplicaTopology,
    SwitchoverToken,
};

use crate::conditions::{self, Desired, Status};
use crate::events::{EventReason, EventType, PlannedEvent};
use crate::history::{Dataset, short};
use crate::switchover::{self, TokenState};
use crate::validate::Problem;
use redis_cluster_api::report::HistoryPosition;

/// Where the pods find what the operator mounts, and the Redis port. Differs between a real
/// Kubernetes pod and the drill's processes, so it is an input rather than a constant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// The cluster's own password (`authSecret`), as mounted in every pod.
    pub auth_password_file: String,
    /// The source's password (`replicaMode.source.authSecretName`), as mounted in every pod.
    pub source_password_file: String,
    /// Port every data pod's Redis listens on.
    pub redis_port: u16,
    /// `host:port` of every Sentinel, when they are not at their Kubernetes DNS names
    /// (`<name>-sentinel-<i>.<name>-sentinel-headless:26379`), as in the drill.
    pub sentinel_addresses: Option<Vec<String>>,
}

impl Environment {
    /// The paths the operator's pod template mounts.
    pub fn kubernetes() -> Self {
        Environment {
            auth_password_file: names::paths::auth_password_file(),
            source_password_file: names::paths::source_password_file(),
            redis_port: names::REDIS_PORT,
            sentinel_addresses: None,
        }
    }
}

/// What was observed about one data pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodView {
    /// How the other pods reach this one (stable DNS name in Kubernetes).
    pub address: String,
    /// The topology currently in the pod's annotation.
    pub published: Option<DesiredTopology>,
    /// The instance manager's report; None when it could not be reached.
    pub report: Option<InstanceReport>,
    /// What Kubernetes says is wrong with the pod (unschedulable, image pull, crash loop), in
    /// its own words, for the Ready condition.
    pub problem: Option<String>,
    /// Whether Kubernetes reports the pod's Redis container running: `Some(false)` proves the
    /// Redis process is gone (it restarts fenced), `None` is unknown.
    pub redis_running: Option<bool>,
    /// The pod is being deleted (`deletionTimestamp` set). Its Redis runs until the kubelet
    /// stops it, so this proves nothing about writes; it is never chosen as a new primary.
    pub terminating: bool,
}

/// What the planner is told besides the spec and the pods: the user's explicit choices (the
/// RedisCluster's annotations) and what the operator observed outside the pods.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extra {
    /// `redis.io/accept-replication-history`: a replication id the user accepted (published in
    /// every pod's topology as `acceptHistory`).
    pub accept_history: Option<String>,
    /// `redis.io/promote-pod`: the pod the user chose to make primary. A promotion promotes it
    /// whatever it holds; a failover blocked because its best replica is too far behind
    /// promotes it if it is a replica that can take over.
    pub promote_pod: Option<String>,
    /// After a promotion: what the former source (`replicaMode.source`) answered.
    pub former_source: Option<FormerSource>,
}

/// The RedisCluster annotation naming the pod a promotion (or a blocked failover) makes primary.
pub const PROMOTE_POD_ANNOTATION: &str = "redis.io/promote-pod";

/// What the former source of a promoted cluster is, as the operator's probe saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormerSource {
    /// A primary that is not fenced: it accepts writes. The text says what was seen.
    Writable(String),
    /// A replica, or a primary that refuses writes.
    NotWritable(String),
    /// It did not answer (or could not be asked), and why.
    Unreachable(String),
}

/// How long a promotion waits for pods that have not reported what they hold before it
/// promotes the best copy among those that did (the user can name a pod at once).
pub const PROMOTION_REPORT_WAIT_SECONDS: i64 = 30;

/// Epochs above this were not published by this operator (it counts up by one per change, and
/// would need longer than the age of the universe to get there): a pod carrying one is left
/// alone and reported, so the next epoch can never wrap around.
pub const EPOCH_LIMIT: u64 = 1 << 53;

/// Everything the planner looks at.
#[derive(Clone, Debug)]
pub struct ClusterView<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    /// `metadata.uid` of the `RedisCluster` (names the per-cluster `REPLICAOF`).
    pub uid: Option<&'a str>,
    pub generation: Option<i64>,
    pub spec: &'a RedisClusterSpec,
    pub previous: Option<&'a RedisClusterStatus>,
    /// Existing data pods by name.
    pub pods: &'a BTreeMap<String, PodView>,
    pub env: &'a Environment,
    pub now: Time,
}

/// The pod a failover request replaces, as the Sentinels know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverFrom {
    pub pod: String,
    /// Its address (the host the Sentinels name, or the pod's name followed by its domain).
    pub address: String,
    pub port: u16,
}

impl FailoverFrom {
    /// Whether the Sentinels' `host:port` for the primary is this pod.
    pub fn is(&self, host: &str, port: u16) -> bool {
        port == self.port
            && (host == self.address
                || host == self.pod
                || host
                    .strip_prefix(self.pod.as_str())
                    .is_some_and(|rest| rest.starts_with('.')))
    }
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Topology annotations to write, only for pods whose annotation must change.
    pub publish: BTreeMap<String, DesiredTopology>,
    /// The `redis.io/role` label every existing pod should carry.
    pub role_labels: BTreeMap<String, &'static str>,
    /// The status to write (identical to `previous` when nothing changed).
    pub status: RedisClusterStatus,
    pub events: Vec<PlannedEvent>,
    /// Something is in progress (a promotion step, a pod converging): look again soon.
    pub in_progress: bool,
    /// Every pod, in the order its labels and annotation must be written: a pod being fenced
    /// first, then the leader, then the others by ordinal.
    pub order: Vec<String>,
    /// The pod labelled primary (the `-leader` Service's endpoint), unless `role_labels` labels
    /// every pod replica: a primary that came back without its data is kept out of the Service.
    pub leader: String,
    /// Bad input found while planning (a topology annotation with an absurd epoch, an
    /// annotation naming no pod): the reconciler reports them in `ConfigurationValid`.
    pub problems: Vec<Problem>,
    /// In sentinel mode, the Sentinels' primary came back without its data, or restarted under
    /// a new replication history while a replica holds more of its former one, and is fenced:
    /// ask them to fail over (`SENTINEL FAILOVER <this name>`), since they never fail over a
    /// primary that answers.
    pub sentinel_failover: Option<String>,
    /// Why the Sentinels are asked (`its primary came back without its data`, ...).
    pub sentinel_failover_why: Option<String>,
    /// The primary the Sentinels are asked to replace: they are asked only while they still
    /// name it (a request that reaches them after their failover would replace its successor).
    pub sentinel_failover_from: Option<FailoverFrom>,
    /// After a promotion: whether the former source accepts writes (None: not probed or not
    /// reachable), for the operator's metric.
    pub former_source_writable: Option<bool>,
}

/// What the cluster as a whole should be.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Target<'a> {
    /// No replica mode: the leader is primary, the others replicate it.
    Standalone,
    /// Replicating the external source.
    Replica(&'a ReplicaSourceSpec, ReplicaTopology),
    /// Promoted: the leader is primary, the others replicate it; the source is remembered for
    /// messages.
    Promoted(&'a ReplicaSourceSpec),
}

fn target(spec: &RedisClusterSpec) -> Target<'_> {
    match &spec.replica_mode {
        Some(rm) if rm.enabled => match (&rm.source, rm.promote) {
            (Some(source), false) => Target::Replica(source, rm.topology),
            (Some(source), true) => Target::Promoted(source),
            // Rejected by the schema; validate() reports it. Never replicate from nowhere.
            (None, _) => Target::Standalone,
        },
        _ => Target::Standalone,
    }
}

/// A topology without its epoch, to compare what is published with what is wanted.
fn same_shape(a: &DesiredTopology, b: &DesiredTopology) -> bool {
    DesiredTopology {
        epoch: 0,
        ..a.clone()
    } == DesiredTopology {
        epoch: 0,
        ..b.clone()
    }
}

fn external_upstream(view: &ClusterView, source: &ReplicaSourceSpec) -> Upstream {
    Upstream {
        kind: UpstreamKind::External,
        host: source.host.clone(),
        port: u16::try_from(source.port).unwrap_or(6379),
        tls: view.spec.tls_secret.is_some(),
        password_file: source
            .auth_secret_name
            .as_ref()
            .filter(|n| !n.is_empty())
            .map(|_| view.env.source_password_file.clone()),
        username: None,
        cluster_name: Some(source.display_name()),
    }
}

fn peer_upstream(view: &ClusterView, leader: &str) -> Upstream {
    let host = view
        .pods
        .get(leader)
        .map(|p| p.address.clone())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| leader.to_string());
    Upstream {
        kind: UpstreamKind::Peer,
        host,
        port: view.env.redis_port,
        tls: view.spec.tls_secret.is_some(),
        password_file: view
            .spec
            .auth_secret
            .as_ref()
            .map(|_| view.env.auth_password_file.clone()),
        username: None,
        cluster_name: None,
    }
}

/// Who decides which pod is primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decider {
    /// Nobody: replica mode, the designated leader is pod 0.
    Spec,
    /// The operator (standalone mode, and a promoted cluster until its promotion completed).
    Operator,
    /// The Sentinel quorum.
    Sentinel,
}

/// The cluster was promoted and the promotion completed (the status says so): from then on it
/// behaves as a cluster with its own primary (failover, Sentinels).
fn promotion_done(view: &ClusterView) -> bool {
    view.previous
        .and_then(|s| conditions::find(&s.conditions, cond::REPLICA_MODE))
        .is_some_and(|c| c.reason == cond::REASON_PROMOTED)
}

/// `status.dataAtRisk` ([`crate::risk`]). Replicating: set while `leader` (the pod a promotion
/// would make primary) reports its source silent (link down and the source's offset unread
/// this tick), kept while its instance manager does not answer; none while the source can be
/// read (its lag is then in the pod's status and metrics). Promoting or promoted: what it was
/// when the promotion started, so the record of what the promotion lost stays.
fn data_at_risk(view: &ClusterView, target: Target, leader: &str) -> Option<DataAtRisk> {
    let previous = view
        .previous
        .and_then(|s| s.data_at_risk.clone())
        .filter(|d| d.pod == leader);
    let pod = view.pods.get(leader)?;
    let silent_source = |r: &InstanceReport| {
        r.upstream.is_some() && !r.master_link_up && r.upstream_offset.is_none()
    };
    match target {
        Target::Standalone => None,
        Target::Replica(..) => match pod.report.as_ref() {
            Some(r) => silent_source(r).then(|| crate::risk::data_at_risk(leader, Some(r))),
            None => previous,
        },
        Target::Promoted(_) => previous.or_else(|| {
            pod.report
                .as_ref()
                .filter(|r| silent_source(r))
                .map(|r| crate::risk::data_at_risk(leader, Some(r)))
        }),
    }
}

fn decider(view: &ClusterView, target: Target, extra: &Extra) -> Decider {
    let own_primary = match target {
        Target::Replica(..) => return Decider::Spec,
        Target::Standalone => true,
        Target::Promoted(_) => handed_to_sentinels(view, target, extra),
    };
    // Held for the Sentinels (a demotion waiting for their failover): still theirs.
    let sentinels =
        view.spec.sentinels_active() || held_for_sentinels(view, self::target(view.spec)).is_some();
    if own_primary && sentinels {
        Decider::Sentinel
    } else {
        Decider::Operator
    }
}

/// A promoted sentinel-mode cluster is handed to its Sentinels only once the operator's
/// promotion is complete on every pod (the leader primary, every other pod confirmed as its
/// replica): the instance managers never change roles under Sentinel, so a pod that had not yet
/// applied its re-pointing (a sidecar may skip an intermediate epoch) would stay a replica of the
/// old source forever. Once handed over (a published topology names the Sentinels), it stays so.
fn handed_to_sentinels(view: &ClusterView, target: Target, extra: &Extra) -> bool {
    if view
        .pods
        .values()
        .any(|p| p.published.as_ref().is_some_and(|t| t.sentinel.is_some()))
    {
        return true;
    }
    if !promotion_done(view) {
        return false;
    }
    let operator = Leadership::new(recorded_primary(view), Decider::Operator);
    view.pods.iter().all(|(name, pod)| {
        names::ordinal_of(view.name, name).is_none()
            || confirmed(
                Some(pod),
                &desired_for(view, target, &operator, extra, name),
            )
    })
}

/// The primary the operator chose last: named by the newest published topology, or by the
/// status when no pod carries an annotation (every pod recreated), or pod 0.
fn recorded_primary(view: &ClusterView) -> String {
    let newest = view
        .pods
        .values()
        .filter_map(|p| p.published.as_ref())
        .max_by_key(|t| t.epoch);
    match newest {
        Some(t) => t
            .primary
            .clone()
            .unwrap_or_else(|| names::pod_name(view.name, 0)),
        None => view
            .previous
            .and_then(|s| s.current_primary.clone())
            .filter(|p| names::ordinal_of(view.name, p).is_some())
            .unwrap_or_else(|| names::pod_name(view.name, 0)),
    }
}

/// The pod whose address is `host`.
fn pod_at<'v>(view: &'v ClusterView, host: &str) -> Option<&'v String> {
    view.pods.iter().find_map(|(name, pod)| {
        (pod.address == host
            || host == name.as_str()
            || host
                .strip_prefix(name.as_str())
                .is_some_and(|rest| rest.starts_with('.')))
        .then_some(name)
    })
}

/// The Sentinels' election as the instance managers read it: the answer with the highest
/// config epoch, mapped to a pod.
fn sentinel_choice(view: &ClusterView) -> Option<(String, u64)> {
    let (host, epoch) = view
        .pods
        .values()
        .filter_map(|p| p.report.as_ref())
        .filter_map(|r| Some((r.sentinel_primary.as_ref()?, r.sentinel_epoch?)))
        .max_by_key(|(_, epoch)| *epoch)?;
    let host = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    pod_at(view, host).map(|p| (p.clone(), epoch))
}

/// What the status last showed of `pod` (its last report, kept while its instance manager does
/// not answer).
fn remembered<'v>(
    view: &'v ClusterView,
    pod: &str,
) -> Option<&'v redis_cluster_api::InstanceStatus> {
    view.previous?
        .instances_status
        .iter()
        .find(|i| i.name == pod)
}

/// The pod's data, from its report.
fn copy_of(view: &ClusterView, pod: &str) -> Option<Dataset> {
    Dataset::of(view.pods.get(pod)?.report.as_ref()?)
}

/// The ordinal pods of the cluster, by ordinal.
fn ordinal_pods<'v>(view: &'v ClusterView) -> Vec<(&'v String, &'v PodView)> {
    let mut pods: Vec<_> = view
        .pods
        .iter()
        .filter(|(name, _)| names::ordinal_of(view.name, name).is_some())
        .collect();
    pods.sort_by_key(|(name, _)| names::ordinal_of(view.name, name));
    pods
}

/// `kubectl annotate` for this cluster.
fn annotate_command(view: &ClusterView, annotation: &str, value: &str) -> String {
    format!(
        "kubectl annotate rediscluster -n {} {} {annotation}={value}",
        view.namespace, view.name
    )
}

/// `pod` came back without its data: Redis now holds no key under a new replication history,
/// while its instance manager's record, the status, or a peer shows it held some (a replaced or
/// emptied volume). None when it still holds data, while it loads, when nothing shows it held
/// anything, or when the user accepted its new (empty) history.
fn lost_data(view: &ClusterView, pod: &str, extra: &Extra) -> Option<String> {
    let copy = copy_of(view, pod)?;
    if copy.keys != Some(0) || extra.accept_history.as_deref() == Some(copy.replid.as_str()) {
        return None;
    }
    let recorded = copy
        .recorded
        .as_ref()
        .filter(|r| r.2 > 0)
        .map(|(id, offset, keys)| {
            format!(
                "its instance manager recorded {}@{offset}, {keys} keys",
                short(id)
            )
        });
    let status = || {
        remembered(view, pod)
            .filter(|m| m.keys.is_some_and(|k| k > 0))
            .filter(|m| {
                m.replication_id
                    .as_ref()
                    .is_some_and(|id| *id != copy.replid)
            })
            .map(|m| {
                format!(
                    "it last reported {}@{}, {} keys",
                    short(m.replication_id.as_deref().unwrap_or_default()),
                    m.replication_offset.unwrap_or_default(),
                    m.keys.unwrap_or_default()
                )
            })
    };
    let peer = || {
        ordinal_pods(view).into_iter().find_map(|(name, _)| {
            let other = copy_of(view, name).filter(|_| name != pod)?;
            (other.keys.is_some_and(|k| k > 0) && !copy.holds(&other))
                .then(|| format!("{name} holds {}", other.describe()))
        })
    };
    let had = recorded.or_else(status).or_else(peer)?;
    Some(format!(
        "{pod} came back without its data (now empty, replication history {}; {had})",
        short(&copy.replid)
    ))
}

/// A primary that restarted with its data under a new replication history (Redis with
/// `appendonly` gets a new id at every restart), as its instance manager reports it while it
/// keeps it fenced: it may lack writes of its last second that its replicas hold.
#[derive(Clone, Debug, PartialEq)]
struct Restart {
    had: HistoryPosition,
    now: HistoryPosition,
    /// What the conditions and Events say about it.
    message: String,
}

/// `pod` restarted under a new replication history (its report's `restartedPrimary`), unless
/// the user accepted its new id.
fn restarted(view: &ClusterView, pod: &str, extra: &Extra) -> Option<Restart> {
    let r = view
        .pods
        .get(pod)?
        .report
        .as_ref()?
        .restarted_primary
        .as_ref()?;
    if extra.accept_history.as_deref() == Some(r.now.replid.as_str()) {
        return None;
    }
    Some(Restart {
        had: r.had.clone(),
        now: r.now.clone(),
        message: format!(
            "{pod} restarted under a new replication history (now {}@{}, {} keys; as primary it held {}@{}, {} keys) and may lack writes of its last second that its replicas hold",
            short(&r.now.replid),
            r.now.offset,
            r.now.keys,
            short(&r.had.replid),
            r.had.offset,
            r.had.keys
        ),
    })
}

/// The pods other than `pod` whose data is (or, for a pod that does not answer, last was) of
/// history `id`: replicas that may hold more of a restarted primary's former history than it
/// does.
fn holders(view: &ClusterView, pod: &str, id: &str) -> Vec<String> {
    ordinal_pods(view)
        .into_iter()
        .filter(|(name, _)| name.as_str() != pod)
        .filter(
            |(name, p)| match p.report.as_ref().filter(|r| r.role.is_some()) {
                Some(r) => Dataset::of(r)
                    .is_some_and(|c| c.keys.is_some_and(|k| k > 0) && c.position_in(id).is_some()),
                None => remembered(view, name).is_some_and(|m| {
                    m.replication_id.as_deref() == Some(id) && m.keys.is_some_and(|k| k > 0)
                }),
            },
        )
        .map(|(name, _)| name.clone())
        .collect()
}

/// The pods other than `pod` that have not reported what they hold (no report, or one without
/// a role: Redis unreadable). A restart is accepted only on positive knowledge: any of them
/// may hold the former history, and a restarted primary accepted meanwhile takes writes that a
/// failover to it later throws away (seen under load with Sentinel: the restarted primary took
/// 112 writes).
fn silent_others(view: &ClusterView, pod: &str) -> Vec<String> {
    ordinal_pods(view)
        .into_iter()
        .filter(|(name, p)| {
            name.as_str() != pod && p.report.as_ref().is_none_or(|r| r.role.is_none())
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// `PrimaryAvailable` while a restart waits for the other pods to report.
fn waiting_to_accept(view: &ClusterView, r: &Restart, silent: &[String]) -> Desired {
    Desired {
        type_: cond::PRIMARY_AVAILABLE,
        status: Status::False,
        reason: cond::REASON_PRIMARY_RESTARTED,
        message: format!(
            "{}: kept fenced and out of the -leader Service; {} has not reported what it holds and may hold more of its former history: waiting for it. To let it take writes again with what it restarted with (losing what only its replicas hold): {}",
            r.message,
            silent.join(", "),
            annotate_command(
                view,
                redis_cluster_api::topology::ACCEPT_HISTORY_ANNOTATION,
                &r.now.replid
            )
        ),
    }
}

/// The restart of a primary the operator accepts: every pod's topology carries
/// `acceptHistory` = its replication id (the instance manager unfences it, its replicas'
/// replication gates let it through) until every replica follows it.
#[derive(Clone, Debug, PartialEq)]
struct AcceptRestart {
    pod: String,
    /// The id to accept: the primary's replication id now (it starts another one when its
    /// first replica attaches).
    replid: String,
    former: String,
}

impl AcceptRestart {
    fn of(pod: &str, r: &Restart) -> AcceptRestart {
        AcceptRestart {
            pod: pod.to_string(),
            replid: r.now.replid.clone(),
            former: r.had.replid.clone(),
        }
    }
}

/// `PrimaryAvailable` while a restart is being accepted.
fn accepting(r: &Restart) -> Desired {
    Desired {
        type_: cond::PRIMARY_AVAILABLE,
        status: Status::False,
        reason: cond::REASON_PRIMARY_RESTARTED,
        message: format!(
            "{}; no other pod holds its former history {}, so its restart is accepted ({}={} in every pod's topology): it takes writes again with what it restarted with, and its replicas resynchronise from it",
            r.message,
            short(&r.had.replid),
            redis_cluster_api::topology::ACCEPT_HISTORY_ANNOTATION,
            short(&r.now.replid)
        ),
    }
}

/// A restart accepted earlier (the status remembers it) goes on while the pod still leads and
/// some replica does not follow its history yet.
fn accepted_earlier(view: &ClusterView, lead: &Leadership) -> Option<AcceptRestart> {
    let ar = view.previous?.accepted_restart.as_ref()?;
    if ar.pod != lead.leader
        || lead.decider == Decider::Spec
        || lead.lost.is_some()
        || lead.failover.is_some()
    {
        return None;
    }
    let now = view
        .pods
        .get(&ar.pod)?
        .report
        .as_ref()
        .and_then(|r| r.master_replid.clone())
        .unwrap_or_else(|| ar.replication_id.clone());
    let followed = ordinal_pods(view)
        .into_iter()
        .filter(|(name, _)| **name != ar.pod)
        .all(|(_, p)| {
            p.report.as_ref().is_some_and(|r| {
                r.role == Some(ObservedRole::Replica)
                    && r.master_link_up
                    && r.history_blocked.is_none()
                    && r.master_replid.as_deref() == Some(now.as_str())
            })
        });
    (!followed).then(|| AcceptRestart {
        pod: ar.pod.clone(),
        replid: now,
        former: ar.former_replication_id.clone(),
    })
}

/// Whether the primary answers, and if not, why not.
fn availability(view: &ClusterView, primary: &str) -> Result<(), String> {
    let Some(pod) = view.pods.get(primary) else {
        return Err(format!("{primary} does not exist"));
    };
    match &pod.report {
        Some(r) if r.role.is_some() => Ok(()),
        Some(r) => Err(format!(
            "{primary}: Redis does not answer its instance manager{}",
            r.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )),
        None => Err(format!(
            "{primary}: {}",
            pod.problem
                .clone()
                .unwrap_or_else(|| "instance manager not reachable".into())
        )),
    }
}

/// Proof that `pod` cannot accept a write now (and comes back unable to). A pod being deleted
/// is no proof: its Redis runs until the kubelet stops it.
fn cannot_write(view: &ClusterView, pod: &str) -> Option<String> {
    let Some(p) = view.pods.get(pod) else {
        return Some(format!("{pod} is gone"));
    };
    if p.redis_running == Some(false) {
        return Some(format!(
            "Kubernetes reports {pod}'s Redis container not running"
        ));
    }
    match &p.report {
        Some(r) if r.fenced => Some(format!("{pod} reports itself fenced")),
        Some(r) if r.role == Some(ObservedRole::Replica) => {
            Some(format!("{pod} reports itself a replica"))
        }
        _ => None,
    }
}

/// The replica a failover promotes, and how much it lacks.
#[derive(Clone, Debug, PartialEq)]
struct Candidate {
    pod: String,
    offset: i64,
    /// Bytes it is behind the highest offset known in the failed primary's history, and whose
    /// offset that is (only when it is behind).
    behind: Option<(i64, String, i64)>,
    /// Named by the user (`redis.io/promote-pod`).
    named: bool,
}

impl Candidate {
    /// What the Events say about the choice.
    fn describe(&self) -> String {
        let why = if self.named {
            format!(
                "named by {PROMOTE_POD_ANNOTATION}, replication offset {}",
                self.offset
            )
        } else {
            format!("highest replication offset, {}", self.offset)
        };
        match &self.behind {
            Some((bytes, pod, offset)) => format!(
                "{why}; {bytes} bytes behind {pod}'s offset {offset}: those writes are lost"
            ),
            None => why,
        }
    }
}

/// The replica to promote in place of `old`: the reachable replica (not syncing, not fenced,
/// not loading, not being deleted) whose data reaches furthest into the failed primary's
/// history; lowest ordinal on ties. It must not be further behind the highest offset any pod is
/// known to have reached in that history (the failed primary's and silent replicas' last
/// reports included) than `failover.maxLagBytes`, unless the user named it. `only_in`: the
/// history the candidate must hold (a restarted primary's former one). Err: why nobody.
fn failover_candidate(
    view: &ClusterView,
    old: &str,
    extra: &Extra,
    only_in: Option<&str>,
) -> Result<Candidate, String> {
    let max_lag = view.spec.failover_settings().max_lag_bytes.max(0);
    let eligible: Vec<(&String, &InstanceReport)> = ordinal_pods(view)
        .into_iter()
        .filter(|(name, p)| name.as_str() != old && !p.terminating)
        .filter_map(|(name, p)| Some((name, p.report.as_ref()?)))
        .filter(|(_, r)| {
            r.role == Some(ObservedRole::Replica)
                && !r.sync_in_progress
                && !r.fenced
                && r.loading != Some(true)
                && r.master_repl_offset
                    .or(r.repl_offset)
                    .is_some_and(|o| o > 0)
        })
        .collect();
    let legacy = || {
        // Instance managers that do not report replication ids: the highest offset.
        eligible
            .iter()
            .filter_map(|(name, r)| Some((*name, r.repl_offset.filter(|o| *o > 0)?)))
            .max_by_key(|(name, offset)| {
                (
                    *offset,
                    std::cmp::Reverse(names::ordinal_of(view.name, name).unwrap_or(u32::MAX)),
                )
            })
            .map(|(name, offset)| Candidate {
                pod: name.clone(),
                offset,
                behind: None,
                named: false,
            })
    };
    let copies: Vec<(&String, Dataset)> = eligible
        .iter()
        .filter_map(|(name, r)| Some((*name, Dataset::of(r)?)))
        .collect();
    let nobody = || match only_in {
        Some(id) => format!(
            "no replica that holds its former replication history {} can take over now (in sync, not fenced, not loading, not being deleted)",
            short(id)
        ),
        None => no_replica(),
    };
    if copies.is_empty() {
        return match only_in {
            Some(_) => Err(nobody()),
            None => legacy().ok_or_else(no_replica),
        };
    }
    // The failed primary's history, when the replicas hold some of it; else the history of
    // the replica furthest along.
    let history = match only_in {
        Some(id) => id.to_string(),
        None => remembered(view, old)
            .and_then(|m| m.replication_id.clone())
            .filter(|id| copies.iter().any(|(_, c)| c.position_in(id).is_some()))
            .or_else(|| {
                copies
                    .iter()
                    .max_by_key(|(_, c)| c.offset)
                    .map(|(_, c)| c.replid.clone())
            })
            .unwrap_or_default(),
    };
    let best = copies
        .iter()
        .filter_map(|(name, c)| Some((*name, c.position_in(&history)?)))
        .max_by_key(|(name, offset)| {
            (
                *offset,
                std::cmp::Reverse(names::ordinal_of(view.name, name).unwrap_or(u32::MAX)),
            )
        });
    // The highest offset known in that history: every pod's report, or its last one.
    let old_name = old.to_string();
    let reference = ordinal_pods(view)
        .into_iter()
        .filter_map(|(name, p)| {
            let now = p
                .report
                .as_ref()
                .and_then(Dataset::of)
                .and_then(|c| c.position_in(&history));
            let last = remembered(view, name)
                .filter(|m| m.replication_id.as_deref() == Some(history.as_str()))
                .and_then(|m| m.replication_offset);
            Some((name, now.or(last)?))
        })
        .chain(
            // The failed primary may be gone from the pod list: its last report still counts.
            remembered(view, old)
                .filter(|_| !view.pods.contains_key(old))
                .filter(|m| m.replication_id.as_deref() == Some(history.as_str()))
                .and_then(|m| Some((&m.name, m.replication_offset?))),
        )
        .chain(
            // How far the failed primary was when its replicas last read it (their instance
            // managers read it every second and keep the last reading after it went silent):
            // fresher than its own last report in the status, which is not rewritten for
            // offsets alone.
            ordinal_pods(view).into_iter().filter_map(|(_, p)| {
                let r = p.report.as_ref()?;
                let (host, _) = r.upstream.as_deref()?.rsplit_once(':')?;
                let seen = r.upstream_last_seen.as_ref()?;
                let is_old = pod_at(view, host).map(String::as_str) == Some(old)
                    || host == old
                    || host
                        .strip_prefix(old)
                        .is_some_and(|rest| rest.starts_with('.'));
                (is_old && seen.replid == history).then_some((&old_name, seen.offset))
            }),
        )
        .max_by_key(|(_, offset)| *offset);
    let behind = |offset: i64| {
        reference
            .filter(|(_, r)| *r > offset)
            .map(|(pod, r)| (r - offset, pod.clone(), r))
    };
    let Some((pod, offset)) = best else {
        return Err(nobody());
    };
    let candidate = Candidate {
        pod: pod.clone(),
        offset,
        behind: behind(offset),
        named: false,
    };
    let blocked = match &candidate.behind {
        Some((bytes, ahead, at)) if *bytes > max_lag => format!(
            "the best reachable replica {pod} is at offset {offset} of replication history {}, {bytes} bytes behind {ahead} (offset {at}): promoting it would lose those writes (failover.maxLagBytes: {max_lag}). Waiting for a replica closer to it to report; to promote {pod} anyway and lose them: {}",
            short(&history),
            annotate_command(view, PROMOTE_POD_ANNOTATION, pod)
        ),
        _ => return Ok(candidate),
    };
    // Blocked: the user's say lifts the block (only then: an annotation left over from an
    // earlier incident never steers a failover that can proceed on its own).
    if let Some(named) = extra.promote_pod.as_deref()
        && let Some((name, r)) = eligible.iter().find(|(name, _)| name.as_str() == named)
    {
        let offset = copies
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, c)| c.position_in(&history))
            .or(r.master_repl_offset)
            .or(r.repl_offset)
            .unwrap_or_default();
        return Ok(Candidate {
            pod: (*name).clone(),
            offset,
            behind: behind(offset),
            named: true,
        });
    }
    Err(blocked)
}

fn no_replica() -> String {
    "no replica is in sync with a known replication offset".into()
}

/// A failover the operator decided in this pass.
#[derive(Clone, Debug, PartialEq)]
struct Failover {
    from: String,
    to: Candidate,
    proof: String,
    unavailable_for: i64,
    /// The old primary came back without its data (the message says how we know).
    lost: Option<String>,
}

/// Which pod a promotion makes primary, and what `PromotionTarget` says.
#[derive(Clone, Debug, PartialEq)]
struct PromotionChoice {
    /// Nothing is promoted yet: waiting for reports, or for the user to choose.
    wait: bool,
    condition: Desired,
    /// Why this pod, for the `Promoting` Event (None: pod 0 holding everything, as always).
    why: Option<String>,
}

impl PromotionChoice {
    /// `pod` is promoted: `PromotionTarget=True/Chosen` with `message`.
    fn chosen(message: String, why: Option<String>) -> Self {
        PromotionChoice {
            wait: false,
            condition: Desired {
                type_: cond::PROMOTION_TARGET,
                status: Status::True,
                reason: cond::REASON_CHOSEN,
                message,
            },
            why,
        }
    }

    /// Nothing is promoted yet: `PromotionTarget` says why.
    fn waiting(status: Status, reason: &'static str, message: String) -> Self {
        PromotionChoice {
            wait: true,
            condition: Desired {
                type_: cond::PROMOTION_TARGET,
                status,
                reason,
                message,
            },
            why: None,
        }
    }
}

/// Who leads, and what the `PrimaryAvailable` condition says.
struct Leadership {
    leader: String,
    decider: Decider,
    failover: Option<Failover>,
    available: Option<Desired>,
    sentinel_epoch: Option<u64>,
    /// The leader came back without its data: it is published fenced (never primary) and not
    /// labelled primary; the message says why.
    lost: Option<String>,
    /// During a promotion: the choice of the pod to promote.
    promotion: Option<PromotionChoice>,
    /// The leader restarted under a new replication history (this pass).
    restart: Option<Restart>,
    /// The leader's restart is accepted: `acceptHistory` for every pod.
    accept_restart: Option<AcceptRestart>,
    /// Under Sentinel: ask the Sentinels to fail over the leader that is held back (once it
    /// reports the fence), and why.
    ask_sentinels: Option<&'static str>,
}

impl Leadership {
    fn new(leader: String, decider: Decider) -> Self {
        Leadership {
            leader,
            decider,
            failover: None,
            available: None,
            sentinel_epoch: None,
            lost: None,
            promotion: None,
            restart: None,
            accept_restart: None,
            ask_sentinels: None,
        }
    }

    /// A pod that is published fenced: the one failed over from, or a leader that lost its data.
    fn fences(&self, pod: &str) -> bool {
        self.failover.as_ref().is_some_and(|f| f.from == pod)
            || (self.lost.is_some() && self.failover.is_none() && self.leader == pod)
    }
}

fn seconds_between(from: &Time, to: &Time) -> i64 {
    to.0.as_second() - from.0.as_second()
}

/// A promotion has been published: the newest topology names a primary (in replica mode none
/// does).
fn promotion_started(view: &ClusterView) -> bool {
    view.pods
        .values()
        .filter_map(|p| p.published.as_ref())
        .max_by_key(|t| t.epoch)
        .is_some_and(|t| t.primary.is_some())
}

/// How long a planned switchover's promotion waits for the token before its condition says it
/// is not reached (it keeps waiting: it never promotes without the token).
pub const SWITCHOVER_TOKEN_WAIT_SECONDS: i64 = 60;

/// The pod that waits, demoted, for a planned switchover, with its token (its report's
/// `demoted`).
fn demoted_pod(view: &ClusterView) -> Option<(String, SwitchoverToken)> {
    switchover::demotion_token(
        ordinal_pods(view)
            .into_iter()
            .filter_map(|(n, p)| Some((n.as_str(), p.report.as_ref()?))),
    )
}

/// How long condition `type_` has been `Unknown` in the previous status (0 when it is not):
/// the bounded waits of a promotion are measured from there.
fn unknown_for(view: &ClusterView, type_: &str) -> i64 {
    view.previous
        .and_then(|s| conditions::find(&s.conditions, type_))
        .filter(|c| c.status == Status::Unknown.as_str())
        .map(|c| seconds_between(&c.last_transition_time, &view.now))
        .unwrap_or(0)
}

/// How long a planned switchover waits for the designated leader when another pod holds the
/// token first.
pub const TOKEN_LEADER_WAIT_SECONDS: i64 = 5;

/// `replicaMode.promotionToken`, parsed (the schema's pattern admits only valid ones).
fn spec_token(view: &ClusterView) -> Option<SwitchoverToken> {
    view.spec
        .replica_mode
        .as_ref()
        .and_then(|rm| rm.promotion_token.as_deref())
        .and_then(SwitchoverToken::parse)
}

/// The token a promotion must wait for: the spec's, unless an earlier promotion already used
/// it (`status.usedPromotionToken`). A token left in the spec after its switchover must not
/// hold back a later disaster promotion (`promote: true` as the spec writes it).
fn promotion_token(view: &ClusterView) -> Option<SwitchoverToken> {
    let used = view
        .previous
        .and_then(|s| s.used_promotion_token.as_deref())
        .and_then(SwitchoverToken::parse);
    spec_token(view).filter(|t| Some(t) != used.as_ref())
}

/// The token against the pods, designated leader first.
fn token_state(view: &ClusterView, token: &SwitchoverToken) -> TokenState {
    let pods: Vec<(&str, Option<&InstanceReport>)> = ordinal_pods(view)
        .into_iter()
        .filter(|(_, p)| !p.terminating)
        .map(|(name, p)| (name.as_str(), p.report.as_ref()))
        .collect();
    switchover::check(token, &pods)
}

/// A planned switchover's promotion (`promotionToken` set, not published yet): the pod that
/// holds the token, or a wait while none does. None without a token.
fn token_choice(view: &ClusterView) -> Option<(String, PromotionChoice)> {
    let token = promotion_token(view)?;
    let pod0 = names::pod_name(view.name, 0);
    let waiting = |message: String| {
        PromotionChoice::waiting(Status::Unknown, cond::REASON_WAITING_FOR_TOKEN, message)
    };
    Some(match token_state(view, &token) {
        // Another pod got there first (its report was read a moment after pod 0's): pod 0, the
        // designated leader, a few bytes short in the same history, is waited for a moment, so
        // that the -leader endpoint (and, in sentinel mode, the primary the Sentinels start
        // with) stays on it.
        TokenState::Reached { pod }
            if pod != pod0
                && unknown_for(view, cond::PROMOTION_TARGET) < TOKEN_LEADER_WAIT_SECONDS =>
        {
            let pod0_report = view.pods.get(&pod0).and_then(|p| p.report.as_ref());
            match switchover::check(&token, &[(pod0.as_str(), pod0_report)]) {
                TokenState::Short { behind, .. } => (
                    pod0.clone(),
                    waiting(format!(
                        "Planned switchover: {pod} holds the promotion token {token}; waiting up to {TOKEN_LEADER_WAIT_SECONDS}s for the designated leader {pod0} ({behind} bytes short), so that the -leader endpoint stays on it"
                    )),
                ),
                _ => reached(&pod, &token),
            }
        }
        TokenState::Reached { pod } => reached(&pod, &token),
        _ => (
            pod0,
            waiting(format!(
                "Planned switchover: no pod holds the promotion token {token} yet; nothing is promoted until one does (see condition {})",
                cond::SWITCHOVER
            )),
        ),
    })
}

/// The promotion of `pod`, which holds `token`.
fn reached(pod: &str, token: &SwitchoverToken) -> (String, PromotionChoice) {
    (
        pod.to_string(),
        PromotionChoice::chosen(
            format!(
                "{pod} holds the promotion token {token} (planned switchover): promoting it; every write the demoted cluster acknowledged is in it"
            ),
            Some(format!(
                "planned switchover: {pod} holds the promotion token {token}"
            )),
        ),
    )
}

/// The `Switchover` condition, while a planned switchover concerns this cluster: the demoted
/// side (a pod waits for its source's promotion), or the side promoted with a token.
fn switchover_condition(
    view: &ClusterView,
    target: Target,
    leader: &str,
    leader_confirmed: bool,
) -> Option<Desired> {
    match target {
        Target::Replica(source, _) => {
            let (pod, token) = demoted_pod(view)?;
            // `clusterName` is a display name, not necessarily the other RedisCluster's.
            let patch = format!(
                "kubectl patch rediscluster <its name> --type=merge -p '{{\"spec\":{{\"replicaMode\":{{\"promote\":true,\"promotionToken\":\"{token}\"}}}}}}'"
            );
            Some(Desired {
                type_: cond::SWITCHOVER,
                status: Status::True,
                reason: cond::REASON_DEMOTED,
                message: format!(
                    "{pod} was the primary and takes no writes now: it replicates {} from the promotion token {token} (status.demotionToken) once that cluster is promoted with it. To complete the switchover, promote {} with it: {patch}. To abort instead, make this cluster primary again (replicaMode.enabled: false, or promote: true)",
                    source.display_name(),
                    source.display_name()
                ),
            })
        }
        Target::Promoted(source) => {
            let started = promotion_started(view) || promotion_done(view) || leader_confirmed;
            let token = if started {
                spec_token(view)?
            } else {
                promotion_token(view)?
            };
            if started {
                let r = view.pods.get(leader)?.report.as_ref()?;
                return switchover::promoted_with(&token, r).then(|| Desired {
                    type_: cond::SWITCHOVER,
                    status: Status::True,
                    reason: cond::REASON_TOKEN_REACHED,
                    message: format!(
                        "{leader} held the promotion token {token} when it was promoted: every write {} acknowledged before its demotion is here; {} continues from it with a partial resync once it replicates this cluster",
                        source.display_name(),
                        source.display_name()
                    ),
                });
            }
            let waited = view
                .previous
                .and_then(|s| conditions::find(&s.conditions, cond::SWITCHOVER))
                .map(|c| match c.status.as_str() {
                    "Unknown" => seconds_between(&c.last_transition_time, &view.now),
                    "False" if c.reason == cond::REASON_TOKEN_NOT_REACHED => {
                        SWITCHOVER_TOKEN_WAIT_SECONDS
                    }
                    _ => 0,
                })
                .unwrap_or(0);
            let abort = format!(
                "To abort: remove promote and promotionToken here and make {} primary again; to promote without the token (the disaster path, losing what is missing): remove promotionToken",
                source.display_name()
            );
            let waiting = |status: Status, reason: &'static str, what: String| Desired {
                type_: cond::SWITCHOVER,
                status,
                reason,
                message: format!("{what}. {abort}"),
            };
            let timed = |what: String| {
                if waited >= SWITCHOVER_TOKEN_WAIT_SECONDS {
                    waiting(
                        Status::False,
                        cond::REASON_TOKEN_NOT_REACHED,
                        format!(
                            "Not promoting: no pod reached the promotion token {token} within {SWITCHOVER_TOKEN_WAIT_SECONDS}s ({what}); still waiting, nothing is promoted without it"
                        ),
                    )
                } else {
                    waiting(
                        Status::Unknown,
                        cond::REASON_TOKEN_WAITING,
                        format!(
                            "Waiting for a pod to hold the promotion token {token} before promoting ({what}; {waited}s so far)"
                        ),
                    )
                }
            };
            Some(match token_state(view, &token) {
                TokenState::Reached { pod } => Desired {
                    type_: cond::SWITCHOVER,
                    status: Status::True,
                    reason: cond::REASON_TOKEN_REACHED,
                    message: format!(
                        "{pod} holds the promotion token {token}: promoting it; every write {} acknowledged before its demotion is in it",
                        source.display_name()
                    ),
                },
                TokenState::Short {
                    pod,
                    behind,
                    link_up,
                } => timed(format!(
                    "{pod} follows its history but is {behind} bytes short of it{}",
                    if link_up {
                        ""
                    } else {
                        ", and its link to the source is not up: the switchover completes only once the source is reachable and sends the rest"
                    }
                )),
                TokenState::Unknown => {
                    timed("no pod reports its replication history yet".to_string())
                }
                TokenState::OtherHistory {
                    pod,
                    replid,
                    offset,
                    continued,
                } => waiting(
                    Status::False,
                    cond::REASON_TOKEN_MISMATCH,
                    format!(
                        "Refusing to promote: the promotion token {token} names replication history {}, but {pod} follows {replid} (at {offset}){}; take the token again from {}'s status.demotionToken",
                        token.replid,
                        if continued {
                            format!(
                                ", which continued the token's history after its offset: {} took writes again after the token was taken (its demotion was undone?), and promoting now would leave two writable primaries",
                                source.display_name()
                            )
                        } else {
                            ": the token is of another cluster or of an older switchover"
                                .to_string()
                        },
                        source.display_name()
                    ),
                ),
            })
        }
        Target::Standalone => None,
    }
}

/// Which pod a promotion makes primary: the one the user named, else the pod whose data holds
/// every other reporting pod's data (pod 0 when it does; else the lowest ordinal that does),
/// after waiting a bounded time for pods that have not reported. None: no instance manager
/// reports replication histories (older ones), and pod 0 is promoted as before.
fn choose_promotion(view: &ClusterView, extra: &Extra) -> Option<(String, PromotionChoice)> {
    let pods = ordinal_pods(view);
    let copies: Vec<(&String, Option<Dataset>)> = pods
        .iter()
        .map(|(name, p)| {
            let copy = (!p.terminating)
                .then(|| p.report.as_ref().and_then(Dataset::of))
                .flatten();
            (*name, copy)
        })
        .collect();
    let summary = copies
        .iter()
        .map(|(name, copy)| match copy {
            Some(c) => format!("{name} {}", c.describe()),
            None => {
                let p = &view.pods[*name];
                let why = if p.terminating {
                    "being deleted".to_string()
                } else if p.report.as_ref().is_some_and(|r| r.loading == Some(true)) {
                    "loading its data".to_string()
                } else if p.report.is_some() {
                    "no replication history reported".to_string()
                } else {
                    p.problem
                        .clone()
                        .unwrap_or_else(|| "instance manager not reachable".into())
                };
                format!("{name} unknown ({why})")
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let named = extra
        .promote_pod
        .as_ref()
        .filter(|p| pods.iter().any(|(name, _)| name == p));
    if let Some(pod) = named {
        return Some((
            pod.clone(),
            PromotionChoice::chosen(
                format!(
                    "{pod} named by {PROMOTE_POD_ANNOTATION}: promoting it; the other pods resynchronise from it and lose what it lacks ({summary})"
                ),
                Some(format!("named by {PROMOTE_POD_ANNOTATION} ({summary})")),
            ),
        ));
    }
    if copies.iter().all(|(_, c)| c.is_none())
        && pods
            .iter()
            .all(|(_, p)| p.report.as_ref().is_none_or(|r| r.master_replid.is_none()))
    {
        return None;
    }
    let known: Vec<(&String, &Dataset)> = copies
        .iter()
        .filter_map(|(n, c)| Some((*n, c.as_ref()?)))
        .collect();
    let unknown: Vec<&String> = copies
        .iter()
        .filter(|(_, c)| c.is_none())
        .map(|(n, _)| *n)
        .collect();
    // Every pod that holds all the others' data is as good as any other such pod: a primary
    // demoted for a planned switchover that is being undone (it keeps the role it had, and the
    // -leader endpoint stays on it), then the designated leader, then the lowest ordinal.
    let demoted = demoted_pod(view).map(|(pod, _)| pod);
    let best = known
        .iter()
        .filter(|(name, _)| Some(*name) == demoted.as_ref())
        .chain(known.iter())
        .find(|(_, c)| known.iter().all(|(_, other)| c.holds(other)))
        .map(|(name, c)| ((*name).clone(), (*c).clone()));
    let waited = unknown_for(view, cond::PROMOTION_TARGET);
    let pod0 = names::pod_name(view.name, 0);
    let choose_now = annotate_command(view, PROMOTE_POD_ANNOTATION, "<pod>");
    if !unknown.is_empty() && waited < PROMOTION_REPORT_WAIT_SECONDS {
        let unknown = unknown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        // Nothing moves while waiting: the designated leader keeps its label.
        return Some((
            pod0,
            PromotionChoice::waiting(
                Status::Unknown,
                cond::REASON_WAITING_FOR_REPORTS,
                format!(
                    "Waiting for {unknown} to report what it holds before choosing the pod to promote (at most {PROMOTION_REPORT_WAIT_SECONDS}s, so far {waited}s): {summary}. To promote a pod now: {choose_now}"
                ),
            ),
        ));
    }
    let Some((leader, copy)) = best else {
        return Some((
            pod0,
            PromotionChoice::waiting(
                Status::False,
                cond::REASON_NEEDS_CHOICE,
                format!(
                    "No pod holds every other pod's data (their replication histories diverge): {summary}. Choose the pod to promote (the others resynchronise from it and lose what it lacks): {choose_now}"
                ),
            ),
        ));
    };
    let late = (!unknown.is_empty()).then(|| {
        format!(
            "; {} did not report within {PROMOTION_REPORT_WAIT_SECONDS}s",
            unknown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    let why = (leader != pod0 || late.is_some()).then(|| {
        format!(
            "{leader} holds the most data ({}){}: {summary}",
            copy.describe(),
            late.clone().unwrap_or_default()
        )
    });
    Some((
        leader.clone(),
        PromotionChoice::chosen(
            format!(
                "{leader} holds every reporting pod's data{}: promoting it ({summary})",
                late.unwrap_or_default()
            ),
            why,
        ),
    ))
}

fn leadership(view: &ClusterView, target: Target, extra: &Extra) -> Leadership {
    let decider = decider(view, target, extra);
    let mut out = Leadership::new(names::pod_name(view.name, 0), decider);
    let recorded = recorded_primary(view);
    match decider {
        Decider::Spec => {
            // A planned switchover's demoted primary stays the designated leader while it waits
            // for the source's promotion: the -leader Service must keep leading the source to
            // it (the source streams the last of this cluster's history from it).
            if let Some((pod, _)) = demoted_pod(view) {
                out.leader = pod;
            }
            return out;
        }
        Decider::Sentinel => {
            match sentinel_choice(view) {
                Some((pod, epoch)) => {
                    out.leader = pod;
                    out.sentinel_epoch = Some(epoch);
                }
                None => out.leader = recorded,
            }
            if let Some(lost) = lost_data(view, &out.leader, extra) {
                out.available = Some(Desired {
                    type_: cond::PRIMARY_AVAILABLE,
                    status: Status::False,
                    reason: cond::REASON_DATA_LOST,
                    message: format!(
                        "{lost}: kept fenced and out of the -leader Service; the Sentinels keep a primary that answers, so the operator asks them to fail over (SENTINEL FAILOVER {}) to a replica that holds the data",
                        names::sentinel_master_name(view.name)
                    ),
                });
                out.lost = Some(lost);
                out.ask_sentinels = Some("its primary came back without its data");
                return out;
            }
            if let Some(r) = restarted(view, &out.leader, extra) {
                let holders = holders(view, &out.leader, &r.had.replid);
                let answering: Vec<&String> = holders
                    .iter()
                    .filter(|h| {
                        view.pods[*h]
                            .report
                            .as_ref()
                            .is_some_and(|r| r.role.is_some())
                    })
                    .collect();
                let silent = silent_others(view, &out.leader);
                if holders.is_empty() && !silent.is_empty() {
                    out.available = Some(waiting_to_accept(view, &r, &silent));
                    out.restart = Some(r);
                    return out;
                }
                let message = if holders.is_empty() {
                    out.available = Some(accepting(&r));
                    out.accept_restart = Some(AcceptRestart::of(&out.leader, &r));
                    out.restart = Some(r);
                    return out;
                } else if answering.is_empty() {
                    format!(
                        "{}: kept fenced and out of the -leader Service; {} may hold more of its former history but does not answer: waiting for it. To let it take writes again with what it restarted with (losing what only its replicas hold): {}",
                        r.message,
                        holders.join(", "),
                        annotate_command(
                            view,
                            redis_cluster_api::topology::ACCEPT_HISTORY_ANNOTATION,
                            &r.now.replid
                        )
                    )
                } else {
                    out.ask_sentinels = Some(
                        "its primary restarted under a new replication history while a replica holds more of its former one",
                    );
                    format!(
                        "{}: kept fenced and out of the -leader Service; the Sentinels keep a primary that answers, so the operator asks them to fail over (SENTINEL FAILOVER {}) to a replica that holds its former history ({})",
                        r.message,
                        names::sentinel_master_name(view.name),
                        answering
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                out.available = Some(Desired {
                    type_: cond::PRIMARY_AVAILABLE,
                    status: Status::False,
                    reason: cond::REASON_PRIMARY_RESTARTED,
                    message,
                });
                out.lost = Some(r.message.clone());
                out.restart = Some(r);
                return out;
            }
            out.available = Some(match availability(view, &out.leader) {
                Ok(()) => Desired {
                    type_: cond::PRIMARY_AVAILABLE,
                    status: Status::True,
                    reason: cond::REASON_AVAILABLE,
                    message: match out.sentinel_epoch {
                        Some(e) => format!(
                            "{} answers; elected by the Sentinels (config epoch {e})",
                            out.leader
                        ),
                        None => format!("{} answers; no Sentinel has reported yet", out.leader),
                    },
                },
                Err(why) => Desired {
                    type_: cond::PRIMARY_AVAILABLE,
                    status: Status::False,
                    reason: cond::REASON_UNAVAILABLE,
                    message: format!("{why}; the Sentinels decide the failover"),
                },
            });
            return out;
        }
        Decider::Operator => out.leader = recorded,
    }
    // A promotion not published yet: choose the pod that holds the most data, or, in a planned
    // switchover, the pod that holds the promotion token (and none until one does).
    if let Target::Promoted(_) = target
        && !promotion_done(view)
        && !promotion_started(view)
    {
        if let Some((leader, choice)) = token_choice(view) {
            out.leader = leader;
            out.promotion = Some(choice);
            return out;
        }
        if let Some((leader, choice)) = choose_promotion(view, extra) {
            out.leader = leader;
            out.promotion = Some(choice);
        }
        return out;
    }
    // A cluster that never had a confirmed primary is still being created: nothing to fail
    // over from (pods that take a while to schedule are not an incident).
    if view.previous.is_none_or(|s| s.current_primary.is_none()) {
        return out;
    }
    let settings = view.spec.failover_settings();
    let lost = lost_data(view, &out.leader, extra);
    let restart = match lost {
        Some(_) => None,
        None => restarted(view, &out.leader, extra),
    };
    // A primary that restarted under a new history while no other pod holds its former one
    // loses nothing to a failover that cannot happen: its restart is accepted.
    if let Some(r) = &restart
        && holders(view, &out.leader, &r.had.replid).is_empty()
    {
        let silent = silent_others(view, &out.leader);
        if !silent.is_empty() {
            out.available = Some(waiting_to_accept(view, r, &silent));
            out.restart = restart;
            return out;
        }
        out.available = Some(accepting(r));
        out.accept_restart = Some(AcceptRestart::of(&out.leader, r));
        out.restart = restart;
        return out;
    }
    // Held back: a primary that lost its data, or that restarted while a replica holds more
    // of its former history. Neither takes writes; both are replaced at once.
    let held = lost
        .clone()
        .or_else(|| restart.as_ref().map(|r| r.message.clone()));
    let why = match (&held, availability(view, &out.leader)) {
        (Some(held), _) => held.clone(),
        (None, Err(why)) => why,
        (None, Ok(())) => {
            out.available = Some(Desired {
                type_: cond::PRIMARY_AVAILABLE,
                status: Status::True,
                reason: cond::REASON_AVAILABLE,
                message: format!("{} answers", out.leader),
            });
            return out;
        }
    };
    let held_reason = if lost.is_some() {
        cond::REASON_DATA_LOST
    } else {
        cond::REASON_PRIMARY_RESTARTED
    };
    let was = view
        .previous
        .and_then(|s| conditions::find(&s.conditions, cond::PRIMARY_AVAILABLE))
        .filter(|c| c.status == Status::False.as_str());
    let unavailable_for = was
        .map(|c| seconds_between(&c.last_transition_time, &view.now))
        .unwrap_or(0);
    let delay = i64::from(settings.primary_unavailable_seconds.max(1));
    // How the user takes writes on the held primary instead.
    let accept_held = || {
        if let Some(r) = &restart {
            return format!(
                "; to let it take writes again with what it restarted with (losing what only its replicas hold): {}",
                annotate_command(
                    view,
                    redis_cluster_api::topology::ACCEPT_HISTORY_ANNOTATION,
                    &r.now.replid
                )
            );
        }
        copy_of(view, &out.leader)
            .map(|c| {
                format!(
                    "; to take writes with the empty dataset instead: {}",
                    annotate_command(
                        view,
                        redis_cluster_api::topology::ACCEPT_HISTORY_ANNOTATION,
                        &c.replid
                    )
                )
            })
            .unwrap_or_default()
    };
    // A restarted primary is replaced only by a replica that holds its former history.
    let history = restart.as_ref().map(|r| r.had.replid.as_str());
    let (reason, message) = if view.spec.instances <= 1 {
        (
            if held.is_some() {
                held_reason
            } else {
                cond::REASON_UNAVAILABLE
            },
            format!(
                "{why}; a single-instance cluster has no replica to fail over to{}",
                if held.is_some() {
                    accept_held()
                } else {
                    String::new()
                }
            ),
        )
    } else if !settings.enabled {
        (
            if held.is_some() {
                held_reason
            } else {
                cond::REASON_UNAVAILABLE
            },
            format!(
                "{why}; automatic failover is disabled (spec.failover.enabled: false){}",
                if restart.is_some() {
                    accept_held()
                } else {
                    String::new()
                }
            ),
        )
    } else if held.is_none() && unavailable_for < delay {
        (
            cond::REASON_UNAVAILABLE,
            format!("{why}; failover after {delay}s unavailable (so far {unavailable_for}s)"),
        )
    } else {
        // A primary held back is replaced at once: waiting does not bring its data back.
        match (
            cannot_write(view, &out.leader),
            failover_candidate(view, &out.leader, extra, history),
        ) {
            (Some(proof), Ok(to)) => {
                let message = format!(
                    "{why}; failing over to {} (replication offset {})",
                    to.pod, to.offset
                );
                out.failover = Some(Failover {
                    from: out.leader.clone(),
                    to,
                    proof,
                    unavailable_for,
                    lost: held.clone(),
                });
                (cond::REASON_FAILING_OVER, message)
            }
            (None, _) if held.is_some() => (
                held_reason,
                format!(
                    "{why}; fencing it and keeping it out of the -leader Service before a replica is promoted"
                ),
            ),
            (None, _) if view.pods.get(&out.leader).is_some_and(|p| p.terminating) => (
                cond::REASON_FAILOVER_BLOCKED,
                format!(
                    "{why}; failover blocked: {0} is being deleted, but its Redis runs until the kubelet stops it (its node may be unreachable) and nothing proves it stopped accepting writes. Force-deleting the pod (kubectl delete pod -n {1} {0} --force) lets the failover proceed",
                    out.leader, view.namespace
                ),
            ),
            (None, _) => (
                cond::REASON_FAILOVER_BLOCKED,
                format!(
                    "{why}; failover blocked: nothing proves {} stopped accepting writes (its container may still run, e.g. on an unreachable node). Deleting the pod lets the failover proceed",
                    out.leader
                ),
            ),
            (Some(_), Err(blocked)) => (
                if held.is_some() {
                    held_reason
                } else {
                    cond::REASON_FAILOVER_BLOCKED
                },
                format!(
                    "{why}; failover blocked: {blocked}{}",
                    if held.is_some() {
                        accept_held()
                    } else {
                        String::new()
                    }
                ),
            ),
        }
    };
    out.available = Some(Desired {
        type_: cond::PRIMARY_AVAILABLE,
        status: Status::False,
        reason,
        message,
    });
    out.lost = held;
    out.restart = restart;
    if let Some(f) = &out.failover {
        out.leader = f.to.pod.clone();
    }
    out
}

/// The topology pod `name` should have, with epoch 0 (assigned when published).
fn desired_for(
    view: &ClusterView,
    target: Target,
    lead: &Leadership,
    extra: &Extra,
    name: &str,
) -> DesiredTopology {
    let is_leader = name == lead.leader;
    let fencing = lead.fences(name);
    let (role, upstream, hidden) = match target {
        Target::Standalone | Target::Promoted(_) if fencing => (Role::Fenced, None, false),
        Target::Standalone | Target::Promoted(_) if is_leader => (Role::Primary, None, false),
        Target::Standalone | Target::Promoted(_) => (
            Role::Replica,
            Some(peer_upstream(view, &lead.leader)),
            false,
        ),
        Target::Replica(_, ReplicaTopology::Cascading) if !is_leader => {
            (Role::Replica, Some(peer_upstream(view, &lead.leader)), true)
        }
        Target::Replica(source, _) => (Role::Replica, Some(external_upstream(view, source)), true),
    };
    let min_sync = view.spec.min_sync_replicas.unwrap_or(0).max(0) as u32;
    // Under Sentinel every pod carries the real value: the replica a Sentinel promotes must be
    // protected the moment it becomes primary, without waiting for the operator.
    let min_replicas_to_write = match (role, lead.decider) {
        (Role::Primary, _) | (_, Decider::Sentinel) => min_sync,
        (Role::Fenced, _) => FENCE_MIN_REPLICAS,
        _ => 0,
    };
    // Under Sentinel a primary that lost its data is fenced by its topology: the instance
    // manager applies role fenced whatever the Sentinels say.
    let role = if fencing && lead.decider == Decider::Sentinel {
        Role::Fenced
    } else {
        role
    };
    let upstream = if role == Role::Fenced { None } else { upstream };
    let min_replicas_to_write = if role == Role::Fenced {
        FENCE_MIN_REPLICAS
    } else {
        min_replicas_to_write
    };
    let sentinel = (lead.decider == Decider::Sentinel).then(|| SentinelTopology {
        master_name: names::sentinel_master_name(view.name),
        addresses: view.env.sentinel_addresses.clone().unwrap_or_else(|| {
            (0..view.spec.sentinel_settings().replicas.max(0) as u32)
                .map(|i| {
                    format!(
                        "{}:{}",
                        names::sentinel_host(view.name, i),
                        names::SENTINEL_PORT
                    )
                })
                .collect()
        }),
        announce_host: view
            .pods
            .get(name)
            .map(|p| p.address.clone())
            .unwrap_or_default(),
        password_file: view
            .spec
            .auth_secret
            .as_ref()
            .map(|_| view.env.auth_password_file.clone()),
    });
    DesiredTopology {
        version: FORMAT_VERSION,
        cluster: view.name.to_string(),
        epoch: 0,
        role,
        upstream,
        // In replica mode the source's Sentinels must never promote one of our pods, and should
        // not even list them: priority 0 and not announced.
        replica_priority: if hidden { 0 } else { 100 },
        replica_announced: !hidden,
        min_replicas_to_write,
        min_replicas_max_lag: 10,
        primary: match target {
            Target::Replica(..) => None,
            _ => Some(lead.leader.clone()),
        },
        sentinel,
        replicaof_command: Some(replicaof_command(view.uid, view.namespace, view.name)),
        // An accepted restart of the primary goes to every pod: it unfences the primary and
        // lets its replicas' gates through.
        accept_history: lead
            .accept_restart
            .as_ref()
            .map(|a| a.replid.clone())
            .or_else(|| extra.accept_history.clone()),
    }
}

fn observed_role(report: Option<&InstanceReport>) -> Option<Role> {
    report.and_then(|r| r.role).map(|r| match r {
        ObservedRole::Primary => Role::Primary,
        ObservedRole::Replica => Role::Replica,
    })
}

/// The pod reports, at the published epoch, the role it was asked for.
fn confirmed(pod: Option<&PodView>, want: &DesiredTopology) -> bool {
    let Some(pod) = pod else { return false };
    let Some(published) = pod.published.as_ref().filter(|p| same_shape(p, want)) else {
        return false;
    };
    let Some(report) = pod.report.as_ref() else {
        return false;
    };
    let role_ok = match want.role {
        Role::Fenced => report.fenced,
        role => observed_role(Some(report)) == Some(role),
    };
    report.applied_epoch.is_some_and(|e| e >= published.epoch) && role_ok
}

/// Decide the next step, with nothing but the spec and the pods to go on (no annotation on the
/// RedisCluster, no probe of the former source). See [`plan_with`].
pub fn plan(view: &ClusterView) -> Plan {
    plan_with(view, &Extra::default())
}

/// Pods whose topology annotation carries an epoch above [`EPOCH_LIMIT`], with that epoch.
fn poisoned_epochs(view: &ClusterView) -> BTreeMap<String, u64> {
    view.pods
        .iter()
        .filter_map(|(name, p)| {
            let epoch = p.published.as_ref()?.epoch;
            (epoch > EPOCH_LIMIT).then(|| (name.clone(), epoch))
        })
        .collect()
}

/// Decide the next step. See the module documentation for the rules.
pub fn plan_with(view: &ClusterView, extra: &Extra) -> Plan {
    // Bad input first: a pod whose annotation carries an epoch no later epoch can exceed is
    // left alone (its published topology ignored, nothing written to it) and reported.
    let poisoned = poisoned_epochs(view);
    let mut problems: Vec<Problem> = poisoned
        .iter()
        .map(|(pod, epoch)| Problem {
            reason: EventReason::InvalidAnnotation,
            message: format!(
                "{pod}'s topology annotation has epoch {epoch}, which this operator never publishes (its epochs grow by one per change and stay below {EPOCH_LIMIT}): no later epoch could follow it, so {pod} is left as it is. Delete the pod (kubectl delete pod -n {} {pod}): it comes back without the annotation and gets a fresh topology",
                view.namespace
            ),
        })
        .collect();
    let sanitized: BTreeMap<String, PodView>;
    let view = if poisoned.is_empty() {
        view.clone()
    } else {
        sanitized = view
            .pods
            .iter()
            .map(|(name, p)| {
                let mut p = p.clone();
                if poisoned.contains_key(name) {
                    p.published = None;
                }
                (name.clone(), p)
            })
            .collect();
        ClusterView {
            pods: &sanitized,
            ..view.clone()
        }
    };
    let view = &view;
    if let Some(p) = &extra.promote_pod
        && !view
            .pods
            .keys()
            .any(|n| n == p && names::ordinal_of(view.name, n).is_some())
    {
        problems.push(Problem {
            reason: EventReason::InvalidAnnotation,
            message: format!(
                "the annotation {PROMOTE_POD_ANNOTATION}={p} names no pod of this cluster (its pods are {}-0 to {}-{}): it is ignored",
                view.name,
                view.name,
                view.spec.instances.max(1) - 1
            ),
        });
    }

    let target = held_for_sentinels(view, target(view.spec)).unwrap_or(target(view.spec));
    let mut lead = leadership(view, target, extra);
    if lead.accept_restart.is_none() {
        lead.accept_restart = accepted_earlier(view, &lead);
        // Say so while it lasts.
        if let (Some(a), Some(c)) = (&lead.accept_restart, lead.available.as_mut())
            && c.status == Status::True
        {
            c.message.push_str(&format!(
                "; its restart under a new replication history was accepted (former history {}): its replicas resynchronise from it",
                short(&a.former)
            ));
        }
    }
    let lead = lead;
    let leader = lead.leader.clone();
    let sentinel = lead.decider == Decider::Sentinel;
    // While a promotion waits (for reports, or for the user's choice), every pod keeps
    // replicating the source.
    let promotion_waits = lead.promotion.as_ref().is_some_and(|c| c.wait);
    let shape = match (target, &view.spec.replica_mode) {
        (Target::Promoted(source), Some(rm)) if promotion_waits => {
            Target::Replica(source, rm.topology)
        }
        _ => target,
    };
    let mut desired: BTreeMap<String, DesiredTopology> = BTreeMap::new();
    for name in view.pods.keys() {
        if names::ordinal_of(view.name, name).is_some() {
            desired.insert(name.clone(), desired_for(view, shape, &lead, extra, name));
        }
    }
    let leader_want = desired_for(view, shape, &lead, extra, &leader);
    let leader_pod = view.pods.get(&leader);
    let leader_published_role = leader_pod
        .and_then(|p| p.published.as_ref())
        .map(|p| p.role);
    let leader_observed_role = observed_role(leader_pod.and_then(|p| p.report.as_ref()));
    // While a promotion waits, the leader is a replica of the source like the others: that is
    // no confirmed promotion.
    let leader_confirmed = !promotion_waits && confirmed(leader_pod, &leader_want);
    // Rule 2: while the leader is becoming primary, nobody else moves, except in a promotion out
    // of replica mode (see the module doc). Under Sentinel the pods only follow an election that
    // already happened, so there is nothing to sequence.
    let hold_others = leader_want.role == Role::Primary && !leader_confirmed && !sentinel;
    // Demoting: the leader was made primary by us and has not yet applied its return to replica.
    // A fresh pod also reports `master` (Redis starts that way) but has applied nothing yet.
    let leader_applied_something = leader_pod
        .and_then(|p| p.report.as_ref())
        .is_some_and(|r| r.applied_epoch.is_some());
    // Any pod counts, not only the leader: after a failover the primary may be another pod.
    let demoting = !promotion_waits
        && leader_want.role == Role::Replica
        && (leader_published_role == Some(Role::Primary)
            || (leader_observed_role == Some(Role::Primary) && leader_applied_something)
            || view.pods.values().any(|p| {
                p.published
                    .as_ref()
                    .is_some_and(|t| t.role == Role::Primary)
                    && p.report
                        .as_ref()
                        .is_none_or(|r| r.role == Some(ObservedRole::Primary) && !r.fenced)
            }));
    let leader_syncing = leader_pod
        .and_then(|p| p.report.as_ref())
        .is_some_and(|r| r.sync_in_progress);
    let promoting = leader_want.role == Role::Primary
        && leader_published_role.is_some_and(|r| r != Role::Primary);
    let had_primary = view.previous.is_some_and(|s| s.current_primary.is_some());
    // Why the leader's topology is not published in this pass, if it is not.
    let leader_held = |name: &str, want: &DesiredTopology| -> bool {
        let current = view.pods[name].published.as_ref();
        // Never promote a replica in the middle of a full sync: it would serve its old (maybe
        // empty) dataset as the new primary. Wait, and say why in the condition.
        (promoting && leader_syncing && !sentinel)
        // A recreated primary gets its first topology only once its instance manager reported
        // what its Redis holds: it may have come back without its data, and a topology that
        // lets it take writes must not reach it before the planner could tell.
            || (had_primary
                && current.is_none()
                && view.pods[name].report.is_none()
                && want.role != Role::Fenced
                && (want.role == Role::Primary || sentinel))
    };
    // Rule 2's exception: a promotion out of replica mode, its leader alive and told to be
    // primary (earlier, or last in this pass): the others are chained to it at once.
    let chained = matches!(shape, Target::Promoted(_))
        && lead.failover.is_none()
        && !promotion_done(view)
        && leader_want.role == Role::Primary
        && leader_pod.is_some_and(|p| p.report.is_some())
        && !poisoned.contains_key(&leader)
        && (leader_published_role == Some(Role::Primary) || !leader_held(&leader, &leader_want));

    // The write order: the pod being fenced, the leader, then the others by ordinal.
    let fenced_pod = lead
        .failover
        .as_ref()
        .map(|f| f.from.clone())
        .or_else(|| lead.lost.as_ref().map(|_| leader.clone()));
    let mut order: Vec<String> = desired.keys().cloned().collect();
    order.sort_by_key(|p| {
        (
            Some(p) != fenced_pod.as_ref(),
            // Chained: the others first, the leader last (see rule 2).
            (p != &leader) != chained,
            names::ordinal_of(view.name, p),
        )
    });

    // Rule 3: one epoch above everything published (poisoned epochs excluded above, so this
    // cannot overflow).
    let mut next_epoch = view
        .pods
        .values()
        .filter_map(|p| p.published.as_ref().map(|t| t.epoch))
        .max()
        .unwrap_or(0)
        + 1;
    let mut publish = BTreeMap::new();
    let mut events = Vec::new();
    let was_available = view
        .previous
        .and_then(|s| conditions::find(&s.conditions, cond::PRIMARY_AVAILABLE));
    if let Some(f) = &lead.failover {
        events.push(PlannedEvent {
            type_: EventType::Warning,
            reason: EventReason::FailingOver,
            note: match &f.lost {
                Some(lost) => format!(
                    "{lost}: fencing it and promoting {} ({})",
                    f.to.pod,
                    f.to.describe()
                ),
                None => format!(
                    "{} unavailable for {}s ({}): fencing it and promoting {} ({})",
                    f.from,
                    f.unavailable_for,
                    f.proof,
                    f.to.pod,
                    f.to.describe()
                ),
            },
        });
    }
    // A blocked failover, and a primary back without its data, are warned once, when the
    // condition turns to them.
    if let Some(c) = lead
        .available
        .as_ref()
        .filter(|c| c.reason == cond::REASON_FAILOVER_BLOCKED || c.reason == cond::REASON_DATA_LOST)
        && was_available.is_none_or(|w| w.reason != c.reason)
    {
        events.push(PlannedEvent {
            type_: EventType::Warning,
            reason: if c.reason == cond::REASON_DATA_LOST {
                EventReason::PrimaryDataLost
            } else {
                EventReason::FailoverBlocked
            },
            note: c.message.clone(),
        });
    }
    // A primary that restarted under a new history: once, when it is first seen (the condition
    // says what happens: a failover, or its restart accepted).
    if lead.restart.is_some()
        && was_available.is_none_or(|w| w.reason != cond::REASON_PRIMARY_RESTARTED)
        && let Some(c) = &lead.available
    {
        events.push(PlannedEvent {
            type_: EventType::Warning,
            reason: EventReason::PrimaryRestarted,
            note: c.message.clone(),
        });
    }
    if let Some(choice) = &lead.promotion
        && choice.condition.reason == cond::REASON_NEEDS_CHOICE
        && view
            .previous
            .and_then(|s| conditions::find(&s.conditions, cond::PROMOTION_TARGET))
            .is_none_or(|c| c.reason != cond::REASON_NEEDS_CHOICE)
    {
        events.push(PlannedEvent {
            type_: EventType::Warning,
            reason: EventReason::PromotionBlocked,
            note: choice.condition.message.clone(),
        });
    }
    for name in &order {
        let want = &desired[name];
        let current = view.pods[name].published.as_ref();
        if current.is_some_and(|c| same_shape(c, want)) || poisoned.contains_key(name) {
            continue;
        }
        if name != &leader && hold_others && want.role != Role::Fenced && !chained {
            continue;
        }
        if name == &leader && leader_held(name, want) {
            continue;
        }
        let mut topology = want.clone();
        topology.epoch = next_epoch;
        next_epoch += 1;
        if name == &leader {
            if let Target::Promoted(source) = target
                && promoting
                && !promotion_done(view)
            {
                let why = lead
                    .promotion
                    .as_ref()
                    .and_then(|c| c.why.as_ref())
                    .map(|w| format!("; {w}"))
                    .unwrap_or_default();
                let risk = data_at_risk(view, target, &leader)
                    .map(|r| format!("; data at risk: {}", r.message))
                    .unwrap_or_default();
                events.push(PlannedEvent {
                    type_: EventType::Normal,
                    reason: EventReason::Promoting,
                    note: format!(
                        "Promoting {leader} to standalone primary (REPLICAOF NO ONE); former source: {}{why}{risk}",
                        source.display_name()
                    ),
                });
            }
            if let Target::Replica(source, _) = target
                && demoting
            {
                events.push(PlannedEvent {
                    type_: EventType::Warning,
                    reason: EventReason::Demoting,
                    note: format!(
                        "Returning to replicating from {} ({}:{}): writes made on this cluster since it was promoted are discarded by the resync (its primary saves them to its volume first: a Salvaged Event, docs/salvage.md), unless that source replicates this cluster (a planned switchover: then this cluster's primary keeps them, read-only, and waits for the source to be promoted with status.demotionToken)",
                        source.display_name(),
                        source.host,
                        source.port
                    ),
                });
            }
        }
        events.push(PlannedEvent {
            type_: EventType::Normal,
            reason: EventReason::TopologyPublished,
            note: describe(name, &topology),
        });
        publish.insert(name.clone(), topology);
    }

    // A primary back without its data is labelled like a replica: the -leader Service then
    // leads nowhere rather than to an empty dataset.
    let labelled_leader = (lead.lost.is_none() || lead.failover.is_some()).then_some(&leader);
    let role_labels = desired
        .keys()
        .map(|name| {
            (
                name.clone(),
                if Some(name) == labelled_leader {
                    ROLE_PRIMARY
                } else {
                    ROLE_REPLICA
                },
            )
        })
        .collect();

    // Under Sentinel, once the primary held back (it lost its data, or restarted while a
    // replica holds more) reports the fence, the Sentinels are asked to fail over: they never
    // replace a primary that answers.
    let sentinel_failover_why = lead.ask_sentinels.filter(|_| {
        sentinel
            && lead.lost.is_some()
            && leader_pod
                .and_then(|p| p.report.as_ref())
                .is_some_and(|r| r.fenced)
    });
    let sentinel_failover = sentinel_failover_why.map(|_| names::sentinel_master_name(view.name));
    let sentinel_failover_from = sentinel_failover_why.map(|_| FailoverFrom {
        pod: leader.clone(),
        address: leader_pod.map(|p| p.address.clone()).unwrap_or_default(),
        port: view.env.redis_port,
    });

    let (status, status_events) = status(
        view,
        target,
        &lead,
        extra,
        &desired,
        leader_confirmed,
        demoting,
        leader_syncing,
    );
    events.extend(status_events);
    let converged = desired
        .iter()
        .all(|(name, want)| confirmed(view.pods.get(name), want));
    let former_source_writable = match (&extra.former_source, target) {
        (Some(FormerSource::Writable(_)), Target::Promoted(_)) => Some(true),
        (Some(FormerSource::NotWritable(_)), Target::Promoted(_)) => Some(false),
        _ => None,
    };
    Plan {
        in_progress: !publish.is_empty()
            || !converged
            || promotion_waits
            || lead
                .available
                .as_ref()
                .is_some_and(|c| c.status == Status::False),
        publish,
        role_labels,
        status,
        events,
        order,
        leader,
        problems,
        sentinel_failover,
        sentinel_failover_why: sentinel_failover_why.map(String::from),
        sentinel_failover_from,
        former_source_writable,
    }
}

fn describe(pod: &str, t: &DesiredTopology) -> String {
    match (&t.role, &t.upstream) {
        (Role::Primary, _) => format!("{pod}: primary (epoch {})", t.epoch),
        (Role::Replica, Some(u)) => {
            let what = match u.kind {
                UpstreamKind::External => "external source",
                UpstreamKind::Peer => "peer",
            };
            format!(
                "{pod}: replica of {what} {}:{} (epoch {})",
                u.host, u.port, t.epoch
            )
        }
        (Role::Replica, None) => format!("{pod}: replica (epoch {})", t.epoch),
        (Role::Fenced, _) => format!(
            "{pod}: fenced, accepts no writes (epoch {}); primary is now {}",
            t.epoch,
            t.primary.as_deref().unwrap_or("unknown")
        ),
    }
}

/// What a pod that refuses its upstream's history tells the user.
fn blocked_message(
    view: &ClusterView,
    pod: &str,
    b: &redis_cluster_api::report::HistoryBlock,
) -> String {
    let data = match &b.sample {
        Some(s) if s.error.is_some() => format!(" ({})", s.describe()),
        Some(s) => format!(
            " (and not the same data restarted under a new id: {})",
            s.describe()
        ),
        None => String::new(),
    };
    format!(
        "{pod} refuses {}'s replication history {}@{} ({} keys): it holds {}@{} ({} keys{}), which that history does not contain{data}, and keeps its data instead of replicating. To replace its data with the upstream's: {}",
        b.upstream.address,
        short(&b.upstream.replid),
        b.upstream.offset,
        b.upstream.keys,
        short(&b.ours.replid),
        b.ours.offset,
        b.ours.keys,
        if b.ours_recorded {
            ""
        } else {
            ", of no recorded history"
        },
        annotate_command(
            view,
            redis_cluster_api::topology::ACCEPT_HISTORY_ANNOTATION,
            &b.upstream.replid
        )
    )
}

#[allow(clippy::too_many_arguments)]
fn status(
    view: &ClusterView,
    target: Target,
    lead: &Leadership,
    extra: &Extra,
    desired: &BTreeMap<String, DesiredTopology>,
    leader_confirmed: bool,
    demoting: bool,
    leader_syncing: bool,
) -> (RedisClusterStatus, Vec<PlannedEvent>) {
    let leader = lead.leader.clone();
    let previous = view.previous.cloned().unwrap_or_default();
    let mut events = Vec::new();
    let mut wanted: Vec<Desired> = Vec::new();

    // Per-instance section, straight from the reports. What a pod holds (history, offset,
    // keys) is kept from its last report while it cannot be read: a failover compares it.
    let instances_status: Vec<_> = view
        .pods
        .iter()
        .map(|(name, pod)| {
            let r = pod.report.as_ref();
            let read = r.filter(|r| r.role.is_some());
            let last = previous.instances_status.iter().find(|i| &i.name == name);
            redis_cluster_api::InstanceStatus {
                replication_id: match read {
                    Some(r) => r.master_replid.clone(),
                    None => last.and_then(|l| l.replication_id.clone()),
                },
                keys: match read {
                    Some(r) => r.keys,
                    None => last.and_then(|l| l.keys),
                },
                name: name.clone(),
                role: r.and_then(|r| r.role).map(|role| match role {
                    ObservedRole::Primary => "primary".to_string(),
                    ObservedRole::Replica => "replica".to_string(),
                }),
                upstream: r.and_then(|r| r.upstream.clone()),
                master_link_up: r
                    .filter(|r| r.role == Some(ObservedRole::Replica))
                    .map(|r| r.master_link_up),
                replication_offset: match read {
                    Some(r) => r.repl_offset,
                    None => last.and_then(|l| l.replication_offset),
                },
                lag_bytes: r.and_then(|r| r.lag_bytes),
                ready: r.is_some_and(|r| r.ready),
                diverged_bytes: r.and_then(|r| r.diverged_bytes),
                error: match r {
                    None => Some(
                        pod.problem
                            .clone()
                            .unwrap_or_else(|| "instance manager not reachable".into()),
                    ),
                    Some(r) => r.error.clone().or_else(|| r.link_error.clone()),
                },
                same_data_resync: match r {
                    Some(r) if r.same_data_resync.is_some() => r
                        .same_data_resync
                        .as_ref()
                        .map(|d| d.upstream.replid.clone()),
                    _ => last.and_then(|l| l.same_data_resync.clone()),
                },
                salvage: match r {
                    Some(r) => r.salvage.clone(),
                    None => last.and_then(|l| l.salvage.clone()),
                },
                passwords: r.and_then(|r| r.passwords.clone()),
            }
        })
        .collect();
    let ready_instances = instances_status.iter().filter(|i| i.ready).count() as i32;
    // The one honest exception to "no full resync after a source failover": a pod that held
    // writes the new primary never got. Say so, with the bytes, once per occurrence.
    for i in &instances_status {
        let Some(bytes) = i.diverged_bytes else {
            continue;
        };
        let before = previous
            .instances_status
            .iter()
            .find(|p| p.name == i.name)
            .and_then(|p| p.diverged_bytes);
        if before != Some(bytes) {
            events.push(PlannedEvent {
                type_: EventType::Warning,
                reason: EventReason::FullResyncAfterFailover,
                note: format!(
                    "{} held {bytes} bytes its upstream's new primary never received: it resynchronises in full and those writes are not on the new primary (it never had them); the ones that write keys are saved first (a Salvaged Event, docs/salvage.md), nothing is replayed",
                    i.name
                ),
            });
        }
    }

    // What a pod saved before a resync discarded it: once per salvage (its file).
    for i in &instances_status {
        let Some(s) = &i.salvage else {
            continue;
        };
        let before = previous
            .instances_status
            .iter()
            .find(|p| p.name == i.name)
            .and_then(|p| p.salvage.as_ref())
            .map(|p| p.file.as_str());
        if before != Some(s.file.as_str()) {
            events.push(PlannedEvent {
                type_: EventType::Warning,
                reason: EventReason::Salvaged,
                note: salvage_note(&i.name, s),
            });
        }
    }

    // A password rotation that reached every pod: what the user waits for between its steps.
    events.extend(password_rotation_event(
        &previous.instances_status,
        &instances_status,
    ));

    // A pod that followed an upstream under another history because it holds the same data (a
    // source that restarted with its data): once per upstream history.
    for (name, pod) in view.pods {
        let Some(d) = pod
            .report
            .as_ref()
            .and_then(|r| r.same_data_resync.as_ref())
        else {
            continue;
        };
        let before = previous
            .instances_status
            .iter()
            .find(|p| &p.name == name)
            .and_then(|p| p.same_data_resync.as_deref());
        if before != Some(d.upstream.replid.as_str()) {
            events.push(PlannedEvent {
                type_: EventType::Warning,
                reason: EventReason::SourceRestarted,
                note: format!(
                    "{name} resynchronised in full from {} although it came back under another replication history ({}@{}, {} keys; {name} held {}@{}, {} keys): {}, so it is the same data restarted under a new replication id (Redis with appendonly restarts under a new id). What the upstream lost in its restart (with appendfsync everysec, up to its last second of writes) is lost here too",
                    d.upstream.address,
                    short(&d.upstream.replid),
                    d.upstream.offset,
                    d.upstream.keys,
                    short(&d.ours.replid),
                    d.ours.offset,
                    d.ours.keys,
                    d.sample.describe()
                ),
            });
        }
    }

    // A pod that refuses its upstream's unrelated history keeps its data and replicates
    // nothing until the user accepts: say so once, when it begins.
    for (name, pod) in view.pods {
        let Some(r) = pod.report.as_ref() else {
            continue;
        };
        let Some(b) = &r.history_blocked else {
            continue;
        };
        let now = r.error.clone().or_else(|| r.link_error.clone());
        let before = previous
            .instances_status
            .iter()
            .find(|p| &p.name == name)
            .and_then(|p| p.error.clone());
        if before != now {
            events.push(PlannedEvent {
                type_: EventType::Warning,
                reason: EventReason::UnrelatedHistory,
                note: blocked_message(view, name, b),
            });
        }
    }

    // The primary: the leader once it confirmed; until then the last confirmed one (a failover
    // in progress still has a known former primary), except in replica mode, which has none.
    let current_primary = match target {
        Target::Replica(..) => None,
        Target::Promoted(_) if !promotion_done(view) && !leader_confirmed => None,
        _ if leader_confirmed => Some(leader.clone()),
        _ => previous.current_primary.clone(),
    };
    if let (Some(old), Some(new)) = (&previous.current_primary, &current_primary)
        && old != new
    {
        events.push(PlannedEvent {
            type_: EventType::Warning,
            reason: EventReason::Failover,
            note: match (lead.decider, lead.sentinel_epoch) {
                (Decider::Sentinel, Some(epoch)) => format!(
                    "Primary changed: {old} -> {new} (elected by the Sentinels, config epoch {epoch})"
                ),
                _ => format!("Primary changed: {old} -> {new} (failover decided by the operator)"),
            },
        });
    }
    if let Some(c) = &lead.available {
        wanted.push(c.clone());
    }

    let replicating_from = match target {
        Target::Replica(source, _) => Some(source.display_name()),
        Target::Promoted(_) if leader_confirmed || promotion_done(view) => {
            Some("promoted".to_string())
        }
        Target::Promoted(source) => Some(source.display_name()),
        Target::Standalone => None,
    };

    // ReplicaMode: the user-facing reasons and messages (docs/install.md), verbatim, plus the
    // in-between states.
    let had_replica_mode = conditions::find(&previous.conditions, cond::REPLICA_MODE).is_some();
    match target {
        Target::Replica(source, _) if demoting => wanted.push(Desired {
            type_: cond::REPLICA_MODE,
            status: Status::True,
            reason: cond::REASON_DEMOTING,
            message: format!(
                "Returning to replicating from {} ({}:{}): writes made on this cluster since it was promoted are discarded by the resync (its primary saves them to its volume first: a Salvaged Event, docs/salvage.md), unless that source replicates this cluster (a planned switchover: then this cluster's primary keeps them, read-only, and waits for the source to be promoted with status.demotionToken)",
                source.display_name(),
                source.host,
                source.port
            ),
        }),
        Target::Replica(source, _) => wanted.push(Desired {
            type_: cond::REPLICA_MODE,
            status: Status::True,
            reason: cond::REASON_ENABLED,
            message: cond::replicating_message(&source.display_name(), &source.host, source.port),
        }),
        Target::Promoted(source) if leader_confirmed || promotion_done(view) => {
            wanted.push(Desired {
                type_: cond::REPLICA_MODE,
                status: Status::False,
                reason: cond::REASON_PROMOTED,
                message: cond::promoted_message(&source.display_name()),
            });
            let was = conditions::find(&previous.conditions, cond::REPLICA_MODE);
            if was.is_none_or(|c| c.reason != cond::REASON_PROMOTED) {
                let risk = data_at_risk(view, target, &leader)
                    .map(|r| format!("; data at risk when it was promoted: {}", r.message))
                    .unwrap_or_default();
                events.push(PlannedEvent {
                    type_: EventType::Normal,
                    reason: EventReason::Promoted,
                    note: format!(
                        "{leader} is primary and accepts writes; cluster promoted to standalone (former source: {}){risk}",
                        source.display_name()
                    ),
                });
            }
        }
        Target::Promoted(source) => wanted.push(Desired {
            type_: cond::REPLICA_MODE,
            status: Status::True,
            reason: cond::REASON_PROMOTING,
            message: if let Some(choice) = lead.promotion.as_ref().filter(|c| c.wait) {
                if choice.condition.reason == cond::REASON_WAITING_FOR_TOKEN {
                    format!(
                        "Promotion requested (planned switchover): waiting for a pod to hold the promotion token (see condition {}; source: {})",
                        cond::SWITCHOVER,
                        source.display_name()
                    )
                } else if choice.condition.reason == cond::REASON_NEEDS_CHOICE {
                    format!(
                        "Promotion requested: no pod holds every other pod's data, waiting for the choice of the pod to promote (see condition {}; source: {})",
                        cond::PROMOTION_TARGET,
                        source.display_name()
                    )
                } else {
                    format!(
                        "Promotion requested: waiting for every pod to report what it holds before choosing the pod to promote (see condition {}; source: {})",
                        cond::PROMOTION_TARGET,
                        source.display_name()
                    )
                }
            } else if leader_syncing {
                format!(
                    "Promotion requested: waiting for {leader} to finish its sync from {} first (promoting a replica in the middle of a full sync would lose data)",
                    source.display_name()
                )
            } else {
                format!(
                    "Promotion requested: waiting for {leader} to report role primary (source: {})",
                    source.display_name()
                )
            },
        }),
        Target::Standalone if had_replica_mode || view.spec.replica_mode.is_some() => {
            wanted.push(Desired {
                type_: cond::REPLICA_MODE,
                status: Status::False,
                reason: cond::REASON_DISABLED,
                message: "Replica mode is disabled: the cluster runs standalone".into(),
            })
        }
        Target::Standalone => {}
    }

    // PromotionTarget: which pod a promotion makes primary, until it is done.
    let keep_promotion_target = matches!(target, Target::Promoted(_))
        && lead.promotion.is_none()
        && !leader_confirmed
        && !promotion_done(view);
    if let Some(choice) = &lead.promotion {
        wanted.push(choice.condition.clone());
    }

    // Switchover: a planned switchover, on either side; on the demoted side, held while its
    // Sentinels fail over.
    let switchover = match self::target(view.spec) {
        Target::Replica(source, _)
            if held_for_sentinels(view, self::target(view.spec)).is_some() =>
        {
            Some(sentinel_hold_condition(view, source))
        }
        _ => switchover_condition(view, target, &leader, leader_confirmed),
    };
    if let Some(c) = &switchover
        && c.status == Status::False
        && conditions::find(&previous.conditions, cond::SWITCHOVER)
            .is_none_or(|p| p.reason != c.reason)
    {
        events.push(PlannedEvent {
            type_: EventType::Warning,
            reason: EventReason::SwitchoverBlocked,
            note: c.message.clone(),
        });
    }
    wanted.extend(switchover.clone());
    let demotion_token = match target {
        Target::Replica(..) => demoted_pod(view)
            .map(|(pod, t)| (Some(pod), t.to_string()))
            .or_else(|| previous.demotion_token.clone().map(|t| (None, t))),
        _ => None,
    };
    if let Some((Some(pod), token)) = &demotion_token
        && previous.demotion_token.as_ref() != Some(token)
    {
        events.push(PlannedEvent {
            type_: EventType::Normal,
            reason: EventReason::Demoted,
            note: format!(
                "{pod} stopped taking writes for a planned switchover: promotion token {token} (status.demotionToken); promote the source with it (spec.replicaMode.promotionToken) to complete the switchover"
            ),
        });
    }
    let demotion_token = demotion_token.map(|(_, t)| t);

    // FormerSourceWritable: after a promotion, whether the region we replicated from still
    // takes writes (both sides writable).
    if let (Target::Promoted(source), Some(probe)) = (target, &extra.former_source)
        && (leader_confirmed || promotion_done(view))
    {
        let name = format!(
            "The former source {} ({}:{})",
            source.display_name(),
            source.host,
            source.port
        );
        let c = match probe {
            FormerSource::Writable(seen) => Desired {
                type_: cond::FORMER_SOURCE_WRITABLE,
                status: Status::True,
                reason: cond::REASON_ACCEPTS_WRITES,
                message: format!(
                    "{name} accepts writes ({seen}) while this cluster is promoted: both regions take writes and their data diverge. Stop the writes there (fence it, or make it a replica of this cluster); what is written there is not on this cluster"
                ),
            },
            FormerSource::NotWritable(seen) => Desired {
                type_: cond::FORMER_SOURCE_WRITABLE,
                status: Status::False,
                reason: cond::REASON_REFUSES_WRITES,
                message: format!("{name} accepts no writes ({seen})"),
            },
            FormerSource::Unreachable(why) => Desired {
                type_: cond::FORMER_SOURCE_WRITABLE,
                status: Status::Unknown,
                reason: cond::REASON_NOT_REACHABLE,
                message: format!(
                    "{name} does not answer ({why}); it is asked again at every reconcile while this cluster is promoted"
                ),
            },
        };
        let was = conditions::find(&previous.conditions, cond::FORMER_SOURCE_WRITABLE);
        let was_true = was.is_some_and(|w| w.status == Status::True.as_str());
        if c.status == Status::True && !was_true {
            events.push(PlannedEvent {
                type_: EventType::Warning,
                reason: EventReason::FormerSourceWritable,
                note: c.message.clone(),
            });
        } else if c.status == Status::False && was_true {
            events.push(PlannedEvent {
                type_: EventType::Normal,
                reason: EventReason::FormerSourceNotWritable,
                note: c.message.clone(),
            });
        }
        wanted.push(c);
    }

    // SourceLinkUp: a replica cluster must not look healthy while it replicates nothing.
    if let Target::Replica(source, _) = target
        && !demoting
    {
        let external: Vec<_> = desired
            .iter()
            .filter(|(_, t)| {
                t.upstream
                    .as_ref()
                    .is_some_and(|u| u.kind == UpstreamKind::External)
            })
            .map(|(name, _)| name)
            .collect();
        let blocked: Vec<String> = external
            .iter()
            .filter_map(|name| {
                let b = view.pods[*name].report.as_ref()?.history_blocked.as_ref()?;
                Some(blocked_message(view, name, b))
            })
            .collect();
        let down: Vec<String> = external
            .iter()
            .filter_map(|name| {
                let r = view.pods[*name].report.as_ref();
                match r {
                    Some(r) if r.history_blocked.is_some() => None,
                    Some(r) if r.master_link_up => None,
                    Some(r) => Some(format!(
                        "{name}: {}",
                        r.link_error.clone().unwrap_or_else(|| "link down".into())
                    )),
                    None => Some(format!("{name}: no report from its instance manager")),
                }
            })
            .collect();
        let endpoint = format!("{}:{}", source.host, source.port);
        let reported = external
            .iter()
            .any(|name| view.pods[*name].report.is_some());
        let cond = if external.is_empty() || !reported {
            Desired {
                type_: cond::SOURCE_LINK_UP,
                status: Status::Unknown,
                reason: cond::REASON_NO_REPORTS,
                message: "No instance manager has reported on the link to the source yet".into(),
            }
        } else if !blocked.is_empty() {
            let mut why = blocked;
            why.extend(down);
            Desired {
                type_: cond::SOURCE_LINK_UP,
                status: Status::False,
                reason: cond::REASON_UNRELATED_HISTORY,
                message: format!(
                    "Link to {} ({endpoint}) is down: {}",
                    source.display_name(),
                    why.join("; ")
                ),
            }
        } else if down.is_empty() {
            Desired {
                type_: cond::SOURCE_LINK_UP,
                status: Status::True,
                reason: cond::REASON_LINK_UP,
                message: format!(
                    "{} of {} pods linked to {} ({endpoint})",
                    external.len(),
                    external.len(),
                    source.display_name()
                ),
            }
        } else {
            Desired {
                type_: cond::SOURCE_LINK_UP,
                status: Status::False,
                reason: cond::REASON_LINK_DOWN,
                message: format!(
                    "Link to {} ({endpoint}) is down: {}",
                    source.display_name(),
                    down.join("; ")
                ),
            }
        };
        let was = conditions::find(&previous.conditions, cond::SOURCE_LINK_UP);
        let flipped_to = |s: Status| cond.status == s && was.is_none_or(|c| c.status != s.as_str());
        // Warn when a link that was up goes down; a cluster still making its first sync is
        // False in the condition (with the reason per pod) but that is no incident.
        if cond.status == Status::False && was.is_some_and(|c| c.status == Status::True.as_str()) {
            events.push(PlannedEvent {
                type_: EventType::Warning,
                reason: EventReason::SourceLinkDown,
                note: cond.message.clone(),
            });
        } else if flipped_to(Status::True) && was.is_some() {
            events.push(PlannedEvent {
                type_: EventType::Normal,
                reason: EventReason::SourceLinkUp,
                note: cond.message.clone(),
            });
        }
        wanted.push(cond);
    }

    // Ready: every desired pod exists and serves data as its role requires.
    let expected = view.spec.instances.max(0);
    let not_ready: Vec<String> = instances_status
        .iter()
        .filter(|i| !i.ready)
        .map(|i| match &i.error {
            Some(e) => format!("{} ({e})", i.name),
            None => i.name.clone(),
        })
        .collect();
    wanted.push(if ready_instances >= expected && not_ready.is_empty() {
        Desired {
            type_: cond::READY,
            status: Status::True,
            reason: cond::REASON_ALL_INSTANCES_READY,
            message: format!("{ready_instances}/{expected} instances ready"),
        }
    } else {
        let mut message = format!("{ready_instances}/{expected} instances ready");
        if !not_ready.is_empty() {
            message.push_str(&format!("; not ready: {}", not_ready.join(", ")));
        }
        Desired {
            type_: cond::READY,
            status: Status::False,
            reason: cond::REASON_INSTANCES_NOT_READY,
            message,
        }
    });

    // Keep conditions other code owns (ConfigurationValid is set by the reconciler).
    let mut merged = conditions::merge(&previous.conditions, wanted, view.generation, &view.now);
    for c in &previous.conditions {
        if c.type_ == cond::CONFIGURATION_VALID
            || (c.type_ == cond::PROMOTION_TARGET && keep_promotion_target)
        {
            merged.push(c.clone());
        }
    }
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));

    let status = RedisClusterStatus {
        observed_generation: view.generation,
        conditions: merged,
        current_primary,
        replicating_from,
        instances: view.pods.len() as i32,
        ready_instances,
        instances_status,
        accepted_restart: lead.accept_restart.as_ref().map(|a| {
            redis_cluster_api::AcceptedRestart {
                pod: a.pod.clone(),
                replication_id: a.replid.clone(),
                former_replication_id: a.former.clone(),
            }
        }),
        data_at_risk: data_at_risk(view, target, &leader),
        demotion_token,
        used_promotion_token: switchover
            .as_ref()
            .filter(|c| {
                c.reason == cond::REASON_TOKEN_REACHED && (leader_confirmed || promotion_done(view))
            })
            .and_then(|_| spec_token(view).map(|t| t.to_string()))
            .or(previous.used_promotion_token.clone()),
        sentinels_failing_over: sentinels_failing_over(view).then_some(true),
    };
    (status, events)
}

/// `mode: sentinel`: an instance manager reads from the Sentinels that they flag the primary
/// down or are failing it over.
fn sentinels_failing_over(view: &ClusterView) -> bool {
    view.spec.mode == redis_cluster_api::ClusterMode::Sentinel
        && view
            .pods
            .values()
            .filter_map(|p| p.report.as_ref())
            .any(|r| r.sentinel_failing_over == Some(true))
}

/// A sentinel-mode cluster told to replicate a source (a planned switchover's demotion, or a
/// return to replica mode) while its Sentinels fail its primary over is not demoted yet: the
/// primary that stops taking writes, and whose position becomes the promotion token, must be
/// the one they settle on, and their failover must not be cut short by their scale-down. The
/// target kept meanwhile: what the cluster was (primary on its own, or promoted). None when
/// nothing is held: not a demotion, the pods already replicate the source (no pod's topology
/// is handed to the Sentinels any more), or no failover in progress.
fn held_for_sentinels<'a>(view: &ClusterView<'a>, target: Target<'a>) -> Option<Target<'a>> {
    let Target::Replica(source, _) = target else {
        return None;
    };
    let handed = view
        .pods
        .values()
        .any(|p| p.published.as_ref().is_some_and(|t| t.sentinel.is_some()));
    (handed && sentinels_failing_over(view)).then(|| {
        if promotion_done(view) {
            Target::Promoted(source)
        } else {
            Target::Standalone
        }
    })
}

/// `Switchover=False/SentinelFailoverInProgress` while [`held_for_sentinels`].
fn sentinel_hold_condition(view: &ClusterView, source: &ReplicaSourceSpec) -> Desired {
    Desired {
        type_: cond::SWITCHOVER,
        status: Status::False,
        reason: cond::REASON_SENTINEL_FAILOVER_IN_PROGRESS,
        message: format!(
            "The Sentinels are failing over {}'s primary (they flag it down or a failover is in progress): replicating {} waits until they are done, so that the primary that stops taking writes (its position is the promotion token) is the one they settle on. Nothing changed yet: this cluster still takes writes, and its Sentinels keep running",
            view.name,
            source.display_name()
        ),
    }
}

/// `PasswordRotation` (docs/password-rotation.md), when a rotation step reached every pod: all
/// now report the same passwords, and before, some pod reported the other state (not merely
/// nothing: a pod whose instance manager did not answer for a moment is no transition).
pub fn password_rotation_event(
    before: &[redis_cluster_api::InstanceStatus],
    now: &[redis_cluster_api::InstanceStatus],
) -> Option<PlannedEvent> {
    const BOTH: &str = "password+previousPassword";
    const ONE: &str = "password";
    let first = now.first()?.passwords.as_deref()?;
    if !now.iter().all(|i| i.passwords.as_deref() == Some(first)) {
        return None;
    }
    let other = if first == BOTH { ONE } else { BOTH };
    if !before.iter().any(|i| i.passwords.as_deref() == Some(other)) {
        return None;
    }
    let note = if first == BOTH {
        format!(
            "Every pod ({}) accepts both the auth Secret's password and its previousPassword: move the clients to the new password, then remove previousPassword from the Secret to retire the old one (docs/password-rotation.md)",
            now.len()
        )
    } else {
        format!(
            "Every pod ({}) accepts only the auth Secret's password: the previous password is retired",
            now.len()
        )
    };
    Some(PlannedEvent {
        type_: EventType::Normal,
        reason: EventReason::PasswordRotation,
        note,
    })
}

/// The `Salvaged` Event's note.
pub fn salvage_note(pod: &str, s: &redis_cluster_api::report::Salvage) -> String {
    let what = match (s.kind.as_str(), s.from_offset) {
        ("tail", Some(from)) => format!(
            "the {} bytes of replication history {} from offset {from} to {} that {} never received: {} commands writing {} keys",
            s.bytes,
            short(&s.replid),
            s.to_offset,
            s.upstream,
            s.commands.unwrap_or(0),
            s.keys
        ),
        _ => format!(
            "a snapshot of its dataset ({} keys, {} bytes of RDB, history {} at offset {}): the writes {} never received were no longer in its replication backlog, or its data was replaced by another history",
            s.keys,
            s.bytes,
            short(&s.replid),
            s.to_offset,
            s.upstream
        ),
    };
    format!(
        "{pod} saved {what}, before resynchronising from {} (replication id {}). File {} in its instance-manager container; nothing is replayed: inspect and replay it as docs/salvage.md says",
        s.upstream,
        short(&s.upstream_replid),
        s.file
    )
}
