//! The planner world the data-safety and restart tests share: a RedisCluster's spec, its pods'
//! views and its last status, planned with `plan_with` (the user's `extra` inputs, none by
//! default, which is `plan`) at a clock of its own, with helpers to apply what it publishes, say
//! what each pod's Redis holds, restart a primary, and read the conditions it sets.
#![allow(dead_code)] // each test binary uses its own subset
pub use std::collections::BTreeMap;

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
pub use k8s_openapi::jiff::Timestamp;
pub use redis_cluster_api::report::{
    HistoryPosition, InstanceReport, ObservedRole, PrimaryRestart,
};
pub use redis_cluster_api::topology::Role;
pub use redis_cluster_api::{RedisClusterSpec, RedisClusterStatus};
pub use redis_topology::plan::ClusterView;
pub use redis_topology::{Environment, Extra, Plan, PodView, plan_with};

pub const DR: &str = "storage: {size: 1Gi}
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
pub const STANDALONE: &str = "storage: {size: 1Gi}\ninstances: 3\n";

/// Replication histories: `H` the source's (the one the primary held), `FRESH` and `OTHER`
/// unrelated ones; `R` the one a restarted primary comes back under (`FRESH`'s id), `R2` the one
/// it starts when its first replica attaches; `NO_ID` the zero id (no second history).
pub const H: &str = "1111111111111111111111111111111111111111";
pub const FRESH: &str = "9999999999999999999999999999999999999999";
pub const OTHER: &str = "2222222222222222222222222222222222222222";
pub const R: &str = "9999999999999999999999999999999999999999";
pub const R2: &str = "8888888888888888888888888888888888888888";
pub const NO_ID: &str = "0000000000000000000000000000000000000000";

pub fn spec(yaml: &str) -> RedisClusterSpec {
    serde_yaml::from_str(yaml).unwrap()
}

pub struct World {
    pub spec: RedisClusterSpec,
    pub pods: BTreeMap<String, PodView>,
    pub status: Option<RedisClusterStatus>,
    pub clock: i64,
    pub env: Environment,
    pub extra: Extra,
}

impl World {
    pub fn new(spec: RedisClusterSpec) -> Self {
        let pods = (0..spec.instances)
            .map(|i| {
                let name = format!("dr-redis-{i}");
                let view = PodView {
                    address: format!("{name}.dr-redis-headless"),
                    ..Default::default()
                };
                (name, view)
            })
            .collect();
        World {
            spec,
            pods,
            status: None,
            clock: 1_000,
            env: Environment::kubernetes(),
            extra: Extra::default(),
        }
    }

    pub fn reconcile(&mut self) -> Plan {
        let p = self.plan();
        for (pod, t) in &p.publish {
            self.pods.get_mut(pod).unwrap().published = Some(t.clone());
        }
        self.status = Some(p.status.clone());
        p
    }

    /// The next plan, written nowhere (an operator that dies before its first write).
    pub fn plan(&mut self) -> Plan {
        self.clock += 1;
        let view = ClusterView {
            name: "dr-redis",
            namespace: "production",
            uid: Some("uid-dr-redis"),
            generation: Some(1),
            spec: &self.spec,
            previous: self.status.as_ref(),
            pods: &self.pods,
            env: &self.env,
            now: Time(Timestamp::from_second(self.clock).unwrap()),
        };
        plan_with(&view, &self.extra)
    }

    pub fn advance(&mut self, secs: i64) {
        self.clock += secs;
    }

    /// The instance manager of `pod` applies its annotation (its Redis keeps its data).
    pub fn apply(&mut self, pod: &str) {
        let p = self.pods.get_mut(pod).unwrap();
        let t = p.published.clone().expect("nothing published");
        let old = p.report.clone().unwrap_or_default();
        let role = match t.role {
            Role::Primary => ObservedRole::Primary,
            Role::Replica => ObservedRole::Replica,
            Role::Fenced => old.role.unwrap_or(ObservedRole::Primary),
        };
        p.report = Some(InstanceReport {
            pod: pod.into(),
            applied_epoch: Some(t.epoch),
            role: Some(role),
            upstream: t
                .upstream
                .as_ref()
                .map(|u| format!("{}:{}", u.host, u.port)),
            master_link_up: role == ObservedRole::Replica,
            ready: t.role != Role::Fenced,
            fenced: t.role == Role::Fenced,
            ..old
        });
    }

    pub fn apply_all(&mut self) {
        let names: Vec<_> = self.pods.keys().cloned().collect();
        for n in names {
            if self.pods[&n].published.is_some() {
                self.apply(&n);
            }
        }
    }

    pub fn converge(&mut self) {
        for _ in 0..4 {
            self.reconcile();
            self.apply_all();
        }
        self.reconcile();
    }

    /// What `pod`'s Redis holds.
    pub fn hold(&mut self, pod: &str, replid: &str, offset: i64, keys: u64) {
        let r = self
            .pods
            .get_mut(pod)
            .unwrap()
            .report
            .get_or_insert_with(|| InstanceReport {
                pod: pod.into(),
                role: Some(ObservedRole::Replica),
                ..Default::default()
            });
        r.master_replid = Some(replid.into());
        r.master_replid2 = Some(NO_ID.into());
        r.second_repl_offset = Some(-1);
        r.master_repl_offset = Some(offset);
        r.repl_offset = Some(offset);
        r.keys = Some(keys);
        r.loading = Some(false);
    }

    pub fn report(&mut self, pod: &str) -> &mut InstanceReport {
        self.pods
            .get_mut(pod)
            .unwrap()
            .report
            .as_mut()
            .expect("a report")
    }

    /// `pod`'s Redis restarted from its append-only file under history `R` (50 keys): its
    /// instance manager keeps it fenced (`fenced`: the fence is in place) and says why; its
    /// replicas' links broke and their gates refuse `R`.
    pub fn restart(&mut self, pod: &str, fenced: bool) {
        let had = {
            let r = self.report(pod);
            HistoryPosition {
                replid: r.master_replid.clone().unwrap(),
                offset: r.master_repl_offset.unwrap(),
                keys: r.keys.unwrap(),
            }
        };
        self.hold(pod, R, 0, had.keys);
        let r = self.report(pod);
        r.role = Some(ObservedRole::Primary);
        r.fenced = fenced;
        r.ready = false;
        r.recorded_history = Some(had.clone());
        r.restarted_primary = Some(PrimaryRestart {
            had,
            now: HistoryPosition {
                replid: R.into(),
                offset: 0,
                keys: 50,
            },
        });
        r.error = Some("restarted under a new replication history ...".into());
        let names: Vec<String> = self.pods.keys().filter(|n| *n != pod).cloned().collect();
        for n in names {
            let r = self.report(&n);
            r.master_link_up = false;
            r.ready = false;
        }
    }

    pub fn condition(&self, type_: &str) -> Option<(String, String, String)> {
        let c = self
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == type_)?;
        Some((c.status.clone(), c.reason.clone(), c.message.clone()))
    }

    pub fn current_primary(&self) -> Option<&str> {
        self.status.as_ref()?.current_primary.as_deref()
    }

    pub fn accepts(&self) -> Vec<Option<String>> {
        self.pods
            .values()
            .map(|p| p.published.as_ref().unwrap().accept_history.clone())
            .collect()
    }

    pub fn primaries(&self) -> Vec<&str> {
        self.pods
            .iter()
            .filter(|(_, p)| {
                p.published
                    .as_ref()
                    .is_some_and(|t| t.role == Role::Primary)
            })
            .map(|(n, _)| n.as_str())
            .collect()
    }
}
