//! `make bench-failover`: failover time (the primary's Redis dies -> first write accepted) for
//! the operator's sentinel mode and standalone mode on the real cluster, side by side with raw
//! Sentinel on the same machine with the same settings, all measured in one run.
//!
//! - raw Sentinel: 3 plain `redis-server`s (the operator's `redis.conf` without its boot fence)
//!   and 3 `redis-sentinel`s with the operator's Sentinel configuration, started by the bench in
//!   region B's network namespace on addresses outside every node's podCIDR; the client asks a
//!   Sentinel for the primary and writes there (what a Sentinel-aware client does). No operator,
//!   no Kubernetes. The fault: the primary's redis-server is killed (SIGKILL) and stays down
//!   until the round is measured.
//! - sentinel mode: production (the spec's `prod-redis` sample, applied verbatim) under the
//!   operator, with its 3 Sentinel pods; measured three ways in the same rounds: through the
//!   Sentinel protocol, through the `-leader` Service's ready endpoint (its EndpointSlice, read
//!   from the API server), and through the `-leader` Service's ClusterIP from region A
//!   (`redis-cli` in the region's network namespace: kube-proxy's rules, as a client pod gets).
//! - standalone mode: the spec's `dr-redis` sample without replica mode, with
//!   `failover.primaryUnavailableSeconds` equal to Sentinel's `down-after` (5 s, both defaults),
//!   through the `-leader` endpoint and its ClusterIP from region B.
//!
//! The operator's fault is the drill's: [`Drill::break_redis`] (the pod's Redis dies and cannot
//! start again, its container in CrashLoopBackOff), and between rounds
//! [`Drill::repair_and_recreate`] (the volume repaired, the pod deleted and recreated by its
//! StatefulSet, rejoining as a replica). Each mode fails over [`ROUNDS`] times.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kcluster::client::Kube;
use redis_cluster_api::RedisCluster;
use redis_cluster_api::labels as l;
use redis_operator::config::{sentinel_auth_conf, sentinel_conf_with_monitor};
use redis_test_support::process::command;
use redis_test_support::resp::Conn;
use serde_json::json;

use crate::bench::{plain_ip, plain_redis_conf, sample_cluster, start_plain};
use crate::harness::observe::accepts_write;
use crate::harness::sentinel::{known_as, sentinel_addrs, sentinel_master, sentinels_settled};
use crate::harness::{DR, Drill, NS, Options, PROD, try_ip, wait};

pub const ROUNDS: usize = 3;

/// The Sentinels of production (the sample's default).
const SENTINELS: u32 = 3;

/// One mode's failover times.
pub struct Series {
    pub mode: String,
    pub times: Vec<Duration>,
}

fn write_ok(addr: &str, password: &str) -> bool {
    accepts_write(
        addr,
        password,
        ["bench:failover", "x"],
        Duration::from_millis(200),
    )
}

/// Poll every 10 ms until `f` says a write went through: the time since `from` (None after 90
/// s).
fn until_write(from: Instant, mut f: impl FnMut() -> bool) -> Option<Duration> {
    loop {
        if f() {
            return Some(from.elapsed());
        }
        if from.elapsed() > Duration::from_secs(90) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A write through a Service's ClusterIP from region `netns`, as a client there gets it
/// (kube-proxy's rules): `redis-cli -h <ClusterIP> SET`, the password in the environment.
fn cluster_ip_write(netns: &str, cluster_ip: &str, password: &str) -> bool {
    command(Some(netns), "timeout")
        .args([
            "1",
            "redis-cli",
            "-h",
            cluster_ip,
            "SET",
            "bench:failover",
            "x",
        ])
        .env("REDISCLI_AUTH", password)
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "OK")
}

/// The ClusterIP of `cluster`'s `-leader` Service.
fn leader_cluster_ip(d: &Drill, cluster: &str) -> Result<String, String> {
    Ok(d.kubectl(&[
        "-n",
        NS,
        "get",
        "service",
        &l::leader_service(cluster),
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])?
    .trim()
    .to_string())
}

pub fn run(o: &Options) -> Result<Vec<Series>, String> {
    let mut d = Drill::prepare(o)?;
    d.create_secrets()?;
    let mut out = vec![raw_sentinel(&mut d)?];
    out.extend(sentinel_mode(&mut d)?);
    out.extend(standalone_mode(&mut d)?);
    Ok(out)
}

/// The raw Sentinel setup: plain redis-servers and redis-sentinels, no operator.
struct Raw {
    /// The operator's own settings: the prod-redis sample (named `raw`) with its defaults.
    rc: RedisCluster,
    dir: PathBuf,
    pw: String,
}

/// Plain server `i`'s address (0..3), and Sentinel `i`'s.
fn raw_ip(i: u32) -> String {
    plain_ip(i + 1)
}
fn raw_sentinel_ip(i: u32) -> String {
    plain_ip(i + 11)
}

impl Raw {
    fn master(&self) -> String {
        l::sentinel_master_name(&self.rc.metadata.name.clone().unwrap_or_default())
    }

    fn sentinel_addr(&self, i: u32) -> String {
        format!("{}:{}", raw_sentinel_ip(i), l::SENTINEL_PORT)
    }

    fn sentinel_master(&self, i: u32) -> Option<String> {
        sentinel_master(&self.sentinel_addr(i), &self.pw, &self.master())
    }

    /// redis-server `i` with the operator's redis.conf minus its boot fence, a replica of
    /// `primary` on its first start (later it keeps what Sentinel rewrote).
    fn start_redis(&self, d: &mut Drill, i: u32, primary: Option<u32>) -> Result<(), String> {
        let ip = raw_ip(i);
        let data = self.dir.join(format!("redis-{i}"));
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let path = data.join("redis.conf");
        let kept: String = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("replicaof "))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut conf = plain_redis_conf(&self.rc, &ip, &data, &self.pw, false);
        conf.push_str(&kept);
        if kept.is_empty()
            && let Some(p) = primary
        {
            conf.push_str(&format!("replicaof {} 6379\n", raw_ip(p)));
        }
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        start_plain(d, &format!("raw-{i}"), "redis-server", &ip, &path)
    }

    /// The Sentinels, with the operator's Sentinel configuration, monitoring redis-0.
    fn start_sentinels(&self, d: &mut Drill) -> Result<(), String> {
        for i in 0..SENTINELS {
            let ip = raw_sentinel_ip(i);
            let sdir = self.dir.join(format!("sentinel-{i}"));
            std::fs::create_dir_all(&sdir).map_err(|e| e.to_string())?;
            let conf = format!(
                "{}bind {ip}\nsentinel announce-ip {ip}\ndir {}\n{}",
                sentinel_conf_with_monitor(&self.rc, &raw_ip(0), 6379),
                sdir.display(),
                sentinel_auth_conf(&self.rc, &self.pw)
            );
            let path = sdir.join("sentinel.conf");
            std::fs::write(&path, conf).map_err(|e| e.to_string())?;
            start_plain(
                d,
                &format!("raw-sentinel-{i}"),
                "redis-sentinel",
                &ip,
                &path,
            )?;
        }
        Ok(())
    }

    /// The primary, once settled: every Sentinel agrees on it, the other two are linked
    /// replicas of it, and the Sentinels know both and each other.
    fn settled(&self) -> Option<String> {
        let m = self.sentinel_master(0)?;
        let agree = (1..SENTINELS).all(|i| self.sentinel_master(i).as_deref() == Some(m.as_str()));
        let replicas: Vec<String> = (0..3u32).map(raw_ip).filter(|ip| *ip != m).collect();
        let linked = replicas.iter().all(|r| {
            Conn::connect(
                &format!("{r}:6379"),
                Some(&self.pw),
                Duration::from_millis(300),
            )
            .ok()
            .and_then(|mut c| c.info("replication").ok())
            .is_some_and(|info| {
                info.get("master_host") == Some(&m)
                    && info.get("master_link_status").map(String::as_str) == Some("up")
            })
        });
        let addrs: Vec<String> = (0..SENTINELS).map(|i| self.sentinel_addr(i)).collect();
        (agree && linked && sentinels_settled(&addrs, &self.pw, &self.master(), &m, &replicas))
            .then_some(m)
    }
}

/// Raw Sentinel in region B, no operator.
fn raw_sentinel(d: &mut Drill) -> Result<Series, String> {
    println!("==> raw Sentinel: 3 plain redis-server + 3 redis-sentinel in region B, no operator");
    let mut rc = sample_cluster(d, "prod-redis.yaml")?;
    rc.metadata.name = Some("raw".into());
    let raw = Raw {
        rc,
        dir: d.o.dir.join("raw"),
        pw: d.passwords[PROD].clone(),
    };
    for i in 0..3 {
        raw.start_redis(d, i, (i > 0).then_some(0))?;
    }
    raw.start_sentinels(d)?;
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        let (primary_ip, _) = wait("raw Sentinels to settle", Duration::from_secs(120), || {
            raw.settled()
        })?;
        let victim = (0..3u32).find(|i| raw_ip(*i) == primary_ip).ok_or(format!(
            "the Sentinels name an unknown primary {primary_ip}"
        ))?;
        d.procs.remove(&format!("raw-{victim}"));
        let killed = Instant::now();
        let took = until_write(killed, || {
            raw.sentinel_master(0)
                .filter(|m| *m != primary_ip)
                .is_some_and(|m| write_ok(&format!("{m}:6379"), &raw.pw))
        })
        .ok_or("no write accepted within 90 s (raw Sentinel)")?;
        println!("    round {}: {:.2} s", round + 1, took.as_secs_f64());
        times.push(took);
        raw.start_redis(d, victim, None)?;
    }
    for name in (0..3)
        .map(|i| format!("raw-{i}"))
        .chain((0..SENTINELS).map(|i| format!("raw-sentinel-{i}")))
    {
        d.procs.remove(&name);
    }
    Ok(Series {
        mode: format!(
            "raw Sentinel (down-after {} ms), client asks a Sentinel",
            raw.rc.spec.sentinel_settings().down_after_milliseconds
        ),
        times,
    })
}

/// Wait until `cluster` is settled: the labelled primary is `status.currentPrimary`, accepts
/// writes, every other pod is a linked replica of it, the `-leader` Service's one ready
/// endpoint is it, and a write through the Service's ClusterIP from `netns` goes through. With
/// `sentinels`, also every Sentinel monitors it and knows both replicas. Returns the primary.
fn settle(
    d: &Drill,
    cluster: &str,
    netns: &str,
    cluster_ip: &str,
    sentinels: bool,
) -> Result<String, String> {
    let pw = d.passwords[cluster].clone();
    let (primary, _) = wait(
        &format!("{cluster} to settle"),
        Duration::from_secs(180),
        || {
            let p = d.labelled_primary(cluster)?;
            let others: Vec<String> = d.pods(cluster).into_iter().filter(|q| *q != p).collect();
            let settled = d.current_primary(cluster).as_deref() == Some(p.as_str())
                && d.accepts_write(&p, ["bench:settle", "x"])
                && others.iter().all(|q| d.linked_to(q, &p))
                && d.leader_endpoint(cluster).as_deref() == try_ip(&p).as_deref()
                && cluster_ip_write(netns, cluster_ip, &pw);
            let sentinels_settled = !sentinels || {
                let addrs = sentinel_addrs(cluster, SENTINELS);
                let replicas: Vec<String> = others.iter().map(|q| known_as(cluster, q)).collect();
                addrs.len() == SENTINELS as usize
                    && sentinels_settled(
                        &addrs,
                        &pw,
                        &l::sentinel_master_name(cluster),
                        &known_as(cluster, &p),
                        &replicas,
                    )
            };
            (settled && sentinels_settled).then_some(p)
        },
    )?;
    Ok(primary)
}

/// One round's times, each None when no write got through that way.
struct Round {
    sentinel: Option<Duration>,
    endpoint: Option<Duration>,
    cluster_ip: Option<Duration>,
}

/// Break `victim`'s Redis, then measure in parallel (each way polling every 10 ms) the first
/// write accepted: through the Sentinel protocol (when `cluster` has Sentinels), through the
/// `-leader` Service's ready endpoint, and through its ClusterIP from `netns`.
fn measure(
    d: &mut Drill,
    cluster: &str,
    victim: &str,
    netns: &str,
    cluster_ip: &str,
    sentinels: bool,
) -> Result<Round, String> {
    let pw = d.passwords[cluster].clone();
    let master = l::sentinel_master_name(cluster);
    let sentinel = sentinel_addrs(cluster, SENTINELS)
        .into_iter()
        .next()
        .unwrap_or_default();
    let old_name = known_as(cluster, victim);
    let names: Vec<(String, String)> = d
        .pods(cluster)
        .into_iter()
        .map(|p| (known_as(cluster, &p), p))
        .collect();
    let service = l::leader_service(cluster);
    let kube = Kube::new(&d.cluster)?;
    d.break_redis(victim)?;
    let killed = Instant::now();
    let round = std::thread::scope(|s| {
        let via_sentinel = s.spawn(|| {
            if !sentinels {
                return None;
            }
            until_write(killed, || {
                sentinel_master(&sentinel, &pw, &master)
                    .filter(|m| *m != old_name)
                    .and_then(|m| names.iter().find(|(n, _)| *n == m).map(|(_, p)| p))
                    .and_then(|p| try_ip(p))
                    .is_some_and(|ip| write_ok(&format!("{ip}:6379"), &pw))
            })
        });
        let via_endpoint = s.spawn(|| {
            until_write(killed, || {
                match kube.service_endpoints(NS, &service).as_slice() {
                    [one] => write_ok(&format!("{one}:6379"), &pw),
                    _ => false,
                }
            })
        });
        let via_cluster_ip =
            s.spawn(|| until_write(killed, || cluster_ip_write(netns, cluster_ip, &pw)));
        Round {
            sentinel: via_sentinel.join().unwrap_or(None),
            endpoint: via_endpoint.join().unwrap_or(None),
            cluster_ip: via_cluster_ip.join().unwrap_or(None),
        }
    });
    Ok(round)
}

fn secs(t: Option<Duration>) -> String {
    t.map(|t| format!("{:.2} s", t.as_secs_f64()))
        .unwrap_or_else(|| "-".into())
}

/// Production (the prod-redis sample as written, mode: sentinel) under the operator.
fn sentinel_mode(d: &mut Drill) -> Result<Vec<Series>, String> {
    let rc = sample_cluster(d, "prod-redis.yaml")?;
    let down_after = rc.spec.sentinel_settings().down_after_milliseconds;
    println!(
        "==> operator, mode: sentinel (the prod-redis sample as written: down-after {down_after} ms), region A"
    );
    d.apply_sample("prod-redis.yaml")?;
    d.wait_pods_running(PROD, Duration::from_secs(180))?;
    let cluster_ip = leader_cluster_ip(d, PROD)?;
    let (mut sentinel, mut endpoint, mut via_ip) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let primary = settle(d, PROD, "kc-ra", &cluster_ip, true)?;
        let r = measure(d, PROD, &primary, "kc-ra", &cluster_ip, true)?;
        println!(
            "    round {}: Sentinel protocol {}, -leader endpoint {}, -leader ClusterIP {}",
            round + 1,
            secs(r.sentinel),
            secs(r.endpoint),
            secs(r.cluster_ip)
        );
        sentinel.extend(r.sentinel);
        endpoint.extend(r.endpoint);
        via_ip.extend(r.cluster_ip);
        d.repair_and_recreate(&primary)?;
    }
    settle(d, PROD, "kc-ra", &cluster_ip, true)?;
    Ok(vec![
        Series {
            mode: "operator, sentinel mode, through the -leader endpoint".into(),
            times: endpoint,
        },
        Series {
            mode: "operator, sentinel mode, through the -leader ClusterIP (kube-proxy)".into(),
            times: via_ip,
        },
        Series {
            mode: "operator, sentinel mode, client asks a Sentinel".into(),
            times: sentinel,
        },
    ])
}

/// A standalone cluster under the operator: the dr-redis sample without replica mode, failing
/// over after as long as Sentinel's down-after.
fn standalone_mode(d: &mut Drill) -> Result<Vec<Series>, String> {
    let down_after_s = sample_cluster(d, "prod-redis.yaml")?
        .spec
        .sentinel_settings()
        .down_after_milliseconds
        / 1000;
    println!(
        "==> operator, mode: standalone (dr-redis sample without replicaMode, failover.primaryUnavailableSeconds {down_after_s}), region B"
    );
    let mut dr: serde_json::Value =
        serde_yaml::from_str(&d.sample("dr-redis.yaml")?).map_err(|e| e.to_string())?;
    let spec = dr["spec"]
        .as_object_mut()
        .ok_or("dr-redis.yaml has no spec")?;
    spec.remove("replicaMode");
    spec.insert(
        "failover".into(),
        json!({"primaryUnavailableSeconds": down_after_s}),
    );
    d.apply_yaml(&serde_yaml::to_string(&dr).map_err(|e| e.to_string())?)?;
    d.wait_pods_running(DR, Duration::from_secs(180))?;
    let cluster_ip = leader_cluster_ip(d, DR)?;
    let (mut endpoint, mut via_ip) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let primary = settle(d, DR, "kc-rb", &cluster_ip, false)?;
        // The same pause as the Sentinel cases get while their Sentinels settle.
        std::thread::sleep(Duration::from_secs(2));
        let r = measure(d, DR, &primary, "kc-rb", &cluster_ip, false)?;
        println!(
            "    round {}: -leader endpoint {}, -leader ClusterIP {}",
            round + 1,
            secs(r.endpoint),
            secs(r.cluster_ip)
        );
        endpoint.extend(r.endpoint);
        via_ip.extend(r.cluster_ip);
        d.repair_and_recreate(&primary)?;
    }
    settle(d, DR, "kc-rb", &cluster_ip, false)?;
    Ok(vec![
        Series {
            mode: format!("operator, standalone mode (primaryUnavailableSeconds {down_after_s})"),
            times: endpoint,
        },
        Series {
            mode: format!(
                "operator, standalone mode ({down_after_s} s), through the -leader ClusterIP"
            ),
            times: via_ip,
        },
    ])
}

/// Median and spread of a series, for the table.
pub fn summary(times: &[Duration]) -> String {
    let mut v: Vec<f64> = times.iter().map(|d| d.as_secs_f64()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return "-".into();
    }
    format!(
        "median {:.2} s  (min {:.2}, max {:.2}, n={})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1],
        v.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_the_median_and_the_spread() {
        let s = |v: &[u64]| {
            summary(
                &v.iter()
                    .map(|ms| Duration::from_millis(*ms))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(s(&[]), "-");
        assert_eq!(
            s(&[7000, 6000, 6500]),
            "median 6.50 s  (min 6.00, max 7.00, n=3)"
        );
    }

    #[test]
    fn raw_servers_and_sentinels_have_distinct_addresses() {
        let mut all: Vec<String> = (0..3)
            .map(raw_ip)
            .chain((0..3).map(raw_sentinel_ip))
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 6);
    }
}
