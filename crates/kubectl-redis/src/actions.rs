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
