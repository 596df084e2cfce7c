//! Replica mode against a Sentinel-managed source, with real `redis-sentinel`s.
//!
//! Region A runs an external production that this operator does not manage
//! ([`crate::harness::source`]): a primary, a replica and three Sentinels, behind one stable
//! endpoint. Region B runs the DR cluster through the operator, its `source.host` being that
//! endpoint.
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
//! 4. The source comes back empty on the same address: the DR pods keep their data and say why.
//! 5. TLS ([`crate::drills::tls`]): the spec's TLS sample replicates a TLS-only source (its
//!    Secret first refused for lacking `ca.crt`, then fixed with the command the condition
//!    gives), refuses plain text, and is promoted.
//!
//! [`story`] is the list of steps; each step is a function whose doc comment is its banner.

use std::time::{Duration, Instant};

use redis_test_support::process::run as sh;
use redis_topology::EventReason;

use crate::harness::source::{
    SOURCE_VIP, Source, sentinel_master, sentinel_replicas, sentinels_agree_on, src_ip,
};
use crate::harness::writers::pipeline_sets;
use crate::harness::{DR, Drill, Options, PROD, Report, im_addr, run_story, wait};

pub fn run(o: &Options) -> Report {
    run_story(o, "setup", story)
}

/// The keys of the burst only the DR pods receive (8 KB each).
const BURST_KEYS: usize = 3000;

/// The story: the operator running, then each line one step.
fn story(d: &mut Drill) -> Result<(), String> {
    let src = Source::create(d, &d.passwords[PROD].clone())?;
    source_region(d, &src)?;
    dr_replicates_the_source(d, &src)?;
    sentinels_never_promote_a_dr_pod(d, &src)?;
    source_fails_over_to_its_replica(d, &src)?;
    new_primary_lacks_writes_dr_holds(d, &src)?;
    source_back_empty(d, &src)?;
    crate::drills::tls::dr_over_tls(d)
}

/// Source region: a Sentinel-managed primary and replica behind one endpoint
///
/// Not managed by this operator: plain redis-server and redis-sentinel processes. The endpoint
/// is a virtual IP the primary listens on; it moves to whatever Sentinel elects.
fn source_region(d: &mut Drill, src: &Source) -> Result<(), String> {
    d.step(
        "Source region: a Sentinel-managed primary and replica behind one endpoint",
        "Not managed by this operator: plain redis-server and redis-sentinel processes. The endpoint\n\
         is a virtual IP the primary listens on; it moves to whatever Sentinel elects.",
    );
    src.start(d, 0, None, true)?;
    src.start(d, 1, Some(0), false)?;
    src.start_sentinels(d)
}

/// DR cluster replicates the source through its endpoint
fn dr_replicates_the_source(d: &mut Drill, src: &Source) -> Result<(), String> {
    d.step("DR cluster replicates the source through its endpoint", "");
    // One password for both sides, as in the spec's cross-region example: the source's
    // Sentinels can then log in to the DR pods and read what they announce. (With different
    // passwords they cannot, and list the DR pods as down: never promotable either.)
    d.passwords.insert(PROD.to_string(), src.password.clone());
    d.passwords.insert(DR.to_string(), src.password.clone());
    d.create_secrets()?;
    // The spec's DR sample with the source's endpoint as source.host: an external IP, like the
    // spec's cross-region example's LoadBalancer address.
    let sample = d.sample("dr-redis.yaml")?;
    let dr = sample.replace(
        "host: prod-redis-leader.production.svc.cluster.local",
        &format!("host: {SOURCE_VIP}"),
    );
    if dr == sample {
        return Err("dr-redis.yaml no longer names prod-redis-leader as its source".into());
    }
    d.apply_yaml(&dr)?;
    d.wait_pods_running(DR, Duration::from_secs(120))?;
    pipeline_sets(&mut src.conn(0)?, "k", 2000, 1)?;
    wait(
        "every DR pod linked through the endpoint",
        Duration::from_secs(30),
        || dr_linked(d).then_some(()),
    )?;
    // The Sentinels refresh a primary's INFO every 10 s and then look at each replica it lists
    // (the DR pods included: they replicate from their own addresses). Give them that time, then
    // they must know the source's own replica only: the DR pods are not announced.
    wait(
        "the source to list its four replicas",
        Duration::from_secs(15),
        || {
            let i = src.replication(0)?;
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
    )
}

/// Every DR pod replicates the source's endpoint, its link up.
fn dr_linked(d: &Drill) -> bool {
    d.pods(DR).iter().all(|p| d.linked_to(p, SOURCE_VIP))
}

/// The source loses its replica, then its primary: the DR pods are the only replicas left
///
/// Sentinel must not elect a DR pod (replica-priority 0): the failover is aborted.
fn sentinels_never_promote_a_dr_pod(d: &mut Drill, src: &Source) -> Result<(), String> {
    d.step(
        "The source loses its replica, then its primary: the DR pods are the only replicas left",
        "Sentinel must not elect a DR pod (replica-priority 0): the failover is aborted.",
    );
    d.procs.remove("src-1");
    // The Sentinels see the replica down before the primary goes: there is no good replica left.
    wait(
        "the Sentinels to see src-1 down",
        Duration::from_secs(30),
        || {
            (0..3)
                .all(|i| sentinel_replicas(i).is_some_and(|r| r.contains(&(src_ip(1), false))))
                .then_some(())
        },
    )?;
    d.procs.remove("src-0");
    let aborted = wait(
        "Sentinel to give up the failover",
        Duration::from_secs(30),
        || {
            (0..3).find_map(|i| {
                let log =
                    std::fs::read_to_string(src.dir.join(format!("sentinel-{i}.log"))).ok()?;
                log.contains("-failover-abort-no-good-slave").then_some(())
            })
        },
    );
    let promoted_dr = d
        .pods(DR)
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
    )
}

/// The source recovers, then fails over for real to its own replica
///
/// The endpoint follows the new primary; the DR pods continue with partial resyncs.
fn source_fails_over_to_its_replica(d: &mut Drill, src: &Source) -> Result<(), String> {
    d.step(
        "The source recovers, then fails over for real to its own replica",
        "The endpoint follows the new primary; the DR pods continue with partial resyncs.",
    );
    source_recovers(d, src)?;
    let full_before = src.stat(1, "sync_full")?;
    let partial_before = src.stat(1, "sync_partial_ok")?;
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
    src.move_endpoint(1)?;
    let r = src
        .conn(1)?
        .cmd(&["SET", "after:failover", "yes"])
        .map_err(|e| e.to_string())?;
    if r.is_error() {
        return Err(format!(
            "the new source primary refused a write: {}",
            r.text()
        ));
    }
    wait(
        "the DR pods to follow the new source primary",
        Duration::from_secs(60),
        || src.dr_caught_up_with(d, 1),
    )?;
    d.time(
        "source failover -> all DR pods caught up with the new primary",
        killed.elapsed(),
    );
    let full_after = src.stat(1, "sync_full")?;
    let partial_after = src.stat(1, "sync_partial_ok")?;
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
    let r = src.dr_digests_equal(d, 1);
    d.check("DR keyspaces equal the new source primary's", r)?;
    let r = d.all_alive();
    d.check(
        "every DR redis-server and instance manager still running",
        r,
    )
}

/// src-0 and src-1 come back as primary and replica, and everything settles before the disaster:
/// the DR pods linked, src-1 linked and seen by the Sentinels, everyone at src-0's offset.
fn source_recovers(d: &mut Drill, src: &Source) -> Result<(), String> {
    src.start(d, 0, None, true)?;
    src.start(d, 1, Some(0), false)?;
    wait("the DR pods back in sync", Duration::from_secs(30), || {
        dr_linked(d).then_some(())
    })?;
    wait(
        "src-1 back as the source's replica",
        Duration::from_secs(30),
        || src.linked(1).then_some(()),
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
            src.dr_caught_up_with(d, 0)?;
            let target = src.offset(0)?;
            let src1 = src.replication(1)?;
            (src1.get("slave_repl_offset") == Some(&target)).then_some(())
        },
    )?;
    Ok(())
}

/// The honest exception: the new source primary never got writes the DR pods hold
///
/// src-0 comes back as src-1's replica and is frozen while src-1 takes a 24 MB burst that the DR pods
/// receive; src-1 dies; src-0 is elected. The DR pods are ahead of it: they must resynchronise in full,
/// and the operator reports it as such (Event FullResyncAfterFailover, with the bytes lost). What they
/// held beyond src-0 is salvaged first (Event Salvaged): replayed, exactly the burst src-0 lacks.
///
/// The one honest exception to "no full resync". src-1 dies with most of the burst still in its
/// output buffer for the frozen src-0; src-0 resumes and is elected. PSYNC cannot continue from
/// the DR pods' offset: they resynchronise in full, and the operator says so with the bytes.
fn new_primary_lacks_writes_dr_holds(d: &mut Drill, src: &Source) -> Result<(), String> {
    d.step(
        "The honest exception: the new source primary never got writes the DR pods hold",
        "src-0 comes back as src-1's replica and is frozen while src-1 takes a 24 MB burst that the DR pods\n\
         receive; src-1 dies; src-0 is elected. The DR pods are ahead of it: they must resynchronise in full,\n\
         and the operator reports it as such (Event FullResyncAfterFailover, with the bytes lost). What they\n\
         held beyond src-0 is salvaged first (Event Salvaged): replayed, exactly the burst src-0 lacks.",
    );
    // The previous failover is over before src-0 comes back: every Sentinel names src-1 and none
    // is still failing over. (Its leader holds on to the old master until then; a Sentinel
    // that has just switched may still misjudge its new master for a moment.)
    wait(
        "every Sentinel to name src-1, no failover in progress",
        Duration::from_secs(30),
        || sentinels_agree_on(1).then_some(()),
    )?;
    src0_returns_as_replica_of_src1(d, src)?;
    burst_only_the_dr_pods_receive(d, src)?;
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
    let full_before = src.stat(0, "sync_full")?;
    let salvaged_before = d.salvage_of(DR, "dr-redis-0");
    let bind = format!("{} {SOURCE_VIP}", src_ip(0));
    src.conn(0)?
        .cmd(&["CONFIG", "SET", "bind", &bind])
        .map_err(|e| e.to_string())?;
    operator_reports_full_resyncs(d)?;
    burst_salvaged(d, src, salvaged_before.as_ref())?;
    wait(
        "the DR pods back in sync with src-0",
        Duration::from_secs(60),
        || src.dr_caught_up_with(d, 0),
    )?;
    let full_after = src.stat(0, "sync_full")?;
    let equal = src.dr_digests_equal(d, 0);
    d.check(
        &format!(
            "src-0 served {} full resyncs, and the DR keyspaces equal src-0's again (the lost burst is gone everywhere)",
            full_after - full_before
        ),
        if full_after >= full_before + d.pods(DR).len() as u64 && equal.is_ok() {
            Ok(())
        } else {
            Err(format!(
                "sync_full {full_before}->{full_after}; {}",
                equal.err().unwrap_or_default()
            ))
        },
    )
}

/// Issue 14 (docs/salvage.md): before their full resync, the DR pods saved the part of the
/// burst src-0 never got; dr-redis-0's tail, replayed into an empty Redis, holds exactly the
/// burst's keys src-0 lacks.
fn burst_salvaged(
    d: &mut Drill,
    src: &Source,
    before: Option<&redis_cluster_api::report::Salvage>,
) -> Result<(), String> {
    let mut c = src.conn(0)?;
    let mut lost = std::collections::BTreeSet::new();
    for i in 0..BURST_KEYS {
        let k = format!("burst:{i}");
        if c.cmd(&["EXISTS", &k]).map_err(|e| e.to_string())?.text() != "1" {
            lost.insert(k);
        }
    }
    drop(c);
    let pod = "dr-redis-0";
    let (event, salvage) = d.salvaged(DR, pod, before, Duration::from_secs(30))?;
    let (replayed, said) = d.replay_tail(pod, &salvage)?;
    d.check(
        &format!(
            "salvaged first (Warning Salvaged: \"{}\"); replayed into an empty Redis ({said}) it holds exactly the {} burst keys src-0 never got",
            event.1,
            lost.len()
        ),
        if salvage.kind == "tail" && replayed == lost && said.starts_with("errors: 0,") {
            Ok(())
        } else {
            Err(format!(
                "{} replayed, {} lost; extra {:?}, missing {:?}",
                replayed.len(),
                lost.len(),
                replayed.difference(&lost).take(5).collect::<Vec<_>>(),
                lost.difference(&replayed).take(5).collect::<Vec<_>>()
            ))
        },
    )
}

/// src-0 comes back as a replica of src-1 (the primary since the failover), and the Sentinels
/// see it as a healthy one.
fn src0_returns_as_replica_of_src1(d: &mut Drill, src: &Source) -> Result<(), String> {
    src.start(d, 0, None, false)?;
    let r = src
        .conn(0)?
        .cmd(&["REPLICAOF", &src_ip(1), "6379"])
        .map_err(|e| e.to_string())?;
    if r.is_error() {
        return Err(r.text());
    }
    wait(
        "the Sentinels to see src-0 as a healthy replica of src-1",
        Duration::from_secs(60),
        || (src.linked(0) && sentinel_replicas(1)?.contains(&(src_ip(0), true))).then_some(()),
    )?;
    Ok(())
}

/// src-0 is frozen (SIGSTOP) while src-1 takes a 24 MB burst; once the DR pods (and their
/// instance managers) have all of it, src-1 dies and src-0 resumes: most of the burst was still
/// in src-1's output buffer for src-0.
fn burst_only_the_dr_pods_receive(d: &mut Drill, src: &Source) -> Result<(), String> {
    let pid = d.procs["src-0"].pid().to_string();
    sh(&["kill", "-STOP", &pid])?;
    let burst = src
        .conn(1)
        .and_then(|mut c| pipeline_sets(&mut c, "burst", BURST_KEYS, 8 * 1024));
    let caught_up = burst.and_then(|_| {
        wait(
            "the DR pods to receive the whole burst",
            Duration::from_secs(60),
            || {
                let target = src.offset(1)?;
                // Received by Redis, and seen so by the instance managers (they sample once a
                // second: what they report is what they remember when the upstream changes).
                let target: i64 = target.parse().ok()?;
                d.pods(DR)
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
    sh(&["kill", "-CONT", &pid])?;
    caught_up.map(|_| ())
}

/// The operator reports every DR pod's full resync with the bytes the new primary never got
/// (Warning FullResyncAfterFailover).
fn operator_reports_full_resyncs(d: &mut Drill) -> Result<(), String> {
    let (notes, _) = wait(
        "the operator to report the DR pods' full resyncs",
        Duration::from_secs(60),
        || {
            let notes: Vec<String> = d
                .events(DR, EventReason::FullResyncAfterFailover)
                .into_iter()
                .filter(|(t, _)| t == "Warning")
                .map(|(_, note)| note)
                .collect();
            // Every DR pod named (one Event per value a pod reported: a pod whose count was
            // corrected between two reports has two).
            d.pods(DR)
                .iter()
                .all(|pod| notes.iter().any(|n| n.starts_with(&format!("{pod} held "))))
                .then_some(notes)
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
    )
}

/// The keys a pod holds (`db0`).
fn keys(d: &Drill, pod: &str) -> Result<u64, String> {
    let info = d.info(pod, "keyspace")?;
    Ok(info
        .get("db0")
        .and_then(|v| v.split(',').next()?.strip_prefix("keys=")?.parse().ok())
        .unwrap_or(0))
}

/// The source comes back empty on the same address: the DR pods keep their data
///
/// src-0 (the source's primary, alone since src-1 died) is killed, its files removed, and started
/// again on the endpoint: an empty Redis under a new replication id, as a source recreated without
/// its volume comes back. Redis on every DR pod retries the link on its own every second; the
/// replication gate must refuse every time: every DR pod keeps every key, SourceLinkUp says
/// UnrelatedHistory with the command to accept the new history, a Warning Event says so, and the
/// metric redis_replication_history_blocked is 1 on every DR pod.
fn source_back_empty(d: &mut Drill, src: &Source) -> Result<(), String> {
    d.step(
        "The source comes back empty on the same address: the DR pods keep their data",
        "src-0 (the source's primary, alone since src-1 died) is killed, its files removed, and started\n\
         again on the endpoint: an empty Redis under a new replication id, as a source recreated without\n\
         its volume comes back. Redis on every DR pod retries the link on its own every second; the\n\
         replication gate must refuse every time: every DR pod keeps every key, SourceLinkUp says\n\
         UnrelatedHistory with the command to accept the new history, a Warning Event says so, and the\n\
         metric redis_replication_history_blocked is 1 on every DR pod.",
    );
    let pods = d.pods(DR);
    let before = pods
        .iter()
        .map(|p| keys(d, p))
        .collect::<Result<Vec<u64>, String>>()?;
    d.procs.remove("src-0");
    let data = src.dir.join("src-0");
    for entry in std::fs::read_dir(&data).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name == "redis.conf" || name.ends_with(".log") {
            continue;
        }
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let restarted = Instant::now();
    src.start(d, 0, None, true)?;
    let source_keys = src
        .conn(0)?
        .cmd(&["DBSIZE"])
        .map_err(|e| e.to_string())?
        .text();
    let ((_, _, message), took) = wait(
        "SourceLinkUp=False/UnrelatedHistory",
        Duration::from_secs(60),
        || {
            d.condition(DR, "SourceLinkUp")
                .filter(|c| c.0 == "False" && c.1 == "UnrelatedHistory")
        },
    )?;
    d.time(
        "source back empty -> SourceLinkUp=False/UnrelatedHistory",
        took,
    );
    d.check(
        &format!(
            "the condition names the unrelated history and the command to accept it: \"{message}\""
        ),
        if message.contains("refuses 10.78.250.100:6379's replication history")
            && message.contains("keeps its data instead of replicating")
            && message.contains("redis.io/accept-replication-history=")
        {
            Ok(())
        } else {
            Err("no history or no command".into())
        },
    )?;
    // Redis retries the link every second: the guard must hold every time, not usually.
    let mut lost = Vec::new();
    let mut samples = 0;
    while restarted.elapsed() < Duration::from_secs(took.as_secs() + 15) {
        for (p, b) in pods.iter().zip(&before) {
            let now = keys(d, p)?;
            samples += 1;
            if now < *b {
                lost.push(format!("{p}: {b} -> {now} keys"));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    d.check(
        &format!(
            "every DR pod kept every key ({} each; the source holds {source_keys}) through {:.0} s of Redis retrying the link ({samples} samples)",
            before.iter().min().copied().unwrap_or(0),
            restarted.elapsed().as_secs_f64()
        ),
        if lost.is_empty() {
            Ok(())
        } else {
            Err(lost.join("; "))
        },
    )?;
    let event = d.event(DR, EventReason::UnrelatedHistory);
    d.check(
        &format!("Warning Event UnrelatedHistory: {event:?}"),
        match &event {
            Some((t, note))
                if t == "Warning" && note.contains("keeps its data instead of replicating") =>
            {
                Ok(())
            }
            _ => Err("missing".into()),
        },
    )?;
    let unblocked: Vec<&String> = pods
        .iter()
        .filter(|p| {
            !redis_test_support::http::get(&im_addr(p), "/metrics").is_ok_and(|(_, body)| {
                body.lines().any(|l| {
                    l.starts_with("redis_replication_history_blocked") && l.ends_with(" 1")
                })
            })
        })
        .collect();
    d.check(
        "redis_replication_history_blocked 1 on every DR pod's instance manager",
        if unblocked.is_empty() {
            Ok(())
        } else {
            Err(format!("not on {unblocked:?}"))
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_step_is_documented_by_its_banner() {
        let steps =
            crate::harness::narration::assert_steps_documented(include_str!("source_failover.rs"));
        assert_eq!(steps, 6);
    }
}
