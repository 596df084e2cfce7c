//! The seam between the reconciler and the world it acts on.
//!
//! [`Platform`] is everything the reconciler needs from Kubernetes (and the one call it makes to
//! the instance managers). `crate::kube_platform` implements it with a real client;
//! [`MemoryPlatform`] implements it in memory for the reconcile tests and for the drill, where no
//! Kubernetes API exists. Only the Kubernetes API is simulated there: the instance reports come
//! from the real instance managers over HTTP.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use redis_cluster_api::report::InstanceReport;
use redis_cluster_api::{RedisCluster, RedisClusterStatus};
use redis_topology::validate::SecretState;
use redis_topology::{EventReason, PlannedEvent};
use serde_json::Value;

use crate::Error;
use crate::objects::Owned;

/// A data pod as the reconciler sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `host:port` of the instance manager's HTTP server, when the pod has an IP.
    pub report_endpoint: Option<String>,
    /// How other pods reach this one's Redis (stable DNS name in Kubernetes).
    pub address: String,
    /// Why the pod is not running, as Kubernetes reports it (unschedulable, image pull, crash).
    pub problem: Option<String>,
    /// Whether the kubelet reports the `redis` container running (None: no status yet).
    pub redis_running: Option<bool>,
}

/// What the reconciler needs from the platform. Every method is one request (or none).
pub trait Platform: Send + Sync {
    fn secret_state(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> impl Future<Output = Result<SecretState, Error>> + Send;
    /// Create or update the owned objects; an object already as desired is not written.
    fn apply_owned(&self, owned: &Owned) -> impl Future<Output = Result<usize, Error>> + Send;
    fn list_pods(
        &self,
        namespace: &str,
        cluster: &str,
    ) -> impl Future<Output = Result<Vec<PodInfo>, Error>> + Send;
    /// Merge `labels` and `annotations` into the pod's metadata.
    fn patch_pod(
        &self,
        namespace: &str,
        pod: &str,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    fn patch_status(
        &self,
        rc: &RedisCluster,
        status: &RedisClusterStatus,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    fn publish_event(
        &self,
        rc: &RedisCluster,
        event: &PlannedEvent,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// The instance manager's report; None when it cannot be reached (never an error: an
    /// unreachable pod is an observation, not a reconcile failure).
    fn fetch_report(&self, pod: &PodInfo) -> impl Future<Output = Option<InstanceReport>> + Send;
}

/// Whether `desired` (what we apply) is already contained in `live` (what the server has, with
/// its defaults and other managers' fields added). Arrays must match element by element.
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| contains(lv, dv))),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| contains(lv, dv))
        }
        (l, d) => l == d,
    }
}

/// GET the status JSON of an instance manager with a plain HTTP/1.1 request: the body is a few
/// hundred bytes, and a short timeout matters more than features.
pub async fn http_get_report(endpoint: &str, timeout: Duration) -> Option<InstanceReport> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(endpoint).await.ok()?;
        let request =
            format!("GET /status HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut buf = Vec::with_capacity(4096);
        stream.take(1 << 20).read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8(buf).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return None;
        }
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)?
        } else {
            body.to_string()
        };
        serde_json::from_str(&body).ok()
    };
    tokio::time::timeout(timeout, fetch).await.ok().flatten()
}

fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size + 2..)?;
    }
}

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
    async fn secret_state(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<SecretState, Error> {
        let s = self.state.lock().unwrap();
        Ok(match s.secrets.get(&format!("{namespace}/{name}")) {
            None => SecretState::Missing,
            Some(keys) if keys.iter().any(|k| k == key) => SecretState::Present,
            Some(_) => SecretState::MissingKey,
        })
    }

    async fn apply_owned(&self, owned: &Owned) -> Result<usize, Error> {
        let mut s = self.state.lock().unwrap();
        let mut written = 0;
        for obj in owned.to_values() {
            let kind = obj["kind"].as_str().unwrap_or_default().to_string();
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
            let key = format!("{kind}/{ns}/{name}");
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
            .ok_or_else(|| Error::NotFound(format!("pod {namespace}/{pod}")))?;
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
            return http_get_report(endpoint, Duration::from_secs(2)).await;
        }
        self.state.lock().unwrap().reports.get(&pod.name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contains_ignores_server_defaults_but_not_changes() {
        let live = json!({"spec": {"ports": [{"port": 6379, "protocol": "TCP"}], "clusterIP": "10.0.0.1"}});
        assert!(contains(
            &live,
            &json!({"spec": {"ports": [{"port": 6379}]}})
        ));
        assert!(!contains(
            &live,
            &json!({"spec": {"ports": [{"port": 6380}]}})
        ));
        assert!(!contains(
            &live,
            &json!({"spec": {"ports": [{"port": 6379}, {"port": 1}]}})
        ));
        assert!(!contains(&live, &json!({"spec": {"selector": {"a": "b"}}})));
    }

    #[test]
    fn dechunks_chunked_bodies() {
        assert_eq!(
            dechunk("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n").as_deref(),
            Some("Wikipedia")
        );
        assert_eq!(dechunk("zz\r\n"), None);
    }
}
