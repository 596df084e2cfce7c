//! The kube-rs controller: watches `RedisCluster`s, the objects they own and their pods, and calls
//! [`crate::reconcile::reconcile`] with the real [`KubePlatform`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use redis_cluster_api::RedisCluster;
use redis_cluster_api::labels as l;
use redis_topology::Environment;

use crate::metrics::{ClusterLabels, Metrics};
use crate::objects::Settings;
use crate::platform::kube::KubePlatform;
use crate::{Error, reconcile};

pub struct Context {
    pub platform: KubePlatform,
    pub settings: Settings,
    pub env: Environment,
    pub metrics: Arc<Metrics>,
}

async fn reconcile_one(rc: Arc<RedisCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let now = Time(Timestamp::now());
    let result = reconcile::reconcile(&rc, &ctx.platform, &ctx.settings, &ctx.env, now).await;
    ctx.metrics
        .observe(started.elapsed(), result.as_ref().err());
    let outcome = result?;
    let labels = ClusterLabels {
        cluster: rc.name_any(),
        namespace: rc.namespace().unwrap_or_default(),
    };
    if outcome.promoted {
        ctx.metrics.promotions.get_or_create(&labels).inc();
    }
    ctx.metrics
        .set_former_source(&labels, outcome.former_source_writable);
    tracing::debug!(cluster = %rc.name_any(), ?outcome, "reconciled");
    Ok(Action::requeue(outcome.requeue_after))
}

fn error_policy(rc: Arc<RedisCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %rc.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// Run the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (clusters, statefulsets, services, pods) = match &namespace {
        Some(ns) => (
            Api::<RedisCluster>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<Pod>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client),
        ),
    };
    let managed =
        watcher::Config::default().labels(&format!("{}={}", l::APP_MANAGED_BY, l::MANAGER));
    // Pods belong to the StatefulSet, not to the RedisCluster: map them by label.
    let pods_config = watcher::Config::default().labels(l::CLUSTER);
    ctx.metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    Controller::new(clusters, watcher::Config::default().any_semantic())
        .owns(statefulsets, managed.clone())
        .owns(services, managed)
        .watches(pods, pods_config, |pod| {
            let cluster = pod.labels().get(l::CLUSTER)?.clone();
            Some(ObjectRef::new(&cluster).within(&pod.namespace()?))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile_one, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}
