//! The `RedisCluster` API (`redis.io/v1`) and the contracts shared by the operator and the
//! in-pod instance manager.
//!
//! This crate is deliberately free of any runtime (no tokio, no client): it is types, constants
//! and pure helpers, so that both binaries, the planner and the tests agree on one definition.
//!
//! - [`cluster`]: the custom resource, its spec, status and condition vocabulary.
//! - [`topology`]: the desired replication state the operator publishes in a pod annotation and
//!   the instance manager applies.
//! - [`report`]: what each instance manager reports about its Redis (`GET /status`).
//! - [`labels`]: label and annotation keys.
//! - [`names`]: every name derived from a cluster's name (objects, DNS names), ports, in-pod
//!   paths and ConfigMap keys.
//! - [`validation`] (feature `validation`): validate a manifest against the generated CRD schema
//!   the way the apiserver does (structural checks and CEL rules), for tests and for the drill's
//!   simulated API.

pub mod cluster;
pub mod labels;
pub mod names;
pub mod report;
pub mod topology;
#[cfg(feature = "validation")]
pub mod validation;

pub use cluster::*;

/// The CRD as YAML, exactly as checked in under `config/crd/` and the Helm chart.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = RedisCluster::crd();
    let body = serde_yaml::to_string(&crd).expect("a CRD always serializes to YAML");
    format!("# Generated from crates/redis-cluster-api by `make crd`. Do not edit by hand.\n{body}")
}
