//! Issue 13 item 5, password rotation without an outage (docs/password-rotation.md), against
//! real redis-servers and the real instance manager: a primary and its replica, each with its
//! own copy of the cluster's password Secret (as two pods mount it, updated seconds apart by
//! their kubelets), under writers that count every refused write and every refused `AUTH`.
//!
//! 1. The Secret gets the new `password` and the old one as `previousPassword`, the replica's
//!    copy first: both Redis accept both; the replication link, cut meanwhile, reopens (with
//!    the old password while the primary has not taken the new one) and resumes partially.
//! 2. Clients move to the new password.
//! 3. `previousPassword` is removed: the old one is refused, the new one accepted, the link
//!    (cut again) reopens with the new one, partially.
//!
//! No write refused, no `AUTH` refused for a client using a password the Secret holds, every
//! acknowledged write on the replica, no password in any log.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use redis_test_support::redis::redis_cli;
use redis_test_support::resp::{Conn, Reply};

const SECS: fn(u64) -> Duration = Duration::from_secs;
const OLD: &str = "old-Pa55 word\"x";
const NEW: &str = "new-Pa55 word\\y";

/// One pod's mounted copy of the Secret: `password`, and `previousPassword` while it is there.
struct SecretCopy(PathBuf);

impl SecretCopy {
    fn new(dir: &ScratchDir) -> SecretCopy {
        let d = dir.path("auth");
        std::fs::create_dir_all(&d).unwrap();
        let s = SecretCopy(d);
        s.set(OLD, None);
        s
    }

    fn password_file(&self) -> PathBuf {
        self.0.join("password")
    }

    /// As the kubelet updates a Secret volume: the new files appear at once.
    fn set(&self, password: &str, previous: Option<&str>) {
        std::fs::write(self.0.join("password"), password).unwrap();
        let prev = self.0.join("previousPassword");
        match previous {
            Some(p) => std::fs::write(prev, p).unwrap(),
            None => {
                let _ = std::fs::remove_file(prev);
            }
        }
    }
}

fn start_im(redis: &RedisServer, topo: &TopologyFile, dir: &ScratchDir, pw: &Path) -> Im {
    let pw = pw.display().to_string();
    Im::start(
        None,
        redis,
        topo,
        dir,
        &["--redis-password-file", &pw, "--probe-interval", "200ms"],
    )
}

/// Whether `password` authenticates on `port` (a fresh connection).
fn accepts(port: u16, password: &str) -> bool {
    redis_cli(port, password, &["PING"]) == "PONG"
}

fn ok(r: &Reply) -> bool {
    matches!(r, Reply::Simple(s) if s == "OK")
}

/// Writes to `port` until stopped: one long-lived connection authenticated once with the old
/// password, and short-lived ones (a new connection every 20 writes) with whatever password the
/// test says clients use now. Counts refused writes and refused `AUTH`s; keeps what was
/// acknowledged.
struct Writers {
    stop: Arc<AtomicBool>,
    password: Arc<Mutex<String>>,
    handle: std::thread::JoinHandle<Tally>,
}

#[derive(Debug, Default)]
struct Tally {
    acknowledged: BTreeSet<String>,
    refused_writes: Vec<String>,
    refused_auths: Vec<String>,
    connections: u64,
}

impl Writers {
    fn start(port: u16) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let password = Arc::new(Mutex::new(OLD.to_string()));
        let (s, pw) = (stop.clone(), password.clone());
        let addr = format!("127.0.0.1:{port}");
        let handle = std::thread::spawn(move || {
            let mut t = Tally::default();
            let mut long = Conn::connect(&addr, Some(OLD), SECS(2)).unwrap();
            let mut short: Option<Conn> = None;
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("long:{i}");
                match long.cmd(&["SET", &key, "v"]) {
                    Ok(r) if ok(&r) => {
                        t.acknowledged.insert(key);
                    }
                    other => t.refused_writes.push(format!("{key}: {other:?}")),
                }
                if i % 20 == 1 {
                    let password = pw.lock().unwrap().clone();
                    short = None;
                    let mut c = Conn::connect(&addr, None, SECS(2)).unwrap();
                    t.connections += 1;
                    match c.cmd(&["AUTH", &password]) {
                        Ok(r) if ok(&r) => short = Some(c),
                        other => t.refused_auths.push(format!("write {i}: {other:?}")),
                    }
                }
                if let Some(c) = short.as_mut() {
                    let key = format!("short:{i}");
                    match c.cmd(&["SET", &key, "v"]) {
                        Ok(r) if ok(&r) => {
                            t.acknowledged.insert(key);
                        }
                        other => t.refused_writes.push(format!("{key}: {other:?}")),
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            t
        });
        Writers {
            stop,
            password,
            handle,
        }
    }

    fn use_password(&self, p: &str) {
        *self.password.lock().unwrap() = p.to_string();
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// Cut the replication link from the primary's side; wait until the replica's instance
/// manager reopened it.
fn cut_and_relink(primary: &RedisServer, password: &str, im: &Im) {
    let killed = redis_cli(
        primary.port(),
        password,
        &["CLIENT", "KILL", "TYPE", "replica"],
    );
    assert_eq!(killed, "1", "one replica link cut");
    std::thread::sleep(Duration::from_millis(300));
    im.status_when(SECS(15), |s| s["masterLinkUp"] == true);
}

fn info_num(port: u16, password: &str, field: &str) -> i64 {
    redis_cli(port, password, &["INFO", "replication"])
        .lines()
        .chain(redis_cli(port, password, &["INFO", "stats"]).lines())
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} on {port}"))
}

#[test]
fn a_password_rotation_under_writers_refuses_nothing_and_keeps_replication_partial() {
    let (da, db) = (scratch("rotate-a"), scratch("rotate-b"));
    let (sa, sb) = (SecretCopy::new(&da), SecretCopy::new(&db));
    let a = RedisServer::start(RedisOpts {
        password: Some(OLD.into()),
        ..RedisOpts::default()
    });
    let b = RedisServer::start(RedisOpts {
        password: Some(OLD.into()),
        ..RedisOpts::default()
    });
    let (ta, tb) = (TopologyFile::new(&da), TopologyFile::new(&db));
    ta.write(&primary_topology(1));
    // The cluster's own password authenticates the replica to its primary.
    tb.write(&replica_topology(
        1,
        "127.0.0.1",
        a.port(),
        Some(&sb.password_file()),
    ));
    let ia = start_im(&a, &ta, &da, &sa.password_file());
    let ib = start_im(&b, &tb, &db, &sb.password_file());
    ib.status_when(SECS(15), |s| s["masterLinkUp"] == true);
    let full_syncs = info_num(a.port(), OLD, "sync_full");
    let writers = Writers::start(a.port());
    std::thread::sleep(SECS(1));

    // 1. The replica's copy of the Secret first, the primary's a moment later.
    sb.set(NEW, Some(OLD));
    assert!(
        wait_until(SECS(10), || accepts(b.port(), NEW)
            && accepts(b.port(), OLD))
        .is_some(),
        "the replica accepts both"
    );
    // The primary does not take the new password yet: the link reopens with the old one.
    assert!(!accepts(a.port(), NEW));
    cut_and_relink(&a, OLD, &ib);
    sa.set(NEW, Some(OLD));
    assert!(
        wait_until(SECS(10), || accepts(a.port(), NEW)
            && accepts(a.port(), OLD))
        .is_some(),
        "the primary accepts both"
    );
    cut_and_relink(&a, NEW, &ib);
    // What a user waits for before step 3 (status.instancesStatus[].passwords).
    for im in [&ia, &ib] {
        im.status_when(SECS(5), |s| s["passwords"] == "password+previousPassword");
    }

    // 2. Clients move to the new password.
    writers.use_password(NEW);
    std::thread::sleep(SECS(1));

    // 3. The old password is retired.
    sa.set(NEW, None);
    sb.set(NEW, None);
    assert!(
        wait_until(SECS(10), || !accepts(a.port(), OLD)
            && !accepts(b.port(), OLD))
        .is_some(),
        "the old password is refused once previousPassword is gone"
    );
    assert!(accepts(a.port(), NEW) && accepts(b.port(), NEW));
    for im in [&ia, &ib] {
        im.status_when(SECS(5), |s| s["passwords"] == "password");
    }
    cut_and_relink(&a, NEW, &ib);
    std::thread::sleep(SECS(1));
    let tally = writers.finish();

    assert!(
        tally.refused_writes.is_empty(),
        "{:?}",
        tally.refused_writes
    );
    assert!(tally.refused_auths.is_empty(), "{:?}", tally.refused_auths);
    assert!(tally.connections > 20, "{tally:?}");
    assert!(
        tally.acknowledged.len() > 500,
        "{}",
        tally.acknowledged.len()
    );
    // Three cuts, no full resync.
    assert_eq!(info_num(a.port(), NEW, "sync_full"), full_syncs);
    assert!(info_num(a.port(), NEW, "sync_partial_ok") >= 3);
    // Every acknowledged write reached the replica.
    assert!(
        wait_until(SECS(10), || info_num(a.port(), NEW, "master_repl_offset")
            == info_num(b.port(), NEW, "master_repl_offset"))
        .is_some()
    );
    let on_b: usize = redis_cli(b.port(), NEW, &["DBSIZE"]).parse().unwrap();
    assert_eq!(on_b, tally.acknowledged.len());
    // The new password is the one a restart boots with: requirepass says it.
    assert_eq!(
        redis_cli(a.port(), NEW, &["CONFIG", "GET", "requirepass"])
            .lines()
            .nth(1),
        Some(NEW)
    );
    // What the instance managers said, without a password in it.
    for im in [&ia, &ib] {
        let logs = im.logs();
        assert!(
            logs.contains("now accepts the password Secret's password and its previousPassword"),
            "{logs}"
        );
        assert!(
            logs.contains("now accepts the password Secret's password only"),
            "{logs}"
        );
        assert!(!logs.contains("Pa55"), "{logs}");
    }
}

/// A primary alone (Redis requiring the old password) with its instance manager, whose copy of
/// the Secret holds `secret` (the old password when None) before it starts. Bind every field:
/// the directory and the topology file go with the value.
struct Lone {
    _d: ScratchDir,
    _t: TopologyFile,
    s: SecretCopy,
    r: RedisServer,
    im: Im,
}

fn lone_primary(name: &str, secret: Option<&str>) -> Lone {
    let d = scratch(name);
    let s = SecretCopy::new(&d);
    let r = RedisServer::start(RedisOpts {
        password: Some(OLD.into()),
        ..RedisOpts::default()
    });
    if let Some(p) = secret {
        s.set(p, None);
    }
    let t = TopologyFile::new(&d);
    t.write(&primary_topology(1));
    let im = start_im(&r, &t, &d, &s.password_file());
    Lone {
        _d: d,
        _t: t,
        s,
        r,
        im,
    }
}

/// The Secret changed in one step, without `previousPassword` (not the documented way, but
/// what `kubectl create secret --dry-run | kubectl apply` does): the instance manager still
/// reaches its Redis with the password it made it accept before, and applies the new one
/// live; from then on the old one is refused (clients still using it were warned by the docs).
#[test]
fn a_password_changed_in_one_step_is_applied_live() {
    let Lone { s, r, im, _d, _t } = lone_primary("rotate-one-step", None);
    im.status_when(SECS(10), |st| st["ready"] == true);
    s.set(NEW, None);
    assert!(
        wait_until(SECS(10), || accepts(r.port(), NEW)
            && !accepts(r.port(), OLD))
        .is_some(),
        "the new password alone"
    );
    let st = im.status_when(SECS(10), |st| st["ready"] == true && st["error"].is_null());
    assert!(!st.to_string().contains("Pa55"), "{st}");
    assert!(!im.logs().contains("Pa55"));
}

/// An instance manager that starts after the Secret changed in one step (it never knew the
/// old password) cannot reach its Redis: it says so, in words a user can act on, and takes the
/// documented way out (previousPassword) at once.
#[test]
fn a_password_redis_does_not_know_is_reported_until_previous_password_is_given() {
    let Lone { s, r, im, _d, _t } = lone_primary("rotate-unknown", Some(NEW));
    let st = im.status_when(SECS(10), |st| {
        st["error"]
            .as_str()
            .is_some_and(|e| e.contains("rejected the password"))
    });
    assert!(!st.to_string().contains("Pa55"), "{st}");
    assert!(accepts(r.port(), OLD) && !accepts(r.port(), NEW));
    s.set(NEW, Some(OLD));
    assert!(
        wait_until(SECS(10), || accepts(r.port(), NEW)
            && accepts(r.port(), OLD))
        .is_some()
    );
    im.status_when(SECS(10), |st| st["ready"] == true && st["error"].is_null());
}

/// Sentinel mode: three Sentinels with the cluster's password monitor a primary and its
/// replica, each with an instance manager. The rotation reaches the Sentinels too (their own
/// password; and, once `previousPassword` is gone, what they authenticate to the data pods and
/// to each other with); afterwards none takes the primary for down, and a Sentinel failover
/// still works.
#[test]
fn in_sentinel_mode_the_sentinels_rotate_too_and_still_fail_over() {
    // (The test Sentinels' config quotes passwords naively: no quotes or backslashes here.)
    const OLD_S: &str = "old-Pa55-sentinel";
    const NEW_S: &str = "new-Pa55-sentinel";
    const MASTER: &str = "mymaster";
    let (dp, dr) = (scratch("rotate-s-p"), scratch("rotate-s-r"));
    let (sp, sr) = (SecretCopy::new(&dp), SecretCopy::new(&dr));
    sp.set(OLD_S, None);
    sr.set(OLD_S, None);
    let auth = || vec![format!("masterauth \"{OLD_S}\"")];
    let mut primary = RedisServer::start(RedisOpts {
        password: Some(OLD_S.into()),
        conf: auth(),
        ..RedisOpts::default()
    });
    let p_port = primary.port().to_string();
    let replica = RedisServer::start(RedisOpts {
        password: Some(OLD_S.into()),
        conf: auth(),
        extra: vec!["--replicaof".into(), "127.0.0.1".into(), p_port.clone()],
        ..RedisOpts::default()
    });
    assert!(
        wait_until(SECS(10), || redis_cli(
            replica.port(),
            OLD_S,
            &["INFO", "replication"]
        )
        .contains("master_link_status:up"))
        .is_some(),
        "the replica did not link"
    );
    let sentinels = sentinels(MASTER, "127.0.0.1", primary.port(), Some(OLD_S), 1);
    let (tp, tr) = (TopologyFile::new(&dp), TopologyFile::new(&dr));
    let mut t = with_sentinel(
        primary_topology(1),
        MASTER,
        &sentinels,
        Some(&sp.password_file()),
    );
    t["primary"] = "dr-0".into();
    tp.write(&t);
    let mut t = replica_topology(1, "127.0.0.1", primary.port(), Some(&sr.password_file()));
    t["upstream"]["kind"] = "peer".into();
    t["replicaPriority"] = 100.into();
    t["replicaAnnounced"] = true.into();
    let mut t = with_sentinel(t, MASTER, &sentinels, Some(&sr.password_file()));
    t["primary"] = "dr-p".into();
    tr.write(&t);
    let ip = start_im(&primary, &tp, &dp, &sp.password_file());
    let ir = start_im(&replica, &tr, &dr, &sr.password_file());
    for im in [&ip, &ir] {
        im.status_when(SECS(15), |s| {
            s["sentinelsReachable"] == 3 && s["ready"] == true
        });
    }
    let ports: Vec<u16> = sentinels.iter().map(|s| s.port).collect();
    let all_accept = |pw: &str| {
        ports.iter().all(|p| accepts(*p, pw))
            && accepts(primary.port(), pw)
            && accepts(replica.port(), pw)
    };
    let none_accepts = |pw: &str| {
        ports.iter().all(|p| !accepts(*p, pw))
            && !accepts(primary.port(), pw)
            && !accepts(replica.port(), pw)
    };

    // 1. Both passwords, everywhere: the Sentinels too (their clients move meanwhile).
    sr.set(NEW_S, Some(OLD_S));
    sp.set(NEW_S, Some(OLD_S));
    assert!(
        wait_until(SECS(15), || all_accept(NEW_S) && all_accept(OLD_S)).is_some(),
        "every Sentinel and data pod accepts both"
    );
    // 2. The old one retired: the Sentinels use the new one, and nothing takes the old one.
    sp.set(NEW_S, None);
    sr.set(NEW_S, None);
    assert!(
        wait_until(SECS(15), || none_accepts(OLD_S) && all_accept(NEW_S)).is_some(),
        "the old password is refused everywhere"
    );
    for p in &ports {
        let pass = redis_cli(*p, NEW_S, &["SENTINEL", "CONFIG", "GET", "sentinel-pass"]);
        assert_eq!(pass.lines().nth(1), Some(NEW_S), "Sentinel {p}");
    }
    // Longer than down-after (1 s): no Sentinel takes the primary for down, they still see
    // each other and the replica.
    std::thread::sleep(SECS(3));
    for p in &ports {
        let m = redis_cli(*p, NEW_S, &["SENTINEL", "MASTER", MASTER]);
        let fields: Vec<&str> = m.lines().collect();
        let get = |k: &str| {
            fields
                .iter()
                .position(|l| *l == k)
                .and_then(|i| fields.get(i + 1))
                .copied()
        };
        assert_eq!(get("flags"), Some("master"), "Sentinel {p}: {m}");
        assert_eq!(get("num-other-sentinels"), Some("2"), "Sentinel {p}: {m}");
        assert_eq!(get("num-slaves"), Some("1"), "Sentinel {p}: {m}");
    }
    // 3. A failover with the new password: the Sentinels promote the replica.
    primary.stop();
    let r_port = replica.port().to_string();
    assert!(
        wait_until(SECS(20), || {
            redis_cli(
                ports[0],
                NEW_S,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER],
            )
            .lines()
            .nth(1)
                == Some(r_port.as_str())
        })
        .is_some(),
        "no failover after the rotation"
    );
    assert!(
        wait_until(SECS(10), || try_set(replica.port(), Some(NEW_S), "after")
            == Ok("+OK".into()))
        .is_some()
    );
    for im in [&ip, &ir] {
        assert!(!im.logs().contains("Pa55"), "{}", im.logs());
    }
    // Both instance managers bring the Sentinels along; whichever came first did it, and
    // between them every Sentinel was switched.
    let said = format!("{}{}", ip.logs(), ir.logs());
    for p in &ports {
        let line = said.lines().find(|l| {
            l.contains("the Sentinel now uses the password Secret's password")
                && l.contains(&format!(":{p}"))
        });
        assert!(line.is_some(), "Sentinel {p}:\n{said}");
    }
}
