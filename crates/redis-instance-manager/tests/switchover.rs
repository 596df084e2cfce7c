//! Issue 14 item 1, the instance managers' side of a planned switchover (docs/switchover.md),
//! against real redis-server processes: production's primary `a`, told to replicate the DR
//! cluster's pod `b` that replicates it, becomes a read-only replica whose data no longer moves
//! and waits, reporting its position (the promotion token) instead of closing a replication
//! loop; `b` is promoted once it holds the token; `a` then continues from `b` with a partial
//! resync, and every write `a` acknowledged is on `b`. Undone before the promotion, `a` takes
//! writes again and `b` follows it, partially.
//!
//! The operator's side (the token in the status, the promotion waiting for it) is
//! `redis-topology/tests/switchover.rs`; both together, on a real API server, the drill's step 7.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use redis_test_support::resp;
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

/// A client that writes one key at a time to whichever of `a` and `b` accepts it (`a` first),
/// and remembers every acknowledged key and when writes stopped and resumed.
struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<WriterLog>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct WriterLog {
    acked_a: Vec<String>,
    acked_b: Vec<String>,
    /// The longest time between two acknowledged writes.
    longest_pause: Duration,
}

impl Writer {
    fn start(a: u16, b: u16) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(WriterLog::default()));
        let (s, l) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            let connect = |port: u16| {
                resp::Conn::connect(&format!("127.0.0.1:{port}"), None, SECS(2)).unwrap()
            };
            let (mut ca, mut cb) = (connect(a), connect(b));
            let mut last_ack = Instant::now();
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                let key = format!("w:{n}");
                for (conn, on_b) in [(&mut ca, false), (&mut cb, true)] {
                    if conn.cmd(&["SET", &key, "v"]).ok() == Some(resp::Reply::Simple("OK".into()))
                    {
                        let mut log = l.lock().unwrap();
                        if on_b {
                            log.acked_b.push(key.clone());
                        } else {
                            log.acked_a.push(key.clone());
                        }
                        log.longest_pause = log.longest_pause.max(last_ack.elapsed());
                        last_ack = Instant::now();
                        n += 1;
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Writer {
            stop,
            log,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> WriterLog {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn acked(&self) -> (usize, usize) {
        let l = self.log.lock().unwrap();
        (l.acked_a.len(), l.acked_b.len())
    }
}

fn missing(on: &RedisServer, keys: &[String]) -> Vec<String> {
    let mut c = resp::Conn::connect(&format!("127.0.0.1:{}", on.port()), None, SECS(2)).unwrap();
    keys.iter()
        .filter(|k| c.cmd(&["EXISTS", k]).unwrap() != resp::Reply::Int(1))
        .cloned()
        .collect()
}

fn offset(r: &RedisServer) -> i64 {
    r.info_num("master_repl_offset")
}

/// Production's primary `a` (with its IM) and DR's pod `b` replicating it (with its IM).
struct Pair {
    _dirs: (ScratchDir, ScratchDir),
    a: RedisServer,
    b: RedisServer,
    ta: TopologyFile,
    tb: TopologyFile,
    ia: Im,
    ib: Im,
}

fn pair(name: &str) -> Pair {
    let (da, db) = (scratch(&format!("{name}-a")), scratch(&format!("{name}-b")));
    let a = RedisServer::start(RedisOpts::default());
    let b = RedisServer::start(RedisOpts::default());
    let (ta, tb) = (TopologyFile::new(&da), TopologyFile::new(&db));
    ta.write(&primary_topology(1));
    tb.write(&replica_topology(1, "127.0.0.1", a.port(), None));
    let ia = start_im(&a, &ta, &da);
    let ib = start_im(&b, &tb, &db);
    for i in 0..500 {
        a.cli(&["SET", &format!("seed:{i}"), "v"]);
    }
    assert!(
        wait_until(SECS(15), || ib.status()["masterLinkUp"] == true).is_some(),
        "{}",
        ib.status()
    );
    Pair {
        _dirs: (da, db),
        a,
        b,
        ta,
        tb,
        ia,
        ib,
    }
}

/// `a` told to replicate `b`: it waits, demoted, and reports its frozen position.
fn demote(p: &Pair) -> (String, i64) {
    p.ta.write(&replica_topology(2, "127.0.0.1", p.b.port(), None));
    let s = wait_status(&p.ia, SECS(10), |s| s.get("demoted").is_some());
    let token = (
        s["demoted"]["replid"].as_str().unwrap().to_string(),
        s["demoted"]["offset"].as_i64().unwrap(),
    );
    assert!(
        s["linkError"]
            .as_str()
            .is_some_and(|e| e.contains("demoted for a planned switchover")),
        "{s}"
    );
    // Ready: it serves reads of everything written (nothing is written anywhere), and the
    // Service its source reaches it by must keep leading to it.
    assert_eq!(s["ready"], true, "{s}");
    (token.0, token.1)
}

fn wait_status(im: &Im, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
    im.status_when(timeout, f)
}

#[test]
fn a_planned_switchover_keeps_every_acknowledged_write_and_resyncs_partially() {
    let p = pair("switchover");
    let full_before = p.a.info_num("sync_full");
    let writer = Writer::start(p.a.port(), p.b.port());
    assert!(wait_until(SECS(5), || writer.acked().0 > 200).is_some());

    let demoted_at = Instant::now();
    let (replid, token) = demote(&p);
    let took_demote = demoted_at.elapsed();
    // `a` is a read-only replica whose data no longer moves: its offset is the token, and
    // stays so (a replica appends nothing: no PINGs, no expiries, no Sentinel hellos).
    assert_eq!(p.a.info()["role"], "slave");
    assert_eq!(p.a.info()["master_replid"], replid);
    assert_eq!(offset(&p.a), token);
    let acked_a = writer.acked().0;
    std::thread::sleep(SECS(2));
    assert_eq!(offset(&p.a), token, "the demoted primary's offset moved");
    assert_eq!(
        writer.acked(),
        (acked_a, 0),
        "a write was acknowledged while demoted"
    );
    // It waits rather than replicate its own replica (a loop), and `b` catches up meanwhile.
    assert_eq!(p.a.info()["master_link_status"], "down");
    assert!(wait_until(SECS(10), || offset(&p.b) == token).is_some());
    assert_eq!(p.b.info()["master_replid"], replid);

    // The promotion of `b` (what the operator publishes once a pod holds the token).
    let promoted_at = Instant::now();
    p.tb.write(&primary_topology(2));
    assert!(wait_until(SECS(10), || writer.acked().1 > 0).is_some());
    let took_promote = promoted_at.elapsed();
    let s = wait_status(&p.ia, SECS(15), |s| s["masterLinkUp"] == true);
    assert!(s.get("demoted").is_none(), "{s}");
    assert!(wait_until(SECS(5), || writer.acked().1 > 200).is_some());
    let log = writer.finish();
    assert!(wait_until(SECS(5), || offset(&p.a) == offset(&p.b)).is_some());

    // Every write `a` acknowledged is on `b`, and every write `b` acknowledged is on `a`.
    assert_eq!(missing(&p.b, &log.acked_a), Vec::<String>::new());
    assert_eq!(missing(&p.a, &log.acked_b), Vec::<String>::new());
    // `b` kept `a`'s history as its second id from the token on, and served `a` a partial
    // resync: no full sync anywhere after the first one.
    let info_b = p.b.info();
    assert_eq!(info_b["master_replid2"], replid);
    assert_eq!(info_b["second_repl_offset"], (token + 1).to_string());
    assert_eq!(p.b.info_num("sync_full"), 0, "b served a full sync");
    assert!(p.b.info_num("sync_partial_ok") >= 1);
    assert_eq!(p.a.info_num("sync_full"), full_before);
    assert!(
        p.a.log()
            .contains("Successful partial resynchronization with master"),
        "{}",
        p.a.log()
    );
    eprintln!(
        "switchover: {} writes on a, {} on b; demotion applied in {took_demote:?}, promotion -> first write on b {took_promote:?}; longest write pause {:?} (includes the test's own wait between the steps)",
        log.acked_a.len(),
        log.acked_b.len(),
        log.longest_pause
    );
    drop((p.ia, p.ib));
}

#[test]
fn a_switchover_undone_before_the_promotion_leaves_the_replica_following_partially() {
    let p = pair("abort");
    let full_before = p.a.info_num("sync_full");
    let (replid, token) = demote(&p);
    assert!(
        p.a.try_cli(&["SET", "refused", "x"])
            .unwrap()
            .contains("READONLY")
    );
    // Undone: `a` is the primary again, under a new id that continues its history.
    p.ta.write(&primary_topology(3));
    assert!(
        wait_until(SECS(10), || p.a.info()["role"] == "master"
            && p.a
                .try_cli(&["SET", "after", "x"])
                .is_some_and(|r| r.trim() == "OK"))
        .is_some(),
        "{}",
        p.a.log()
    );
    let info = p.a.info();
    assert_eq!(info["master_replid2"], replid);
    assert_eq!(info["second_repl_offset"], (token + 1).to_string());
    assert!(wait_status(&p.ia, SECS(5), |s| s.get("demoted").is_none())["role"] == "primary");
    // Nothing changed on `b`: still a replica of `a`, following it with a partial resync.
    assert!(
        wait_until(SECS(10), || p
            .b
            .try_cli(&["GET", "after"])
            .is_some_and(|v| v.trim() == "x"))
        .is_some()
    );
    assert_eq!(p.b.info()["role"], "slave");
    assert_eq!(
        p.a.info_num("sync_full"),
        full_before,
        "a served a full sync"
    );
    drop((p.ia, p.ib));
}
