//! Sentinel mode and the fenced role, against real redis-server and redis-sentinel processes on
//! 127.0.0.1. The Sentinels decide who is primary; the instance manager reports their view and
//! never fights them.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const PASSWORD: &str = "Cluster-pw-9dQ2rT";
const MASTER: &str = "mymaster";

fn config_get(r: &RedisServer, name: &str) -> String {
    r.cli(&["CONFIG", "GET", name])
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

fn password_protected(extra: &[&str]) -> RedisServer {
    let mut e: Vec<String> = vec!["--masterauth".into(), PASSWORD.into()];
    e.extend(extra.iter().map(|s| s.to_string()));
    RedisServer::start(RedisOpts {
        password: Some(PASSWORD.into()),
        extra: e,
        ..Default::default()
    })
}

/// A pod of a sentinel-mode cluster, replica of the peer on `upstream_port`.
fn peer_replica_topology(epoch: u64, upstream_port: u16, pw_file: &std::path::Path) -> Value {
    let mut t = replica_topology(epoch, "127.0.0.1", upstream_port, Some(pw_file));
    t["upstream"]["kind"] = "peer".into();
    t["replicaPriority"] = 100.into();
    t["replicaAnnounced"] = true.into();
    t["minReplicasToWrite"] = 0.into();
    t
}

fn replicaofs(im: &Im) -> usize {
    im.logs().matches("REPLICAOF").count()
}

#[test]
fn reports_the_sentinels_view_and_never_fights_a_sentinel_failover() {
    let dir = scratch("sentinel-failover");
    let pw_file = dir.path("password");
    write_secret(&pw_file, PASSWORD);
    let mut primary = password_protected(&[]);
    let p_port = primary.port().to_string();
    let replica = password_protected(&["--replicaof", "127.0.0.1", &p_port]);
    assert!(
        wait_until(SECS(10), || replica.info()["master_link_status"] == "up").is_some(),
        "replica did not link"
    );
    let sentinels = sentinels(MASTER, "127.0.0.1", primary.port(), Some(PASSWORD), 1);

    let topo = TopologyFile::new(&dir);
    let mut t = with_sentinel(
        peer_replica_topology(1, primary.port(), &pw_file),
        MASTER,
        &sentinels,
        Some(&pw_file),
    );
    t["primary"] = "dr-p".into();
    topo.write(&t);
    let pw_arg = pw_file.display().to_string();
    let im = Im::start(
        None,
        &replica,
        &topo,
        &dir,
        &["--redis-password-file", &pw_arg],
    );
    let p_addr = format!("127.0.0.1:{}", primary.port());
    let r_addr = format!("127.0.0.1:{}", replica.port());
    im.wait_status("the Sentinels' view of the primary", SECS(10), |s| {
        s["sentinelPrimary"] == p_addr.as_str()
            && s["sentinelsReachable"] == 3
            && s["appliedEpoch"] == 1
            && s["ready"] == true
    });
    let st = im.status();
    assert_eq!(st["sentinelEpoch"], 0, "{st}");
    assert_eq!(st["fenced"], false, "{st}");
    assert_eq!(st["role"], "replica", "{st}");
    assert!(st["error"].is_null(), "{st}");

    // The primary dies; the Sentinels promote the replica. Its topology still says "replica of
    // the dead primary": the instance manager must leave the promotion alone.
    let killed = Instant::now();
    primary.stop();
    im.wait_status("the Sentinels elected the replica", SECS(20), |s| {
        s["sentinelPrimary"] == r_addr.as_str() && s["role"] == "primary"
    });
    eprintln!("sentinel failover seen after {:?}", killed.elapsed());
    // Give the instance manager a few more ticks to (wrongly) act on its topology.
    std::thread::sleep(SECS(3));
    let st = im.status();
    assert_eq!(st["role"], "primary", "{st}");
    assert_eq!(st["sentinelPrimary"], r_addr.as_str(), "{st}");
    assert!(st["sentinelEpoch"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["sentinelsReachable"], 3, "{st}");
    assert_eq!(st["appliedEpoch"], 1, "{st}");
    assert_eq!(st["fenced"], false, "{st}");
    assert_eq!(st["ready"], true, "{st}");
    assert!(st["error"].is_null(), "{st}");
    assert_eq!(replica.info()["role"], "master");
    assert_eq!(config_get(&replica, "min-replicas-to-write"), "0");
    assert_eq!(
        try_set(replica.port(), Some(PASSWORD), "after-failover"),
        Ok("+OK".into())
    );
    assert_eq!(
        replicaofs(&im),
        0,
        "the instance manager issued REPLICAOF in sentinel mode:\n{}",
        im.logs()
    );
    assert!(!im.logs().contains(PASSWORD));
}

#[test]
fn a_boot_fenced_master_follows_the_sentinels_and_never_accepts_a_write() {
    let dir = scratch("sentinel-boot");
    let pw_file = dir.path("password");
    write_secret(&pw_file, PASSWORD);
    let elected = password_protected(&[]);
    elected.cli(&["SET", "from-elected", "yes"]);
    let sentinels = sentinels(MASTER, "127.0.0.1", elected.port(), Some(PASSWORD), 0);

    // The old primary restarts: a master, fenced by its redis.conf.
    let old = password_protected(&["--min-replicas-to-write", "1000000"]);
    let old_port = old.port();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut replies = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                replies.push(try_set(old_port, Some(PASSWORD), "must-not-land"));
                std::thread::sleep(Duration::from_millis(20));
            }
            replies
        })
    };

    // A few refused writes before the instance manager starts.
    std::thread::sleep(Duration::from_millis(200));

    // Its topology still says primary (the operator has not caught up): the Sentinels win.
    let topo = TopologyFile::new(&dir);
    let mut t = with_sentinel(primary_topology(5), MASTER, &sentinels, Some(&pw_file));
    t["primary"] = "dr-0".into();
    topo.write(&t);
    let pw_arg = pw_file.display().to_string();
    let im = Im::start(None, &old, &topo, &dir, &["--redis-password-file", &pw_arg]);
    let e_addr = format!("127.0.0.1:{}", elected.port());
    im.wait_status("re-pointed at the elected primary", SECS(10), |s| {
        s["role"] == "replica"
            && s["upstream"] == e_addr.as_str()
            && s["appliedEpoch"] == 5
            && s["fenced"] == false
            && s["ready"] == true
    });
    assert!(
        wait_until(SECS(10), || old.info()["master_link_status"] == "up").is_some(),
        "not linked to the elected primary: {:?}",
        old.info()
    );
    assert!(
        wait_until(SECS(5), || old
            .try_cli(&["GET", "from-elected"])
            .is_some_and(|v| v.trim() == "yes"))
        .is_some()
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let replies = sampler.join().unwrap();

    let st = im.status();
    assert_eq!(st["sentinelPrimary"], e_addr.as_str(), "{st}");
    assert_eq!(st["sentinelsReachable"], 3, "{st}");
    assert!(st["error"].is_null(), "{st}");
    assert_eq!(
        im.logs()
            .matches(&format!("REPLICAOF 127.0.0.1 {}", elected.port()))
            .count(),
        1,
        "{}",
        im.logs()
    );
    assert_eq!(replicaofs(&im), 1, "{}", im.logs());
    // Every write attempt was refused, first by the fence, then as a replica.
    let accepted: Vec<_> = replies.iter().filter(|r| **r == Ok("+OK".into())).collect();
    assert!(accepted.is_empty(), "writes accepted: {replies:?}");
    for line in replies.iter().flatten() {
        assert!(
            line.starts_with("-NOREPLICAS") || line.starts_with("-READONLY"),
            "unexpected answer {line}"
        );
    }
    let count = |p: &str| {
        replies
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|l| l.starts_with(p)))
            .count()
    };
    assert!(
        count("-NOREPLICAS") > 0 && count("-READONLY") > 0,
        "{replies:?}"
    );
    eprintln!(
        "{} write attempts: {} NOREPLICAS, {} READONLY, {} no connection",
        replies.len(),
        count("-NOREPLICAS"),
        count("-READONLY"),
        replies.iter().filter(|r| r.is_err()).count()
    );
    assert_eq!(
        elected.cli(&["EXISTS", "must-not-land"]).trim(),
        "0",
        "a refused write reached the primary"
    );
}

#[test]
fn the_fenced_role_stops_writes_and_a_later_epoch_makes_a_replica() {
    let dir = scratch("fenced");
    let redis = RedisServer::start(RedisOpts::default());
    let other = RedisServer::start(RedisOpts::default());
    let topo = TopologyFile::new(&dir);
    topo.write(&primary_topology(1));
    let im = Im::start(None, &redis, &topo, &dir, &[]);
    im.wait_status("primary applied", SECS(10), |s| {
        s["appliedEpoch"] == 1 && s["ready"] == true
    });
    assert_eq!(try_set(redis.port(), None, "k"), Ok("+OK".into()));

    let mut fenced = primary_topology(2);
    fenced["role"] = "fenced".into();
    topo.write(&fenced);
    im.wait_status("fenced", SECS(10), |s| {
        s["appliedEpoch"] == 2 && s["fenced"] == true && s["ready"] == false
    });
    let answer = try_set(redis.port(), None, "k").unwrap();
    assert!(answer.starts_with("-NOREPLICAS"), "{answer}");
    assert_eq!(im.get("/readyz").0, 503);
    assert_eq!(im.metric("redis_instance_manager_fenced"), Some(1.0));
    let st = im.status();
    assert_eq!(st["role"], "primary", "fencing changes nothing else: {st}");
    assert!(st["error"].is_null(), "{st}");
    assert_eq!(config_get(&redis, "min-replicas-to-write"), "1000000");

    // The operator promotes another pod that holds this one's data (a failover): it continues
    // this pod's replication history, so the replication gate lets this pod follow it.
    other.cli(&["REPLICAOF", "127.0.0.1", &redis.port().to_string()]);
    assert!(
        wait_until(SECS(10), || other.info()["master_link_status"] == "up").is_some(),
        "the other Redis did not sync"
    );
    other.cli(&["REPLICAOF", "NO", "ONE"]);
    other.cli(&["SET", "from-other", "yes"]);
    topo.write(&replica_topology(3, "127.0.0.1", other.port(), None));
    im.wait_status("replica of the other Redis", SECS(10), |s| {
        s["appliedEpoch"] == 3 && s["masterLinkUp"] == true && s["fenced"] == false
    });
    assert!(
        wait_until(SECS(5), || redis.cli(&["GET", "from-other"]).trim()
            == "yes")
        .is_some()
    );
    assert_eq!(other.info_num("sync_full"), 0, "{}", other.log());
    let answer = try_set(redis.port(), None, "k").unwrap();
    assert!(answer.starts_with("-READONLY"), "{answer}");
    assert_eq!(im.metric("redis_instance_manager_fenced"), Some(0.0));
}
