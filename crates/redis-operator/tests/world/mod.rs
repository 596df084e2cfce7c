//! The reconcile world the data-safety tests share: a RedisCluster driven through `reconcile`
//! against the in-memory Kubernetes, with helpers to create pods, report from them, and read the
//! calls, conditions and Events it produced.
#![allow(dead_code)] // each test binary uses its own subset
pub use std::collections::BTreeMap;

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
pub use k8s_openapi::jiff::Timestamp;
pub use redis_cluster_api::RedisCluster;
pub use redis_cluster_api::names;
pub use redis_cluster_api::report::{InstanceReport, ObservedRole};
pub use redis_cluster_api::topology::{DesiredTopology, Role};
pub use redis_operator::objects::Settings;
pub use redis_operator::platform::{Call, MemoryPlatform, PodInfo};
pub use redis_operator::reconcile::{Outcome, reconcile};
pub use redis_topology::Environment;

pub const H: &str = "1111111111111111111111111111111111111111";

pub fn cluster(yaml: &str) -> RedisCluster {
    let mut rc: RedisCluster = serde_yaml::from_str(yaml).unwrap();
    rc.metadata.uid = Some("uid-1".into());
    rc.metadata.generation = Some(1);
    rc
}

pub const STANDALONE: &str = "apiVersion: redis.io/v1
kind: RedisCluster
metadata: {name: cache, namespace: production}
spec:
  instances: 3
  storage: {size: 1Gi}
  authSecret: {name: cache-auth}
";

pub const DR: &str = "apiVersion: redis.io/v1
kind: RedisCluster
metadata: {name: dr-redis, namespace: production}
spec:
  instances: 3
  storage: {size: 1Gi}
  authSecret: {name: dr-redis-auth}
  replicaMode:
    enabled: true
    source: {host: prod-redis-leader.production.svc.cluster.local, port: 6379, clusterName: prod-redis-us-east, authSecretName: prod-redis-auth}
";

pub struct Harness {
    pub platform: MemoryPlatform,
    pub rc: RedisCluster,
    pub clock: i64,
}

impl Harness {
    pub fn new(yaml: &str) -> Self {
        let platform = MemoryPlatform::new();
        for secret in ["cache-auth", "dr-redis-auth", "prod-redis-auth"] {
            platform.add_secret("production", secret, &["password"]);
        }
        Harness {
            platform,
            rc: cluster(yaml),
            clock: 1_000,
        }
    }

    pub fn name(&self) -> String {
        self.rc.metadata.name.clone().unwrap()
    }

    pub async fn step(&mut self) -> (Outcome, Vec<Call>) {
        self.clock += 1;
        let outcome = reconcile(
            &self.rc,
            &self.platform,
            &Settings::default(),
            &Environment::kubernetes(),
            Time(Timestamp::from_second(self.clock).unwrap()),
        )
        .await
        .expect("reconcile");
        if let Some(s) = self.platform.status_of("production", &self.name()) {
            self.rc.status = Some(s);
        }
        (outcome, self.platform.take_calls())
    }

    pub fn create_pods(&self) {
        for i in 0..self.rc.spec.instances {
            let name = format!("{}-{i}", self.name());
            self.platform.add_pod(
                "production",
                PodInfo {
                    address: names::pod_fqdn(&self.name(), "production", &name),
                    labels: BTreeMap::from([("redis.io/cluster".into(), self.name())]),
                    redis_running: Some(true),
                    name,
                    ..Default::default()
                },
            );
        }
    }

    pub fn topology(&self, pod: &str) -> DesiredTopology {
        let p = self.platform.pod("production", pod).unwrap();
        DesiredTopology::parse(&p.annotations["redis.io/topology"]).unwrap()
    }

    /// Every instance manager applies its annotation; every Redis holds history H at `offset`.
    pub fn report_all(&self, offset: i64) {
        for i in 0..self.rc.spec.instances {
            let pod = format!("{}-{i}", self.name());
            let Some(p) = self.platform.pod("production", &pod) else {
                continue;
            };
            let Some(a) = p.annotations.get("redis.io/topology") else {
                continue;
            };
            let t = DesiredTopology::parse(a).unwrap();
            let role = if t.role == Role::Primary {
                ObservedRole::Primary
            } else {
                ObservedRole::Replica
            };
            self.platform.set_report(
                &pod,
                Some(InstanceReport {
                    pod: pod.clone(),
                    applied_epoch: Some(t.epoch),
                    role: Some(role),
                    master_link_up: role == ObservedRole::Replica,
                    ready: t.role != Role::Fenced,
                    fenced: t.role == Role::Fenced,
                    repl_offset: Some(offset),
                    master_repl_offset: Some(offset),
                    master_replid: Some(H.into()),
                    keys: Some(10),
                    ..Default::default()
                }),
            );
        }
    }

    pub async fn converge(&mut self) {
        self.step().await;
        self.create_pods();
        for _ in 0..4 {
            self.step().await;
            self.report_all(5000);
        }
        self.step().await;
    }

    pub fn condition(&self, type_: &str) -> (String, String, String) {
        let c = self
            .rc
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"));
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }
}

pub fn kinds(calls: &[Call]) -> Vec<String> {
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

/// The note of the first Event with `reason` (compared as the user sees it, so that this file
/// also builds against the operator before issue 12).
pub fn event_note(calls: &[Call], reason: &str) -> Option<String> {
    calls.iter().find_map(|c| match c {
        Call::Event {
            reason: r, note, ..
        } if r.as_str() == reason => Some(note.clone()),
        _ => None,
    })
}
