//! The reconcile pipeline for one `RedisCluster`:
//! read -> validate (pure) -> build (pure) -> apply -> observe -> plan (pure) -> publish -> status.
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
use redis_cluster_api::topology::DesiredTopology;
use redis_cluster_api::{RedisCluster, RedisClusterStatus};
use redis_topology::conditions::{self, Desired, Status};
use redis_topology::plan::ClusterView;
use redis_topology::validate::{self, Problem};
use redis_topology::{Environment, EventReason, EventType, PlannedEvent, PodView};

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
    /// The spec cannot be acted on (ConfigurationValid=False).
    pub invalid: bool,
}

/// How long to wait before looking again.
pub const REQUEUE_BUSY: Duration = Duration::from_secs(1);
/// Steady state: refresh the instance reports (link state, lag) this often.
pub const REQUEUE_STEADY: Duration = Duration::from_secs(5);
/// Steady state of a cluster whose Sentinels may elect a new primary at any moment.
pub const REQUEUE_SENTINEL: Duration = Duration::from_secs(2);
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
    let previous = rc.status.clone().unwrap_or_default();

    // validate: what the schema cannot check.
    let mut secrets = BTreeMap::new();
    for (secret, key) in validate::referenced_secrets(&rc.spec) {
        let state = platform.secret_state(&namespace, &secret, key).await?;
        secrets.insert(secret, state);
    }
    let problems = validate::problems(&namespace, &rc.spec, &secrets);
    if !problems.is_empty() {
        return invalid(rc, platform, &previous, &problems, now).await;
    }

    // build + apply the owned objects.
    let owned = objects::build(rc, settings);
    platform.apply_owned(&owned).await?;

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
                terminating: false,
            },
        );
    }

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
    let mut plan = redis_topology::plan(&view);

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

    // status: ConfigurationValid is ours to set here; the planner kept the rest.
    let config_ok = Desired {
        type_: cond::CONFIGURATION_VALID,
        status: Status::True,
        reason: cond::REASON_VALID,
        message: "Spec and referenced Secrets are usable".into(),
    };
    set_condition(
        &mut plan.status,
        &previous,
        config_ok,
        rc.metadata.generation,
        &now,
    );
    if let Some(c) = conditions::find(&previous.conditions, cond::CONFIGURATION_VALID)
        && c.status == Status::False.as_str()
    {
        plan.events.push(PlannedEvent {
            type_: EventType::Normal,
            reason: EventReason::ConfigurationValid,
            note: "Spec and referenced Secrets are usable again".into(),
        });
    }
    let status_written = plan.status != previous;
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
        requeue_after: if plan.in_progress {
            REQUEUE_BUSY
        } else if rc.spec.sentinels_active() {
            // A Sentinel failover changes no Kubernetes object the controller watches: look
            // often enough that labels and the -leader Service follow within seconds.
            REQUEUE_SENTINEL
        } else {
            REQUEUE_STEADY
        },
        published,
        status_written,
        promoted,
        invalid: false,
    })
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
