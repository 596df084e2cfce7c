//! What a `RedisCluster` becomes: pure functions from the resource to the Kubernetes objects it
//! owns. No client here; the reconciler applies what these return with server-side apply.
//!
//! Why a StatefulSet and not operator-managed pods: it gives stable pod names (`<name>-N`, which
//! the spec's designated leader "ordinal 0" relies on), a PVC per pod that survives pod deletion,
//! stable DNS through the headless Service (peers replicate from `<pod>.<name>-headless`, never a
//! pod IP), and a rolling update that goes from the highest ordinal down, so the designated
//! leader (pod 0) restarts last. Its limits are accepted knowingly: scale-down and rolling updates
//! always go from the highest ordinal down, which after a failover may be the primary (the
//! restart is then a failover; README "Known limitations"), and per-pod labels (`redis.io/role`,
//! `redis.io/instance`) and the topology annotation are patched onto the pods by the operator.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::{Resource, ResourceExt};
use redis_cluster_api::labels::{self as l};
use redis_cluster_api::{ClusterMode, RedisCluster};
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
    /// The Sentinel quorum, present exactly in `mode: sentinel`. Its StatefulSet is scaled to 0
    /// (not removed) while the cluster replicates an external source, so promotion only changes
    /// `replicas`.
    pub sentinel: Option<SentinelObjects>,
}

/// The objects of a `mode: sentinel` cluster's Sentinels, in apply order.
#[derive(Clone, Debug)]
pub struct SentinelObjects {
    /// `<name>-sentinel-headless` (peer DNS), then `<name>-sentinel` (clients).
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
        if let Some(sentinel) = &self.sentinel {
            out.extend(
                sentinel
                    .services
                    .iter()
                    .map(|s| to_value(s, "v1", "Service")),
            );
            out.push(to_value(&sentinel.pdb, "policy/v1", "PodDisruptionBudget"));
            out.push(to_value(
                &sentinel.network_policy,
                "networking.k8s.io/v1",
                "NetworkPolicy",
            ));
            out.push(to_value(&sentinel.statefulset, "apps/v1", "StatefulSet"));
        }
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

/// Label carried by the Sentinel pods of cluster `name` (value: `name`) and selected by their
/// Services. Sentinel pods do not carry [`l::CLUSTER`], so no data-pod selector (Services, PDB,
/// NetworkPolicy, the operator's pod list) ever matches them.
pub const SENTINEL_LABEL: &str = "redis.io/sentinel";

/// Labels on the Sentinel pods and on every object that exists only for them.
pub fn sentinel_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (SENTINEL_LABEL.into(), name.into()),
        (l::APP_NAME.into(), "redis".into()),
        (l::APP_INSTANCE.into(), name.into()),
        (l::APP_COMPONENT.into(), "sentinel".into()),
        (l::APP_MANAGED_BY.into(), l::MANAGER.into()),
    ])
}

pub fn headless_service(name: &str) -> String {
    format!("{name}-headless")
}

/// The headless Service giving each Sentinel pod a stable DNS name (peers, `announce-ip`).
pub fn sentinel_headless_service(name: &str) -> String {
    format!("{}-headless", l::sentinel_service(name))
}

/// The stable address of data pod `pod` of cluster `name`: `<pod>.<name>-headless.<ns>.svc`.
/// Sentinels and replicas address Redis by it, never by a pod IP.
pub fn pod_fqdn(name: &str, ns: &str, pod: &str) -> String {
    format!("{pod}.{}.{ns}.svc", headless_service(name))
}

/// The stable address of Sentinel `ordinal`: `<name>-sentinel-<n>.<name>-sentinel-headless.<ns>.svc`.
pub fn sentinel_fqdn(name: &str, ns: &str, ordinal: u32) -> String {
    format!(
        "{}.{}.{ns}.svc",
        l::sentinel_pod_name(name, ordinal),
        sentinel_headless_service(name)
    )
}

/// The Sentinel quorum for `replicas` Sentinels: a majority.
pub fn sentinel_quorum(replicas: i32) -> i32 {
    replicas / 2 + 1
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
    let mut config_data = json!({"redis.conf": redis_conf(rc)});
    if rc.spec.mode == ClusterMode::Sentinel {
        config_data[SENTINEL_CONF_KEY] = sentinel_conf(rc).into();
        // Read by the init scripts of both kinds of pod when no Sentinel answers: the primary
        // the operator last recorded (empty when none).
        config_data[PRIMARY_KEY] = recorded_primary(rc, &ns).unwrap_or_default().into();
    }
    let config = typed(json!({
        "metadata": meta(config_map_name(&name)),
        "data": config_data,
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
        "spec": statefulset_spec(rc, &name, &ns, settings),
    }));
    let sentinel = (rc.spec.mode == ClusterMode::Sentinel).then(|| {
        let meta = |obj_name: String| {
            json!({
                "name": obj_name,
                "namespace": ns,
                "labels": sentinel_labels(&name),
                "ownerReferences": [owner],
            })
        };
        sentinel_objects(rc, &name, &ns, settings, meta)
    });
    Owned {
        service_account,
        role,
        role_binding,
        config,
        services,
        pdb,
        network_policy,
        statefulset,
        sentinel,
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
    // Only this cluster's instance managers and Sentinels may re-point a pod: REPLICAOF gets a
    // per-cluster name (they are told it) and SLAVEOF is gone. Anyone else holding the password,
    // such as the source region's Sentinels "fixing" a DR pod to the source primary's own address
    // instead of the stable endpoint, gets an unknown-command error.
    c.push_str(&format!(
        "rename-command SLAVEOF \"\"\nrename-command REPLICAOF {}\n",
        cluster_replicaof_command(rc)
    ));
    if spec.auth_secret.is_some() {
        c.push_str("include /run/redis/auth.conf\n");
    }
    c
}

/// The name `REPLICAOF` has in this cluster's pods (see [`redis_conf`]).
pub fn cluster_replicaof_command(rc: &RedisCluster) -> String {
    redis_cluster_api::topology::replicaof_command(
        rc.metadata.uid.as_deref(),
        &rc.namespace().unwrap_or_default(),
        &rc.name_any(),
    )
}

/// FNV-1a of the config: stable across builds and platforms (unlike `DefaultHasher`).
fn config_hash(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    format!("{hash:016x}")
}

/// Key of the ConfigMap holding [`sentinel_conf`] (mounted at `/etc/redis/conf/sentinel.conf`).
const SENTINEL_CONF_KEY: &str = "sentinel.conf";
/// Key of the ConfigMap holding the stable address of the primary the operator last recorded
/// (`status.currentPrimary`), empty when none; mounted at `/etc/redis/conf/primary`.
const PRIMARY_KEY: &str = "primary";

/// `status.currentPrimary` as a stable address, if it names a pod of this cluster.
fn recorded_primary(rc: &RedisCluster, ns: &str) -> Option<String> {
    let name = rc.name_any();
    let pod = rc.status.as_ref()?.current_primary.as_ref()?;
    l::ordinal_of(&name, pod)?;
    Some(pod_fqdn(&name, ns, pod))
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
///
/// In `mode: sentinel` the pod spec also sets these variables (unset otherwise, which keeps the
/// standalone behaviour above):
///
/// - `ANNOUNCE_HOST`: the pod's stable address, written as `replica-announce-ip` so Sentinels
///   know replicas by name, never by pod IP.
/// - `SENTINEL_HOST` (port `SENTINEL_PORT`, default 26379) and `MASTER_NAME`: when no
///   `replicaof` was persisted, the Sentinels are asked (`SENTINEL get-master-addr-by-name`,
///   3 s at most, password in `REDISCLI_AUTH` read from the file) who the primary is; if it is
///   another host the pod starts as its replica. If none answers, the pod starts as a replica of
///   the primary the operator recorded (`/etc/redis/conf/primary`), else of `DEFAULT_PRIMARY`
///   (pod 0), unless that is itself. `REDIS_PORT` (default 6379) is the port of every data pod.
///
/// Either way the pod boots fenced; its instance manager does the rest.
pub const INIT_SCRIPT: &str = r#"set -eu
umask 077
keep=$(grep -E '^(replicaof|slaveof) ' /data/redis.conf 2>/dev/null || true)
announce=${ANNOUNCE_HOST:-}
if [ -z "$keep" ] && [ -n "${SENTINEL_HOST:-}" ]; then
  valid() { case "$1" in ''|*[!A-Za-z0-9.:-]*) return 1;; esac; }
  if [ -f /etc/redis/auth/password ]; then
    REDISCLI_AUTH=$(tr -d '\n' < /etc/redis/auth/password); export REDISCLI_AUTH
  fi
  self="$announce:${REDIS_PORT:-6379}"
  answer=$(timeout 3 redis-cli -h "$SENTINEL_HOST" -p "${SENTINEL_PORT:-26379}" SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null || true)
  host=$(printf '%s\n' "$answer" | sed -n 1p)
  port=$(printf '%s\n' "$answer" | sed -n 2p)
  if ! valid "$host" || ! valid "$port"; then
    host=
    [ ! -s /etc/redis/conf/primary ] || host=$(tr -d ' \n' < /etc/redis/conf/primary)
    valid "$host" || host=${DEFAULT_PRIMARY:-}
    port=${REDIS_PORT:-6379}
  fi
  if valid "$host" && [ "$host:$port" != "$self" ]; then
    keep="replicaof $host $port"
  fi
fi
{
  printf 'include /etc/redis/conf/redis.conf\n'
  [ -z "$announce" ] || printf 'replica-announce-ip %s\n' "$announce"
  [ -z "$keep" ] || printf '%s\n' "$keep"
} > /data/redis.conf.new
mv /data/redis.conf.new /data/redis.conf
if [ -f /etc/redis/auth/password ]; then
  pw() { sed -e 's/[\\"]/\\&/g' /etc/redis/auth/password | tr -d '\n'; }
  { printf 'requirepass "'; pw; printf '"\nmasterauth "'; pw; printf '"\n'; } > /run/redis/auth.conf
fi
"#;

/// The line of [`sentinel_conf`] that stands where the `sentinel monitor` line belongs.
pub const SENTINEL_MONITOR_PLACEHOLDER: &str = "# sentinel monitor: added at start";

/// The static part of every Sentinel's configuration (the ConfigMap key `sentinel.conf`). No
/// secret, no address: the Sentinel's init script ([`SENTINEL_INIT_SCRIPT`]) completes it.
///
/// A caller running Sentinels from it elsewhere (the e2e drill) must
///
/// 1. replace the line [`SENTINEL_MONITOR_PLACEHOLDER`] with
///    `sentinel monitor <master> <host> <port> <quorum>` (see [`sentinel_monitor_line`], or use
///    [`sentinel_conf_with_monitor`]). It must stay there: `resolve-hostnames` has to come before
///    it, and the per-master options after it refer to the master it declares;
/// 2. append `sentinel announce-ip <address others reach this Sentinel at>` (and `port <n>` to
///    listen elsewhere than 26379; a later line wins);
/// 3. when the cluster has an `authSecret`, append the three lines of [`sentinel_auth_conf`]:
///    `requirepass "<pw>"`, `sentinel auth-pass <master> "<pw>"`, `sentinel sentinel-pass "<pw>"`
///    (backslashes and double quotes escaped with a backslash).
///
/// The Sentinel must be able to rewrite the resulting file.
pub fn sentinel_conf(rc: &RedisCluster) -> String {
    let s = rc.spec.sentinel_settings();
    let master = l::sentinel_master_name(&rc.name_any());
    format!(
        "# Managed by redis-operator: regenerated at every start.\n\
         port {port}\n\
         protected-mode no\n\
         sentinel resolve-hostnames yes\n\
         sentinel announce-hostnames yes\n\
         {SENTINEL_MONITOR_PLACEHOLDER}\n\
         sentinel down-after-milliseconds {master} {down}\n\
         sentinel failover-timeout {master} {failover}\n\
         sentinel parallel-syncs {master} 1\n\
         sentinel rename-command {master} SLAVEOF {replicaof}\n\
         sentinel rename-command {master} REPLICAOF {replicaof}\n",
        port = l::SENTINEL_PORT,
        down = s.down_after_milliseconds,
        failover = s.failover_timeout_milliseconds,
        replicaof = cluster_replicaof_command(rc),
    )
}

/// `sentinel monitor <master> <host> <port> <quorum>` for this cluster's Sentinels, the quorum
/// being a majority of `spec.sentinel.replicas`.
pub fn sentinel_monitor_line(rc: &RedisCluster, host: &str, port: u16) -> String {
    format!(
        "sentinel monitor {} {host} {port} {}",
        l::sentinel_master_name(&rc.name_any()),
        sentinel_quorum(rc.spec.sentinel_settings().replicas)
    )
}

/// [`sentinel_conf`] with its monitor line in place (step 1 of its contract).
pub fn sentinel_conf_with_monitor(rc: &RedisCluster, host: &str, port: u16) -> String {
    sentinel_conf(rc).replace(
        SENTINEL_MONITOR_PLACEHOLDER,
        &sentinel_monitor_line(rc, host, port),
    )
}

/// The authentication lines a Sentinel of this cluster needs (step 3 of [`sentinel_conf`]'s
/// contract), quoted exactly as [`SENTINEL_INIT_SCRIPT`] writes them. For callers that hold the
/// password anyway (tests, the drill); the operator never renders them.
pub fn sentinel_auth_conf(rc: &RedisCluster, password: &str) -> String {
    let pw: String = password
        .chars()
        .filter(|c| *c != '\n')
        .flat_map(|c| match c {
            '\\' | '"' => vec!['\\', c],
            _ => vec![c],
        })
        .collect();
    format!(
        "requirepass \"{pw}\"\nsentinel auth-pass {} \"{pw}\"\nsentinel sentinel-pass \"{pw}\"\n",
        l::sentinel_master_name(&rc.name_any())
    )
}

/// Writes a Sentinel's `/data/sentinel.conf` (an emptyDir: the Sentinel rewrites it) at every
/// start: [`sentinel_conf`] from the ConfigMap with the monitor line in place, then
/// `sentinel announce-ip $ANNOUNCE_HOST` and, if the password file exists, the lines of
/// [`sentinel_auth_conf`] (printf and sed only: the password is never an argument or in the
/// Sentinel's environment).
///
/// The monitored primary: the first peer in `SENTINEL_PEERS` (`host:port ...`) that answers
/// `SENTINEL get-master-addr-by-name` within 2 s, so a restarted Sentinel joins the current
/// decision; else the primary the operator recorded (`PRIMARY_FILE`, host only, port
/// `REDIS_PORT`); else `DEFAULT_PRIMARY` (pod 0). `MASTER_NAME` and `QUORUM` are set by the pod
/// spec. Paths default to the pod's and can be overridden (`SENTINEL_CONF`, `SENTINEL_TEMPLATE`,
/// `PRIMARY_FILE`, `PASSWORD_FILE`), which the tests use.
pub const SENTINEL_INIT_SCRIPT: &str = r#"set -eu
umask 077
conf=${SENTINEL_CONF:-/data/sentinel.conf}
template=${SENTINEL_TEMPLATE:-/etc/redis/conf/sentinel.conf}
primary_file=${PRIMARY_FILE:-/etc/redis/conf/primary}
password_file=${PASSWORD_FILE:-/etc/redis/auth/password}
: "${MASTER_NAME:?}" "${QUORUM:?}" "${ANNOUNCE_HOST:?}"
valid() { case "$1" in ''|*[!A-Za-z0-9.:-]*) return 1;; esac; }
if [ -f "$password_file" ]; then
  REDISCLI_AUTH=$(tr -d '\n' < "$password_file"); export REDISCLI_AUTH
fi
host=
port=
for peer in ${SENTINEL_PEERS:-}; do
  answer=$(timeout 2 redis-cli -h "${peer%:*}" -p "${peer##*:}" SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null || true)
  host=$(printf '%s\n' "$answer" | sed -n 1p)
  port=$(printf '%s\n' "$answer" | sed -n 2p)
  if valid "$host" && valid "$port"; then break; fi
  host=
done
if [ -z "$host" ]; then
  [ ! -s "$primary_file" ] || host=$(tr -d ' \n' < "$primary_file")
  valid "$host" || host=${DEFAULT_PRIMARY:?}
  port=${REDIS_PORT:-6379}
fi
valid "$host"
valid "$port"
valid "$MASTER_NAME"
valid "$QUORUM"
{
  sed -e "s|^# sentinel monitor: added at start\$|sentinel monitor $MASTER_NAME $host $port $QUORUM|" "$template"
  printf 'sentinel announce-ip %s\n' "$ANNOUNCE_HOST"
  if [ -f "$password_file" ]; then
    pw() { sed -e 's/[\\"]/\\&/g' "$password_file" | tr -d '\n'; }
    printf 'requirepass "'; pw
    printf '"\nsentinel auth-pass %s "' "$MASTER_NAME"; pw
    printf '"\nsentinel sentinel-pass "'; pw; printf '"\n'
  fi
} > "$conf.new"
mv "$conf.new" "$conf"
"#;

/// Readiness and liveness of a Sentinel: it answers PING on its port. The password comes from the
/// mounted file through `REDISCLI_AUTH`, never an argument.
const SENTINEL_PROBE: &str = r#"[ ! -f /etc/redis/auth/password ] || { REDISCLI_AUTH=$(tr -d '\n' < /etc/redis/auth/password); export REDISCLI_AUTH; }
redis-cli -p 26379 PING | grep -qx PONG
"#;

/// The container securityContext of every container the operator creates.
fn restricted() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// The pod securityContext of every pod the operator creates.
fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true,
        // A high UID that no host account has; the data volume is made writable via fsGroup.
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn field_env(env: &str, path: &str) -> Value {
    json!({"name": env, "valueFrom": {"fieldRef": {"fieldPath": path}}})
}

fn env(env: &str, value: impl Into<Value>) -> Value {
    json!({"name": env, "value": value.into()})
}

/// Spread pods over nodes so one node loss takes one of them.
fn spread(match_labels: Value) -> Value {
    json!([{
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": match_labels},
    }])
}

fn statefulset_spec(rc: &RedisCluster, name: &str, ns: &str, settings: &Settings) -> Value {
    let spec = &rc.spec;
    let labels = common_labels(name);
    let restricted = restricted();
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
    let mut init_env = vec![];
    // Depends on the mode only, never on promotion: a promotion must not roll the data pods.
    if spec.mode == ClusterMode::Sentinel {
        init_env = vec![
            field_env("POD_NAME", "metadata.name"),
            env(
                "ANNOUNCE_HOST",
                format!("$(POD_NAME).{}.{ns}.svc", headless_service(name)),
            ),
            env(
                "SENTINEL_HOST",
                format!("{}.{ns}.svc", l::sentinel_service(name)),
            ),
            env("MASTER_NAME", l::sentinel_master_name(name)),
            env("DEFAULT_PRIMARY", pod_fqdn(name, ns, &l::pod_name(name, 0))),
        ];
        init_mounts
            .push(json!({"name": "config", "mountPath": "/etc/redis/conf", "readOnly": true}));
    }
    let init_containers = vec![json!({
        "name": "config",
        "image": settings.redis_image,
        "command": ["/bin/sh", "-c", INIT_SCRIPT],
        "env": init_env,
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
    let mut pod_spec = json!({
        "serviceAccountName": instance_manager_account(name),
        "automountServiceAccountToken": true,
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": 30,
        "securityContext": pod_security(),
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
        "topologySpreadConstraints": spread(json!({l::CLUSTER: name})),
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

/// The Sentinel quorum of a `mode: sentinel` cluster; `meta` gives an object its name, namespace,
/// Sentinel labels and owner.
fn sentinel_objects(
    rc: &RedisCluster,
    name: &str,
    ns: &str,
    settings: &Settings,
    meta: impl Fn(String) -> Value,
) -> SentinelObjects {
    let sentinel = rc.spec.sentinel_settings();
    let selector = json!({ SENTINEL_LABEL: name });
    let port = json!([{"name": "sentinel", "port": l::SENTINEL_PORT, "targetPort": "sentinel", "protocol": "TCP"}]);
    let services = vec![
        typed(json!({
            "metadata": meta(sentinel_headless_service(name)),
            // Peers must find each other before they are ready, as a restarted Sentinel asks them.
            "spec": {"selector": selector, "ports": port, "clusterIP": "None", "publishNotReadyAddresses": true},
        })),
        typed(json!({
            "metadata": meta(l::sentinel_service(name)),
            "spec": {"selector": selector, "ports": port},
        })),
    ];
    let pdb = typed(json!({
        "metadata": meta(format!("{}-pdb", l::sentinel_service(name))),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
    }));
    // Clients and peer Sentinels may come from anywhere, as for Redis itself (the data pods'
    // policy already admits the Sentinels on 6379: it restricts ports, not sources).
    let network_policy = typed(json!({
        "metadata": meta(l::sentinel_service(name)),
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": l::SENTINEL_PORT, "protocol": "TCP"}]}],
        },
    }));

    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": config_map_name(name)}}),
        // The Sentinel rewrites its config (epochs, peers, replicas); a restart starts afresh
        // and rejoins through its peers (see SENTINEL_INIT_SCRIPT).
        json!({"name": "data", "emptyDir": {"sizeLimit": "16Mi"}}),
    ];
    let mut init_mounts = vec![
        json!({"name": "data", "mountPath": "/data"}),
        json!({"name": "config", "mountPath": "/etc/redis/conf", "readOnly": true}),
    ];
    let mut mounts = vec![json!({"name": "data", "mountPath": "/data"})];
    if let Some(auth) = &rc.spec.auth_secret {
        volumes.push(json!({"name": "auth", "secret": {"secretName": auth.name, "defaultMode": 0o440, "items": [{"key": "password", "path": "password"}]}}));
        let mount = json!({"name": "auth", "mountPath": "/etc/redis/auth", "readOnly": true});
        init_mounts.push(mount.clone());
        // For the probes only.
        mounts.push(mount);
    }
    let peers: Vec<String> = (0..sentinel.replicas.max(0) as u32)
        .map(|i| format!("{}:{}", sentinel_fqdn(name, ns, i), l::SENTINEL_PORT))
        .collect();
    let probe =
        json!({"exec": {"command": ["/bin/sh", "-c", SENTINEL_PROBE]}, "timeoutSeconds": 3});
    let mut readiness = probe.clone();
    readiness["periodSeconds"] = 5.into();
    let mut liveness = probe;
    liveness["periodSeconds"] = 10.into();
    liveness["failureThreshold"] = 6.into();
    let mut pod_spec = json!({
        // No API access: the Sentinels only talk Redis.
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": 10,
        "securityContext": pod_security(),
        "initContainers": [{
            "name": "config",
            "image": settings.redis_image,
            "command": ["/bin/sh", "-c", SENTINEL_INIT_SCRIPT],
            // Everything here depends on the spec only (never on the primary of the moment), so
            // a failover does not roll the Sentinels; the recorded primary is read from a file.
            "env": [
                field_env("POD_NAME", "metadata.name"),
                env("ANNOUNCE_HOST", format!("$(POD_NAME).{}.{ns}.svc", sentinel_headless_service(name))),
                env("MASTER_NAME", l::sentinel_master_name(name)),
                env("QUORUM", sentinel_quorum(sentinel.replicas).to_string()),
                env("SENTINEL_PEERS", peers.join(" ")),
                env("DEFAULT_PRIMARY", pod_fqdn(name, ns, &l::pod_name(name, 0))),
            ],
            "volumeMounts": init_mounts,
            "securityContext": restricted(),
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
        }],
        "containers": [{
            "name": "sentinel",
            "image": settings.redis_image,
            "command": ["redis-sentinel", "/data/sentinel.conf"],
            "ports": [{"name": "sentinel", "containerPort": l::SENTINEL_PORT, "protocol": "TCP"}],
            "volumeMounts": mounts,
            "securityContext": restricted(),
            "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            "readinessProbe": readiness,
            "livenessProbe": liveness,
        }],
        "volumes": volumes,
        "topologySpreadConstraints": spread(selector.clone()),
    });
    if let Some(ns_sel) = &rc.spec.node_selector {
        pod_spec["nodeSelector"] = json!(ns_sel);
    }
    let replicas = if rc.spec.sentinels_active() {
        sentinel.replicas
    } else {
        // A cluster replicating an external source runs no Sentinel: none may promote one of
        // its pods against the source. Kept at 0 so promotion only scales it up.
        0
    };
    let statefulset = typed(json!({
        "metadata": meta(l::sentinel_service(name)),
        "spec": {
            "replicas": replicas,
            "serviceName": sentinel_headless_service(name),
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": sentinel_labels(name),
                    "annotations": {
                        "kubectl.kubernetes.io/default-container": "sentinel",
                        // New timings restart the Sentinels one at a time.
                        "redis.io/config-hash": config_hash(&sentinel_conf(rc)),
                    },
                },
                "spec": pod_spec,
            },
        },
    }));
    SentinelObjects {
        services,
        pdb,
        network_policy,
        statefulset,
    }
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
                .unwrap()[SENTINEL_LABEL],
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
            env["SENTINEL_PEERS"].starts_with(
                "redis-east-sentinel-0.redis-east-sentinel-headless.default.svc:26379 "
            )
        );
    }

    #[test]
    fn sentinel_conf_has_the_spec_timings_in_a_valid_order() {
        let mut rc = sample("prod-redis.yaml");
        rc.spec.sentinel = Some(redis_cluster_api::SentinelSpec {
            replicas: 3,
            down_after_milliseconds: 7000,
            failover_timeout_milliseconds: 90000,
        });
        let conf = sentinel_conf_with_monitor(
            &rc,
            "prod-redis-0.prod-redis-headless.production.svc",
            6379,
        );
        let lines: Vec<&str> = conf.lines().collect();
        let at = |prefix: &str| {
            lines
                .iter()
                .position(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("{prefix} missing:\n{conf}"))
        };
        let monitor = at(
            "sentinel monitor prod-redis prod-redis-0.prod-redis-headless.production.svc 6379 2",
        );
        assert!(at("port 26379") < monitor);
        assert!(
            at("sentinel resolve-hostnames yes") < monitor,
            "names resolve from the start"
        );
        assert!(at("sentinel announce-hostnames yes") < monitor);
        assert!(monitor < at("sentinel down-after-milliseconds prod-redis 7000"));
        assert!(monitor < at("sentinel failover-timeout prod-redis 90000"));
        assert!(monitor < at("sentinel parallel-syncs prod-redis 1"));
        // The script substitutes the placeholder by its exact text.
        assert!(sentinel_conf(&rc).contains(&format!("\n{SENTINEL_MONITOR_PLACEHOLDER}\n")));
        assert!(SENTINEL_INIT_SCRIPT.contains(&format!("s|^{SENTINEL_MONITOR_PLACEHOLDER}\\$|")));
        // Defaults when the spec says nothing.
        rc.spec.sentinel = None;
        let conf = sentinel_conf(&rc);
        assert!(conf.contains("sentinel down-after-milliseconds prod-redis 5000\n"));
        assert!(conf.contains("sentinel failover-timeout prod-redis 60000\n"));
    }

    #[test]
    fn sentinel_auth_lines_quote_like_the_init_scripts() {
        let rc = sample("prod-redis.yaml");
        assert_eq!(
            sentinel_auth_conf(&rc, "a \"b\\c\n"),
            "requirepass \"a \\\"b\\\\c\"\n\
             sentinel auth-pass prod-redis \"a \\\"b\\\\c\"\n\
             sentinel sentinel-pass \"a \\\"b\\\\c\"\n"
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
            let secrets: Vec<_> = pod
                .volumes
                .iter()
                .flatten()
                .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
                .collect();
            assert_eq!(secrets.len(), 1, "{file}");
        }
    }
}
