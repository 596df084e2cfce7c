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

use std::collections::BTreeMap;

use redis_cluster_api::report::InstanceReport;
use redis_cluster_api::{RedisCluster, RedisClusterStatus};
use redis_topology::PlannedEvent;
use redis_topology::validate::SecretState;

pub use diff::contains;
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

/// What the reconciler needs from the platform. Every method is one request (or none).
pub trait Platform: Send + Sync {
    fn secret_state(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
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
}
