//! [`Platform`] on a real Kubernetes API server. Thin by design: each method is one request or
//! none; nothing here decides anything.
//!
//! Reads come from the watch caches ([`Caches`], filled by the controller's reflectors), so a
//! converged cluster costs no GET and no LIST per reconcile (issue 16). The one exception is
//! the data pods right after this operator patched some of them: the next read of that
//! cluster's pods is a LIST, because the planner must see the topology it published (the cache
//! may not have the patch yet, and acting on an older published topology would only delay or
//! repeat a step, but nothing is gained by risking it). That LIST names the resourceVersion
//! the last patch returned (`resourceVersionMatch=NotOlderThan`): the API server answers it
//! from its own watch cache once that has the patch, instead of a consistent read from etcd
//! (under hundreds of clusters being created those took the API server's full 60 s timeout
//! and failed, holding every reconcile slot: docs/bench-scale.md). Secrets are still read by
//! name: the operator deliberately has no list/watch on Secrets (docs/install.md).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use redis_cluster_api::report::InstanceReport;
use redis_cluster_api::{RedisCluster, RedisClusterStatus, labels as l, names};
use redis_topology::validate::SecretState;
use redis_topology::{EventType, FormerSource, PlannedEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::report::{ReportClient, Watches};
use super::{Platform, PodInfo, contains, first_difference};
use crate::error::{ObjectId, Step};
use crate::leader::Leadership;
use crate::objects::{Object, Owned, REDIS_CONTAINER};
use crate::{Error, FIELD_MANAGER};

/// The watch caches the reads come from, one per kind the operator owns, and the data pods.
#[derive(Clone)]
pub struct Caches {
    pub service_accounts: Store<ServiceAccount>,
    pub roles: Store<Role>,
    pub role_bindings: Store<RoleBinding>,
    pub config_maps: Store<ConfigMap>,
    pub services: Store<Service>,
    pub pdbs: Store<PodDisruptionBudget>,
    pub network_policies: Store<NetworkPolicy>,
    pub statefulsets: Store<StatefulSet>,
    pub pods: Store<Pod>,
}

/// The writing halves of [`Caches`], for the controller's reflectors.
pub struct CacheWriters {
    pub service_accounts: reflector::store::Writer<ServiceAccount>,
    pub roles: reflector::store::Writer<Role>,
    pub role_bindings: reflector::store::Writer<RoleBinding>,
    pub config_maps: reflector::store::Writer<ConfigMap>,
    pub services: reflector::store::Writer<Service>,
    pub pdbs: reflector::store::Writer<PodDisruptionBudget>,
    pub network_policies: reflector::store::Writer<NetworkPolicy>,
    pub statefulsets: reflector::store::Writer<StatefulSet>,
    pub pods: reflector::store::Writer<Pod>,
}

/// Empty caches and their writers.
pub fn caches() -> (Caches, CacheWriters) {
    let (service_accounts, sa) = reflector::store();
    let (roles, r) = reflector::store();
    let (role_bindings, rb) = reflector::store();
    let (config_maps, cm) = reflector::store();
    let (services, svc) = reflector::store();
    let (pdbs, pdb) = reflector::store();
    let (network_policies, np) = reflector::store();
    let (statefulsets, sts) = reflector::store();
    let (pods, p) = reflector::store();
    (
        Caches {
            service_accounts,
            roles,
            role_bindings,
            config_maps,
            services,
            pdbs,
            network_policies,
            statefulsets,
            pods,
        },
        CacheWriters {
            service_accounts: sa,
            roles: r,
            role_bindings: rb,
            config_maps: cm,
            services: svc,
            pdbs: pdb,
            network_policies: np,
            statefulsets: sts,
            pods: p,
        },
    )
}

pub struct KubePlatform {
    client: Client,
    caches: Caches,
    /// Every cache is filled ([`KubePlatform::caches_ready`]); until then reads are requests.
    cached: AtomicBool,
    /// Pods (namespace, name) this operator patched since their cluster's pods were last listed,
    /// with the order of the patch and the resourceVersion it returned (None: the request
    /// failed, it may still have been applied): the next read of that cluster is a LIST (see the
    /// module's comment).
    patched: Mutex<BTreeMap<PodKey, PatchedAt>>,
    patch_seq: AtomicU64,
    /// Who writes the Events. A Recorder is made per Event (see `publish_event`).
    reporter: Reporter,
    reports: ReportClient,
    watches: Watches,
    /// Every write checks it first: a replica whose renew deadline passed writes nothing.
    leadership: Leadership,
    former_sources: crate::probe::FormerSources,
    readings: super::Readings,
    present_secrets: PresentSecrets,
}

/// How long a Secret seen with every key asked for is taken as still there without reading it
/// again. Only `Present` is remembered: a Secret missing (or missing a key) is read at every
/// reconcile, so creating or fixing it takes effect at once; deleting one is noticed at most
/// this much later (and the 60 s safety-net reconcile is the bound anyway, the operator has no
/// watch on Secrets). This turns the tens of reconciles of a cluster's creation into a few
/// Secret reads (docs/bench-scale.md).
pub const SECRET_PRESENT_FOR: Duration = Duration::from_secs(5);

/// A pod: (namespace, name).
type PodKey = (String, String);
/// A pod patch: its order among this operator's patches, and the resourceVersion it returned.
type PatchedAt = (u64, Option<String>);

/// How long the LIST of a cluster's pods after a pod patch may take.
pub const LIST_PODS_TIMEOUT: Duration = Duration::from_secs(10);

/// The Secrets recently seen `Present`: (namespace, name, keys asked for) -> when.
#[derive(Default)]
pub struct PresentSecrets(Mutex<HashMap<(String, String, String), Instant>>);

impl PresentSecrets {
    fn key(namespace: &str, name: &str, keys: &[&str]) -> (String, String, String) {
        (namespace.into(), name.into(), keys.join(","))
    }

    /// Whether this Secret was seen with these keys less than [`SECRET_PRESENT_FOR`] before `now`.
    pub fn recently_present(
        &self,
        namespace: &str,
        name: &str,
        keys: &[&str],
        now: Instant,
    ) -> bool {
        let seen = self.0.lock().expect("present secrets");
        seen.get(&Self::key(namespace, name, keys))
            .is_some_and(|at| now.saturating_duration_since(*at) < SECRET_PRESENT_FOR)
    }

    /// Note what a read found at `now`: anything but `Present` is forgotten at once.
    pub fn note(
        &self,
        namespace: &str,
        name: &str,
        keys: &[&str],
        state: &SecretState,
        now: Instant,
    ) {
        let mut seen = self.0.lock().expect("present secrets");
        seen.retain(|_, at| now.saturating_duration_since(*at) < SECRET_PRESENT_FOR);
        let key = Self::key(namespace, name, keys);
        if *state == SecretState::Present {
            seen.insert(key, now);
        } else {
            seen.remove(&key);
        }
    }
}

impl KubePlatform {
    pub fn new(client: Client, instance: Option<String>, caches: Caches, watches: Watches) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        KubePlatform {
            reporter,
            client,
            caches,
            cached: AtomicBool::new(false),
            patched: Mutex::default(),
            patch_seq: AtomicU64::new(0),
            reports: ReportClient::default(),
            watches,
            leadership: Leadership::always(),
            former_sources: Default::default(),
            readings: Default::default(),
            present_secrets: Default::default(),
        }
    }

    /// Whether every cache holds its first full list, waiting up to `patience` for it. While it
    /// is false, reads go to the API server (a LIST by name per object, a LIST of pods): a watch that
    /// cannot list (an RBAC rule missing after an upgrade, an API server that does not answer
    /// yet) slows the operator down and says so in its log, it never stops it.
    pub async fn caches_ready(&self, patience: std::time::Duration) -> bool {
        if self.cached.load(Ordering::Relaxed) {
            return true;
        }
        let c = &self.caches;
        // Err when a writer was dropped (no reflector fills it): never ready.
        let all = async {
            tokio::try_join!(
                c.service_accounts.wait_until_ready(),
                c.roles.wait_until_ready(),
                c.role_bindings.wait_until_ready(),
                c.config_maps.wait_until_ready(),
                c.services.wait_until_ready(),
                c.pdbs.wait_until_ready(),
                c.network_policies.wait_until_ready(),
                c.statefulsets.wait_until_ready(),
                c.pods.wait_until_ready(),
            )
            .is_ok()
        };
        let ready = tokio::time::timeout(patience, all).await.unwrap_or(false);
        self.cached.store(ready, Ordering::Relaxed);
        ready
    }

    /// Write only while `leadership` is valid (leader election on).
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.leadership = leadership;
        self
    }

    /// Refuse a write once the leader Lease's renew deadline has passed.
    // The crate's one error type, as every method of the adapter returns it.
    #[allow(clippy::result_large_err)]
    fn may_write(&self, step: Step, object: impl FnOnce() -> ObjectId) -> Result<(), Error> {
        if self.leadership.is_leader() {
            Ok(())
        } else {
            Err(Error::NotLeader {
                step,
                object: object(),
            })
        }
    }

    /// Server-side apply `obj` unless the cached live object already holds every field we set.
    /// An object the cache does not hold is applied (server-side apply creates it).
    async fn apply<K>(&self, obj: &K, cache: &Store<K>) -> Result<bool, Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned
            + 'static,
    {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj.meta().name.clone().unwrap_or_default();
        let id = || ObjectId::new(K::kind(&()), &ns, &name);
        let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
        let mut desired = serde_json::to_value(obj).map_err(Error::serialize(Step::Apply, id()))?;
        desired["apiVersion"] = K::api_version(&()).into();
        desired["kind"] = K::kind(&()).into();
        let live = if self.cached.load(Ordering::Relaxed) {
            cache.get(&ObjectRef::new(&name).within(&ns))
        } else {
            // A LIST by name, not a GET: the operator's role lists and watches what it owns,
            // and needs no `get` once its caches are filled.
            api.list(&kube::api::ListParams::default().fields(&format!("metadata.name={name}")))
                .await
                .map_err(Error::kube(Step::Apply, id()))?
                .items
                .into_iter()
                .next()
                .map(std::sync::Arc::new)
        };
        if let Some(live) = live {
            let mut live =
                serde_json::to_value(&*live).map_err(Error::serialize(Step::Apply, id()))?;
            live["apiVersion"] = desired["apiVersion"].clone();
            live["kind"] = desired["kind"].clone();
            if contains(&live, &desired) {
                return Ok(false);
            }
            tracing::info!(
                object = %id(),
                differs_at = first_difference(&live, &desired).unwrap_or_default(),
                "applying a changed object"
            );
        }
        self.may_write(Step::Apply, id)?;
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await
        .map_err(Error::kube(Step::Apply, id()))?;
        Ok(true)
    }
}

impl Platform for KubePlatform {
    fn readings(&self) -> &super::Readings {
        &self.readings
    }

    async fn secret_state(
        &self,
        namespace: &str,
        name: &str,
        keys: &[&str],
    ) -> Result<SecretState, Error> {
        if self
            .present_secrets
            .recently_present(namespace, name, keys, Instant::now())
        {
            return Ok(SecretState::Present);
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api.get_opt(name).await.map_err(Error::kube(
            Step::ReadSecret,
            ObjectId::new(Secret::kind(&()), namespace, name),
        ))?;
        let state = match secret {
            None => SecretState::Missing,
            Some(s) => SecretState::of_existing(keys, |key| {
                s.data.as_ref().is_some_and(|d| d.contains_key(key))
                    || s.string_data.as_ref().is_some_and(|d| d.contains_key(key))
            }),
        };
        self.present_secrets
            .note(namespace, name, keys, &state, Instant::now());
        Ok(state)
    }

    async fn apply_owned(&self, owned: &Owned) -> Result<usize, Error> {
        let mut written = 0;
        for object in owned.objects() {
            // Typed per kind: the request path comes from the type, and the live object is read
            // back through it, so server defaults it does not know are ignored.
            let changed = match object {
                Object::ServiceAccount(o) => self.apply(o, &self.caches.service_accounts).await?,
                Object::Role(o) => self.apply(o, &self.caches.roles).await?,
                Object::RoleBinding(o) => self.apply(o, &self.caches.role_bindings).await?,
                Object::ConfigMap(o) => self.apply(o, &self.caches.config_maps).await?,
                Object::Service(o) => self.apply(o, &self.caches.services).await?,
                Object::PodDisruptionBudget(o) => self.apply(o, &self.caches.pdbs).await?,
                Object::NetworkPolicy(o) => self.apply(o, &self.caches.network_policies).await?,
                Object::StatefulSet(o) => self.apply(o, &self.caches.statefulsets).await?,
            };
            written += usize::from(changed);
        }
        Ok(written)
    }

    async fn list_pods(&self, namespace: &str, cluster: &str) -> Result<Vec<PodInfo>, Error> {
        let of_cluster = |p: &Pod| {
            p.namespace().as_deref() == Some(namespace)
                && p.labels().get(l::CLUSTER).map(String::as_str) == Some(cluster)
        };
        // After this operator patched one of the cluster's pods: a LIST, not the cache.
        let fresh = {
            let mut patched = self.patched.lock().expect("not poisoned");
            let mine = |(ns, pod): &(String, String)| {
                ns == namespace && l::ordinal_of(cluster, pod).is_some()
            };
            // The latest patch's resourceVersion, when every patch of the cluster returned one.
            let mut latest: Option<(u64, Option<String>)> = None;
            let mut failed = false;
            for (key, (seq, rv)) in patched.iter() {
                if mine(key) {
                    failed |= rv.is_none();
                    if latest.as_ref().is_none_or(|(s, _)| seq > s) {
                        latest = Some((*seq, rv.clone()));
                    }
                }
            }
            patched.retain(|key, _| !mine(key));
            match latest {
                Some((_, rv)) => Some(rv.filter(|_| !failed)),
                None => (!self.cached.load(Ordering::Relaxed)).then_some(None),
            }
        };
        let pods: Vec<Pod> = if let Some(rv) = fresh {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let selector = format!("{}={cluster}", l::CLUSTER);
            let mut params = kube::api::ListParams::default().labels(&selector);
            if let Some(rv) = &rv {
                params = params
                    .at(rv)
                    .matching(kube::api::VersionMatch::NotOlderThan);
            }
            let object = || ObjectId::new(RedisCluster::kind(&()), namespace, cluster);
            // Bounded: a LIST the API server cannot answer must not hold a reconcile slot for
            // its 60 s request timeout.
            tokio::time::timeout(LIST_PODS_TIMEOUT, api.list(&params))
                .await
                .map_err(|_| Error::Timeout {
                    step: Step::ListPods,
                    object: object(),
                    after: LIST_PODS_TIMEOUT,
                })?
                .map_err(Error::kube(Step::ListPods, object()))?
                .items
        } else {
            self.caches
                .pods
                .state()
                .into_iter()
                .filter(|p| of_cluster(p))
                .map(|p| (*p).clone())
                .collect()
        };
        let mut pods: Vec<PodInfo> = pods
            .into_iter()
            .filter(|p| l::ordinal_of(cluster, &p.name_any()).is_some())
            .map(|p| pod_info(cluster, namespace, p))
            .collect();
        // The cache has no order; the LIST's (by name) is what the planner was written against.
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        let endpoints: Vec<String> = pods
            .iter()
            .filter_map(|p| p.report_endpoint.clone())
            .collect();
        self.watches
            .ensure(ObjectRef::new(cluster).within(namespace), &endpoints);
        Ok(pods)
    }

    async fn patch_pod(
        &self,
        namespace: &str,
        pod: &str,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        self.may_write(Step::PatchPod, || {
            ObjectId::new(Pod::kind(&()), namespace, pod)
        })?;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let patch = json!({"metadata": {"labels": labels, "annotations": annotations}});
        // Named, so `managedFields` says who wrote the role labels and the topology.
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        // Marked before the request: a patch that failed may still have been applied.
        let key = (namespace.to_string(), pod.to_string());
        let seq = self.patch_seq.fetch_add(1, Ordering::Relaxed);
        self.patched
            .lock()
            .expect("not poisoned")
            .insert(key.clone(), (seq, None));
        let patched = api
            .patch(pod, &params, &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(
                Step::PatchPod,
                ObjectId::new(Pod::kind(&()), namespace, pod),
            ))?;
        if let Some(entry) = self.patched.lock().expect("not poisoned").get_mut(&key)
            && entry.0 == seq
        {
            entry.1 = patched.resource_version();
        }
        Ok(())
    }

    async fn patch_status(
        &self,
        rc: &RedisCluster,
        status: &RedisClusterStatus,
    ) -> Result<(), Error> {
        let ns = rc.namespace().unwrap_or_default();
        self.may_write(Step::PatchStatus, || {
            ObjectId::new(RedisCluster::kind(&()), &ns, &rc.name_any())
        })?;
        let api: Api<RedisCluster> = Api::namespaced(self.client.clone(), &ns);
        let patch = json!({
            "apiVersion": RedisCluster::api_version(&()),
            "kind": RedisCluster::kind(&()),
            "status": status,
        });
        api.patch_status(
            &rc.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::kube(
            Step::PatchStatus,
            ObjectId::new(RedisCluster::kind(&()), &ns, &rc.name_any()),
        ))?;
        Ok(())
    }

    async fn publish_event(&self, rc: &RedisCluster, event: &PlannedEvent) -> Result<(), Error> {
        self.may_write(Step::PublishEvent, || {
            ObjectId::new(
                RedisCluster::kind(&()),
                &rc.namespace().unwrap_or_default(),
                &rc.name_any(),
            )
        })?;
        let ev = Event {
            type_: match event.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: event.reason.as_str().into(),
            note: Some(event.note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        // A fresh Recorder per Event: kube-runtime's Recorder folds every Event of the same type,
        // reason and action on an object within 6 minutes into one series that keeps the first
        // note (its key leaves the note out). Three pods' FullResyncAfterFailover in one pass, or
        // a second FailingOver with other pods, showed the first text only. The planner emits
        // each Event once per occurrence, so nothing repeats that a series would fold.
        Recorder::new(self.client.clone(), self.reporter.clone())
            .publish(&ev, &rc.object_ref(&()))
            .await
            .map_err(Error::kube(
                Step::PublishEvent,
                ObjectId::new(
                    RedisCluster::kind(&()),
                    &rc.namespace().unwrap_or_default(),
                    &rc.name_any(),
                ),
            ))?;
        Ok(())
    }

    async fn fetch_report(&self, pod: &PodInfo) -> Option<InstanceReport> {
        let endpoint = pod.report_endpoint.as_ref()?;
        let report = self.reports.get(endpoint).await;
        self.watches.saw(endpoint, report.as_ref());
        report
    }

    async fn probe_former_source(
        &self,
        host: &str,
        port: u16,
        password: Option<String>,
        tls: bool,
    ) -> Option<FormerSource> {
        self.former_sources.latest(host, port, password, tls)
    }

    async fn request_sentinel_failover(
        &self,
        addresses: Vec<String>,
        master: String,
        password: Option<String>,
        from: Option<redis_topology::FailoverFrom>,
    ) -> Result<String, String> {
        // An action on the cluster like a write: only while this replica leads.
        if !self.leadership.is_leader() {
            return Err("not asked: this replica does not hold the leader Lease".into());
        }
        crate::probe::sentinel_failover(&addresses, &master, password.as_deref(), from.as_ref())
            .await
    }

    async fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<String>, Error> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api.get_opt(name).await.map_err(Error::kube(
            Step::ReadSecret,
            ObjectId::new(Secret::kind(&()), namespace, name),
        ))?;
        Ok(secret.and_then(|s| {
            let bytes = s.data.as_ref()?.get(key)?.0.clone();
            Some(
                String::from_utf8_lossy(&bytes)
                    .trim_end_matches('\n')
                    .to_string(),
            )
        }))
    }
}

/// What the reconciler needs of a data pod of `cluster`.
fn pod_info(cluster: &str, namespace: &str, p: Pod) -> PodInfo {
    // A pod being deleted stays in the view, marked: its Redis runs until the kubelet stops it
    // (a partitioned node never does), so only its container status or its disappearance
    // proves it takes no writes.
    let name = p.name_any();
    let mut info = PodInfo {
        address: names::pod_fqdn(cluster, namespace, &name),
        report_endpoint: p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_ref())
            .map(|ip| format!("{ip}:{}", names::METRICS_PORT)),
        problem: pod_problem(&p),
        redis_running: redis_running(&p),
        labels: p.metadata.labels.clone().unwrap_or_default(),
        annotations: p.metadata.annotations.clone().unwrap_or_default(),
        name,
    };
    if let Some(since) = &p.metadata.deletion_timestamp {
        info.mark_terminating(&since.0.to_string());
    }
    info
}

/// Why a pod is not serving, in Kubernetes' own words: not scheduled, or a container waiting
/// for a reason other than a normal start.
pub fn pod_problem(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        return Some(format!(
            "not scheduled: {}",
            c.message.clone().or(c.reason.clone()).unwrap_or_default()
        ));
    }
    status
        .container_statuses
        .iter()
        .chain(status.init_container_statuses.iter())
        .flatten()
        .find_map(|cs| {
            let waiting = cs.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.clone().unwrap_or_default();
            (reason != "ContainerCreating" && reason != "PodInitializing").then(|| {
                format!(
                    "container {}: {reason} {}",
                    cs.name,
                    waiting.message.clone().unwrap_or_default()
                )
                .trim_end()
                .to_string()
            })
        })
}

/// Whether the kubelet reports the `redis` container running. `Some(false)` (waiting or
/// terminated) is what lets a standalone failover proceed: that Redis takes no writes, and it
/// restarts fenced. No status yet is `None`, never proof.
pub fn redis_running(pod: &Pod) -> Option<bool> {
    let cs = pod
        .status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == REDIS_CONTAINER)?;
    Some(cs.state.as_ref()?.running.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_present_secret_is_remembered_and_not_for_long() {
        let seen = PresentSecrets::default();
        let t0 = Instant::now();
        let keys = ["password"];
        assert!(!seen.recently_present("ns", "auth", &keys, t0));
        seen.note("ns", "auth", &keys, &SecretState::Present, t0);
        assert!(seen.recently_present("ns", "auth", &keys, t0 + Duration::from_secs(4)));
        // Another name, namespace or set of keys is another question.
        assert!(!seen.recently_present("other", "auth", &keys, t0));
        assert!(!seen.recently_present("ns", "tls", &keys, t0));
        assert!(!seen.recently_present("ns", "auth", &["password", "ca.crt"], t0));
        // Expired: read again.
        assert!(!seen.recently_present("ns", "auth", &keys, t0 + SECRET_PRESENT_FOR));
        // A read that finds it gone (or missing a key) forgets it at once: the next reconcile
        // reads it again instead of trusting the earlier answer.
        seen.note("ns", "auth", &keys, &SecretState::Present, t0);
        let later = t0 + Duration::from_secs(1);
        seen.note("ns", "auth", &keys, &SecretState::Missing, later);
        assert!(!seen.recently_present("ns", "auth", &keys, later));
        seen.note(
            "ns",
            "auth",
            &keys,
            &SecretState::MissingKeys(vec!["password".into()]),
            later,
        );
        assert!(!seen.recently_present("ns", "auth", &keys, later));
    }

    #[test]
    fn unschedulable_and_crashing_pods_are_explained() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "dr-redis-1"},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."}]}
        }))
        .unwrap();
        assert_eq!(
            pod_problem(&pod).unwrap(),
            "not scheduled: 0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        );
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "dr-redis-1"},
            "status": {"containerStatuses": [{"name": "redis", "image": "redis", "imageID": "", "ready": false,
                "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}}]}
        }))
        .unwrap();
        assert_eq!(
            pod_problem(&pod).unwrap(),
            "container redis: CrashLoopBackOff back-off 40s"
        );
        // A crash-looping Redis is provably not running; a pod without status proves nothing.
        assert_eq!(redis_running(&pod), Some(false));
        let running: Pod = serde_json::from_value(json!({
            "metadata": {"name": "dr-redis-1"},
            "status": {"containerStatuses": [{"name": "redis", "image": "redis", "imageID": "", "ready": true,
                "restartCount": 0, "state": {"running": {}}}]}
        }))
        .unwrap();
        assert_eq!(redis_running(&running), Some(true));
        let unknown: Pod =
            serde_json::from_value(json!({"metadata": {"name": "dr-redis-1"}})).unwrap();
        assert_eq!(redis_running(&unknown), None);
        let starting: Pod = serde_json::from_value(json!({
            "metadata": {"name": "x"},
            "status": {"containerStatuses": [{"name": "redis", "image": "redis", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}
        }))
        .unwrap();
        assert_eq!(pod_problem(&starting), None);
    }
}
