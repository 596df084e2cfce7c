//! A source that restarts with its data under a new replication id (Redis 7.0 with
//! `appendonly yes`: the AOF does not carry the id) against real redis-servers: the replication
//! gate compares the data itself (keys sampled from the replica, read on both sides) and follows
//! the source after one full resync, losing nothing the source did not lose; a different
//! dataset of the same size behind the same address, and a source restored from an old backup
//! (half of its keys changed since), are still refused, with the comparison in the block.
//!
//! On the code before the comparison the first test fails: the restarted source's history is
//! unrelated and the replica stays blocked (its `linkError` says so) until a human accepts it.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use redis_test_support::resp::{Conn, Reply};
use serde_json::Value;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn opts(appendonly: bool) -> RedisOpts {
    let mut o = RedisOpts::default();
    o.extra
        .extend(["--enable-debug-command", "yes"].map(String::from));
    if appendonly {
        o.extra.extend(["--appendonly", "yes"].map(String::from));
    }
    o
}

fn conn(r: &RedisServer) -> Conn {
    Conn::connect(&format!("127.0.0.1:{}", r.port()), None, SECS(2)).unwrap()
}

fn ok(c: &mut Conn, args: &[&str]) {
    let r = c.cmd(args).unwrap();
    assert!(!matches!(r, Reply::Error(_)), "{args:?}: {}", r.text());
}

/// A dataset of every type: `n` strings and, per 10 strings, a hash, a list, a set and a sorted
/// set, plus a stream and collections larger than what one read fetches. `tag` goes into every
/// value (another tag: another dataset with the same keys).
fn load(r: &RedisServer, prefix: &str, n: usize, tag: &str) {
    let mut c = conn(r);
    for i in 0..n {
        ok(
            &mut c,
            &["SET", &format!("{prefix}:s:{i}"), &format!("{tag}-{i}")],
        );
        if i % 10 == 0 {
            let k = |t: &str| format!("{prefix}:{t}:{i}");
            ok(&mut c, &["HSET", &k("h"), "f1", tag, "f2", &i.to_string()]);
            ok(&mut c, &["RPUSH", &k("l"), tag, "x", &i.to_string()]);
            ok(&mut c, &["SADD", &k("set"), tag, "y", &i.to_string()]);
            ok(&mut c, &["ZADD", &k("z"), "1.5", tag, "2", &i.to_string()]);
        }
    }
    ok(
        &mut c,
        &["XADD", &format!("{prefix}:stream"), "*", "tag", tag],
    );
    for j in 0..300 {
        let j = j.to_string();
        ok(&mut c, &["RPUSH", &format!("{prefix}:biglist"), tag, &j]);
        ok(&mut c, &["HSET", &format!("{prefix}:bighash"), &j, tag]);
    }
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

fn start_im(rep: &RedisServer, topo: &TopologyFile, dir: &ScratchDir) -> Im {
    let state = dir.path("state");
    Im::start(
        None,
        rep,
        topo,
        dir,
        &[
            "--probe-interval",
            "250ms",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    )
}

/// A replica of `src` with its instance manager, linked and caught up.
fn follow(src: &RedisServer, dir: &ScratchDir) -> (RedisServer, TopologyFile, Im) {
    let rep = RedisServer::start(opts(false));
    let topo = TopologyFile::new(dir);
    topo.write(&replica_topology(1, "127.0.0.1", src.port(), None));
    let im = start_im(&rep, &topo, dir);
    im.wait_status("linked", SECS(15), |s| s["masterLinkUp"] == true);
    (rep, topo, im)
}

fn caught_up(src: &RedisServer, rep: &RedisServer) {
    let want = digest(src);
    assert!(
        wait_until(SECS(10), || digest(rep) == want).is_some(),
        "the replica did not catch up"
    );
}

/// The multi-part AOF's incremental file.
fn incr_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("appendonlydir"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".incr.aof"))
        .expect("an incremental AOF file")
}

/// Wait until the block reports a comparison of the data, and check what it says.
fn assert_refused_after_comparing(im: &Im, ours: &str, theirs: &str, most: u64) -> Value {
    im.wait_status("refused after comparing the data", SECS(15), |s| {
        s["historyBlocked"]["upstream"]["replid"] == theirs
            && s["historyBlocked"]["sample"]["compared"].as_u64() > Some(0)
    });
    let s = im.status();
    let b = &s["historyBlocked"];
    assert_eq!(b["ours"]["replid"], ours, "{s}");
    assert!(b["sample"]["compared"].as_u64() >= Some(190), "{s}");
    assert!(b["sample"]["matched"].as_u64().unwrap() <= most, "{s}");
    assert_eq!(b["sample"]["neededPercent"], 90, "{s}");
    assert_eq!(s["masterLinkUp"], false, "{s}");
    assert!(s.get("sameDataResync").is_none(), "{s}");
    let e = s["linkError"].as_str().unwrap();
    assert!(
        e.contains("has an unrelated replication history")
            && e.contains("and the upstream does not hold the same data (")
            && e.contains("keys sampled on both sides match (")
            && e.contains(&format!("redis.io/accept-replication-history={theirs}")),
        "{e}"
    );
    assert_eq!(im.metric("redis_replication_history_blocked"), Some(1.0));
    eprintln!(
        "refused: {} of {} sampled keys matched",
        b["sample"]["matched"], b["sample"]["compared"]
    );
    s
}

/// (a) The source crashes and restarts from its AOF under a new replication id; the node's crash
/// also cost it the tail of its AOF that was not on disk yet (cut here by hand: a killed
/// process loses nothing the kernel has). The replica holds that tail too. Its instance manager
/// compares the data (~97% of the sampled keys match), follows the source with exactly one full
/// resync, and afterwards holds exactly what the source holds: nothing lost beyond what the
/// source lost. The report, the log and `/status` say what happened, with both ids.
#[test]
fn a_source_restarted_from_its_aof_is_followed_after_one_full_resync() {
    let dir = scratch("aof-source");
    let mut src = RedisServer::start(opts(true));
    let (rep, _topo, im) = follow(&src, &dir);
    load(&src, "a", 400, "v1");
    caught_up(&src, &rep);
    let ours = replid(&src);
    // What the source's disk holds before the tail it is about to lose.
    let incr = incr_file(&src.dir.0);
    let on_disk = std::fs::metadata(&incr).unwrap().len();
    let mut c = conn(&src);
    for i in 0..10 {
        ok(
            &mut c,
            &["SET", &format!("tail:{i}"), "lost-with-the-source"],
        );
    }
    drop(c);
    caught_up(&src, &rep);
    let before = dbsize(&rep);

    // The node crashes: the process dies, the AOF's last writes with it.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &src.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(200));
    let f = std::fs::OpenOptions::new().write(true).open(&incr).unwrap();
    f.set_len(on_disk).unwrap();
    drop(f);
    src.restart();
    let theirs = replid(&src);
    assert_ne!(theirs, ours, "appendonly: a new replication id");
    assert_eq!(dbsize(&src), before - 10, "the source lost its tail");

    im.wait_status("followed the restarted source", SECS(20), |s| {
        s["masterLinkUp"] == true && s.get("historyBlocked").is_none()
    });
    caught_up(&src, &rep);
    assert_eq!(dbsize(&rep), before - 10);
    assert_eq!(
        rep.cli(&["GET", "tail:0"]).trim(),
        "",
        "lost with the source"
    );
    assert_eq!(rep.cli(&["GET", "a:s:399"]).trim(), "v1-399");
    std::thread::sleep(SECS(2));
    assert_eq!(src.info_num("sync_full"), 1, "exactly one full resync");

    let s = im.status();
    let r = &s["sameDataResync"];
    assert_eq!(r["ours"]["replid"], ours.as_str(), "{s}");
    assert_eq!(r["upstream"]["replid"], theirs.as_str(), "{s}");
    let (matched, compared) = (
        r["sample"]["matched"].as_u64().unwrap(),
        r["sample"]["compared"].as_u64().unwrap(),
    );
    assert!(compared >= 190, "{s}");
    assert!(matched * 100 >= compared * 90, "{s}");
    eprintln!("restarted source: {matched} of {compared} sampled keys matched; followed");
    assert!(r["at"].as_str().unwrap().ends_with('Z'), "{s}");
    let logs = im.logs();
    assert!(
        logs.contains(&format!(
            "came back under another replication history ({theirs}@"
        )) && logs.contains("but it holds the same data: ")
            && logs.contains("Taking it for the same data restarted under a new replication id"),
        "{logs}"
    );
    assert!(
        !logs.contains("has an unrelated replication history"),
        "never blocked:\n{logs}"
    );
}

/// (b) Another Redis behind the same address, holding a different dataset of about the same
/// size (half of it under the same key names): refused, with the comparison (no value matches),
/// no sync, the replica's data untouched; the comparison is not repeated at every tick.
#[test]
fn another_redis_at_the_same_address_with_a_dataset_of_the_same_size_is_refused() {
    let dir = scratch("other-redis");
    let src = RedisServer::start(opts(false));
    let port = src.port();
    let (rep, _topo, im) = follow(&src, &dir);
    load(&src, "a", 300, "v1");
    caught_up(&src, &rep);
    let ours = replid(&src);
    let before = digest(&rep);
    std::thread::sleep(SECS(1));
    drop(src);
    let other = RedisServer::start(RedisOpts {
        port,
        ..opts(false)
    });
    load(&other, "a", 150, "other");
    load(&other, "b", 150, "other");
    let theirs = replid(&other);
    // At most the stream matches: a stream is compared by its type only, and both have one.
    assert_refused_after_comparing(&im, &ours, &theirs, 1);
    std::thread::sleep(SECS(3));
    assert_eq!(digest(&rep), before);
    assert_eq!(other.info_num("sync_full"), 0);
    let comparisons = im
        .logs()
        .matches("replication gate: compared this replica's data")
        .count();
    assert_eq!(
        comparisons,
        1,
        "compared once per histories:\n{}",
        im.logs()
    );
}

/// (c) The source restored from an old backup of its AOF (a new replication id): half of the
/// keys changed since the backup, and the replica holds the newer values. About half of the
/// sampled keys match: refused, the replica keeps the newer data.
#[test]
fn a_source_restored_from_an_old_backup_is_refused() {
    let dir = scratch("old-backup");
    let mut src = RedisServer::start(opts(true));
    let (rep, _topo, im) = follow(&src, &dir);
    load(&src, "a", 400, "v1");
    caught_up(&src, &rep);
    // The backup: a copy of the AOF directory (nothing is being written).
    std::thread::sleep(SECS(1));
    let backup = dir.path("backup");
    copy_dir(&src.dir.path("appendonlydir"), &backup);
    // Half of the strings change afterwards (the replica follows).
    let mut c = conn(&src);
    for i in (0..400).step_by(2) {
        ok(&mut c, &["SET", &format!("a:s:{i}"), "v2"]);
    }
    drop(c);
    caught_up(&src, &rep);
    let ours = replid(&src);
    let before = digest(&rep);

    src.stop();
    std::fs::remove_dir_all(src.dir.path("appendonlydir")).unwrap();
    copy_dir(&backup, &src.dir.path("appendonlydir"));
    src.restart();
    let theirs = replid(&src);
    assert_ne!(theirs, ours);
    assert_eq!(src.cli(&["GET", "a:s:0"]).trim(), "v1-0", "the old backup");
    // 200 of the 563 keys differ: about 65% of a sample match, far below 90%.
    assert_refused_after_comparing(&im, &ours, &theirs, 170);
    std::thread::sleep(SECS(2));
    assert_eq!(digest(&rep), before, "the newer data kept");
    assert_eq!(rep.cli(&["GET", "a:s:0"]).trim(), "v2");
    assert_eq!(src.info_num("sync_full"), 0);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}
