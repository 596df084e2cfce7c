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
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis_cluster_api::labels as l;
use redis_operator::config::{redis_conf, sentinel_auth_conf, sentinel_conf_with_monitor};
use serde_json::json;

use crate::controllers::{Controllers, Managed, sentinel_master, sentinels_settled};
use crate::net::{MAX_SENTINELS, NS_B, PROD_LEADER_VIP, pod_ip, sentinel_ip};
use crate::procs::Proc;
use crate::resp::Conn;
use crate::scenario::{
    DR, Drill, NS, Options, PROD, addr, labelled_primary, operator_loop, pods, wait,
};

pub const ROUNDS: usize = 3;

/// One mode's failover times.
pub struct Series {
    pub mode: String,
    pub times: Vec<Duration>,
}

fn write_ok(addr: &str, password: &str) -> bool {
    Conn::connect(addr, Some(password), Duration::from_millis(200))
        .ok()
        .and_then(|mut c| c.cmd(&["SET", "bench:failover", "x"]).ok())
        .is_some_and(|r| !r.is_error())
}

/// Poll every 10 ms until `f` says a write went through; the elapsed time since `from`.
fn until_write(from: Instant, what: &str, mut f: impl FnMut() -> bool) -> Result<Duration, String> {
    loop {
        if f() {
            return Ok(from.elapsed());
        }
        if from.elapsed() > Duration::from_secs(90) {
            return Err(format!("no write accepted within 90 s ({what})"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn run(o: &Options) -> Result<Vec<Series>, String> {
    let mut d = Drill::prepare(o)?;
    let mut out = vec![raw_sentinel(&mut d)?];
    let stop = Arc::new(AtomicBool::new(false));
    let operator = operator_loop(d.sim.clone(), stop.clone());
    let result = operator_modes(&mut d);
    stop.store(true, Ordering::Relaxed);
    let _ = operator.join();
    out.extend(result?);
    Ok(out)
}

/// Raw Sentinel, region B, the addresses the DR pods use later (they are not started yet).
fn raw_sentinel(d: &mut Drill) -> Result<Series, String> {
    println!("==> raw Sentinel: 3 redis-server + 3 redis-sentinel, no operator");
    let pw = d.passwords[PROD].clone();
    // The operator's own settings: the prod-redis sample with the operator's defaults.
    let yaml = std::fs::read_to_string(d.o.repo.join("config/samples/prod-redis.yaml"))
        .map_err(|e| e.to_string())?;
    let rc = d.sim.apply(&yaml, |v| {
        v["metadata"]["name"] = "raw".into();
    })?;
    let dir = d.o.dir.join("raw");
    let mut procs: BTreeMap<String, Proc> = BTreeMap::new();
    let start_redis = |i: u32, primary: Option<u32>| -> Result<Proc, String> {
        let ip = pod_ip('b', i);
        let data = dir.join(format!("redis-{i}"));
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let path = data.join("redis.conf");
        let kept: String = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("replicaof "))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut conf = redis_conf(&rc)
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
        Proc::spawn(
            &format!("raw-{i}"),
            Some(NS_B),
            &["redis-server".into(), path.display().to_string()],
            &data.join("redis.log"),
        )
    };
    for i in 0..3 {
        procs.insert(format!("redis-{i}"), start_redis(i, (i > 0).then_some(0))?);
    }
    for i in 0..MAX_SENTINELS {
        let ip = sentinel_ip('b', i);
        let sdir = dir.join(format!("sentinel-{i}"));
        std::fs::create_dir_all(&sdir).map_err(|e| e.to_string())?;
        let conf = format!(
            "{}bind {ip}\nsentinel announce-ip {ip}\ndir {}\n{}",
            sentinel_conf_with_monitor(&rc, &pod_ip('b', 0), 6379),
            sdir.display(),
            sentinel_auth_conf(&rc, &pw)
        );
        let path = sdir.join("sentinel.conf");
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        procs.insert(
            format!("sentinel-{i}"),
            Proc::spawn(
                &format!("raw-sentinel-{i}"),
                Some(NS_B),
                &["redis-sentinel".into(), path.display().to_string()],
                &sdir.join("sentinel.log"),
            )?,
        );
    }
    let master = "raw".to_string();
    let sentinel = |i: u32| format!("{}:{}", sentinel_ip('b', i), l::SENTINEL_PORT);
    let mut times = Vec::new();
    for round in 0..ROUNDS {
        // Settled: every Sentinel agrees, the other two are linked replicas of the primary.
        let (primary_ip, _) = wait("raw Sentinels to settle", Duration::from_secs(90), || {
            let m = sentinel_master(&sentinel(0), &pw, &master)?;
            let agree = (1..MAX_SENTINELS).all(|i| {
                sentinel_master(&sentinel(i), &pw, &master).as_deref() == Some(m.as_str())
            });
            let linked = (0..3u32).filter(|i| pod_ip('b', *i) != m).all(|i| {
                Conn::connect(
                    &format!("{}:6379", pod_ip('b', i)),
                    Some(&pw),
                    Duration::from_millis(300),
                )
                .ok()
                .and_then(|mut c| c.info("replication").ok())
                .is_some_and(|info| {
                    info.get("master_host") == Some(&m)
                        && info.get("master_link_status").map(String::as_str) == Some("up")
                })
            });
            let addrs: Vec<String> = (0..MAX_SENTINELS).map(sentinel).collect();
            let replicas: Vec<String> = (0..3u32)
                .map(|i| pod_ip('b', i))
                .filter(|ip| *ip != m)
                .collect();
            (agree && linked && sentinels_settled(&addrs, &pw, &master, &m, &replicas)).then_some(m)
        })?;
        let victim = (0..3u32).find(|i| pod_ip('b', *i) == primary_ip).unwrap();
        let killed = Instant::now();
        procs.remove(&format!("redis-{victim}"));
        let took = until_write(killed, "raw Sentinel", || {
            sentinel_master(&sentinel(0), &pw, &master)
                .filter(|m| *m != primary_ip)
                .is_some_and(|m| write_ok(&format!("{m}:6379"), &pw))
        })?;
        println!("    round {}: {:.2} s", round + 1, took.as_secs_f64());
        times.push(took);
        procs.insert(format!("redis-{victim}"), start_redis(victim, None)?);
    }
    drop(procs);
    Ok(Series {
        mode: format!(
            "raw Sentinel (down-after {} ms), client asks a Sentinel",
            rc.spec.sentinel_settings().down_after_milliseconds
        ),
        times,
    })
}

fn operator_modes(d: &mut Drill) -> Result<Vec<Series>, String> {
    let pw_prod = d.passwords[PROD].clone();
    let pw_dr = d.passwords[DR].clone();
    d.sim.add_secret(NS, "prod-redis-auth", &pw_prod);
    d.sim.add_secret(NS, "dr-redis-auth", &pw_dr);
    d.sim.sentinel_addresses.lock().unwrap().insert(
        PROD.into(),
        (0..MAX_SENTINELS)
            .map(|i| format!("{}:{}", sentinel_ip('a', i), l::SENTINEL_PORT))
            .collect(),
    );
    let samples = d.o.repo.join("config/samples");
    let read = |f: &str| std::fs::read_to_string(samples.join(f)).map_err(|e| e.to_string());
    let prod = d.sim.apply(&read("prod-redis.yaml")?, |_| {})?;
    // The DR sample's name and secret, as a standalone cluster (no replica mode), failing over
    // after as long as Sentinel's down-after.
    let down_after_s = prod.spec.sentinel_settings().down_after_milliseconds / 1000;
    d.sim.apply(&read("dr-redis.yaml")?, |v| {
        v["spec"].as_object_mut().unwrap().remove("replicaMode");
        v["spec"]["failover"] = json!({"primaryUnavailableSeconds": down_after_s});
    })?;
    let _controllers = Controllers::start(
        d.sim.clone(),
        vec![Managed {
            namespace: NS.into(),
            cluster: PROD.into(),
            region: 'a',
            password: pw_prod.clone(),
            leader_vip: Some(PROD_LEADER_VIP.into()),
        }],
        d.o.dir.join("sentinels"),
    );
    d.start_pods_when_applied(PROD)?;
    d.start_pods_when_applied(DR)?;

    println!("==> operator, mode: sentinel (prod-redis sample, defaults)");
    let mut via_vip = Vec::new();
    let mut via_sentinel = Vec::new();
    let master = l::sentinel_master_name(PROD);
    let sentinel0 = format!("{}:{}", sentinel_ip('a', 0), l::SENTINEL_PORT);
    let addrs: Vec<String> = (0..MAX_SENTINELS)
        .map(|i| format!("{}:{}", sentinel_ip('a', i), l::SENTINEL_PORT))
        .collect();
    for round in 0..ROUNDS {
        let primary = settle(d, PROD)?;
        let ip = addr(&primary).replace(":6379", "");
        let replicas: Vec<String> = pods(PROD)
            .iter()
            .filter(|p| **p != primary)
            .map(|p| addr(p).replace(":6379", ""))
            .collect();
        wait(
            "the Sentinels to know both replicas",
            Duration::from_secs(60),
            || sentinels_settled(&addrs, &pw_prod, &master, &ip, &replicas).then_some(()),
        )?;
        let killed = Instant::now();
        d.kill_redis(&primary);
        let old_addr = addr(&primary);
        let mut vip_at = None;
        let mut sentinel_at = None;
        let vip = format!("{PROD_LEADER_VIP}:6379");
        until_write(killed, "sentinel mode", || {
            if sentinel_at.is_none()
                && sentinel_master(&sentinel0, &pw_prod, &master)
                    .map(|m| format!("{m}:6379"))
                    .filter(|m| *m != old_addr)
                    .is_some_and(|m| write_ok(&m, &pw_prod))
            {
                sentinel_at = Some(killed.elapsed());
            }
            if vip_at.is_none() && write_ok(&vip, &pw_prod) {
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

    println!("==> operator, mode: standalone (failover.primaryUnavailableSeconds {down_after_s})");
    let mut standalone = Vec::new();
    for round in 0..ROUNDS {
        let primary = settle(d, DR)?;
        // The same pause as the Sentinel cases get for free while Sentinels settle.
        std::thread::sleep(Duration::from_secs(2));
        let killed = Instant::now();
        d.kill_redis(&primary);
        let took = until_write(killed, "standalone mode", || {
            labelled_primary(d, DR)
                .filter(|p| *p != primary)
                .is_some_and(|p| write_ok(&addr(&p), &pw_dr))
        })?;
        println!("    round {}: {:.2} s", round + 1, took.as_secs_f64());
        standalone.push(took);
        d.restart_pod(DR, &primary)?;
    }
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

/// Wait until the cluster is settled: the labelled primary accepts writes and every other pod
/// is a linked replica of it. Returns the primary.
fn settle(d: &Drill, cluster: &str) -> Result<String, String> {
    let (primary, _) = wait(
        &format!("{cluster} to settle"),
        Duration::from_secs(120),
        || {
            let p = labelled_primary(d, cluster)?;
            let ip = addr(&p).replace(":6379", "");
            let status = d.sim.get(NS, cluster).status?;
            (status.current_primary.as_deref() == Some(p.as_str())
                && d.conn(&p)
                    .ok()?
                    .cmd(&["SET", "bench:settle", "x"])
                    .is_ok_and(|r| !r.is_error())
                && pods(cluster)
                    .iter()
                    .filter(|q| **q != p)
                    .all(|q| d.linked_to(q, &ip)))
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
