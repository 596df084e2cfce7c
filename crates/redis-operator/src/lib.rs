//! The `redis-operator`: reconciles `RedisCluster` resources into Redis pods, Services and a
//! replication topology. Decisions live in `objects` (what a cluster owns), `config` (the
//! configuration files its pods run with) and the `redis-topology` crate (topology, promotion,
//! status); this crate sequences I/O through the [`platform::Platform`]
//! seam and runs the kube-rs controller.

pub mod config;
pub mod controller;
pub mod kube_platform;
pub mod leader;
pub mod metrics;
pub mod objects;
pub mod platform;
pub mod reconcile;
pub mod scripts;

/// Field manager for every server-side apply, so ownership of fields is stable across versions.
pub const FIELD_MANAGER: &str = "redis-operator";

/// Every way a reconcile can fail. `metric_label` is stable: it is a Prometheus label value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0} not found")]
    NotFound(String),
    #[error("RedisCluster has no namespace")]
    Unnamespaced,
    #[error("serializing {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::NotFound(_) => "not_found",
            Error::Unnamespaced => "unnamespaced",
            Error::Serialize(_) => "serialize",
        }
    }
}
