//! Data safety on the unhappy paths (issue 12), against real redis-server and redis-sentinel
//! processes: the replication gate never lets a replica flush its data for an unrelated history
//! (a source back empty on the same address, many times in a row, directly, cascading, and for
//! the replicas of a leader whose Redis lost its data), the user's acceptance lets exactly one
//! full resync through, failovers in the same history still end in partial resyncs, "link up"
//! means streaming from what the address leads to now, and an empty Redis that held data never
//! takes writes as a primary.
//!
//! A wipe is caught by a thread that reads every replica's `DBSIZE` every few milliseconds over
//! its own connection: a smaller number or a `-LOADING` reply (a full sync loading) is a wipe.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use redis_test_support::resp;
use serde_json::Value;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const PASSWORD: &str = "Cluster-pw-4hT8wQ";

fn debug_on(mut o: RedisOpts) -> RedisOpts {
    o.extra
        .extend(["--enable-debug-command".to_string(), "yes".to_string()]);
    o
}

fn server() -> RedisServer {
    RedisServer::start(debug_on(RedisOpts::default()))
}

/// A pod's Redis as the operator's redis.conf starts it: fenced until its instance manager
/// applies a topology.
fn boot_fenced() -> RedisServer {
    let mut o = debug_on(RedisOpts::default());
    o.extra
        .extend(["--min-replicas-to-write".to_string(), "1000000".to_string()]);
    RedisServer::start(o)
}

fn digest(r: &RedisServer) -> String {
    r.cli(&["DEBUG", "DIGEST"]).trim().to_string()
}

fn dbsize(r: &RedisServer) -> i64 {
    r.cli(&["DBSIZE"]).trim().parse().unwrap()
}

fn replid(r: &RedisServer) -> String {
    r.info()["master_replid"].clone()
}

fn linked(s: &Value) -> bool {
    s["masterLinkUp"] == true
}

fn unblocked_and_linked(s: &Value) -> bool {
    linked(s) && s.get("historyBlocked").is_none()
}

/// The instance manager's flags for these tests: a fast tick, and a state file.
fn im_args(state: &Path) -> Vec<String> {
    vec![
        "--probe-interval".into(),
        "250ms".into(),
        "--state-dir".into(),
        state.display().to_string(),
    ]
}

fn start_im(redis: &RedisServer, topo: &TopologyFile, dir: &ScratchDir, state: &Path) -> Im {
    let args = im_args(state);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Im::start(None, redis, topo, dir, &args)
}

fn peer(mut t: Value) -> Value {
    t["upstream"]["kind"] = "peer".into();
    t
}

/// A replica of this cluster's primary (`leader`), as the operator publishes it outside replica
/// mode: the topology names the primary, so its data is never taken for the same as another
/// history's (its replicas may hold writes the primary lost).
fn replica_of_primary(t: Value) -> Value {
    let mut t = peer(t);
    t["primary"] = "leader".into();
    t
}

/// This cluster's primary, named.
fn named_primary(epoch: u64) -> Value {
    let mut t = primary_topology(epoch);
    t["primary"] = "leader".into();
    t
}

/// Writes keys to a primary and remembers each one it acknowledged.
#[derive(Default)]
struct Writer {
    acked: Vec<String>,
}

impl Writer {
    fn write(&mut self, r: &RedisServer, n: usize) {
        for _ in 0..n {
            let k = format!("acked:{}", self.acked.len());
            assert_eq!(r.cli(&["SET", &k, &"v".repeat(64)]).trim(), "OK");
            self.acked.push(k);
        }
    }

    /// Every acknowledged key is on `r`.
    fn all_on(&self, r: &RedisServer) -> bool {
        let mut c = resp::Conn::connect(&format!("127.0.0.1:{}", r.port()), None, SECS(2)).unwrap();
        self.acked
            .iter()
            .all(|k| c.cmd(&["EXISTS", k]).unwrap() == resp::Reply::Int(1))
    }
}

/// Reads the `DBSIZE` of replicas every 5 ms from a thread: a smaller number than before, or a
/// `-LOADING` reply, is a wipe.
struct WipeWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(Vec<String>, usize)>>,
}

impl WipeWatch {
    fn start(replicas: &[(&str, &RedisServer)]) -> WipeWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let watched: Vec<(String, String)> = replicas
            .iter()
            .map(|(n, r)| (n.to_string(), format!("127.0.0.1:{}", r.port())))
            .collect();
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut wipes = Vec::new();
            let mut samples = 0;
            let mut conns: Vec<Option<resp::Conn>> = watched.iter().map(|_| None).collect();
            let mut last: Vec<i64> = vec![0; watched.len()];
            while !s.load(Ordering::SeqCst) {
                for (i, (name, addr)) in watched.iter().enumerate() {
                    if conns[i].is_none() {
                        conns[i] = resp::Conn::connect(addr, None, SECS(1)).ok();
                    }
                    let Some(c) = conns[i].as_mut() else { continue };
                    match c.cmd(&["DBSIZE"]) {
                        Ok(resp::Reply::Int(n)) => {
                            samples += 1;
                            if n < last[i] {
                                wipes.push(format!("{name}: DBSIZE {} -> {n}", last[i]));
                            }
                            last[i] = n;
                        }
                        Ok(other) => wipes.push(format!("{name}: {}", other.text())),
                        Err(_) => conns[i] = None,
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (wipes, samples)
        });
        WipeWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop, and fail if any replica shrank.
    fn assert_no_wipe(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let (wipes, samples) = self.thread.take().unwrap().join().unwrap();
        assert!(wipes.is_empty(), "replicas lost data: {wipes:?}");
        assert!(samples > 100, "too few samples: {samples}");
        samples
    }
}

impl Drop for WipeWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The server loses its data: stopped (it saves its RDB, which is kept aside as `saved`), and
/// started again on the same address with an empty data directory (a new replication id).
fn lose_data(r: &mut RedisServer, saved: &Path) {
    r.stop();
    std::fs::rename(r.dir.path("dump.rdb"), saved).unwrap();
    r.restart();
    assert_eq!(dbsize(r), 0);
}

/// The server gets its data back: stopped, its RDB restored, started again (same replication id
/// and offset, Redis restores both from the RDB).
fn restore_data(r: &mut RedisServer, saved: &Path) {
    r.stop();
    std::fs::rename(saved, r.dir.path("dump.rdb")).unwrap();
    r.restart();
}

/// The `window_ms` values the replication gate logged (check -> linked).
fn windows(im: &Im) -> Vec<f64> {
    im.logs()
        .lines()
        .filter_map(|l| l.split("window_ms=\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .filter_map(|v| v.parse().ok())
        .collect()
}

fn summary(what: &str, mut w: Vec<f64>) {
    if w.is_empty() {
        return;
    }
    w.sort_by(f64::total_cmp);
    eprintln!(
        "{what}: replication gate window (history check -> linked), {} openings: min {:.1} ms, median {:.1} ms, max {:.1} ms",
        w.len(),
        w[0],
        w[w.len() / 2],
        w[w.len() - 1]
    );
}

/// Wait until the instance manager reports a block of `theirs` (the upstream's new id) against
/// `ours`, and check what the user sees.
fn assert_blocked(im: &Im, ours: &str, theirs: &str) {
    im.wait_status("the unrelated history reported", SECS(10), |s| {
        s["historyBlocked"]["upstream"]["replid"] == theirs
            && s["historyBlocked"]["ours"]["replid"] == ours
    });
    let s = im.status();
    assert_eq!(s["masterLinkUp"], false, "{s}");
    assert_eq!(s["ready"], false, "{s}");
    let e = s["linkError"].as_str().unwrap();
    assert!(
        e.contains("has an unrelated replication history")
            && e.contains(ours)
            && e.contains(&format!("redis.io/accept-replication-history={theirs}")),
        "{e}"
    );
    assert_eq!(s["historyBlocked"]["oursRecorded"], true, "{s}");
    assert!(
        s["historyBlocked"]["since"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(im.metric("redis_replication_history_blocked"), Some(1.0));
    assert_eq!(im.get("/readyz").0, 503);
}

/// Issue 12, path 1: the source comes back empty on the same address, 25 times in a row, under
/// the running instance manager; before each cycle a writer adds keys the source acknowledged.
/// The replica never loses a key, the block is reported each time with both ids, and the
/// source's data coming back (the same history) is followed again with a partial resync.
#[test]
fn a_source_back_empty_on_the_same_address_never_wipes_the_replica() {
    const CYCLES: usize = 25;
    let dir = scratch("empty-source");
    let mut src = server();
    let rep = server();
    let topo = TopologyFile::new(&dir);
    topo.write(&replica_topology(1, "127.0.0.1", src.port(), None));
    let im = start_im(&rep, &topo, &dir, &dir.path("state"));
    im.wait_status("linked", SECS(15), linked);
    let watch = WipeWatch::start(&[("replica", &rep)]);
    let mut writer = Writer::default();
    let saved = dir.path("saved.rdb");
    for cycle in 1..=CYCLES {
        writer.write(&src, 20);
        let before = digest(&src);
        let ours = replid(&src);
        assert!(
            wait_until(SECS(10), || digest(&rep) == before).is_some(),
            "cycle {cycle}: the replica did not catch up"
        );
        lose_data(&mut src, &saved);
        let theirs = replid(&src);
        assert_ne!(theirs, ours);
        assert_blocked(&im, &ours, &theirs);
        if cycle == 1 {
            // Redis keeps reconnecting on its own; every attempt stops at AUTH.
            std::thread::sleep(SECS(3));
            assert!(
                rep.log().contains("Unable to AUTH to MASTER"),
                "{}",
                rep.log()
            );
        }
        assert_eq!(digest(&rep), before, "cycle {cycle}");
        assert_eq!(dbsize(&rep), writer.acked.len() as i64);
        assert_eq!(
            src.info_num("sync_full"),
            0,
            "cycle {cycle}: a full sync was served"
        );
        restore_data(&mut src, &saved);
        im.wait_status("following the source's history again", SECS(10), |s| {
            unblocked_and_linked(s)
        });
        assert_eq!(src.info_num("sync_full"), 0, "cycle {cycle}: not partial");
        assert_eq!(im.metric("redis_replication_history_blocked"), Some(0.0));
    }
    assert!(writer.all_on(&rep));
    let samples = watch.assert_no_wipe();
    let blocks = im
        .logs()
        .matches("has an unrelated replication history")
        .count();
    assert_eq!(blocks, CYCLES, "one WARN per block:\n{}", im.logs());
    eprintln!(
        "{CYCLES} cycles, {} acknowledged keys, {samples} DBSIZE samples: no wipe",
        writer.acked.len()
    );
    summary("empty source", windows(&im));
}

/// Path 1, cascading: pod 1 replicates pod 0, which replicates the source. The source comes
/// back empty 20 times: pod 0 keeps its data (blocked), so pod 1's stream is never disturbed.
#[test]
fn a_cascading_topology_keeps_its_data_when_the_source_comes_back_empty() {
    const CYCLES: usize = 20;
    let dir = scratch("cascade");
    let dirs: Vec<ScratchDir> = (0..2).map(|_| scratch("cascade-pod")).collect();
    let mut src = server();
    let pods: Vec<RedisServer> = (0..2).map(|_| server()).collect();
    let topos: Vec<TopologyFile> = dirs.iter().map(TopologyFile::new).collect();
    topos[0].write(&replica_topology(1, "127.0.0.1", src.port(), None));
    topos[1].write(&peer(replica_topology(
        1,
        "127.0.0.1",
        pods[0].port(),
        None,
    )));
    let ims: Vec<Im> = (0..2)
        .map(|i| start_im(&pods[i], &topos[i], &dirs[i], &dirs[i].path("state")))
        .collect();
    for im in &ims {
        im.wait_status("linked", SECS(15), linked);
    }
    let watch = WipeWatch::start(&[("pod 0", &pods[0]), ("pod 1", &pods[1])]);
    let mut writer = Writer::default();
    let saved = dir.path("saved.rdb");
    for cycle in 1..=CYCLES {
        writer.write(&src, 20);
        let before = digest(&src);
        let ours = replid(&src);
        for p in &pods {
            assert!(
                wait_until(SECS(10), || digest(p) == before).is_some(),
                "cycle {cycle}: not caught up"
            );
        }
        lose_data(&mut src, &saved);
        let theirs = replid(&src);
        assert_blocked(&ims[0], &ours, &theirs);
        // Pod 1 still streams from pod 0, which still holds the source's history.
        let s = ims[1].status();
        assert!(unblocked_and_linked(&s), "cycle {cycle}: {s}");
        for p in &pods {
            assert_eq!(digest(p), before, "cycle {cycle}");
        }
        restore_data(&mut src, &saved);
        ims[0].wait_status("following the source again", SECS(10), unblocked_and_linked);
        assert_eq!(src.info_num("sync_full"), 0, "cycle {cycle}: not partial");
    }
    assert_eq!(
        pods[0].info_num("sync_full"),
        1,
        "pod 1 synced in full once, at the start"
    );
    watch.assert_no_wipe();
    summary("cascading, pod 0", windows(&ims[0]));
}

/// Path 1 (and 3): the leader of a promoted cluster loses its data 20 times (its Redis comes back
/// from an emptied data directory, fenced like every pod boots). Its instance manager never lifts
/// the fence (the state file says it held data; also after an instance manager restart), its
/// replicas refuse the empty history, and once the leader's data is back everything resumes with
/// partial resyncs.
#[test]
fn the_replicas_of_a_leader_that_lost_its_data_keep_theirs() {
    const CYCLES: usize = 20;
    let dir = scratch("leader");
    let dirs: Vec<ScratchDir> = (0..3).map(|_| scratch("leader-pod")).collect();
    let mut leader = boot_fenced();
    let replicas: Vec<RedisServer> = (0..2).map(|_| boot_fenced()).collect();
    let topos: Vec<TopologyFile> = dirs.iter().map(TopologyFile::new).collect();
    topos[0].write(&primary_topology(1));
    for t in &topos[1..] {
        t.write(&peer(replica_topology(1, "127.0.0.1", leader.port(), None)));
    }
    let mut ims: Vec<Im> = vec![start_im(
        &leader,
        &topos[0],
        &dirs[0],
        &dirs[0].path("state"),
    )];
    for i in 0..2 {
        ims.push(start_im(
            &replicas[i],
            &topos[i + 1],
            &dirs[i + 1],
            &dirs[i + 1].path("state"),
        ));
    }
    ims[0].wait_status("the leader takes writes", SECS(10), |s| s["ready"] == true);
    for im in &ims[1..] {
        im.wait_status("linked", SECS(15), linked);
    }
    let watch = WipeWatch::start(&[("replica 1", &replicas[0]), ("replica 2", &replicas[1])]);
    let mut writer = Writer::default();
    let saved = dir.path("saved.rdb");
    for cycle in 1..=CYCLES {
        writer.write(&leader, 20);
        let before = digest(&leader);
        let ours = replid(&leader);
        for r in &replicas {
            assert!(
                wait_until(SECS(10), || digest(r) == before).is_some(),
                "cycle {cycle}: not caught up"
            );
        }
        // The leader's instance manager has recorded the data (it writes the state file at
        // once when a history is new, then at most every 10 s).
        ims[0].wait_status("the data recorded", SECS(5), |s| {
            s["recordedHistory"]["replid"] == ours.as_str()
                && s["recordedHistory"]["keys"].as_u64() > Some(0)
        });
        let restart_im = cycle == CYCLES / 2;
        if restart_im {
            ims[0].stop();
        }
        lose_data(&mut leader, &saved);
        if restart_im {
            ims[0].restart();
        }
        let theirs = replid(&leader);
        ims[0].wait_status("the empty leader stays fenced", SECS(10), |s| {
            s["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("booted without its data"))
        });
        let s = ims[0].status();
        assert_eq!(s["fenced"], true, "{s}");
        assert_eq!(s["ready"], false, "{s}");
        assert_eq!(s["keys"], 0, "{s}");
        assert_eq!(s["bootedFenced"], true, "{s}");
        let refused = try_set(leader.port(), None, "must-not-land").unwrap();
        assert!(refused.starts_with("-NOREPLICAS"), "{refused}");
        for im in &ims[1..] {
            assert_blocked(im, &ours, &theirs);
        }
        for r in &replicas {
            assert_eq!(digest(r), before, "cycle {cycle}");
        }
        restore_data(&mut leader, &saved);
        ims[0].wait_status("the leader with its data takes writes", SECS(10), |s| {
            s["ready"] == true && s["error"].is_null()
        });
        for im in &ims[1..] {
            im.wait_status("following the leader again", SECS(10), unblocked_and_linked);
        }
        assert_eq!(
            leader.info_num("sync_full"),
            0,
            "cycle {cycle}: not partial"
        );
    }
    assert!(writer.all_on(&replicas[0]) && writer.all_on(&replicas[1]));
    watch.assert_no_wipe();
    assert!(
        ims[0].logs().contains("(state file)"),
        "the restarted instance manager read its state file:\n{}",
        ims[0].logs()
    );
    summary("replicas of the leader", windows(&ims[1]));
}

/// Path 1, acceptance: `acceptHistory` set to the blocked upstream's id lets exactly one full
/// resync through and clears the block; another unrelated history later is blocked again.
#[test]
fn accepting_the_upstream_history_lets_exactly_one_full_resync_through() {
    let dir = scratch("accept");
    let mut src = server();
    let rep = server();
    let topo = TopologyFile::new(&dir);
    topo.write(&replica_topology(1, "127.0.0.1", src.port(), None));
    let im = start_im(&rep, &topo, &dir, &dir.path("state"));
    im.wait_status("linked", SECS(15), linked);
    let mut writer = Writer::default();
    writer.write(&src, 50);
    let ours = replid(&src);
    let before = digest(&src);
    assert!(wait_until(SECS(10), || digest(&rep) == before).is_some());
    let saved = dir.path("saved.rdb");
    lose_data(&mut src, &saved);
    // The rebuilt source takes new writes.
    src.cli(&["SET", "rebuilt", "yes"]);
    let theirs = replid(&src);
    assert_blocked(&im, &ours, &theirs);
    assert_eq!(src.info_num("sync_full"), 0);

    // Accepting another id changes nothing.
    let mut t = replica_topology(2, "127.0.0.1", src.port(), None);
    t["acceptHistory"] = ours.clone().into();
    topo.write(&t);
    im.wait_status("epoch 2 applied", SECS(5), |s| s["appliedEpoch"] == 2);
    std::thread::sleep(SECS(1));
    assert_blocked(&im, &ours, &theirs);
    assert_eq!(digest(&rep), before);

    t["epoch"] = 3.into();
    t["acceptHistory"] = theirs.clone().into();
    topo.write(&t);
    im.wait_status("the accepted history followed", SECS(10), |s| {
        unblocked_and_linked(s) && s["appliedEpoch"] == 3
    });
    assert_eq!(src.info_num("sync_full"), 1, "{}", src.log());
    assert_eq!(rep.cli(&["GET", "rebuilt"]).trim(), "yes");
    assert_eq!(dbsize(&rep), 1);
    // (A master's first replica makes it start a new id: both follow it now.)
    let followed = replid(&rep);
    assert_eq!(followed, replid(&src));
    assert!(
        im.logs().contains(&format!(
            "accepting the replication history {theirs} of 127.0.0.1:{}",
            src.port()
        )),
        "{}",
        im.logs()
    );
    std::thread::sleep(SECS(2));
    assert_eq!(src.info_num("sync_full"), 1, "exactly one full resync");

    // The acceptance is for that history only: the source recreated once more is refused.
    let saved2 = dir.path("saved2.rdb");
    lose_data(&mut src, &saved2);
    let third = replid(&src);
    assert_blocked(&im, &followed, &third);
    assert_eq!(rep.cli(&["GET", "rebuilt"]).trim(), "yes");
}

/// A primary whose Redis restarts with appendonly keeps its keys but gets a new replication id
/// (Redis 7.0 restores the id from an RDB only). It may have lost writes its replicas hold, so
/// its instance manager keeps it fenced (the state file says it took writes as a primary under
/// another id), and its replicas, to which that history is unrelated, keep their data and wait
/// (the operator decides: fail over to the replica that holds the most, or accept the restart).
/// Accepting the primary's new id unfences it and lets both replicas through, although the
/// primary starts yet another id when its first replica attaches (its backlog is created then):
/// the same process's earlier id stays accepted.
#[test]
fn a_primary_restarted_with_appendonly_stays_fenced_and_its_replicas_wait_until_its_restart_is_accepted()
 {
    let dirs: Vec<ScratchDir> = (0..3).map(|_| scratch("aof-primary-pod")).collect();
    let mut o = debug_on(RedisOpts::default());
    o.extra
        .extend(["--min-replicas-to-write", "1000000", "--appendonly", "yes"].map(String::from));
    let mut primary = RedisServer::start(o);
    let replicas: Vec<RedisServer> = (0..2).map(|_| server()).collect();
    let topos: Vec<TopologyFile> = dirs.iter().map(TopologyFile::new).collect();
    topos[0].write(&named_primary(1));
    for t in &topos[1..] {
        t.write(&replica_of_primary(replica_topology(
            1,
            "127.0.0.1",
            primary.port(),
            None,
        )));
    }
    let mut ims = vec![start_im(
        &primary,
        &topos[0],
        &dirs[0],
        &dirs[0].path("state"),
    )];
    for i in 0..2 {
        ims.push(start_im(
            &replicas[i],
            &topos[i + 1],
            &dirs[i + 1],
            &dirs[i + 1].path("state"),
        ));
    }
    ims[0].wait_status("primary", SECS(10), |s| s["ready"] == true);
    for im in &ims[1..] {
        im.wait_status("linked", SECS(15), linked);
    }
    let mut writer = Writer::default();
    writer.write(&primary, 50);
    let before = digest(&primary);
    let ours = replid(&primary);
    for r in &replicas {
        assert!(wait_until(SECS(10), || digest(r) == before).is_some());
    }
    let watch = WipeWatch::start(&[("replica 1", &replicas[0]), ("replica 2", &replicas[1])]);

    primary.restart();
    let theirs = replid(&primary);
    assert_ne!(theirs, ours);
    assert_eq!(digest(&primary), before, "appendonly kept the keys");
    for im in &ims[1..] {
        assert_blocked(im, &ours, &theirs);
    }
    // The restarted primary takes no write on its own.
    ims[0].wait_status("the restarted primary stays fenced", SECS(10), |s| {
        s["restartedPrimary"]["now"]["replid"] == theirs.as_str()
    });
    std::thread::sleep(SECS(1));
    let s = ims[0].status();
    assert_eq!(s["fenced"], true, "{s}");
    assert_eq!(s["ready"], false, "{s}");
    assert_eq!(s["restartedPrimary"]["had"]["replid"], ours.as_str(), "{s}");
    let e = s["error"].as_str().unwrap();
    assert!(
        e.starts_with(&format!(
            "restarted under a new replication history ({theirs}@"
        )) && e.contains(&format!("as a primary it held {ours}@"))
            && e.ends_with(&format!("redis.io/accept-replication-history={theirs})")),
        "{e}"
    );
    let refused = try_set(primary.port(), None, "must-not-land").unwrap();
    assert!(refused.starts_with("-NOREPLICAS"), "{refused}");
    // The operator accepts the restart (no replica holding more, say): its id for every pod.
    let mut p = named_primary(2);
    p["acceptHistory"] = theirs.clone().into();
    topos[0].write(&p);
    ims[0].wait_status("the primary with its keys takes writes", SECS(10), |s| {
        s["ready"] == true && s["error"].is_null() && s.get("restartedPrimary").is_none()
    });
    // One after the other: the second still sees the same primary process, with another id.
    for (t, im) in topos[1..].iter().zip(&ims[1..]) {
        let mut a = replica_of_primary(replica_topology(2, "127.0.0.1", primary.port(), None));
        a["acceptHistory"] = theirs.clone().into();
        t.write(&a);
        im.wait_status(
            "the accepted history followed",
            SECS(15),
            unblocked_and_linked,
        );
    }
    assert_eq!(primary.info_num("sync_full"), 2, "{}", primary.log());
    assert_ne!(replid(&primary), theirs, "a new id at the first replica");
    // One replica got through with the id accepted, the other with the id the primary started
    // when the first one attached (the same process's earlier id was accepted).
    let mut accepted: Vec<String> = ims[1..]
        .iter()
        .flat_map(|im| {
            im.logs()
                .lines()
                .filter_map(|l| l.split("accepting the replication history ").nth(1))
                .filter_map(|r| r.split(' ').next())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    accepted.sort();
    let mut expected = vec![theirs.clone(), replid(&primary)];
    expected.sort();
    assert_eq!(accepted, expected);
    for r in &replicas {
        assert_eq!(digest(r), before);
    }
    watch.assert_no_wipe();
}

/// Path 3: a primary whose Redis comes back without its data (a replaced volume) stays fenced
/// with an error that says so, also across an instance manager restart (the state file), until
/// its new, empty history is accepted.
#[test]
fn a_primary_that_booted_without_its_data_stays_fenced() {
    let dir = scratch("empty-primary");
    let state = dir.path("state");
    let mut p = boot_fenced();
    let topo = TopologyFile::new(&dir);
    topo.write(&primary_topology(1));
    let mut im = start_im(&p, &topo, &dir, &state);
    im.wait_status("primary", SECS(10), |s| s["ready"] == true);
    let mut writer = Writer::default();
    writer.write(&p, 10);
    let had = replid(&p);
    im.wait_status("recorded", SECS(5), |s| {
        s["recordedHistory"]["keys"] == 10 && s["recordedHistory"]["replid"] == had.as_str()
    });
    let s = im.status();
    assert_eq!(s["bootedFenced"], false, "it was unfenced: {s}");
    assert_eq!(s["keys"], 10);
    assert_eq!(s["masterReplid"], had.as_str());

    im.stop();
    let saved = dir.path("saved.rdb");
    lose_data(&mut p, &saved);
    im.restart();
    let now = replid(&p);
    im.wait_status("refuses to take writes", SECS(10), |s| {
        s["error"].as_str().is_some_and(|e| {
            e.starts_with(&format!("booted without its data (had {had}@"))
                && e.contains("10 keys; now empty): not taking writes; the operator will fail over or rejoin it as a replica")
                && e.contains(&format!("redis.io/accept-replication-history={now}"))
        })
    });
    std::thread::sleep(SECS(2));
    let s = im.status();
    assert_eq!(s["fenced"], true, "{s}");
    assert_eq!(s["bootedFenced"], true, "{s}");
    assert_eq!(s["loading"], false, "{s}");
    assert_eq!(s["recordedHistory"]["replid"], had.as_str(), "{s}");
    assert_eq!(s["recordedHistory"]["keys"], 10, "{s}");
    assert_eq!(im.metric("redis_instance_manager_fenced"), Some(1.0));
    assert_eq!(
        im.metric("redis_instance_manager_topology_error"),
        Some(1.0)
    );
    assert!(
        try_set(p.port(), None, "x")
            .unwrap()
            .starts_with("-NOREPLICAS")
    );

    // The user accepts the empty dataset.
    let mut t = primary_topology(2);
    t["acceptHistory"] = now.clone().into();
    topo.write(&t);
    im.wait_status("takes writes", SECS(10), |s| {
        s["ready"] == true && s["error"].is_null()
    });
    assert_eq!(try_set(p.port(), None, "x").unwrap(), "+OK");
    im.wait_status("the new history recorded", SECS(5), |s| {
        s["recordedHistory"]["replid"] == now.as_str()
    });
}

/// The record survives an instance manager restart: a replica whose Redis restarted with
/// appendonly (it loads its keys but gets a new replication id) rejoins its source with the state
/// file, and without one it is refused, saying why.
#[test]
fn a_restarted_appendonly_replica_needs_the_state_file_to_show_its_history() {
    let dir = scratch("aof");
    let state = dir.path("state");
    let src = server();
    let mut o = debug_on(RedisOpts::default());
    o.extra
        .extend(["--appendonly".to_string(), "yes".to_string()]);
    let mut rep = RedisServer::start(o);
    let topo = TopologyFile::new(&dir);
    topo.write(&replica_topology(1, "127.0.0.1", src.port(), None));
    let mut im = start_im(&rep, &topo, &dir, &state);
    im.wait_status("linked", SECS(15), linked);
    let mut writer = Writer::default();
    writer.write(&src, 30);
    let ours = replid(&src);
    assert!(wait_until(SECS(10), || dbsize(&rep) == 30).is_some());
    std::thread::sleep(SECS(2)); // appendfsync everysec

    // Redis and the instance manager restart (a pod restart): a new replication id.
    im.stop();
    rep.restart();
    assert_ne!(replid(&rep), ours);
    assert_eq!(dbsize(&rep), 30);
    im.restart();
    im.wait_status("rejoined its source", SECS(15), unblocked_and_linked);
    assert!(writer.all_on(&rep));
    assert_eq!(replid(&rep), ours);

    // The same without a state file: nothing shows where the keys came from, so the data
    // decides. Here the source rewrote every key meanwhile: refused, saying why.
    im.stop();
    rep.restart();
    let fresh = replid(&rep);
    for k in &writer.acked {
        src.cli(&["SET", k, "rewritten"]);
    }
    let no_state = Im::start(None, &rep, &topo, &dir, &["--probe-interval", "250ms"]);
    no_state.wait_status("refused", SECS(10), |s| {
        s["historyBlocked"]["oursRecorded"] == false
            && s["historyBlocked"]["ours"]["replid"] == fresh.as_str()
            && s["historyBlocked"]["sample"]["compared"] == 30
    });
    let s = no_state.status();
    assert_eq!(s["historyBlocked"]["sample"]["matched"], 0, "{s}");
    let e = s["linkError"].as_str().unwrap().to_string();
    assert!(e.contains("no record of their history"), "{e}");
    assert!(e.contains("--state-dir"), "{e}");
    assert!(
        e.contains("0 of 30 keys sampled on both sides match (0%, 90% needed)"),
        "{e}"
    );
    assert_eq!(dbsize(&rep), 30);
    assert!(rep.cli(&["GET", "acked:0"]).trim().starts_with("vvv"));
}

/// Path 1 (d): a Sentinel failover of the source behind one address (a virtual IP moved to the
/// promoted replica, as keepalived or a LoadBalancer does) still ends in a partial resync.
#[test]
fn a_sentinel_failover_of_the_source_behind_one_address_is_followed_partially() {
    let dir = scratch("vip-failover");
    let port = free_port();
    let (a, b, vip) = ("127.0.0.61", "127.0.0.62", "127.0.0.60");
    let on = |host: &str, bind: &str| {
        let mut o = debug_on(RedisOpts {
            host: host.into(),
            port,
            ..Default::default()
        });
        o.extra
            .extend(["--bind", bind, "--replica-announce-ip", host].map(String::from));
        RedisServer::start(o)
    };
    let mut s1 = on(a, &format!("{a} {vip}"));
    let s2 = on(b, b);
    s2.cli(&["REPLICAOF", a, &port.to_string()]);
    let sentinels = sentinels("source", a, port, None, 1);
    let rep = server();
    let topo = TopologyFile::new(&dir);
    topo.write(&replica_topology(1, vip, port, None));
    let im = start_im(&rep, &topo, &dir, &dir.path("state"));
    im.wait_status("linked through the address", SECS(15), linked);
    let mut writer = Writer::default();
    writer.write(&s1, 100);
    let before = digest(&s1);
    for r in [&rep, &s2] {
        assert!(wait_until(SECS(10), || digest(r) == before).is_some());
    }
    let old = replid(&s1);

    s1.stop();
    assert!(
        wait_until(SECS(20), || s2.info()["role"] == "master").is_some(),
        "the Sentinels did not promote s2: {:?}\n{}\n{}",
        sentinels[0].master("source"),
        sentinels[0].log(),
        s2.log()
    );
    s2.cli(&["CONFIG", "SET", "bind", &format!("{b} {vip}")]);
    im.wait_status(
        "following the promoted source",
        SECS(15),
        unblocked_and_linked,
    );
    let info = s2.info();
    assert_eq!(info["master_replid2"], old);
    assert_eq!(info["sync_full"], "0", "{}", s2.log());
    assert_eq!(info["sync_partial_ok"], "1", "{}", s2.log());
    assert_eq!(digest(&rep), before);
    assert!(im.status().get("divergedBytes").is_none());
    summary("source failover behind one address", windows(&im));
}

/// Path 1 (d), sentinel mode: the Sentinels re-point a replica to the replica they promoted; its
/// Redis stops at AUTH (the gate), its instance manager checks the promoted one (the history
/// continues: `master_replid2`) and opens the gate: a partial resync.
#[test]
fn a_sentinel_driven_repoint_in_sentinel_mode_ends_in_a_partial_resync() {
    let dir = scratch("sentinel-repoint");
    let pw_file = dir.path("password");
    write_secret(&pw_file, PASSWORD);
    let protected = |extra: &[&str]| {
        let mut o = debug_on(RedisOpts {
            password: Some(PASSWORD.into()),
            ..Default::default()
        });
        o.conf.push(format!("masterauth \"{PASSWORD}\""));
        o.extra.extend(extra.iter().map(|s| s.to_string()));
        RedisServer::start(o)
    };
    let mut primary = protected(&[]);
    let p_port = primary.port().to_string();
    // The managed replica is never the Sentinels' choice (priority 100 from its topology), the
    // other one is (priority 1).
    let managed = protected(&["--replicaof", "127.0.0.1", &p_port]);
    let chosen = protected(&[
        "--replicaof",
        "127.0.0.1",
        &p_port,
        "--replica-priority",
        "1",
    ]);
    for r in [&managed, &chosen] {
        assert!(wait_until(SECS(10), || r.info()["master_link_status"] == "up").is_some());
    }
    let sentinels = sentinels("mymaster", "127.0.0.1", primary.port(), Some(PASSWORD), 2);
    let topo = TopologyFile::new(&dir);
    let mut t = with_sentinel(
        peer(replica_topology(
            1,
            "127.0.0.1",
            primary.port(),
            Some(&pw_file),
        )),
        "mymaster",
        &sentinels,
        Some(&pw_file),
    );
    t["replicaPriority"] = 100.into();
    t["replicaAnnounced"] = true.into();
    topo.write(&t);
    let pw_arg = pw_file.display().to_string();
    let state = dir.path("state").display().to_string();
    let im = Im::start(
        None,
        &managed,
        &topo,
        &dir,
        &[
            "--redis-password-file",
            &pw_arg,
            "--probe-interval",
            "250ms",
            "--state-dir",
            &state,
        ],
    );
    im.wait_status("linked", SECS(10), linked);
    for i in 0..100 {
        primary.cli(&["SET", &format!("k{i}"), "v"]);
    }
    let before = digest(&primary);
    for r in [&managed, &chosen] {
        assert!(wait_until(SECS(10), || digest(r) == before).is_some());
    }
    // The gate is closed on the linked replica.
    let user = managed.cli(&["CONFIG", "GET", "masteruser"]);
    assert!(user.contains("gate-closed-"), "{user}");

    primary.stop();
    let c_addr = format!("127.0.0.1:{}", chosen.port());
    im.wait_status("re-pointed by the Sentinels and linked", SECS(30), |s| {
        s["upstream"] == c_addr.as_str() && s["role"] == "replica"
    });
    assert!(
        wait_until(SECS(10), || managed.info()["master_link_status"] == "up").is_some(),
        "{}",
        im.logs()
    );
    let info = chosen.info();
    assert_eq!(info["sync_full"], "0", "{}", chosen.log());
    assert_eq!(info["sync_partial_ok"], "1", "{}", chosen.log());
    assert_eq!(digest(&managed), before);
    assert!(managed.log().contains("Unable to AUTH to MASTER"));
    assert!(
        im.logs().contains(&format!(
            "replication gate: {c_addr} checked (a failover in the same history)"
        )),
        "{}",
        im.logs()
    );
    assert_eq!(im.logs().matches("REPLICAOF").count(), 0, "{}", im.logs());
    summary("sentinel re-point", windows(&im));
}

/// Path 6: "link up" means streaming from what source.host leads to now. The address moves to
/// another primary while the replica's old stream stays up: the link is reported down, with both
/// replication ids; an address that leads to a replica is said so.
#[test]
fn the_link_is_down_while_the_replica_streams_from_a_primary_the_address_no_longer_leads_to() {
    let dir = scratch("moved");
    let port = free_port();
    let (a, b, vip) = ("127.0.0.71", "127.0.0.72", "127.0.0.70");
    let on = |host: &str, bind: &str| {
        let mut o = debug_on(RedisOpts {
            host: host.into(),
            port,
            ..Default::default()
        });
        o.extra.extend(["--bind".to_string(), bind.to_string()]);
        RedisServer::start(o)
    };
    let s1 = on(a, &format!("{a} {vip}"));
    let s2 = on(b, b);
    s2.cli(&["REPLICAOF", a, &port.to_string()]);
    let rep = server();
    let topo = TopologyFile::new(&dir);
    topo.write(&replica_topology(1, vip, port, None));
    let state = dir.path("state").display().to_string();
    let im = Im::start(
        None,
        &rep,
        &topo,
        &dir,
        &[
            "--probe-interval",
            "250ms",
            "--probe-connection-max-age",
            "1s",
            "--state-dir",
            &state,
        ],
    );
    im.wait_status("linked through the address", SECS(15), linked);
    s1.cli(&["SET", "k", "v"]);
    assert!(wait_until(SECS(10), || s2.info()["master_link_status"] == "up").is_some());
    let old = replid(&s1);

    // The address moves to s2, promoted; s1 keeps running and keeps its stream to the replica.
    s1.cli(&["CONFIG", "SET", "bind", a]);
    s2.cli(&["REPLICAOF", "NO", "ONE"]);
    s2.cli(&["CONFIG", "SET", "bind", &format!("{b} {vip}")]);
    let new = replid(&s2);
    let moved = Instant::now();
    im.wait_status("the link reported down", SECS(10), |s| !linked(s));
    eprintln!("moved address seen after {:?}", moved.elapsed());
    let s = im.status();
    let e = s["linkError"].as_str().unwrap();
    assert_eq!(
        e,
        format!(
            "source.host {vip}:{port} now leads to a different primary (replication id {new}); this replica still streams from replication id {old} (the primary it reached before the address moved, which may be partitioned away or gone): it follows the address again when that stream breaks"
        )
    );
    assert_eq!(s["ready"], false, "{s}");
    assert_eq!(
        rep.info()["master_link_status"],
        "up",
        "Redis itself still says up"
    );
    assert_eq!(im.metric("redis_master_link_up"), Some(0.0));

    // The address now leads to a replica.
    s2.cli(&["REPLICAOF", a, &port.to_string()]);
    im.wait_status("a replica behind the address", SECS(10), |s| {
        s["linkError"].as_str().is_some_and(|e| {
            e.contains(&format!(
                "leads to a replica of {a}:{port}, not to a primary"
            ))
        })
    });
    assert_eq!(im.status()["masterLinkUp"], false);
}

/// Redis 7.0, as the gate relies on it: a replica whose `masterauth` is set against a source
/// without any password fails the handshake at AUTH (so does a random `masteruser`), and a
/// re-point away and back in one MULTI keeps the cached history: a partial resync.
#[test]
fn redis_stops_a_closed_gate_at_auth_and_a_repoint_resumes_partially() {
    let src = server();
    let rep = server();
    src.cli(&["SET", "k", "v"]);
    rep.cli(&["CONFIG", "SET", "masterauth", "gate-closed-x"]);
    rep.cli(&["REPLICAOF", "127.0.0.1", &src.port().to_string()]);
    assert!(
        wait_until(SECS(5), || rep.log().contains(
            "Unable to AUTH to MASTER: -ERR AUTH <password> called without any password configured"
        ))
        .is_some(),
        "{}",
        rep.log()
    );
    rep.cli(&["CONFIG", "SET", "masteruser", "gate-closed-u"]);
    assert!(
        wait_until(SECS(5), || rep
            .log()
            .contains("Unable to AUTH to MASTER: -WRONGPASS"))
        .is_some(),
        "{}",
        rep.log()
    );
    assert_eq!(rep.info()["master_link_status"], "down");
    assert_eq!(dbsize(&rep), 0);
    rep.cli(&["CONFIG", "SET", "masteruser", "", "masterauth", ""]);
    assert!(wait_until(SECS(5), || rep.info()["master_link_status"] == "up").is_some());
    // Closed again, the link dropped: Redis reconnects on its own and stops at AUTH.
    rep.cli(&[
        "CONFIG",
        "SET",
        "masteruser",
        "gate-closed-u",
        "masterauth",
        "gate-closed-p",
    ]);
    rep.cli(&["CLIENT", "KILL", "TYPE", "master"]);
    src.cli(&["SET", "k2", "v"]);
    std::thread::sleep(SECS(2));
    assert_eq!(rep.info()["master_link_status"], "down");
    let partial = src.info_num("sync_partial_ok");
    // Open, and re-point away and back atomically: an immediate, partial resync.
    let mut c = resp::Conn::connect(&format!("127.0.0.1:{}", rep.port()), None, SECS(2)).unwrap();
    c.cmd(&["CONFIG", "SET", "masteruser", "", "masterauth", ""])
        .unwrap();
    let t0 = Instant::now();
    for cmd in [
        vec!["MULTI".to_string()],
        vec!["REPLICAOF".into(), "127.0.0.1".into(), "0".into()],
        vec![
            "REPLICAOF".into(),
            "127.0.0.1".into(),
            src.port().to_string(),
        ],
        vec!["EXEC".into()],
    ] {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        assert!(!c.cmd(&args).unwrap().is_error());
    }
    assert!(wait_until(SECS(2), || rep.info()["master_link_status"] == "up").is_some());
    eprintln!(
        "re-point -> linked (polled every 100 ms): {:?}",
        t0.elapsed()
    );
    assert_eq!(
        src.info_num("sync_partial_ok"),
        partial + 1,
        "{}",
        src.log()
    );
    assert_eq!(src.info_num("sync_full"), 1);
    assert_eq!(rep.cli(&["GET", "k2"]).trim(), "v");
}
