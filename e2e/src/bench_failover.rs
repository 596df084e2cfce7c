//! `make bench-failover`: failover time (primary's Redis killed -> first write accepted) for the
//! operator's sentinel mode and standalone mode, side by side with raw Sentinel on the same
//! machine with the same settings, all measured in one run.
//!
//! - raw Sentinel: 3 plain redis-server (the operator's redis.conf without its boot fence) and
//!   3 redis-sentinel with the operator's Sentinel configuration; the client asks a Sentinel for
//!   the primary and writes there (what a Sentinel-aware client does). No operator.
//! - sentinel mode: production (the spec's prod-redis sample) under the operator, with its
//!   Sentinels; measured twice: through the `-leader` endpoint (the VIP that follows the role
//!   label) and through the Sentinel protocol.
//! - standalone mode: a 3-instance standalone cluster under the operator, with
//!   `failover.primaryUnavailableSeconds` equal to Sentinel's `down-after` (5 s, both defaults),
//!   through the pod labelled primary.
//!
//! Each mode fails over `ROUNDS` times (the old primary restarts and rejoins in between).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use redis_cluster_api::RedisCluster;

use redis_cluster_api::labels as l;
use redis_operator::config::{redis_conf, sentinel_auth_conf, sentinel_conf_with_monitor};
use redis_test_support::process::Proc;
use redis_test_support::redis::spawn_on;
use redis_test_support::resp::Conn;
use redis_test_support::wait::poll_every;
use serde_json::json;

use crate::harness::controllers::{
    Controllers, sentinel_addrs, sentinel_master, sentinels_settled,
};
use crate::harness::net::{MAX_SENTINELS, NS_B, PROD_LEADER_VIP, pod_ip, sentinel_ip};
use crate::harness::observe::accepts_write;
use crate::harness::operator::Operator;
use crate::harness::{DR, Drill, Options, PROD, addr, ip, wait};

pub const ROUNDS: usize = 3;

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

/// Poll every 10 ms until `f` says a write went through; the elapsed time since `from`.
fn until_write(from: Instant, what: &str, mut f: impl FnMut() -> bool) -> Result<Duration, String> {
    poll_every(
        Duration::from_millis(10),
        &format!("a write to be accepted ({what})"),
        Duration::from_secs(90),
        || f().then_some(()),
    )
    .map(|_| from.elapsed())
}

pub fn run(o: &Options) -> Result<Vec<Series>, String> {
    let mut d = Drill::prepare(o)?;
    let mut out = vec![raw_sentinel(&mut d)?];
    let operator = Operator::start(d.sim.clone());
    let result = operator_modes(&mut d);
    drop(operator);
    out.extend(result?);
    Ok(out)
}

/// The raw Sentinel setup: plain redis-servers and redis-sentinels, no operator.
struct Raw {
    /// The operator's own settings: the prod-redis sample with the operator's defaults.
    rc: RedisCluster,
    dir: PathBuf,
    pw: String,
    procs: BTreeMap<String, Proc>,
}

impl Raw {
    /// redis-server `i` with the operator's redis.conf minus its boot fence, a replica of
    /// `primary` on its first start (later it keeps what Sentinel rewrote).
    fn start_redis(&mut self, i: u32, primary: Option<u32>) -> Result<(), String> {
        let (ip, pw) = (pod_ip('b', i), &self.pw);
        let data = self.dir.join(format!("redis-{i}"));
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let path = data.join("redis.conf");
        let kept: String = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("replicaof "))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut conf = redis_conf(&self.rc)
            .replace("bind * -::*", &format!("bind {ip}"))
            .replace("dir /data", &format!("dir {}", data.display()))
            .replace("include /run/redis/auth.conf", "")
            .replace("min-replicas-to-write 1000000", "min-replicas-to-write 0")
            + &format!("bind-source-addr {ip}\nrequirepass \"{pw}\"\nmasterauth \"{pw}\"\n");
        conf.push_str(&kept);
        if kept.is_empty()
            && let Some(p) = primary
        {
            conf.push_str(&format!("replicaof {} 6379\n", pod_ip('b', p)));
        }
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        let log = data.join("redis.log");
        let p = spawn_on("redis-server", &format!("raw-{i}"), Some(NS_B), &path, &log)?;
        self.procs.insert(format!("redis-{i}"), p);
        Ok(())
    }

    /// The Sentinels, with the operator's Sentinel configuration, monitoring redis-0.
    fn start_sentinels(&mut self) -> Result<(), String> {
        for i in 0..MAX_SENTINELS {
            let ip = sentinel_ip('b', i);
            let sdir = self.dir.join(format!("sentinel-{i}"));
            std::fs::create_dir_all(&sdir).map_err(|e| e.to_string())?;
            let conf = format!(
                "{}bind {ip}\nsentinel announce-ip {ip}\ndir {}\n{}",
                sentinel_conf_with_monitor(&self.rc, &pod_ip('b', 0), 6379),
                sdir.display(),
                sentinel_auth_conf(&self.rc, &self.pw)
            );
            let path = sdir.join("sentinel.conf");
            std::fs::write(&path, conf).map_err(|e| e.to_string())?;
            let log = sdir.join("sentinel.log");
            let name = format!("raw-sentinel-{i}");
            let p = spawn_on("redis-sentinel", &name, Some(NS_B), &path, &log)?;
            self.procs.insert(format!("sentinel-{i}"), p);
        }
        Ok(())
    }

    /// The primary, once settled: every Sentinel agrees on it, the other two are linked
    /// replicas of it, and the Sentinels know both.
    fn settled(&self) -> Option<String> {
        let m = raw_sentinel_master(0, &self.pw)?;
        let agree = (1..MAX_SENTINELS)
            .all(|i| raw_sentinel_master(i, &self.pw).as_deref() == Some(m.as_str()));
        let linked = (0..3u32).filter(|i| pod_ip('b', *i) != m).all(|i| {
            Conn::connect(
                &format!("{}:6379", pod_ip('b', i)),
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
        let addrs: Vec<String> = (0..MAX_SENTINELS).map(raw_sentinel_addr).collect();
        let replicas: Vec<String> = (0..3u32)
            .map(|i| pod_ip('b', i))
            .filter(|ip| *ip != m)
            .collect();
        (agree && linked && sentinels_settled(&addrs, &self.pw, RAW, &m, &replicas)).then_some(m)
    }
}

/// The raw setup's master name in Sentinel.
const RAW: &str = "raw";

fn raw_sentinel_addr(i: u32) -> String {
    format!("{}:{}", sentinel_ip('b', i), l::SENTINEL_PORT)
}

fn raw_sentinel_master(i: u32, pw: &str) -> Option<String> {
    sentinel_master(&raw_sentinel_addr(i), pw, RAW)
}

/// Raw Sentinel, region B, the addresses the DR pods use later (they are not started yet).
fn raw_sentinel(d: &mut Drill) -> Result<Series, String> {
    println!("==> raw Sentinel: 3 redis-server + 3 redis-sentinel, no operator");
    let rc = d.sim.apply(&d.sample("prod-redis.yaml")?, |v| {
        v["metadata"]["name"] = RAW.into();
    })?;
    let mut raw = Raw {
        rc,
        dir: d.o.dir.join("raw"),
        pw: d.passwords[PROD].clone(),
        procs: BTreeMap::new(),
    };
    for i in 0..3 {
        raw.start_redis(i, (i > 0).then_some(0))?;
    }
    raw.start_sentinels()?;
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        let (primary_ip, _) = wait("raw Sentinels to settle", Duration::from_secs(90), || {
            raw.settled()
        })?;
        let victim = (0..3u32).find(|i| pod_ip('b', *i) == primary_ip).unwrap();
        let killed = Instant::now();
        raw.procs.remove(&format!("redis-{victim}"));
        let took = until_write(killed, "raw Sentinel", || {
            raw_sentinel_master(0, &raw.pw)
                .filter(|m| *m != primary_ip)
                .is_some_and(|m| write_ok(&format!("{m}:6379"), &raw.pw))
        })?;
        println!("    round {}: {:.2} s", round + 1, took.as_secs_f64());
        times.push(took);
        raw.start_redis(victim, None)?;
    }
    Ok(Series {
        mode: format!(
            "raw Sentinel (down-after {} ms), client asks a Sentinel",
            raw.rc.spec.sentinel_settings().down_after_milliseconds
        ),
        times,
    })
}

/// Production (the prod-redis sample, mode: sentinel, with its Sentinels and `-leader` VIP) and
/// a standalone cluster (the DR sample without replica mode, failing over after as long as
/// Sentinel's down-after) under the operator, their pods started. Returns the Sentinel and VIP
/// controllers (they stop when dropped) and down-after in seconds.
fn operator_clusters(d: &mut Drill) -> Result<(Controllers, i64), String> {
    d.add_secrets();
    d.locate_production_sentinels();
    let prod = d.sim.apply(&d.sample("prod-redis.yaml")?, |_| {})?;
    let down_after_s = prod.spec.sentinel_settings().down_after_milliseconds / 1000;
    d.sim.apply(&d.sample("dr-redis.yaml")?, |v| {
        v["spec"].as_object_mut().unwrap().remove("replicaMode");
        v["spec"]["failover"] = json!({"primaryUnavailableSeconds": down_after_s});
    })?;
    let controllers = Controllers::for_production(d);
    d.start_pods_when_applied(PROD)?;
    d.start_pods_when_applied(DR)?;
    Ok((controllers, down_after_s))
}

fn operator_modes(d: &mut Drill) -> Result<Vec<Series>, String> {
    let (_controllers, down_after_s) = operator_clusters(d)?;
    println!("==> operator, mode: sentinel (prod-redis sample, defaults)");
    let (via_vip, via_sentinel) = sentinel_mode_rounds(d)?;
    println!("==> operator, mode: standalone (failover.primaryUnavailableSeconds {down_after_s})");
    let standalone = standalone_mode_rounds(d)?;
    Ok(vec![
        Series {
            mode: "operator, sentinel mode, through the -leader endpoint".into(),
            times: via_vip,
        },
        Series {
            mode: "operator, sentinel mode, client asks a Sentinel".into(),
            times: via_sentinel,
        },
        Series {
            mode: format!("operator, standalone mode (primaryUnavailableSeconds {down_after_s})"),
            times: standalone,
        },
    ])
}

/// Sentinel mode: the first write through the `-leader` endpoint and through the Sentinel
/// protocol after production's primary is killed, each round.
fn sentinel_mode_rounds(d: &mut Drill) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let pw = d.passwords[PROD].clone();
    let mut via_vip = Vec::new();
    let mut via_sentinel = Vec::new();
    let master = l::sentinel_master_name(PROD);
    let addrs = sentinel_addrs('a');
    for round in 0..ROUNDS {
        let primary = settle(d, PROD)?;
        let primary_ip = ip(&primary);
        let replicas: Vec<String> = d
            .pods(PROD)
            .iter()
            .filter(|p| **p != primary)
            .map(|p| ip(p))
            .collect();
        wait(
            "the Sentinels to know both replicas",
            Duration::from_secs(60),
            || sentinels_settled(&addrs, &pw, &master, &primary_ip, &replicas).then_some(()),
        )?;
        let killed = Instant::now();
        d.kill_redis(&primary);
        let old_addr = addr(&primary);
        let mut vip_at = None;
        let mut sentinel_at = None;
        let vip = format!("{PROD_LEADER_VIP}:6379");
        until_write(killed, "sentinel mode", || {
            if sentinel_at.is_none()
                && sentinel_master(&addrs[0], &pw, &master)
                    .map(|m| format!("{m}:6379"))
                    .filter(|m| *m != old_addr)
                    .is_some_and(|m| write_ok(&m, &pw))
            {
                sentinel_at = Some(killed.elapsed());
            }
            if vip_at.is_none() && write_ok(&vip, &pw) {
                vip_at = Some(killed.elapsed());
            }
            vip_at.is_some() && sentinel_at.is_some()
        })?;
        let (v, s) = (vip_at.unwrap(), sentinel_at.unwrap());
        println!(
            "    round {}: -leader endpoint {:.2} s, Sentinel protocol {:.2} s",
            round + 1,
            v.as_secs_f64(),
            s.as_secs_f64()
        );
        via_vip.push(v);
        via_sentinel.push(s);
        d.restart_pod(PROD, &primary)?;
    }
    Ok((via_vip, via_sentinel))
}

/// Standalone mode: the first write on the newly labelled primary after the old one's Redis is
/// killed, each round.
fn standalone_mode_rounds(d: &mut Drill) -> Result<Vec<Duration>, String> {
    let pw = d.passwords[DR].clone();
    let mut standalone = Vec::new();
    for round in 0..ROUNDS {
        let primary = settle(d, DR)?;
        // The same pause as the Sentinel cases get for free while Sentinels settle.
        std::thread::sleep(Duration::from_secs(2));
        let killed = Instant::now();
        d.kill_redis(&primary);
        let took = until_write(killed, "standalone mode", || {
            d.labelled_primary(DR)
                .filter(|p| *p != primary)
                .is_some_and(|p| write_ok(&addr(&p), &pw))
        })?;
        println!("    round {}: {:.2} s", round + 1, took.as_secs_f64());
        standalone.push(took);
        d.restart_pod(DR, &primary)?;
    }
    Ok(standalone)
}

/// Wait until the cluster is settled: the labelled primary accepts writes and every other pod
/// is a linked replica of it. Returns the primary.
fn settle(d: &Drill, cluster: &str) -> Result<String, String> {
    let (primary, _) = wait(
        &format!("{cluster} to settle"),
        Duration::from_secs(120),
        || {
            let p = d.labelled_primary(cluster)?;
            let primary_ip = ip(&p);
            (d.current_primary(cluster).as_deref() == Some(p.as_str())
                && d.accepts_write(&p, ["bench:settle", "x"])
                && d.pods(cluster)
                    .iter()
                    .filter(|q| **q != p)
                    .all(|q| d.linked_to(q, &primary_ip)))
            .then_some(p)
        },
    )?;
    Ok(primary)
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
