//! The spec's story, end to end: a DR cluster replicates production across regions, the link is
//! slowed, then cut; the DR cluster is promoted and takes writes; production comes back and
//! replicates from DR; finally the roles are swapped back with the spec's `promote: false`.
//! Every step is asserted and timed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_cluster_api::labels as l;
use redis_cluster_api::report::InstanceReport;
use redis_cluster_api::topology::FENCE_MIN_REPLICAS;
use redis_operator::config::redis_conf;
use redis_operator::platform::PodInfo;
use redis_topology::EventReason;
use serde_json::json;

use crate::controllers::{Controllers, Managed, sentinel_master, sentinels_settled};
use crate::net::{MAX_SENTINELS, NS_A, NS_B, PROD_LEADER_VIP, Regions, pod_ip, sentinel_ip};
use crate::procs::Proc;
use crate::prom::{Prometheus, http_get};
use crate::resp::{Conn, Reply};
use crate::sim::Sim;

pub const NS: &str = "production";
pub const PROD: &str = "prod-redis";
pub const DR: &str = "dr-redis";

pub struct Options {
    /// Explain each step for a newcomer.
    pub narrate: bool,
    /// The repository root (samples, rules).
    pub repo: PathBuf,
    /// Where logs and data go.
    pub dir: PathBuf,
    /// The redis-instance-manager binary.
    pub instance_manager: PathBuf,
}

/// The outcome: every check and every timing.
#[derive(Default)]
pub struct Report {
    pub checks: Vec<(String, Result<(), String>)>,
    pub timings: Vec<(String, Duration)>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.checks.iter().filter(|(_, r)| r.is_err()).count()
    }
}

pub(crate) struct Drill<'a> {
    pub(crate) o: &'a Options,
    pub(crate) sim: Arc<Sim>,
    pub(crate) regions: Regions,
    pub(crate) procs: BTreeMap<String, Proc>,
    pub(crate) passwords: BTreeMap<String, String>,
    pub(crate) report: Report,
}

/// How many pods the DR cluster has in this run: the main drill runs it with 5, like the spec's
/// cross-region example whose promoted leader reports `connected_slaves:4`; the other scenarios
/// keep the sample's 3. One scenario runs per process.
static DR_INSTANCES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(3);

/// Production's Sentinel `down-after-milliseconds` in the drill.
pub(crate) const SENTINEL_DOWN_AFTER_MS: u64 = 2000;
/// DR's `failover.primaryUnavailableSeconds` in the drill (default 10).
pub(crate) const DR_FAILOVER_AFTER_S: u64 = 3;

/// Most pods a region can hold (addresses assigned in each namespace).
pub(crate) const MAX_PODS: u32 = 5;

pub(crate) fn pods(cluster: &str) -> Vec<String> {
    let n = if cluster == DR {
        DR_INSTANCES.load(Ordering::Relaxed)
    } else {
        3
    };
    (0..n).map(|i| l::pod_name(cluster, i)).collect()
}

pub(crate) fn region_of(cluster: &str) -> char {
    if cluster == PROD { 'a' } else { 'b' }
}

pub(crate) fn addr(pod: &str) -> String {
    let cluster = if pod.starts_with(PROD) { PROD } else { DR };
    let ordinal = l::ordinal_of(cluster, pod).expect("drill pod names");
    format!("{}:6379", pod_ip(region_of(cluster), ordinal))
}

pub(crate) fn im_addr(pod: &str) -> String {
    addr(pod).replace(":6379", ":9121")
}

/// Poll `f` until it returns Some, or fail after `timeout` with `what`.
pub(crate) fn wait<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<(T, Duration), String> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok((v, start.elapsed()));
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn random_password() -> String {
    let bytes = std::fs::read("/proc/sys/kernel/random/uuid").unwrap_or_default();
    format!(
        "pw-{}",
        String::from_utf8_lossy(&bytes).trim().replace('-', "")
    )
}

/// `SET <prefix>:<i>` with an `size`-byte value for i in 0..n, pipelined 500 at a time; any
/// refused write is an error.
pub(crate) fn pipeline_sets(
    c: &mut Conn,
    prefix: &str,
    n: usize,
    size: usize,
) -> Result<(), String> {
    let value = "x".repeat(size);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        for i in chunk {
            c.send(&["SET", &format!("{prefix}:{i}"), &value])
                .map_err(|e| e.to_string())?;
        }
        for _ in chunk {
            let r = c.read().map_err(|e| e.to_string())?;
            if r.is_error() {
                return Err(format!("a write was refused: {}", r.text()));
            }
        }
    }
    Ok(())
}

impl<'a> Drill<'a> {
    /// Check the tools, create the two regions and an empty simulated cluster.
    pub(crate) fn prepare(o: &'a Options) -> Result<Drill<'a>, String> {
        for tool in ["redis-server", "redis-cli", "prometheus", "ip", "tc"] {
            crate::net::sh(&["sh", "-c", &format!("command -v {tool}")])
                .map_err(|_| format!("{tool} is not installed: run `make deps` (as root)"))?;
        }
        if !o.instance_manager.exists() {
            return Err(format!(
                "{} is missing: build it first (`make demo` does)",
                o.instance_manager.display()
            ));
        }
        let _ = std::fs::remove_dir_all(&o.dir);
        std::fs::create_dir_all(&o.dir).map_err(|e| e.to_string())?;
        let regions = Regions::create(MAX_PODS)?;
        let passwords = BTreeMap::from([
            (PROD.to_string(), random_password()),
            (DR.to_string(), random_password()),
        ]);
        Ok(Drill {
            o,
            sim: Arc::new(Sim::new(&o.dir)),
            regions,
            procs: BTreeMap::new(),
            passwords,
            report: Report::default(),
        })
    }

    pub(crate) fn say(&self, text: &str) {
        if self.o.narrate {
            println!("{text}");
        }
    }

    pub(crate) fn step(&self, title: &str, explain: &str) {
        println!("\n==> {title}");
        if self.o.narrate && !explain.is_empty() {
            for line in explain.lines() {
                println!("    {line}");
            }
        }
    }

    pub(crate) fn check(&mut self, name: &str, result: Result<(), String>) -> Result<(), String> {
        match &result {
            Ok(()) => println!("    ok   {name}"),
            Err(e) => println!("    FAIL {name}: {e}"),
        }
        self.report.checks.push((name.to_string(), result.clone()));
        result
    }

    pub(crate) fn time(&mut self, name: &str, d: Duration) {
        println!("    time {name}: {:.2}s", d.as_secs_f64());
        self.report.timings.push((name.to_string(), d));
    }

    pub(crate) fn conn(&self, pod: &str) -> Result<Conn, String> {
        let cluster = if pod.starts_with(PROD) { PROD } else { DR };
        // Retry a refused connection for a moment: when the simulated -leader Service moves
        // its address (`CONFIG SET bind`), Redis re-creates its listening sockets and refuses
        // connections for a few milliseconds; a real Service never touches Redis's listeners.
        let mut attempt = 0;
        loop {
            match Conn::connect(
                &addr(pod),
                Some(&self.passwords[cluster]),
                Duration::from_secs(2),
            ) {
                Ok(c) => return Ok(c),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && attempt < 10 => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(format!("{pod}: {e}")),
            }
        }
    }

    pub(crate) fn info(
        &self,
        pod: &str,
        section: &str,
    ) -> Result<BTreeMap<String, String>, String> {
        self.conn(pod)?
            .info(section)
            .map_err(|e| format!("{pod}: {e}"))
    }

    pub(crate) fn digest(&self, pod: &str) -> Result<String, String> {
        Ok(self
            .conn(pod)?
            .cmd(&["DEBUG", "DIGEST"])
            .map_err(|e| e.to_string())?
            .text())
    }

    pub(crate) fn status_report(&self, pod: &str) -> Option<InstanceReport> {
        let (code, body) = http_get(&im_addr(pod), "/status").ok()?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    pub(crate) fn condition(&self, cluster: &str, type_: &str) -> Option<(String, String, String)> {
        let rc = self.sim.get(NS, cluster);
        let c = rc
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)?;
        Some((c.status, c.reason, c.message))
    }

    /// Start the pods of `cluster` as its StatefulSet would: one redis-server and one
    /// redis-instance-manager per pod, in the cluster's region.
    pub(crate) fn start_pods(&mut self, cluster: &str) -> Result<(), String> {
        for i in 0..pods(cluster).len() as u32 {
            self.start_pod(cluster, i)?;
            let pod = l::pod_name(cluster, i);
            let ip = pod_ip(region_of(cluster), i);
            self.sim.platform.add_pod(
                NS,
                PodInfo {
                    name: pod.clone(),
                    labels: BTreeMap::from([(l::CLUSTER.into(), cluster.into())]),
                    annotations: BTreeMap::new(),
                    report_endpoint: Some(format!("{ip}:9121")),
                    address: ip,
                    problem: None,
                    redis_running: Some(true),
                },
            );
        }
        Ok(())
    }

    /// The containers of pod `ordinal` start (or restart): the init container regenerates
    /// redis.conf from the operator's template, keeping only a persisted `replicaof` line (see
    /// scripts::INIT_SCRIPT), then redis-server and the instance manager start.
    pub(crate) fn start_pod(&mut self, cluster: &str, ordinal: u32) -> Result<(), String> {
        let rc = self.sim.get(NS, cluster);
        let ns = if region_of(cluster) == 'a' {
            NS_A
        } else {
            NS_B
        };
        let env = self.sim.env(NS, cluster);
        let pod = l::pod_name(cluster, ordinal);
        let dir = self.sim.pod_dir(&pod);
        std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
        let ip = pod_ip(region_of(cluster), ordinal);
        let kept: String = std::fs::read_to_string(dir.join("redis.conf"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("replicaof "))
            .map(|l| format!("{l}\n"))
            .collect();
        // The operator's own redis.conf, with the pod's paths; DEBUG DIGEST enabled so the
        // drill can compare keyspaces (drill only).
        let conf = redis_conf(&rc)
            .replace("bind * -::*", &format!("bind {ip}"))
            .replace("dir /data", &format!("dir {}", dir.join("data").display()))
            .replace(
                "include /run/redis/auth.conf",
                &format!("include {}", dir.join("auth.conf").display()),
            )
            + "enable-debug-command yes\n"
            // Outgoing connections from the pod's own address, as a pod's would be (all
            // pods of a region share one namespace here).
            + &format!("bind-source-addr {ip}\n")
            + &format!("replica-announce-ip {ip}\n")
            + &kept;
        std::fs::write(dir.join("redis.conf"), conf).map_err(|e| e.to_string())?;
        let pw = &self.passwords[cluster];
        // What the pod's init container writes (see scripts::INIT_SCRIPT).
        std::fs::write(
            dir.join("auth.conf"),
            format!("requirepass \"{pw}\"\nmasterauth \"{pw}\"\n"),
        )
        .map_err(|e| e.to_string())?;
        let redis = Proc::spawn(
            &format!("{pod}/redis"),
            Some(ns),
            &[
                "redis-server".into(),
                dir.join("redis.conf").display().to_string(),
            ],
            &dir.join("redis.log"),
        )?;
        self.procs.insert(format!("{pod}/redis"), redis);
        let im = Proc::spawn(
            &format!("{pod}/instance-manager"),
            Some(ns),
            &[
                self.o.instance_manager.display().to_string(),
                format!("--cluster={cluster}"),
                format!("--namespace={NS}"),
                format!("--pod={pod}"),
                format!("--redis-addr={ip}:6379"),
                format!("--redis-password-file={}", env.auth_password_file),
                format!("--topology-file={}", dir.join("annotations").display()),
                format!("--http-addr={ip}:9121"),
            ],
            &dir.join("instance-manager.log"),
        )?;
        self.procs.insert(format!("{pod}/instance-manager"), im);
        self.sim.set_redis_running(NS, &pod, true);
        Ok(())
    }

    /// The pod's Redis container dies and stays down (crash loop back-off): the kubelet reports
    /// it not running. The instance manager sidecar keeps running, as in a pod.
    pub(crate) fn kill_redis(&mut self, pod: &str) {
        if let Some(mut p) = self.procs.remove(&format!("{pod}/redis")) {
            p.kill();
        }
        self.sim.set_redis_running(NS, pod, false);
    }

    /// The kubelet restarts the Redis container (the sidecar is restarted too, for simplicity).
    pub(crate) fn restart_pod(&mut self, cluster: &str, pod: &str) -> Result<(), String> {
        if let Some(mut p) = self.procs.remove(&format!("{pod}/instance-manager")) {
            p.kill();
        }
        let ordinal = l::ordinal_of(cluster, pod).ok_or("not a pod of the cluster")?;
        self.start_pod(cluster, ordinal)
    }

    /// What the StatefulSet controller does: once the operator has applied the cluster's
    /// StatefulSet, its pods start.
    pub(crate) fn start_pods_when_applied(&mut self, cluster: &str) -> Result<(), String> {
        let key = format!("StatefulSet/{NS}/{cluster}");
        wait(
            &format!("the operator to apply {key}"),
            Duration::from_secs(10),
            || {
                let state = self.sim.platform.state.lock().unwrap();
                state.objects.contains_key(&key).then_some(())
            },
        )?;
        self.start_pods(cluster)
    }

    pub(crate) fn all_alive(&mut self) -> Result<(), String> {
        let dead: Vec<String> = self
            .procs
            .iter_mut()
            .filter_map(|(n, p)| (!p.alive()).then(|| n.clone()))
            .collect();
        if dead.is_empty() {
            Ok(())
        } else {
            Err(format!("exited: {dead:?}"))
        }
    }

    pub(crate) fn write_keys(
        &self,
        pod: &str,
        prefix: &str,
        n: usize,
        size: usize,
    ) -> Result<(), String> {
        pipeline_sets(&mut self.conn(pod)?, prefix, n, size).map_err(|e| format!("{pod}: {e}"))
    }

    /// Every pod of both clusters holds the same keyspace.
    pub(crate) fn digests_equal(&self, pods: &[String]) -> Result<(), String> {
        let digests: Vec<(String, String)> = pods
            .iter()
            .map(|p| Ok((p.clone(), self.digest(p)?)))
            .collect::<Result<_, String>>()?;
        if digests.iter().all(|(_, d)| d == &digests[0].1) {
            Ok(())
        } else {
            Err(format!("digests differ: {digests:?}"))
        }
    }

    /// Wait until `cluster`'s condition `type_` has this status, reason (any when None) and message.
    fn wait_condition(
        &self,
        cluster: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
        message: &str,
    ) -> Result<(), String> {
        wait(
            &format!("{cluster} {type_}={status}"),
            Duration::from_secs(10),
            || {
                self.condition(cluster, type_)
                    .filter(|c| c.0 == status && reason.is_none_or(|r| c.1 == r) && c.2 == message)
            },
        )
        .map(|_| ())
    }

    /// Wait until every pod of both clusters holds the same keyspace.
    fn keyspaces_converge(&self) -> Result<(), String> {
        let all: Vec<String> = pods(PROD).into_iter().chain(pods(DR)).collect();
        wait("digests to converge", Duration::from_secs(30), || {
            self.digests_equal(&all).ok()
        })
        .map(|_| ())
    }

    pub(crate) fn linked_to(&self, pod: &str, upstream_ip: &str) -> bool {
        self.info(pod, "replication").is_ok_and(|i| {
            i.get("master_host").map(String::as_str) == Some(upstream_ip)
                && i.get("master_link_status").map(String::as_str) == Some("up")
                && i.get("master_sync_in_progress").map(String::as_str) == Some("0")
        })
    }
}

/// Samples every node's role and fails the drill if two writable primaries ever coexist in one
/// cluster.
struct SplitBrainChecker {
    stop: Arc<AtomicBool>,
    violations: Arc<Mutex<Vec<String>>>,
    samples: Arc<Mutex<u64>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl SplitBrainChecker {
    fn start(passwords: BTreeMap<String, String>) -> SplitBrainChecker {
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let samples = Arc::new(Mutex::new(0));
        let (s, v, n) = (stop.clone(), violations.clone(), samples.clone());
        let handle = std::thread::spawn(move || {
            let mut conns: BTreeMap<String, Conn> = BTreeMap::new();
            while !s.load(Ordering::Relaxed) {
                for cluster in [PROD, DR] {
                    let mut writable = Vec::new();
                    for pod in pods(cluster) {
                        let role = conns
                            .get_mut(&pod)
                            .and_then(|c| c.cmd(&["ROLE"]).ok())
                            .or_else(|| {
                                let mut c = Conn::connect(
                                    &addr(&pod),
                                    Some(&passwords[cluster]),
                                    Duration::from_millis(300),
                                )
                                .ok()?;
                                let r = c.cmd(&["ROLE"]).ok();
                                conns.insert(pod.clone(), c);
                                r
                            });
                        match role {
                            Some(Reply::Array(Some(items)))
                                if items.first().map(Reply::text).as_deref() == Some("master") =>
                            {
                                // A fenced master (booted fenced, or fenced by the operator)
                                // refuses every write: not a second primary.
                                let fenced = conns
                                    .get_mut(&pod)
                                    .and_then(|c| {
                                        c.cmd(&["CONFIG", "GET", "min-replicas-to-write"]).ok()
                                    })
                                    .and_then(|r| match r {
                                        Reply::Array(Some(kv)) => kv.get(1)?.text().parse().ok(),
                                        _ => None,
                                    })
                                    .is_some_and(|v: u64| v >= u64::from(FENCE_MIN_REPLICAS));
                                if !fenced {
                                    writable.push(pod.clone())
                                }
                            }
                            Some(_) => {}
                            None => {
                                conns.remove(&pod);
                            }
                        }
                    }
                    if writable.len() > 1 {
                        v.lock()
                            .unwrap()
                            .push(format!("{cluster}: {writable:?} writable at once"));
                    }
                }
                *n.lock().unwrap() += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        SplitBrainChecker {
            stop,
            violations,
            samples,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let samples = *self.samples.lock().unwrap();
        let violations = self.violations.lock().unwrap().clone();
        (samples, violations)
    }
}

/// Run the whole drill.
pub fn run(o: &Options) -> Report {
    let mut report = Report::default();
    match run_inner(o, &mut report) {
        Ok(()) => {}
        Err(e) => report.checks.push(("drill aborted".into(), Err(e))),
    }
    report
}

fn run_inner(o: &Options, out: &mut Report) -> Result<(), String> {
    let mut d = Drill::prepare(o)?;
    let result = scenario(&mut d);
    // Stop the instance managers before Redis so nothing logs spurious errors while tearing down.
    let names: Vec<String> = d.procs.keys().cloned().collect();
    for n in names.iter().filter(|n| n.ends_with("instance-manager")) {
        d.procs.get_mut(n).unwrap().kill();
    }
    *out = std::mem::take(&mut d.report);
    if let Err(e) = &result {
        println!("    FAIL {e}");
        println!("\nlogs and data: {}", o.dir.display());
        out.checks.push(("scenario".into(), Err(e.clone())));
    }
    Ok(())
}

/// The operator: reconciles every cluster every 300 ms until stopped.
pub(crate) fn operator_loop(sim: Arc<Sim>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        while !stop.load(Ordering::Relaxed) {
            for (cluster, result) in rt.block_on(sim.reconcile_all()) {
                if let Err(e) = result {
                    eprintln!("reconcile {cluster}: {e}");
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    })
}

fn scenario(d: &mut Drill) -> Result<(), String> {
    let samples = d.o.repo.join("config/samples");
    let read = |f: &str| std::fs::read_to_string(samples.join(f)).map_err(|e| format!("{f}: {e}"));

    d.step(
        "Setup: two regions, production in A, DR in B",
        "Region A and region B are network namespaces joined by one veth pair: the inter-region link.\n\
         Each 'pod' is a real redis-server plus the real redis-instance-manager sidecar.\n\
         The Kubernetes API is simulated (objects, annotations, status); the operator's real reconcile\n\
         code drives it. Production is the spec's prod-redis sample in sentinel mode: three real\n\
         redis-sentinel processes started from the operator's Sentinel StatefulSet. No DNS here: the\n\
         DR sample's source.host is production's -leader endpoint as a LoadBalancer address (a virtual\n\
         IP that follows the pod labelled primary); the DR cluster runs 5 instances, like the spec's\n\
         redis-west.",
    );
    d.sim.add_secret(NS, "prod-redis-auth", &d.passwords[PROD]);
    d.sim.add_secret(NS, "dr-redis-auth", &d.passwords[DR]);
    d.sim.sentinel_addresses.lock().unwrap().insert(
        PROD.into(),
        (0..MAX_SENTINELS)
            .map(|i| format!("{}:{}", sentinel_ip('a', i), l::SENTINEL_PORT))
            .collect(),
    );
    // The spec's prod-redis sample (mode: sentinel), with a Sentinel down-after short enough
    // for a drill (the default is 5 s).
    d.sim.apply(&read("prod-redis.yaml")?, |v| {
        v["spec"]["sentinel"] = json!({"downAfterMilliseconds": SENTINEL_DOWN_AFTER_MS});
        // An isolated primary stops taking writes (min-replicas-to-write 1, max-lag 10 s).
        v["spec"]["minSyncReplicas"] = 1.into();
    })?;
    // DR replicates production's -leader endpoint (a LoadBalancer address here).
    let prod_leader_ip = PROD_LEADER_VIP.to_string();
    let ip = prod_leader_ip.clone();
    DR_INSTANCES.store(5, Ordering::Relaxed);
    d.sim.apply(&read("dr-redis.yaml")?, move |v| {
        v["spec"]["replicaMode"]["source"]["host"] = ip.into();
        v["spec"]["instances"] = 5.into();
        v["spec"]["failover"] = json!({"primaryUnavailableSeconds": DR_FAILOVER_AFTER_S});
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let operator = operator_loop(d.sim.clone(), stop.clone());
    let controllers = Controllers::start(
        d.sim.clone(),
        vec![Managed {
            namespace: NS.into(),
            cluster: PROD.into(),
            region: 'a',
            password: d.passwords[PROD].clone(),
            leader_vip: Some(PROD_LEADER_VIP.into()),
        }],
        d.o.dir.join("sentinels"),
    );
    let result = story(d, &prod_leader_ip);
    drop(controllers);
    stop.store(true, Ordering::Relaxed);
    let _ = operator.join();
    result
}

fn story(d: &mut Drill, prod_leader_ip: &str) -> Result<(), String> {
    d.start_pods_when_applied(PROD)?;
    d.start_pods_when_applied(DR)?;
    let targets: Vec<String> = pods(PROD)
        .iter()
        .chain(pods(DR).iter())
        .map(|p| im_addr(p))
        .collect();
    let prom_dir = d.o.dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir).map_err(|e| e.to_string())?;
    let prom = Prometheus::start(
        &prom_dir,
        &targets,
        &d.o.repo
            .join("config/prometheus/redis-replication-rules.yaml"),
    )?;
    d.say(&format!(
        "    Prometheus: http://{} (try: redis_replication_lag_bytes, redis_master_link_up)",
        prom.addr
    ));
    d.say(&format!(
        "    logs: {}/pods/<pod>/{{redis,instance-manager}}.log",
        d.o.dir.display()
    ));

    // ---- 1. create: DR catches up ----------------------------------------------------------
    d.step(
        "1. Production is primary; DR replicates it from every pod",
        "prod-redis-0 becomes primary (pod 0 is the designated leader); DR pods replicate it across regions.",
    );
    let (_, took) = wait(
        "prod-redis-0 to accept writes",
        Duration::from_secs(30),
        || {
            d.conn("prod-redis-0")
                .ok()?
                .cmd(&["SET", "drill:hello", "world"])
                .ok()
                .filter(|r| !r.is_error())
        },
    )?;
    d.time("production primary ready", took);
    d.write_keys("prod-redis-0", "seed", 5000, 100)?;
    let (_, took) = wait(
        "every DR pod linked to production and caught up",
        Duration::from_secs(60),
        || {
            let prod_offset = d
                .info("prod-redis-0", "replication")
                .ok()?
                .get("master_repl_offset")?
                .clone();
            pods(DR)
                .iter()
                .chain(pods(PROD).iter().skip(1))
                .all(|p| {
                    d.info(p, "replication").is_ok_and(|i| {
                        i.get("master_link_status").map(String::as_str) == Some("up")
                            && i.get("slave_repl_offset") == Some(&prod_offset)
                    })
                })
                .then_some(())
        },
    )?;
    d.time("DR caught up after seeding 5000 keys", took);
    let all: Vec<String> = pods(PROD).into_iter().chain(pods(DR)).collect();
    let r = d.digests_equal(&all);
    d.check(
        "every DR pod's keyspace equals production's (DEBUG DIGEST)",
        r,
    )?;
    let expected =
        format!("Cluster is replicating from prod-redis-us-east ({prod_leader_ip}:6379)");
    let r = d.wait_condition(DR, "ReplicaMode", "True", Some("Enabled"), &expected);
    d.check(
        &format!("status: ReplicaMode=True/Enabled \"{expected}\""),
        r,
    )?;
    let labels = d
        .sim
        .platform
        .pod(NS, "dr-redis-0")
        .map(|p| p.labels)
        .unwrap_or_default();
    let r = if labels.get(l::ROLE).map(String::as_str) == Some("primary") {
        Ok(())
    } else {
        Err(format!("{labels:?}"))
    };
    d.check("dr-redis-0 is labelled redis.io/role=primary while it is a replica (stable -leader endpoint)", r)?;
    let checker = SplitBrainChecker::start(d.passwords.clone());

    // ---- 2. lag under a rate-limited link ---------------------------------------------------
    d.step(
        "2. Write load with the inter-region link rate-limited",
        "tc tbf limits region A -> B. redis_replication_lag_bytes is the source's current offset minus\n\
         the replica's, read by the instance manager from the source itself.",
    );
    d.regions.rate_limit("8mbit")?;
    d.write_keys("prod-redis-0", "load", 2000, 1024)?;
    let r = wait("Prometheus to see lag > 0", Duration::from_secs(15), || {
        prom.scalar("max(redis_replication_lag_bytes{cluster=\"dr-redis\"})")
            .ok()
            .flatten()
            .filter(|v| *v > 0.0)
    });
    let peak = r.as_ref().map(|(v, _)| *v).unwrap_or(0.0);
    d.check(
        &format!("redis_replication_lag_bytes rises above 0 in Prometheus (saw {peak:.0} bytes)"),
        r.map(|_| ()),
    )?;
    // Independent measurement, sandwiching the instance manager's sample in time: the lag only
    // shrinks once the load stopped, so the sidecar's value must lie between a measurement taken
    // before its sample and one taken after.
    let independent = |d: &Drill| -> Option<i64> {
        let up: i64 = d
            .info("prod-redis-0", "replication")
            .ok()?
            .get("master_repl_offset")?
            .parse()
            .ok()?;
        let down: i64 = d
            .info("dr-redis-0", "replication")
            .ok()?
            .get("slave_repl_offset")?
            .parse()
            .ok()?;
        Some(up - down)
    };
    // A reading can fail transiently (a connection refused while the simulated -leader
    // Service moves): retry it rather than count a failed reading as 0.
    let measure = |d: &Drill| {
        wait("an independent lag reading", Duration::from_secs(2), || {
            independent(d)
        })
        .map(|(v, _)| v)
        .unwrap_or(-1)
    };
    let before = measure(d);
    // The sidecar probes every second: its latest sample is at most ~1.2 s old.
    std::thread::sleep(Duration::from_millis(1500));
    let sidecar = wait("the sidecar's lag", Duration::from_secs(3), || {
        d.status_report("dr-redis-0").and_then(|r| r.lag_bytes)
    })
    .map(|(lag, _)| lag)
    .unwrap_or(-1);
    let after = measure(d);
    let r = if before > 0 && sidecar <= before + 256 && sidecar + 256 >= after {
        Ok(())
    } else {
        Err(format!(
            "independent before={before} after={after}, sidecar={sidecar}"
        ))
    };
    d.check(
        &format!("sidecar lag agrees with an independent measurement ({after} <= {sidecar} <= {before} bytes, ±256)"),
        r,
    )?;
    let (_, drained) = wait(
        "lag back to 0 in Prometheus",
        Duration::from_secs(60),
        || {
            prom.scalar("max(redis_replication_lag_bytes{cluster=\"dr-redis\"})")
                .ok()
                .flatten()
                .filter(|v| *v == 0.0)
        },
    )?;
    d.check("lag returns to 0 when the load stops", Ok(()))?;
    d.time("lag drained after load", drained);
    d.regions.unlimit()?;

    // ---- 2b. production loses its primary pod: the Sentinels fail over ---------------------
    sentinel_failover(d)?;

    // ---- 3. cut the link --------------------------------------------------------------------
    d.step(
        "3. Region A is lost: the link is cut silently (no TCP reset)",
        "Redis itself would only notice after repl-timeout (60 s). The instance manager probes the\n\
         source every second and reports the link down within seconds.",
    );
    d.regions.cut()?;
    let cut = Instant::now();
    let (_, took) = wait(
        "the instance manager to report the link down",
        Duration::from_secs(15),
        || d.status_report("dr-redis-0").filter(|r| !r.master_link_up),
    )?;
    d.time("link cut -> redis_master_link_up 0 (sidecar)", took);
    let r = if took < Duration::from_secs(10) {
        Ok(())
    } else {
        Err(format!("{took:?}"))
    };
    d.check("link down detected long before repl-timeout (60 s)", r)?;
    let (summary, _) = wait(
        "RedisReplicationDown to fire",
        Duration::from_secs(30),
        || {
            prom.firing()
                .ok()?
                .into_iter()
                .find(|(n, _)| n == "RedisReplicationDown")
                .map(|(_, s)| s)
        },
    )?;
    d.time(
        "link cut -> RedisReplicationDown firing (for: 3s in the drill)",
        cut.elapsed(),
    );
    d.check(
        &format!("alert RedisReplicationDown fires: \"{summary}\""),
        Ok(()),
    )?;
    let r = wait("status SourceLinkUp=False", Duration::from_secs(10), || {
        d.condition(DR, "SourceLinkUp").filter(|c| c.0 == "False")
    })
    .map(|(c, _)| c.2);
    let msg = r.clone().unwrap_or_default();
    d.check(
        &format!("status shows the link down: \"{msg}\""),
        r.map(|_| ()),
    )?;
    let r = d.all_alive();
    d.check("nothing crashed", r)?;

    // ---- 4. promote -------------------------------------------------------------------------
    d.step(
        "4. Promote the DR cluster (the spec's patch: promote: true)",
        "kubectl patch rediscluster dr-redis --type=merge -p '{\"spec\":{\"replicaMode\":{\"promote\":true}}}'\n\
         The leader is told first (REPLICAOF NO ONE); the others follow it only once it reports primary.",
    );
    let full_before = stat(d, "dr-redis-0", "sync_full")?;
    let patched = Instant::now();
    d.sim
        .patch(NS, DR, &json!({"spec": {"replicaMode": {"promote": true}}}))?;
    let (_, took) = wait(
        "dr-redis-0 to accept a write",
        Duration::from_secs(30),
        || {
            d.conn("dr-redis-0")
                .ok()?
                .cmd(&["SET", "drill:promoted", "yes"])
                .ok()
                .filter(|r| !r.is_error())
        },
    )?;
    d.time(
        "promotion: patch -> first accepted write on the leader",
        took,
    );
    let leader_ip = pod_ip('b', 0);
    let (_, _) = wait(
        "the other DR pods to follow the leader",
        Duration::from_secs(30),
        || {
            pods(DR)
                .iter()
                .skip(1)
                .all(|p| d.linked_to(p, &leader_ip))
                .then_some(())
        },
    )?;
    d.time(
        "promotion: patch -> replicas re-attached to the leader",
        patched.elapsed(),
    );
    let full_after = stat(d, "dr-redis-0", "sync_full")?;
    let partial = stat(d, "dr-redis-0", "sync_partial_ok")?;
    let r = if full_after == full_before && partial >= 2 {
        Ok(())
    } else {
        Err(format!(
            "sync_full {full_before}->{full_after}, sync_partial_ok {partial}"
        ))
    };
    d.check(
        &format!(
            "zero full resyncs on the DR side (sync_full {full_after}, sync_partial_ok {partial})"
        ),
        r,
    )?;
    let replicas = d
        .info("dr-redis-0", "replication")?
        .get("connected_slaves")
        .cloned()
        .unwrap_or_default();
    d.check(
        &format!("the leader reports connected_slaves:{replicas}"),
        if replicas == (pods(DR).len() - 1).to_string() {
            Ok(())
        } else {
            Err(replicas.clone())
        },
    )?;
    let expected = "Cluster promoted to standalone (former source: prod-redis-us-east)";
    let r = d.wait_condition(DR, "ReplicaMode", "False", Some("Promoted"), expected);
    d.check(
        &format!("status: ReplicaMode=False/Promoted \"{expected}\""),
        r,
    )?;
    let primary = d.sim.get(NS, DR).status.and_then(|s| s.current_primary);
    d.check(
        "status.currentPrimary is dr-redis-0",
        if primary.as_deref() == Some("dr-redis-0") {
            Ok(())
        } else {
            Err(format!("{primary:?}"))
        },
    )?;

    // ---- 4b. DR's primary pod dies: the operator fails over ---------------------------------
    let dr_primary = standalone_failover(d)?;
    let leader_ip = pod_ip('b', l::ordinal_of(DR, &dr_primary).unwrap_or(0));

    // ---- 5. DR takes writes; production comes back as its replica --------------------------
    d.step(
        "5. DR takes writes; region A comes back and replicates from DR (the spec's \"Recover Primary Region\")",
        "prod-redis gets replicaMode.enabled: true with source = dr-redis's leader.",
    );
    d.write_keys(&dr_primary, "dr-writes", 1000, 100)?;
    d.regions.restore()?;
    let dr_ip = leader_ip.clone();
    let recovered = Instant::now();
    d.sim.apply(&std::fs::read_to_string(d.o.repo.join("config/samples/prod-redis.yaml")).map_err(|e| e.to_string())?, move |v| {
        v["spec"]["replicaMode"] = json!({
            "enabled": true,
            "source": {"host": dr_ip, "port": 6379, "clusterName": "dr-redis", "authSecretName": "dr-redis-auth"}
        });
    })?;
    wait(
        "production to replicate DR",
        Duration::from_secs(60),
        || {
            pods(PROD)
                .iter()
                .all(|p| d.linked_to(p, &leader_ip))
                .then_some(())
        },
    )?;
    d.time(
        "recovery: apply -> production replicating DR",
        recovered.elapsed(),
    );
    let r = d.keyspaces_converge();
    d.check(
        &format!(
            "production converged: all {} keyspaces equal",
            pods(PROD).len() + pods(DR).len()
        ),
        r,
    )?;
    let expected = format!("Cluster is replicating from dr-redis ({leader_ip}:6379)");
    let r = d.wait_condition(PROD, "ReplicaMode", "True", None, &expected);
    d.check(&format!("prod-redis status: \"{expected}\""), r)?;
    let prod_full = stat(d, "dr-redis-0", "sync_full")?;
    d.say(&format!("    production resynchronised from DR with {prod_full} full sync(s): its pings during the cut moved its offset past DR's"));

    // ---- 6. fail back with the spec's promote: false ----------------------------------------
    d.step(
        "6. Fail back: promote production, then return DR to replica mode (promote: false)",
        "The spec says promotion is one-way, yet its DR drill demotes with promote: false. We implement\n\
         the drill: DR returns to replicating its source, with a Warning Event saying local writes since\n\
         promotion are discarded.",
    );
    d.sim.patch(
        NS,
        PROD,
        &json!({"spec": {"replicaMode": {"promote": true}}}),
    )?;
    wait(
        "prod-redis-0 to accept writes again",
        Duration::from_secs(30),
        || {
            d.conn("prod-redis-0")
                .ok()?
                .cmd(&["SET", "drill:failback", "yes"])
                .ok()
                .filter(|r| !r.is_error())
        },
    )?;
    let demoted = Instant::now();
    d.sim.patch(
        NS,
        DR,
        &json!({"spec": {"replicaMode": {"promote": false}}}),
    )?;
    wait(
        "DR to replicate production again",
        Duration::from_secs(60),
        || {
            pods(DR)
                .iter()
                .all(|p| d.linked_to(p, prod_leader_ip))
                .then_some(())
        },
    )?;
    d.time(
        "demotion: patch -> DR replicating production",
        demoted.elapsed(),
    );
    let warned = d
        .sim
        .events
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.0 == DR && e.2 == EventReason::Demoting.as_str())
        .cloned();
    let r = match &warned {
        Some((_, t, _, note)) if t == "Warning" && note.contains("discarded") => Ok(()),
        other => Err(format!("{other:?}")),
    };
    d.check(
        "Warning event Demoting says local writes since promotion are discarded",
        r,
    )?;
    let r = d.keyspaces_converge();
    d.check(
        &format!(
            "after fail-back all {} keyspaces are equal again",
            pods(PROD).len() + pods(DR).len()
        ),
        r,
    )?;
    let expected =
        format!("Cluster is replicating from prod-redis-us-east ({prod_leader_ip}:6379)");
    let r = d.wait_condition(DR, "ReplicaMode", "True", Some("Enabled"), &expected);
    d.check("DR status back to ReplicaMode=True/Enabled", r)?;

    let (samples, violations) = checker.finish();
    let r = if violations.is_empty() {
        Ok(())
    } else {
        Err(violations.join("; "))
    };
    d.check(&format!("no split brain: never two writable primaries in one cluster ({samples} samples of every node)"), r)?;
    let r = d.all_alive();
    d.check("every redis-server and instance manager still running", r)?;
    if d.o.narrate {
        println!("\n    kubectl describe rediscluster dr-redis (Events, simulated):");
        for (cluster, t, reason, note) in d
            .sim
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 == DR && e.2 != "TopologyPublished")
        {
            println!("      {t:<8} {reason:<20} {cluster}: {note}");
        }
    }
    Ok(())
}

/// Which pod carries `redis.io/role=primary` (what the `-leader` Service selects).
pub(crate) fn labelled_primary(d: &Drill, cluster: &str) -> Option<String> {
    pods(cluster).into_iter().find(|p| {
        d.sim
            .platform
            .pod(NS, p)
            .is_some_and(|p| p.labels.get(l::ROLE).map(String::as_str) == Some(l::ROLE_PRIMARY))
    })
}

/// A numeric `INFO` field (0 when absent).
pub(crate) fn num(info: &BTreeMap<String, String>, field: &str) -> u64 {
    info.get(field).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn stat(d: &Drill, pod: &str, field: &str) -> Result<u64, String> {
    Ok(num(&d.info(pod, "stats")?, field))
}

fn offset(d: &Drill, pod: &str) -> Option<String> {
    d.info(pod, "replication")
        .ok()?
        .get("master_repl_offset")
        .cloned()
}

/// Every pod in `replicas` linked and at `primary`'s offset (nothing in flight).
fn caught_up(d: &Drill, primary: &str, replicas: &[String]) -> Option<()> {
    let target = offset(d, primary)?;
    replicas
        .iter()
        .all(|p| {
            d.info(p, "replication").is_ok_and(|i| {
                i.get("master_link_status").map(String::as_str) == Some("up")
                    && i.get("slave_repl_offset") == Some(&target)
            })
        })
        .then_some(())
}

/// Write `n` keys through `addr`, each acknowledged with `WAIT acks`: the keys whose WAIT
/// reached `acks` replicas.
fn acked_writes(
    addr: &str,
    password: &str,
    prefix: &str,
    n: usize,
    acks: usize,
) -> Result<Vec<String>, String> {
    let mut c = Conn::connect(addr, Some(password), Duration::from_secs(2))
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut acked = Vec::new();
    for i in 0..n {
        let key = format!("{prefix}:{i}");
        if c.cmd(&["SET", &key, "v"]).is_ok_and(|r| !r.is_error())
            && let Ok(Reply::Int(got)) = c.cmd(&["WAIT", &acks.to_string(), "2000"])
            && got as usize >= acks
        {
            acked.push(key);
        }
    }
    if acked.len() < n {
        return Err(format!(
            "only {} of {n} writes were acknowledged by {acks} replicas",
            acked.len()
        ));
    }
    Ok(acked)
}

/// Every key of `keys` exists on `pod`; the error says how many are missing, with examples.
fn keys_present(d: &Drill, pod: &str, keys: &[String]) -> Result<(), String> {
    let mut c = d.conn(pod)?;
    let mut missing = Vec::new();
    for k in keys {
        match c.cmd(&["EXISTS", k]) {
            Ok(Reply::Int(1)) => {}
            _ => missing.push(k.clone()),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(3)]
        ))
    }
}

/// The old primary's container comes back; it must rejoin `new` as a replica, and the sampler
/// (running since before its death or its restart) must have had no write accepted.
fn rejoins_without_writes(
    d: &mut Drill,
    cluster: &str,
    old: &str,
    new: &str,
    sampler: NoWriteSampler,
    mode: &str,
) -> Result<(), String> {
    d.restart_pod(cluster, old)?;
    let new_ip = addr(new).replace(":6379", "");
    let (_, took) = wait(
        "the old primary to rejoin as a replica",
        Duration::from_secs(60),
        || d.linked_to(old, &new_ip).then_some(()),
    )?;
    d.time(
        &format!("{mode}: old primary restarted -> linked replica"),
        took,
    );
    let (samples, accepted) = sampler.finish();
    d.check(
        &format!("{old} rejoined as a replica of {new} and accepted no write meanwhile ({samples} write attempts)"),
        if accepted.is_empty() {
            Ok(())
        } else {
            Err(accepted.join("; "))
        },
    )
}

fn event(d: &Drill, cluster: &str, reason: EventReason) -> Option<(String, String)> {
    d.sim
        .events
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e.0 == cluster && e.2 == reason.as_str())
        .map(|e| (e.1.clone(), e.3.clone()))
}

/// Production (mode: sentinel) loses its primary pod; the Sentinels elect another; the operator
/// follows; DR follows through the same endpoint with partial resyncs only.
fn sentinel_failover(d: &mut Drill) -> Result<(), String> {
    d.step(
        "2b. Production loses its primary pod: Sentinel failover inside region A",
        "prod-redis runs mode: sentinel: the operator's 3 Sentinels elect a new primary; the operator follows\n\
         (role label -> -leader endpoint, status.currentPrimary, a Failover Event); the DR cluster follows the\n\
         new primary behind the same source.host with partial resyncs only; the old primary rejoins as replica.",
    );
    let old = "prod-redis-0".to_string();
    let replicas: Vec<String> = pods(PROD).into_iter().skip(1).chain(pods(DR)).collect();
    wait(
        "every replica at production's offset",
        Duration::from_secs(60),
        || caught_up(d, &old, &replicas),
    )?;
    let master = l::sentinel_master_name(PROD);
    let sentinel0 = format!("{}:{}", sentinel_ip('a', 0), l::SENTINEL_PORT);
    let pw = d.passwords[PROD].clone();
    let addrs: Vec<String> = (0..MAX_SENTINELS)
        .map(|i| format!("{}:{}", sentinel_ip('a', i), l::SENTINEL_PORT))
        .collect();
    // Sentinels learn replicas from the primary's INFO every 10 s; DR pods are hidden
    // (replica-announced no), so they see exactly production's 2 replicas.
    let r = wait(
        "the Sentinels to monitor prod-redis-0 and know its 2 replicas",
        Duration::from_secs(30),
        || {
            let replicas = [pod_ip('a', 1), pod_ip('a', 2)];
            sentinels_settled(&addrs, &pw, &master, &pod_ip('a', 0), &replicas).then_some(())
        },
    );
    d.check(
        "3 operator-managed Sentinels (real redis-sentinel) monitor prod-redis-0, know its 2 replicas and not the 5 DR pods",
        r.map(|_| ()),
    )?;
    // Acknowledged writes: WAIT for more replicas than DR has, so at least one production
    // replica holds each of them (the Sentinels pick the production replica with the highest
    // offset).
    let acks = pods(DR).len() + 1;
    let vip = format!("{PROD_LEADER_VIP}:6379");
    let acked = acked_writes(&vip, &pw, "acked-before-failover", 200, acks)?;
    wait(
        "every replica at production's offset",
        Duration::from_secs(60),
        || caught_up(d, &old, &replicas),
    )?;
    let before: BTreeMap<String, (u64, u64)> = pods(PROD)
        .into_iter()
        .skip(1)
        .map(|p| {
            let full = stat(d, &p, "sync_full").unwrap_or(0);
            let partial = stat(d, &p, "sync_partial_ok").unwrap_or(0);
            (p, (full, partial))
        })
        .collect();
    let killed = Instant::now();
    d.kill_redis(&old);
    let (elected_ip, took) = wait(
        "the Sentinels to elect a new primary",
        Duration::from_secs(60),
        || sentinel_master(&sentinel0, &pw, &master).filter(|ip| *ip != pod_ip('a', 0)),
    )?;
    let new = pods(PROD)
        .into_iter()
        .find(|p| addr(p) == format!("{elected_ip}:6379"))
        .ok_or(format!(
            "the Sentinels elected an unknown address {elected_ip}"
        ))?;
    d.time(
        &format!("sentinel mode: primary killed -> Sentinels elected {new}"),
        took,
    );
    wait(
        "a write accepted through prod-redis-leader",
        Duration::from_secs(60),
        || {
            Conn::connect(&vip, Some(&pw), Duration::from_millis(300))
                .ok()?
                .cmd(&["SET", "drill:after-sentinel-failover", "yes"])
                .ok()
                .filter(|r| !r.is_error())
        },
    )?;
    let writable = killed.elapsed();
    d.time(
        "sentinel mode: primary killed -> first write accepted through the -leader endpoint",
        writable,
    );
    // The stated time (docs/failover.md): down-after, plus the election and promotion, plus the
    // operator following (seconds).
    let bound = Duration::from_millis(SENTINEL_DOWN_AFTER_MS) + Duration::from_secs(10);
    d.check(
        &format!(
            "elected in {:.1} s, writable through the -leader endpoint in {:.1} s (stated: within down-after + 10 s = {:.0} s)",
            took.as_secs_f64(),
            writable.as_secs_f64(),
            bound.as_secs_f64()
        ),
        if writable <= bound {
            Ok(())
        } else {
            Err(format!("{writable:?}"))
        },
    )?;
    let r = wait(
        "the role label, status and Event to follow",
        Duration::from_secs(20),
        || {
            let status = d.sim.get(NS, PROD).status?;
            (labelled_primary(d, PROD).as_deref() == Some(new.as_str())
                && status.current_primary.as_deref() == Some(new.as_str())
                && event(d, PROD, EventReason::Failover).is_some())
            .then_some(())
        },
    );
    let note = event(d, PROD, EventReason::Failover)
        .map(|e| e.1)
        .unwrap_or_default();
    d.check(
        &format!("label redis.io/role=primary, the -leader endpoint and status.currentPrimary moved to {new}; Event: \"{note}\""),
        r.map(|_| ()).and_then(|_| {
            if note.contains(&format!("{old} -> {new}")) {
                Ok(())
            } else {
                Err(note.clone())
            }
        }),
    )?;
    // minSyncReplicas travels with every pod under Sentinel (replicas carry it too), so the
    // replica the Sentinels promoted enforces it without waiting for the operator.
    let mrtw = d
        .conn(&new)?
        .cmd(&["CONFIG", "GET", "min-replicas-to-write"])
        .map_err(|e| e.to_string())?
        .text();
    d.check(
        &format!("the promoted {new} enforces minSyncReplicas: 1 (CONFIG GET: {mrtw})"),
        if mrtw.ends_with(" 1") {
            Ok(())
        } else {
            Err(mrtw.clone())
        },
    )?;
    let r = keys_present(d, &new, &acked);
    d.check(
        &format!(
            "all {} writes acknowledged by {acks} replicas (WAIT) are on the new primary",
            acked.len()
        ),
        r,
    )?;
    let others: Vec<String> = pods(PROD)
        .into_iter()
        .filter(|p| *p != old && *p != new)
        .chain(pods(DR))
        .collect();
    let (_, _) = wait(
        "the other production replica and every DR pod to follow the new primary",
        Duration::from_secs(60),
        || caught_up(d, &new, &others),
    )?;
    d.time(
        "sentinel mode: primary killed -> DR caught up with the new primary",
        killed.elapsed(),
    );
    let (full_before, partial_before) = before[&new];
    let full = stat(d, &new, "sync_full")?;
    let partial = stat(d, &new, "sync_partial_ok")?;
    let want = others.len() as u64;
    d.check(
        &format!("zero full resyncs: {new} served sync_full {full_before}->{full}, sync_partial_ok +{} (DR pods and the other replica)", partial - partial_before),
        if full == full_before && partial >= partial_before + want {
            Ok(())
        } else {
            Err(format!("expected +{want} partial resyncs"))
        },
    )?;
    // The old primary's container comes back: it boots fenced and rejoins as a replica.
    let sampler = NoWriteSampler::start(&old, &pw);
    rejoins_without_writes(d, PROD, &old, &new, sampler, "sentinel mode")?;
    let r = d.keyspaces_converge();
    d.check(
        "all production and DR keyspaces equal after the failover",
        r,
    )?;
    Ok(())
}

/// DR (promoted: a standalone cluster carrying production) loses its primary pod; the operator
/// fences it, promotes the replica with the highest offset and re-points the others. Returns the
/// new primary.
fn standalone_failover(d: &mut Drill) -> Result<String, String> {
    d.step(
        "4b. DR's primary pod dies: the operator fails over (standalone mode)",
        "The promoted DR cluster has no Sentinels. Its primary's Redis container stops; once it has been\n\
         unavailable for failover.primaryUnavailableSeconds (3 s in the drill, 10 s by default) and the kubelet\n\
         reports the container not running, the operator fences it, promotes the replica with the highest\n\
         replication offset and re-points the others. A sampler tries to write to the old primary throughout.",
    );
    let old = "dr-redis-0".to_string();
    let pw = d.passwords[DR].clone();
    let replicas: Vec<String> = pods(DR).into_iter().skip(1).collect();
    let acked = acked_writes(&addr(&old), &pw, "dr-acked", 200, replicas.len())?;
    wait(
        "every DR replica at the primary's offset",
        Duration::from_secs(60),
        || caught_up(d, &old, &replicas),
    )?;
    let before: BTreeMap<String, u64> = replicas
        .iter()
        .map(|p| (p.clone(), stat(d, p, "sync_full").unwrap_or(0)))
        .collect();
    let sampler = NoWriteSampler::start(&old, &pw);
    let killed = Instant::now();
    d.kill_redis(&old);
    let (new, _) = wait(
        "the operator to label a new primary",
        Duration::from_secs(60),
        || labelled_primary(d, DR).filter(|p| *p != old),
    )?;
    wait(
        "the new primary to accept a write",
        Duration::from_secs(30),
        || {
            d.conn(&new)
                .ok()?
                .cmd(&["SET", "drill:after-standalone-failover", "yes"])
                .ok()
                .filter(|r| !r.is_error())
        },
    )?;
    let writable = killed.elapsed();
    d.time(
        "standalone mode: primary killed -> first write accepted through the -leader endpoint",
        writable,
    );
    // The stated time (docs/failover.md): primaryUnavailableSeconds, plus detection (the probe,
    // one-second condition clock) and the promotion (seconds).
    let bound = Duration::from_secs(DR_FAILOVER_AFTER_S + 10);
    d.check(
        &format!(
            "the new primary accepts writes {:.1} s after the kill (stated: within primaryUnavailableSeconds + 10 s = {:.0} s)",
            writable.as_secs_f64(),
            bound.as_secs_f64()
        ),
        if writable <= bound {
            Ok(())
        } else {
            Err(format!("{writable:?}"))
        },
    )?;
    let failing = event(d, DR, EventReason::FailingOver);
    d.check(
        &format!(
            "Warning event FailingOver: \"{}\"",
            failing.as_ref().map(|e| e.1.as_str()).unwrap_or("")
        ),
        match &failing {
            Some((t, note)) if t == "Warning" && note.contains("not running") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )?;
    let r = wait(
        "status and the Failover event",
        Duration::from_secs(20),
        || {
            let status = d.sim.get(NS, DR).status?;
            (status.current_primary.as_deref() == Some(new.as_str())
                && event(d, DR, EventReason::Failover)
                    .is_some_and(|e| e.1.contains(&format!("{old} -> {new}"))))
            .then_some(())
        },
    );
    d.check(
        &format!("status.currentPrimary and label moved to {new}; Event Failover {old} -> {new}"),
        r.map(|_| ()),
    )?;
    let others: Vec<String> = replicas.iter().filter(|p| **p != new).cloned().collect();
    wait(
        "the other DR pods to follow the new primary",
        Duration::from_secs(60),
        || caught_up(d, &new, &others),
    )?;
    d.time(
        "standalone mode: primary killed -> replicas re-attached to the new primary",
        killed.elapsed(),
    );
    let fulls: Vec<String> = others
        .iter()
        .chain(std::iter::once(&new))
        .filter_map(|p| {
            let now = stat(d, p, "sync_full").ok()?;
            (now != before[p]).then(|| format!("{p}: sync_full {} -> {now}", before[p]))
        })
        .collect();
    let partial = stat(d, &new, "sync_partial_ok")?;
    d.check(
        &format!("zero full resyncs ({new} sync_partial_ok {partial})"),
        if fulls.is_empty() && partial >= others.len() as u64 {
            Ok(())
        } else {
            Err(format!("{fulls:?}, partial {partial}"))
        },
    )?;
    let r = keys_present(d, &new, &acked);
    d.check(
        &format!(
            "all {} writes acknowledged by every replica are on {new}",
            acked.len()
        ),
        r,
    )?;
    rejoins_without_writes(d, DR, &old, &new, sampler, "standalone mode")?;
    Ok(new)
}

/// Tries a write on one pod every 50 ms and records every one that was accepted.
struct NoWriteSampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

impl NoWriteSampler {
    fn start(pod: &str, password: &str) -> NoWriteSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (addr, password, pod) = (addr(pod), password.to_string(), pod.to_string());
        let handle = std::thread::spawn(move || {
            let mut attempts = 0;
            let mut accepted = Vec::new();
            let mut conn: Option<Conn> = None;
            while !s.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = Conn::connect(&addr, Some(&password), Duration::from_millis(200)).ok();
                }
                if let Some(c) = conn.as_mut() {
                    attempts += 1;
                    match c.cmd(&["SET", "drill:fence-probe", &attempts.to_string()]) {
                        Ok(r) if !r.is_error() => {
                            accepted.push(format!("{pod} accepted write #{attempts}"))
                        }
                        Ok(_) => {}
                        Err(_) => conn = None,
                    }
                } else {
                    attempts += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (attempts, accepted)
        });
        NoWriteSampler {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

/// The repository root: the folder holding Cargo.toml above this crate.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e sits in the repository")
        .to_path_buf()
}
