//! Label and annotation keys, and the names of the objects a `RedisCluster` owns.
//!
//! The spec fixes `redis.io/cluster` and `redis.io/role` (its LoadBalancer example selects on
//! them) and the `<name>-leader` Service; everything else here follows the same prefix.

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

/// The annotation holding the pod's desired topology (JSON, see [`crate::topology`]).
pub const TOPOLOGY_ANNOTATION: &str = "redis.io/topology";

/// Standard Kubernetes labels for the objects we create.
pub const APP_NAME: &str = "app.kubernetes.io/name";
pub const APP_INSTANCE: &str = "app.kubernetes.io/instance";
pub const APP_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const APP_COMPONENT: &str = "app.kubernetes.io/component";
/// Value of [`APP_MANAGED_BY`] on everything the operator creates.
pub const MANAGER: &str = "redis-operator";

/// Name of data pod `ordinal` of cluster `cluster`: `<cluster>-<ordinal>`.
pub fn pod_name(cluster: &str, ordinal: u32) -> String {
    format!("{cluster}-{ordinal}")
}

/// The ordinal of a pod named `<cluster>-<ordinal>`, or `None` if the name does not belong to
/// `cluster`.
pub fn ordinal_of(cluster: &str, pod: &str) -> Option<u32> {
    let rest = pod.strip_prefix(cluster)?.strip_prefix('-')?;
    if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse().ok()
}

/// The Service that always points at the (designated) primary.
pub fn leader_service(cluster: &str) -> String {
    format!("{cluster}-leader")
}
/// The Service selecting ready replicas only.
pub fn replica_service(cluster: &str) -> String {
    format!("{cluster}-replica")
}
/// The Service selecting every ready data pod.
pub fn any_service(cluster: &str) -> String {
    format!("{cluster}-any")
}

/// The Service for clients that speak the Sentinel protocol (port 26379).
pub fn sentinel_service(cluster: &str) -> String {
    format!("{cluster}-sentinel")
}
/// Name of Sentinel pod `ordinal` (and of their StatefulSet without the ordinal).
pub fn sentinel_pod_name(cluster: &str, ordinal: u32) -> String {
    format!("{cluster}-sentinel-{ordinal}")
}
/// The name the Sentinels monitor the cluster under: the cluster's name.
pub fn sentinel_master_name(cluster: &str) -> String {
    cluster.to_string()
}
/// Port of every Sentinel.
pub const SENTINEL_PORT: u16 = 26379;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_round_trip_and_reject_foreign_names() {
        for n in [0, 1, 9, 10, 4242] {
            assert_eq!(ordinal_of("dr-redis", &pod_name("dr-redis", n)), Some(n));
        }
        assert_eq!(ordinal_of("dr-redis", "dr-redis"), None);
        assert_eq!(ordinal_of("dr-redis", "dr-redis-"), None);
        assert_eq!(ordinal_of("dr-redis", "dr-redis-01"), None);
        assert_eq!(ordinal_of("dr-redis", "dr-redis-x"), None);
        // A cluster whose name is a prefix of another's must not claim its pods.
        assert_eq!(ordinal_of("dr", "dr-redis-0"), None);
        assert_eq!(ordinal_of("dr-redis", "dr-redis-sentinel-0"), None);
    }

    #[test]
    fn service_names_follow_the_spec() {
        assert_eq!(leader_service("prod-redis"), "prod-redis-leader");
        assert_eq!(replica_service("prod-redis"), "prod-redis-replica");
        assert_eq!(any_service("prod-redis"), "prod-redis-any");
    }
}
