//! The seam between the reconciler and the world it acts on.
//!
//! [`Platform`] is everything the reconciler needs from Kubernetes (and the one call it makes to
//! the instance managers). [`kube::KubePlatform`] implements it with a real client; with the
//! `memory` feature, `memory::MemoryPlatform` implements it in memory for the reconcile tests and
//! for the drill, where no Kubernetes API exists. Only the Kubernetes API is simulated there: the
//! instance reports come from the real instance managers over HTTP ([`report`]).

mod diff;
pub mod kube;
#[cfg(feature = "memory")]
pub mod memory;
pub mod report;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use redis_cluster_api::report::InstanceReport;
use redis_cluster_api::{RedisCluster, RedisClusterStatus};
use redis_topology::validate::SecretState;
use redis_topology::{FormerSource, PlannedEvent};

pub use diff::{contains, first_difference};
#[cfg(feature = "memory")]
pub use memory::{Call, MemoryPlatform, MemoryState};

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

/// How [`PodInfo::problem`] starts for a pod being deleted (`deletionTimestamp` set). Such a pod
/// stays in the operator's view: its Redis runs until the kubelet stops it, so its deletion
/// proves nothing about writes.
pub const TERMINATING: &str = "terminating";

impl PodInfo {
    /// The pod is being deleted (see [`TERMINATING`]).
    pub fn terminating(&self) -> bool {
        self.problem
            .as_deref()
            .is_some_and(|p| p.starts_with(TERMINATING))
    }

    /// Mark the pod as being deleted since `since` (RFC 3339), keeping what else is wrong.
    pub fn mark_terminating(&mut self, since: &str) {
        if self.terminating() {
            return;
        }
        let mut problem = format!(
            "{TERMINATING} (deletion requested at {since}; its Redis runs until the kubelet stops it)"
        );
        if let Some(other) = &self.problem {
            problem.push_str(&format!("; {other}"));
        }
        self.problem = Some(problem);
    }
}

/// What the last reconcile of each cluster read of its pods' data positions (replication id,
/// offset, keys), kept in the operator's memory. The status is not rewritten for offsets alone
/// (issue 16), but a failover compares how far each pod got, the failed primary included: the
/// reconcile lays these over the stored status before planning, so the planner remembers
/// positions as fresh as its last look (and the instance managers' last readings of their
/// upstream are fresher still). After an operator restart only the stored status remains.
#[derive(Default)]
pub struct Readings(Mutex<HashMap<String, Vec<redis_cluster_api::InstanceStatus>>>);

impl Readings {
    /// Replace `status`'s readings with those kept for `key`, where kept.
    pub fn overlay(&self, key: &str, status: &mut RedisClusterStatus) {
        let kept = self.0.lock().expect("readings");
        let Some(kept) = kept.get(key) else {
            return;
        };
        for i in &mut status.instances_status {
            let Some(k) = kept.iter().find(|k| k.name == i.name) else {
                continue;
            };
            if k.replication_id.is_some() {
                i.replication_id = k.replication_id.clone();
                i.replication_offset = k.replication_offset;
                i.keys = k.keys;
            }
        }
        for k in kept {
            if !status.instances_status.iter().any(|i| i.name == k.name) {
                status.instances_status.push(k.clone());
            }
        }
        status.instances_status.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Keep `status`'s readings for `key`.
    pub fn keep(&self, key: &str, status: &RedisClusterStatus) {
        self.0
            .lock()
            .expect("readings")
            .insert(key.to_string(), status.instances_status.clone());
    }
}

/// What the reconciler needs from the platform. Every method is one request (or none).
pub trait Platform: Send + Sync {
    /// The operator's memory of its pods' data positions ([`Readings`]).
    fn readings(&self) -> &Readings;
    /// Whether Secret `name` exists and holds every one of `keys`.
    fn secret_state(
        &self,
        namespace: &str,
        name: &str,
        keys: &[&str],
    ) -> impl Future<Output = Result<SecretState, Error>> + Send;
    /// Create or update the owned objects ([`Owned::objects`], in that order); an object already
    /// as desired is not written. Returns how many were written.
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
    /// The value of `key` in Secret `name`, as text; None when the Secret or the key is missing.
    /// Only the operator's own probes use it (the former source's password, the Sentinels').
    fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<String>, Error>> + Send;
    /// Whether the Redis at `host:port` accepts writes (the former source of a promoted
    /// cluster), as last seen: the question is asked in the background (every few seconds), so
    /// that a former source that does not answer never slows a reconcile. None before the first
    /// answer. Never an error: a Redis that cannot be asked is an observation.
    fn probe_former_source(
        &self,
        host: &str,
        port: u16,
        password: Option<String>,
        tls: bool,
    ) -> impl Future<Output = Option<FormerSource>> + Send;
    /// Ask the Sentinels at `addresses` to fail over `master` (only while they still name
    /// `from` as its primary): Ok with the Sentinel that accepted, Err with every refusal.
    fn request_sentinel_failover(
        &self,
        addresses: Vec<String>,
        master: String,
        password: Option<String>,
        from: Option<redis_topology::FailoverFrom>,
    ) -> impl Future<Output = Result<String, String>> + Send {
        async move {
            crate::probe::sentinel_failover(&addresses, &master, password.as_deref(), from.as_ref())
                .await
        }
    }
}
