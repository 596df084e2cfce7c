//! The kube-rs controller: watches `RedisCluster`s, the objects they own and their pods, and calls
//! [`crate::reconcile::reconcile`] with the real [`KubePlatform`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{self as kube_controller, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use redis_cluster_api::RedisCluster;
use redis_cluster_api::labels as l;
use redis_topology::Environment;

use crate::metrics::{ClusterLabels, Metrics};
use crate::objects::Settings;
use crate::platform::kube::{CacheWriters, KubePlatform};
use crate::{Error, reconcile};

pub struct Context {
    pub platform: KubePlatform,
    pub settings: Settings,
    pub env: Environment,
    pub metrics: Arc<Metrics>,
}

async fn reconcile_one(rc: Arc<RedisCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    // The first reconciles wait for every cache to be filled (an empty cache would look like
    // objects to create, written again for nothing, and pods that do not exist), but not
    // forever: see `KubePlatform::caches_ready`.
    if !ctx.platform.caches_ready(Duration::from_secs(5)).await {
        tracing::warn!(
            cluster = %rc.name_any(),
            "the watch caches are not filled after 5 s: reading from the API server meanwhile"
        );
    }
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
    if outcome.status_written || !outcome.published.is_empty() {
        tracing::info!(
            cluster = %rc.name_any(),
            published = ?outcome.published,
            status_written = outcome.status_written,
            "reconciled"
        );
    } else {
        tracing::debug!(cluster = %rc.name_any(), ?outcome, "reconciled");
    }
    Ok(Action::requeue(outcome.requeue_after))
}

fn error_policy(rc: Arc<RedisCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %rc.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// A watch stream of `K` kept in `writer`'s cache, its objects passed on for triggering.
fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    reflector(writer, lean(watcher(api, config).default_backoff())).applied_objects()
}

/// The watch events without `managedFields` (often half an object's size): the caches hold
/// every pod and owned object of every cluster, and nothing reads them.
fn lean<K, S>(events: S) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    K: kube::Resource,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    events.modify(|o| {
        o.managed_fields_mut().clear();
    })
}

/// Pass an object on only when `material` of it changed since it last passed (always on
/// deletion): what the operator writes itself (the RedisCluster's status, the pods' role label
/// and topology annotation) is left out of `material`, so its own writes do not trigger another
/// reconcile (issue 16).
fn material_changes<K, S>(
    stream: S,
    material: fn(&K) -> u64,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + Send + 'static,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let mut seen: HashMap<String, u64> = HashMap::new();
    stream.filter_map(move |event| {
        let key = |o: &K| {
            format!(
                "{}/{}",
                o.meta().namespace.as_deref().unwrap_or_default(),
                o.meta().name.as_deref().unwrap_or_default()
            )
        };
        let out = match event {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let hash = material(&o);
                (seen.insert(key(&o), hash) != Some(hash)).then_some(Ok(o))
            }
            Ok(watcher::Event::Delete(o)) => {
                seen.remove(&key(&o));
                Some(Ok(o))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(e) => Some(Err(e)),
        };
        std::future::ready(out)
    })
}

fn hash_of(value: &impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// What of a RedisCluster calls for a reconcile: its spec (generation), its annotations (the
/// promote-pod and accept-history commands), its labels and its deletion. Not its status.
fn cluster_material(rc: &RedisCluster) -> u64 {
    let m = &rc.metadata;
    hash_of(&(
        m.generation,
        &m.annotations,
        &m.labels,
        m.deletion_timestamp.as_ref().map(|t| t.0.to_string()),
        m.uid.as_deref(),
    ))
}

/// What of a pod calls for a reconcile: everything but what the operator writes on it (the
/// `redis.io/role` and `redis.io/instance` labels, the topology annotation) and the
/// resourceVersion/managedFields bookkeeping.
fn pod_material(pod: &Pod) -> u64 {
    let mut meta = pod.metadata.clone();
    if let Some(labels) = meta.labels.as_mut() {
        labels.remove(l::ROLE);
        labels.remove(l::INSTANCE);
    }
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(l::TOPOLOGY_ANNOTATION);
    }
    meta.resource_version = None;
    meta.managed_fields = None;
    hash_of(&serde_json::to_string(&(meta, &pod.status)).unwrap_or_default())
}

/// Run the controller until `shutdown` resolves.
///
/// Every watch fills a cache ([`crate::platform::kube::Caches`]) the reconciler reads instead of
/// the API server, and triggers reconciles: the RedisClusters and their pods when something
/// other than the operator's own writes changed, the owned objects on any change (drift is
/// repaired at once), and `reports` when an instance manager's report changed in a way the
/// planner cares about (`crate::platform::report::Watch`).
///
/// At most `concurrency` reconciles run at once (0: unbounded). Triggers for a cluster that
/// waits its turn are merged into one reconcile, so under a burst (hundreds of clusters
/// created at once) the operator makes fewer requests instead of queueing all of them in the
/// API server's fairness queues, where its own leader-election renewals wait too.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    concurrency: u16,
    ctx: Arc<Context>,
    writers: CacheWriters,
    reports: impl futures::Stream<Item = ObjectRef<RedisCluster>> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let managed =
        || watcher::Config::default().labels(&format!("{}={}", l::APP_MANAGED_BY, l::MANAGER));
    // Pods belong to the StatefulSet, not to the RedisCluster: map them by label.
    let pods_config = watcher::Config::default().labels(l::CLUSTER);
    let (clusters, cluster_writer) = reflector::store();
    let cluster_events = reflector(
        cluster_writer,
        lean(
            watcher(
                api::<RedisCluster>(&client, &namespace),
                watcher::Config::default().any_semantic(),
            )
            .default_backoff(),
        ),
    );
    let pod_events = reflector(
        writers.pods,
        lean(watcher(api::<Pod>(&client, &namespace), pods_config).default_backoff()),
    );
    ctx.metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    Controller::for_stream(material_changes(cluster_events, cluster_material), clusters)
        .with_config(kube_controller::Config::default().concurrency(concurrency))
        .owns_stream(cached(
            api::<StatefulSet>(&client, &namespace),
            managed(),
            writers.statefulsets,
        ))
        .owns_stream(cached(
            api::<Service>(&client, &namespace),
            managed(),
            writers.services,
        ))
        .owns_stream(cached(
            api::<ConfigMap>(&client, &namespace),
            managed(),
            writers.config_maps,
        ))
        .owns_stream(cached(
            api::<ServiceAccount>(&client, &namespace),
            managed(),
            writers.service_accounts,
        ))
        .owns_stream(cached(
            api::<Role>(&client, &namespace),
            managed(),
            writers.roles,
        ))
        .owns_stream(cached(
            api::<RoleBinding>(&client, &namespace),
            managed(),
            writers.role_bindings,
        ))
        .owns_stream(cached(
            api::<PodDisruptionBudget>(&client, &namespace),
            managed(),
            writers.pdbs,
        ))
        .owns_stream(cached(
            api::<NetworkPolicy>(&client, &namespace),
            managed(),
            writers.network_policies,
        ))
        .watches_stream(material_changes(pod_events, pod_material), |pod| {
            let cluster = pod.labels().get(l::CLUSTER)?.clone();
            Some(ObjectRef::new(&cluster).within(&pod.namespace()?))
        })
        .reconcile_on(reports)
        .graceful_shutdown_on(shutdown)
        .run(reconcile_one, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}
