//! The Sentinels' StatefulSet (`mode: sentinel`): the quorum that elects the primary.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{Container, ExecAction, PodSpec, PodTemplateSpec, Probe};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use redis_cluster_api::names::{self, paths};

use super::pod::*;
use super::{Cluster, sentinel_labels, sentinel_selector};
use crate::config::{config_hash, sentinel_conf, sentinel_quorum};
use crate::scripts::{SENTINEL_INIT_SCRIPT, SENTINEL_PROBE};

pub(super) fn statefulset(c: &Cluster) -> StatefulSet {
    let rc = c.rc;
    let name = &c.name;
    let ns = &c.ns;
    let sentinel = rc.spec.sentinel_settings();
    let mut volumes = vec![
        config_volume(names::config_map(name)),
        // The Sentinel rewrites its config (epochs, peers, replicas); a restart starts afresh
        // and rejoins through its peers (see SENTINEL_INIT_SCRIPT).
        empty_dir(DATA_VOLUME, None, "16Mi"),
    ];
    let mut init_mounts = vec![
        mount(DATA_VOLUME, paths::DATA_DIR),
        read_only(CONFIG_VOLUME, paths::CONFIG_DIR),
    ];
    let mut mounts = vec![mount(DATA_VOLUME, paths::DATA_DIR)];
    if let Some(auth) = &rc.spec.auth_secret {
        volumes.push(password_volume(AUTH_VOLUME, &auth.name));
        let auth_mount = read_only(AUTH_VOLUME, paths::AUTH_DIR);
        init_mounts.push(auth_mount.clone());
        // For the probes only.
        mounts.push(auth_mount);
    }
    let peers: Vec<String> = (0..sentinel.replicas.max(0) as u32)
        .map(|i| {
            format!(
                "{}:{}",
                names::sentinel_fqdn(name, ns, i),
                names::SENTINEL_PORT
            )
        })
        .collect();
    let probe = Probe {
        exec: Some(ExecAction {
            command: Some(shell(SENTINEL_PROBE)),
        }),
        timeout_seconds: Some(3),
        ..Default::default()
    };
    let init = Container {
        name: INIT_CONTAINER.into(),
        image: Some(c.settings.redis_image.clone()),
        command: Some(shell(SENTINEL_INIT_SCRIPT)),
        // Everything here depends on the RedisCluster's spec only (never on the primary of the
        // moment), so a failover does not roll the Sentinels; the recorded primary is read from
        // a file.
        env: Some(vec![
            pod_name_env(),
            env(
                "ANNOUNCE_HOST",
                format!(
                    "{POD_NAME_REF}.{}",
                    names::service_domain(&names::sentinel_headless_service(name), ns)
                ),
            ),
            env("MASTER_NAME", names::sentinel_master_name(name)),
            env("QUORUM", sentinel_quorum(sentinel.replicas).to_string()),
            env("SENTINEL_PEERS", peers.join(" ")),
            env(
                "DEFAULT_PRIMARY",
                names::pod_fqdn(name, ns, &names::pod_name(name, 0)),
            ),
        ]),
        volume_mounts: Some(init_mounts),
        security_context: Some(restricted()),
        resources: Some(resources("10m", "16Mi", "32Mi")),
        ..Default::default()
    };
    let container = Container {
        name: SENTINEL_CONTAINER.into(),
        image: Some(c.settings.redis_image.clone()),
        // The Sentinel rewrites its file (with `auth-pass`) at every change: private too.
        command: Some(private_files(&[
            "redis-sentinel".to_string(),
            paths::sentinel_conf_file(),
        ])),
        ports: Some(vec![container_port(
            SENTINEL_PORT_NAME,
            names::SENTINEL_PORT,
        )]),
        volume_mounts: Some(mounts),
        security_context: Some(restricted()),
        resources: Some(resources("20m", "32Mi", "128Mi")),
        readiness_probe: Some(Probe {
            period_seconds: Some(5),
            ..probe.clone()
        }),
        liveness_probe: Some(Probe {
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..probe
        }),
        ..Default::default()
    };
    let pod = PodSpec {
        // No API access: the Sentinels only talk Redis.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(10),
        security_context: Some(pod_security()),
        init_containers: Some(vec![init]),
        containers: vec![container],
        volumes: Some(volumes),
        topology_spread_constraints: Some(spread(sentinel_selector(name))),
        node_selector: rc.spec.node_selector.clone(),
        ..Default::default()
    };
    let promoting = rc
        .spec
        .replica_mode
        .as_ref()
        .is_some_and(|rm| rm.enabled && rm.promote)
        && !rc.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == redis_cluster_api::cluster::conditions::REPLICA_MODE
                    && c.reason == redis_cluster_api::cluster::conditions::REASON_PROMOTED
            })
        });
    // Told to replicate a source while the Sentinels fail the primary over: the demotion
    // waits for them (the planner holds it, `Switchover=False/SentinelFailoverInProgress`),
    // and so does their scale-down, which would cut their failover short.
    let failing_over = rc
        .status
        .as_ref()
        .is_some_and(|s| s.sentinels_failing_over == Some(true));
    let replicas = if (rc.spec.sentinels_active() && !promoting) || failing_over {
        sentinel.replicas
    } else {
        // A cluster replicating an external source runs no Sentinel: none may promote one of
        // its pods against the source. Kept at 0 so promotion only scales it up, once the
        // promotion is complete (`ReplicaMode=Promoted`): Sentinels started earlier would
        // monitor the primary recorded before it (pod 0), not necessarily the pod promoted,
        // and fail over from a "primary" that is a replica.
        0
    };
    StatefulSet {
        metadata: c.sentinel_meta(names::sentinel_service(name)),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names::sentinel_headless_service(name)),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(rolling_update()),
            selector: selector(sentinel_selector(name)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(sentinel_labels(name)),
                    annotations: Some(BTreeMap::from([
                        (
                            DEFAULT_CONTAINER_ANNOTATION.into(),
                            SENTINEL_CONTAINER.into(),
                        ),
                        // New timings restart the Sentinels one at a time.
                        (
                            CONFIG_HASH_ANNOTATION.into(),
                            config_hash(&sentinel_conf(rc)),
                        ),
                    ])),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}
