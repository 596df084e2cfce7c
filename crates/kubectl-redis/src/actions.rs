//! What `promote` and `demote` may do, and how far they got: pure decisions on the RedisCluster
//! as the API returns it, so every refusal and every progress message is a unit test.

use redis_cluster_api::RedisCluster;
use redis_cluster_api::cluster::conditions as cond;
use redis_topology::plan::PROMOTE_POD_ANNOTATION;
use serde_json::{Value, json};

use crate::view::{OperatorView, condition, promote_requested, replica_mode_state};

/// The merge patch `promote` sends: the spec's own (`replicaMode.promote: true`), plus the
/// annotation naming the pod when the user chose one.
pub fn promote_patch(pod: Option<&str>) -> Value {
    let mut patch = json!({"spec": {"replicaMode": {"promote": true}}});
    if let Some(pod) = pod {
        patch["metadata"] = json!({"annotations": {PROMOTE_POD_ANNOTATION: pod}});
    }
    patch
}

/// The merge patch `demote` sends: the spec's drill return path (`replicaMode.promote: false`).
pub fn demote_patch() -> Value {
    json!({"spec": {"replicaMode": {"promote": false}}})
}

fn name(c: &RedisCluster) -> String {
    c.metadata.name.clone().unwrap_or_default()
}

fn operator_check(op: &OperatorView, what: &str) -> Result<(), String> {
    if op.state == "not running" {
        return Err(format!(
            "the operator is not running, so nothing would {what}: {}",
            op.message
        ));
    }
    Ok(())
}

/// Whether `promote` may patch: the cluster replicates a source, no promotion or return is under
/// way, the operator runs, and the chosen pod (if any) is one of the cluster's.
pub fn check_promote(
    c: &RedisCluster,
    op: &OperatorView,
    pod: Option<&str>,
    pods: &[String],
) -> Result<(), String> {
    let n = name(c);
    match replica_mode_state(c) {
        "off" => {
            return Err(format!(
                "{n} is not in replica mode (spec.replicaMode.enabled is not true): it is its own \
                 primary already, there is nothing to promote"
            ));
        }
        "promoted" => {
            return Err(format!(
                "{n} is already promoted ({})",
                condition(c, cond::REPLICA_MODE)
                    .map(|c| c.message.as_str())
                    .unwrap_or("ReplicaMode=False/Promoted")
            ));
        }
        "promoting" => {
            return Err(format!(
                "a promotion of {n} is already in progress (spec.replicaMode.promote is true); \
                 follow it with `kubectl redis status {n}`"
            ));
        }
        "demoting" => {
            return Err(format!(
                "{n} is returning to replica mode (ReplicaMode reason Demoting); wait until \
                 `kubectl redis status {n}` shows it replicating, then promote"
            ));
        }
        _ => {}
    }
    if let Some(p) = pod
        && !pods.iter().any(|x| x == p)
    {
        return Err(format!(
            "{p} is not a pod of {n} (its pods: {})",
            if pods.is_empty() {
                "none".to_string()
            } else {
                pods.join(", ")
            }
        ));
    }
    operator_check(op, "promote it")
}

/// Whether `demote` may patch: the cluster was promoted (or is being promoted) out of replica
/// mode and the operator runs.
pub fn check_demote(c: &RedisCluster, op: &OperatorView) -> Result<(), String> {
    let n = name(c);
    match replica_mode_state(c) {
        "off" => Err(format!(
            "{n} is not a replica cluster (spec.replicaMode.enabled is not true): `demote` returns \
             a promoted replica cluster to replicating its source; to make a standalone cluster \
             replicate another one, set spec.replicaMode (docs/install.md)"
        )),
        "replicating" => Err(format!(
            "{n} is not promoted: it already replicates its source"
        )),
        "demoting" => Err(format!(
            "{n} is already returning to replica mode; follow it with `kubectl redis status {n}`"
        )),
        _ => operator_check(op, "demote it"),
    }
}

/// How far an action got.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// Still going; the message says what the operator reports.
    Pending(String),
    /// Done; the message says what holds now.
    Done(String),
    /// Cannot finish without the user: the message says why and what to do.
    Stuck(String),
}

/// The generation the operator has acted on.
fn observed(c: &RedisCluster) -> i64 {
    c.status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .unwrap_or(0)
}

/// A promotion is done when the operator saw the patched generation, `ReplicaMode` is
/// `False/Promoted` (the leader confirmed it is primary) and `currentPrimary` names it.
pub fn promotion_progress(c: &RedisCluster, generation: i64) -> Progress {
    let n = name(c);
    if observed(c) < generation {
        return Progress::Pending(format!(
            "waiting for the operator to see the change (generation {generation})"
        ));
    }
    if let Some(cv) = condition(c, cond::CONFIGURATION_VALID)
        && cv.status == "False"
    {
        return Progress::Stuck(format!("{}: {}", cv.reason, cv.message));
    }
    if let Some(t) = condition(c, cond::PROMOTION_TARGET)
        && t.status == "False"
    {
        return Progress::Stuck(format!(
            "{}: {} (choose a pod with `kubectl redis promote {n} --pod <pod>` once this one is \
             done, or set the annotation {PROMOTE_POD_ANNOTATION})",
            t.reason, t.message
        ));
    }
    let rm = condition(c, cond::REPLICA_MODE);
    let primary = c.status.as_ref().and_then(|s| s.current_primary.clone());
    match (rm, primary) {
        (Some(rm), Some(p)) if rm.reason == cond::REASON_PROMOTED => Progress::Done(format!(
            "{n} is promoted: {p} is primary and accepts writes ({})",
            rm.message
        )),
        _ => Progress::Pending(
            condition(c, cond::PROMOTION_TARGET)
                .map(|t| format!("{}: {}", t.reason, t.message))
                .or_else(|| rm.map(|rm| format!("{}: {}", rm.reason, rm.message)))
                .unwrap_or_else(|| "waiting for the operator".into()),
        ),
    }
}

/// A return to replica mode is done when the operator saw the patched generation, `ReplicaMode`
/// is `True/Enabled` and the source link is up.
pub fn demotion_progress(c: &RedisCluster, generation: i64) -> Progress {
    let n = name(c);
    if observed(c) < generation {
        return Progress::Pending(format!(
            "waiting for the operator to see the change (generation {generation})"
        ));
    }
    if promote_requested(c) {
        return Progress::Stuck(format!(
            "spec.replicaMode.promote is true again: someone promoted {n} meanwhile"
        ));
    }
    let rm = condition(c, cond::REPLICA_MODE);
    let link = condition(c, cond::SOURCE_LINK_UP);
    match (rm, link) {
        (Some(rm), Some(l)) if rm.reason == cond::REASON_ENABLED && l.status == "True" => {
            Progress::Done(format!("{n} replicates its source again ({})", rm.message))
        }
        (_, Some(l)) if l.reason == cond::REASON_UNRELATED_HISTORY => {
            Progress::Stuck(format!("{}: {}", l.reason, l.message))
        }
        (rm, l) => Progress::Pending(
            l.filter(|l| l.status != "True")
                .map(|l| format!("{}: {}", l.reason, l.message))
                .or_else(|| rm.map(|rm| format!("{}: {}", rm.reason, rm.message)))
                .unwrap_or_else(|| "waiting for the operator".into()),
        ),
    }
}

/// The patch that demotes `c`, the primary side of a planned switchover (docs/switchover.md):
/// `promote: false` on a promoted cluster, `enabled: true` on a standalone one whose spec
/// already names the other cluster as its (unused) `replicaMode.source`.
pub fn switchover_demote_patch(c: &RedisCluster) -> Value {
    match replica_mode_state(c) {
        "promoted" => json!({"spec": {"replicaMode": {"promote": false}}}),
        _ => json!({"spec": {"replicaMode": {"enabled": true, "promote": false}}}),
    }
}

/// The patch that undoes [`switchover_demote_patch`] before the other side is promoted: `c`
/// primary again.
pub fn switchover_abort_patch(c: &RedisCluster) -> Value {
    match replica_mode_state(c) {
        "promoted" => json!({"spec": {"replicaMode": {"promote": true}}}),
        _ => json!({"spec": {"replicaMode": {"enabled": false}}}),
    }
}

/// The patch that promotes the other side with the token.
pub fn switchover_promote_patch(token: &str) -> Value {
    json!({"spec": {"replicaMode": {"promote": true, "promotionToken": token}}})
}

/// Whether `switchover` may start: `from` is a primary (its own, or promoted) whose spec names
/// the cluster to move to as its source, `to` replicates with its link up, no promotion or
/// return is under way, and both operators run.
pub fn check_switchover(
    from: &RedisCluster,
    to: &RedisCluster,
    from_op: &OperatorView,
    to_op: &OperatorView,
) -> Result<(), String> {
    let (f, t) = (name(from), name(to));
    match replica_mode_state(from) {
        "replicating" => {
            return Err(format!(
                "{f} is not a primary: it replicates its source. Run the switchover from the \
                 cluster that is primary (`kubectl redis switchover <primary> --to {f}`)"
            ));
        }
        "promoting" | "demoting" => {
            return Err(format!(
                "{f} is being promoted or returned to replica mode; wait until `kubectl redis \
                 status {f}` shows it settled"
            ));
        }
        _ => {}
    }
    if from
        .status
        .as_ref()
        .is_some_and(|s| s.sentinels_failing_over == Some(true))
    {
        return Err(format!(
            "{f}'s Sentinels are failing its primary over; run the switchover once they are done              (`kubectl redis status {f}` shows a settled primary)"
        ));
    }
    let has_source = from
        .spec
        .replica_mode
        .as_ref()
        .is_some_and(|rm| rm.source.is_some());
    if !has_source {
        return Err(format!(
            "{f} has no spec.replicaMode.source: set it to {t}'s address (its -leader Service, or \
             the address {t} is reachable at from {f}'s region) with enabled: false (kept unused \
             until the switchover), then run this again"
        ));
    }
    match replica_mode_state(to) {
        "replicating" => {}
        "off" | "promoted" => {
            return Err(format!(
                "{t} is not a replica: a switchover moves the primary role to a cluster that \
                 replicates {f}"
            ));
        }
        _ => {
            return Err(format!(
                "{t} is being promoted or returned to replica mode; wait until it replicates"
            ));
        }
    }
    if let Some(l) = condition(to, cond::SOURCE_LINK_UP)
        && l.status != "True"
    {
        return Err(format!(
            "{t}'s link to its source is not up ({}: {}): a planned switchover would wait for a \
             token {t} cannot reach. If {f}'s region is lost, this is a disaster promotion: \
             `kubectl redis promote {t}`",
            l.reason, l.message
        ));
    }
    operator_check(from_op, &format!("demote {f}"))?;
    operator_check(to_op, &format!("promote {t}"))
}

/// The demotion is done when the operator saw the patched generation and published the token.
pub fn demotion_token_progress(c: &RedisCluster, generation: i64) -> Progress {
    if observed(c) < generation {
        return Progress::Pending(format!(
            "waiting for the operator to see the change (generation {generation})"
        ));
    }
    if let Some(l) = condition(c, cond::SOURCE_LINK_UP)
        && l.reason == cond::REASON_UNRELATED_HISTORY
    {
        return Progress::Stuck(format!(
            "{}: {} (the source is not a replica of this cluster: its source.host leads elsewhere)",
            l.reason, l.message
        ));
    }
    match c.status.as_ref().and_then(|s| s.demotion_token.clone()) {
        Some(token) => Progress::Done(token),
        None => Progress::Pending(
            condition(c, cond::SOURCE_LINK_UP)
                .filter(|l| l.status != "True")
                .map(|l| {
                    format!(
                        "waiting for the primary to stop and publish its token ({})",
                        l.message
                    )
                })
                .unwrap_or_else(|| "waiting for the primary to stop and publish its token".into()),
        ),
    }
}

/// The promotion with the token: [`promotion_progress`], and stuck when the operator refuses the
/// token (`Switchover=False`).
pub fn token_promotion_progress(c: &RedisCluster, generation: i64) -> Progress {
    if observed(c) >= generation
        && let Some(s) = condition(c, cond::SWITCHOVER)
        && s.status == "False"
    {
        return Progress::Stuck(format!("{}: {}", s.reason, s.message));
    }
    match promotion_progress(c, generation) {
        Progress::Pending(_) if observed(c) >= generation => Progress::Pending(
            condition(c, cond::SWITCHOVER)
                .map(|s| format!("{}: {}", s.reason, s.message))
                .unwrap_or_else(|| "waiting for the operator".into()),
        ),
        other => other,
    }
}

/// The demoted side follows the promoted one: `ReplicaMode=True/Enabled` and its link up.
pub fn follows_progress(c: &RedisCluster) -> Progress {
    let n = name(c);
    let rm = condition(c, cond::REPLICA_MODE);
    let link = condition(c, cond::SOURCE_LINK_UP);
    match (rm, link) {
        (Some(rm), Some(l)) if rm.reason == cond::REASON_ENABLED && l.status == "True" => {
            Progress::Done(format!("{n} replicates again ({})", rm.message))
        }
        (_, Some(l)) if l.reason == cond::REASON_UNRELATED_HISTORY => {
            Progress::Stuck(format!("{}: {}", l.reason, l.message))
        }
        (_, l) => Progress::Pending(
            l.map(|l| format!("{}: {}", l.reason, l.message))
                .unwrap_or_else(|| "waiting for the operator".into()),
        ),
    }
}
