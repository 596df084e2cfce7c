//! Reconcile against the in-memory Kubernetes: the exact writes for each spec sample, promotion
//! and demotion step by step, bad input, and that a reconcile with nothing changed writes nothing.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use redis_cluster_api::RedisCluster;
use redis_cluster_api::names;
use redis_cluster_api::report::{InstanceReport, ObservedRole};
use redis_cluster_api::topology::{DesiredTopology, Role};
use redis_operator::objects::Settings;
use redis_operator::platform::{Call, MemoryPlatform, PodInfo};
use redis_operator::reconcile::{Outcome, reconcile};
use redis_topology::{Environment, EventReason, EventType};

fn sample(file: &str) -> RedisCluster {
    let mut rc: RedisCluster = redis_test_support::samples::load(file);
    rc.metadata.uid = Some("uid-1".into());
    rc.metadata.generation = Some(1);
    rc.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    rc
}

struct Harness {
    platform: MemoryPlatform,
    rc: RedisCluster,
    clock: i64,
}

impl Harness {
    fn new(file: &str) -> Self {
        let rc = sample(file);
        let platform = MemoryPlatform::new();
        let ns = rc.metadata.namespace.clone().unwrap();
        for name in [
            "dr-redis-auth",
            "prod-redis-auth",
            "redis-password",
            "prod-redis-auth",
        ] {
            platform.add_secret(&ns, name, &["password"]);
        }
        platform.add_secret(&ns, "redis-tls", &["tls.crt", "tls.key", "ca.crt"]);
        Harness {
            platform,
            rc,
            clock: 1_000,
        }
    }

    fn ns(&self) -> String {
        self.rc.metadata.namespace.clone().unwrap()
    }

    fn name(&self) -> String {
        self.rc.metadata.name.clone().unwrap()
    }

    /// One reconcile; the written status becomes the resource's status, as on the API server.
    async fn step(&mut self) -> (Outcome, Vec<Call>) {
        self.clock += 1;
        let now = Time(Timestamp::from_second(self.clock).unwrap());
        let outcome = reconcile(
            &self.rc,
            &self.platform,
            &Settings::default(),
            &Environment::kubernetes(),
            now,
        )
        .await
        .expect("reconcile");
        if let Some(s) = self.platform.status_of(&self.ns(), &self.name()) {
            self.rc.status = Some(s);
        }
        (outcome, self.platform.take_calls())
    }

    /// The StatefulSet controller creates the pods.
    fn create_pods(&self) {
        for i in 0..self.rc.spec.instances {
            let name = format!("{}-{i}", self.name());
            self.platform.add_pod(
                &self.ns(),
                PodInfo {
                    address: names::pod_fqdn(&self.name(), &self.ns(), &name),
                    labels: BTreeMap::from([("redis.io/cluster".into(), self.name())]),
                    name,
                    ..Default::default()
                },
            );
        }
    }

    fn topology(&self, pod: &str) -> DesiredTopology {
        let p = self.platform.pod(&self.ns(), pod).unwrap();
        DesiredTopology::parse(&p.annotations["redis.io/topology"]).unwrap()
    }

    /// The pod's instance manager applied its annotation and reports it.
    fn report_applied(&self, pod: &str, link_up: bool) {
        let published = self.platform.pod(&self.ns(), pod).unwrap();
        if !published.annotations.contains_key("redis.io/topology") {
            return; // nothing to apply yet
        }
        let t = self.topology(pod);
        let role = if t.role == Role::Primary {
            ObservedRole::Primary
        } else {
            ObservedRole::Replica
        };
        self.platform.set_report(
            pod,
            Some(InstanceReport {
                pod: pod.into(),
                applied_epoch: Some(t.epoch),
                role: Some(role),
                master_link_up: link_up && role == ObservedRole::Replica,
                ready: link_up || role == ObservedRole::Primary,
                ..Default::default()
            }),
        );
    }

    fn report_all(&self, link_up: bool) {
        for i in 0..self.rc.spec.instances {
            self.report_applied(&format!("{}-{i}", self.name()), link_up);
        }
    }

    fn condition(&self, type_: &str) -> (String, String, String) {
        let c = self
            .rc
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }
}

fn kinds(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| match c {
            Call::Apply { kind, name } => format!("apply {kind}/{name}"),
            Call::PatchPod { pod, .. } => format!("patch pod/{pod}"),
            Call::PatchStatus(_) => "patch status".into(),
            Call::Event { reason, .. } => format!("event {reason}"),
        })
        .collect()
}

#[tokio::test]
async fn every_spec_sample_creates_its_objects_and_a_second_reconcile_writes_nothing() {
    for file in [
        "prod-redis.yaml",
        "dr-redis.yaml",
        "redis-east.yaml",
        "redis-west.yaml",
        "redis-west-tls.yaml",
        "minimal.yaml",
    ] {
        let mut h = Harness::new(file);
        let (_, calls) = h.step().await;
        let n = h.name();
        let applied: Vec<_> = kinds(&calls)
            .into_iter()
            .filter(|c| c.starts_with("apply"))
            .collect();
        let mut expected = vec![
            format!("apply ServiceAccount/{n}-instance-manager"),
            format!("apply Role/{n}-instance-manager"),
            format!("apply RoleBinding/{n}-instance-manager"),
            format!("apply ConfigMap/{n}-config"),
            format!("apply Service/{n}-leader"),
            format!("apply Service/{n}-replica"),
            format!("apply Service/{n}-any"),
            format!("apply Service/{n}-headless"),
            format!("apply PodDisruptionBudget/{n}-pdb"),
            format!("apply NetworkPolicy/{n}-redis"),
            format!("apply StatefulSet/{n}"),
        ];
        // The sentinel-mode samples also get their Sentinels.
        if matches!(file, "prod-redis.yaml" | "redis-east.yaml") {
            expected.extend([
                format!("apply Service/{n}-sentinel-headless"),
                format!("apply Service/{n}-sentinel"),
                format!("apply PodDisruptionBudget/{n}-sentinel-pdb"),
                format!("apply NetworkPolicy/{n}-sentinel"),
                format!("apply StatefulSet/{n}-sentinel"),
            ]);
        }
        assert_eq!(applied, expected, "{file}");
        h.create_pods();
        h.step().await;
        h.report_all(true);
        // Converge (promotion of the leader in standalone clusters takes two passes).
        for _ in 0..3 {
            h.step().await;
            h.report_all(true);
        }
        let (outcome, calls) = h.step().await;
        assert!(
            calls.is_empty(),
            "{file}: a converged cluster still wrote {:#?}",
            kinds(&calls)
        );
        assert!(outcome.published.is_empty());
        assert_eq!(h.condition("Ready").0, "True", "{file}");
    }
}

#[tokio::test]
async fn the_dr_sample_publishes_the_exact_topology_and_status() {
    let mut h = Harness::new("dr-redis.yaml");
    h.step().await;
    h.create_pods();
    let (_, calls) = h.step().await;
    assert_eq!(
        kinds(&calls),
        [
            "patch pod/dr-redis-0",
            "patch pod/dr-redis-1",
            "patch pod/dr-redis-2",
            "patch status",
            "event TopologyPublished",
            "event TopologyPublished",
            "event TopologyPublished",
        ]
    );
    let Call::PatchPod {
        labels,
        annotations,
        ..
    } = &calls[0]
    else {
        unreachable!()
    };
    assert_eq!(
        labels,
        &BTreeMap::from([
            ("redis.io/instance".to_string(), "dr-redis-0".to_string()),
            ("redis.io/role".to_string(), "primary".to_string()),
        ])
    );
    assert_eq!(
        annotations["redis.io/topology"],
        r#"{"version":1,"cluster":"dr-redis","epoch":1,"role":"replica","upstream":{"kind":"external","host":"prod-redis-leader.production.svc.cluster.local","port":6379,"tls":false,"passwordFile":"/etc/redis/source/password","clusterName":"prod-redis-us-east"},"replicaPriority":0,"replicaAnnounced":false,"minReplicasToWrite":0,"minReplicasMaxLag":10,"replicaofCommand":"REPLICAOF-1025215e9243"}"#
    );
    // The same per-cluster REPLICAOF name the pods' redis.conf renames it to.
    assert!(
        redis_operator::config::redis_conf(&h.rc)
            .contains("rename-command REPLICAOF REPLICAOF-1025215e9243\n")
    );
    let Call::PatchPod { labels, .. } = &calls[1] else {
        unreachable!()
    };
    assert_eq!(labels["redis.io/role"], "replica");
    assert_eq!(
        h.condition("ReplicaMode"),
        (
            "True".into(),
            "Enabled".into(),
            "Cluster is replicating from prod-redis-us-east (prod-redis-leader.production.svc.cluster.local:6379)".into()
        )
    );
    assert_eq!(h.condition("ConfigurationValid").0, "True");
    let status = h.rc.status.clone().unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.instances, 3);
    assert_eq!(status.ready_instances, 0);
}

#[tokio::test]
async fn promotion_and_demotion_step_by_step() {
    let mut h = Harness::new("dr-redis.yaml");
    h.step().await;
    h.create_pods();
    h.step().await;
    h.report_all(true);
    h.step().await;

    // kubectl patch ... {"spec":{"replicaMode":{"promote":true}}}
    h.rc.spec.replica_mode.as_mut().unwrap().promote = true;
    h.rc.metadata.generation = Some(2);
    let (_, calls) = h.step().await;
    assert_eq!(
        kinds(&calls),
        [
            // Chained (rule 2 in plan.rs): the others follow the leader first, the leader is
            // told to be primary last.
            "patch pod/dr-redis-1",
            "patch pod/dr-redis-2",
            "patch pod/dr-redis-0",
            "patch status",
            "event TopologyPublished",
            "event TopologyPublished",
            "event Promoting",
            "event TopologyPublished"
        ]
    );
    assert_eq!(h.topology("dr-redis-0").role, Role::Primary);
    assert_eq!(h.topology("dr-redis-0").epoch, 6);
    assert_eq!(h.condition("ReplicaMode").1, "Promoting");
    // The operator never writes the user's spec: promotion lives in status only.
    assert!(
        calls
            .iter()
            .all(|c| !matches!(c, Call::Apply { kind, .. } if kind == "RedisCluster"))
    );

    // Not yet applied: nothing more happens, however often we look.
    let (_, calls) = h.step().await;
    assert!(calls.is_empty(), "{:?}", kinds(&calls));

    h.report_applied("dr-redis-0", true);
    let (outcome, calls) = h.step().await;
    assert!(outcome.promoted);
    assert_eq!(kinds(&calls), ["patch status", "event Promoted"]);
    assert_eq!(
        h.condition("ReplicaMode"),
        (
            "False".into(),
            "Promoted".into(),
            "Cluster promoted to standalone (former source: prod-redis-us-east)".into()
        )
    );
    assert_eq!(
        h.rc.status.as_ref().unwrap().current_primary.as_deref(),
        Some("dr-redis-0")
    );
    assert_eq!(
        h.topology("dr-redis-1").upstream.unwrap().host,
        "dr-redis-0.dr-redis-headless.production.svc"
    );

    h.report_all(true);
    h.step().await;
    let (_, calls) = h.step().await;
    assert!(calls.is_empty());

    // DR drill return: promote: false.
    h.rc.spec.replica_mode.as_mut().unwrap().promote = false;
    h.rc.metadata.generation = Some(3);
    let (_, calls) = h.step().await;
    let warning = calls
        .iter()
        .find_map(|c| match c {
            Call::Event {
                type_: EventType::Warning,
                reason,
                note,
            } if *reason == EventReason::Demoting => Some(note.clone()),
            _ => None,
        })
        .expect("a Warning Demoting event");
    assert!(warning.contains("writes made on this cluster since it was promoted are discarded"));
    assert_eq!(h.condition("ReplicaMode").1, "Demoting");
    h.report_all(true);
    h.step().await;
    assert_eq!(h.condition("ReplicaMode").1, "Enabled");
    assert_eq!(h.rc.status.as_ref().unwrap().current_primary, None);
}

#[tokio::test]
async fn a_missing_source_secret_is_a_condition_not_a_crash_loop() {
    let rc = sample("dr-redis.yaml");
    let platform = MemoryPlatform::new();
    platform.add_secret("production", "dr-redis-auth", &["password"]);
    let mut h = Harness {
        platform,
        rc,
        clock: 0,
    };
    let (outcome, calls) = h.step().await;
    assert!(outcome.invalid);
    assert_eq!(outcome.requeue_after.as_secs(), 30);
    assert_eq!(kinds(&calls), ["patch status", "event SecretMissing"]);
    let (status, reason, message) = h.condition("ConfigurationValid");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SecretMissing")
    );
    assert!(
        message.contains("Secret production/prod-redis-auth does not exist"),
        "{message}"
    );
    // Nothing created while invalid, and no repeated writes.
    let (_, calls) = h.step().await;
    assert!(calls.is_empty(), "{:?}", kinds(&calls));

    // A source secret without `password` is its own message.
    h.platform
        .add_secret("production", "prod-redis-auth", &["pass"]);
    let (_, calls) = h.step().await;
    assert_eq!(kinds(&calls), ["patch status", "event SecretKeyMissing"]);
    assert!(
        h.condition("ConfigurationValid")
            .2
            .contains("has no 'password' key")
    );

    h.platform
        .add_secret("production", "prod-redis-auth", &["password"]);
    let (outcome, calls) = h.step().await;
    assert!(!outcome.invalid);
    assert!(kinds(&calls).contains(&"event ConfigurationValid".to_string()));
    assert_eq!(h.condition("ConfigurationValid").0, "True");
}

#[tokio::test]
async fn a_deleted_pod_comes_back_with_its_role() {
    let mut h = Harness::new("dr-redis.yaml");
    h.step().await;
    h.create_pods();
    h.step().await;
    h.report_all(true);
    h.step().await;
    h.platform.remove_pod("production", "dr-redis-1");
    h.platform.set_report("dr-redis-1", None);
    h.step().await;
    h.create_pods_missing();
    let (_, calls) = h.step().await;
    assert_eq!(kinds(&calls)[0], "patch pod/dr-redis-1");
    let t = h.topology("dr-redis-1");
    assert_eq!(t.role, Role::Replica);
    assert_eq!(
        t.epoch, 4,
        "a recreated pod gets an epoch above every published one"
    );
}

impl Harness {
    fn create_pods_missing(&self) {
        for i in 0..self.rc.spec.instances {
            let name = format!("{}-{i}", self.name());
            if self.platform.pod(&self.ns(), &name).is_none() {
                self.platform.add_pod(
                    &self.ns(),
                    PodInfo {
                        address: names::pod_fqdn(&self.name(), &self.ns(), &name),
                        name,
                        ..Default::default()
                    },
                );
            }
        }
    }
}

/// Issue 13: `kubectl create secret tls` makes a Secret without `ca.crt`, which the pods need
/// to verify each other: `ConfigurationValid=False` (`SecretKeyMissing`) names the key and the
/// command that adds it, nothing is created meanwhile, and adding it clears the condition.
#[tokio::test]
async fn a_tls_secret_without_its_ca_is_reported_before_any_pod_mounts_it() {
    let mut h = Harness::new("redis-west-tls.yaml");
    let ns = h.ns();
    h.platform
        .add_secret(&ns, "redis-tls", &["tls.crt", "tls.key"]);
    let (outcome, calls) = h.step().await;
    assert!(outcome.invalid);
    assert!(
        kinds(&calls).contains(&"event SecretKeyMissing".to_string()),
        "{:?}",
        kinds(&calls)
    );
    assert!(
        !kinds(&calls).iter().any(|k| k.starts_with("apply ")),
        "{:?}",
        kinds(&calls)
    );
    let (status, reason, message) = h.condition("ConfigurationValid");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SecretKeyMissing")
    );
    assert!(
        message.starts_with(&format!(
            "Secret {ns}/redis-tls has no 'ca.crt' key: the pods verify each other's certificates"
        )) && message.contains(&format!("kubectl patch secret -n {ns} redis-tls")),
        "{message}"
    );
    h.platform
        .add_secret(&ns, "redis-tls", &["tls.crt", "tls.key", "ca.crt"]);
    let (outcome, _) = h.step().await;
    assert!(!outcome.invalid);
    assert_eq!(h.condition("ConfigurationValid").0, "True");
}
