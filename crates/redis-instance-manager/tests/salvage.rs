//! Issue 14 item 3, salvage (docs/salvage.md), against real redis-server processes: production's
//! primary `a` keeps taking writes after DR's `b` was promoted out of its history (an unplanned
//! promotion, both sides writable); when `a` is told to follow `b`, its instance manager saves
//! the writes `b` never received before the full resync discards them: the tail of `a`'s
//! replication stream while its backlog holds it, else a snapshot of its dataset. The saved
//! files hold exactly those writes: replayed into an empty Redis with `redis-cli --pipe` (the
//! documented command), or loaded as an RDB, they give back the writer's acknowledged keys.
//!
//! The operator's side (status, the `Salvaged` Event) is `redis-topology`'s plan tests; both
//! on a real API server, the main drill's step 5.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use redis_cluster_api::topology::FENCE_MIN_REPLICAS;
use redis_test_support::resp::{Conn, Reply};
use serde_json::Value;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn start_im(redis: &RedisServer, topo: &TopologyFile, dir: &ScratchDir) -> Im {
    let state = dir.path("state");
    let args = [
        "--probe-interval",
        "100ms",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    Im::start(None, redis, topo, dir, &args)
}

fn wait_status(im: &Im, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
    im.status_when(timeout, f)
}

/// Every key of an empty Redis after the salvaged tail was replayed into it, or after the
/// snapshot was loaded.
fn keys_of(r: &RedisServer) -> BTreeSet<String> {
    r.cli(&["--no-raw", "KEYS", "*"])
        .lines()
        .filter_map(|l| {
            l.split_once(") ")
                .map(|(_, k)| k.trim_matches('"').to_string())
        })
        .collect()
}

/// `a` primary, `b` its replica, both with instance managers; `b` then promoted (its topology
/// says primary: the DR cluster's `promote: true`), and both written to.
struct Split {
    _dirs: (ScratchDir, ScratchDir),
    a: RedisServer,
    b: RedisServer,
    ta: TopologyFile,
    ia: Im,
    _ib: Im,
    only_a: BTreeSet<String>,
    only_b: BTreeSet<String>,
}

fn split(name: &str, conf: Vec<String>, writes_on_a: usize, value: &str) -> Split {
    let (da, db) = (scratch(&format!("{name}-a")), scratch(&format!("{name}-b")));
    let a = RedisServer::start(RedisOpts {
        conf,
        ..RedisOpts::default()
    });
    let b = RedisServer::start(RedisOpts::default());
    let (ta, tb) = (TopologyFile::new(&da), TopologyFile::new(&db));
    ta.write(&primary_topology(1));
    tb.write(&replica_topology(1, "127.0.0.1", a.port(), None));
    let ia = start_im(&a, &ta, &da);
    let ib = start_im(&b, &tb, &db);
    for i in 0..200 {
        a.cli(&["SET", &format!("seed:{i}"), "v"]);
    }
    wait_status(&ib, SECS(15), |s| s["masterLinkUp"] == true);
    assert!(
        wait_until(SECS(10), || a.info_num("master_repl_offset")
            == b.info_num("master_repl_offset"))
        .is_some()
    );
    // The unplanned promotion: `b` stops following `a`, which keeps taking writes.
    tb.write(&primary_topology(2));
    assert!(wait_until(SECS(10), || b.info()["role"] == "master").is_some());
    let mut only_a = BTreeSet::new();
    for i in 0..writes_on_a {
        let k = format!("only-a:{i}");
        assert_eq!(a.cli(&["SET", &k, value]).trim(), "OK");
        only_a.insert(k);
    }
    // A key both sides wrote: `a`'s write is in the tail, `b`'s value wins after the resync.
    if writes_on_a > 0 {
        a.cli(&["SET", "both", "a"]);
        only_a.insert("both".into());
    } else {
        // No data, but `a`'s stream still moves past `b`'s share (Sentinel hellos are
        // PUBLISH commands).
        a.cli(&["PUBLISH", "__sentinel__:hello", "x"]);
    }
    let mut only_b = BTreeSet::new();
    for i in 0..50 {
        let k = format!("only-b:{i}");
        b.cli(&["SET", &k, "v"]);
        only_b.insert(k);
    }
    b.cli(&["SET", "both", "b"]);
    Split {
        _dirs: (da, db),
        a,
        b,
        ta,
        ia,
        _ib: ib,
        only_a,
        only_b,
    }
}

/// Region A comes back and is told to follow the promoted `b` (the spec's "Recover Primary
/// Region"): the salvage is reported, then `a` resynchronises from `b`.
fn recover(s: &Split) -> Value {
    recover_expecting(s, true)
}

fn recover_expecting(s: &Split, salvage: bool) -> Value {
    let full_before = s.b.info_num("sync_full");
    let sampler = MasterSampler::start(s.a.port());
    s.ta.write(&replica_topology(3, "127.0.0.1", s.b.port(), None));
    let status = wait_status(&s.ia, SECS(30), |st| {
        st.get("salvage").is_some() == salvage && st["masterLinkUp"] == true
    });
    // While it captured, `a` was a master (Redis serves PSYNC only then), but never one that
    // takes writes: `b` is the cluster's primary.
    let (fenced, writable) = sampler.finish();
    assert!(
        fenced > 0,
        "the capture's moment as a master was never seen"
    );
    assert_eq!(
        writable, 0,
        "a writable master while it captured ({fenced} fenced samples)"
    );
    assert!(
        wait_until(SECS(10), || s.a.info_num("master_repl_offset")
            == s.b.info_num("master_repl_offset"))
        .is_some()
    );
    // Then it resynchronised in full: `a` holds `b`'s writes and no longer its own.
    assert_eq!(s.b.info_num("sync_full"), full_before + 1);
    assert_eq!(s.a.cli(&["GET", "both"]).trim(), "b");
    assert_eq!(s.a.cli(&["EXISTS", "only-b:0"]).trim(), "1");
    assert_eq!(s.a.cli(&["EXISTS", "only-a:0"]).trim(), "0");
    // And it is a replica again: the capture's moment as a master left nothing behind.
    assert_eq!(s.a.info()["role"], "slave");
    status
}

/// Samples a Redis's role and `min-replicas-to-write` as fast as one connection allows, once
/// it has been a replica: how often it was a fenced master after that, and how often a
/// writable one.
struct MasterSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(u64, u64)>,
}

impl MasterSampler {
    fn start(port: u16) -> MasterSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        let mut conn = Conn::connect(&format!("127.0.0.1:{port}"), None, SECS(2)).unwrap();
        let handle = std::thread::spawn(move || {
            let (mut fenced, mut writable) = (0, 0);
            // It is the writable primary until its instance manager makes it follow `b`:
            // counted from then on.
            let mut followed = false;
            while !done.load(Ordering::Relaxed) {
                let master = matches!(conn.cmd(&["ROLE"]).unwrap(), Reply::Array(Some(items))
                    if items.first().map(Reply::text).as_deref() == Some("master"));
                followed |= !master;
                if !master || !followed {
                    continue;
                }
                let mrtw: u64 = match conn.cmd(&["CONFIG", "GET", "min-replicas-to-write"]) {
                    Ok(Reply::Array(Some(kv))) => kv[1].text().parse().unwrap(),
                    other => panic!("CONFIG GET: {other:?}"),
                };
                // Read after CONFIG GET: a master then that already was one before it (a
                // REPLICAOF in between would not be seen as a writable moment otherwise).
                let still = matches!(conn.cmd(&["ROLE"]).unwrap(), Reply::Array(Some(items))
                    if items.first().map(Reply::text).as_deref() == Some("master"));
                if !still {
                    continue;
                }
                if mrtw >= u64::from(FENCE_MIN_REPLICAS) {
                    fenced += 1;
                } else {
                    writable += 1;
                }
            }
            (fenced, writable)
        });
        MasterSampler { stop, handle }
    }

    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

fn file_of(status: &Value) -> PathBuf {
    PathBuf::from(status["salvage"]["file"].as_str().unwrap())
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_writes_the_promoted_side_never_got_are_salvaged_from_the_backlog() {
    let s = split("tail", vec![], 300, "v");
    let offset_a = s.a.info_num("master_repl_offset");
    let second = s.b.info_num("second_repl_offset");
    let status = recover(&s);
    let salvage = &status["salvage"];
    assert_eq!(salvage["kind"], "tail", "{status}");
    // Exactly the bytes beyond what `b` received of `a`'s history.
    assert_eq!(salvage["fromOffset"].as_i64(), Some(second), "{status}");
    assert_eq!(salvage["toOffset"].as_i64(), Some(offset_a), "{status}");
    assert_eq!(
        salvage["bytes"].as_i64(),
        Some(offset_a - second + 1),
        "{status}"
    );
    assert_eq!(salvage["keys"].as_u64(), Some(s.only_a.len() as u64));
    // One SET per write (a SELECT may precede them; pings are left out).
    let commands = salvage["commands"].as_u64().unwrap();
    assert!(
        (s.only_a.len() as u64..=s.only_a.len() as u64 + 1).contains(&commands),
        "{status}"
    );
    let file = file_of(&status);
    assert_eq!(file.extension().unwrap(), "resp");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    // The listing a user reads.
    let listing = std::fs::read_to_string(file.with_extension("txt")).unwrap();
    assert!(listing.contains("\"SET\" \"only-a:0\" \"v\""), "{listing}");
    assert!(listing.contains("\"SET\" \"both\" \"a\""), "{listing}");
    assert!(!listing.contains("only-b"), "{listing}");
    let sets = listing
        .lines()
        .filter(|l| l.starts_with("\"SET\" "))
        .count();
    assert_eq!(sets, s.only_a.len(), "{listing}");
    // Replayed as docs/salvage.md says, into an empty Redis: exactly `a`'s own writes.
    let scratch_redis = RedisServer::start(RedisOpts::default());
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "redis-cli -p {} --pipe < '{}'",
            scratch_redis.port(),
            file.display()
        ))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("errors: 0"), "{said}");
    assert_eq!(keys_of(&scratch_redis), s.only_a);
    assert!(
        s.only_b
            .iter()
            .all(|k| !keys_of(&scratch_redis).contains(k))
    );
    let logs = s.ia.logs();
    assert!(logs.contains("salvaged before the resync"), "{logs}");
}

#[test]
fn a_salvage_is_done_once_per_history_and_survives_a_restart() {
    let mut s = split("once", vec![], 50, "v");
    let status = recover(&s);
    let first = status["salvage"].clone();
    s.ia.restart();
    let again = wait_status(&s.ia, SECS(15), |st| st["masterLinkUp"] == true);
    assert_eq!(again["salvage"], first, "reported again after a restart");
    let dir = file_of(&status).parent().unwrap().to_path_buf();
    let files = std::fs::read_dir(&dir).unwrap().count();
    // One manifest, the replayable file and the listing.
    assert_eq!(
        files,
        3,
        "{:?}",
        std::fs::read_dir(&dir).unwrap().collect::<Vec<_>>()
    );
}

#[test]
fn a_tail_no_longer_in_the_backlog_is_saved_as_a_snapshot() {
    // The smallest backlog Redis allows, and more than that written after the promotion.
    let value = "x".repeat(200);
    let s = split(
        "snapshot",
        vec!["repl-backlog-size 16kb".into()],
        200,
        &value,
    );
    let status = recover(&s);
    let salvage = &status["salvage"];
    assert_eq!(salvage["kind"], "snapshot", "{status}");
    assert!(salvage.get("fromOffset").is_none(), "{status}");
    // `a`'s whole dataset: the seed, its own writes.
    assert_eq!(salvage["keys"].as_u64(), Some(200 + s.only_a.len() as u64));
    let file = file_of(&status);
    assert_eq!(file.extension().unwrap(), "rdb");
    assert_eq!(mode(&file), 0o600);
    // Loaded as docs/salvage.md says: a redis-server on a copy of the file.
    let dir = scratch("snapshot-load");
    std::fs::copy(&file, dir.path("dump.rdb")).unwrap();
    // (`--dir` given last wins over the test server's own.)
    let loaded = RedisServer::start(RedisOpts {
        extra: vec![
            "--dir".into(),
            dir.path("").display().to_string(),
            "--dbfilename".into(),
            "dump.rdb".into(),
        ],
        ..RedisOpts::default()
    });
    let keys = keys_of(&loaded);
    assert!(
        s.only_a.is_subset(&keys),
        "missing: {:?}",
        s.only_a.difference(&keys).take(5).collect::<Vec<_>>()
    );
    assert!(s.only_b.iter().all(|k| !keys.contains(k)));
    assert_eq!(loaded.cli(&["GET", "both"]).trim(), "a");
}

#[test]
fn a_tail_that_writes_no_key_is_not_reported() {
    let s = split("nothing", vec![], 0, "v");
    let status = recover_expecting(&s, false);
    // No salvage reported (no file, no Event), but remembered as done for that history.
    assert!(status.get("salvage").is_none(), "{status}");
    let dir = s._dirs.0.path("state").join("salvage");
    let manifests: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    assert!(manifests[0].contains("\"kind\": \"none\""), "{manifests:?}");
    assert!(
        s.ia.logs().contains("nothing to salvage"),
        "{}",
        s.ia.logs()
    );
}

/// Saving fails (here: the salvage directory cannot be created): the gate stays closed, the
/// pod keeps its data and says why, no partial file is left, and it is tried again, not at
/// every tick; once it can be saved, it is, and only then does the resync happen.
#[test]
fn a_salvage_that_fails_keeps_the_gate_closed_until_it_succeeds() {
    let s = split("fails", vec![], 20, "v");
    let state = s._dirs.0.path("state");
    // A file where the directory should be.
    std::fs::write(state.join("salvage"), "in the way").unwrap();
    let sampler = MasterSampler::start(s.a.port());
    s.ta.write(&replica_topology(3, "127.0.0.1", s.b.port(), None));
    let status = wait_status(&s.ia, SECS(15), |st| {
        st["linkError"]
            .as_str()
            .is_some_and(|e| e.contains("saving it first failed"))
    });
    assert_eq!(status["masterLinkUp"], false, "{status}");
    assert!(status.get("salvage").is_none(), "{status}");
    // Its data is untouched, and it is a replica (the capture's moment as a master is over).
    std::thread::sleep(SECS(3));
    assert_eq!(s.a.cli(&["EXISTS", "only-a:0"]).trim(), "1");
    assert_eq!(s.a.cli(&["GET", "both"]).trim(), "a");
    assert_eq!(s.a.info()["role"], "slave");
    // Each attempt pauses writes once: not at every tick (100 ms here).
    let stats = s.a.cli(&["INFO", "commandstats"]);
    let pauses: u64 = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_client|pause:calls="))
        .and_then(|l| l.split(['=', ',']).nth(1)?.parse().ok())
        .unwrap_or(0);
    assert!(
        (1..=2).contains(&pauses),
        "{pauses} attempts in 3 s: {stats}"
    );
    // The way is clear: saved at the next attempt, then the resync.
    std::fs::remove_file(state.join("salvage")).unwrap();
    let status = wait_status(&s.ia, SECS(30), |st| {
        st.get("salvage").is_some() && st["masterLinkUp"] == true
    });
    assert_eq!(status["salvage"]["kind"], "tail", "{status}");
    // Failed attempts and the one that worked: never a writable master meanwhile.
    let (fenced, writable) = sampler.finish();
    assert!(
        fenced > 0,
        "the capture's moment as a master was never seen"
    );
    assert_eq!(writable, 0, "a writable master while it captured");
    assert_eq!(s.a.cli(&["GET", "both"]).trim(), "b");
    let files: Vec<_> = std::fs::read_dir(state.join("salvage"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!files.iter().any(|f| f.ends_with(".partial")), "{files:?}");
}
