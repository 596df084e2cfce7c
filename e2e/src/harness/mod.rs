//! What the drills and the benches stand on: a [`Drill`] is a real Kubernetes on this machine
//! (`kcluster`: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy and
//! CoreDNS, built from their Go modules; `redis-node-agent` playing the kubelet; regions as
//! network namespaces) with the operator installed by its Helm chart, plus the tools to act on it
//! as a user does (`kubectl`), to inject the faults a cluster has, and to observe and check Redis
//! directly. No story lives here: the drills in [`crate::drills`] and the benches are written
//! with these pieces.
//!
//! - [`k8s`]: the user's side (`kubectl apply`/`patch`/`annotate`/`describe`), the API reads
//!   (conditions, Events, labels, Services), and the machine's faults (a Redis that cannot
//!   restart, a frozen node agent, the inter-region link);
//! - [`addresses`]: where each pod listens, kept fresh from the API;
//! - [`observe`]: what the drill reads (INFO, roles, offsets, keyspace digests, status) and waits
//!   for;
//! - [`writers`]: write load, acknowledged writes, a sampler proving a pod accepts no write;
//! - [`checks`]: the split-brain checker and the old primary's rejoin;
//! - [`prom`]: a real Prometheus discovering the instance managers through the API;
//! - [`sentinel`]: questions to Sentinels;
//! - [`source`]: an external, Sentinel-managed production the operator does not manage.

pub mod addresses;
pub mod checks;
pub mod k8s;
pub mod observe;
pub mod operator;
pub mod prom;
pub mod salvage;
pub mod sentinel;
pub mod source;
pub mod writers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kcluster::client::Kube;
use kcluster::cluster::{self, Cluster, ImageMapping};
use kcluster::net::Region;
use redis_test_support::process::{Proc, installed};

pub use addresses::{ip, try_ip};
pub use operator::{is_write, operator_leader, operator_requests, reconcile_metrics};
pub use redis_test_support::wait::poll as wait;

/// The namespace both clusters live in (the spec's samples say `production`).
pub const NS: &str = "production";
/// Production: the spec's `prod-redis` sample, placed in region A.
pub const PROD: &str = "prod-redis";
/// The DR cluster: the spec's `dr-redis` sample, placed in region B.
pub const DR: &str = "dr-redis";

/// Production's Sentinel `down-after-milliseconds` in the drill.
pub const SENTINEL_DOWN_AFTER_MS: u64 = 2000;
/// DR's `failover.primaryUnavailableSeconds` in the drill (default 10).
pub const DR_FAILOVER_AFTER_S: u64 = 3;

/// The operator's image repository in the chart (`values.yaml`): the node agents map it to the
/// directory holding this build's `redis-operator` and `redis-instance-manager`.
pub const OPERATOR_IMAGE: &str = "ghcr.io/example/redis-operator";
/// The operator's namespace and release (`kcluster::cluster::install_operator`).
pub const OPERATOR_NS: &str = "redis-operator";

pub struct Options {
    /// Explain each step for a newcomer.
    pub narrate: bool,
    /// The repository root (samples, rules, the chart, the control plane's build script).
    pub repo: PathBuf,
    /// Where logs and data go (the cluster's directory is `<dir>/cluster`).
    pub dir: PathBuf,
    /// The redis-instance-manager binary. Its directory (cargo's target directory) must also
    /// hold `redis-operator` and `redis-node-agent`: it is the operator image's contents.
    pub instance_manager: PathBuf,
    /// Leave the cluster running when the drill ends.
    pub keep_cluster: bool,
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

/// One run of a drill or a bench: the cluster, the processes the drill started itself (Prometheus,
/// an external source), the clusters' passwords, and what was checked and timed so far. The
/// cluster is stopped when the drill is dropped; its logs stay in `<dir>/cluster`.
pub struct Drill<'a> {
    pub o: &'a Options,
    pub cluster: Cluster,
    pub kube: Kube,
    _addresses: addresses::Addresses,
    pub procs: BTreeMap<String, Proc>,
    pub passwords: BTreeMap<String, String>,
    /// Pods whose Redis the drill made fail (and the original mode of the file it broke): their
    /// restarts are expected.
    pub broken: BTreeMap<String, u32>,
    pub report: Report,
}

/// The region a cluster's pods are placed in: production in A, DR in B, the operator in C.
pub fn region_of(cluster: &str) -> Region {
    if cluster == PROD {
        Region('a')
    } else {
        Region('b')
    }
}

/// The cluster a drill pod belongs to, from its name.
pub fn cluster_of(pod: &str) -> &'static str {
    if pod.starts_with(PROD) { PROD } else { DR }
}

/// A pod's Redis, `ip:6379`.
pub fn addr(pod: &str) -> String {
    format!("{}:6379", ip(pod))
}

/// A pod's instance manager (metrics and `/status`), `ip:9121`.
pub fn im_addr(pod: &str) -> String {
    format!("{}:9121", ip(pod))
}

/// Run `story` on a fresh drill: the report of its checks and timings. A failed step ends the
/// story as a failed check "scenario"; a drill that cannot even be prepared is one failed check
/// named `unprepared`.
pub fn run_story(
    o: &Options,
    unprepared: &str,
    story: fn(&mut Drill) -> Result<(), String>,
) -> Report {
    match Drill::prepare(o) {
        Ok(mut d) => {
            let result = story(&mut d);
            d.finish(result)
        }
        Err(e) => {
            println!("    FAIL {e}");
            Report {
                checks: vec![(unprepared.into(), Err(e))],
                ..Default::default()
            }
        }
    }
}

fn random_password() -> String {
    let bytes = std::fs::read("/proc/sys/kernel/random/uuid").unwrap_or_default();
    format!(
        "pw-{}",
        String::from_utf8_lossy(&bytes).trim().replace('-', "")
    )
}

/// The control plane's binaries: built once per machine (cached) by the project's script.
pub(crate) fn control_plane(repo: &Path) -> Result<PathBuf, String> {
    let script = repo.join("hack/build-controlplane.sh");
    let out = std::process::Command::new(&script)
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "building the control plane failed (make controlplane): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

impl<'a> Drill<'a> {
    /// Check the tools, start a fresh cluster (the previous run's directory is removed), install
    /// the operator with Helm and create the namespace.
    pub fn prepare(o: &'a Options) -> Result<Drill<'a>, String> {
        for tool in ["redis-server", "redis-cli", "prometheus", "ip", "tc", "nft"] {
            if !installed(tool) {
                return Err(format!(
                    "{tool} is not installed: run `make deps` (as root)"
                ));
            }
        }
        let images = o
            .instance_manager
            .parent()
            .ok_or("the instance manager's path has no directory")?
            .to_path_buf();
        for bin in [
            "redis-instance-manager",
            "redis-operator",
            "redis-node-agent",
            "kubectl-redis",
        ] {
            if !images.join(bin).exists() {
                return Err(format!(
                    "{} is missing: build it first (`make demo` does)",
                    images.join(bin).display()
                ));
            }
        }
        let helm = o.repo.join(".tools/bin/helm");
        if !helm.exists() {
            return Err(format!("{} is missing: run `make deps`", helm.display()));
        }
        let bin_dir = control_plane(&o.repo)?;
        let _ = std::fs::remove_dir_all(&o.dir);
        std::fs::create_dir_all(&o.dir).map_err(|e| e.to_string())?;
        let mut options = cluster::Options::new(
            o.dir.join("cluster"),
            bin_dir,
            Some(images.join("redis-node-agent")),
        );
        options.images.push(ImageMapping {
            repository: OPERATOR_IMAGE.into(),
            dir: images,
        });
        options.placement = vec![
            (PROD.into(), region_of(PROD)),
            (DR.into(), region_of(DR)),
            // The spec's TLS sample (`drills::tls`): a DR cluster, in region B.
            (crate::drills::tls::TLS_CLUSTER.into(), Region('b')),
            ("redis-operator".into(), Region('c')),
        ];
        let cluster = cluster::up(&options)?;
        cluster::install_operator(&cluster, &helm, &o.repo.join("charts/redis-operator"), &[])?;
        cluster.kubectl(&["create", "namespace", NS])?;
        let kube = Kube::new(&cluster)?;
        let addresses = addresses::Addresses::follow(&cluster, NS)?;
        let passwords = BTreeMap::from([
            (PROD.to_string(), random_password()),
            (DR.to_string(), random_password()),
        ]);
        Ok(Drill {
            o,
            cluster,
            kube,
            _addresses: addresses,
            procs: BTreeMap::new(),
            passwords,
            broken: BTreeMap::new(),
            report: Report::default(),
        })
    }

    /// Every pod of production, then every pod of DR.
    pub fn all_pods(&self) -> Vec<String> {
        self.pods(PROD).into_iter().chain(self.pods(DR)).collect()
    }

    /// The text of sample `file` (`config/samples/`).
    pub fn sample(&self, file: &str) -> Result<String, String> {
        redis_test_support::samples::read_in(&self.o.repo, file)
    }

    /// Print a line of narration (`--narrate` only).
    pub fn say(&self, text: &str) {
        if self.o.narrate {
            println!("{text}");
        }
    }

    /// A step's banner, and with `--narrate` its explanation.
    pub fn step(&self, title: &str, explain: &str) {
        println!("\n==> {title}");
        if self.o.narrate && !explain.is_empty() {
            for line in explain.lines() {
                println!("    {line}");
            }
        }
    }

    /// Record a check (an `ok` or `FAIL` line); the result is passed on so that a failed check
    /// ends the story.
    pub fn check(&mut self, name: &str, result: Result<(), String>) -> Result<(), String> {
        match &result {
            Ok(()) => println!("    ok   {name}"),
            Err(e) => println!("    FAIL {name}: {e}"),
        }
        self.report.checks.push((name.to_string(), result.clone()));
        result
    }

    /// Record a timing.
    pub fn time(&mut self, name: &str, d: Duration) {
        println!("    time {name}: {:.2}s", d.as_secs_f64());
        self.report.timings.push((name.to_string(), d));
    }

    /// End of a run: a story's error becomes the last failed check, and the report is handed
    /// over. The cluster and every process go when the drill is dropped.
    pub fn finish(mut self, result: Result<(), String>) -> Report {
        let mut report = std::mem::take(&mut self.report);
        if let Err(e) = result {
            println!("    FAIL {e}");
            println!(
                "\nlogs and data: {} (the cluster's: {}/logs, pods' containers: {}/nodes/*/pods)",
                self.o.dir.display(),
                self.cluster.dir.display(),
                self.cluster.dir.display()
            );
            report.checks.push(("scenario".into(), Err(e)));
        }
        report
    }
}

impl Drop for Drill<'_> {
    fn drop(&mut self) {
        self.procs.clear();
        if self.o.keep_cluster {
            println!(
                "\nthe cluster is still running: source {}/env; stop it with kcluster down --dir {}",
                self.cluster.dir.display(),
                self.cluster.dir.display()
            );
        } else {
            cluster::down(&self.cluster.dir);
        }
    }
}

#[cfg(test)]
pub(crate) mod narration {
    //! Each step of a story is a function whose doc comment is the banner it prints: the title
    //! first, then the explanation `--narrate` adds. This keeps the two from drifting apart.

    /// The text of a string literal starting at `s` (just after its opening quote), with the
    /// escapes the banners use; and the rest after the closing quote.
    fn literal(s: &str) -> (String, &str) {
        let mut out = String::new();
        let mut chars = s.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return (out, &s[i + 1..]),
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => out.push('\n'),
                    Some('\n') => {
                        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                            chars.next();
                        }
                    }
                    Some(other) => out.push(other),
                    None => {}
                },
                c => out.push(c),
            }
        }
        (out, "")
    }

    /// Every `d.step(TITLE, EXPLAIN)` in `source` sits in a function whose doc comment is TITLE,
    /// an empty line, then EXPLAIN (when there is one). Returns how many steps were checked.
    pub(crate) fn assert_steps_documented(source: &str) -> usize {
        let mut checked = 0;
        for (at, _) in source.match_indices("d.step(") {
            let call = &source[at + "d.step(".len()..];
            let (title, rest) = literal(&call[call.find('"').unwrap() + 1..]);
            let (explain, _) = literal(&rest[rest.find('"').unwrap() + 1..]);
            let mut above = source[..at].lines().rev();
            above
                .find(|l| l.split_whitespace().take(2).any(|w| w == "fn"))
                .expect("d.step inside a function");
            let mut doc: Vec<&str> = above
                .take_while(|l| l.starts_with("///"))
                .map(|l| l.trim_start_matches("///").trim())
                .collect();
            doc.reverse();
            let mut want = vec![title.as_str()];
            if !explain.is_empty() {
                want.push("");
                want.extend(explain.lines().map(str::trim));
            }
            assert!(
                doc.starts_with(&want),
                "the doc comment of the step \"{title}\" is not its banner:\n{doc:#?}\nwant:\n{want:#?}"
            );
            checked += 1;
        }
        checked
    }

    #[test]
    fn literals_read_like_the_compiler_reads_them() {
        let (text, rest) = literal("a \\\"b\\\" c\\n\\\n     d\", x");
        assert_eq!(text, "a \"b\" c\nd");
        assert_eq!(rest, ", x");
    }
}
