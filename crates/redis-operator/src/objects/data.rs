//! The data StatefulSet: one pod per instance, each a `redis-server` and its instance manager.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
    PodTemplateSpec, Probe, TCPSocketAction, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use redis_cluster_api::ClusterMode;
use redis_cluster_api::names::{self, paths};
use redis_cluster_api::topology;

use super::pod::*;
use super::{Cluster, common_labels, data_selector};
use crate::config::{config_hash, redis_conf};
use crate::scripts::INIT_SCRIPT;

pub(super) fn statefulset(c: &Cluster) -> StatefulSet {
    let spec = &c.rc.spec;
    let name = &c.name;
    let mut volumes = vec![
        config_volume(names::config_map(name)),
        empty_dir(RUN_VOLUME, Some("Memory"), "1Mi"),
        empty_dir(TMP_VOLUME, None, "64Mi"),
        api_access_volume(),
    ];
    let mut redis_mounts = vec![
        mount(DATA_VOLUME, paths::DATA_DIR),
        read_only(CONFIG_VOLUME, paths::CONFIG_DIR),
        read_only(RUN_VOLUME, paths::RUN_DIR),
        mount(TMP_VOLUME, "/tmp"),
    ];
    // The instance manager's state file lives on the data volume: what the pod's data followed
    // survives restarts of both containers, and goes with the data when the volume goes.
    let mut im_mounts = vec![
        VolumeMount {
            sub_path: Some(IM_STATE_SUBPATH.into()),
            ..mount(DATA_VOLUME, IM_STATE_DIR)
        },
        // The only container with API credentials: it watches its own pod.
        read_only(API_ACCESS_VOLUME, API_ACCESS_DIR),
    ];
    let mut im_args = vec![
        format!("--cluster={name}"),
        format!("--redis-addr=127.0.0.1:{}", names::REDIS_PORT),
        format!("--http-addr=0.0.0.0:{}", names::METRICS_PORT),
        "--log-format=json".to_string(),
        format!("--state-dir={IM_STATE_DIR}"),
    ];
    let mut init_mounts = vec![
        mount(DATA_VOLUME, paths::DATA_DIR),
        mount(RUN_VOLUME, paths::RUN_DIR),
    ];
    if let Some(auth) = &spec.auth_secret {
        volumes.push(password_volume(AUTH_VOLUME, &auth.name));
        let auth_mount = read_only(AUTH_VOLUME, paths::AUTH_DIR);
        im_mounts.push(auth_mount.clone());
        init_mounts.push(auth_mount);
        im_args.push(format!(
            "--redis-password-file={}",
            paths::auth_password_file()
        ));
    }
    let mut init_env = vec![];
    // Depends on the mode only, never on promotion: a promotion must not roll the data pods.
    if spec.mode == ClusterMode::Sentinel {
        init_env = vec![
            pod_name_env(),
            env("ANNOUNCE_HOST", names::pod_fqdn(name, &c.ns, POD_NAME_REF)),
            env(
                "SENTINEL_HOST",
                names::service_domain(&names::sentinel_service(name), &c.ns),
            ),
            env("MASTER_NAME", names::sentinel_master_name(name)),
            env(
                "DEFAULT_PRIMARY",
                names::pod_fqdn(name, &c.ns, &names::pod_name(name, 0)),
            ),
        ];
        init_mounts.push(read_only(CONFIG_VOLUME, paths::CONFIG_DIR));
    }
    let init = Container {
        name: INIT_CONTAINER.into(),
        image: Some(c.settings.redis_image.clone()),
        command: Some(shell(INIT_SCRIPT)),
        env: (!init_env.is_empty()).then_some(init_env),
        volume_mounts: Some(init_mounts),
        security_context: Some(restricted()),
        resources: Some(resources("10m", "16Mi", "32Mi")),
        ..Default::default()
    };
    if let Some(source_secret) = spec
        .replica_mode
        .as_ref()
        .and_then(|r| r.source.as_ref())
        .and_then(|s| s.auth_secret_name.as_ref())
        .filter(|n| !n.is_empty())
    {
        volumes.push(password_volume(SOURCE_AUTH_VOLUME, source_secret));
        im_mounts.push(read_only(SOURCE_AUTH_VOLUME, paths::SOURCE_AUTH_DIR));
    }
    if let Some(tls) = &spec.tls_secret {
        volumes.push(secret_volume(TLS_VOLUME, &tls.name));
        let tls_mount = read_only(TLS_VOLUME, paths::TLS_DIR);
        redis_mounts.push(tls_mount.clone());
        im_mounts.push(tls_mount);
        let file = |key| paths::file(paths::TLS_DIR, key);
        im_args.extend([
            format!("--tls-ca-file={}", file(names::TLS_CA_KEY)),
            format!("--tls-cert-file={}", file(names::TLS_CERT_KEY)),
            format!("--tls-key-file={}", file(names::TLS_KEY_KEY)),
            // Redis serves TLS only (`port 0`): the sidecar reaches it over TLS too, and
            // reloads renewed certificates into it.
            "--redis-tls".to_string(),
        ]);
    }
    let redis = Container {
        // First container: `kubectl exec <pod> -- redis-cli` reaches Redis.
        name: REDIS_CONTAINER.into(),
        image: Some(c.settings.redis_image.clone()),
        // A writable main file on the data volume (see INIT_SCRIPT), so the instance
        // manager's CONFIG REWRITE can persist `replicaof` across restarts; the fence on the
        // command line holds every start, including a container restart that reads that file
        // as the last rewrite left it (unfenced). The file is private: see `private_files`.
        command: Some(private_files(
            &["redis-server".to_string(), paths::redis_conf_file()]
                .into_iter()
                .chain(topology::boot_fence_args())
                .collect::<Vec<_>>(),
        )),
        ports: Some(vec![container_port(REDIS_PORT_NAME, names::REDIS_PORT)]),
        volume_mounts: Some(redis_mounts),
        security_context: Some(restricted()),
        resources: Some(spec.resources.clone().unwrap_or_else(|| {
            resources(
                "100m",
                "256Mi",
                redis_cluster_api::DEFAULT_REDIS_MEMORY_LIMIT,
            )
        })),
        // Liveness only asks whether redis-server answers on its port: a replica whose
        // cross-region link is down must not be restarted for it.
        liveness_probe: Some(Probe {
            failure_threshold: Some(6),
            ..redis_port_probe(10)
        }),
        startup_probe: Some(Probe {
            failure_threshold: Some(150),
            ..redis_port_probe(2)
        }),
        readiness_probe: Some(redis_port_probe(5)),
        ..Default::default()
    };
    let instance_manager = Container {
        name: INSTANCE_MANAGER_CONTAINER.into(),
        image: Some(c.settings.instance_manager_image.clone()),
        command: Some(vec!["redis-instance-manager".into()]),
        args: Some(im_args),
        env: Some(vec![
            pod_name_env(),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(vec![container_port(METRICS_PORT_NAME, names::METRICS_PORT)]),
        volume_mounts: Some(im_mounts),
        security_context: Some(restricted()),
        resources: Some(
            spec.instance_manager_resources
                .clone()
                .unwrap_or_else(|| resources("20m", "32Mi", "64Mi")),
        ),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        // Ready = serves data as its role requires (primary writable, replica linked).
        readiness_probe: Some(http_probe("/readyz", 2, 2)),
        ..Default::default()
    };
    let pod = PodSpec {
        service_account_name: Some(names::instance_manager_account(name)),
        // Mounted into the instance manager only (api_access_volume).
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(30),
        security_context: Some(pod_security()),
        init_containers: Some(vec![init]),
        containers: vec![redis, instance_manager],
        volumes: Some(volumes),
        topology_spread_constraints: Some(spread(data_selector(name))),
        node_selector: spec.node_selector.clone(),
        ..Default::default()
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(data_selector(name)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(spec.storage.size.clone()),
                )])),
                ..Default::default()
            }),
            storage_class_name: spec.storage.storage_class.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    StatefulSet {
        metadata: c.meta(name.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.instances),
            service_name: Some(names::headless_service(name)),
            // Parallel: a replica-mode pod that cannot reach the source is never Ready; it must
            // not block the creation of the next ordinal.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(rolling_update()),
            // Scale-down and deletion keep the data unless the user deletes the PVCs.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            selector: selector(data_selector(name)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(common_labels(name)),
                    annotations: Some(BTreeMap::from([
                        (DEFAULT_CONTAINER_ANNOTATION.into(), REDIS_CONTAINER.into()),
                        // A changed redis.conf rolls the pods (highest ordinal first, the leader
                        // last); settings the instance manager can CONFIG SET never touch it.
                        (
                            CONFIG_HASH_ANNOTATION.into(),
                            config_hash(&redis_conf(c.rc)),
                        ),
                    ])),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![claim]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether redis-server answers on its port, every `period` seconds.
fn redis_port_probe(period: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(REDIS_PORT_NAME.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    }
}

/// GET `path` on the instance manager's port.
fn http_probe(path: &str, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(METRICS_PORT_NAME.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}
