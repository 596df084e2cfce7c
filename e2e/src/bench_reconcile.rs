//! `redis-drill --bench-reconcile 10,50,100`: the cost of the operator's reconcile itself, in the
//! shape of howl-cloud/redis-operator's `BenchmarkReconcileLoop` (its docs/performance.md: "100
//! clusters in 793.77 ms/op", a controller-runtime fake client, the pods' status answered by an
//! in-process HTTP round tripper, after one warm-up reconcile of every cluster).
//!
//! Here: N RedisClusters of 3 pods on the in-memory API (`MemoryPlatform`: objects compared and
//! stored as JSON, every write recorded), the pods' instance-manager reports served from memory.
//! Measured per N:
//! - initial: the first reconcile of every cluster (every owned object built and created);
//! - the clusters are then converged (pods created, topologies applied and reported);
//! - steady: one reconcile of every cluster (spec checked, objects built and compared with the
//!   stored ones, pods planned, status compared), repeated for at least 3 s; the mean per pass
//!   of N reconciles is the number to put next to howl's, and every pass must write nothing.
//!
//! No API server and no network: this is the reconcile's CPU cost, not the operator at scale on
//! a real control plane (that is `--bench-scale`, docs/bench-scale.md).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use redis_cluster_api::report::{InstanceReport, ObservedRole};
use redis_cluster_api::topology::{DesiredTopology, Role};
use redis_cluster_api::{RedisCluster, names};
use redis_operator::objects::Settings;
use redis_operator::platform::{MemoryPlatform, PodInfo};
use redis_operator::reconcile::reconcile;
use redis_topology::Environment;

const NS: &str = "bench";

/// One N's numbers.
#[derive(Debug)]
pub struct Row {
    pub n: usize,
    /// The first reconcile of every cluster.
    pub initial: Duration,
    /// One steady-state reconcile of every cluster: the mean over `passes`.
    pub steady_pass: Duration,
    pub passes: u32,
    /// Writes recorded over every steady pass (must be 0).
    pub steady_writes: usize,
}

impl Row {
    pub fn reconciles_per_second(&self) -> f64 {
        self.n as f64 / self.steady_pass.as_secs_f64()
    }
}

fn cluster(i: usize) -> RedisCluster {
    let yaml = format!(
        "apiVersion: redis.io/v1\nkind: RedisCluster\nmetadata:\n  name: bench-{i}\n  namespace: {NS}\n  uid: uid-{i}\n  generation: 1\nspec:\n  instances: 3\n  storage:\n    size: 1Gi\n  authSecret:\n    name: bench-auth\n"
    );
    serde_yaml::from_str(&yaml).expect("the benchmark's manifest parses")
}

struct Bench {
    platform: MemoryPlatform,
    clusters: Vec<RedisCluster>,
    settings: Settings,
    env: Environment,
    clock: i64,
}

impl Bench {
    /// One reconcile of every cluster; each written status becomes the cluster's status, as on
    /// the API server.
    async fn pass(&mut self) -> Result<(), String> {
        self.clock += 1;
        let now = Time(Timestamp::from_second(self.clock).map_err(|e| e.to_string())?);
        for rc in &mut self.clusters {
            reconcile(rc, &self.platform, &self.settings, &self.env, now.clone())
                .await
                .map_err(|e| e.to_string())?;
            if let Some(s) = self
                .platform
                .status_of(NS, &rc.metadata.name.clone().unwrap_or_default())
            {
                rc.status = Some(s);
            }
        }
        Ok(())
    }

    /// The StatefulSet controller creates the pods.
    fn create_pods(&self) {
        for rc in &self.clusters {
            let name = rc.metadata.name.clone().unwrap_or_default();
            for i in 0..rc.spec.instances {
                let pod = format!("{name}-{i}");
                self.platform.add_pod(
                    NS,
                    PodInfo {
                        address: names::pod_fqdn(&name, NS, &pod),
                        labels: BTreeMap::from([("redis.io/cluster".into(), name.clone())]),
                        name: pod,
                        redis_running: Some(true),
                        ..Default::default()
                    },
                );
            }
        }
    }

    /// Every instance manager applied its published topology and reports it.
    fn report_applied(&self) {
        for rc in &self.clusters {
            let name = rc.metadata.name.clone().unwrap_or_default();
            for i in 0..rc.spec.instances {
                let pod = format!("{name}-{i}");
                let Some(t) = self
                    .platform
                    .pod(NS, &pod)
                    .and_then(|p| p.annotations.get("redis.io/topology").cloned())
                    .and_then(|a| DesiredTopology::parse(&a).ok())
                else {
                    continue;
                };
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
                        upstream: t
                            .upstream
                            .as_ref()
                            .map(|u| format!("{}:{}", u.host, u.port)),
                        master_link_up: role == ObservedRole::Replica,
                        ready: true,
                        master_replid: Some(format!("{:040}", 1)),
                        master_repl_offset: Some(12345),
                        repl_offset: Some(12345),
                        keys: Some(100),
                        loading: Some(false),
                        ..Default::default()
                    }),
                );
            }
        }
    }
}

async fn measure(n: usize) -> Result<Row, String> {
    let platform = MemoryPlatform::new();
    platform.add_secret(NS, "bench-auth", &["password"]);
    let mut b = Bench {
        platform,
        clusters: (0..n).map(cluster).collect(),
        settings: Settings::default(),
        env: Environment::kubernetes(),
        clock: 1_000,
    };
    let started = Instant::now();
    b.pass().await?;
    let initial = started.elapsed();
    b.create_pods();
    // Converge: topologies published, applied and reported, until a pass writes nothing.
    let mut converged = false;
    for _ in 0..10 {
        b.platform.take_calls();
        b.pass().await?;
        b.report_applied();
        if b.platform.take_calls().is_empty() {
            converged = true;
            break;
        }
    }
    if !converged {
        return Err(format!(
            "N = {n}: the clusters did not converge in 10 passes"
        ));
    }
    b.platform.take_calls();
    let started = Instant::now();
    let mut passes = 0;
    while passes < 3 || started.elapsed() < Duration::from_secs(3) {
        b.pass().await?;
        passes += 1;
    }
    let steady_pass = started.elapsed() / passes;
    Ok(Row {
        n,
        initial,
        steady_pass,
        passes,
        steady_writes: b.platform.take_calls().len(),
    })
}

pub fn run(sizes: &[usize]) -> Result<Vec<Row>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    sizes.iter().map(|&n| rt.block_on(measure(n))).collect()
}

#[cfg(test)]
mod tests {
    /// The benchmark's clusters converge and a steady pass writes nothing (what it measures is
    /// a reconcile with nothing to do, as howl's is).
    #[test]
    fn a_small_run_converges_and_writes_nothing_at_steady_state() {
        let rows = super::run(&[2]).unwrap();
        assert_eq!(rows[0].n, 2);
        assert_eq!(rows[0].steady_writes, 0);
        assert!(rows[0].passes >= 3);
    }
}
