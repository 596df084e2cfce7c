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
//! - `mode: sentinel` with its own primary: the Sentinels. The operator follows their election
//!   (read by the instance managers from the Sentinels themselves) and publishes it;
//! - otherwise the operator: the primary stays where it is until it has been unavailable for
//!   `failover.primaryUnavailableSeconds` and can be proven unable to take writes; then it is
//!   fenced and the replica with the highest replication offset is promoted.
//!
//! Safety rules, in order of importance:
//! 1. At most one pod is published as primary, and a failover publishes the fence of the old
//!    primary before the promotion of the new one, and only once the old primary is proven not
//!    to accept writes (its Redis container is not running, its pod is gone, or it reports
//!    itself fenced or a replica). A primary that merely does not answer is never replaced.
//! 2. Leader first: while the leader is being made primary, the other pods keep their current
//!    upstream until the leader reports, at the published epoch, that it is primary. Only then
//!    are they re-pointed to it.
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
use redis_cluster_api::{RedisClusterSpec, RedisClusterStatus, ReplicaSourceSpec, ReplicaTopology};

use crate::conditions::{self, Desired, Status};
use crate::events::{EventReason, EventType, PlannedEvent};

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
}

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
    /// The pod labelled primary (the `-leader` Service's endpoint).
    pub leader: String,
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

fn decider(view: &ClusterView, target: Target) -> Decider {
    let own_primary = match target {
        Target::Replica(..) => return Decider::Spec,
        Target::Standalone => true,
        Target::Promoted(_) => handed_to_sentinels(view, target),
    };
    if own_primary && view.spec.sentinels_active() {
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
fn handed_to_sentinels(view: &ClusterView, target: Target) -> bool {
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
    let operator = Leadership {
        leader: recorded_primary(view),
        decider: Decider::Operator,
        failover: None,
        available: None,
        sentinel_epoch: None,
    };
    view.pods.iter().all(|(name, pod)| {
        names::ordinal_of(view.name, name).is_none()
            || confirmed(Some(pod), &desired_for(view, target, &operator, name))
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

/// Proof that `pod` cannot accept a write now (and comes back unable to).
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

/// The replica to promote: highest replication offset, not in a sync; lowest ordinal on ties.
fn best_replica(view: &ClusterView, except: &str) -> Option<(String, i64)> {
    view.pods
        .iter()
        .filter(|(name, _)| name.as_str() != except)
        .filter_map(|(name, p)| {
            let r = p.report.as_ref()?;
            (r.role == Some(ObservedRole::Replica) && !r.sync_in_progress && !r.fenced)
                .then_some((name, r.repl_offset?))
        })
        .filter(|(_, offset)| *offset > 0)
        .max_by_key(|(name, offset)| {
            (
                *offset,
                std::cmp::Reverse(names::ordinal_of(view.name, name).unwrap_or(u32::MAX)),
            )
        })
        .map(|(name, offset)| (name.clone(), offset))
}

/// A failover the operator decided in this pass.
#[derive(Clone, Debug, PartialEq)]
struct Failover {
    from: String,
    to: String,
    offset: i64,
    proof: String,
    unavailable_for: i64,
}

/// Who leads, and what the `PrimaryAvailable` condition says.
struct Leadership {
    leader: String,
    decider: Decider,
    failover: Option<Failover>,
    available: Option<Desired>,
    sentinel_epoch: Option<u64>,
}

fn seconds_between(from: &Time, to: &Time) -> i64 {
    to.0.as_second() - from.0.as_second()
}

fn leadership(view: &ClusterView, target: Target) -> Leadership {
    let decider = decider(view, target);
    let pod0 = names::pod_name(view.name, 0);
    let mut out = Leadership {
        leader: pod0.clone(),
        decider,
        failover: None,
        available: None,
        sentinel_epoch: None,
    };
    let recorded = recorded_primary(view);
    match decider {
        Decider::Spec => return out,
        Decider::Sentinel => {
            match sentinel_choice(view) {
                Some((pod, epoch)) => {
                    out.leader = pod;
                    out.sentinel_epoch = Some(epoch);
                }
                None => out.leader = recorded,
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
    // A cluster that never had a confirmed primary is still being created: nothing to fail
    // over from (pods that take a while to schedule are not an incident).
    if view.previous.is_none_or(|s| s.current_primary.is_none()) {
        return out;
    }
    let settings = view.spec.failover_settings();
    let why = match availability(view, &out.leader) {
        Ok(()) => {
            out.available = Some(Desired {
                type_: cond::PRIMARY_AVAILABLE,
                status: Status::True,
                reason: cond::REASON_AVAILABLE,
                message: format!("{} answers", out.leader),
            });
            return out;
        }
        Err(why) => why,
    };
    let was = view
        .previous
        .and_then(|s| conditions::find(&s.conditions, cond::PRIMARY_AVAILABLE))
        .filter(|c| c.status == Status::False.as_str());
    let unavailable_for = was
        .map(|c| seconds_between(&c.last_transition_time, &view.now))
        .unwrap_or(0);
    let delay = i64::from(settings.primary_unavailable_seconds.max(1));
    let (reason, message) = if view.spec.instances <= 1 {
        (
            cond::REASON_UNAVAILABLE,
            format!("{why}; a single-instance cluster has no replica to fail over to"),
        )
    } else if !settings.enabled {
        (
            cond::REASON_UNAVAILABLE,
            format!("{why}; automatic failover is disabled (spec.failover.enabled: false)"),
        )
    } else if unavailable_for < delay {
        (
            cond::REASON_UNAVAILABLE,
            format!("{why}; failover after {delay}s unavailable (so far {unavailable_for}s)"),
        )
    } else {
        match (
            cannot_write(view, &out.leader),
            best_replica(view, &out.leader),
        ) {
            (Some(proof), Some((to, offset))) => {
                out.failover = Some(Failover {
                    from: out.leader.clone(),
                    to: to.clone(),
                    offset,
                    proof,
                    unavailable_for,
                });
                (
                    cond::REASON_FAILING_OVER,
                    format!("{why}; failing over to {to} (replication offset {offset})"),
                )
            }
            (None, _) => (
                cond::REASON_FAILOVER_BLOCKED,
                format!(
                    "{why}; failover blocked: nothing proves {} stopped accepting writes (its container may still run, e.g. on an unreachable node). Deleting the pod lets the failover proceed",
                    out.leader
                ),
            ),
            (Some(_), None) => (
                cond::REASON_FAILOVER_BLOCKED,
                format!(
                    "{why}; failover blocked: no replica is in sync with a known replication offset"
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
    if let Some(f) = &out.failover {
        out.leader = f.to.clone();
    }
    out
}

/// The topology pod `name` should have, with epoch 0 (assigned when published).
fn desired_for(
    view: &ClusterView,
    target: Target,
    lead: &Leadership,
    name: &str,
) -> DesiredTopology {
    let is_leader = name == lead.leader;
    let fencing = lead.failover.as_ref().is_some_and(|f| f.from == name);
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
        accept_history: None,
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

/// Decide the next step. See the module documentation for the rules.
pub fn plan(view: &ClusterView) -> Plan {
    let target = target(view.spec);
    let lead = leadership(view, target);
    let leader = lead.leader.clone();
    let sentinel = lead.decider == Decider::Sentinel;
    let mut desired: BTreeMap<String, DesiredTopology> = BTreeMap::new();
    for name in view.pods.keys() {
        if names::ordinal_of(view.name, name).is_some() {
            desired.insert(name.clone(), desired_for(view, target, &lead, name));
        }
    }
    let leader_want = desired_for(view, target, &lead, &leader);
    let leader_pod = view.pods.get(&leader);
    let leader_published_role = leader_pod
        .and_then(|p| p.published.as_ref())
        .map(|p| p.role);
    let leader_observed_role = observed_role(leader_pod.and_then(|p| p.report.as_ref()));
    let leader_confirmed = confirmed(leader_pod, &leader_want);
    // Rule 2: while the leader is becoming primary, nobody else moves. Under Sentinel the pods
    // only follow an election that already happened, so there is nothing to sequence.
    let hold_others = leader_want.role == Role::Primary && !leader_confirmed && !sentinel;
    // Demoting: the leader was made primary by us and has not yet applied its return to replica.
    // A fresh pod also reports `master` (Redis starts that way) but has applied nothing yet.
    let leader_applied_something = leader_pod
        .and_then(|p| p.report.as_ref())
        .is_some_and(|r| r.applied_epoch.is_some());
    // Any pod counts, not only the leader: after a failover the primary may be another pod.
    let demoting = leader_want.role == Role::Replica
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

    // The write order: the pod being fenced, the leader, then the others by ordinal.
    let fenced_pod = lead.failover.as_ref().map(|f| f.from.clone());
    let mut order: Vec<String> = desired.keys().cloned().collect();
    order.sort_by_key(|p| {
        (
            Some(p) != fenced_pod.as_ref(),
            p != &leader,
            names::ordinal_of(view.name, p),
        )
    });

    // Rule 3: one epoch above everything published.
    let mut next_epoch = view
        .pods
        .values()
        .filter_map(|p| p.published.as_ref().map(|t| t.epoch))
        .max()
        .unwrap_or(0)
        + 1;
    let mut publish = BTreeMap::new();
    let mut events = Vec::new();
    if let Some(f) = &lead.failover {
        events.push(PlannedEvent {
            type_: EventType::Warning,
            reason: EventReason::FailingOver,
            note: format!(
                "{} unavailable for {}s ({}): fencing it and promoting {} (highest replication offset, {})",
                f.from, f.unavailable_for, f.proof, f.to, f.offset
            ),
        });
    }
    // A blocked failover is warned once, when the condition turns to it.
    if let Some(c) = lead
        .available
        .as_ref()
        .filter(|c| c.reason == cond::REASON_FAILOVER_BLOCKED)
    {
        let was = view
            .previous
            .and_then(|s| conditions::find(&s.conditions, cond::PRIMARY_AVAILABLE));
        if was.is_none_or(|w| w.reason != cond::REASON_FAILOVER_BLOCKED) {
            events.push(PlannedEvent {
                type_: EventType::Warning,
                reason: EventReason::FailoverBlocked,
                note: c.message.clone(),
            });
        }
    }
    for name in &order {
        let want = &desired[name];
        let current = view.pods[name].published.as_ref();
        if current.is_some_and(|c| same_shape(c, want)) {
            continue;
        }
        if name != &leader && hold_others && want.role != Role::Fenced {
            continue;
        }
        // Never promote a replica in the middle of a full sync: it would serve its old (maybe
        // empty) dataset as the new primary. Wait, and say why in the condition.
        if name == &leader && promoting && leader_syncing && !sentinel {
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
                events.push(PlannedEvent {
                    type_: EventType::Normal,
                    reason: EventReason::Promoting,
                    note: format!(
                        "Promoting {leader} to standalone primary (REPLICAOF NO ONE); former source: {}",
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
                        "Returning to replicating from {} ({}:{}): writes made on this cluster since it was promoted are discarded",
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

    let role_labels = desired
        .keys()
        .map(|name| {
            (
                name.clone(),
                if name == &leader {
                    ROLE_PRIMARY
                } else {
                    ROLE_REPLICA
                },
            )
        })
        .collect();

    let (status, status_events) = status(
        view,
        target,
        &lead,
        &desired,
        leader_confirmed,
        demoting,
        leader_syncing,
    );
    events.extend(status_events);
    let converged = desired
        .iter()
        .all(|(name, want)| confirmed(view.pods.get(name), want));
    Plan {
        in_progress: !publish.is_empty()
            || !converged
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

fn status(
    view: &ClusterView,
    target: Target,
    lead: &Leadership,
    desired: &BTreeMap<String, DesiredTopology>,
    leader_confirmed: bool,
    demoting: bool,
    leader_syncing: bool,
) -> (RedisClusterStatus, Vec<PlannedEvent>) {
    let leader = lead.leader.clone();
    let previous = view.previous.cloned().unwrap_or_default();
    let mut events = Vec::new();
    let mut wanted: Vec<Desired> = Vec::new();

    // Per-instance section, straight from the reports.
    let instances_status: Vec<_> = view
        .pods
        .iter()
        .map(|(name, pod)| {
            let r = pod.report.as_ref();
            redis_cluster_api::InstanceStatus {
                name: name.clone(),
                role: r.and_then(|r| r.role).map(|role| match role {
                    ObservedRole::Primary => "primary".to_string(),
                    ObservedRole::Replica => "replica".to_string(),
                }),
                upstream: r.and_then(|r| r.upstream.clone()),
                master_link_up: r
                    .filter(|r| r.role == Some(ObservedRole::Replica))
                    .map(|r| r.master_link_up),
                replication_offset: r.and_then(|r| r.repl_offset),
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
                    "{} held {bytes} bytes its upstream's new primary never received: it resynchronises in full and those writes are lost (the new primary never had them either)",
                    i.name
                ),
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
                "Returning to replicating from {} ({}:{}): writes made on this cluster since it was promoted are discarded",
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
                events.push(PlannedEvent {
                    type_: EventType::Normal,
                    reason: EventReason::Promoted,
                    note: format!(
                        "{leader} is primary and accepts writes; cluster promoted to standalone (former source: {})",
                        source.display_name()
                    ),
                });
            }
        }
        Target::Promoted(source) => wanted.push(Desired {
            type_: cond::REPLICA_MODE,
            status: Status::True,
            reason: cond::REASON_PROMOTING,
            message: if leader_syncing {
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
        let down: Vec<String> = external
            .iter()
            .filter_map(|name| {
                let r = view.pods[*name].report.as_ref();
                match r {
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
        if c.type_ == cond::CONFIGURATION_VALID {
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
    };
    (status, events)
}
