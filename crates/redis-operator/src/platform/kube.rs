//! [`Platform`] on a real Kubernetes API server. Thin by design: each method is one or two
//! requests; nothing here decides anything.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use redis_cluster_api::report::InstanceReport;
use redis_cluster_api::{RedisCluster, RedisClusterStatus, labels as l, names};
use redis_topology::validate::SecretState;
use redis_topology::{EventType, FormerSource, PlannedEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::report::ReportClient;
use super::{Platform, PodInfo, contains};
use crate::error::{ObjectId, Step};
use crate::leader::Leadership;
use crate::objects::{Object, Owned, REDIS_CONTAINER};
use crate::{Error, FIELD_MANAGER};

pub struct KubePlatform {
    client: Client,
    /// Who writes the Events. A Recorder is made per Event (see `publish_event`).
    reporter: Reporter,
    reports: ReportClient,
    /// Every write checks it first: a replica whose renew deadline passed writes nothing.
    leadership: Leadership,
    former_sources: crate::probe::FormerSources,
}

impl KubePlatform {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        KubePlatform {
            reporter,
            client,
            reports: ReportClient::default(),
            leadership: Leadership::always(),
            former_sources: Default::default(),
        }
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

    /// Server-side apply `obj` unless the live object already holds every field we set.
    async fn apply<K>(&self, obj: &K) -> Result<bool, Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj.meta().name.clone().unwrap_or_default();
        let id = || ObjectId::new(K::kind(&()), &ns, &name);
        let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
        let mut desired = serde_json::to_value(obj).map_err(Error::serialize(Step::Apply, id()))?;
        desired["apiVersion"] = K::api_version(&()).into();
        desired["kind"] = K::kind(&()).into();
        if let Some(live) = api
            .get_opt(&name)
            .await
            .map_err(Error::kube(Step::Apply, id()))?
        {
            let mut live =
                serde_json::to_value(&live).map_err(Error::serialize(Step::Apply, id()))?;
            live["apiVersion"] = desired["apiVersion"].clone();
            live["kind"] = desired["kind"].clone();
            if contains(&live, &desired) {
                return Ok(false);
            }
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
    async fn secret_state(
        &self,
        namespace: &str,
        name: &str,
        keys: &[&str],
    ) -> Result<SecretState, Error> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api.get_opt(name).await.map_err(Error::kube(
            Step::ReadSecret,
            ObjectId::new(Secret::kind(&()), namespace, name),
        ))?;
        Ok(match secret {
            None => SecretState::Missing,
            Some(s) => SecretState::of_existing(keys, |key| {
                s.data.as_ref().is_some_and(|d| d.contains_key(key))
                    || s.string_data.as_ref().is_some_and(|d| d.contains_key(key))
            }),
        })
    }

    async fn apply_owned(&self, owned: &Owned) -> Result<usize, Error> {
        let mut written = 0;
        for object in owned.objects() {
            // Typed per kind: the request path comes from the type, and the live object is read
            // back through it, so server defaults it does not know are ignored.
            let changed = match object {
                Object::ServiceAccount(o) => self.apply(o).await?,
                Object::Role(o) => self.apply(o).await?,
                Object::RoleBinding(o) => self.apply(o).await?,
                Object::ConfigMap(o) => self.apply(o).await?,
                Object::Service(o) => self.apply(o).await?,
                Object::PodDisruptionBudget(o) => self.apply(o).await?,
                Object::NetworkPolicy(o) => self.apply(o).await?,
                Object::StatefulSet(o) => self.apply(o).await?,
            };
            written += usize::from(changed);
        }
        Ok(written)
    }

    async fn list_pods(&self, namespace: &str, cluster: &str) -> Result<Vec<PodInfo>, Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let selector = format!("{}={cluster}", l::CLUSTER);
        let pods = api
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .map_err(Error::kube(
                Step::ListPods,
                ObjectId::new(RedisCluster::kind(&()), namespace, cluster),
            ))?;
        // A pod being deleted stays in the view, marked: its Redis runs until the kubelet stops
        // it (a partitioned node never does), so only its container status or its disappearance
        // proves it takes no writes.
        Ok(pods
            .items
            .into_iter()
            .filter(|p| l::ordinal_of(cluster, &p.name_any()).is_some())
            .map(|p| {
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
            })
            .collect())
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
        api.patch(pod, &params, &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(
                Step::PatchPod,
                ObjectId::new(Pod::kind(&()), namespace, pod),
            ))?;
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
        self.reports.get(endpoint).await
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
