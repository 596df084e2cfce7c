//! An in-memory Kubernetes: what the reconcile tests and the drill run against (feature
//! `memory`; the operator binary does not contain it). It records every write, so tests can
//! assert exactly what a reconcile did.

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use redis_cluster_api::report::InstanceReport;
use redis_cluster_api::{RedisCluster, RedisClusterStatus};
use redis_topology::validate::SecretState;
use redis_topology::{EventReason, FormerSource, PlannedEvent};
use serde_json::Value;

use super::report::ReportClient;
use super::{Platform, PodInfo, contains};
use crate::Error;
use crate::error::{ObjectId, Step};
use crate::objects::Owned;

/// One recorded write, for tests that assert exactly what the reconciler did.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Apply {
        kind: String,
        name: String,
    },
    PatchPod {
        pod: String,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    },
    PatchStatus(Box<RedisClusterStatus>),
    Event {
        type_: redis_topology::EventType,
        reason: EventReason,
        note: String,
    },
}

/// An in-memory Kubernetes: what the reconcile tests and the drill run against.
#[derive(Default)]
pub struct MemoryPlatform {
    pub state: Mutex<MemoryState>,
    /// For pods with a report endpoint: the drill's real instance managers.
    http: ReportClient,
    /// Real former sources (the drill's), asked in the background.
    former_sources: crate::probe::FormerSources,
    readings: super::Readings,
}

#[derive(Default)]
pub struct MemoryState {
    /// Secrets by `namespace/name`: their keys.
    pub secrets: BTreeMap<String, Vec<String>>,
    /// Applied objects by `Kind/namespace/name`.
    pub objects: BTreeMap<String, Value>,
    /// Pods by `namespace/name`.
    pub pods: BTreeMap<String, PodInfo>,
    /// Reports to return when a pod has no HTTP endpoint (tests).
    pub reports: BTreeMap<String, InstanceReport>,
    /// Status written per `namespace/name` of RedisCluster.
    pub status: BTreeMap<String, RedisClusterStatus>,
    /// Every write, in order.
    pub calls: Vec<Call>,
    /// Secret values by `namespace/name/key`, for the operator's own probes (the drill and most
    /// tests leave it empty: the probes then send no password).
    pub secret_values: BTreeMap<String, String>,
    /// What the former source's probe returns, instead of probing a real Redis (tests).
    pub former_source: Option<FormerSource>,
    /// Every Sentinel failover requested: the master names, in order.
    pub sentinel_failovers: Vec<String>,
}

impl MemoryPlatform {
    pub fn new() -> Self {
        Self::default()
    }

    /// Take the recorded writes, leaving the log empty.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    pub fn add_secret(&self, namespace: &str, name: &str, keys: &[&str]) {
        self.state.lock().unwrap().secrets.insert(
            format!("{namespace}/{name}"),
            keys.iter().map(|k| k.to_string()).collect(),
        );
    }

    /// A Secret's value, for the operator's own probes.
    pub fn set_secret_value(&self, namespace: &str, name: &str, key: &str, value: &str) {
        self.state
            .lock()
            .unwrap()
            .secret_values
            .insert(format!("{namespace}/{name}/{key}"), value.into());
    }

    /// `kubectl delete pod` without `--force`: the pod stays, marked as being deleted, until
    /// [`Self::remove_pod`] (the kubelet confirmed its containers stopped).
    pub fn mark_terminating(&self, namespace: &str, name: &str, since: &str) {
        if let Some(p) = self
            .state
            .lock()
            .unwrap()
            .pods
            .get_mut(&format!("{namespace}/{name}"))
        {
            p.mark_terminating(since);
        }
    }

    /// A pod appears, as the StatefulSet controller would create it.
    pub fn add_pod(&self, namespace: &str, pod: PodInfo) {
        self.state
            .lock()
            .unwrap()
            .pods
            .insert(format!("{namespace}/{}", pod.name), pod);
    }

    pub fn remove_pod(&self, namespace: &str, name: &str) {
        self.state
            .lock()
            .unwrap()
            .pods
            .remove(&format!("{namespace}/{name}"));
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodInfo> {
        self.state
            .lock()
            .unwrap()
            .pods
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }

    pub fn set_report(&self, pod: &str, report: Option<InstanceReport>) {
        let mut s = self.state.lock().unwrap();
        match report {
            Some(r) => s.reports.insert(pod.to_string(), r),
            None => s.reports.remove(pod),
        };
    }

    pub fn status_of(&self, namespace: &str, name: &str) -> Option<RedisClusterStatus> {
        self.state
            .lock()
            .unwrap()
            .status
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }
}

impl Platform for MemoryPlatform {
    fn readings(&self) -> &super::Readings {
        &self.readings
    }

    async fn secret_state(
        &self,
        namespace: &str,
        name: &str,
        keys: &[&str],
    ) -> Result<SecretState, Error> {
        let s = self.state.lock().unwrap();
        Ok(match s.secrets.get(&format!("{namespace}/{name}")) {
            None => SecretState::Missing,
            Some(has) => SecretState::of_existing(keys, |k| has.iter().any(|h| h == k)),
        })
    }

    async fn apply_owned(&self, owned: &Owned) -> Result<usize, Error> {
        let mut s = self.state.lock().unwrap();
        let mut written = 0;
        for object in owned.objects() {
            let kind = object.kind().to_string();
            let meta = object.meta();
            let name = meta.name.clone().unwrap_or_default();
            let ns = meta.namespace.as_deref().unwrap_or_default();
            let key = format!("{kind}/{ns}/{name}");
            let obj = object.to_value();
            if s.objects.get(&key).is_some_and(|live| contains(live, &obj)) {
                continue;
            }
            s.objects.insert(key, obj);
            s.calls.push(Call::Apply { kind, name });
            written += 1;
        }
        Ok(written)
    }

    async fn list_pods(&self, namespace: &str, cluster: &str) -> Result<Vec<PodInfo>, Error> {
        let s = self.state.lock().unwrap();
        let prefix = format!("{namespace}/");
        Ok(s.pods
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, p)| p.clone())
            .filter(|p| redis_cluster_api::labels::ordinal_of(cluster, &p.name).is_some())
            .collect())
    }

    async fn patch_pod(
        &self,
        namespace: &str,
        pod: &str,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), Error> {
        let mut s = self.state.lock().unwrap();
        let p = s
            .pods
            .get_mut(&format!("{namespace}/{pod}"))
            .ok_or_else(|| Error::NotFound {
                step: Step::PatchPod,
                object: ObjectId::new(<Pod as k8s_openapi::Resource>::KIND, namespace, pod),
            })?;
        p.labels.extend(labels.clone());
        p.annotations.extend(annotations.clone());
        s.calls.push(Call::PatchPod {
            pod: pod.into(),
            labels: labels.clone(),
            annotations: annotations.clone(),
        });
        Ok(())
    }

    async fn patch_status(
        &self,
        rc: &RedisCluster,
        status: &RedisClusterStatus,
    ) -> Result<(), Error> {
        let mut s = self.state.lock().unwrap();
        let key = format!(
            "{}/{}",
            rc.metadata.namespace.clone().unwrap_or_default(),
            rc.metadata.name.clone().unwrap_or_default()
        );
        s.status.insert(key, status.clone());
        s.calls.push(Call::PatchStatus(Box::new(status.clone())));
        Ok(())
    }

    async fn publish_event(&self, _rc: &RedisCluster, event: &PlannedEvent) -> Result<(), Error> {
        self.state.lock().unwrap().calls.push(Call::Event {
            type_: event.type_,
            reason: event.reason,
            note: event.note.clone(),
        });
        Ok(())
    }

    async fn fetch_report(&self, pod: &PodInfo) -> Option<InstanceReport> {
        if let Some(endpoint) = &pod.report_endpoint {
            return self.http.get(endpoint).await;
        }
        self.state.lock().unwrap().reports.get(&pod.name).cloned()
    }

    async fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<String>, Error> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .secret_values
            .get(&format!("{namespace}/{name}/{key}"))
            .cloned())
    }

    async fn probe_former_source(
        &self,
        host: &str,
        port: u16,
        password: Option<String>,
        tls: bool,
    ) -> Option<FormerSource> {
        let fixed = self.state.lock().unwrap().former_source.clone();
        match fixed {
            Some(f) => Some(f),
            None => self.former_sources.latest(host, port, password, tls),
        }
    }

    async fn request_sentinel_failover(
        &self,
        addresses: Vec<String>,
        master: String,
        password: Option<String>,
        from: Option<redis_topology::FailoverFrom>,
    ) -> Result<String, String> {
        self.state
            .lock()
            .unwrap()
            .sentinel_failovers
            .push(master.clone());
        crate::probe::sentinel_failover(&addresses, &master, password.as_deref(), from.as_ref())
            .await
    }
}
