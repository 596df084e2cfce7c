//! `redis-drill --bench-scale 10,100`: the operator at scale on the real control plane (issue 16).
//!
//! For each N, a fresh cluster (more nodes as N grows), the operator installed with Helm, one
//! replica-mode pair (`scale-src`, 1 pod, and `scale-dr`, 3 pods, replicating it), then N
//! RedisClusters of 3 pods created at once (`kubectl apply` of one file). Measured:
//! - apply -> every StatefulSet exists (the initial reconcile of every cluster; howl-cloud's
//!   published "100 clusters in 794 ms" is a reconcile loop timing of the same step) and the
//!   operator's own reconcile time for it (`redis_operator_reconcile_duration_seconds`);
//! - apply -> every cluster `Ready=True` (pods started by the node agents as real processes);
//! - the promotion of `scale-dr`, patched right after the apply, while the operator is busy
//!   with the N new clusters: patch -> `ReplicaMode=False/Promoted`;
//! - steady state, after 30 s of quiet, over 60 s: the operator's requests by verb from the API
//!   server's audit log, its reconciles (its metric), its RSS and CPU;
//! - how often the leader Lease changed hands over the run (a leader that misses its renewal
//!   deadline restarts);
//! - the baseline, last: `kubectl apply --server-side` of the same objects the operator created
//!   for the N clusters (`redis-operator render`, StatefulSets at 0 replicas, no owner), into
//!   another namespace, on the same API server: what the API server takes to accept those
//!   writes from the standard client, one after the other.

use std::collections::BTreeMap;

use k8s_openapi::serde::Deserialize;
use std::time::{Duration, Instant};

use kcluster::client::{Kube, pod_processes};
use kcluster::cluster::{self, Cluster, ImageMapping};
use kcluster::net::Region;

use crate::harness::{
    OPERATOR_IMAGE, Options, control_plane, is_write, operator_leader, operator_requests,
    reconcile_metrics, wait,
};

const NS: &str = "scale";
use crate::harness::OPERATOR_NS;

/// One N's numbers.
#[derive(Debug, Default)]
pub struct Row {
    pub n: usize,
    pub pods: usize,
    /// `kubectl apply` of the N clusters.
    pub apply: Duration,
    /// apply -> every StatefulSet exists.
    pub objects: Duration,
    /// The operator's reconcile time over that, summed (seconds) and the reconciles counted.
    pub reconcile_seconds: f64,
    pub reconciles_initial: f64,
    /// apply -> every cluster Ready=True.
    pub ready: Option<Duration>,
    /// patch -> ReplicaMode=False/Promoted of the replica-mode cluster, during the creation.
    pub promotion: Option<Duration>,
    /// Steady state, per minute, for all clusters: requests by verb and resource.
    pub steady: BTreeMap<String, usize>,
    pub steady_reconciles: f64,
    /// The operator's resident memory (KiB) at steady state, and its CPU (% of one core) over
    /// the steady-state minute.
    pub rss_kib: u64,
    pub cpu_percent: f64,
    /// Times the leader Lease changed hands after the first acquisition.
    pub lease_changes: u32,
    /// `kubectl apply --server-side` of the objects the operator created for the N clusters.
    pub baseline: Duration,
}

impl Row {
    pub fn steady_total(&self) -> usize {
        self.steady.values().sum()
    }

    pub fn steady_writes(&self) -> usize {
        self.steady
            .iter()
            .filter(|(k, _)| is_write(k))
            .map(|(_, v)| v)
            .sum()
    }
}

pub fn run(o: &Options, sizes: &[usize]) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for &n in sizes {
        println!("\n==> N = {n}: {n} clusters of 3 pods");
        let cluster = up(o, n)?;
        let result = measure(o, &cluster, n);
        cluster::down(&cluster.dir);
        let row = result.map_err(|e| {
            format!(
                "{e}\n(logs in {}/logs and {}/nodes)",
                cluster.dir.display(),
                cluster.dir.display()
            )
        })?;
        println!("    {row:?}");
        rows.push(row);
    }
    Ok(rows)
}

/// A cluster with room for N x 3 pods (110 per node): a third more nodes in regions a and b.
fn up(o: &Options, n: usize) -> Result<Cluster, String> {
    let bin_dir = control_plane(&o.repo)?;
    let images = o
        .instance_manager
        .parent()
        .ok_or("the instance manager's path has no directory")?
        .to_path_buf();
    let dir = o.dir.join(format!("scale-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = cluster::Options::new(dir, bin_dir, Some(images.join("redis-node-agent")));
    options.images.push(ImageMapping {
        repository: OPERATOR_IMAGE.into(),
        dir: images,
    });
    let per_region = (n * 3 * 4 / 3).div_ceil(2 * 110).max(3) as u32;
    options.nodes = BTreeMap::from([
        (Region('a'), per_region),
        (Region('b'), per_region),
        (Region('c'), 2),
    ]);
    options.placement = vec![("redis-operator".into(), Region('c'))];
    let cluster = cluster::up(&options)?;
    let helm = o.repo.join(".tools/bin/helm");
    cluster::install_operator(&cluster, &helm, &o.repo.join("charts/redis-operator"), &[])?;
    Ok(cluster)
}

/// A RedisCluster of the benchmark: 3 pods, small requests (the node agents run every pod as
/// real processes on one machine), the shared password.
fn manifest(name: &str, instances: u32, replica_of: Option<&str>) -> String {
    let mut m = format!(
        "apiVersion: redis.io/v1\nkind: RedisCluster\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  instances: {instances}\n  storage:\n    size: 1Gi\n  authSecret:\n    name: scale-auth\n  resources:\n    requests: {{cpu: 10m, memory: 16Mi}}\n    limits: {{memory: 1Gi}}\n  instanceManagerResources:\n    requests: {{cpu: 5m, memory: 8Mi}}\n    limits: {{memory: 64Mi}}\n"
    );
    if let Some(src) = replica_of {
        m.push_str(&format!(
            "  replicaMode:\n    enabled: true\n    source:\n      host: {src}-leader.{NS}.svc.cluster.local\n      port: 6379\n      clusterName: {src}\n      authSecretName: scale-auth\n"
        ));
    }
    m
}

fn measure(o: &Options, c: &Cluster, n: usize) -> Result<Row, String> {
    let kube = Kube::new(c)?;
    c.kubectl(&["create", "namespace", NS])?;
    c.kubectl(&[
        "-n",
        NS,
        "create",
        "secret",
        "generic",
        "scale-auth",
        "--from-literal=password=scale-bench-password",
    ])?;
    let dir = c.dir.join("manifests");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let apply = |file: &str, text: &str| -> Result<(), String> {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        c.kubectl(&["apply", "-f", &path.display().to_string()])
            .map(|_| ())
    };
    // The replica-mode pair, converged before the N clusters arrive.
    apply(
        "pair.yaml",
        &format!(
            "{}---\n{}",
            manifest("scale-src", 1, None),
            manifest("scale-dr", 3, Some("scale-src"))
        ),
    )?;
    wait(
        "scale-dr to replicate scale-src",
        Duration::from_secs(180),
        || condition(c, "scale-dr", "SourceLinkUp").filter(|(s, _)| s == "True"),
    )
    .map_err(|e| {
        let status = c
            .kubectl(&["-n", NS, "get", "redisclusters", "-o", "yaml"])
            .unwrap_or_default();
        format!("{e}\n{status}")
    })?;

    let docs: Vec<String> = (0..n)
        .map(|i| manifest(&format!("scale-{i:03}"), 3, None))
        .collect();
    let reconciled_before = reconcile_metrics(c)?;
    let started = Instant::now();
    apply("clusters.yaml", &docs.join("---\n"))?;
    let applied = started.elapsed();
    // The promotion, while the operator works through the new clusters.
    let promote_started = Instant::now();
    c.kubectl(&[
        "-n",
        NS,
        "patch",
        "rediscluster",
        "scale-dr",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicaMode":{"promote":true}}}"#,
    ])?;
    let mut promotion = None;
    let mut objects = None;
    // This machine's API server takes N clusters' objects at a few per second under the load
    // of their pods starting: the bound grows with N.
    let objects_within = Duration::from_secs(120 + 2 * n as u64);
    let deadline = Instant::now() + objects_within;
    while (promotion.is_none() || objects.is_none()) && Instant::now() < deadline {
        // A poll the busy API server does not answer in time (its 60 s request timeout, seen at
        // N = 300) is "not yet", not the end of the benchmark.
        if objects.is_none() && statefulsets(c).unwrap_or(0) >= n + 2 {
            objects = Some(started.elapsed());
        }
        if promotion.is_none()
            && condition(c, "scale-dr", "ReplicaMode")
                .is_some_and(|(s, r)| s == "False" && r == "Promoted")
        {
            promotion = Some(promote_started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let objects = objects.ok_or(format!(
        "not every StatefulSet was created within {} s",
        objects_within.as_secs()
    ))?;
    let reconciled_after = reconcile_metrics(c)?;
    let ready = {
        let deadline = Instant::now() + Duration::from_secs(120 + n as u64 * 5);
        let mut ready = None;
        while Instant::now() < deadline {
            if ready_clusters(c).unwrap_or(0) >= n + 2 {
                ready = Some(started.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        ready
    };
    // Steady state.
    std::thread::sleep(Duration::from_secs(30));
    let pod = operator_leader(c).ok_or("no operator holds the Lease")?;
    let operator_pid = kube
        .pod(OPERATOR_NS, &pod)
        .map(|p| pod_processes(&p))
        .unwrap_or_default()
        .into_iter()
        .find(|(_, comm)| comm == "redis-operator")
        .map(|(pid, _)| pid)
        .ok_or("the operator's process was not found")?;
    let before = reconcile_metrics(c)?;
    let cpu_before = cpu_ticks(operator_pid)?;
    let from = k8s_openapi::jiff::Timestamp::now();
    std::thread::sleep(Duration::from_secs(60));
    let to = k8s_openapi::jiff::Timestamp::now();
    let cpu = cpu_ticks(operator_pid)? - cpu_before;
    let after = reconcile_metrics(c)?;
    std::thread::sleep(Duration::from_secs(2));
    let mut steady = BTreeMap::new();
    for r in operator_requests(c, from, to)? {
        *steady.entry(r).or_insert(0) += 1;
    }
    let lease_changes = c
        .kubectl(&[
            "-n",
            OPERATOR_NS,
            "get",
            "lease",
            "redis-operator-leader",
            "-o",
            "jsonpath={.spec.leaseTransitions}",
        ])?
        .trim()
        .parse::<u32>()
        .map_err(|e| format!("leaseTransitions: {e}"))?
        .saturating_sub(1);
    let baseline = baseline(o, c, n, &dir)?;
    Ok(Row {
        n,
        pods: n * 3 + 4,
        apply: applied,
        objects,
        reconcile_seconds: reconciled_after.1 - reconciled_before.1,
        reconciles_initial: reconciled_after.0 - reconciled_before.0,
        ready,
        promotion,
        steady,
        steady_reconciles: after.0 - before.0,
        rss_kib: rss_kib(operator_pid)?,
        // Clock ticks are 1/100 s on Linux.
        cpu_percent: cpu as f64 / 100.0 / 60.0 * 100.0,
        lease_changes,
        baseline,
    })
}

/// The baseline: `kubectl apply --server-side` of what the operator creates for N clusters
/// (rendered by `redis-operator render` from the same manifests), into namespace
/// `scale-baseline`. StatefulSets get 0 replicas (no pods: the API server's work only) and no
/// object keeps an ownerReference (its owner would not exist there).
fn baseline(o: &Options, c: &Cluster, n: usize, dir: &std::path::Path) -> Result<Duration, String> {
    const BASE_NS: &str = "scale-baseline";
    let operator = o.instance_manager.with_file_name("redis-operator");
    let mut rendered = String::new();
    for i in 0..n {
        let path = dir.join(format!("baseline-{i:03}.yaml"));
        let manifest = manifest(&format!("scale-{i:03}"), 3, None).replace(
            &format!("namespace: {NS}\n"),
            &format!("namespace: {BASE_NS}\n"),
        );
        std::fs::write(&path, manifest).map_err(|e| e.to_string())?;
        let out = std::process::Command::new(&operator)
            .arg("render")
            .arg(&path)
            .output()
            .map_err(|e| format!("{}: {e}", operator.display()))?;
        if !out.status.success() {
            return Err(format!(
                "redis-operator render: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        for doc in serde_yaml::Deserializer::from_slice(&out.stdout) {
            let mut v = serde_yaml::Value::deserialize(doc).map_err(|e| e.to_string())?;
            if v.is_null() {
                continue;
            }
            if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_mapping_mut()) {
                meta.remove("ownerReferences");
            }
            if v.get("kind").and_then(|k| k.as_str()) == Some("StatefulSet")
                && let Some(spec) = v.get_mut("spec").and_then(|m| m.as_mapping_mut())
            {
                spec.insert("replicas".into(), 0.into());
            }
            rendered.push_str("---\n");
            rendered.push_str(&serde_yaml::to_string(&v).map_err(|e| e.to_string())?);
        }
    }
    let path = dir.join("baseline.yaml");
    std::fs::write(&path, rendered).map_err(|e| e.to_string())?;
    c.kubectl(&["create", "namespace", BASE_NS])?;
    let started = Instant::now();
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=bench-baseline",
        "-f",
        &path.display().to_string(),
    ])?;
    Ok(started.elapsed())
}

/// `(status, reason)` of condition `type_` of cluster `name`.
fn condition(c: &Cluster, name: &str, type_: &str) -> Option<(String, String)> {
    let out = c
        .kubectl(&[
            "-n",
            NS,
            "get",
            "rediscluster",
            name,
            "-o",
            &format!(
                "jsonpath={{.status.conditions[?(@.type==\"{type_}\")].status}}/{{.status.conditions[?(@.type==\"{type_}\")].reason}}"
            ),
        ])
        .ok()?;
    let (s, r) = out.trim().split_once('/')?;
    (!s.is_empty()).then(|| (s.to_string(), r.to_string()))
}

fn statefulsets(c: &Cluster) -> Result<usize, String> {
    Ok(c.kubectl(&["-n", NS, "get", "statefulsets", "-o", "name"])?
        .lines()
        .count())
}

fn ready_clusters(c: &Cluster) -> Result<usize, String> {
    let out = c.kubectl(&[
        "-n",
        NS,
        "get",
        "redisclusters",
        "-o",
        "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
    ])?;
    Ok(out.lines().filter(|l| l.trim() == "True").count())
}

fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the command (which may hold spaces): utime is the 14th, stime the 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Ok(n(11) + n(12))
}

fn rss_kib(pid: u32) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or("no VmRSS".into())
}
