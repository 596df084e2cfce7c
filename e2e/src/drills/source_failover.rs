//! Replica mode against a Sentinel-managed source, with real `redis-sentinel`s.
//!
//! Region A runs an external production that this operator does not manage: a primary, a
//! replica and three Sentinels, behind one stable endpoint: a virtual IP the current primary's
//! redis-server listens on (moved with `CONFIG SET bind` after a failover, as keepalived or a
//! LoadBalancer would). Region B runs the DR cluster through the operator, its `source.host`
//! being that endpoint.
//!
//! 1. The Sentinels never promote a DR pod: with the source's own replica gone, the DR pods are
//!    the only replicas left, holding the best offset, and the failover is aborted
//!    (`-failover-abort-no-good-slave`) instead of electing one of them (`replica-priority 0`,
//!    `replica-announced no`, set by the instance managers from the operator's topology).
//! 2. When the source fails over for real (to its own replica), the DR cluster follows the new
//!    primary behind the same endpoint with partial resyncs only: `sync_full` 0 on the new
//!    primary, keyspaces equal.
//! 3. The honest exception: when the new source primary lacks writes the DR pods already hold,
//!    they resynchronise in full, and the operator reports each with the bytes lost.

use std::time::{Duration, Instant};

use redis_topology::EventReason;

use crate::controllers;
use crate::net::{NS_A, pod_ip};
use crate::procs::Proc;
use crate::resp::Conn;
use crate::scenario::{DR, Drill, NS, Options, Report, operator_loop, pipeline_sets, pods, wait};

/// The stable endpoint of the source in region A.
pub const SOURCE_VIP: &str = "10.77.10.100";

fn src_ip(i: u32) -> String {
    pod_ip('a', i)
}

pub fn run(o: &Options) -> Report {
    let mut report = Report::default();
    let mut d = match Drill::prepare(o) {
        Ok(d) => d,
        Err(e) => {
            report.checks.push(("setup".into(), Err(e)));
            return report;
        }
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let operator = operator_loop(d.sim.clone(), stop.clone());
    let result = story(&mut d);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = operator.join();
    for (name, p) in d.procs.iter_mut() {
        if name.ends_with("instance-manager") {
            p.kill();
        }
    }
    report = std::mem::take(&mut d.report);
    if let Err(e) = result {
        println!("    FAIL {e}");
        println!("\nlogs and data: {}", o.dir.display());
        report.checks.push(("scenario".into(), Err(e)));
    }
    report
}

fn source_conn(password: &str, i: u32) -> Result<Conn, String> {
    Conn::connect(
        &format!("{}:6379", src_ip(i)),
        Some(password),
        Duration::from_secs(2),
    )
    .map_err(|e| format!("src-{i}: {e}"))
}

/// A counter from source server `i`'s `INFO stats` (0 when absent).
fn source_stat(password: &str, i: u32, field: &str) -> Result<u64, String> {
    let info = source_conn(password, i)?
        .info("stats")
        .map_err(|e| e.to_string())?;
    Ok(crate::scenario::num(&info, field))
}

/// Every DR pod linked through the endpoint and at source server `i`'s current offset.
fn dr_caught_up_with(d: &Drill, password: &str, i: u32) -> Option<()> {
    let target = source_offset(password, i)?;
    pods(DR)
        .iter()
        .all(|p| {
            d.linked_to(p, SOURCE_VIP)
                && d.info(p, "replication")
                    .is_ok_and(|i| i.get("slave_repl_offset") == Some(&target))
        })
        .then_some(())
}

/// The primary source Sentinel `i` names (the source's Sentinels have no password).
fn sentinel_master(i: u32) -> Option<String> {
    controllers::sentinel_master(&format!("{}:26379", src_ip(i)), "", "source")
}

/// The replicas source Sentinel `i` lists, as (ip, healthy: not `s_down`).
fn sentinel_replicas(i: u32) -> Option<Vec<(String, bool)>> {
    let list = controllers::sentinel_replicas(&format!("{}:26379", src_ip(i)), "", "source")?;
    Some(
        list.into_iter()
            .map(|r| {
                let healthy = !r.get("flags").is_some_and(|f| f.contains("s_down"));
                (r.get("ip").cloned().unwrap_or_default(), healthy)
            })
            .collect(),
    )
}

/// Source server `i`'s current `master_repl_offset`.
fn source_offset(password: &str, i: u32) -> Option<String> {
    source_conn(password, i)
        .ok()?
        .info("replication")
        .ok()?
        .get("master_repl_offset")
        .cloned()
}

fn story(d: &mut Drill) -> Result<(), String> {
    let dir = d.o.dir.join("source");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let password = d.passwords[crate::scenario::PROD].clone();
    crate::net::sh(&[
        "ip",
        "netns",
        "exec",
        NS_A,
        "ip",
        "addr",
        "add",
        &format!("{SOURCE_VIP}/32"),
        "dev",
        "lo",
    ])?;

    d.step(
        "Source region: a Sentinel-managed primary and replica behind one endpoint",
        "Not managed by this operator: plain redis-server and redis-sentinel processes. The endpoint\n\
         is a virtual IP the primary listens on; it moves to whatever Sentinel elects.",
    );
    let start_redis = |d: &mut Drill,
                       i: u32,
                       replica_of: Option<u32>,
                       vip: bool|
     -> Result<(), String> {
        let ip = src_ip(i);
        let bind = if vip {
            format!("{ip} {SOURCE_VIP}")
        } else {
            ip.clone()
        };
        let data = dir.join(format!("src-{i}"));
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let mut conf = format!(
            "bind {bind}\nbind-source-addr {ip}\nport 6379\ndir {}\nappendonly yes\nrequirepass \"{password}\"\nmasterauth \"{password}\"\nrepl-diskless-sync yes\nrepl-diskless-sync-delay 0\nenable-debug-command yes\n",
            data.display()
        );
        if let Some(p) = replica_of {
            conf.push_str(&format!("replicaof {} 6379\n", src_ip(p)));
        }
        // Keep the replicaof line Sentinel may rewrite: write only on first start.
        let path = data.join("redis.conf");
        if !path.exists() {
            std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        } else {
            let old = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            let updated: String = old
                .lines()
                .map(|l| {
                    if l.starts_with("bind ") {
                        format!("bind {bind}")
                    } else {
                        l.to_string()
                    }
                })
                .map(|l| l + "\n")
                .collect();
            std::fs::write(&path, updated).map_err(|e| e.to_string())?;
        }
        let p = Proc::spawn(
            &format!("src-{i}"),
            Some(NS_A),
            &["redis-server".into(), path.display().to_string()],
            &data.join("redis.log"),
        )?;
        d.procs.insert(format!("src-{i}"), p);
        wait(&format!("src-{i} up"), Duration::from_secs(10), || {
            source_conn(&password, i).ok()
        })?;
        Ok(())
    };
    start_redis(d, 0, None, true)?;
    start_redis(d, 1, Some(0), false)?;
    for i in 0..3u32 {
        let ip = src_ip(i);
        let conf = format!(
            "bind {ip}\nport 26379\nsentinel announce-ip {ip}\ndir {dir}\nsentinel monitor source {primary} 6379 2\nsentinel auth-pass source \"{password}\"\nsentinel down-after-milliseconds source 1000\nsentinel failover-timeout source 5000\nsentinel parallel-syncs source 1\n",
            dir = dir.display(),
            primary = src_ip(0)
        );
        let path = dir.join(format!("sentinel-{i}.conf"));
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        let p = Proc::spawn(
            &format!("sentinel-{i}"),
            Some(NS_A),
            &["redis-sentinel".into(), path.display().to_string()],
            &dir.join(format!("sentinel-{i}.log")),
        )?;
        d.procs.insert(format!("sentinel-{i}"), p);
    }
    wait(
        "the sentinels to agree on the primary",
        Duration::from_secs(15),
        || {
            (0..3)
                .all(|i| sentinel_master(i).as_deref() == Some(src_ip(0).as_str()))
                .then_some(())
        },
    )?;

    d.step("DR cluster replicates the source through its endpoint", "");
    d.sim.add_secret(NS, "prod-redis-auth", &password);
    // One password for both sides, as in the spec's cross-region example: the source's
    // Sentinels can then log in to the DR pods and read what they announce. (With different
    // passwords they cannot, and list the DR pods as down: never promotable either.)
    d.passwords.insert(DR.to_string(), password.clone());
    d.sim.add_secret(NS, "dr-redis-auth", &password);
    let samples = d.o.repo.join("config/samples/dr-redis.yaml");
    let yaml = std::fs::read_to_string(samples).map_err(|e| e.to_string())?;
    d.sim.apply(&yaml, |v| {
        v["spec"]["replicaMode"]["source"]["host"] = SOURCE_VIP.into()
    })?;
    d.start_pods_when_applied(DR)?;
    pipeline_sets(&mut source_conn(&password, 0)?, "k", 2000, 1)?;
    wait(
        "every DR pod linked through the endpoint",
        Duration::from_secs(30),
        || {
            pods(DR)
                .iter()
                .all(|p| d.linked_to(p, SOURCE_VIP))
                .then_some(())
        },
    )?;
    // The Sentinels refresh a primary's INFO every 10 s and then look at each replica it lists
    // (the DR pods included: they replicate from their own addresses). Give them that time, then
    // they must know the source's own replica only: the DR pods are not announced.
    wait(
        "the source to list its four replicas",
        Duration::from_secs(15),
        || {
            let i = source_conn(&password, 0).ok()?.info("replication").ok()?;
            (i.get("connected_slaves").map(String::as_str) == Some("4")).then_some(())
        },
    )?;
    std::thread::sleep(Duration::from_secs(11));
    let r = match sentinel_replicas(0) {
        Some(list) if list.len() == 1 && list[0].0 == src_ip(1) => Ok(()),
        other => Err(format!("{other:?}")),
    };
    d.check(
        "the source's Sentinels list only the source's own replica (DR pods: replica-announced no)",
        r,
    )?;

    d.step(
        "The source loses its replica, then its primary: the DR pods are the only replicas left",
        "Sentinel must not elect a DR pod (replica-priority 0): the failover is aborted.",
    );
    d.procs.remove("src-1");
    std::thread::sleep(Duration::from_secs(2));
    d.procs.remove("src-0");
    let aborted = wait(
        "Sentinel to give up the failover",
        Duration::from_secs(30),
        || {
            (0..3).find_map(|i| {
                let log = std::fs::read_to_string(dir.join(format!("sentinel-{i}.log"))).ok()?;
                log.contains("-failover-abort-no-good-slave").then_some(())
            })
        },
    );
    let promoted_dr = pods(DR)
        .iter()
        .filter(|p| {
            d.info(p, "replication")
                .is_ok_and(|i| i.get("role").map(String::as_str) == Some("master"))
        })
        .count();
    let r = match (&aborted, promoted_dr) {
        (Ok(_), 0) => Ok(()),
        (a, n) => Err(format!("abort: {a:?}, DR pods promoted: {n}")),
    };
    d.check(
        "no DR pod was promoted by the source's Sentinels (failover aborted: no good replica)",
        r,
    )?;
    let r = (0..3).all(|i| sentinel_master(i).as_deref() == Some(src_ip(0).as_str()));
    d.check(
        "the Sentinels still name the old primary",
        if r { Ok(()) } else { Err("moved".into()) },
    )?;

    d.step(
        "The source recovers, then fails over for real to its own replica",
        "The endpoint follows the new primary; the DR pods continue with partial resyncs.",
    );
    start_redis(d, 0, None, true)?;
    start_redis(d, 1, Some(0), false)?;
    wait("the DR pods back in sync", Duration::from_secs(30), || {
        pods(DR)
            .iter()
            .all(|p| d.linked_to(p, SOURCE_VIP))
            .then_some(())
    })?;
    wait(
        "src-1 back as the source's replica",
        Duration::from_secs(30),
        || {
            source_conn(&password, 1)
                .ok()?
                .info("replication")
                .ok()?
                .get("master_link_status")
                .filter(|s| *s == "up")
                .map(|_| ())
        },
    )?;
    // Sentinels forget a replica that was down for a while only slowly; make sure they see src-1.
    wait(
        "the Sentinels to see src-1 again",
        Duration::from_secs(30),
        || {
            sentinel_replicas(0)?
                .contains(&(src_ip(1), true))
                .then_some(())
        },
    )?;
    // Steady state before the disaster: every DR pod and src-1 hold everything src-0 has
    // streamed (a DR pod that only just finished its sync from the restarted src-0 would ask
    // src-1 for history older than src-1's own backlog: a full resync, by Redis's rules).
    wait(
        "the DR pods and src-1 at src-0's offset",
        Duration::from_secs(30),
        || {
            dr_caught_up_with(d, &password, 0)?;
            let target = source_offset(&password, 0)?;
            let src1 = source_conn(&password, 1).ok()?.info("replication").ok()?;
            (src1.get("slave_repl_offset") == Some(&target)).then_some(())
        },
    )?;
    let full_before = source_stat(&password, 1, "sync_full")?;
    let partial_before = source_stat(&password, 1, "sync_partial_ok")?;
    let killed = Instant::now();
    d.procs.remove("src-0");
    let (_, took) = wait("Sentinel to elect src-1", Duration::from_secs(30), || {
        (sentinel_master(1).as_deref() == Some(src_ip(1).as_str())).then_some(())
    })?;
    d.time(
        "source primary killed -> Sentinel elected its replica",
        took,
    );
    // The endpoint moves to the elected primary.
    let mut c = source_conn(&password, 1)?;
    let bind = format!("{} {SOURCE_VIP}", src_ip(1));
    let r = c
        .cmd(&["CONFIG", "SET", "bind", &bind])
        .map_err(|e| e.to_string())?;
    if r.is_error() {
        return Err(format!("moving the endpoint: {}", r.text()));
    }
    let r = c
        .cmd(&["SET", "after:failover", "yes"])
        .map_err(|e| e.to_string())?;
    if r.is_error() {
        return Err(format!(
            "the new source primary refused a write: {}",
            r.text()
        ));
    }
    let (_, _) = wait(
        "the DR pods to follow the new source primary",
        Duration::from_secs(60),
        || dr_caught_up_with(d, &password, 1),
    )?;
    d.time(
        "source failover -> all DR pods caught up with the new primary",
        killed.elapsed(),
    );
    let full_after = source_stat(&password, 1, "sync_full")?;
    let partial_after = source_stat(&password, 1, "sync_partial_ok")?;
    let r = if full_after == full_before && partial_after >= partial_before + 3 {
        Ok(())
    } else {
        Err(format!(
            "sync_full {full_before}->{full_after}, sync_partial_ok {partial_before}->{partial_after}"
        ))
    };
    d.check(
        &format!("the DR cluster followed with partial resyncs only (new source primary: sync_full {full_after}, sync_partial_ok +{})", partial_after - partial_before),
        r,
    )?;
    let source_digest = source_conn(&password, 1)?
        .cmd(&["DEBUG", "DIGEST"])
        .map_err(|e| e.to_string())?
        .text();
    let dr: Vec<String> = pods(DR)
        .iter()
        .map(|p| d.digest(p))
        .collect::<Result<_, _>>()?;
    let r = if dr.iter().all(|x| *x == source_digest) {
        Ok(())
    } else {
        Err(format!("{source_digest} vs {dr:?}"))
    };
    d.check("DR keyspaces equal the new source primary's", r)?;
    let r = d.all_alive();
    d.check(
        "every DR redis-server and instance manager still running",
        r,
    )?;
    diverged(d, &password, &start_redis)
}

/// Starts source server `i` (optionally as a replica of another, optionally on the endpoint).
type StartRedis<'a> = dyn Fn(&mut Drill, u32, Option<u32>, bool) -> Result<(), String> + 'a;

/// The one honest exception to "no full resync": the new source primary lacks writes the DR
/// pods already hold. src-0 returns as src-1's replica and is frozen (SIGSTOP) while src-1 takes
/// a burst the DR pods receive in full; src-1 dies with most of the burst still in its output
/// buffer for src-0; src-0 resumes and is elected. PSYNC cannot continue from the DR pods'
/// offset: they resynchronise in full, and the operator says so with the bytes.
fn diverged(d: &mut Drill, password: &str, start_redis: &StartRedis) -> Result<(), String> {
    d.step(
        "The honest exception: the new source primary never got writes the DR pods hold",
        "src-0 comes back as src-1's replica and is frozen while src-1 takes a 24 MB burst that the DR pods\n\
         receive; src-1 dies; src-0 is elected. The DR pods are ahead of it: they must resynchronise in full,\n\
         and the operator reports it as such (Event FullResyncAfterFailover, with the bytes lost).",
    );
    start_redis(d, 0, None, false)?;
    let r = source_conn(password, 0)?
        .cmd(&["REPLICAOF", &src_ip(1), "6379"])
        .map_err(|e| e.to_string())?;
    if r.is_error() {
        return Err(r.text());
    }
    wait(
        "the Sentinels to see src-0 as a healthy replica of src-1",
        Duration::from_secs(60),
        || {
            let linked = source_conn(password, 0)
                .ok()?
                .info("replication")
                .ok()?
                .get("master_link_status")
                .is_some_and(|s| s == "up");
            (linked && sentinel_replicas(1)?.contains(&(src_ip(0), true))).then_some(())
        },
    )?;
    let pid = d.procs["src-0"].pid().to_string();
    crate::net::sh(&["kill", "-STOP", &pid])?;
    let burst =
        source_conn(password, 1).and_then(|mut c| pipeline_sets(&mut c, "burst", 3000, 8 * 1024));
    let caught_up = burst.and_then(|_| {
        wait(
            "the DR pods to receive the whole burst",
            Duration::from_secs(60),
            || {
                let target = source_offset(password, 1)?;
                // Received by Redis, and seen so by the instance managers (they sample once a
                // second: what they report is what they remember when the upstream changes).
                let target: i64 = target.parse().ok()?;
                pods(DR)
                    .iter()
                    .all(|p| {
                        d.status_report(p)
                            .is_some_and(|r| r.master_link_up && r.repl_offset == Some(target))
                    })
                    .then_some(())
            },
        )
    });
    d.procs.remove("src-1");
    crate::net::sh(&["kill", "-CONT", &pid])?;
    caught_up?;
    // A majority of the Sentinels names src-0 (what a Sentinel client goes by; a Sentinel that
    // was cut off from the hello messages may lag behind).
    wait("Sentinel to elect src-0", Duration::from_secs(60), || {
        ((0..3)
            .filter(|i| sentinel_master(*i).as_deref() == Some(src_ip(0).as_str()))
            .count()
            >= 2)
            .then_some(())
    })
    .map_err(|e| {
        let answers: Vec<Option<String>> = (0..3).map(sentinel_master).collect();
        format!("{e}; the Sentinels answer {answers:?}")
    })?;
    let full_before = source_stat(password, 0, "sync_full")?;
    let bind = format!("{} {SOURCE_VIP}", src_ip(0));
    source_conn(password, 0)?
        .cmd(&["CONFIG", "SET", "bind", &bind])
        .map_err(|e| e.to_string())?;
    let (notes, _) = wait(
        "the operator to report the DR pods' full resyncs",
        Duration::from_secs(60),
        || {
            let notes: Vec<String> = d
                .sim
                .events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| {
                    e.0 == DR
                        && e.2 == EventReason::FullResyncAfterFailover.as_str()
                        && e.1 == "Warning"
                })
                .map(|e| e.3.clone())
                .collect();
            (notes.len() == pods(DR).len()).then_some(notes)
        },
    )?;
    let bytes: Vec<i64> = notes
        .iter()
        .filter_map(|n| n.split(" held ").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    d.check(
        &format!("every DR pod's full resync is evented with the bytes the new primary never got (Warning FullResyncAfterFailover: \"{}\")", notes[0]),
        if bytes.len() == notes.len() && bytes.iter().all(|b| *b > 0) {
            Ok(())
        } else {
            Err(format!("{notes:?}"))
        },
    )?;
    wait(
        "the DR pods back in sync with src-0",
        Duration::from_secs(60),
        || dr_caught_up_with(d, password, 0),
    )?;
    let full_after = source_stat(password, 0, "sync_full")?;
    let source_digest = source_conn(password, 0)?
        .cmd(&["DEBUG", "DIGEST"])
        .map_err(|e| e.to_string())?
        .text();
    let dr: Vec<String> = pods(DR)
        .iter()
        .map(|p| d.digest(p))
        .collect::<Result<_, _>>()?;
    d.check(
        &format!(
            "src-0 served {} full resyncs, and the DR keyspaces equal src-0's again (the lost burst is gone everywhere)",
            full_after - full_before
        ),
        if full_after >= full_before + pods(DR).len() as u64
            && dr.iter().all(|x| *x == source_digest)
        {
            Ok(())
        } else {
            Err(format!("sync_full {full_before}->{full_after}; {source_digest} vs {dr:?}"))
        },
    )?;
    Ok(())
}
