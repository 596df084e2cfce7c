//! Where promotion, demotion and every pod's replication topology are decided.
//!
//! The plan is a pure function of the spec and what was observed: each pod's published topology
//! annotation and its instance manager's report. It keeps no memory of its own, so an operator
//! that dies at any line and restarts derives the same next step from the same observations.
//!
//! Safety rules, in order of importance:
//! 1. Only the designated leader (pod 0) is ever published as primary. No other pod is ever told
//!    to accept writes, so this cluster can never have two writable primaries by our doing.
//! 2. Leader first: while the leader is being made primary, the other pods keep their current
//!    upstream (the source keeps feeding them) until the leader reports, at the published epoch,
//!    that it is primary. Only then are they re-pointed to it.
//! 3. Epochs only grow: a changed topology is published with an epoch above every epoch
//!    currently published in the cluster, so an instance manager never applies a stale one.
//! 4. Only what changed is published; an unchanged cluster yields an empty plan.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use redis_cluster_api::conditions as names;
use redis_cluster_api::labels::{self, ROLE_PRIMARY, ROLE_REPLICA};
use redis_cluster_api::report::{InstanceReport, ObservedRole};
use redis_cluster_api::topology::{DesiredTopology, FORMAT_VERSION, Role, Upstream, UpstreamKind};
use redis_cluster_api::{RedisClusterSpec, RedisClusterStatus, ReplicaSourceSpec, ReplicaTopology};

use crate::conditions::{self, Desired, Status};

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
}

impl Environment {
    /// The paths the operator's pod template mounts.
    pub fn kubernetes() -> Self {
        Environment {
            auth_password_file: "/etc/redis/auth/password".into(),
            source_password_file: "/etc/redis/source/password".into(),
            redis_port: 6379,
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
}

/// Everything the planner looks at.
#[derive(Clone, Debug)]
pub struct ClusterView<'a> {
    pub name: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a RedisClusterSpec,
    pub previous: Option<&'a RedisClusterStatus>,
    /// Existing data pods by name.
    pub pods: &'a BTreeMap<String, PodView>,
    pub env: &'a Environment,
    pub now: Time,
}

/// `Normal` or `Warning`, as Kubernetes Events have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// An Event to record: every step a user cares about, so `kubectl describe` tells the story.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub type_: EventType,
    pub reason: &'static str,
    pub note: String,
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

/// The topology pod `ordinal` should have, with epoch 0 (assigned when published).
fn desired_for(view: &ClusterView, target: Target, ordinal: u32, leader: &str) -> DesiredTopology {
    let (role, upstream, hidden) = match (target, ordinal) {
        (Target::Standalone | Target::Promoted(_), 0) => (Role::Primary, None, false),
        (Target::Standalone | Target::Promoted(_), _) => {
            (Role::Replica, Some(peer_upstream(view, leader)), false)
        }
        (Target::Replica(_, ReplicaTopology::Cascading), n) if n > 0 => {
            (Role::Replica, Some(peer_upstream(view, leader)), true)
        }
        (Target::Replica(source, _), _) => {
            (Role::Replica, Some(external_upstream(view, source)), true)
        }
    };
    let min_replicas_to_write = match role {
        Role::Primary => view.spec.min_sync_replicas.unwrap_or(0).max(0) as u32,
        Role::Replica => 0,
    };
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
    report.applied_epoch.is_some_and(|e| e >= published.epoch)
        && observed_role(Some(report)) == Some(want.role)
}

/// Decide the next step. See the module documentation for the rules.
pub fn plan(view: &ClusterView) -> Plan {
    let target = target(view.spec);
    let leader = labels::pod_name(view.name, 0);
    let mut desired: BTreeMap<String, DesiredTopology> = BTreeMap::new();
    for name in view.pods.keys() {
        if let Some(ordinal) = labels::ordinal_of(view.name, name) {
            desired.insert(name.clone(), desired_for(view, target, ordinal, &leader));
        }
    }
    let leader_want = desired_for(view, target, 0, &leader);
    let leader_pod = view.pods.get(&leader);
    let leader_published_role = leader_pod
        .and_then(|p| p.published.as_ref())
        .map(|p| p.role);
    let leader_observed_role = observed_role(leader_pod.and_then(|p| p.report.as_ref()));
    let leader_confirmed = confirmed(leader_pod, &leader_want);
    // Rule 2: while the leader is becoming primary, nobody else moves.
    let hold_others = leader_want.role == Role::Primary && !leader_confirmed;
    // Demoting: the leader was made primary by us and has not yet applied its return to replica.
    // A fresh pod also reports `master` (Redis starts that way) but has applied nothing yet.
    let leader_applied_something = leader_pod
        .and_then(|p| p.report.as_ref())
        .is_some_and(|r| r.applied_epoch.is_some());
    let demoting = leader_want.role == Role::Replica
        && (leader_published_role == Some(Role::Primary)
            || (leader_observed_role == Some(Role::Primary) && leader_applied_something));
    let leader_syncing = leader_pod
        .and_then(|p| p.report.as_ref())
        .is_some_and(|r| r.sync_in_progress);
    let promoting = leader_want.role == Role::Primary
        && leader_published_role.is_some_and(|r| r == Role::Replica);

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
    for (name, want) in &desired {
        let current = view.pods[name].published.as_ref();
        if current.is_some_and(|c| same_shape(c, want)) {
            continue;
        }
        if name != &leader && hold_others {
            continue;
        }
        // Never promote a replica in the middle of a full sync: it would serve its old (maybe
        // empty) dataset as the new primary. Wait, and say why in the condition.
        if name == &leader && promoting && leader_syncing {
            continue;
        }
        let mut topology = want.clone();
        topology.epoch = next_epoch;
        next_epoch += 1;
        if name == &leader {
            if let Target::Promoted(source) = target
                && promoting
            {
                events.push(PlannedEvent {
                    type_: EventType::Normal,
                    reason: "Promoting",
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
                    reason: "Demoting",
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
            reason: "TopologyPublished",
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
        in_progress: !publish.is_empty() || !converged,
        publish,
        role_labels,
        status,
        events,
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
    }
}

fn status(
    view: &ClusterView,
    target: Target,
    desired: &BTreeMap<String, DesiredTopology>,
    leader_confirmed: bool,
    demoting: bool,
    leader_syncing: bool,
) -> (RedisClusterStatus, Vec<PlannedEvent>) {
    let leader = labels::pod_name(view.name, 0);
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

    let is_primary_target = matches!(target, Target::Standalone | Target::Promoted(_));
    let current_primary = (is_primary_target && leader_confirmed).then(|| leader.clone());

    let replicating_from = match target {
        Target::Replica(source, _) => Some(source.display_name()),
        Target::Promoted(_) if leader_confirmed => Some("promoted".to_string()),
        Target::Promoted(source) => Some(source.display_name()),
        Target::Standalone => None,
    };

    // ReplicaMode: the spec's reasons and messages, verbatim, plus the in-between states.
    let had_replica_mode = conditions::find(&previous.conditions, names::REPLICA_MODE).is_some();
    match target {
        Target::Replica(source, _) if demoting => wanted.push(Desired {
            type_: names::REPLICA_MODE,
            status: Status::True,
            reason: "Demoting",
            message: format!(
                "Returning to replicating from {} ({}:{}): writes made on this cluster since it was promoted are discarded",
                source.display_name(),
                source.host,
                source.port
            ),
        }),
        Target::Replica(source, _) => wanted.push(Desired {
            type_: names::REPLICA_MODE,
            status: Status::True,
            reason: names::REASON_ENABLED,
            message: names::replicating_message(&source.display_name(), &source.host, source.port),
        }),
        Target::Promoted(source) if leader_confirmed => {
            wanted.push(Desired {
                type_: names::REPLICA_MODE,
                status: Status::False,
                reason: names::REASON_PROMOTED,
                message: names::promoted_message(&source.display_name()),
            });
            let was = conditions::find(&previous.conditions, names::REPLICA_MODE);
            if was.is_none_or(|c| c.reason != names::REASON_PROMOTED) {
                events.push(PlannedEvent {
                    type_: EventType::Normal,
                    reason: "Promoted",
                    note: format!(
                        "{leader} is primary and accepts writes; cluster promoted to standalone (former source: {})",
                        source.display_name()
                    ),
                });
            }
        }
        Target::Promoted(source) => wanted.push(Desired {
            type_: names::REPLICA_MODE,
            status: Status::True,
            reason: "Promoting",
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
                type_: names::REPLICA_MODE,
                status: Status::False,
                reason: "Disabled",
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
                type_: names::SOURCE_LINK_UP,
                status: Status::Unknown,
                reason: "NoReports",
                message: "No instance manager has reported on the link to the source yet".into(),
            }
        } else if down.is_empty() {
            Desired {
                type_: names::SOURCE_LINK_UP,
                status: Status::True,
                reason: "LinkUp",
                message: format!(
                    "{} of {} pods linked to {} ({endpoint})",
                    external.len(),
                    external.len(),
                    source.display_name()
                ),
            }
        } else {
            Desired {
                type_: names::SOURCE_LINK_UP,
                status: Status::False,
                reason: "LinkDown",
                message: format!(
                    "Link to {} ({endpoint}) is down: {}",
                    source.display_name(),
                    down.join("; ")
                ),
            }
        };
        let was = conditions::find(&previous.conditions, names::SOURCE_LINK_UP);
        let flipped_to = |s: Status| cond.status == s && was.is_none_or(|c| c.status != s.as_str());
        // Warn when a link that was up goes down; a cluster still making its first sync is
        // False in the condition (with the reason per pod) but that is no incident.
        if cond.status == Status::False && was.is_some_and(|c| c.status == "True") {
            events.push(PlannedEvent {
                type_: EventType::Warning,
                reason: "SourceLinkDown",
                note: cond.message.clone(),
            });
        } else if flipped_to(Status::True) && was.is_some() {
            events.push(PlannedEvent {
                type_: EventType::Normal,
                reason: "SourceLinkUp",
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
            type_: names::READY,
            status: Status::True,
            reason: "AllInstancesReady",
            message: format!("{ready_instances}/{expected} instances ready"),
        }
    } else {
        let mut message = format!("{ready_instances}/{expected} instances ready");
        if !not_ready.is_empty() {
            message.push_str(&format!("; not ready: {}", not_ready.join(", ")));
        }
        Desired {
            type_: names::READY,
            status: Status::False,
            reason: "InstancesNotReady",
            message,
        }
    });

    // Keep conditions other code owns (ConfigurationValid is set by the reconciler).
    let mut merged = conditions::merge(&previous.conditions, wanted, view.generation, &view.now);
    for c in &previous.conditions {
        if c.type_ == names::CONFIGURATION_VALID {
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
