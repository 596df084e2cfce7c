//! What the drills and the benches stand on: a [`Drill`] (two regions, the simulated Kubernetes,
//! the processes it started, the checks and timings it recorded), the pods of the two clusters
//! and where they listen, and the tools to start, observe, load and check them. No story lives
//! here: the drills in [`crate::drills`] and the benches are written with these pieces.
//!
//! - [`net`]: the two regions (network namespaces) and the inter-region link;
//! - [`sim`], [`controllers`], [`operator`]: the simulated Kubernetes (API server, kubelet,
//!   Sentinel StatefulSet controller, `-leader` Service) and the operator's real reconcile loop;
//! - [`pods`]: a cluster's pods started, killed and restarted as a StatefulSet and a kubelet would;
//! - [`observe`]: what the drill reads (INFO, roles, offsets, keyspace digests, status, Events)
//!   and waits for;
//! - [`writers`]: write load, acknowledged writes, a sampler proving a pod accepts no write;
//! - [`checks`]: the split-brain checker and the old primary's rejoin;
//! - [`prom`]: a real Prometheus with the project's alert rules;
//! - [`source`]: an external, Sentinel-managed production the operator does not manage.

pub mod checks;
pub mod controllers;
pub mod net;
pub mod observe;
pub mod operator;
pub mod pods;
pub mod prom;
pub mod sim;
pub mod source;
pub mod writers;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redis_cluster_api::labels as l;
use redis_test_support::process::{Proc, installed};

use net::Regions;
use sim::Sim;

pub use redis_test_support::wait::poll as wait;

/// The namespace both clusters live in.
pub const NS: &str = "production";
/// Production: the spec's `prod-redis` sample, in region A.
pub const PROD: &str = "prod-redis";
/// The DR cluster: the spec's `dr-redis` sample, in region B.
pub const DR: &str = "dr-redis";

/// Production's Sentinel `down-after-milliseconds` in the drill.
pub const SENTINEL_DOWN_AFTER_MS: u64 = 2000;
/// DR's `failover.primaryUnavailableSeconds` in the drill (default 10).
pub const DR_FAILOVER_AFTER_S: u64 = 3;

/// Most pods a region can hold (addresses assigned in each namespace).
pub const MAX_PODS: u32 = 5;

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

/// One run of a drill or a bench: the regions, the simulated Kubernetes, every process started,
/// the clusters' passwords and sizes, and what was checked and timed so far.
pub struct Drill<'a> {
    pub o: &'a Options,
    pub sim: Arc<Sim>,
    pub regions: Regions,
    pub procs: BTreeMap<String, Proc>,
    pub passwords: BTreeMap<String, String>,
    /// How many pods each cluster runs: what its StatefulSet asked for when they started.
    instances: BTreeMap<String, u32>,
    pub report: Report,
}

/// The region a cluster's pods run in: production in A, DR in B.
pub fn region_of(cluster: &str) -> char {
    if cluster == PROD { 'a' } else { 'b' }
}

/// The cluster a drill pod belongs to, from its name.
pub fn cluster_of(pod: &str) -> &'static str {
    if pod.starts_with(PROD) { PROD } else { DR }
}

/// A pod's IP address (its Redis and instance manager listen there).
pub fn ip(pod: &str) -> String {
    let cluster = cluster_of(pod);
    let ordinal = l::ordinal_of(cluster, pod).expect("drill pod names");
    net::pod_ip(region_of(cluster), ordinal)
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

impl<'a> Drill<'a> {
    /// Check the tools, create the two regions and an empty simulated cluster.
    pub fn prepare(o: &'a Options) -> Result<Drill<'a>, String> {
        for tool in ["redis-server", "redis-cli", "prometheus", "ip", "tc"] {
            if !installed(tool) {
                return Err(format!(
                    "{tool} is not installed: run `make deps` (as root)"
                ));
            }
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
            instances: BTreeMap::new(),
            report: Report::default(),
        })
    }

    /// The pods of `cluster`, in ordinal order (none before they started).
    pub fn pods(&self, cluster: &str) -> Vec<String> {
        let n = self.instances.get(cluster).copied().unwrap_or(0);
        (0..n).map(|i| l::pod_name(cluster, i)).collect()
    }

    /// Every pod of production, then every pod of DR.
    pub fn all_pods(&self) -> Vec<String> {
        self.pods(PROD).into_iter().chain(self.pods(DR)).collect()
    }

    /// The samples' Secrets (`prod-redis-auth`, `dr-redis-auth`), each with its cluster's password.
    pub fn add_secrets(&self) {
        self.sim
            .add_secret(NS, "prod-redis-auth", &self.passwords[PROD]);
        self.sim
            .add_secret(NS, "dr-redis-auth", &self.passwords[DR]);
    }

    /// Where production's Sentinels listen (its pods address them by IP: no DNS here).
    pub fn locate_production_sentinels(&self) {
        let addrs = controllers::sentinel_addrs('a');
        self.sim
            .sentinel_addresses
            .lock()
            .unwrap()
            .insert(PROD.into(), addrs);
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

    /// End of a run: the instance managers stop first (so nothing logs spurious errors while the
    /// rest is torn down), a story's error becomes the last failed check, and the report is
    /// handed over. The regions and every process go when the drill is dropped.
    pub fn finish(mut self, result: Result<(), String>) -> Report {
        for (name, p) in self.procs.iter_mut() {
            if name.ends_with("instance-manager") {
                p.kill();
            }
        }
        let mut report = std::mem::take(&mut self.report);
        if let Err(e) = result {
            println!("    FAIL {e}");
            println!("\nlogs and data: {}", self.o.dir.display());
            report.checks.push(("scenario".into(), Err(e)));
        }
        report
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
