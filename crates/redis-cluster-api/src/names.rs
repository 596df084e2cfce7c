//! Every name derived from a cluster's name, and every port and in-pod path the operator, the
//! planner, the instance manager and the drill must agree on: defined once here, so that the
//! address a replica is told to follow is the one the headless Service really publishes.
//!
//! `<name>-leader`, `<name>-replica` and `<name>-any` are user-facing (README.md,
//! docs/install.md); everything else follows the same pattern.

/// Port every Redis listens on.
pub const REDIS_PORT: u16 = 6379;
/// Port of every Sentinel.
pub const SENTINEL_PORT: u16 = 26379;
/// Port of the instance manager's HTTP server (metrics, health, `GET /status`).
pub const METRICS_PORT: u16 = 9121;
/// The Redis container of a data pod (`kubectl exec <pod> -c redis`, the plugin's `report`).
pub const REDIS_CONTAINER: &str = "redis";
/// The instance manager's container of a data pod (`kubectl logs <pod> -c instance-manager`).
pub const INSTANCE_MANAGER_CONTAINER: &str = "instance-manager";

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
/// The headless Service giving each data pod a stable DNS name (see [`pod_fqdn`]); also the
/// data StatefulSet's `serviceName`.
pub fn headless_service(cluster: &str) -> String {
    format!("{cluster}-headless")
}

/// The Service for clients that speak the Sentinel protocol (port 26379); also the name of the
/// Sentinels' StatefulSet and NetworkPolicy.
pub fn sentinel_service(cluster: &str) -> String {
    format!("{cluster}-sentinel")
}
/// The headless Service giving each Sentinel pod a stable DNS name (peers, `announce-ip`).
pub fn sentinel_headless_service(cluster: &str) -> String {
    headless_service(&sentinel_service(cluster))
}
/// Name of Sentinel pod `ordinal` (and of their StatefulSet without the ordinal).
pub fn sentinel_pod_name(cluster: &str, ordinal: u32) -> String {
    pod_name(&sentinel_service(cluster), ordinal)
}
/// The name the Sentinels monitor the cluster under: the cluster's name.
pub fn sentinel_master_name(cluster: &str) -> String {
    cluster.to_string()
}

/// The ServiceAccount (and Role, RoleBinding) of the instance managers.
pub fn instance_manager_account(cluster: &str) -> String {
    format!("{cluster}-instance-manager")
}
/// The ConfigMap holding the rendered configuration (keys [`REDIS_CONF_KEY`],
/// [`SENTINEL_CONF_KEY`], [`PRIMARY_KEY`]).
pub fn config_map(cluster: &str) -> String {
    format!("{cluster}-config")
}
/// The PodDisruptionBudget of the data pods.
pub fn pod_disruption_budget(cluster: &str) -> String {
    format!("{cluster}-pdb")
}
/// The PodDisruptionBudget of the Sentinel pods.
pub fn sentinel_pod_disruption_budget(cluster: &str) -> String {
    pod_disruption_budget(&sentinel_service(cluster))
}
/// The NetworkPolicy of the data pods.
pub fn network_policy(cluster: &str) -> String {
    format!("{cluster}-redis")
}

/// `<service>.<namespace>.svc`: a Service's address from anywhere in the cluster.
pub fn service_domain(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc")
}

/// The stable address of data pod `pod`: `<pod>.<cluster>-headless.<namespace>.svc`. Sentinels
/// and replicas address Redis by it, never by a pod IP.
pub fn pod_fqdn(cluster: &str, namespace: &str, pod: &str) -> String {
    format!(
        "{pod}.{}",
        service_domain(&headless_service(cluster), namespace)
    )
}

/// The address of Sentinel `ordinal` from inside its namespace:
/// `<cluster>-sentinel-<n>.<cluster>-sentinel-headless`.
pub fn sentinel_host(cluster: &str, ordinal: u32) -> String {
    format!(
        "{}.{}",
        sentinel_pod_name(cluster, ordinal),
        sentinel_headless_service(cluster)
    )
}

/// The stable address of Sentinel `ordinal` from anywhere:
/// `<cluster>-sentinel-<n>.<cluster>-sentinel-headless.<namespace>.svc`.
pub fn sentinel_fqdn(cluster: &str, namespace: &str, ordinal: u32) -> String {
    format!("{}.{namespace}.svc", sentinel_host(cluster, ordinal))
}

/// Key of the ConfigMap holding `redis.conf`.
pub const REDIS_CONF_KEY: &str = "redis.conf";
/// Key of the ConfigMap holding the Sentinels' `sentinel.conf` template (`mode: sentinel`).
pub const SENTINEL_CONF_KEY: &str = "sentinel.conf";
/// Key of the ConfigMap holding the stable address of the primary the operator last recorded
/// (`status.currentPrimary`), empty when none (`mode: sentinel`).
pub const PRIMARY_KEY: &str = "primary";

/// Key of the password in every Secret the spec names (`authSecret`, `source.authSecretName`),
/// and the name of the file it is mounted as.
pub const PASSWORD_KEY: &str = "password";
/// The key of an auth Secret that holds the password being rotated out: accepted besides
/// [`PASSWORD_KEY`] while it is there (docs/password-rotation.md).
pub const PREVIOUS_PASSWORD_KEY: &str = "previousPassword";
/// Keys of a `tlsSecret` (`kubernetes.io/tls`, plus the CA), and their file names.
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
pub const TLS_CA_KEY: &str = "ca.crt";

/// In-pod paths: where the pod template mounts each volume. The init scripts
/// (`crates/redis-operator/scripts/`) use the same paths, checked by their tests.
pub mod paths {
    /// The data volume (data pods) or the Sentinel's rewritable config (Sentinel pods).
    pub const DATA_DIR: &str = "/data";
    /// The ConfigMap.
    pub const CONFIG_DIR: &str = "/etc/redis/conf";
    /// The cluster's `authSecret`.
    pub const AUTH_DIR: &str = "/etc/redis/auth";
    /// The source's `authSecretName`.
    pub const SOURCE_AUTH_DIR: &str = "/etc/redis/source";
    /// The `tlsSecret`.
    pub const TLS_DIR: &str = "/etc/redis/tls";
    /// Memory-backed: the `requirepass`/`masterauth` lines the init container writes.
    pub const RUN_DIR: &str = "/run/redis";

    /// `<dir>/<file>`.
    pub fn file(dir: &str, file: &str) -> String {
        format!("{dir}/{file}")
    }

    /// The cluster's password, as mounted in every pod.
    pub fn auth_password_file() -> String {
        file(AUTH_DIR, super::PASSWORD_KEY)
    }

    /// The source's password, as mounted in every data pod of a replica cluster.
    pub fn source_password_file() -> String {
        file(SOURCE_AUTH_DIR, super::PASSWORD_KEY)
    }

    /// The file redis-server runs with, on the data volume (written by the init container from
    /// the ConfigMap's template, then rewritten by Redis's `CONFIG REWRITE`).
    pub fn redis_conf_file() -> String {
        file(DATA_DIR, "redis.conf")
    }

    /// The file redis-sentinel runs with (written by the Sentinel's init container, then
    /// rewritten by the Sentinel).
    pub fn sentinel_conf_file() -> String {
        file(DATA_DIR, "sentinel.conf")
    }

    /// The file `redis.conf` includes for the passwords (written by the init container).
    pub fn auth_conf_file() -> String {
        file(RUN_DIR, "auth.conf")
    }
}

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

    #[test]
    fn addresses_are_the_headless_services_dns_names() {
        assert_eq!(
            pod_fqdn("dr-redis", "production", "dr-redis-0"),
            "dr-redis-0.dr-redis-headless.production.svc"
        );
        assert_eq!(
            sentinel_host("prod-redis", 2),
            "prod-redis-sentinel-2.prod-redis-sentinel-headless"
        );
        assert_eq!(
            sentinel_fqdn("prod-redis", "production", 2),
            "prod-redis-sentinel-2.prod-redis-sentinel-headless.production.svc"
        );
        assert_eq!(paths::auth_password_file(), "/etc/redis/auth/password");
        assert_eq!(paths::source_password_file(), "/etc/redis/source/password");
        assert_eq!(paths::auth_conf_file(), "/run/redis/auth.conf");
    }
}
