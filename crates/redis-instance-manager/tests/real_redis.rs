//! The instance manager against real redis-server processes (and, for silent cuts and lag,
//! real network namespaces). Nothing on the Redis side is mocked.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A password that appears nowhere else, so grepping for it finds only leaks.
const SOURCE_PASSWORD: &str = "Src-pw-7f3Kq9xZ";
const WRONG_PASSWORD: &str = "Wrong-pw-M2vL8c";

fn linked(s: &serde_json::Value) -> bool {
    s["masterLinkUp"] == true
}

#[test]
fn replicates_a_password_protected_source_reports_bad_secrets_and_never_leaks_them() {
    let dir = scratch("pw");
    let src = RedisServer::start(RedisOpts {
        password: Some(SOURCE_PASSWORD.into()),
        ..Default::default()
    });
    let rep = RedisServer::start(RedisOpts::default());
    src.cli(&["SET", "greeting", "hello"]);
    let pw_file = dir.path("source-password");
    let topo = TopologyFile::new(&dir);
    topo.write(&replica_topology(
        1,
        "127.0.0.1",
        src.port(),
        Some(&pw_file),
    ));
    let mut im = Im::start(None, &rep, &topo, &dir, &[]);

    // 1. The secret file is missing: nothing is applied, the error says which file.
    im.wait_status("missing secret reported", SECS(10), |s| {
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not exist"))
    });
    let st = im.status();
    assert_eq!(st["masterLinkUp"], false);
    assert!(
        st["linkError"]
            .as_str()
            .unwrap()
            .contains(&pw_file.display().to_string())
    );
    assert_eq!(im.metric("redis_master_link_up"), Some(0.0));
    assert_eq!(im.get("/readyz").0, 503);
    assert_eq!(
        im.get("/healthz").0,
        200,
        "liveness must not depend on the link"
    );

    // 2. Wrong password: visible, logged once, link 0, the process keeps running.
    write_secret(&pw_file, WRONG_PASSWORD);
    im.wait_status("wrong password reported", SECS(10), |s| {
        s["linkError"]
            .as_str()
            .is_some_and(|e| e.contains("refused authentication"))
    });
    std::thread::sleep(SECS(4));
    let st = im.status();
    assert_eq!(st["masterLinkUp"], false);
    assert!(st["error"].is_null(), "{st}");
    assert_eq!(im.metric("redis_master_link_up"), Some(0.0));
    assert_eq!(
        im.logs().matches("refused authentication").count(),
        1,
        "logged once per change, not every second:\n{}",
        im.logs()
    );
    assert_eq!(rep.info()["master_link_status"], "down");
    eprintln!("wrong password: {}", st["linkError"]);

    // 3. The file is fixed: recovers by itself.
    write_secret(&pw_file, &format!("{SOURCE_PASSWORD}\n"));
    im.wait_status("link up after fixing the password", SECS(15), linked);
    assert_eq!(rep.cli(&["GET", "greeting"]).trim(), "hello");
    assert_eq!(im.metric("redis_master_link_up"), Some(1.0));
    assert_eq!(im.get("/readyz").0, 200);
    let st = im.status();
    assert_eq!(st["appliedEpoch"], 1);
    assert_eq!(st["role"], "replica");
    assert!(st["linkError"].is_null() && st["error"].is_null(), "{st}");
    // replica-priority / replica-announced from the topology.
    assert_eq!(
        rep.cli(&["CONFIG", "GET", "replica-priority"])
            .lines()
            .nth(1),
        Some("0")
    );
    assert_eq!(
        rep.cli(&["CONFIG", "GET", "replica-announced"])
            .lines()
            .nth(1),
        Some("no")
    );
    assert!(im.logs().contains("replication link: resolved"));

    // 4. No secret anywhere we publish: logs, arguments, metrics, status.
    let published = [
        ("logs", im.logs()),
        ("cmdline", im.cmdline()),
        ("metrics", im.metrics()),
        ("status", im.get("/status").1),
        ("readyz", im.get("/readyz").1),
    ];
    for (what, text) in published {
        assert!(!text.is_empty(), "{what} is empty");
        for secret in [SOURCE_PASSWORD, WRONG_PASSWORD] {
            assert!(
                !text.contains(secret),
                "the password leaked into {what}:\n{text}"
            );
        }
    }
    // The environment of the process carries no secret either.
    let environ = std::fs::read(format!("/proc/{}/environ", im.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&environ).contains(SOURCE_PASSWORD));

    // Restart safety with credentials and TLS-off settings in place: nothing is re-applied
    // (masterauth is compared, not blindly re-set).
    let applied = im.logs().matches("applying").count();
    let (full, partial) = (src.info_num("sync_full"), src.info_num("sync_partial_ok"));
    im.restart();
    im.wait_status("link up after restart", SECS(10), |s| {
        linked(s) && s["appliedEpoch"] == 1
    });
    assert_eq!(
        im.logs().matches("applying").count(),
        applied,
        "{}",
        im.logs()
    );
    assert_eq!(
        (src.info_num("sync_full"), src.info_num("sync_partial_ok")),
        (full, partial)
    );
}

#[test]
fn replicates_over_tls_and_reports_a_tls_failure() {
    let dir = scratch("tls");
    let certs = make_certs(&dir, &["127.0.0.1"]);
    let src = RedisServer::start(RedisOpts {
        password: Some(SOURCE_PASSWORD.into()),
        tls: Some(certs.clone()),
        ..Default::default()
    });
    let rep = RedisServer::start(RedisOpts::default());
    src.cli(&["SET", "over", "tls"]);
    let pw_file = dir.path("source-password");
    write_secret(&pw_file, SOURCE_PASSWORD);
    let topo = TopologyFile::new(&dir);
    let mut t = replica_topology(1, "127.0.0.1", src.port(), Some(&pw_file));
    t["upstream"]["tls"] = true.into();
    topo.write(&t);
    let tls_args = |ca: &std::path::Path| {
        vec![
            "--tls-ca-file".to_string(),
            ca.display().to_string(),
            "--tls-cert-file".to_string(),
            certs.cert.display().to_string(),
            "--tls-key-file".to_string(),
            certs.key.display().to_string(),
        ]
    };
    let good = tls_args(&certs.ca);
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let mut im = Im::start(None, &rep, &topo, &dir, &good);
    im.wait_status("link up over TLS", SECS(15), linked);
    assert_eq!(rep.cli(&["GET", "over"]).trim(), "tls");
    assert_eq!(
        rep.cli(&["CONFIG", "GET", "tls-replication"])
            .lines()
            .nth(1),
        Some("yes")
    );

    // A CA that did not sign the source's certificate: the probe fails with a TLS error.
    let other = scratch("tls-other");
    let other_certs = make_certs(&other, &["127.0.0.1"]);
    im.stop();
    let bad = tls_args(&other_certs.ca);
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    let im_bad = Im::start(None, &rep, &topo, &dir, &bad);
    im_bad.wait_status("TLS failure reported", SECS(10), |s| {
        s["linkError"].as_str().is_some_and(|e| e.contains("TLS")) && s["masterLinkUp"] == false
    });
    assert_eq!(im_bad.metric("redis_master_link_up"), Some(0.0));
    eprintln!("TLS failure: {}", im_bad.status()["linkError"]);
    drop(im_bad);
    im.restart();
    im.wait_status("link up again with the right CA", SECS(15), linked);
}

#[test]
fn source_killed_is_seen_within_two_intervals_and_comes_back_with_a_partial_resync() {
    let dir = scratch("kill");
    let mut src = RedisServer::start(RedisOpts::default());
    let rep = RedisServer::start(RedisOpts::default());
    let topo = TopologyFile::new(&dir);
    topo.write(&replica_topology(1, "127.0.0.1", src.port(), None));
    let im = Im::start(None, &rep, &topo, &dir, &[]);
    im.wait_status("link up", SECS(15), linked);
    for i in 0..50 {
        src.cli(&["SET", &format!("k{i}"), "v"]);
    }
    im.wait_status("caught up", SECS(10), |s| s["lagBytes"] == 0 && linked(s));
    assert_eq!(src.info_num("sync_full"), 1);

    src.stop();
    let t0 = Instant::now();
    im.wait_status("link down after the source died", SECS(5), |s| !linked(s));
    let took = t0.elapsed();
    assert!(
        took <= Duration::from_millis(2500),
        "link_up went to 0 after {took:?}, more than two probe intervals"
    );
    let st = im.status();
    assert!(
        st["linkError"]
            .as_str()
            .unwrap()
            .contains("cannot reach the source"),
        "{st}"
    );
    assert_eq!(im.metric("redis_master_link_up"), Some(0.0));
    assert_eq!(im.get("/healthz").0, 200);

    src.restart();
    im.wait_status("link up after the source came back", SECS(15), linked);
    assert_eq!(
        src.info_num("sync_full"),
        0,
        "the restarted source served a full resync:\n{}",
        src.log()
    );
    assert!(src.info_num("sync_partial_ok") >= 1);
    assert_eq!(rep.cli(&["GET", "k49"]).trim(), "v");
}

/// A source in one network namespace and, in another joined to it by a veth pair
/// (`NetnsPair::new(subnet)`), its replica under an instance manager started with `im_args`;
/// linked when [`across_regions`] returns. Destructure it binding every field (`..` would
/// delete the scratch directory at once), `net` first and `im` last: bindings drop in reverse,
/// the instance manager first and the namespaces last.
struct Linked {
    im: Im,
    _topo: TopologyFile,
    rep: RedisServer,
    src: RedisServer,
    _dir: ScratchDir,
    net: NetnsPair,
}

/// `redis-cli -r <repeats> -i <interval> SET <key> <value>` against `src`, from region A.
fn writer(
    net: &NetnsPair,
    src: &RedisServer,
    repeats: &str,
    interval: &str,
    key: &str,
    value: &str,
) -> Proc {
    Proc::adopt(
        "writer",
        command(Some(&net.a), "redis-cli")
            .args(["-h", &net.ip_a, "-p", &src.port().to_string()])
            .args(["-r", repeats, "-i", interval, "SET", key, value])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn across_regions<const S: usize, const R: usize>(
    subnet: u8,
    name: &str,
    src_extra: [&str; S],
    rep_extra: [&str; R],
    im_args: &[&str],
) -> Linked {
    let net = NetnsPair::new(subnet);
    let dir = scratch(name);
    let src = RedisServer::start(RedisOpts {
        ns: Some(net.a.clone()),
        host: net.ip_a.clone(),
        extra: src_extra.map(String::from).to_vec(),
        ..Default::default()
    });
    let rep = RedisServer::start(RedisOpts {
        ns: Some(net.b.clone()),
        extra: rep_extra.map(String::from).to_vec(),
        ..Default::default()
    });
    let topo = TopologyFile::new(&dir);
    topo.write(&replica_topology(1, &net.ip_a, src.port(), None));
    let im = Im::start(Some(&net.b), &rep, &topo, &dir, im_args);
    im.wait_status("link up across the veth", SECS(15), linked);
    Linked {
        im,
        _topo: topo,
        rep,
        src,
        _dir: dir,
        net,
    }
}

#[test]
fn silent_network_cut_is_seen_in_seconds_and_healing_just_as_fast() {
    let Linked {
        net,
        _dir,
        src,
        rep,
        _topo,
        im,
    } = across_regions(1, "cut", [], [], &[]);

    net.cut();
    let t0 = Instant::now();
    im.wait_status("link down after a silent cut", SECS(8), |s| !linked(s));
    let down_after = t0.elapsed();
    // Redis itself has not noticed (repl-timeout is 60 s): only the probe catches it.
    assert_eq!(rep.info()["master_link_status"], "up");
    assert!(
        down_after <= SECS(3),
        "silent cut detected after {down_after:?}"
    );
    let st = im.status();
    assert!(
        st["linkError"]
            .as_str()
            .unwrap()
            .contains("no answer within the probe timeout"),
        "{st}"
    );
    assert_eq!(
        im.get("/healthz").0,
        200,
        "a down link must not fail liveness"
    );
    assert_eq!(im.get("/readyz").0, 503);

    net.heal();
    let t1 = Instant::now();
    im.wait_status("link up after healing", SECS(8), linked);
    let up_after = t1.elapsed();
    assert!(up_after <= SECS(3), "healing detected after {up_after:?}");
    assert_eq!(
        src.info_num("sync_full"),
        1,
        "healing must not cause a full resync"
    );
    eprintln!("silent cut: down after {down_after:?}, up after {up_after:?}");
}

/// A promotion does not wait for a probe of the source it leaves: the source is silent (a
/// listener that never answers, as behind a cut link), so every pass spends the whole probe
/// timeout (4 s here) observing it, and the new topology cuts that observation short.
#[test]
fn a_new_topology_is_applied_without_waiting_for_a_silent_source_probe() {
    let dir = scratch("preempt");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let rep = RedisServer::start(RedisOpts::default());
    let topo = TopologyFile::new(&dir);
    topo.write(&replica_topology(1, "127.0.0.1", silent_port, None));
    let im = Im::start(None, &rep, &topo, &dir, &["--probe-timeout", "4s"]);
    im.wait_status("the silent source reported", SECS(15), |s| {
        s["appliedEpoch"] == 1 || s["linkError"].is_string()
    });
    // The passes now run back to back, each observing the silent source for 4 s.
    std::thread::sleep(SECS(1));
    let written = Instant::now();
    topo.write(&primary_topology(2));
    let took = im.wait_status("the promotion applied", SECS(10), |s| {
        s["appliedEpoch"] == 2 && s["role"] == "primary"
    });
    eprintln!(
        "promotion applied {:?} after the topology was written",
        written.elapsed()
    );
    // The file is polled every 500 ms; without the cut-short observation this takes up to the
    // 4 s probe timeout.
    assert!(
        took <= Duration::from_millis(1500),
        "applied after {took:?}\n{}",
        im.logs()
    );
    drop(silent);
}

#[test]
fn promotion_and_repointing_without_a_full_resync_on_the_new_primary() {
    let dir = scratch("promote");
    let redis: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start(RedisOpts::default()))
        .collect();
    let dirs: Vec<ScratchDir> = (0..3).map(|_| scratch("promote-pod")).collect();
    let topos: Vec<TopologyFile> = dirs.iter().map(TopologyFile::new).collect();
    let port = |i: usize| redis[i].port();
    topos[0].write(&primary_topology(1));
    topos[1].write(&replica_topology(1, "127.0.0.1", port(0), None));
    topos[2].write(&replica_topology(1, "127.0.0.1", port(0), None));
    let ims: Vec<Im> = (0..3)
        .map(|i| Im::start(None, &redis[i], &topos[i], &dirs[i], &[]))
        .collect();
    ims[0].wait_status("pod 0 primary and ready", SECS(10), |s| {
        s["role"] == "primary" && s["ready"] == true
    });
    for im in &ims[1..] {
        im.wait_status("replica linked", SECS(15), linked);
    }
    for i in 0..100 {
        redis[0].cli(&["SET", &format!("k{i}"), "before"]);
    }
    let off = redis[0].info_num("master_repl_offset");
    for r in &redis[1..] {
        assert!(
            wait_until(SECS(10), || r.info_num("slave_repl_offset") >= off).is_some(),
            "replica did not catch up"
        );
    }

    // Epoch 2: pod 1 is promoted, pods 0 and 2 follow it.
    topos[1].write(&primary_topology(2));
    ims[1].wait_status("pod 1 promoted first", SECS(10), |s| s["role"] == "primary");
    topos[0].write(&replica_topology(2, "127.0.0.1", port(1), None));
    topos[2].write(&replica_topology(2, "127.0.0.1", port(1), None));
    ims[1].wait_status("pod 1 promoted", SECS(10), |s| {
        s["role"] == "primary" && s["ready"] == true && s["appliedEpoch"] == 2
    });
    for i in [0, 2] {
        ims[i].wait_status("re-pointed to pod 1", SECS(15), |s| {
            linked(s) && s["appliedEpoch"] == 2 && s["upstream"] == format!("127.0.0.1:{}", port(1))
        });
    }
    let full = redis[1].info_num("sync_full");
    let partial = redis[1].info_num("sync_partial_ok");
    assert_eq!(
        full,
        0,
        "the new primary served a full resync:\n{}",
        redis[1].log()
    );
    assert_eq!(partial, 2, "both followers should have partially resynced");
    redis[1].cli(&["SET", "after", "promotion"]);
    for i in [0, 2] {
        assert!(
            wait_until(SECS(5), || redis[i].cli(&["GET", "after"]).trim()
                == "promotion")
            .is_some()
        );
    }
    assert_eq!(ims[1].metric("redis_replication_lag_bytes"), Some(0.0));
    assert!(ims[1].metrics().contains("role=\"master\""));
    assert_eq!(
        redis[1]
            .cli(&["CONFIG", "GET", "replica-priority"])
            .lines()
            .nth(1),
        Some("100")
    );
    drop(dir);
}

#[test]
fn stale_epochs_are_ignored_and_unknown_versions_refused() {
    let dir = scratch("epoch");
    let src = RedisServer::start(RedisOpts::default());
    let rep = RedisServer::start(RedisOpts::default());
    let topo = TopologyFile::new(&dir);
    topo.write(&replica_topology(5, "127.0.0.1", src.port(), None));
    let im = Im::start(None, &rep, &topo, &dir, &[]);
    im.wait_status("epoch 5 applied", SECS(15), |s| {
        linked(s) && s["appliedEpoch"] == 5
    });

    // An older instruction (a promotion at epoch 4) must not undo epoch 5.
    topo.write(&primary_topology(4));
    im.wait_status("stale epoch reported", SECS(5), |s| {
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("ignoring topology epoch 4"))
    });
    std::thread::sleep(SECS(2));
    assert_eq!(rep.info()["role"], "slave");
    assert_eq!(im.status()["appliedEpoch"], 5);

    // A format version from the future is refused; the last good topology stays.
    let mut v2 = primary_topology(9);
    v2["version"] = 2.into();
    topo.write(&v2);
    im.wait_status("unknown version refused", SECS(5), |s| {
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("format version 2"))
    });
    std::thread::sleep(SECS(2));
    assert_eq!(rep.info()["role"], "slave");
    let st = im.status();
    assert_eq!(st["appliedEpoch"], 5);
    assert!(linked(&st));
    assert_eq!(
        im.metric("redis_instance_manager_topology_error"),
        Some(1.0)
    );

    // A newer valid epoch is applied.
    topo.write(&primary_topology(6));
    im.wait_status("epoch 6 applied", SECS(10), |s| {
        s["appliedEpoch"] == 6 && s["role"] == "primary" && s["error"].is_null()
    });
}

#[test]
fn restarts_of_the_instance_manager_and_of_redis_converge_without_a_full_resync() {
    let dir = scratch("restart");
    let src = RedisServer::start(RedisOpts::default());
    let mut rep = RedisServer::start(RedisOpts::default());
    let topo = TopologyFile::new(&dir);
    topo.write(&replica_topology(1, "127.0.0.1", src.port(), None));
    let mut im = Im::start(None, &rep, &topo, &dir, &[]);
    im.wait_status("link up", SECS(15), linked);
    for i in 0..50 {
        src.cli(&["SET", &format!("k{i}"), "v"]);
    }
    im.wait_status("caught up", SECS(10), |s| s["lagBytes"] == 0 && linked(s));
    let full = src.info_num("sync_full");
    let partial = src.info_num("sync_partial_ok");

    // A new epoch naming the same upstream: applied, but no REPLICAOF and no resync.
    let replicaofs = im.logs().matches("REPLICAOF").count();
    topo.write(&replica_topology(2, "127.0.0.1", src.port(), None));
    im.wait_status("epoch 2 applied", SECS(10), |s| {
        linked(s) && s["appliedEpoch"] == 2
    });
    assert_eq!(
        im.logs().matches("REPLICAOF").count(),
        replicaofs,
        "{}",
        im.logs()
    );
    assert_eq!(src.info_num("sync_full"), full);
    assert_eq!(src.info_num("sync_partial_ok"), partial);

    // Instance manager restart: Redis already replicates the desired upstream; nothing to do.
    let before = im.logs().matches("applying").count();
    im.restart();
    im.wait_status(
        "link up after the instance manager restarted",
        SECS(10),
        |s| linked(s) && s["appliedEpoch"] == 2,
    );
    assert_eq!(
        im.logs().matches("applying").count(),
        before,
        "a restarted instance manager must not re-issue commands:\n{}",
        im.logs()
    );
    assert_eq!(src.info_num("sync_full"), full);
    assert_eq!(src.info_num("sync_partial_ok"), partial);

    // redis-server restart: it comes back (from its rewritten config) as a replica and resumes
    // with a partial resync; the instance manager notices the new run_id and re-checks.
    rep.restart();
    assert!(
        wait_until(SECS(5), || im.logs().contains("run_id changed")).is_some(),
        "{}",
        im.logs()
    );
    im.wait_status("link up after redis-server restarted", SECS(15), linked);
    assert!(
        wait_until(SECS(5), || src.info_num("sync_partial_ok") == partial + 1).is_some(),
        "no partial resync after the replica restarted:\n{}",
        src.log()
    );
    assert_eq!(src.info_num("sync_full"), full, "{}", src.log());

    // A redis-server that lost its config (comes back as a master) is re-pointed.
    rep.cli(&["REPLICAOF", "NO", "ONE"]);
    im.wait_status("role drift repaired", SECS(10), |s| {
        linked(s) && s["role"] == "replica"
    });
    assert_eq!(src.info_num("sync_full"), full, "{}", src.log());
}

#[test]
fn lag_is_measured_against_the_upstream_under_a_rate_limited_link() {
    // The probe shares the shaped link with the replication stream: give it room.
    let Linked {
        net,
        _dir,
        src,
        rep,
        _topo,
        im,
    } = across_regions(2, "lag", [], [], &["--probe-timeout", "3s"]);

    // 256 kbit/s from source to replica; the writer produces ~200 KB/s.
    net.limit_a_to_b("256kbit", "16kb", "400ms");
    let value = "x".repeat(1000);
    let writer = writer(&net, &src, "3000", "0.005", "lagkey", &value);
    let writer_pid = writer.pid().to_string();

    let test_lag = || src.info_num("master_repl_offset") - rep.info_num("slave_repl_offset");
    im.wait_status("lag above 100 KB", SECS(20), |s| {
        s["lagBytes"].as_i64().is_some_and(|l| l > 100_000)
    });
    // Pause the writer: the upstream offset stands still and the replica drains at the link
    // rate (32 KB/s), so the true lag moves slowly and the comparison is meaningful.
    Command::new("kill")
        .args(["-STOP", &writer_pid])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let frozen = src.info_num("master_repl_offset");
    // The instance manager reads the upstream's own offset (not the replica's idea of it).
    im.wait_status(
        "the upstream offset read by the instance manager",
        SECS(15),
        |s| {
            s["upstreamOffset"]
                .as_i64()
                .is_some_and(|o| (o - frozen).abs() <= 200)
        },
    );
    for _ in 0..3 {
        let before = test_lag();
        let upstream_now = src.info_num("master_repl_offset");
        let st = im.status();
        let metric = im.metric("redis_replication_lag_bytes").unwrap() as i64;
        let after = test_lag();
        let im_lag = st["lagBytes"].as_i64().unwrap();
        eprintln!(
            "lag: test-computed {before} (before) / {after} (after), instance manager {im_lag}, {}s",
            st["lagSeconds"]
        );
        // Tolerance: the instance manager's value is at most one tick old (interval plus a probe
        // of up to 3 s on this shaped link); the lag only shrinks, at most at the link rate.
        let drain = 32_000 * 5;
        assert!(
            before > 0 && im_lag > 0,
            "lag must be visible: test {before}, im {im_lag}"
        );
        assert!(
            im_lag + 200 >= after && im_lag <= before + drain,
            "instance manager lag {im_lag} outside [{after}, {}] (test-computed)",
            before + drain
        );
        assert!(
            (st["upstreamOffset"].as_i64().unwrap() - upstream_now).abs() <= 200,
            "upstream offset {} read by the instance manager vs {upstream_now} read by the test",
            st["upstreamOffset"]
        );
        assert!(
            (metric - im_lag).abs() <= drain,
            "metric {metric} vs status {im_lag}"
        );
        assert!(st["lagSeconds"].as_f64().unwrap() > 0.0, "{st}");
        std::thread::sleep(Duration::from_millis(700));
    }
    // Load stopped, link still shaped: the replica drains at the link rate and catches up.
    drop(writer);
    let t0 = Instant::now();
    im.wait_status("lag back to 0 after the load stopped", SECS(60), |s| {
        s["lagBytes"] == 0 && linked(s)
    });
    eprintln!(
        "lag: drained to 0 in {:?} over the shaped link",
        t0.elapsed()
    );
    for l in im.logs().lines().filter(|l| l.contains("replication link")) {
        eprintln!("lag: im log: {l}");
    }
    net.unlimit();
    assert!(
        wait_until(SECS(5), || im.metric("redis_replication_lag_bytes")
            == Some(0.0))
        .is_some()
    );
    assert_eq!(im.status()["lagSeconds"], 0.0);
    assert_eq!(
        src.info_num("sync_full"),
        1,
        "the shaped link must not cause a full resync"
    );
}

/// A replication stream that saturates the link (the drill's rate-limited step, and any WAN
/// link during a write burst) must not blind the probe with the default 800 ms timeout: the
/// probe's answers wait in the link's queue behind the stream and a lost packet waits for a
/// TCP retransmission, so a fresh connection (connect, AUTH, INFO: three round trips) often
/// cannot be made in time. The instance manager used to drop its probe connection on every
/// timeout and every 10 s, and then report the link down with the lag unknown for seconds on
/// end, exactly while the lag was high (CI: `lagBytes` null for the drill's whole 3 s wait).
/// Now the connection is kept through a late answer and renewed in the background.
#[test]
fn a_saturated_link_does_not_blind_the_probe() {
    // The default probe timeout (800 ms) and connection age (10 s).
    let Linked {
        net,
        _dir,
        src,
        rep,
        _topo,
        im,
    } = across_regions(5, "saturated", [], [], &[]);

    // 2 Mbit/s with up to 400 ms of queue (the drill's shaping, slower) against a writer of
    // ~400 KB/s: the stream keeps the queue full for the whole measurement.
    net.limit_a_to_b("2mbit", "32kbit", "400ms");
    let value = "x".repeat(4000);
    let _writer = writer(&net, &src, "100000", "0.01", "burst", &value);
    // Other traffic shares the link (four bulk TCP flows): the queue stays full, every
    // answer waits ~400 ms in it, and a fresh connection's several round trips do not fit in
    // the probe timeout.
    let sink = Proc::adopt(
        "sink",
        command(Some(&net.b), "python3")
            .args(["-c", CROSS_TRAFFIC_SINK, "0.0.0.0", "7777"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let _bulk = Proc::adopt(
        "bulk",
        command(Some(&net.a), "python3")
            .args(["-c", CROSS_TRAFFIC_SOURCE, &net.ip_b, "7777"])
            // A broken pipe when the sink goes first is the end of the test, not an error.
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    im.wait_status("lag above 200 KB", SECS(20), |s| {
        s["lagBytes"].as_i64().is_some_and(|l| l > 200_000)
    });
    // 25 s of saturation (more than two connection ages), sampled every 250 ms.
    let (mut samples, mut unknown, mut down) = (0u32, 0u32, 0u32);
    let (mut blind_since, mut longest_blind) = (None::<Instant>, Duration::ZERO);
    let t0 = Instant::now();
    while t0.elapsed() < SECS(25) {
        let st = im.status();
        samples += 1;
        let blind = st["lagBytes"].is_null();
        unknown += u32::from(blind);
        down += u32::from(!linked(&st));
        match (blind, blind_since) {
            (true, None) => blind_since = Some(Instant::now()),
            (false, Some(at)) => {
                longest_blind = longest_blind.max(at.elapsed());
                blind_since = None;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    if let Some(at) = blind_since {
        longest_blind = longest_blind.max(at.elapsed());
    }
    let lag = src.info_num("master_repl_offset") - rep.info_num("slave_repl_offset");
    eprintln!(
        "saturated link: {samples} samples, lag unknown in {unknown}, link down in {down}, \
         longest unknown stretch {longest_blind:?}, lag at the end {lag} bytes"
    );
    for l in im.logs().lines().filter(|l| l.contains("replication link")) {
        eprintln!("saturated link: im log: {l}");
    }
    assert!(lag > 200_000, "the link was not saturated: lag {lag}");
    // The drill waits 3 s for a reading; a single late answer (one tick) is tolerated.
    assert!(
        longest_blind < Duration::from_millis(2500),
        "the lag was unknown for {longest_blind:?} in a row"
    );
    assert!(
        unknown * 5 <= samples,
        "the lag was unknown in {unknown} of {samples} samples"
    );
    drop(sink);
    net.unlimit();
}

/// Reads and discards whatever four connections send (argv: address, port).
const CROSS_TRAFFIC_SINK: &str = r#"
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)
def drain(c):
    while c.recv(65536): pass
while True:
    c, _ = s.accept(); threading.Thread(target=drain, args=(c,), daemon=True).start()
"#;

/// Four TCP flows sending as fast as the link takes (argv: address, port).
const CROSS_TRAFFIC_SOURCE: &str = r#"
import socket, sys, threading
def blast():
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    while True: c.sendall(b"x" * 65536)
ts = [threading.Thread(target=blast) for _ in range(4)]
for t in ts: t.start()
for t in ts: t.join()
"#;

#[test]
fn replicates_as_an_acl_user() {
    let dir = scratch("acl");
    let src = RedisServer::start(RedisOpts {
        password: Some(SOURCE_PASSWORD.into()),
        ..Default::default()
    });
    // A replication-only user on the source.
    src.cli(&[
        "ACL",
        "SETUSER",
        "repl",
        "on",
        ">Repl-pw-5tG2",
        "+psync",
        "+replconf",
        "+ping",
        "+info",
    ]);
    let rep = RedisServer::start(RedisOpts::default());
    src.cli(&["SET", "acl", "works"]);
    let pw_file = dir.path("repl-password");
    write_secret(&pw_file, "Repl-pw-5tG2");
    let topo = TopologyFile::new(&dir);
    let mut t = replica_topology(1, "127.0.0.1", src.port(), Some(&pw_file));
    t["upstream"]["username"] = "repl".into();
    topo.write(&t);
    let im = Im::start(None, &rep, &topo, &dir, &[]);
    im.wait_status("link up as user repl", SECS(15), linked);
    assert_eq!(rep.cli(&["GET", "acl"]).trim(), "works");
    // The replication gate linked it as user repl, then closed again: Redis's own reconnects
    // stop at AUTH until the gate has checked the upstream.
    let user = rep.cli(&["CONFIG", "GET", "masteruser"]);
    assert!(
        user.lines().nth(1).unwrap().starts_with("gate-closed-"),
        "{user}"
    );
    assert!(
        im.logs().contains("replication gate: 127.0.0.1:"),
        "{}",
        im.logs()
    );
    assert!(!im.logs().contains("Repl-pw-5tG2"));
}

/// The upstream fails over to a replica that is behind this one: this replica's extra writes are
/// reported (`divergedBytes`, a WARN line, `redis_replication_diverged_bytes`) and it
/// resynchronises in full; a replica that was not ahead resumes partially and reports nothing.
#[test]
fn a_replica_ahead_of_the_new_upstream_reports_the_diverged_bytes_and_one_not_ahead_does_not() {
    let dir = scratch("diverge");
    // No PINGs from the primary to its replicas during the test: offsets move only with writes.
    let mut p = RedisServer::start(RedisOpts {
        extra: vec!["--repl-ping-replica-period".into(), "3600".into()],
        ..Default::default()
    });
    let r = RedisServer::start(RedisOpts::default());
    let pods: Vec<RedisServer> = (0..2)
        .map(|_| RedisServer::start(RedisOpts::default()))
        .collect();
    let dirs: Vec<ScratchDir> = (0..2).map(|_| scratch("diverge-pod")).collect();
    let topos: Vec<TopologyFile> = dirs.iter().map(TopologyFile::new).collect();
    for t in &topos {
        t.write(&replica_topology(1, "127.0.0.1", p.port(), None));
    }
    // D (ahead of R at the failover) and N (not ahead), both managed.
    let ims: Vec<Im> = (0..2)
        .map(|i| Im::start(None, &pods[i], &topos[i], &dirs[i], &[]))
        .collect();
    let (d, n) = (&pods[0], &pods[1]);
    let (im_d, im_n) = (&ims[0], &ims[1]);
    r.cli(&["REPLICAOF", "127.0.0.1", &p.port().to_string()]);
    for i in 0..50 {
        p.cli(&["SET", &format!("k{i}"), "before"]);
    }
    let off = p.info_num("master_repl_offset");
    assert!(
        wait_until(SECS(5), || r.info()["master_link_status"] == "up"
            && r.info_num("slave_repl_offset") == off)
        .is_some(),
        "R did not catch up"
    );
    for im in &ims {
        im.wait_status("caught up and seen so by the probe", SECS(10), |s| {
            linked(s) && s["replOffset"] == off
        });
    }

    // R is promoted (as a failover would): replid2 = P's replid, second_repl_offset = off + 1.
    r.cli(&["REPLICAOF", "NO", "ONE"]);
    let ri = r.info();
    assert_eq!(ri["master_replid2"], p.info()["master_replid"]);
    let second: i64 = ri["second_repl_offset"].parse().unwrap();
    assert_eq!(second, off + 1);

    // N is exactly at R's offset: it follows R with a partial resync, nothing diverged.
    topos[1].write(&replica_topology(2, "127.0.0.1", r.port(), None));
    im_n.wait_status("N follows R", SECS(10), |s| {
        linked(s) && s["appliedEpoch"] == 2 && s["upstream"] == format!("127.0.0.1:{}", r.port())
    });
    assert_eq!(r.info_num("sync_partial_ok"), 1, "{}", r.log());
    assert_eq!(r.info_num("sync_full"), 0, "{}", r.log());

    // Writes R never gets reach D.
    for i in 0..20 {
        p.cli(&["SET", &format!("lost{i}"), "after-the-failover"]);
    }
    let d_off = p.info_num("master_repl_offset");
    assert!(d_off > off);
    im_d.wait_status(
        "D has the writes R lacks, seen by the probe",
        SECS(10),
        |s| linked(s) && s["replOffset"] == d_off,
    );

    // The old primary dies; D is pointed at R.
    p.stop();
    topos[0].write(&replica_topology(2, "127.0.0.1", r.port(), None));
    im_d.wait_status("D follows R", SECS(10), |s| {
        linked(s) && s["appliedEpoch"] == 2 && s["upstream"] == format!("127.0.0.1:{}", r.port())
    });
    let expected = d_off + 1 - second;
    assert!(expected > 0);
    let st = im_d.status();
    assert_eq!(st["divergedBytes"], expected, "{st}");
    assert_eq!(
        im_d.metric("redis_replication_diverged_bytes"),
        Some(expected as f64)
    );
    assert_eq!(
        im_d.logs().matches("never received").count(),
        1,
        "logged once:\n{}",
        im_d.logs()
    );
    assert!(
        im_d.logs().contains(&format!(
            "this replica had {expected} bytes of writes the new upstream primary never received: it resynchronises in full and those writes are not on the new upstream"
        )),
        "{}",
        im_d.logs()
    );
    // A full sync from R: D holds R's dataset, the lost writes are gone.
    assert_eq!(r.info_num("sync_full"), 1, "{}", r.log());
    assert_eq!(d.info()["master_replid"], r.info()["master_replid"]);
    assert!(d.cli(&["EXISTS", "lost0"]).trim() == "0");
    assert_eq!(d.cli(&["GET", "k49"]).trim(), "before");
    assert_eq!(d.cli(&["DBSIZE"]), r.cli(&["DBSIZE"]));
    // Kept (not re-logged) while the instance manager runs.
    std::thread::sleep(SECS(2));
    assert_eq!(im_d.status()["divergedBytes"], expected);
    assert_eq!(im_d.logs().matches("never received").count(), 1);

    // N: nothing diverged.
    let st = im_n.status();
    assert!(st.get("divergedBytes").is_none(), "{st}");
    assert_eq!(im_n.metric("redis_replication_diverged_bytes"), Some(0.0));
    assert!(!im_n.logs().contains("never received"));
    assert_eq!(n.cli(&["GET", "k49"]).trim(), "before");
    drop(dir);
}

/// The operator's redis.conf renames REPLICAOF per cluster and removes SLAVEOF: the instance
/// manager uses the name its topology gives, and nobody else with the password (the source
/// region's Sentinels "fixing" a DR pod) can re-point the pod.
#[test]
fn a_renamed_replicaof_is_used_and_nobody_else_can_repoint_the_pod() {
    let dir = scratch("renamed");
    let src = RedisServer::start(RedisOpts::default());
    let other = RedisServer::start(RedisOpts::default());
    let rep = RedisServer::start(RedisOpts {
        extra: [
            "--rename-command",
            "SLAVEOF",
            "",
            "--rename-command",
            "REPLICAOF",
            "REPLICAOF-0123456789ab",
        ]
        .map(String::from)
        .to_vec(),
        ..RedisOpts::default()
    });
    let topo = TopologyFile::new(&dir);
    let mut t = replica_topology(1, "127.0.0.1", src.port(), None);
    t["replicaofCommand"] = "REPLICAOF-0123456789ab".into();
    topo.write(&t);
    let im = Im::start(None, &rep, &topo, &dir, &[]);
    im.wait_status("link up through the renamed command", SECS(15), linked);
    for cmd in ["REPLICAOF", "SLAVEOF"] {
        let out = rep
            .try_cli(&[cmd, "127.0.0.1", &other.port().to_string()])
            .unwrap_or_default();
        assert!(out.contains("unknown command"), "{cmd}: {out}");
    }
    assert_eq!(
        rep.info()["master_port"],
        src.port().to_string(),
        "re-pointed by a foreign REPLICAOF"
    );
    // A later topology still moves it, through the renamed command.
    let mut t = replica_topology(2, "127.0.0.1", other.port(), None);
    t["replicaofCommand"] = "REPLICAOF-0123456789ab".into();
    topo.write(&t);
    im.wait_status("re-pointed by its topology", SECS(15), |s| {
        linked(s) && s["appliedEpoch"] == 2
    });
    assert_eq!(rep.info()["master_port"], other.port().to_string());
}

/// Issue 13: a cluster with `tlsSecret` runs redis-server with `port 0` and `tls-port` only. The
/// instance manager reaches its own Redis over TLS (`--redis-tls`), checking that its
/// certificate chains to the CA but not its names (they are the pod's DNS names, never the
/// loopback address: here the replica's certificate names `dr-1.example` only), applies the
/// topology, replicates over TLS from a TLS-only primary (whose names *are* checked), and
/// reloads renewed certificates into Redis without a restart. A plain-text client is refused.
/// On the code before, the instance manager spoke plain text to its Redis: it never read it,
/// so the pods stayed fenced and never replicated.
#[test]
fn a_tls_only_redis_is_managed_over_tls_and_renewed_certificates_are_reloaded() {
    let dir = scratch("tls-only");
    let primary_tls = make_certs_for(&dir, &["IP:127.0.0.2".into()]);
    issue_cert(&dir, "dr-1", &["DNS:dr-1.example".into()], "replica");
    let replica_tls = ServerTls {
        ca: primary_tls.ca.clone(),
        cert: dir.path("replica.crt"),
        key: dir.path("replica.key"),
    };
    let primary = RedisServer::start(RedisOpts {
        host: "127.0.0.2".into(),
        tls: Some(primary_tls.clone()),
        conf: vec!["min-replicas-to-write 1000000".into()],
        ..Default::default()
    });
    let replica = RedisServer::start(RedisOpts {
        host: "127.0.0.3".into(),
        tls: Some(replica_tls.clone()),
        conf: vec!["min-replicas-to-write 1000000".into()],
        ..Default::default()
    });
    let args = |t: &ServerTls| -> Vec<String> {
        vec![
            "--tls-ca-file".into(),
            t.ca.display().to_string(),
            "--tls-cert-file".into(),
            t.cert.display().to_string(),
            "--tls-key-file".into(),
            t.key.display().to_string(),
            "--redis-tls".into(),
        ]
    };
    let (pa, ra) = (args(&primary_tls), args(&replica_tls));
    let pa: Vec<&str> = pa.iter().map(String::as_str).collect();
    let ra: Vec<&str> = ra.iter().map(String::as_str).collect();
    let (pdir, rdir) = (scratch("tls-only-p"), scratch("tls-only-r"));
    let (ptopo, rtopo) = (TopologyFile::new(&pdir), TopologyFile::new(&rdir));
    ptopo.write(&primary_topology(1));
    let mut up = replica_topology(1, "127.0.0.2", primary.port(), None);
    up["upstream"]["tls"] = true.into();
    rtopo.write(&up);
    let pim = Im::start(None, &primary, &ptopo, &pdir, &pa);
    let rim = Im::start(None, &replica, &rtopo, &rdir, &ra);
    pim.wait_status("the TLS-only primary applied and writable", SECS(15), |s| {
        s["appliedEpoch"] == 1 && s["role"] == "primary" && s["ready"] == true
    });
    rim.wait_status("the TLS-only replica linked over TLS", SECS(20), |s| {
        s["appliedEpoch"] == 1 && linked(s)
    });
    assert_eq!(primary.cli(&["SET", "over", "tls"]).trim(), "OK");
    let ok = wait_until(SECS(10), || replica.cli(&["GET", "over"]).trim() == "tls");
    assert!(ok.is_some(), "the write reached the replica over TLS");

    // Plain text is refused: nothing answers PING without TLS.
    let plain = Command::new("redis-cli")
        .args(["-h", "127.0.0.3", "-p", &replica.port().to_string(), "PING"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("PONG"),
        "a plain-text client got an answer"
    );

    // The Secret is renewed: new key and certificate, swapped in place (as the kubelet does).
    assert!(served_subject("127.0.0.3", replica.port(), &replica_tls).contains("CN = dr-1"));
    issue_cert(
        &dir,
        "dr-1-renewed",
        &["DNS:dr-1.example".into()],
        "renewed",
    );
    std::fs::rename(dir.path("renewed.key"), &replica_tls.key).unwrap();
    std::fs::rename(dir.path("renewed.crt"), &replica_tls.cert).unwrap();
    let reloaded = wait_until(SECS(10), || {
        served_subject("127.0.0.3", replica.port(), &replica_tls).contains("CN = dr-1-renewed")
    });
    assert!(
        reloaded.is_some(),
        "redis-server still serves the old certificate: {}\n{}",
        served_subject("127.0.0.3", replica.port(), &replica_tls),
        rim.logs()
    );
    assert!(
        rim.logs()
            .contains("TLS certificates changed on disk: reloaded into redis-server"),
        "{}",
        rim.logs()
    );
    // Replication goes on with the new certificate: a new link handshakes with it.
    replica.cli(&["CLIENT", "KILL", "TYPE", "master"]);
    assert_eq!(primary.cli(&["SET", "after", "renewal"]).trim(), "OK");
    let ok = wait_until(SECS(15), || {
        replica.cli(&["GET", "after"]).trim() == "renewal"
    });
    assert!(
        ok.is_some(),
        "the replica relinked with the renewed certificate"
    );
    rim.wait_status("linked, no error", SECS(10), |s| {
        linked(s) && s["error"].is_null()
    });
}

/// Issue 13: the backlog and the outage it absorbs. A source writing ~100 KB/s, its replica
/// across a veth pair; the instance manager reports how long a link outage the source's
/// backlog absorbs now (`backlogOutageSeconds`, `redis_replication_backlog_outage_seconds`),
/// then the link is cut for 20 s (both sides time the link out after 5 s, as a real outage
/// breaks the connection). With Redis's default 1 MB backlog the report says ~10 s and the
/// replica comes back with a full resync; with 64 MB it says minutes and the replica resumes
/// with a partial one.
#[test]
fn the_backlog_outage_is_reported_and_decides_partial_or_full_resync_after_a_cut() {
    for (subnet, backlog, partial) in [(3u8, "1mb", false), (4, "64mb", true)] {
        // Both sides time the link out after 5 s, as a real outage breaks the connection.
        let timeouts = ["--repl-timeout", "5"];
        let Linked {
            net,
            _dir,
            src,
            rep: _rep,
            _topo,
            im,
        } = across_regions(
            subnet,
            "backlog",
            [timeouts[0], timeouts[1], "--repl-backlog-size", backlog],
            timeouts,
            &[],
        );
        // ~100 writes of ~1 KB per second.
        let value = "x".repeat(1000);
        let writer = writer(&net, &src, "100000", "0.01", "k", &value);
        im.wait_status("the outage the backlog absorbs", SECS(20), |s| {
            s["backlogOutageSeconds"].is_number()
                && s["upstreamWriteRate"].as_f64() > Some(20_000.0)
        });
        let st = im.status();
        let outage = st["backlogOutageSeconds"].as_f64().unwrap();
        let rate = st["upstreamWriteRate"].as_f64().unwrap();
        let size = st["upstreamBacklogBytes"].as_i64().unwrap();
        eprintln!(
            "backlog {backlog}: {size} bytes, upstream writes {rate:.0} B/s, absorbs {outage:.1} s"
        );
        // The metric is the same figure; read a moment later (maybe the next tick, and printed
        // by another encoder), so not to the last bit.
        let metric = im
            .metric("redis_replication_backlog_outage_seconds")
            .expect("redis_replication_backlog_outage_seconds exported");
        assert!(
            (metric - outage).abs() <= outage * 0.2,
            "metric {metric} vs /status {outage}"
        );
        if partial {
            assert!(outage > 120.0, "64 MB at ~100 KB/s: {outage} s");
        } else {
            assert!(outage < 20.0, "1 MB at ~100 KB/s: {outage} s");
        }
        let (full0, partial0) = (src.info_num("sync_full"), src.info_num("sync_partial_ok"));
        net.cut();
        std::thread::sleep(SECS(20));
        net.heal();
        im.wait_status("linked again after the cut", SECS(40), linked);
        drop(writer);
        let (full, part) = (
            src.info_num("sync_full") - full0,
            src.info_num("sync_partial_ok") - partial0,
        );
        eprintln!(
            "backlog {backlog}: after a 20 s cut, sync_full +{full}, sync_partial_ok +{part}"
        );
        if partial {
            assert_eq!((full, part), (0, 1), "64 MB absorbs 20 s of ~100 KB/s");
        } else {
            assert_eq!(
                full, 1,
                "1 MB cannot hold 20 s of ~100 KB/s (partial +{part})"
            );
        }
    }
}
