//! The story's two failovers: production (mode: sentinel) loses its primary and its Sentinels
//! elect another; later the promoted DR cluster (standalone) loses its primary and the operator
//! fails over. Either way the old primary comes back fenced and takes no write.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis_cluster_api::labels as l;
use redis_topology::EventReason;

use crate::harness::observe::accepts_write;
use crate::harness::sentinel::{known_as, sentinel_addrs, sentinel_master, sentinels_settled};
use crate::harness::writers::{NoWriteSampler, acked_writes};
use crate::harness::{DR, DR_FAILOVER_AFTER_S, Drill, PROD, SENTINEL_DOWN_AFTER_MS, addr, wait};

/// Production's Sentinels (the sample's default).
const SENTINELS: u32 = 3;

/// `Ok` when `elapsed` is within `bound`, else the elapsed time as the error.
fn within(elapsed: Duration, bound: Duration) -> Result<(), String> {
    if elapsed <= bound {
        Ok(())
    } else {
        Err(format!("{elapsed:?}"))
    }
}

/// 2b. Production loses its primary pod: Sentinel failover inside region A
///
/// prod-redis runs mode: sentinel: the operator's 3 Sentinels elect a new primary; the operator follows
/// (role label -> -leader endpoint, status.currentPrimary, a Failover Event); the DR cluster follows the
/// new primary behind the same source.host with partial resyncs only; the old primary rejoins as replica.
pub(super) fn production_loses_its_primary(d: &mut Drill) -> Result<(), String> {
    d.step(
        "2b. Production loses its primary pod: Sentinel failover inside region A",
        "prod-redis runs mode: sentinel: the operator's 3 Sentinels elect a new primary; the operator follows\n\
         (role label -> -leader endpoint, status.currentPrimary, a Failover Event); the DR cluster follows the\n\
         new primary behind the same source.host with partial resyncs only; the old primary rejoins as replica.",
    );
    let old = "prod-redis-0".to_string();
    let pw = d.passwords[PROD].clone();
    sentinels_know_production(d, &old, &pw)?;
    // Acknowledged writes: WAIT for more replicas than DR has, so at least one production
    // replica holds each of them (the Sentinels pick the production replica with the highest
    // offset).
    let acks = d.pods(DR).len() + 1;
    let leader = d
        .leader_endpoint(PROD)
        .ok_or("prod-redis-leader has no ready endpoint")?;
    let acked = acked_writes(
        &format!("{leader}:6379"),
        &pw,
        "acked-before-failover",
        200,
        acks,
    )?;
    let replicas: Vec<String> = d.all_pods().into_iter().skip(1).collect();
    wait(
        "every replica at production's offset",
        Duration::from_secs(60),
        || d.caught_up(&old, &replicas),
    )?;
    let before: BTreeMap<String, (u64, u64)> = d
        .pods(PROD)
        .into_iter()
        .skip(1)
        .map(|p| {
            let full = d.stat(&p, "sync_full").unwrap_or(0);
            let partial = d.stat(&p, "sync_partial_ok").unwrap_or(0);
            (p, (full, partial))
        })
        .collect();
    let killed = Instant::now();
    d.break_redis(&old)?;
    let new = sentinels_elect_a_writable_primary(d, &old, &pw, killed)?;
    operator_follows_the_sentinels(d, &old, &new)?;
    let r = d.keys_present(&new, &acked);
    d.check(
        &format!(
            "all {} writes acknowledged by {acks} replicas (WAIT) are on the new primary",
            acked.len()
        ),
        r,
    )?;
    dr_follows_with_partial_resyncs(d, &old, &new, killed, before[&new])?;
    // The old primary's volume is repaired and its pod recreated: it boots fenced and rejoins
    // as a replica.
    let sampler = NoWriteSampler::start(&old, &pw);
    d.rejoins_without_writes(PROD, &old, &new, sampler, "sentinel mode")?;
    d.check_keyspaces_converge("all production and DR keyspaces equal after the failover")
}

/// Before the kill: every replica caught up, and the Sentinels monitoring `primary` with exactly
/// production's other pods as replicas.
fn sentinels_know_production(d: &mut Drill, primary: &str, pw: &str) -> Result<(), String> {
    let replicas: Vec<String> = d.all_pods().into_iter().skip(1).collect();
    wait(
        "every replica at production's offset",
        Duration::from_secs(60),
        || d.caught_up(primary, &replicas),
    )?;
    let master = l::sentinel_master_name(PROD);
    // Sentinels learn replicas from the primary's INFO every 10 s; DR pods are hidden
    // (replica-announced no), so they see exactly production's 2 replicas, by their stable
    // names (announce-hostnames).
    let r = wait(
        "the Sentinels to monitor prod-redis-0 and know its 2 replicas",
        Duration::from_secs(30),
        || {
            let addrs = sentinel_addrs(PROD, SENTINELS);
            let replicas: Vec<String> = d
                .pods(PROD)
                .iter()
                .filter(|p| *p != primary)
                .map(|p| known_as(PROD, p))
                .collect();
            (addrs.len() == SENTINELS as usize
                && sentinels_settled(&addrs, pw, &master, &known_as(PROD, primary), &replicas))
            .then_some(())
        },
    );
    d.check(
        "3 operator-managed Sentinels (real redis-sentinel) monitor prod-redis-0, know its 2 replicas and not the 5 DR pods",
        r.map(|_| ()),
    )
}

/// After the kill: the Sentinels elect another pod, and a write goes through the `-leader`
/// endpoint within the stated time. Returns the elected pod.
fn sentinels_elect_a_writable_primary(
    d: &mut Drill,
    old: &str,
    pw: &str,
    killed: Instant,
) -> Result<String, String> {
    let master = l::sentinel_master_name(PROD);
    let sentinels = sentinel_addrs(PROD, SENTINELS);
    let (elected, took) = wait(
        "the Sentinels to elect a new primary",
        Duration::from_secs(60),
        || {
            sentinels
                .iter()
                .find_map(|s| sentinel_master(s, pw, &master))
                .filter(|e| *e != known_as(PROD, old))
        },
    )?;
    let new = d
        .pods(PROD)
        .into_iter()
        .find(|p| known_as(PROD, p) == elected)
        .ok_or(format!("the Sentinels elected an unknown host {elected}"))?;
    d.time(
        &format!("sentinel mode: primary killed -> Sentinels elected {new}"),
        took,
    );
    wait(
        "a write accepted through prod-redis-leader",
        Duration::from_secs(60),
        || {
            // Where the Service routes now (its EndpointSlice, as kube-proxy programs it).
            let leader = d.leader_endpoint(PROD)?;
            let set = ["drill:after-sentinel-failover", "yes"];
            accepts_write(
                &format!("{leader}:6379"),
                pw,
                set,
                Duration::from_millis(300),
            )
            .then_some(())
        },
    )?;
    let writable = killed.elapsed();
    d.time(
        "sentinel mode: primary killed -> first write accepted through the -leader endpoint",
        writable,
    );
    // The stated time (docs/failover.md): down-after, plus the election and promotion, plus the
    // operator following (seconds).
    let bound = Duration::from_millis(SENTINEL_DOWN_AFTER_MS) + Duration::from_secs(10);
    d.check(
        &format!(
            "elected in {:.1} s, writable through the -leader endpoint in {:.1} s (stated: within down-after + 10 s = {:.0} s)",
            took.as_secs_f64(),
            writable.as_secs_f64(),
            bound.as_secs_f64()
        ),
        within(writable, bound),
    )?;
    Ok(new)
}

/// The operator follows the Sentinels' choice: role label (the `-leader` endpoint),
/// `status.currentPrimary` and a Failover Event move to `new`, which enforces minSyncReplicas.
fn operator_follows_the_sentinels(d: &mut Drill, old: &str, new: &str) -> Result<(), String> {
    let r = wait(
        "the role label, status and Event to follow",
        Duration::from_secs(20),
        || {
            (d.labelled_primary(PROD).as_deref() == Some(new)
                && d.current_primary(PROD).as_deref() == Some(new)
                && d.event(PROD, EventReason::Failover).is_some())
            .then_some(())
        },
    );
    let note = d
        .event(PROD, EventReason::Failover)
        .map(|e| e.1)
        .unwrap_or_default();
    d.check(
        &format!("label redis.io/role=primary, the -leader endpoint and status.currentPrimary moved to {new}; Event: \"{note}\""),
        r.map(|_| ()).and_then(|_| {
            if note.contains(&format!("{old} -> {new}")) {
                Ok(())
            } else {
                Err(note.clone())
            }
        }),
    )?;
    // minSyncReplicas travels with every pod under Sentinel (replicas carry it too), so the
    // replica the Sentinels promoted enforces it without waiting for the operator.
    let mrtw = d
        .conn(new)?
        .cmd(&["CONFIG", "GET", "min-replicas-to-write"])
        .map_err(|e| e.to_string())?
        .text();
    d.check(
        &format!("the promoted {new} enforces minSyncReplicas: 1 (CONFIG GET: {mrtw})"),
        if mrtw.ends_with(" 1") {
            Ok(())
        } else {
            Err(mrtw.clone())
        },
    )
}

/// The other production replica and every DR pod follow `new` with partial resyncs only
/// (`before`: its sync_full and sync_partial_ok before the kill).
fn dr_follows_with_partial_resyncs(
    d: &mut Drill,
    old: &str,
    new: &str,
    killed: Instant,
    (full_before, partial_before): (u64, u64),
) -> Result<(), String> {
    let others: Vec<String> = d
        .all_pods()
        .into_iter()
        .filter(|p| p != old && p != new)
        .collect();
    wait(
        "the other production replica and every DR pod to follow the new primary",
        Duration::from_secs(60),
        || d.caught_up(new, &others),
    )?;
    d.time(
        "sentinel mode: primary killed -> DR caught up with the new primary",
        killed.elapsed(),
    );
    let full = d.stat(new, "sync_full")?;
    let partial = d.stat(new, "sync_partial_ok")?;
    let want = others.len() as u64;
    d.check(
        &format!("zero full resyncs: {new} served sync_full {full_before}->{full}, sync_partial_ok +{} (DR pods and the other replica)", partial - partial_before),
        if full == full_before && partial >= partial_before + want {
            Ok(())
        } else {
            Err(format!("expected +{want} partial resyncs"))
        },
    )
}

/// 4b. DR's primary pod dies: the operator fails over (standalone mode)
///
/// The promoted DR cluster has no Sentinels. Its primary's Redis container stops; once it has been
/// unavailable for failover.primaryUnavailableSeconds (3 s in the drill, 10 s by default) and the kubelet
/// reports the container not running, the operator fences it, promotes the replica with the highest
/// replication offset and re-points the others. A sampler tries to write to the old primary throughout.
///
/// Returns the new primary.
pub(super) fn dr_loses_its_primary(d: &mut Drill) -> Result<String, String> {
    d.step(
        "4b. DR's primary pod dies: the operator fails over (standalone mode)",
        "The promoted DR cluster has no Sentinels. Its primary's Redis container stops; once it has been\n\
         unavailable for failover.primaryUnavailableSeconds (3 s in the drill, 10 s by default) and the kubelet\n\
         reports the container not running, the operator fences it, promotes the replica with the highest\n\
         replication offset and re-points the others. A sampler tries to write to the old primary throughout.",
    );
    let old = "dr-redis-0".to_string();
    let pw = d.passwords[DR].clone();
    let replicas: Vec<String> = d.pods(DR).into_iter().skip(1).collect();
    let acked = acked_writes(&addr(&old), &pw, "dr-acked", 200, replicas.len())?;
    wait(
        "every DR replica at the primary's offset",
        Duration::from_secs(60),
        || d.caught_up(&old, &replicas),
    )?;
    let before: BTreeMap<String, u64> = replicas
        .iter()
        .map(|p| (p.clone(), d.stat(p, "sync_full").unwrap_or(0)))
        .collect();
    let killed = Instant::now();
    d.break_redis(&old)?;
    // From its death on: the sampler's first attempt is after the SIGKILL.
    let sampler = NoWriteSampler::start(&old, &pw);
    let new = operator_fails_over(d, &old, killed)?;
    let others: Vec<String> = replicas.iter().filter(|p| **p != new).cloned().collect();
    wait(
        "the other DR pods to follow the new primary",
        Duration::from_secs(60),
        || d.caught_up(&new, &others),
    )?;
    d.time(
        "standalone mode: primary killed -> replicas re-attached to the new primary",
        killed.elapsed(),
    );
    let fulls: Vec<String> = others
        .iter()
        .chain(std::iter::once(&new))
        .filter_map(|p| {
            let now = d.stat(p, "sync_full").ok()?;
            (now != before[p]).then(|| format!("{p}: sync_full {} -> {now}", before[p]))
        })
        .collect();
    let partial = d.stat(&new, "sync_partial_ok")?;
    d.check(
        &format!("zero full resyncs ({new} sync_partial_ok {partial})"),
        if fulls.is_empty() && partial >= others.len() as u64 {
            Ok(())
        } else {
            Err(format!("{fulls:?}, partial {partial}"))
        },
    )?;
    let r = d.keys_present(&new, &acked);
    d.check(
        &format!(
            "all {} writes acknowledged by every replica are on {new}",
            acked.len()
        ),
        r,
    )?;
    d.rejoins_without_writes(DR, &old, &new, sampler, "standalone mode")?;
    Ok(new)
}

/// After the kill: the operator labels another pod primary, which takes a write within the
/// stated time, says why (FailingOver) and records the Failover. Returns the new primary.
fn operator_fails_over(d: &mut Drill, old: &str, killed: Instant) -> Result<String, String> {
    let (new, _) = wait(
        "the operator to label a new primary",
        Duration::from_secs(60),
        || d.labelled_primary(DR).filter(|p| p != old),
    )?;
    d.wait_writable(
        "the new primary to accept a write",
        &new,
        ["drill:after-standalone-failover", "yes"],
        Duration::from_secs(30),
    )?;
    let writable = killed.elapsed();
    d.time(
        "standalone mode: primary killed -> first write accepted through the -leader endpoint",
        writable,
    );
    // The stated time (docs/failover.md): primaryUnavailableSeconds, plus detection (the probe,
    // one-second condition clock) and the promotion (seconds).
    let bound = Duration::from_secs(DR_FAILOVER_AFTER_S + 10);
    d.check(
        &format!(
            "the new primary accepts writes {:.1} s after the kill (stated: within primaryUnavailableSeconds + 10 s = {:.0} s)",
            writable.as_secs_f64(),
            bound.as_secs_f64()
        ),
        within(writable, bound),
    )?;
    // The Event is published right after the topology that promoted the new primary.
    let failing = wait("the FailingOver Event", Duration::from_secs(10), || {
        d.event(DR, EventReason::FailingOver)
    })
    .ok()
    .map(|(e, _)| e);
    d.check(
        &format!(
            "Warning event FailingOver: \"{}\"",
            failing.as_ref().map(|e| e.1.as_str()).unwrap_or("")
        ),
        match &failing {
            Some((t, note)) if t == "Warning" && note.contains("not running") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )?;
    let r = wait(
        "status and the Failover event",
        Duration::from_secs(20),
        || {
            (d.current_primary(DR).as_deref() == Some(new.as_str())
                && d.event(DR, EventReason::Failover)
                    .is_some_and(|e| e.1.contains(&format!("{old} -> {new}"))))
            .then_some(())
        },
    );
    d.check(
        &format!("status.currentPrimary and label moved to {new}; Event Failover {old} -> {new}"),
        r.map(|_| ()),
    )?;
    Ok(new)
}
