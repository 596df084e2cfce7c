//! The planner over every (spec, observed state) combination that matters, including operator
//! restarts halfway through a promotion and stale observations.
//!
//! `World` plays the parts the planner does not: it stores published annotations (as the API
//! server would) and instance managers that apply them (as the sidecars would), so a test can
//! drive a cluster step by step and stop it anywhere.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use redis_cluster_api::report::{InstanceReport, ObservedRole};
use redis_cluster_api::topology::{Role, UpstreamKind};
use redis_cluster_api::{RedisClusterSpec, RedisClusterStatus};
use redis_topology::plan::ClusterView;
use redis_topology::{Environment, EventReason, EventType, Plan, PodView, plan};

const DR: &str = "storage: {size: 1Gi}
instances: 3
authSecret: {name: dr-redis-auth}
replicaMode:
  enabled: true
  source:
    host: prod-redis-leader.production.svc.cluster.local
    port: 6379
    clusterName: prod-redis-us-east
    authSecretName: prod-redis-auth
";

fn spec(yaml: &str) -> RedisClusterSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn with_promote(yaml: &str, promote: bool) -> RedisClusterSpec {
    let mut s = spec(yaml);
    s.replica_mode.as_mut().unwrap().promote = promote;
    s
}

struct World {
    name: String,
    spec: RedisClusterSpec,
    pods: BTreeMap<String, PodView>,
    status: Option<RedisClusterStatus>,
    clock: i64,
    env: Environment,
}

impl World {
    fn new(spec: RedisClusterSpec) -> Self {
        let mut pods = BTreeMap::new();
        for i in 0..spec.instances {
            let name = format!("dr-redis-{i}");
            pods.insert(
                name.clone(),
                PodView {
                    address: format!("{name}.dr-redis-headless"),
                    ..Default::default()
                },
            );
        }
        World {
            name: "dr-redis".into(),
            spec,
            pods,
            status: None,
            clock: 1_000,
            env: Environment::kubernetes(),
        }
    }

    /// One reconcile: plan, then store annotations and status as the API server would.
    fn reconcile(&mut self) -> Plan {
        self.clock += 1;
        let view = ClusterView {
            name: &self.name,
            namespace: "production",
            uid: Some("uid-dr-redis"),
            generation: Some(1),
            spec: &self.spec,
            previous: self.status.as_ref(),
            pods: &self.pods,
            env: &self.env,
            now: Time(Timestamp::from_second(self.clock).unwrap()),
        };
        let p = plan(&view);
        for (pod, t) in &p.publish {
            self.pods.get_mut(pod).unwrap().published = Some(t.clone());
        }
        self.status = Some(p.status.clone());
        p
    }

    /// The instance manager of `pod` applies its annotation and reports.
    fn apply(&mut self, pod: &str, link_up: bool) {
        let p = self.pods.get_mut(pod).unwrap();
        let t = p.published.clone().expect("nothing published");
        let role = match t.role {
            Role::Primary => ObservedRole::Primary,
            Role::Replica => ObservedRole::Replica,
            // A fenced pod keeps the role it had.
            Role::Fenced => p
                .report
                .as_ref()
                .and_then(|r| r.role)
                .unwrap_or(ObservedRole::Primary),
        };
        p.report = Some(InstanceReport {
            pod: pod.into(),
            applied_epoch: Some(t.epoch),
            role: Some(role),
            upstream: t
                .upstream
                .as_ref()
                .map(|u| format!("{}:{}", u.host, u.port)),
            master_link_up: role == ObservedRole::Replica && link_up,
            link_error: (!link_up && role == ObservedRole::Replica)
                .then(|| "upstream did not answer within 1s".into()),
            ready: t.role != Role::Fenced && (role == ObservedRole::Primary || link_up),
            fenced: t.role == Role::Fenced,
            repl_offset: Some(1000),
            ..Default::default()
        });
    }

    fn apply_all(&mut self, link_up: bool) {
        let names: Vec<_> = self.pods.keys().cloned().collect();
        for n in names {
            if self.pods[&n].published.is_some() {
                self.apply(&n, link_up);
            }
        }
    }

    fn condition(&self, type_: &str) -> (String, String, String) {
        let c = self
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"));
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    fn published_role(&self, pod: &str) -> Option<Role> {
        self.pods[pod].published.as_ref().map(|t| t.role)
    }

    fn upstream_kind(&self, pod: &str) -> Option<UpstreamKind> {
        self.pods[pod]
            .published
            .as_ref()?
            .upstream
            .as_ref()
            .map(|u| u.kind)
    }

    /// Safety invariant: only pod 0 is ever published as primary.
    fn assert_single_primary(&self) {
        for (name, pod) in &self.pods {
            if pod
                .published
                .as_ref()
                .is_some_and(|t| t.role == Role::Primary)
            {
                assert_eq!(name, "dr-redis-0", "a non-leader was told to be primary");
            }
        }
    }
}

fn reasons(p: &Plan) -> Vec<EventReason> {
    p.events.iter().map(|e| e.reason).collect()
}

#[test]
fn a_new_dr_cluster_replicates_the_source_from_every_pod() {
    let mut w = World::new(spec(DR));
    let p = w.reconcile();
    assert_eq!(p.publish.len(), 3);
    let epochs: Vec<u64> = p.publish.values().map(|t| t.epoch).collect();
    assert_eq!(epochs, [1, 2, 3]);
    for t in p.publish.values() {
        assert_eq!(t.role, Role::Replica);
        let u = t.upstream.as_ref().unwrap();
        assert_eq!(u.kind, UpstreamKind::External);
        assert_eq!(u.host, "prod-redis-leader.production.svc.cluster.local");
        assert_eq!(u.port, 6379);
        assert_eq!(
            u.password_file.as_deref(),
            Some("/etc/redis/source/password")
        );
        assert_eq!(u.cluster_name.as_deref(), Some("prod-redis-us-east"));
        assert!(!u.tls);
        // Never promoted, never listed by the source's Sentinels.
        assert_eq!(t.replica_priority, 0);
        assert!(!t.replica_announced);
    }
    // The designated leader carries role=primary although it is a replica.
    assert_eq!(p.role_labels["dr-redis-0"], "primary");
    assert_eq!(p.role_labels["dr-redis-1"], "replica");
    assert_eq!(
        w.condition("ReplicaMode"),
        (
            "True".into(),
            "Enabled".into(),
            "Cluster is replicating from prod-redis-us-east (prod-redis-leader.production.svc.cluster.local:6379)".into()
        )
    );
    assert_eq!(w.status.as_ref().unwrap().current_primary, None);
    assert_eq!(
        w.status.as_ref().unwrap().replicating_from.as_deref(),
        Some("prod-redis-us-east")
    );
    assert!(p.in_progress);
}

#[test]
fn a_converged_cluster_plans_nothing_and_keeps_its_status() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all(true);
    let settled = w.reconcile();
    assert!(settled.publish.is_empty());
    assert!(!settled.in_progress);
    assert_eq!(w.condition("Ready").0, "True");
    assert_eq!(w.condition("SourceLinkUp").0, "True");
    let before = w.status.clone();
    let again = w.reconcile();
    assert!(again.publish.is_empty());
    assert!(again.events.is_empty(), "{:?}", again.events);
    // Byte-identical status: the reconciler compares and writes nothing.
    assert_eq!(w.status, before);
}

#[test]
fn promotion_chains_the_others_to_the_leader_and_tells_the_leader_last() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all(true);
    w.reconcile();

    // The promotion patch (README.md): promote: true.
    w.spec = with_promote(DR, true);
    let step1 = w.reconcile();
    // One pass: the others re-pointed to the leader first (they replicate it while it still
    // replicates the source, so none runs ahead of it), the leader told to be primary last.
    assert_eq!(step1.order, ["dr-redis-1", "dr-redis-2", "dr-redis-0"]);
    assert_eq!(step1.publish.len(), 3);
    assert_eq!(step1.publish["dr-redis-0"].role, Role::Primary);
    assert_eq!(step1.publish["dr-redis-0"].replica_priority, 100);
    for pod in ["dr-redis-1", "dr-redis-2"] {
        let t = &step1.publish[pod];
        assert_eq!(t.role, Role::Replica);
        let u = t.upstream.as_ref().unwrap();
        assert_eq!(u.kind, UpstreamKind::Peer);
        assert_eq!(u.host, "dr-redis-0.dr-redis-headless");
        assert_eq!(u.password_file.as_deref(), Some("/etc/redis/auth/password"));
        assert!(
            t.epoch < step1.publish["dr-redis-0"].epoch,
            "{pod}: the leader's epoch is the last"
        );
    }
    assert_eq!(
        reasons(&step1)
            .into_iter()
            .filter(|r| *r == EventReason::Promoting)
            .count(),
        1
    );
    assert_eq!(w.condition("ReplicaMode").1, "Promoting");
    assert_eq!(w.status.as_ref().unwrap().current_primary, None);
    w.assert_single_primary();

    // The operator restarts before the leader applied it: same observations, no new step.
    let waiting = w.reconcile();
    assert!(waiting.publish.is_empty());
    assert!(waiting.in_progress);

    // The leader applies and reports primary: promoted.
    w.apply("dr-redis-0", true);
    let step2 = w.reconcile();
    assert!(step2.publish.is_empty(), "{:?}", step2.publish.keys());
    assert_eq!(
        w.condition("ReplicaMode"),
        (
            "False".into(),
            "Promoted".into(),
            "Cluster promoted to standalone (former source: prod-redis-us-east)".into()
        )
    );
    assert_eq!(
        w.status.as_ref().unwrap().current_primary.as_deref(),
        Some("dr-redis-0")
    );
    assert_eq!(
        w.status.as_ref().unwrap().replicating_from.as_deref(),
        Some("promoted")
    );
    assert!(reasons(&step2).contains(&EventReason::Promoted));
    assert!(
        w.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .all(|c| c.type_ != "SourceLinkUp")
    );
    w.assert_single_primary();

    w.apply_all(true);
    let done = w.reconcile();
    assert!(done.publish.is_empty() && done.events.is_empty() && !done.in_progress);
}

#[test]
fn a_stale_report_does_not_count_as_promoted() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all(true);
    w.spec = with_promote(DR, true);
    w.reconcile();
    // The report says primary, but for an older epoch (e.g. a report fetched before the annotation
    // was written, or a pod that was primary in an earlier life).
    let report = w
        .pods
        .get_mut("dr-redis-0")
        .unwrap()
        .report
        .as_mut()
        .unwrap();
    report.role = Some(ObservedRole::Primary);
    report.applied_epoch = Some(1);
    let p = w.reconcile();
    assert!(
        p.publish.is_empty(),
        "others moved on a stale report: {:?}",
        p.publish
    );
    assert_eq!(w.status.as_ref().unwrap().current_primary, None);
    assert_eq!(w.condition("ReplicaMode").1, "Promoting");
}

#[test]
fn promotion_with_the_leader_unreachable_waits_and_says_why() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all(true);
    w.pods.get_mut("dr-redis-0").unwrap().report = None;
    w.spec = with_promote(DR, true);
    w.reconcile();
    for _ in 0..3 {
        let p = w.reconcile();
        assert!(p.publish.is_empty());
    }
    let (status, reason, message) = w.condition("ReplicaMode");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Promoting"));
    assert!(
        message.contains("waiting for dr-redis-0 to report role primary"),
        "{message}"
    );
    assert!(
        w.condition("Ready")
            .2
            .contains("dr-redis-0 (instance manager not reachable)")
    );
    // The others still replicate the source: nothing lost while we wait.
    assert_eq!(w.upstream_kind("dr-redis-2"), Some(UpstreamKind::External));
}

#[test]
fn a_leader_in_the_middle_of_a_full_sync_is_not_promoted() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all(true);
    w.reconcile();
    w.pods
        .get_mut("dr-redis-0")
        .unwrap()
        .report
        .as_mut()
        .unwrap()
        .sync_in_progress = true;
    w.spec = with_promote(DR, true);
    let p = w.reconcile();
    assert!(p.publish.is_empty(), "promoted a half-synced leader");
    let (_, reason, message) = w.condition("ReplicaMode");
    assert_eq!(reason, "Promoting");
    assert!(
        message.contains("waiting for dr-redis-0 to finish its sync"),
        "{message}"
    );
    // Sync done: promotion proceeds.
    w.pods
        .get_mut("dr-redis-0")
        .unwrap()
        .report
        .as_mut()
        .unwrap()
        .sync_in_progress = false;
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-0"].role, Role::Primary);
}

#[test]
fn demotion_returns_to_the_source_and_warns_that_local_writes_are_discarded() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all(true);
    w.spec = with_promote(DR, true);
    w.reconcile();
    w.apply("dr-redis-0", true);
    w.reconcile();
    w.apply_all(true);
    w.reconcile();

    // The drill's return path: promote: false.
    w.spec = with_promote(DR, false);
    let p = w.reconcile();
    assert_eq!(p.publish.len(), 3);
    assert!(
        p.publish.values().all(|t| t.role == Role::Replica
            && t.upstream.as_ref().unwrap().kind == UpstreamKind::External)
    );
    let warning = p
        .events
        .iter()
        .find(|e| e.reason == EventReason::Demoting)
        .expect("no Demoting event");
    assert_eq!(warning.type_, EventType::Warning);
    assert!(
        warning
            .note
            .contains("writes made on this cluster since it was promoted are discarded")
    );
    let (status, reason, message) = w.condition("ReplicaMode");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Demoting"));
    assert!(message.contains("discarded"));
    assert_eq!(w.status.as_ref().unwrap().current_primary, None);

    w.apply_all(true);
    let p = w.reconcile();
    assert!(p.publish.is_empty());
    assert_eq!(w.condition("ReplicaMode").1, "Enabled");
    assert!(
        !p.events.iter().any(|e| e.reason == EventReason::Demoting),
        "warned twice"
    );
}

#[test]
fn a_silent_link_cut_is_visible_in_status_and_warned_once() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all(true);
    w.reconcile();
    w.apply_all(false);
    let p = w.reconcile();
    let (status, reason, message) = w.condition("SourceLinkUp");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "LinkDown"));
    assert!(
        message.contains("dr-redis-0: upstream did not answer within 1s"),
        "{message}"
    );
    assert_eq!(reasons(&p), [EventReason::SourceLinkDown]);
    assert_eq!(w.condition("Ready").0, "False");
    assert!(w.reconcile().events.is_empty());
    w.apply_all(true);
    assert_eq!(reasons(&w.reconcile()), [EventReason::SourceLinkUp]);
}

#[test]
fn standalone_cluster_leader_primary_others_follow_with_min_sync_replicas() {
    let mut w = World::new(spec(
        "storage: {size: 1Gi}\ninstances: 3\nminSyncReplicas: 1",
    ));
    let p = w.reconcile();
    // Leader first, even at creation.
    assert_eq!(p.publish.keys().collect::<Vec<_>>(), ["dr-redis-0"]);
    assert_eq!(p.publish["dr-redis-0"].min_replicas_to_write, 1);
    assert_eq!(p.publish["dr-redis-0"].replica_priority, 100);
    w.apply("dr-redis-0", true);
    let p = w.reconcile();
    assert_eq!(p.publish.len(), 2);
    assert!(
        p.publish
            .values()
            .all(|t| t.min_replicas_to_write == 0 && t.replica_announced)
    );
    assert!(
        w.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .all(|c| c.type_ != "ReplicaMode")
    );
    assert_eq!(
        w.status.as_ref().unwrap().current_primary.as_deref(),
        Some("dr-redis-0")
    );
}

#[test]
fn cascading_replicates_the_source_once() {
    let yaml = format!("{DR}  topology: cascading\n");
    let mut w = World::new(spec(&yaml));
    let p = w.reconcile();
    assert_eq!(w.upstream_kind("dr-redis-0"), Some(UpstreamKind::External));
    assert_eq!(w.upstream_kind("dr-redis-1"), Some(UpstreamKind::Peer));
    assert!(
        p.publish
            .values()
            .all(|t| t.replica_priority == 0 && !t.replica_announced)
    );
    // Promotion then only changes the leader: the others already follow it.
    w.apply_all(true);
    w.reconcile();
    let mut s = spec(&yaml);
    s.replica_mode.as_mut().unwrap().promote = true;
    w.spec = s;
    let p = w.reconcile();
    // One pass: the others' priority/announcement change (no longer hidden), upstream unchanged
    // (they already follow the leader); the leader, told last, becomes primary.
    assert_eq!(p.order, ["dr-redis-1", "dr-redis-2", "dr-redis-0"]);
    assert_eq!(p.publish["dr-redis-0"].role, Role::Primary);
    for t in p.publish.values().filter(|t| t.role == Role::Replica) {
        assert_eq!(t.upstream.as_ref().unwrap().kind, UpstreamKind::Peer);
        assert!(t.replica_announced);
    }
}

#[test]
fn changing_the_source_repoints_every_pod() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all(true);
    w.reconcile();
    w.spec
        .replica_mode
        .as_mut()
        .unwrap()
        .source
        .as_mut()
        .unwrap()
        .host = "10.0.0.9".into();
    let p = w.reconcile();
    assert_eq!(p.publish.len(), 3);
    assert!(
        p.publish
            .values()
            .all(|t| t.upstream.as_ref().unwrap().host == "10.0.0.9")
    );
}

#[test]
fn tls_secret_means_tls_replication() {
    let mut s = spec(DR);
    s.tls_secret = Some(redis_cluster_api::SecretReference {
        name: "redis-tls".into(),
    });
    let mut w = World::new(s);
    let p = w.reconcile();
    assert!(p.publish.values().all(|t| t.upstream.as_ref().unwrap().tls));
}

#[test]
fn a_recreated_pod_gets_a_fresh_annotation_above_every_epoch() {
    let mut w = World::new(spec(DR));
    w.reconcile();
    w.apply_all(true);
    w.reconcile();
    // dr-redis-2 deleted and recreated by its StatefulSet: no annotation, no report yet.
    *w.pods.get_mut("dr-redis-2").unwrap() = PodView {
        address: "dr-redis-2.dr-redis-headless".into(),
        ..Default::default()
    };
    let p = w.reconcile();
    assert_eq!(p.publish.keys().collect::<Vec<_>>(), ["dr-redis-2"]);
    assert_eq!(p.publish["dr-redis-2"].epoch, 3);
}

/// Every sequence of spec changes (promote on/off, enabled on/off) interleaved with any subset of
/// instance managers applying, with the operator restarted (replanned from scratch) at every
/// step: only pod 0 is ever published primary, epochs only grow, and a pod is only re-pointed to
/// the leader once the leader confirmed primary, or, in a promotion out of replica mode, once the
/// leader has been told to be primary (in the same pass, published before it, or earlier): the
/// others then replicate it chained until it is (rule 2).
#[test]
fn invariants_hold_over_every_interleaving() {
    let specs = [
        spec(DR),
        with_promote(DR, true),
        spec("storage: {size: 1Gi}\ninstances: 3"),
        spec(&format!("{DR}  topology: cascading\n")),
    ];
    let mut runs = 0;
    // 4 specs, 3 steps each, 8 subsets of pods applying after each step: 4^3 * 8^3 = 32768 runs.
    for a in 0..4 {
        for b in 0..4 {
            for c in 0..4 {
                for m1 in 0..8u8 {
                    for m2 in 0..8u8 {
                        for m3 in 0..8u8 {
                            runs += 1;
                            let mut w = World::new(specs[a].clone());
                            let mut last_epoch: BTreeMap<String, u64> = BTreeMap::new();
                            for (s, mask) in [(a, m1), (b, m2), (c, m3)] {
                                w.spec = specs[s].clone();
                                let leader_was_confirmed_primary = w.pods["dr-redis-0"]
                                    .report
                                    .as_ref()
                                    .is_some_and(|r| r.role == Some(ObservedRole::Primary))
                                    && w.published_role("dr-redis-0") == Some(Role::Primary);
                                let promotion = w
                                    .spec
                                    .replica_mode
                                    .as_ref()
                                    .is_some_and(|r| r.enabled && r.promote);
                                let leader_told_before =
                                    w.published_role("dr-redis-0") == Some(Role::Primary);
                                let p = w.reconcile();
                                let leader_told = leader_told_before
                                    || p.publish
                                        .get("dr-redis-0")
                                        .is_some_and(|t| t.role == Role::Primary);
                                for (pod, t) in &p.publish {
                                    let prev = last_epoch.insert(pod.clone(), t.epoch);
                                    assert!(prev.is_none_or(|e| t.epoch > e));
                                    if pod != "dr-redis-0"
                                        && t.upstream
                                            .as_ref()
                                            .is_some_and(|u| u.kind == UpstreamKind::Peer)
                                        && t.replica_announced
                                    {
                                        assert!(
                                            leader_was_confirmed_primary
                                                || (promotion && leader_told),
                                            "{pod} pointed at a leader not told to be primary"
                                        );
                                        if !leader_was_confirmed_primary {
                                            // Chained: the leader is published last, so
                                            // whatever write the operator dies after, no
                                            // follower runs ahead of the leader.
                                            assert!(
                                                leader_told_before
                                                    || p.order.last().map(String::as_str)
                                                        == Some("dr-redis-0")
                                            );
                                        }
                                    }
                                }
                                w.assert_single_primary();
                                for (i, name) in ["dr-redis-0", "dr-redis-1", "dr-redis-2"]
                                    .iter()
                                    .enumerate()
                                {
                                    if mask & (1 << i) != 0 && w.pods[*name].published.is_some() {
                                        w.apply(name, true);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(runs, 32768);
}

// ---- Failover: operator-decided (standalone, promoted DR) and Sentinel-decided ----

const STANDALONE: &str = "storage: {size: 1Gi}\ninstances: 3\nauthSecret: {name: a}\n";

impl World {
    /// Reconcile and let every live instance manager apply, until nothing moves.
    fn converge(&mut self) {
        for _ in 0..6 {
            self.reconcile();
            let names: Vec<_> = self.pods.keys().cloned().collect();
            for n in names {
                if self.pods[&n].published.is_some() && self.pods[&n].redis_running != Some(false) {
                    self.apply(&n, true);
                }
            }
        }
    }

    fn set_offset(&mut self, pod: &str, offset: i64) {
        self.pods
            .get_mut(pod)
            .unwrap()
            .report
            .as_mut()
            .unwrap()
            .repl_offset = Some(offset);
    }

    /// The Redis container of `pod` exits and stays down (kubelet reports it not running).
    fn kill(&mut self, pod: &str) {
        let p = self.pods.get_mut(pod).unwrap();
        p.report = None;
        p.redis_running = Some(false);
    }

    /// The container restarts: Redis boots as a fenced master, nothing applied yet.
    fn restart(&mut self, pod: &str) {
        let p = self.pods.get_mut(pod).unwrap();
        p.redis_running = Some(true);
        p.report = Some(InstanceReport {
            pod: pod.into(),
            role: Some(ObservedRole::Primary),
            fenced: true,
            repl_offset: Some(0),
            ..Default::default()
        });
    }

    /// Pods whose Redis would accept a write now: alive, master, not fenced.
    fn writable(&self) -> Vec<String> {
        self.pods
            .iter()
            .filter(|(_, p)| {
                p.redis_running != Some(false)
                    && p.report
                        .as_ref()
                        .is_some_and(|r| r.role == Some(ObservedRole::Primary) && !r.fenced)
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn advance(&mut self, seconds: i64) {
        self.clock += seconds;
    }
}

#[test]
fn a_promoted_dr_cluster_fails_over_fence_first_to_the_most_advanced_replica() {
    let mut w = World::new(with_promote(DR, false));
    w.converge();
    w.spec = with_promote(DR, true);
    w.converge();
    assert_eq!(w.condition("ReplicaMode").1, "Promoted");
    assert_eq!(
        w.status.as_ref().unwrap().current_primary.as_deref(),
        Some("dr-redis-0")
    );
    w.set_offset("dr-redis-1", 500);
    w.set_offset("dr-redis-2", 900);

    w.kill("dr-redis-0");
    let p = w.reconcile();
    assert!(p.publish.is_empty());
    let (status, reason, message) = w.condition("PrimaryAvailable");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Unavailable"));
    assert!(message.contains("failover after 10s"), "{message}");
    w.advance(5);
    assert!(w.reconcile().publish.is_empty(), "acted before the delay");

    w.advance(6);
    let p = w.reconcile();
    assert_eq!(p.order[0], "dr-redis-0", "the fence is written first");
    assert_eq!(
        p.publish.keys().collect::<Vec<_>>(),
        ["dr-redis-0", "dr-redis-2"]
    );
    let fence = &p.publish["dr-redis-0"];
    let promote = &p.publish["dr-redis-2"];
    assert_eq!(fence.role, Role::Fenced);
    assert_eq!(fence.primary.as_deref(), Some("dr-redis-2"));
    assert_eq!(promote.role, Role::Primary);
    assert!(fence.epoch < promote.epoch);
    assert_eq!(p.role_labels["dr-redis-2"], "primary");
    assert_eq!(p.role_labels["dr-redis-0"], "replica");
    assert!(reasons(&p).contains(&EventReason::FailingOver));
    let note = &p
        .events
        .iter()
        .find(|e| e.reason == EventReason::FailingOver)
        .unwrap()
        .note;
    assert!(
        note.contains("not running") && note.contains("900"),
        "{note}"
    );
    // Still a promoted cluster, not "Promoting" again.
    assert_eq!(w.condition("ReplicaMode").1, "Promoted");

    w.apply("dr-redis-2", true);
    let p = w.reconcile();
    assert!(
        reasons(&p).contains(&EventReason::Failover),
        "{:?}",
        reasons(&p)
    );
    assert_eq!(
        p.publish["dr-redis-1"].upstream.as_ref().unwrap().host,
        "dr-redis-2.dr-redis-headless"
    );
    assert_eq!(
        p.publish["dr-redis-0"].role,
        Role::Replica,
        "the old primary rejoins as a replica"
    );
    assert_eq!(
        w.status.as_ref().unwrap().current_primary.as_deref(),
        Some("dr-redis-2")
    );
    assert_eq!(w.condition("PrimaryAvailable").0, "True");

    w.restart("dr-redis-0");
    assert_eq!(w.writable(), ["dr-redis-2"]);
    w.converge();
    assert_eq!(w.writable(), ["dr-redis-2"]);
    assert_eq!(
        w.pods["dr-redis-0"].report.as_ref().unwrap().role,
        Some(ObservedRole::Replica)
    );
    assert!(w.reconcile().publish.is_empty());

    // The drill's fail-back: promote: false still warns that local writes are discarded,
    // although the primary is no longer the designated leader.
    w.spec = with_promote(DR, false);
    let p = w.reconcile();
    assert!(
        reasons(&p).contains(&EventReason::Demoting),
        "{:?}",
        reasons(&p)
    );
    assert_eq!(p.leader, "dr-redis-0");
    w.converge();
    assert_eq!(w.condition("ReplicaMode").1, "Enabled");
    assert_eq!(w.status.as_ref().unwrap().current_primary, None);
}

#[test]
fn failover_waits_while_the_old_primary_might_still_take_writes() {
    let mut w = World::new(spec(STANDALONE));
    w.converge();
    // The instance manager stops answering but Kubernetes says the container runs (a node that
    // is cut off looks exactly like this): no proof the old primary stopped.
    w.pods.get_mut("dr-redis-0").unwrap().report = None;
    let mut warnings = 0;
    for _ in 0..5 {
        w.advance(20);
        let p = w.reconcile();
        assert!(p.publish.is_empty(), "failed over without proof");
        warnings += reasons(&p)
            .iter()
            .filter(|r| **r == EventReason::FailoverBlocked)
            .count();
    }
    assert_eq!(warnings, 1, "warned once");
    let (_, reason, message) = w.condition("PrimaryAvailable");
    assert_eq!(reason, "FailoverBlocked");
    assert!(message.contains("Deleting the pod"), "{message}");
    // The pod is deleted (e.g. `kubectl delete pod --force`): now it provably takes no writes.
    w.pods.remove("dr-redis-0");
    let p = w.reconcile();
    assert_eq!(p.publish.keys().collect::<Vec<_>>(), ["dr-redis-1"]);
    assert_eq!(p.publish["dr-redis-1"].role, Role::Primary);
}

#[test]
fn failover_can_be_turned_off() {
    let mut s = spec(STANDALONE);
    s.failover = Some(redis_cluster_api::FailoverSpec {
        enabled: false,
        primary_unavailable_seconds: 10,
        ..Default::default()
    });
    let mut w = World::new(s);
    w.converge();
    w.kill("dr-redis-0");
    for _ in 0..5 {
        w.advance(30);
        assert!(w.reconcile().publish.is_empty());
    }
    let (status, _, message) = w.condition("PrimaryAvailable");
    assert_eq!(status, "False");
    assert!(message.contains("failover is disabled"), "{message}");
}

#[test]
fn an_operator_restarted_mid_failover_keeps_the_primary_it_chose() {
    let mut w = World::new(spec(STANDALONE));
    w.converge();
    w.set_offset("dr-redis-1", 100);
    w.set_offset("dr-redis-2", 200);
    w.kill("dr-redis-0");
    w.reconcile();
    w.advance(11);
    let before = w.status.clone();
    let p = w.reconcile();
    assert_eq!(p.publish["dr-redis-2"].role, Role::Primary);
    // The status write was lost (operator died), and dr-redis-1 now looks more advanced.
    w.status = before;
    w.set_offset("dr-redis-1", 5000);
    let p = w.reconcile();
    assert!(p.publish.is_empty(), "{:?}", p.publish.keys());
    assert_eq!(p.leader, "dr-redis-2");
    w.converge();
    assert_eq!(
        w.status.as_ref().unwrap().current_primary.as_deref(),
        Some("dr-redis-2")
    );
}

#[test]
fn sentinel_mode_follows_the_election_and_never_decides() {
    let mut w = World::new(spec(&format!(
        "{STANDALONE}mode: sentinel\nminSyncReplicas: 1\n"
    )));
    let p = w.reconcile();
    // No Sentinel has spoken yet: pod 0, every pod at once (the instance managers only follow).
    assert_eq!(p.publish.len(), 3);
    let t = &p.publish["dr-redis-1"];
    let s = t.sentinel.as_ref().expect("sentinel section");
    assert_eq!(s.master_name, "dr-redis");
    assert_eq!(s.addresses.len(), 3);
    assert_eq!(
        s.addresses[0],
        "dr-redis-sentinel-0.dr-redis-sentinel-headless:26379"
    );
    assert_eq!(s.announce_host, "dr-redis-1.dr-redis-headless");
    assert_eq!(
        t.min_replicas_to_write, 1,
        "replicas carry minSyncReplicas under Sentinel"
    );
    w.converge();
    let names: Vec<String> = w.pods.keys().cloned().collect();
    let elect = |w: &mut World, host: &str, epoch: u64| {
        for n in &names {
            if let Some(r) = w.pods.get_mut(n).unwrap().report.as_mut() {
                r.sentinel_primary = Some(format!("{host}:6379"));
                r.sentinel_epoch = Some(epoch);
            }
        }
    };
    elect(&mut w, "dr-redis-0.dr-redis-headless", 0);
    assert!(w.reconcile().publish.is_empty());
    assert_eq!(
        w.status.as_ref().unwrap().current_primary.as_deref(),
        Some("dr-redis-0")
    );

    // The Sentinels fail over to dr-redis-1.
    w.kill("dr-redis-0");
    elect(&mut w, "dr-redis-1.dr-redis-headless", 1);
    w.pods
        .get_mut("dr-redis-1")
        .unwrap()
        .report
        .as_mut()
        .unwrap()
        .role = Some(ObservedRole::Primary);
    for _ in 0..3 {
        w.advance(60);
        let p = w.reconcile();
        assert!(
            !reasons(&p).contains(&EventReason::FailingOver),
            "the operator decided under Sentinel"
        );
        assert_eq!(p.role_labels["dr-redis-1"], "primary");
        assert_eq!(p.leader, "dr-redis-1");
        w.apply("dr-redis-1", true);
        w.apply("dr-redis-2", true);
        elect(&mut w, "dr-redis-1.dr-redis-headless", 1);
    }
    let st = w.status.clone().unwrap();
    assert_eq!(st.current_primary.as_deref(), Some("dr-redis-1"));
    assert_eq!(
        w.pods["dr-redis-2"]
            .published
            .as_ref()
            .unwrap()
            .upstream
            .as_ref()
            .unwrap()
            .host,
        "dr-redis-1.dr-redis-headless"
    );
    assert_eq!(
        w.pods["dr-redis-0"].published.as_ref().unwrap().role,
        Role::Replica
    );
    let (_, _, message) = w.condition("PrimaryAvailable");
    assert!(message.contains("config epoch 1"), "{message}");
}

#[test]
fn sentinel_failover_is_recorded_in_an_event_old_to_new() {
    let mut w = World::new(spec(&format!("{STANDALONE}mode: sentinel\n")));
    w.converge();
    for n in ["dr-redis-0", "dr-redis-1", "dr-redis-2"] {
        let r = w.pods.get_mut(n).unwrap().report.as_mut().unwrap();
        r.sentinel_primary = Some("dr-redis-2.dr-redis-headless:6379".into());
        r.sentinel_epoch = Some(4);
    }
    let mut events = Vec::new();
    for _ in 0..3 {
        let p = w.reconcile();
        events.extend(
            p.events
                .into_iter()
                .filter(|e| e.reason == EventReason::Failover),
        );
        w.apply_all(true);
        for n in ["dr-redis-0", "dr-redis-1", "dr-redis-2"] {
            let r = w.pods.get_mut(n).unwrap().report.as_mut().unwrap();
            r.sentinel_primary = Some("dr-redis-2.dr-redis-headless:6379".into());
            r.sentinel_epoch = Some(4);
        }
    }
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].note,
        "Primary changed: dr-redis-0 -> dr-redis-2 (elected by the Sentinels, config epoch 4)"
    );
}

/// Every sequence of four steps out of {kill, restart, delete+recreate each pod, 11 s pass, every
/// live instance manager applies}: never two pods that accept writes, and epochs only grow.
#[test]
fn standalone_failover_never_makes_two_writable_primaries() {
    const STEPS: usize = 11;
    let mut runs = 0;
    let mut failovers = 0;
    for seq in 0..STEPS.pow(4) {
        runs += 1;
        let mut w = World::new(spec(STANDALONE));
        w.converge();
        w.set_offset("dr-redis-1", 10);
        w.set_offset("dr-redis-2", 20);
        let mut last_epoch: BTreeMap<String, u64> = BTreeMap::new();
        let mut s = seq;
        for _ in 0..4 {
            let step = s % STEPS;
            s /= STEPS;
            let pod = format!("dr-redis-{}", step % 3);
            match step {
                0..=2 => w.kill(&pod),
                3..=5 => w.restart(&pod),
                6..=8 => {
                    // Deleted and recreated by the StatefulSet: no annotation, boots fenced,
                    // and a fresh instance manager with no epoch memory.
                    w.pods.remove(&pod);
                    last_epoch.remove(&pod);
                    w.reconcile();
                    w.pods.insert(
                        pod.clone(),
                        PodView {
                            address: format!("{pod}.dr-redis-headless"),
                            ..Default::default()
                        },
                    );
                    w.restart(&pod);
                }
                9 => w.advance(11),
                _ => {
                    let names: Vec<_> = w.pods.keys().cloned().collect();
                    for n in names {
                        if w.pods[&n].published.is_some() && w.pods[&n].report.is_some() {
                            w.apply(&n, true);
                        }
                    }
                }
            }
            let p = w.reconcile();
            if reasons(&p).contains(&EventReason::FailingOver) {
                failovers += 1;
            }
            for (pod, t) in &p.publish {
                let prev = last_epoch.insert(pod.clone(), t.epoch);
                assert!(prev.is_none_or(|e| t.epoch > e));
            }
            let published_primaries = w
                .pods
                .values()
                .filter(|p| {
                    p.published
                        .as_ref()
                        .is_some_and(|t| t.role == Role::Primary)
                })
                .count();
            assert!(
                published_primaries <= 1,
                "two published primaries (sequence {seq})"
            );
            // Apply what was just published on every live pod too, so the writable check sees
            // the worst case (sidecars that act instantly).
            let names: Vec<_> = w.pods.keys().cloned().collect();
            for n in names {
                if w.pods[&n].published.is_some() && w.pods[&n].report.is_some() {
                    w.apply(&n, true);
                }
            }
            assert!(
                w.writable().len() <= 1,
                "two writable pods {:?} (sequence {seq})",
                w.writable()
            );
        }
    }
    assert_eq!(runs, 14641);
    assert!(
        failovers > 100,
        "the sequences exercise failover ({failovers})"
    );
}

#[test]
fn a_replica_that_diverged_from_the_new_source_primary_is_evented_once_with_the_bytes() {
    let mut w = World::new(spec(DR));
    w.converge();
    w.pods
        .get_mut("dr-redis-2")
        .unwrap()
        .report
        .as_mut()
        .unwrap()
        .diverged_bytes = Some(4242);
    let mut notes = Vec::new();
    for _ in 0..3 {
        let p = w.reconcile();
        notes.extend(
            p.events
                .into_iter()
                .filter(|e| {
                    e.reason == EventReason::FullResyncAfterFailover
                        && e.type_ == EventType::Warning
                })
                .map(|e| e.note),
        );
    }
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("dr-redis-2 held 4242 bytes"),
        "{}",
        notes[0]
    );
    let st = w.status.as_ref().unwrap();
    let i = st
        .instances_status
        .iter()
        .find(|i| i.name == "dr-redis-2")
        .unwrap();
    assert_eq!(i.diverged_bytes, Some(4242));
}

/// A promoted sentinel-mode cluster stays under the operator until every pod confirmed the
/// promotion: a sidecar that skipped the intermediate epoch (it polls a file) must still get a
/// topology that re-points it, because under Sentinel it would never change roles itself.
#[test]
fn a_promoted_sentinel_cluster_is_handed_to_its_sentinels_only_after_every_pod_moved() {
    let yaml = format!("{DR}mode: sentinel\n");
    let mut w = World::new(spec(&yaml));
    w.converge();
    let mut promoted = spec(&yaml);
    promoted.replica_mode.as_mut().unwrap().promote = true;
    w.spec = promoted;
    // The leader is promoted and confirms; the others are published as its replicas, still
    // without a sentinel section.
    for _ in 0..3 {
        w.reconcile();
        w.apply("dr-redis-0", true);
    }
    assert_eq!(w.condition("ReplicaMode").1, "Promoted");
    for n in ["dr-redis-1", "dr-redis-2"] {
        let t = w.pods[n].published.clone().unwrap();
        assert_eq!(t.upstream.as_ref().unwrap().kind, UpstreamKind::Peer, "{n}");
        assert!(
            t.sentinel.is_none(),
            "{n} handed to the Sentinels before it moved"
        );
    }
    // More reconciles while dr-redis-1/2 have not applied: still not handed over.
    for _ in 0..3 {
        let p = w.reconcile();
        assert!(p.publish.values().all(|t| t.sentinel.is_none()));
    }
    // They apply; now every pod gets the sentinel section.
    w.apply("dr-redis-1", true);
    w.apply("dr-redis-2", true);
    let p = w.reconcile();
    assert_eq!(p.publish.len(), 3, "{:?}", p.publish.keys());
    assert!(p.publish.values().all(|t| t.sentinel.is_some()));
    w.apply_all(true);
    assert!(w.reconcile().publish.is_empty());
}
