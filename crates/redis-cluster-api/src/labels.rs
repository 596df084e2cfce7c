//! Label and annotation keys. Names derived from a cluster's name are in [`crate::names`].
//!
//! `redis.io/cluster` and `redis.io/role` are user-facing (users select pods and build Services
//! on them: README.md, docs/install.md, docs/failover.md); everything else here follows the same
//! prefix.

/// The cluster a pod (or Service, PVC, ...) belongs to.
pub const CLUSTER: &str = "redis.io/cluster";
/// The pod's instance name (`<cluster>-<ordinal>`), so a Service or `kubectl` can pick one pod.
pub const INSTANCE: &str = "redis.io/instance";
/// `primary` or `replica`. In replica mode the designated leader carries `primary` even though it
/// replicates the external source, so the `-leader` Service is a stable endpoint.
pub const ROLE: &str = "redis.io/role";
/// Value of [`ROLE`] on the (designated) primary.
pub const ROLE_PRIMARY: &str = "primary";
/// Value of [`ROLE`] on every other data pod.
pub const ROLE_REPLICA: &str = "replica";

/// Carried by the Sentinel pods of cluster `<name>` (value: `<name>`) and selected by their
/// Services. Sentinel pods do not carry [`CLUSTER`], so no data-pod selector (Services, PDB,
/// NetworkPolicy, the operator's pod list) ever matches them.
pub const SENTINEL: &str = "redis.io/sentinel";

/// The annotation holding the pod's desired topology (JSON, see [`crate::topology`]).
pub const TOPOLOGY_ANNOTATION: &str = "redis.io/topology";

/// Standard Kubernetes labels for the objects we create.
pub const APP_NAME: &str = "app.kubernetes.io/name";
pub const APP_INSTANCE: &str = "app.kubernetes.io/instance";
pub const APP_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const APP_COMPONENT: &str = "app.kubernetes.io/component";
/// Value of [`APP_MANAGED_BY`] on everything the operator creates.
pub const MANAGER: &str = "redis-operator";

// Defined in `names`; re-exported for the instance manager and the drill, which address them
// as `labels::...`.
pub use crate::names::{
    SENTINEL_PORT, any_service, leader_service, ordinal_of, pod_name, replica_service,
    sentinel_master_name, sentinel_pod_name, sentinel_service,
};
