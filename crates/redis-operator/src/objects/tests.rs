//! The objects each sample becomes: names, selectors, hardening, secrets only as files.

use std::collections::BTreeMap;

use redis_cluster_api::RedisCluster;
use redis_cluster_api::labels as l;

use super::*;

pub(crate) fn sample(file: &str) -> RedisCluster {
    let mut rc: RedisCluster = redis_test_support::samples::load(file);
    rc.metadata.uid = Some("uid-1".into());
    rc
}

/// The Secrets a pod mounts, once per volume (whole, or as a projected volume's sources).
fn secrets_mounted(pod: &k8s_openapi::api::core::v1::PodSpec) -> Vec<String> {
    pod.volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            v.secret
                .as_ref()
                .and_then(|s| s.secret_name.clone())
                .or_else(|| {
                    v.projected
                        .as_ref()?
                        .sources
                        .iter()
                        .flatten()
                        .find_map(|s| Some(s.secret.as_ref()?.name.clone()))
                })
        })
        .collect()
}

#[test]
fn the_spec_dr_sample_becomes_a_statefulset_with_both_secrets_mounted() {
    let owned = build(&sample("dr-redis.yaml"), &Settings::default());
    let sts = &owned.statefulset;
    assert_eq!(sts.metadata.name.as_deref(), Some("dr-redis"));
    assert_eq!(sts.metadata.namespace.as_deref(), Some("production"));
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(
        pod.containers[0].name, "redis",
        "redis-server must be the default container"
    );
    let secrets = secrets_mounted(pod);
    assert_eq!(secrets, ["dr-redis-auth", "prod-redis-auth"]);
    // Password rotation: `password` is required (a Secret without it fails the mount; Redis
    // never starts without a password), `previousPassword` is mounted while it exists.
    for v in pod
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.projected.is_some())
    {
        let sources = v.projected.as_ref().unwrap().sources.as_ref().unwrap();
        let keys: Vec<(String, Option<bool>)> = sources
            .iter()
            .filter_map(|s| s.secret.as_ref())
            .map(|s| (s.items.as_ref().unwrap()[0].key.clone(), s.optional))
            .collect();
        if keys.is_empty() {
            continue;
        }
        assert_eq!(
            keys,
            [
                ("password".to_string(), None),
                ("previousPassword".to_string(), Some(true))
            ],
            "{}",
            v.name
        );
        assert_eq!(v.projected.as_ref().unwrap().default_mode, Some(0o440));
    }
    let pvc = &spec.volume_claim_templates.as_ref().unwrap()[0];
    let size = &pvc
        .spec
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap()["storage"];
    assert_eq!(size.0, "100Gi");
    // Owned by the cluster: garbage-collected with it.
    assert_eq!(
        sts.metadata.owner_references.as_ref().unwrap()[0].kind,
        "RedisCluster"
    );
}

/// Issue 12: the instance manager records what the pod's data followed in a state file on the
/// data volume (it survives restarts of both containers and goes with the data), in a directory
/// the init script creates as the pod's user.
#[test]
fn the_instance_manager_keeps_its_state_file_on_the_data_volume() {
    let owned = build(&sample("dr-redis.yaml"), &Settings::default());
    let pod = owned.statefulset.spec.unwrap().template.spec.unwrap();
    let im = pod
        .containers
        .iter()
        .find(|c| c.name == "instance-manager")
        .unwrap();
    assert!(
        im.args
            .iter()
            .flatten()
            .any(|a| a == "--state-dir=/var/lib/redis-instance-manager"),
        "{:?}",
        im.args
    );
    let mount = im
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/var/lib/redis-instance-manager")
        .expect("state dir mounted");
    assert_eq!(mount.name, "data");
    assert_eq!(mount.sub_path.as_deref(), Some("instance-manager"));
    assert_ne!(mount.read_only, Some(true));
    assert!(crate::scripts::INIT_SCRIPT.contains("mkdir -p /data/instance-manager"));
}

#[test]
fn no_password_in_any_argument_or_config() {
    let owned = build(&sample("redis-west-tls.yaml"), &Settings::default());
    let all = serde_json::to_string(&owned.to_values()).unwrap();
    // The only way a password reaches Redis is the file mounted from the Secret.
    assert!(
        !all.contains("requirepass \""),
        "password material in a manifest"
    );
    assert!(!all.contains("--requirepass"));
    assert!(all.contains("include /run/redis/auth.conf"));
    assert!(all.contains("tls-replication yes"));
}

#[test]
fn services_follow_the_spec() {
    let owned = build(&sample("redis-west.yaml"), &Settings::default());
    let names: Vec<_> = owned
        .services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "redis-west-leader",
            "redis-west-replica",
            "redis-west-any",
            "redis-west-headless"
        ]
    );
    let leader = owned.services[0]
        .spec
        .as_ref()
        .unwrap()
        .selector
        .as_ref()
        .unwrap();
    assert_eq!(leader["redis.io/cluster"], "redis-west");
    assert_eq!(leader["redis.io/role"], "primary");
    let pod = owned
        .statefulset
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .clone()
        .unwrap();
    assert_eq!(
        pod.node_selector.unwrap()["topology.kubernetes.io/region"],
        "us-west-2"
    );
}

#[test]
fn pods_are_hardened() {
    let owned = build(&sample("dr-redis.yaml"), &Settings::default());
    let pod = owned.statefulset.spec.unwrap().template.spec.unwrap();
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
            &["ALL"]
        );
        assert!(c.resources.as_ref().unwrap().limits.is_some(), "{}", c.name);
    }
}

fn all_objects(owned: &Owned) -> String {
    serde_json::to_string(&owned.to_values()).unwrap()
}

#[test]
fn sentinel_objects_exist_exactly_in_sentinel_mode() {
    let owned = build(&sample("prod-redis.yaml"), &Settings::default());
    let sentinel = owned.sentinel.as_ref().expect("mode: sentinel");
    let names: Vec<_> = sentinel
        .services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        ["prod-redis-sentinel-headless", "prod-redis-sentinel"]
    );
    let headless = sentinel.services[0].spec.as_ref().unwrap();
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    assert_eq!(headless.publish_not_ready_addresses, Some(true));
    let port = &sentinel.services[1]
        .spec
        .as_ref()
        .unwrap()
        .ports
        .as_ref()
        .unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("sentinel"), 26379));
    let sts = sentinel.statefulset.spec.as_ref().unwrap();
    assert_eq!(
        sentinel.statefulset.metadata.name.as_deref(),
        Some("prod-redis-sentinel")
    );
    assert_eq!(sts.replicas, Some(3));
    assert_eq!(
        sts.service_name.as_deref(),
        Some("prod-redis-sentinel-headless")
    );
    assert_eq!(
        sentinel
            .statefulset
            .metadata
            .owner_references
            .as_ref()
            .unwrap()[0]
            .kind,
        "RedisCluster"
    );
    let config = owned.config.data.as_ref().unwrap();
    assert!(config.contains_key("sentinel.conf"));
    assert_eq!(config["primary"], "", "no primary recorded yet");

    for standalone in ["redis-west.yaml", "dr-redis.yaml", "redis-west-tls.yaml"] {
        let owned = build(&sample(standalone), &Settings::default());
        assert!(owned.sentinel.is_none(), "{standalone}");
        let all = all_objects(&owned);
        assert!(!all.contains("sentinel"), "{standalone}: {all}");
    }
}

#[test]
fn an_unpromoted_replica_mode_cluster_runs_no_sentinel() {
    let mut rc = sample("prod-redis.yaml");
    rc.spec.replica_mode = sample("dr-redis.yaml").spec.replica_mode;
    let replicas = |rc: &RedisCluster| {
        let owned = build(rc, &Settings::default());
        let sts = owned.sentinel.unwrap().statefulset;
        (
            sts.spec.as_ref().unwrap().replicas,
            sts.spec.unwrap().template,
        )
    };
    let (idle, idle_template) = replicas(&rc);
    assert_eq!(idle, Some(0));
    rc.spec.replica_mode.as_mut().unwrap().promote = true;
    // Not while the promotion is under way: Sentinels started now would monitor the primary
    // recorded before it, not necessarily the pod being promoted.
    let (promoting, _) = replicas(&rc);
    assert_eq!(promoting, Some(0));
    rc.status = Some(
        serde_json::from_value(serde_json::json!({"conditions": [{
            "type": "ReplicaMode", "status": "False", "reason": "Promoted",
            "message": "Cluster promoted to standalone (former source: prod-redis-us-east)",
            "lastTransitionTime": "2026-11-28T09:00:00Z"}]}))
        .unwrap(),
    );
    let (promoted, promoted_template) = replicas(&rc);
    assert_eq!(promoted, Some(3));
    // Promotion only scales: neither the Sentinel pods nor the data pods roll.
    assert_eq!(idle_template, promoted_template);
    let mut unpromoted = rc.clone();
    unpromoted.spec.replica_mode.as_mut().unwrap().promote = false;
    assert_eq!(
        build(&rc, &Settings::default())
            .statefulset
            .spec
            .unwrap()
            .template,
        build(&unpromoted, &Settings::default())
            .statefulset
            .spec
            .unwrap()
            .template
    );
}

/// A demotion (replica mode on a sentinel-mode cluster) waits while the Sentinels fail the
/// primary over, and their scale-down with it: cut short, their failover could leave a second
/// primary behind.
#[test]
fn the_sentinels_keep_running_while_they_fail_over() {
    let mut rc = sample("prod-redis.yaml");
    rc.spec.replica_mode = sample("dr-redis.yaml").spec.replica_mode;
    let replicas = |rc: &RedisCluster| {
        build(rc, &Settings::default())
            .sentinel
            .unwrap()
            .statefulset
            .spec
            .unwrap()
            .replicas
    };
    assert_eq!(replicas(&rc), Some(0));
    rc.status =
        Some(serde_json::from_value(serde_json::json!({"sentinelsFailingOver": true})).unwrap());
    assert_eq!(replicas(&rc), Some(3));
    rc.status = Some(serde_json::from_value(serde_json::json!({})).unwrap());
    assert_eq!(replicas(&rc), Some(0));
}

#[test]
fn sentinel_pods_match_no_data_pod_selector() {
    let owned = build(&sample("prod-redis.yaml"), &Settings::default());
    let sentinel = owned.sentinel.as_ref().unwrap();
    let sentinel_sts = sentinel.statefulset.spec.as_ref().unwrap();
    let sentinel_pod = sentinel_sts
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    let data_sts = owned.statefulset.spec.as_ref().unwrap();
    let data_pod = data_sts
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    let matches = |selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>| {
        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    assert!(
        !sentinel_pod.contains_key(l::CLUSTER),
        "the operator lists data pods by it"
    );
    assert_eq!(sentinel_pod[l::APP_COMPONENT], "sentinel");
    let data_selectors = owned
        .services
        .iter()
        .map(|s| s.spec.clone().unwrap().selector.unwrap())
        .chain([
            owned
                .pdb
                .spec
                .clone()
                .unwrap()
                .selector
                .unwrap()
                .match_labels
                .unwrap(),
            owned
                .network_policy
                .spec
                .clone()
                .unwrap()
                .pod_selector
                .unwrap()
                .match_labels
                .unwrap(),
            data_sts.selector.match_labels.clone().unwrap(),
            BTreeMap::from([(l::CLUSTER.to_string(), "prod-redis".to_string())]),
        ]);
    for selector in data_selectors {
        // The role is patched onto each pod by the operator, not in the template.
        assert!(
            selector.contains_key(l::ROLE) || matches(&selector, &data_pod),
            "{selector:?}"
        );
        assert!(
            !matches(&selector, &sentinel_pod),
            "{selector:?} selects Sentinels"
        );
    }
    let sentinel_selectors = sentinel
        .services
        .iter()
        .map(|s| s.spec.clone().unwrap().selector.unwrap())
        .chain([
            sentinel
                .pdb
                .spec
                .clone()
                .unwrap()
                .selector
                .unwrap()
                .match_labels
                .unwrap(),
            sentinel
                .network_policy
                .spec
                .clone()
                .unwrap()
                .pod_selector
                .unwrap()
                .match_labels
                .unwrap(),
            sentinel_sts.selector.match_labels.clone().unwrap(),
        ]);
    for selector in sentinel_selectors {
        assert!(matches(&selector, &sentinel_pod), "{selector:?}");
        assert!(
            !matches(&selector, &data_pod),
            "{selector:?} selects data pods"
        );
    }
    let policy = sentinel.network_policy.spec.as_ref().unwrap();
    let ports = policy.ingress.as_ref().unwrap()[0].ports.clone().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(
        ports[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(26379))
    );
}

#[test]
fn sentinel_pods_are_placed_and_hardened_like_data_pods() {
    let mut rc = sample("redis-east.yaml");
    rc.spec.sentinel = Some(redis_cluster_api::SentinelSpec {
        replicas: 5,
        ..Default::default()
    });
    let owned = build(&rc, &Settings::default());
    let sts = owned.sentinel.unwrap().statefulset.spec.unwrap();
    assert_eq!(sts.replicas, Some(5));
    let pod = sts.template.spec.unwrap();
    let data_pod = owned.statefulset.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.node_selector, data_pod.node_selector);
    assert_eq!(pod.security_context, data_pod.security_context);
    let spread = &pod.topology_spread_constraints.as_ref().unwrap()[0];
    let data_spread = &data_pod.topology_spread_constraints.as_ref().unwrap()[0];
    assert_eq!(spread.topology_key, data_spread.topology_key);
    assert_eq!(
        spread
            .label_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()[l::SENTINEL],
        "redis-east"
    );
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        assert_eq!(
            c.security_context, data_pod.containers[0].security_context,
            "{}",
            c.name
        );
        assert!(c.resources.as_ref().unwrap().limits.is_some(), "{}", c.name);
    }
    let sentinel = &pod.containers[0];
    assert!(sentinel.readiness_probe.is_some() && sentinel.liveness_probe.is_some());
    let init = &pod.init_containers.as_ref().unwrap()[0];
    let env: BTreeMap<_, _> = init
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(env["QUORUM"], "3");
    assert_eq!(env["MASTER_NAME"], "redis-east");
    assert_eq!(
        env["ANNOUNCE_HOST"],
        "$(POD_NAME).redis-east-sentinel-headless.default.svc"
    );
    assert_eq!(
        env["DEFAULT_PRIMARY"],
        "redis-east-0.redis-east-headless.default.svc"
    );
    assert_eq!(env["SENTINEL_PEERS"].split(' ').count(), 5);
    assert!(
        env["SENTINEL_PEERS"]
            .starts_with("redis-east-sentinel-0.redis-east-sentinel-headless.default.svc:26379 ")
    );
}

#[test]
fn the_recorded_primary_is_published_by_address_and_never_rolls_a_pod() {
    let mut rc = sample("prod-redis.yaml");
    let before = build(&rc, &Settings::default());
    rc.status = Some(redis_cluster_api::RedisClusterStatus {
        current_primary: Some("prod-redis-2".into()),
        ..Default::default()
    });
    let after = build(&rc, &Settings::default());
    assert_eq!(
        after.config.data.as_ref().unwrap()["primary"],
        "prod-redis-2.prod-redis-headless.production.svc"
    );
    assert_eq!(before.statefulset.spec, after.statefulset.spec);
    assert_eq!(
        before.sentinel.unwrap().statefulset.spec,
        after.sentinel.unwrap().statefulset.spec
    );
    // A name that is not one of this cluster's pods is not published.
    rc.status.as_mut().unwrap().current_primary = Some("other-0".into());
    let foreign = build(&rc, &Settings::default());
    assert_eq!(foreign.config.data.unwrap()["primary"], "");
}

#[test]
fn data_pods_ask_the_sentinels_only_in_sentinel_mode() {
    let init_env = |file: &str| {
        let owned = build(&sample(file), &Settings::default());
        let pod = owned.statefulset.spec.unwrap().template.spec.unwrap();
        let init = pod.init_containers.unwrap().remove(0);
        init.env
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect::<BTreeMap<_, _>>()
    };
    let env = init_env("prod-redis.yaml");
    assert_eq!(env["SENTINEL_HOST"], "prod-redis-sentinel.production.svc");
    assert_eq!(
        env["ANNOUNCE_HOST"],
        "$(POD_NAME).prod-redis-headless.production.svc"
    );
    assert_eq!(
        env["DEFAULT_PRIMARY"],
        "prod-redis-0.prod-redis-headless.production.svc"
    );
    assert!(
        init_env("redis-west.yaml").is_empty(),
        "standalone unchanged"
    );
}

#[test]
fn no_password_in_any_sentinel_object() {
    for file in [
        "prod-redis.yaml",
        "redis-east.yaml",
        "redis-east-min-sync.yaml",
    ] {
        let owned = build(&sample(file), &Settings::default());
        // Rendered configuration carries no credential line: the init scripts add them from
        // the mounted file at start.
        for (key, text) in owned.config.data.as_ref().unwrap() {
            for needle in ["requirepass", "masterauth", "auth-pass", "sentinel-pass"] {
                assert!(!text.contains(needle), "{file}: {key} has {needle}");
            }
        }
        // No Secret value is copied into an environment variable or an argument.
        let all = all_objects(&owned);
        assert!(!all.contains("secretKeyRef"), "{file}");
        assert!(!all.contains("--requirepass"), "{file}");
        assert!(!all.contains("redis-cli -a"), "{file}");
        // The password reaches the Sentinels only as a mounted file.
        let pod = owned
            .sentinel
            .unwrap()
            .statefulset
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        let secrets = secrets_mounted(&pod);
        assert_eq!(secrets.len(), 1, "{file}");
    }
}

/// Issue 13, least privilege: only the instance manager holds API credentials, and its Role
/// names the cluster's own data pods (it watches its pod with a `metadata.name` field
/// selector, which `resourceNames` allows); the Role follows `instances`.
#[test]
fn only_the_instance_manager_mounts_a_token_and_its_role_names_the_clusters_pods() {
    let mut rc = sample("dr-redis.yaml");
    let owned = build(&rc, &Settings::default());
    assert_eq!(
        owned.service_account.automount_service_account_token,
        Some(false)
    );
    let pod = owned.statefulset.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    let token_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let mounts = |name: &str| -> Vec<String> {
        let c = pod.containers.iter().find(|c| c.name == name).unwrap();
        c.volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.clone())
            .collect()
    };
    assert!(mounts("instance-manager").iter().any(|m| m == token_dir));
    assert!(
        !mounts("redis")
            .iter()
            .any(|m| m.starts_with("/var/run/secrets"))
    );
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert!(
        !init
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path.starts_with("/var/run/secrets"))
    );
    let access = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "kube-api-access")
        .and_then(|v| v.projected.as_ref())
        .expect("projected token volume");
    let sources = access.sources.as_ref().unwrap();
    assert!(sources[0].service_account_token.is_some());
    assert_eq!(
        sources[1].config_map.as_ref().unwrap().name,
        "kube-root-ca.crt"
    );

    let rule = &owned.role.rules.as_ref().unwrap()[0];
    assert_eq!(rule.resources.as_deref(), Some(&["pods".to_string()][..]));
    assert_eq!(rule.verbs, ["list", "watch"]);
    assert_eq!(
        rule.resource_names.as_deref(),
        Some(
            &[
                "dr-redis-0".to_string(),
                "dr-redis-1".into(),
                "dr-redis-2".into()
            ][..]
        )
    );
    rc.spec.instances = 5;
    let owned = build(&rc, &Settings::default());
    assert_eq!(
        owned.role.rules.as_ref().unwrap()[0]
            .resource_names
            .as_ref()
            .map(Vec::len),
        Some(5)
    );
}
