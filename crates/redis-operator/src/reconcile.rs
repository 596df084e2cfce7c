//! The reconcile pipeline for one `RedisCluster`:
//! read -> validate (pure) -> build (pure) -> apply -> observe -> plan (pure) -> publish -> status.
//!
//! A spec that cannot be acted on (conflicting fields, a name the derived objects cannot carry,
//! a port out of range) stops after validate. A missing Secret does not: only the apply of the
//! objects that name it waits, and observation, status and failover go on with what the pods
//! have mounted.
//!
//! Everything that decides is in `objects`, `config` and `redis_topology`; this file only sequences I/O
//! through the [`Platform`] seam, so the same code drives a real cluster and the drill.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use redis_cluster_api::conditions as cond;
use redis_cluster_api::labels as l;
use redis_cluster_api::topology::{ACCEPT_HISTORY_ANNOTATION, DesiredTopology};
use redis_cluster_api::{RedisCluster, RedisClusterStatus};
use redis_topology::conditions::{self, Desired, Status};
use redis_topology::plan::{ClusterView, PROMOTE_POD_ANNOTATION};
use redis_topology::validate::{self, Problem};
use redis_topology::{
    Environment, EventReason, EventType, Extra, FormerSource, PlannedEvent, PodView,
};

use crate::Error;
use crate::objects::{self, Settings};
use crate::platform::Platform;

/// What one reconcile did, for the controller's requeue decision, metrics and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub requeue_after: Duration,
    /// Pods whose topology annotation was written.
    pub published: Vec<String>,
    pub status_written: bool,
    /// The leader was confirmed primary in this reconcile after a promotion.
    pub promoted: bool,
    /// Something cannot be used (ConfigurationValid=False): a spec that cannot be acted on
    /// (nothing else happened), a missing Secret (the objects wait; observation, status and
    /// failover went on), or a bad annotation.
    pub invalid: bool,
    /// After a promotion: whether the former source accepts writes (None: not probed or it did
    /// not answer). The controller exports it as `redis_operator_former_source_writable`.
    pub former_source_writable: Option<bool>,
}

/// How long to wait before looking again.
pub const REQUEUE_BUSY: Duration = Duration::from_secs(1);
/// Steady state: a safety net only. Changes reach the planner as they happen: the watches of
/// the RedisCluster, its objects and its pods, and one long poll per instance manager that
/// answers when its report changes (`platform::report::Watches`; a Sentinel failover shows
/// there too, in the pods' roles and elected primary). docs/operator.md lists the loops.
pub const REQUEUE_STEADY: Duration = Duration::from_secs(60);
/// After a promotion, while the former source is watched: its answers come from a background
/// probe that only a reconcile asks again (`probe::FormerSources`).
pub const REQUEUE_FORMER_SOURCE: Duration = crate::probe::REFRESH;
/// An invalid spec waits for a change (or for the missing Secret to appear).
pub const REQUEUE_INVALID: Duration = Duration::from_secs(30);

pub async fn reconcile<P: Platform>(
    rc: &RedisCluster,
    platform: &P,
    settings: &Settings,
    env: &Environment,
    now: Time,
) -> Result<Outcome, Error> {
    let name = rc.name_any();
    let namespace = rc
        .namespace()
        .ok_or_else(|| Error::Unnamespaced(name.clone()))?;
    // The stored status, with the pods' data positions as fresh as this operator's last look
    // (`platform::Readings`: the status is not rewritten for offsets alone).
    let readings_key = format!(
        "{namespace}/{name}/{}",
        rc.metadata.uid.as_deref().unwrap_or_default()
    );
    let stored = rc.status.clone().unwrap_or_default();
    let mut previous = stored.clone();
    platform.readings().overlay(&readings_key, &mut previous);

    // validate: what the schema cannot check. A spec that cannot be acted on stops here; a
    // missing Secret does not: the pods keep the copy they have mounted, so observation,
    // status and failover go on, and only the objects that need the Secret wait.
    let mut secrets = BTreeMap::new();
    for (secret, keys) in validate::referenced_secrets(&rc.spec) {
        let state = platform.secret_state(&namespace, &secret, &keys).await?;
        secrets.insert(secret, state);
    }
    let (secret_problems, mut spec_problems): (Vec<Problem>, Vec<Problem>) =
        validate::problems(&namespace, &rc.spec, &secrets)
            .into_iter()
            .partition(|p| {
                matches!(
                    p.reason,
                    EventReason::SecretMissing | EventReason::SecretKeyMissing
                )
            });
    spec_problems.splice(0..0, validate::name_problems(&name, &rc.spec));
    if !spec_problems.is_empty() {
        let mut all = spec_problems;
        all.extend(secret_problems);
        return invalid(rc, platform, &previous, &all, now).await;
    }

    // build + apply the owned objects (they name the Secrets: they wait for them).
    if secret_problems.is_empty() {
        let owned = objects::build(rc, settings);
        platform.apply_owned(&owned).await?;
    }

    // observe: pods, their annotations, their instance managers' reports (concurrently).
    let pods = platform.list_pods(&namespace, &name).await?;
    let reports = join_all(pods.iter().map(|p| platform.fetch_report(p))).await;
    let mut views = BTreeMap::new();
    for (pod, report) in pods.iter().zip(reports) {
        let published = pod
            .annotations
            .get(l::TOPOLOGY_ANNOTATION)
            .and_then(|a| DesiredTopology::parse(a).ok())
            .filter(|t| t.cluster == name);
        views.insert(
            pod.name.clone(),
            PodView {
                address: pod.address.clone(),
                published,
                report,
                problem: pod.problem.clone(),
                redis_running: pod.redis_running,
                terminating: pod.terminating(),
            },
        );
    }
    let extra = Extra {
        accept_history: annotation(rc, ACCEPT_HISTORY_ANNOTATION),
        promote_pod: annotation(rc, PROMOTE_POD_ANNOTATION),
        former_source: former_source(rc, platform, &namespace, &previous).await,
    };

    // plan.
    let view = ClusterView {
        name: &name,
        namespace: &namespace,
        uid: rc.metadata.uid.as_deref(),
        generation: rc.metadata.generation,
        spec: &rc.spec,
        previous: Some(&previous),
        pods: &views,
        env,
        now: now.clone(),
    };
    let mut plan = redis_topology::plan_with(&view, &extra);
    platform.readings().keep(&readings_key, &plan.status);

    // publish in the planner's order: a pod being fenced before the pod promoted in its place,
    // so an operator dying between the two writes never leaves two pods told to be primary.
    let mut published = Vec::new();
    for pod_name in &plan.order {
        let pod = pods
            .iter()
            .find(|p| &p.name == pod_name)
            .expect("planned pods exist");
        let mut labels = BTreeMap::new();
        for (key, value) in [
            (l::ROLE, plan.role_labels[pod_name]),
            (l::INSTANCE, pod_name.as_str()),
        ] {
            if pod.labels.get(key).map(String::as_str) != Some(value) {
                labels.insert(key.to_string(), value.to_string());
            }
        }
        let mut annotations = BTreeMap::new();
        if let Some(t) = plan.publish.get(pod_name) {
            annotations.insert(l::TOPOLOGY_ANNOTATION.to_string(), t.to_annotation());
            published.push(pod_name.clone());
        }
        if !labels.is_empty() || !annotations.is_empty() {
            platform
                .patch_pod(&namespace, pod_name, &labels, &annotations)
                .await?;
        }
    }

    // Under Sentinel, a primary that came back without its data (or restarted while a replica
    // holds more of its former history) is fenced: the Sentinels never replace a primary that
    // answers, so they are asked to.
    if let Some(master) = plan.sentinel_failover.clone() {
        sentinel_failover(rc, platform, env, &namespace, &master, &mut plan).await;
    }

    // status: ConfigurationValid is ours to set here; the planner kept the rest.
    let mut problems = secret_problems;
    let waiting_for_secrets = !problems.is_empty();
    problems.extend(plan.problems.iter().cloned());
    let config = if problems.is_empty() {
        Desired {
            type_: cond::CONFIGURATION_VALID,
            status: Status::True,
            reason: cond::REASON_VALID,
            message: "Spec and referenced Secrets are usable".into(),
        }
    } else {
        let mut message = problems
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if waiting_for_secrets {
            message.push_str(SECRET_WAIT);
        }
        Desired {
            type_: cond::CONFIGURATION_VALID,
            status: Status::False,
            reason: problems[0].reason.as_str(),
            message,
        }
    };
    let was = conditions::find(&previous.conditions, cond::CONFIGURATION_VALID);
    match config.status {
        Status::True if was.is_some_and(|c| c.status == Status::False.as_str()) => {
            plan.events.push(PlannedEvent {
                type_: EventType::Normal,
                reason: EventReason::ConfigurationValid,
                note: "Spec and referenced Secrets are usable again".into(),
            });
        }
        Status::False if was.is_none_or(|c| c.message != config.message) => {
            plan.events.push(PlannedEvent {
                type_: EventType::Warning,
                reason: problems[0].reason,
                note: config.message.clone(),
            });
        }
        _ => {}
    }
    set_condition(
        &mut plan.status,
        &previous,
        config,
        rc.metadata.generation,
        &now,
    );
    // Offsets, lag and key counts move with every write: they alone never cause a write.
    let status_written = plan.status.without_readings() != stored.without_readings();
    if status_written {
        platform.patch_status(rc, &plan.status).await?;
    }
    let promoted = plan
        .events
        .iter()
        .any(|e| e.reason == EventReason::Promoted);
    for event in &plan.events {
        // An Event that fails to publish must not fail the reconcile that already acted.
        if let Err(e) = platform.publish_event(rc, event).await {
            tracing::warn!(error = %e, reason = event.reason.as_str(), "could not publish event");
        }
    }
    Ok(Outcome {
        // Just promoted: the next pass builds the objects from the Promoted status (a
        // sentinel-mode cluster's Sentinels start only then).
        requeue_after: if plan.in_progress || promoted {
            REQUEUE_BUSY
        } else if waiting_for_secrets && pods.is_empty() {
            // Nothing to observe, and nothing can be created before the Secret exists.
            REQUEUE_INVALID
        } else if extra.former_source.is_some() {
            REQUEUE_FORMER_SOURCE
        } else {
            REQUEUE_STEADY
        },
        published,
        status_written,
        promoted,
        invalid: !problems.is_empty(),
        former_source_writable: plan.former_source_writable,
    })
}

/// What `ConfigurationValid` adds to a missing Secret's message: what goes on, what waits.
pub const SECRET_WAIT: &str = "; meanwhile the pods keep the copy they have mounted: observation, status and failover go on, and changes to the cluster's objects (StatefulSet, Services, ConfigMap) wait for it";

/// A non-empty annotation of the RedisCluster.
fn annotation(rc: &RedisCluster, key: &str) -> Option<String> {
    rc.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// After a promotion (the status says so), whether the former source still accepts writes.
async fn former_source<P: Platform>(
    rc: &RedisCluster,
    platform: &P,
    namespace: &str,
    previous: &RedisClusterStatus,
) -> Option<FormerSource> {
    let rm = rc
        .spec
        .replica_mode
        .as_ref()
        .filter(|rm| rm.enabled && rm.promote)?;
    let source = rm.source.as_ref()?;
    let promoted = conditions::find(&previous.conditions, cond::REPLICA_MODE)
        .is_some_and(|c| c.reason == cond::REASON_PROMOTED);
    if !promoted {
        return None;
    }
    let port = u16::try_from(source.port).ok()?;
    let password = match source.auth_secret_name.as_deref().filter(|n| !n.is_empty()) {
        Some(secret) => match platform
            .secret_value(namespace, secret, redis_cluster_api::names::PASSWORD_KEY)
            .await
        {
            Ok(pw) => pw,
            Err(e) => return Some(FormerSource::Unreachable(e.to_string())),
        },
        None => None,
    };
    platform
        .probe_former_source(&source.host, port, password, rc.spec.tls_secret.is_some())
        .await
}

/// Ask the cluster's Sentinels to fail over `master`; say so in an Event when the request is
/// new (the planner asks at every pass while the condition lasts).
async fn sentinel_failover<P: Platform>(
    rc: &RedisCluster,
    platform: &P,
    env: &Environment,
    namespace: &str,
    master: &str,
    plan: &mut redis_topology::Plan,
) {
    let name = rc.name_any();
    let addresses = env.sentinel_addresses.clone().unwrap_or_else(|| {
        (0..rc.spec.sentinel_settings().replicas.max(0) as u32)
            .map(|i| {
                format!(
                    "{}:{}",
                    redis_cluster_api::names::sentinel_fqdn(&name, namespace, i),
                    redis_cluster_api::names::SENTINEL_PORT
                )
            })
            .collect()
    });
    let password = match &rc.spec.auth_secret {
        Some(s) => platform
            .secret_value(namespace, &s.name, redis_cluster_api::names::PASSWORD_KEY)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let result = platform
        .request_sentinel_failover(
            addresses,
            master.to_string(),
            password,
            plan.sentinel_failover_from.clone(),
        )
        .await;
    let first = plan.events.iter().any(|e| {
        matches!(
            e.reason,
            EventReason::PrimaryDataLost | EventReason::PrimaryRestarted
        )
    });
    let why = plan
        .sentinel_failover_why
        .clone()
        .unwrap_or_else(|| "its primary came back without its data".into());
    match result {
        Ok(sentinel) => {
            tracing::info!(cluster = %name, %sentinel, "asked the Sentinels to fail over");
            if first {
                plan.events.push(PlannedEvent {
                    type_: EventType::Warning,
                    reason: EventReason::SentinelFailover,
                    note: format!(
                        "Asked the Sentinels to fail over {master} (SENTINEL FAILOVER, accepted by {sentinel}): {why}"
                    ),
                });
            }
        }
        Err(why) => {
            tracing::warn!(cluster = %name, %why, "the Sentinels refused to fail over");
            if first {
                plan.events.push(PlannedEvent {
                    type_: EventType::Warning,
                    reason: EventReason::SentinelFailover,
                    note: format!(
                        "Could not ask the Sentinels to fail over {master} ({why}); retrying at every reconcile"
                    ),
                });
            }
        }
    }
}

/// The spec cannot be acted on: say why in a condition (and an Event when it changes), change
/// nothing else, and look again later.
async fn invalid<P: Platform>(
    rc: &RedisCluster,
    platform: &P,
    previous: &RedisClusterStatus,
    problems: &[Problem],
    now: Time,
) -> Result<Outcome, Error> {
    let message = problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let mut status = previous.clone();
    status.observed_generation = rc.metadata.generation;
    let desired = Desired {
        type_: cond::CONFIGURATION_VALID,
        status: Status::False,
        reason: problems[0].reason.as_str(),
        message: message.clone(),
    };
    set_condition(&mut status, previous, desired, rc.metadata.generation, &now);
    let changed = status != *previous;
    if changed {
        platform.patch_status(rc, &status).await?;
        let was = conditions::find(&previous.conditions, cond::CONFIGURATION_VALID);
        if was.is_none_or(|c| c.message != message) {
            let event = PlannedEvent {
                type_: EventType::Warning,
                reason: problems[0].reason,
                note: message,
            };
            if let Err(e) = platform.publish_event(rc, &event).await {
                tracing::warn!(error = %e, "could not publish event");
            }
        }
    }
    Ok(Outcome {
        requeue_after: REQUEUE_INVALID,
        published: vec![],
        status_written: changed,
        promoted: false,
        invalid: true,
        former_source_writable: None,
    })
}

fn set_condition(
    status: &mut RedisClusterStatus,
    previous: &RedisClusterStatus,
    desired: Desired,
    generation: Option<i64>,
    now: &Time,
) {
    let type_ = desired.type_;
    let merged = conditions::merge(&previous.conditions, vec![desired], generation, now);
    status.conditions.retain(|c| c.type_ != type_);
    status.conditions.extend(merged);
    status.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}
