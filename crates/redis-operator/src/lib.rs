//! The `redis-operator`: reconciles `RedisCluster` resources into Redis pods, Services and a
//! replication topology. Decisions live in [`objects`] (what a cluster owns), [`config`] (the
//! configuration files its pods run with) and the `redis-topology` crate (topology, promotion,
//! status); this crate sequences I/O through the [`platform::Platform`] seam and runs the kube-rs
//! controller.

pub mod config;
pub mod controller;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod objects;
pub mod platform;
pub mod probe;
pub mod reconcile;
pub mod scripts;

pub use error::Error;

/// Field manager for every server-side apply, so ownership of fields is stable across versions.
pub const FIELD_MANAGER: &str = "redis-operator";
