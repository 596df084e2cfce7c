//! What a `RedisCluster` becomes: pure functions from the resource to the Kubernetes objects it
//! owns. No client here; the reconciler applies what these return with server-side apply.
//!
//! Why a StatefulSet and not operator-managed pods: it gives stable pod names (`<name>-N`, which
//! the spec's designated leader "ordinal 0" relies on), a PVC per pod that survives pod deletion,
//! stable DNS through the headless Service (peers replicate from `<pod>.<name>-headless`, never a
//! pod IP), and a rolling update that goes from the highest ordinal down, so the designated
//! leader (pod 0) restarts last. Its limits are accepted knowingly: scale-down always removes the
//! highest ordinals (never pod 0, the only pod this operator ever makes primary), and per-pod
//! labels (`redis.io/role`, `redis.io/instance`) and the topology annotation are patched onto the
//! pods by the operator.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::{Resource, ResourceExt};
use redis_cluster_api::RedisCluster;
use redis_cluster_api::labels::{self as l};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Container images and knobs the operator is started with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub redis_image: String,
    pub instance_manager_image: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            redis_image: "redis:7.2".into(),
            instance_manager_image: "ghcr.io/example/redis-operator:0.1.0".into(),
        }
    }
}

/// Port of the instance manager's HTTP server (metrics, health, status).
pub const METRICS_PORT: u16 = 9121;
/// Port every Redis listens on.
pub const REDIS_PORT: u16 = 6379;

/// Everything the cluster owns except the pods' per-pod metadata, in apply order.
#[derive(Clone, Debug)]
pub struct Owned {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub config: ConfigMap,
    pub services: Vec<Service>,
    pub pdb: PodDisruptionBudget,
    pub network_policy: NetworkPolicy,
    pub statefulset: StatefulSet,
}

impl Owned {
    /// Every object as JSON, for `redis-operator render` and offline validation.
    pub fn to_values(&self) -> Vec<Value> {
        let mut out = vec![
            to_value(&self.service_account, "v1", "ServiceAccount"),
            to_value(&self.role, "rbac.authorization.k8s.io/v1", "Role"),
            to_value(
                &self.role_binding,
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
            ),
            to_value(&self.config, "v1", "ConfigMap"),
        ];
        out.extend(self.services.iter().map(|s| to_value(s, "v1", "Service")));
        out.push(to_value(&self.pdb, "policy/v1", "PodDisruptionBudget"));
        out.push(to_value(
            &self.network_policy,
            "networking.k8s.io/v1",
            "NetworkPolicy",
        ));
        out.push(to_value(&self.statefulset, "apps/v1", "StatefulSet"));
        out
    }
}

fn to_value<T: serde::Serialize>(obj: &T, api_version: &str, kind: &str) -> Value {
    let mut v = serde_json::to_value(obj).expect("k8s objects serialize");
    v["apiVersion"] = api_version.into();
    v["kind"] = kind.into();
    v
}

fn typed<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("builder JSON matches the k8s-openapi type")
}

/// Labels on every object of cluster `name`.
pub fn common_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (l::CLUSTER.into(), name.into()),
        (l::APP_NAME.into(), "redis".into()),
        (l::APP_INSTANCE.into(), name.into()),
        (l::APP_COMPONENT.into(), "redis".into()),
        (l::APP_MANAGED_BY.into(), l::MANAGER.into()),
    ])
}

pub fn headless_service(name: &str) -> String {
    format!("{name}-headless")
}

pub fn instance_manager_account(name: &str) -> String {
    format!("{name}-instance-manager")
}

pub fn config_map_name(name: &str) -> String {
    format!("{name}-config")
}

/// Build everything a cluster owns.
pub fn build(rc: &RedisCluster, settings: &Settings) -> Owned {
    let name = rc.name_any();
    let ns = rc.namespace().unwrap_or_else(|| "default".into());
    let owner = rc
        .controller_owner_ref(&())
        .expect("a stored RedisCluster has a uid");
    let meta = |obj_name: String| {
        json!({
            "name": obj_name,
            "namespace": ns,
            "labels": common_labels(&name),
            "ownerReferences": [owner],
        })
    };
    let selector = json!({ l::CLUSTER: name });
    let redis_port =
        json!([{"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}]);

    let service_account = typed(json!({
        "metadata": meta(instance_manager_account(&name)),
        "automountServiceAccountToken": true,
    }));
    // The instance managers watch their own pod (its topology annotation) and nothing else.
    let role = typed(json!({
        "metadata": meta(instance_manager_account(&name)),
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }));
    let role_binding = typed(json!({
        "metadata": meta(instance_manager_account(&name)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": instance_manager_account(&name)},
        "subjects": [{"kind": "ServiceAccount", "name": instance_manager_account(&name), "namespace": ns}],
    }));
    let config = typed(json!({
        "metadata": meta(config_map_name(&name)),
        "data": {"redis.conf": redis_conf(rc)},
    }));
    let service = |svc_name: String, selector: Value, headless: bool| -> Service {
        let mut spec = json!({"selector": selector, "ports": redis_port});
        if headless {
            spec["clusterIP"] = "None".into();
            // Peers must resolve each other before they are ready (a replica syncing is not).
            spec["publishNotReadyAddresses"] = true.into();
        }
        typed(json!({"metadata": meta(svc_name), "spec": spec}))
    };
    let services = vec![
        service(
            l::leader_service(&name),
            json!({l::CLUSTER: name, l::ROLE: l::ROLE_PRIMARY}),
            false,
        ),
        service(
            l::replica_service(&name),
            json!({l::CLUSTER: name, l::ROLE: l::ROLE_REPLICA}),
            false,
        ),
        service(l::any_service(&name), selector.clone(), false),
        service(headless_service(&name), selector.clone(), true),
    ];
    let pdb = typed(json!({
        "metadata": meta(format!("{name}-pdb")),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }));
    // Only Redis and the instance manager's HTTP port are reachable; clients, peers, the
    // other region and Prometheus may come from anywhere, so no source restriction.
    let network_policy = typed(json!({
        "metadata": meta(format!("{name}-redis")),
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [
                {"port": REDIS_PORT, "protocol": "TCP"},
                {"port": METRICS_PORT, "protocol": "TCP"},
            ]}],
        },
    }));
    let statefulset = typed(json!({
        "metadata": meta(name.clone()),
        "spec": statefulset_spec(rc, &name, settings),
    }));
    Owned {
        service_account,
        role,
        role_binding,
        config,
        services,
        pdb,
        network_policy,
        statefulset,
    }
}

/// redis.conf shared by every pod of the cluster. Secrets are not in it: the password is
/// included from a file the init container writes into a memory-backed volume.
pub fn redis_conf(rc: &RedisCluster) -> String {
    let spec = &rc.spec;
    let mut c = String::from("# Managed by redis-operator: edits are overwritten.\n");
    c.push_str("bind * -::*\nprotected-mode no\ndir /data\n");
    if spec.tls_secret.is_some() {
        c.push_str(
            "port 0\ntls-port 6379\n\
             tls-cert-file /etc/redis/tls/tls.crt\ntls-key-file /etc/redis/tls/tls.key\n\
             tls-ca-cert-file /etc/redis/tls/ca.crt\ntls-replication yes\ntls-auth-clients optional\n",
        );
    } else {
        c.push_str("port 6379\n");
    }
    c.push_str("appendonly yes\nappendfsync everysec\nreplica-read-only yes\n");
    // Fenced until told: Redis starts as a primary, so a new or restarted pod would accept
    // writes nobody asked for. It refuses them until its instance manager applies the
    // operator's topology (which sets min-replicas-to-write to the cluster's real value).
    c.push_str("min-replicas-to-write 1000000\nmin-replicas-max-lag 10\n");
    // Diskless full sync without the default 5 s wait for more replicas: after a promotion the
    // replicas continue partially, and a lone new replica should not wait. Nothing here depends
    // on `instances`, so scaling never restarts pods.
    c.push_str("repl-diskless-sync yes\nrepl-diskless-sync-delay 0\n");
    if spec.auth_secret.is_some() {
        c.push_str("include /run/redis/auth.conf\n");
    }
    c
}

/// FNV-1a of the config: stable across builds and platforms (unlike `DefaultHasher`).
fn config_hash(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    format!("{hash:016x}")
}

/// Prepares the pod's Redis configuration before redis-server starts:
///
/// - `/data/redis.conf`, the file redis-server runs with, is written fresh at every start: it
///   includes the operator's template (the ConfigMap) and keeps only the `replicaof` line the
///   instance manager persisted there with `CONFIG REWRITE`. A restarted replica thus comes back
///   as a replica of the same upstream and resumes with a partial resync; everything else comes
///   from the current template (so a template change always takes effect) and from the instance
///   manager, which re-applies its topology.
/// - `/run/redis/auth.conf` (memory-backed) gets `requirepass`/`masterauth` from the mounted
///   Secret, without the password ever being a process argument (printf is a shell builtin; sed
///   reads the file).
pub const INIT_SCRIPT: &str = r#"set -eu
umask 077
keep=$(grep -E '^(replicaof|slaveof) ' /data/redis.conf 2>/dev/null || true)
{ printf 'include /etc/redis/conf/redis.conf\n'; [ -z "$keep" ] || printf '%s\n' "$keep"; } > /data/redis.conf.new
mv /data/redis.conf.new /data/redis.conf
if [ -f /etc/redis/auth/password ]; then
  pw() { sed -e 's/[\\"]/\\&/g' /etc/redis/auth/password | tr -d '\n'; }
  { printf 'requirepass "'; pw; printf '"\nmasterauth "'; pw; printf '"\n'; } > /run/redis/auth.conf
fi
"#;

fn statefulset_spec(rc: &RedisCluster, name: &str, settings: &Settings) -> Value {
    let spec = &rc.spec;
    let labels = common_labels(name);
    let restricted = json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": config_map_name(name)}}),
        json!({"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}),
        json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}),
    ];
    let mut redis_mounts = vec![
        json!({"name": "data", "mountPath": "/data"}),
        json!({"name": "config", "mountPath": "/etc/redis/conf", "readOnly": true}),
        json!({"name": "run", "mountPath": "/run/redis", "readOnly": true}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    let mut im_mounts = vec![];
    let mut im_args = vec![
        format!("--cluster={name}"),
        format!("--redis-addr=127.0.0.1:{REDIS_PORT}"),
        format!("--http-addr=0.0.0.0:{METRICS_PORT}"),
        "--log-format=json".to_string(),
    ];
    let mut init_mounts = vec![
        json!({"name": "data", "mountPath": "/data"}),
        json!({"name": "run", "mountPath": "/run/redis"}),
    ];
    if let Some(auth) = &spec.auth_secret {
        volumes.push(json!({"name": "auth", "secret": {"secretName": auth.name, "defaultMode": 0o440, "items": [{"key": "password", "path": "password"}]}}));
        let mount = json!({"name": "auth", "mountPath": "/etc/redis/auth", "readOnly": true});
        im_mounts.push(mount.clone());
        init_mounts.push(mount);
        im_args.push("--redis-password-file=/etc/redis/auth/password".into());
    }
    let init_containers = vec![json!({
        "name": "config",
        "image": settings.redis_image,
        "command": ["/bin/sh", "-c", INIT_SCRIPT],
        "volumeMounts": init_mounts,
        "securityContext": restricted,
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
    })];
    if let Some(source_secret) = spec
        .replica_mode
        .as_ref()
        .and_then(|r| r.source.as_ref())
        .and_then(|s| s.auth_secret_name.as_ref())
        .filter(|n| !n.is_empty())
    {
        volumes.push(json!({"name": "source-auth", "secret": {"secretName": source_secret, "defaultMode": 0o440, "items": [{"key": "password", "path": "password"}]}}));
        im_mounts.push(
            json!({"name": "source-auth", "mountPath": "/etc/redis/source", "readOnly": true}),
        );
    }
    if let Some(tls) = &spec.tls_secret {
        volumes
            .push(json!({"name": "tls", "secret": {"secretName": tls.name, "defaultMode": 0o440}}));
        let mount = json!({"name": "tls", "mountPath": "/etc/redis/tls", "readOnly": true});
        redis_mounts.push(mount.clone());
        im_mounts.push(mount);
        im_args.extend([
            "--tls-ca-file=/etc/redis/tls/ca.crt".to_string(),
            "--tls-cert-file=/etc/redis/tls/tls.crt".to_string(),
            "--tls-key-file=/etc/redis/tls/tls.key".to_string(),
        ]);
    }
    let field_env = |env: &str, path: &str| json!({"name": env, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let mut pod_spec = json!({
        "serviceAccountName": instance_manager_account(name),
        "automountServiceAccountToken": true,
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": true,
            // A high UID that no host account has; the data volume is made writable via fsGroup.
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": init_containers,
        "containers": [
            {
                // First container: `kubectl exec <pod> -- redis-cli` reaches Redis, as the spec does.
                "name": "redis",
                "image": settings.redis_image,
                // A writable main file on the data volume (see INIT_SCRIPT), so the instance
                // manager's CONFIG REWRITE can persist `replicaof` across restarts.
                "command": ["redis-server", "/data/redis.conf"],
                "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
                "volumeMounts": redis_mounts,
                "securityContext": restricted,
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
                // Liveness only asks whether redis-server answers on its port: a replica whose
                // cross-region link is down must not be restarted for it.
                "livenessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 10, "failureThreshold": 6},
                "startupProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 2, "failureThreshold": 150},
                "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5},
            },
            {
                "name": "instance-manager",
                "image": settings.instance_manager_image,
                "command": ["redis-instance-manager"],
                "args": im_args,
                "env": [
                    field_env("POD_NAME", "metadata.name"),
                    field_env("POD_NAMESPACE", "metadata.namespace"),
                ],
                "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
                "volumeMounts": im_mounts,
                "securityContext": restricted,
                "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 3},
                // Ready = serves data as its role requires (primary writable, replica linked).
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 2, "failureThreshold": 2},
            },
        ],
        "volumes": volumes,
        // Spread pods over nodes so one node loss takes one instance.
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {l::CLUSTER: name}},
        }],
    });
    if let Some(ns_sel) = &spec.node_selector {
        pod_spec["nodeSelector"] = json!(ns_sel);
    }
    let mut pvc_spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage.size}},
    });
    if let Some(class) = &spec.storage.storage_class {
        pvc_spec["storageClassName"] = class.clone().into();
    }
    json!({
        "replicas": spec.instances,
        "serviceName": headless_service(name),
        // Parallel: a replica-mode pod that cannot reach the source is never Ready; it must not
        // block the creation of the next ordinal.
        "podManagementPolicy": "Parallel",
        "updateStrategy": {"type": "RollingUpdate"},
        // Scale-down and deletion keep the data unless the user deletes the PVCs.
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        "selector": {"matchLabels": {l::CLUSTER: name}},
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": {
                    "kubectl.kubernetes.io/default-container": "redis",
                    // A changed redis.conf rolls the pods (highest ordinal first, the leader
                    // last); settings the instance manager can CONFIG SET never touch it.
                    "redis.io/config-hash": config_hash(&redis_conf(rc)),
                },
            },
            "spec": pod_spec,
        },
        "volumeClaimTemplates": [{
            "metadata": {"name": "data", "labels": {l::CLUSTER: name}},
            "spec": pvc_spec,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(file: &str) -> RedisCluster {
        let text = std::fs::read_to_string(format!(
            "{}/../../config/samples/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let mut rc: RedisCluster = serde_yaml::from_str(&text).unwrap();
        rc.metadata.uid = Some("uid-1".into());
        rc
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
        let secrets: Vec<_> = pod
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
            .collect();
        assert_eq!(secrets, ["dr-redis-auth", "prod-redis-auth"]);
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
}
