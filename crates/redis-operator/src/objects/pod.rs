//! What every pod template the operator creates shares: hardening, placement, and the names of
//! containers, ports and volumes (defined once here rather than at every call site).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSetUpdateStrategy;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, ConfigMapVolumeSource, ContainerPort, DownwardAPIProjection,
    DownwardAPIVolumeFile, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath,
    ObjectFieldSelector, PodSecurityContext, ProjectedVolumeSource, ResourceRequirements,
    SeccompProfile, SecretProjection, SecretVolumeSource, SecurityContext,
    ServiceAccountTokenProjection, TopologySpreadConstraint, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use redis_cluster_api::names;

// The Redis container of a data pod comes first, so `kubectl exec <pod> -- redis-cli` reaches
// Redis; the kubelet's report on it is what proves a primary takes no writes.
pub(super) use names::INSTANCE_MANAGER_CONTAINER;
pub use names::REDIS_CONTAINER;
pub(super) const SENTINEL_CONTAINER: &str = "sentinel";
/// The init container of both kinds of pod: it writes the configuration the server runs with.
pub(super) const INIT_CONTAINER: &str = "config";

/// Named container ports, referred to by Services and probes.
pub(super) const REDIS_PORT_NAME: &str = "redis";
pub(super) const METRICS_PORT_NAME: &str = "metrics";
pub(super) const SENTINEL_PORT_NAME: &str = "sentinel";

/// Volumes.
pub(super) const CONFIG_VOLUME: &str = "config";
pub(super) const DATA_VOLUME: &str = "data";
pub(super) const RUN_VOLUME: &str = "run";
pub(super) const TMP_VOLUME: &str = "tmp";
pub(super) const AUTH_VOLUME: &str = "auth";
pub(super) const SOURCE_AUTH_VOLUME: &str = "source-auth";
pub(super) const TLS_VOLUME: &str = "tls";
/// The instance manager's API credentials (see [`api_access_volume`]).
pub(super) const API_ACCESS_VOLUME: &str = "kube-api-access";
/// Where in-cluster clients (kube-rs, client-go) look for them.
pub(super) const API_ACCESS_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Where the instance manager keeps its state file (`--state-dir`): a directory of the data
/// volume ([`IM_STATE_SUBPATH`]), so that the record of what the pod's data followed lives and
/// dies with the data (docs/instance-manager.md, "The replication gate").
pub(super) const IM_STATE_DIR: &str = "/var/lib/redis-instance-manager";
/// The data volume's directory mounted at [`IM_STATE_DIR`] (created by the init script).
pub(super) const IM_STATE_SUBPATH: &str = "instance-manager";

/// The annotation naming the container `kubectl logs/exec` use by default.
pub(super) const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
/// The annotation carrying the hash of a pod's configuration file: a change rolls the pods.
pub(super) const CONFIG_HASH_ANNOTATION: &str = "redis.io/config-hash";

/// Mode of mounted Secrets: owner and group read (the pods run with an fsGroup).
const SECRET_MODE: i32 = 0o440;

/// The container securityContext of every container the operator creates.
pub(super) fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// The pod securityContext of every pod the operator creates.
pub(super) fn pod_security() -> PodSecurityContext {
    // A high UID that no host account has; the data volume is made writable via fsGroup.
    const ID: i64 = 10001;
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(ID),
        run_as_group: Some(ID),
        fs_group: Some(ID),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}

/// CPU and memory requests, and a memory limit.
pub(super) fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    };
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", cpu), ("memory", memory)])),
        limits: Some(quantities(&[("memory", memory_limit)])),
        ..Default::default()
    }
}

/// Spread pods over nodes so one node loss takes one of them.
pub(super) fn spread(match_labels: BTreeMap<String, String>) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: "kubernetes.io/hostname".into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(selector(match_labels)),
        ..Default::default()
    }]
}

pub(super) fn selector(match_labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(match_labels),
        ..Default::default()
    }
}

/// An environment variable from the pod's own metadata (downward API).
pub(super) fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// `$(POD_NAME)`, set by [`pod_name_env`], as Kubernetes expands it in later variables.
pub(super) const POD_NAME_REF: &str = "$(POD_NAME)";

pub(super) fn pod_name_env() -> EnvVar {
    field_env("POD_NAME", "metadata.name")
}

pub(super) fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

pub(super) fn read_only(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        read_only: Some(true),
        ..mount(volume, path)
    }
}

/// The cluster's ConfigMap as a volume.
/// The pod's service-account credentials, as the kubelet would mount them with
/// `automountServiceAccountToken` (a bound token it refreshes, the cluster's CA, the namespace),
/// but as a volume of our own, so that only the container that calls the API mounts it (the
/// instance manager; never redis-server, which anyone holding the Redis password can make
/// read files through its configuration).
pub(super) fn api_access_volume() -> Volume {
    Volume {
        name: API_ACCESS_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o444),
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        expiration_seconds: Some(3607),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
        }),
        ..Default::default()
    }
}

pub(super) fn config_volume(config_map: String) -> Volume {
    Volume {
        name: CONFIG_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn empty_dir(volume: &str, medium: Option<&str>, size_limit: &str) -> Volume {
    Volume {
        name: volume.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(Into::into),
            size_limit: Some(Quantity(size_limit.into())),
        }),
        ..Default::default()
    }
}

/// A Secret holding a password, mounted as the file [`names::PASSWORD_KEY`] (required: a
/// Secret without it fails the mount, and the pod never starts a Redis without a password) and,
/// while the Secret has it, [`names::PREVIOUS_PASSWORD_KEY`] (optional: the password being
/// rotated out, docs/password-rotation.md). A projected volume, because only its sources can
/// be optional one by one; the kubelet updates both files in place when the Secret changes.
pub(super) fn password_volume(volume: &str, secret: &str) -> Volume {
    let key = |key: &str, optional: bool| VolumeProjection {
        secret: Some(SecretProjection {
            name: secret.into(),
            items: Some(vec![KeyToPath {
                key: key.into(),
                path: key.into(),
                ..Default::default()
            }]),
            optional: optional.then_some(true),
        }),
        ..Default::default()
    };
    Volume {
        name: volume.into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(SECRET_MODE),
            sources: Some(vec![
                key(names::PASSWORD_KEY, false),
                key(names::PREVIOUS_PASSWORD_KEY, true),
            ]),
        }),
        ..Default::default()
    }
}

/// A Secret mounted whole.
pub(super) fn secret_volume(volume: &str, secret: &str) -> Volume {
    Volume {
        name: volume.into(),
        secret: Some(secret_source(secret)),
        ..Default::default()
    }
}

fn secret_source(secret: &str) -> SecretVolumeSource {
    SecretVolumeSource {
        secret_name: Some(secret.into()),
        default_mode: Some(SECRET_MODE),
        ..Default::default()
    }
}

/// `/bin/sh -c <script>`.
/// Run `argv` (redis-server or redis-sentinel) with umask 077, through `/bin/sh`, `exec`ed so
/// that it stays the container's main process. Redis writes its configuration file back on
/// `CONFIG REWRITE` (the instance manager persists `replicaof` that way) and a Sentinel on every
/// state change, both with mode `0644 & ~umask`, and the rewritten file holds `requirepass`,
/// `masterauth` (on a DR pod: the source's password) or `sentinel auth-pass` in clear. With the
/// container's default umask (022) that file on the data volume was world-readable; with 077 it
/// is `0600`, readable by the Redis user only, like the RDB and AOF files written next to it.
/// The arguments are fixed words (paths, options), never a secret, so quoting is not needed.
pub(super) fn private_files(argv: &[String]) -> Vec<String> {
    shell(&format!("umask 077 && exec {}", argv.join(" ")))
}

pub(super) fn shell(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

pub(super) fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port.into(),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

pub(super) fn rolling_update() -> StatefulSetUpdateStrategy {
    StatefulSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        ..Default::default()
    }
}
