//! The `RedisCluster` custom resource.
//!
//! Doc comments on these types become the descriptions `kubectl explain rediscluster.spec...`
//! shows, so they are written for the people who operate Redis, not for Rust readers.

// clippy reads the repeated `type_ = ...` of distinct `printcolumn(...)` entries as duplicated
// attributes; they are separate columns.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Desired state of the Redis deployment.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "redis.io",
    version = "v1",
    kind = "RedisCluster",
    plural = "redisclusters",
    singular = "rediscluster",
    shortname = "rdc",
    category = "redis",
    namespaced,
    status = "RedisClusterStatus",
    derive = "PartialEq",
    doc = "A Redis deployment: one primary and its replicas, optionally watched by Sentinel, optionally replicating an external Redis primary in another region (replica mode) until promoted.",
    printcolumn(
        name = "Instances",
        type_ = "integer",
        json_path = ".spec.instances",
        description = "Desired number of Redis pods"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyInstances",
        description = "Redis pods serving data as their role requires"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "standalone or sentinel"
    ),
    printcolumn(
        name = "Primary",
        type_ = "string",
        json_path = ".status.currentPrimary",
        description = "The pod that is primary (or, in replica mode, the designated leader)"
    ),
    printcolumn(
        name = "Replicating From",
        type_ = "string",
        json_path = ".status.replicatingFrom",
        description = "The external source in replica mode, or 'promoted'"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.minSyncReplicas) || self.minSyncReplicas < self.instances").message("minSyncReplicas must be less than instances: the primary itself cannot acknowledge its own writes, so at most instances-1 replicas can").field_path(".minSyncReplicas"))]
#[x_kube(validation = Rule::new("self.mode == oldSelf.mode").message("mode cannot be changed on an existing cluster: its Sentinels (or their absence) decide failover; create a new RedisCluster with the other mode and replicate into it").field_path(".mode"))]
#[serde(rename_all = "camelCase")]
pub struct RedisClusterSpec {
    /// Number of Redis pods, named `<name>-0` to `<name>-<instances-1>`. Pod 0 is the designated
    /// leader: the first primary, or in replica mode the default promotion target (a promotion
    /// makes primary the pod holding the most data, pod 0 unless another holds more). After a
    /// promotion or a failover inside the cluster the primary may be another pod: see
    /// `status.currentPrimary`.
    #[serde(default = "default_instances")]
    #[schemars(range(min = 1))]
    pub instances: i32,

    /// How failover inside this cluster is decided. `standalone`: the operator manages the
    /// primary. `sentinel`: a Sentinel quorum elects the primary and the operator follows it.
    #[serde(default)]
    pub mode: ClusterMode,

    /// Persistent storage for each Redis pod's data directory.
    pub storage: StorageSpec,

    /// Secret holding the Redis password under the key `password`. Clients, replicas and
    /// Sentinels authenticate with it. It is mounted as a file, never passed as an argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<SecretReference>,

    /// Secret of type `kubernetes.io/tls` (keys `tls.crt`, `tls.key`, `ca.crt`). When set, Redis
    /// serves TLS and replicates over TLS, including from the external source in replica mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<SecretReference>,

    /// Node labels the Redis pods must run on, e.g. `topology.kubernetes.io/region: us-west-2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Number of replicas that must be connected (lagging at most a few seconds) for the primary
    /// to accept writes (`min-replicas-to-write`). Limits what a primary cut off from its
    /// replicas can accept, so a lost region loses less. Must be less than `instances`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_sync_replicas: Option<i32>,

    /// Run this cluster as a replica of an external Redis primary (for example in another region),
    /// and promote it to a standalone primary when that region is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_mode: Option<ReplicaModeSpec>,

    /// The Sentinel quorum of `mode: sentinel` (defaults when unset). Ignored in standalone mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<SentinelSpec>,

    /// CPU and memory of each pod's Redis container. Default: requests 100m CPU and 256Mi,
    /// limit 1Gi of memory. Redis's `maxmemory` follows the memory limit, leaving room for
    /// what Redis holds outside its dataset (the replication backlog and replicas' output
    /// buffers) and for the copy-on-write pages of its forks (a full sync, an AOF rewrite):
    /// `maxmemory = (limit - replicationBacklogSize - replica output buffer) x 2/3`. Without a
    /// memory limit Redis gets no `maxmemory`. A replica never evicts: size the limit of a DR
    /// cluster for the source's dataset, or its pods are OOM-killed during their first sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,

    /// CPU and memory of each pod's instance-manager container. Default: requests 20m CPU and
    /// 32Mi, limit 64Mi of memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_manager_resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,

    /// What Redis does at `maxmemory` (`maxmemory-policy`): `noeviction` (the default: writes
    /// fail, nothing is lost silently), or evict keys, e.g. `allkeys-lru` for a cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxmemory_policy: Option<MaxmemoryPolicy>,

    /// Bytes of its replication stream each Redis keeps for replicas that reconnect
    /// (`repl-backlog-size`), as a Kubernetes quantity such as `128Mi` or `1Gi`. A replica whose
    /// link is down while more than this is written can only come back with a full resync of
    /// the whole dataset (over the WAN, for a DR cluster replicating this one). Size it for the
    /// longest outage to ride out at the peak write rate: 60 s at 2 MiB/s needs 120 MiB. Each
    /// pod uses up to this much memory for it. Default `128Mi` (Redis's own default is 1 MiB:
    /// about half a second at 2 MiB/s). The replicas' metric
    /// `redis_replication_backlog_outage_seconds` says how long an outage it absorbs now.
    /// Changing it restarts the pods (it is part of their configuration file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(Ki|Mi|Gi|k|M|G)?$')").message("replicationBacklogSize must be a whole quantity such as 128Mi or 1Gi"))]
    pub replication_backlog_size: Option<String>,

    /// Operator-driven failover of `mode: standalone` clusters with more than one instance
    /// (including a DR cluster after promotion). Ignored in sentinel mode, where the Sentinels
    /// decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverSpec>,
}

/// The Sentinels of a `mode: sentinel` cluster. They run only while the cluster has its own
/// primary: a cluster replicating an external source (replica mode, not promoted) runs none.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SentinelSpec {
    /// Number of Sentinel pods (`<name>-sentinel-<n>`). The quorum is a majority of them, so use
    /// an odd number; 3 survives the loss of one.
    #[serde(default = "default_sentinels")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,

    /// How long the primary must be unreachable before a Sentinel considers it down
    /// (`down-after-milliseconds`). Lower fails over faster but also on short hiccups.
    #[serde(default = "default_down_after")]
    #[schemars(range(min = 1000, max = 600000))]
    pub down_after_milliseconds: i64,

    /// `failover-timeout` of the Sentinels: how long a failover attempt may take before another
    /// Sentinel may try again.
    #[serde(default = "default_failover_timeout")]
    #[schemars(range(min = 5000, max = 3600000))]
    pub failover_timeout_milliseconds: i64,
}

impl Default for SentinelSpec {
    fn default() -> Self {
        SentinelSpec {
            replicas: default_sentinels(),
            down_after_milliseconds: default_down_after(),
            failover_timeout_milliseconds: default_failover_timeout(),
        }
    }
}

fn default_sentinels() -> i32 {
    3
}
fn default_down_after() -> i64 {
    5000
}
fn default_failover_timeout() -> i64 {
    60000
}

/// Operator-driven failover in `mode: standalone`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverSpec {
    /// Fail over automatically. When false the operator only reports an unavailable primary
    /// (condition `PrimaryAvailable`) and a person decides.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// How long the primary must stay unavailable (no answer from its Redis through its instance
    /// manager) before the operator fences it and promotes the replica furthest along in its
    /// replication history (a primary that came back without its data is replaced at once).
    #[serde(default = "default_unavailable_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub primary_unavailable_seconds: i32,

    /// The most a replica may be behind to be promoted without asking: bytes of the replication
    /// stream between the highest offset any pod of the cluster is known to have reached (the
    /// failed primary's last report included) and the replica's own. A failover whose best
    /// replica is further behind waits (condition `PrimaryAvailable=False`, reason
    /// `FailoverBlocked`, with the numbers) until a closer replica reports, or until the user
    /// accepts the loss by naming the replica in the annotation `redis.io/promote-pod`.
    #[serde(default = "default_max_lag_bytes")]
    #[schemars(range(min = 0))]
    pub max_lag_bytes: i64,
}

impl Default for FailoverSpec {
    fn default() -> Self {
        FailoverSpec {
            enabled: true,
            primary_unavailable_seconds: default_unavailable_seconds(),
            max_lag_bytes: default_max_lag_bytes(),
        }
    }
}

/// 1 MiB: a replica streaming normally is a few kilobytes behind; one that lost its link for
/// minutes under load is far beyond.
fn default_max_lag_bytes() -> i64 {
    1 << 20
}

fn default_true() -> bool {
    true
}
fn default_unavailable_seconds() -> i32 {
    10
}

impl RedisClusterSpec {
    /// Whether the cluster's Sentinels run: `mode: sentinel` and the cluster has its own primary
    /// (no replica mode, or promoted). A cluster replicating an external source runs none, so no
    /// Sentinel can promote one of its pods against the source.
    pub fn sentinels_active(&self) -> bool {
        self.mode == ClusterMode::Sentinel
            && !self
                .replica_mode
                .as_ref()
                .is_some_and(|rm| rm.enabled && !rm.promote)
    }

    /// The Sentinel settings, with defaults filled in.
    pub fn sentinel_settings(&self) -> SentinelSpec {
        self.sentinel.clone().unwrap_or_default()
    }

    /// The standalone failover settings, with defaults filled in.
    pub fn failover_settings(&self) -> FailoverSpec {
        self.failover.clone().unwrap_or_default()
    }

    /// The Redis container's memory limit in bytes: the one in `resources`, or
    /// [`DEFAULT_REDIS_MEMORY_LIMIT`] when `resources` is unset. None when `resources` sets no
    /// memory limit (or one not understood).
    pub fn redis_memory_limit(&self) -> Option<u64> {
        match &self.resources {
            None => memory_bytes(DEFAULT_REDIS_MEMORY_LIMIT),
            Some(r) => memory_bytes(&r.limits.as_ref()?.get("memory")?.0),
        }
    }

    /// How each pod's Redis memory is laid out ([`MemoryPlan`]); None for a backlog size the
    /// schema would have refused.
    pub fn memory_plan(&self) -> Option<MemoryPlan> {
        let backlog = self.replication_backlog_bytes()?;
        const MIB: u64 = 1 << 20;
        let output_hard = (2 * backlog).max(256 * MIB);
        let output_soft = backlog.max(64 * MIB);
        let limit = self.redis_memory_limit();
        let maxmemory = limit.map(|l| l.saturating_sub(backlog + output_hard) / 3 * 2);
        Some(MemoryPlan {
            limit,
            backlog,
            output_hard,
            output_soft,
            maxmemory,
        })
    }

    /// `replicationBacklogSize` in bytes ([`DEFAULT_REPLICATION_BACKLOG`] when unset). None for a
    /// value the schema would have refused (a CRD installed before its rule).
    pub fn replication_backlog_bytes(&self) -> Option<u64> {
        quantity_bytes(
            self.replication_backlog_size
                .as_deref()
                .unwrap_or(DEFAULT_REPLICATION_BACKLOG),
        )
    }
}

/// Redis's `maxmemory-policy` values.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash,
)]
#[serde(rename_all = "kebab-case")]
pub enum MaxmemoryPolicy {
    #[default]
    Noeviction,
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl MaxmemoryPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            MaxmemoryPolicy::Noeviction => "noeviction",
            MaxmemoryPolicy::AllkeysLru => "allkeys-lru",
            MaxmemoryPolicy::AllkeysLfu => "allkeys-lfu",
            MaxmemoryPolicy::AllkeysRandom => "allkeys-random",
            MaxmemoryPolicy::VolatileLru => "volatile-lru",
            MaxmemoryPolicy::VolatileLfu => "volatile-lfu",
            MaxmemoryPolicy::VolatileRandom => "volatile-random",
            MaxmemoryPolicy::VolatileTtl => "volatile-ttl",
        }
    }
}

/// The Redis container's memory limit when `resources` is unset.
pub const DEFAULT_REDIS_MEMORY_LIMIT: &str = "1Gi";

/// Each pod's Redis memory: its limit, what Redis holds outside its dataset, and the dataset's
/// share (`maxmemory`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The container's memory limit, if any.
    pub limit: Option<u64>,
    /// `repl-backlog-size`.
    pub backlog: u64,
    /// The replicas' output-buffer limits (`client-output-buffer-limit replica <hard> <soft>
    /// 120`): during a full sync the primary queues the writes made meanwhile there and drops a
    /// replica above them; they follow the backlog (sized for the same write rate), never below
    /// Redis's own 256 MB / 64 MB.
    pub output_hard: u64,
    pub output_soft: u64,
    /// `maxmemory`: two thirds of what the limit leaves after the backlog and one replica's
    /// output buffer, the last third for the copy-on-write pages of a fork (a full sync, an AOF
    /// rewrite) and allocator overhead. None without a limit. 0 when the limit leaves nothing
    /// (validation refuses that spec).
    pub maxmemory: Option<u64>,
}

/// A Kubernetes memory quantity in bytes (`1Gi`, `1.5Gi`, `512M`, `1073741824`); None for
/// other forms (exponents, milli).
pub fn memory_bytes(q: &str) -> Option<u64> {
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let unit: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let b = n * unit;
    (b.is_finite() && b >= 0.0).then_some(b as u64)
}

/// The default `replicationBacklogSize`: 60 s of link outage at 2 MiB/s of writes, with room.
pub const DEFAULT_REPLICATION_BACKLOG: &str = "128Mi";

/// A whole Kubernetes quantity (`128Mi`, `1Gi`, `500k`, `1048576`) in bytes; None otherwise.
pub fn quantity_bytes(q: &str) -> Option<u64> {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (digits, suffix) = q.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let unit: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit)
}

fn default_instances() -> i32 {
    1
}

/// How failover inside the cluster is decided.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// The operator decides which pod is primary.
    #[default]
    Standalone,
    /// A Sentinel quorum elects the primary; the operator follows its decision.
    Sentinel,
}

impl ClusterMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterMode::Standalone => "standalone",
            ClusterMode::Sentinel => "sentinel",
        }
    }
}

/// Persistent storage for each Redis pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each pod's volume, as a Kubernetes quantity, e.g. `100Gi`.
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(\\\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$')").message("storage.size must be a quantity such as 10Gi or 500Mi"))]
    pub size: String,

    /// StorageClass of the volumes; the cluster's default StorageClass when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// A reference to a Secret in the cluster's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret, in the same namespace as the RedisCluster.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Replica mode: the whole cluster replicates an external Redis primary.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!self.enabled || has(self.source)").message("replicaMode.enabled: true needs replicaMode.source: set source.host (and port) to the external primary to replicate from"))]
#[x_kube(validation = Rule::new("!self.promote || (self.enabled && has(self.source))").message("replicaMode.promote: true needs replicaMode.enabled: true and a replicaMode.source: only a cluster that replicates an external source can be promoted"))]
#[serde(rename_all = "camelCase")]
pub struct ReplicaModeSpec {
    /// When true, every data pod replicates the external source (`REPLICAOF <source.host>
    /// <source.port>`) and the cluster accepts no writes.
    #[serde(default)]
    pub enabled: bool,

    /// The external Redis primary to replicate from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ReplicaSourceSpec>,

    /// Promote the cluster to a standalone primary: the pod whose data holds every other pod's
    /// (pod 0, the designated leader, unless another pod holds more; the annotation
    /// `redis.io/promote-pod` names another) stops replicating the source (`REPLICAOF NO ONE`),
    /// then the other pods replicate from it (condition `PromotionTarget` says which and why).
    /// Setting it back to false while `enabled` is true returns the cluster to replicating the
    /// source and DISCARDS the writes made here since promotion (the DR-drill return path).
    #[serde(default)]
    pub promote: bool,

    /// How the cluster replicates the source. `direct` (the default): every pod replicates the
    /// source. `cascading`: only the designated leader crosses regions and the other pods
    /// replicate from it (one cross-region stream instead of one per pod; promotion then only
    /// has to change the leader).
    #[serde(default)]
    pub topology: ReplicaTopology,

    /// A planned switchover (docs/switchover.md): the other cluster's `status.demotionToken`,
    /// `<replication id>:<offset>`, copied here with `promote: true`. The promotion then waits
    /// until the pod to promote holds exactly that history up to that offset, which is every
    /// write the demoted cluster acknowledged, and refuses (condition `Switchover`) a token of
    /// another history. Without it, `promote: true` promotes at once, with whatever data this
    /// cluster has (the disaster path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{40}:[0-9]+$"))]
    pub promotion_token: Option<String>,
}

/// A parsed `promotionToken` / `demotionToken`: a position in a replication history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchoverToken {
    pub replid: String,
    pub offset: i64,
}

impl SwitchoverToken {
    /// `<40 hex digits>:<offset>`; None for anything else.
    pub fn parse(s: &str) -> Option<SwitchoverToken> {
        let (id, off) = s.trim().split_once(':')?;
        let hex = id.len() == 40
            && id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        let offset = off.parse::<i64>().ok().filter(|o| *o >= 0)?;
        hex.then(|| SwitchoverToken {
            replid: id.to_string(),
            offset,
        })
    }
}

impl std::fmt::Display for SwitchoverToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.replid, self.offset)
    }
}

/// How a replica-mode cluster replicates the source.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaTopology {
    /// Every pod replicates the external source.
    #[default]
    Direct,
    /// Only the designated leader replicates the source; the others replicate the leader.
    Cascading,
}

/// The external Redis primary a replica-mode cluster replicates from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSourceSpec {
    /// A human-readable name of the source cluster, shown in status messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,

    /// A stable endpoint of the external primary: a Service DNS name, a LoadBalancer IP or a
    /// hostname. Not a pod IP: those change when pods restart.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("source.host must not be empty: set it to a stable endpoint of the external primary (Service DNS name, LoadBalancer IP or hostname)"))]
    pub host: String,

    /// TCP port of the external primary.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Secret in this namespace with the source's password under the key `password`. Copy it
    /// from the source's namespace (or sync it with ExternalSecret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_name: Option<String>,
}

fn default_port() -> i32 {
    6379
}

impl ReplicaSourceSpec {
    /// The name shown in conditions: `clusterName`, or the endpoint when it is not set.
    pub fn display_name(&self) -> String {
        match &self.cluster_name {
            Some(name) if !name.is_empty() => name.clone(),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// What the operator observed, written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current state, one entry per type: `Ready`, `ReplicaMode`, `SourceLinkUp`,
    /// `ConfigurationValid`, `PrimaryAvailable`, `PromotionTarget` (during a promotion),
    /// `FormerSourceWritable` (after one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The pod that is primary: the pod that reported role `master`. In replica mode, the
    /// designated leader only after it has been promoted and reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_primary: Option<String>,

    /// In replica mode, the source being replicated; `promoted` after promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicating_from: Option<String>,

    /// Number of data pods that exist.
    #[serde(default)]
    pub instances: i32,

    /// Number of data pods serving data as their role requires (primary writable, replica linked).
    #[serde(default)]
    pub ready_instances: i32,

    /// What each instance manager last reported about its Redis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub instances_status: Vec<InstanceStatus>,

    /// A primary that restarted with its data under a new replication history (Redis with
    /// `appendonly` gets a new replication id at every restart) while no replica held more of
    /// its former history: the operator accepted its restart (every pod's topology carries
    /// `acceptHistory` with its replication id) until every replica follows it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_restart: Option<AcceptedRestart>,

    /// Replica mode, while the link to the source is down: what a promotion now would lose,
    /// as far as this cluster can know it: when the pod a promotion would make primary last
    /// read the source, and how far behind it was then. Everything the source accepted after
    /// that is lost too, and cannot be counted from here. After a promotion it stays as it was
    /// when the promotion started (what that promotion lost) until the cluster replicates
    /// again with its link up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_at_risk: Option<DataAtRisk>,

    /// A planned switchover's token (docs/switchover.md): set when this cluster, the primary
    /// until `replicaMode` pointed it at the cluster that replicates it, stopped taking writes.
    /// `<replication id>:<offset>`: the last byte of its history. Copy it into the other
    /// cluster's `spec.replicaMode.promotionToken` (with `promote: true`): that promotion waits
    /// until it holds this offset, so no acknowledged write is lost. Kept while this cluster
    /// replicates the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demotion_token: Option<String>,

    /// The `promotionToken` of the last promotion that completed with it. A token is used once:
    /// left in the spec, it no longer holds back a later `promote: true` (which then promotes
    /// at once, as without a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_promotion_token: Option<String>,

    /// `mode: sentinel`: true while the instance managers read from the Sentinels that they
    /// flag the primary down or are failing it over (absent otherwise). Meanwhile a demotion
    /// (`replicaMode.enabled: true`, a planned switchover's first step) waits, and the
    /// Sentinels keep running until they are done (docs/switchover.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinels_failing_over: Option<bool>,
}

/// See [`RedisClusterStatus::data_at_risk`].
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataAtRisk {
    /// The pod a promotion would make primary (the designated leader).
    pub pod: String,
    /// When its instance manager last read the source's replication offset (RFC 3339, the
    /// instance manager's clock); absent when it has not read it since it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_last_seen: Option<String>,
    /// How many bytes of the source's replication stream that pod lacked then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// ... and how many seconds of the source's writes that was, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// The same, in one sentence.
    pub message: String,
}

impl RedisClusterStatus {
    /// This status without the readings that move with every write: each instance's
    /// `replicationOffset`, `lagBytes` and `keys`. The operator writes the status only when
    /// this part changed (issue 16: a converged cluster under write load costs no write); the
    /// readings in a written status are those of the moment it was written, and the live ones
    /// are in the instance managers' `/status` and metrics.
    pub fn without_readings(&self) -> RedisClusterStatus {
        let mut s = self.clone();
        for i in &mut s.instances_status {
            i.replication_offset = None;
            i.lag_bytes = None;
            i.keys = None;
        }
        s
    }
}

/// The restart of a primary the operator accepted (see `RedisClusterStatus::accepted_restart`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedRestart {
    /// The pod whose restart was accepted.
    pub pod: String,
    /// Its replication id when its restart was accepted.
    pub replication_id: String,
    /// The replication history it held as a primary before it restarted.
    pub former_replication_id: String,
}

/// The observed state of one Redis pod, as its instance manager reports it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Pod name.
    pub name: String,
    /// `primary` or `replica`, as Redis reports it (`INFO replication` role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `host:port` this pod replicates from, when it is a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Whether the replication link to the upstream is up (as probed by the instance manager,
    /// which notices a silent network cut long before Redis's own `repl-timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_link_up: Option<bool>,
    /// This pod's replication offset when the status was last written (it is not rewritten for
    /// offsets alone; the live value is in the instance manager's `/status` and metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_offset: Option<i64>,
    /// Bytes this replica was behind its upstream's offset when the status was last written
    /// (the live value: the metric `redis_replication_lag_bytes`, `kubectl redis status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// Whether the pod serves data as its role requires.
    #[serde(default)]
    pub ready: bool,
    /// The last error the instance manager hit applying its topology, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Bytes this pod held beyond its upstream's new primary after the upstream failed over:
    /// writes the new primary never received, lost with the full resync they forced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_bytes: Option<i64>,
    /// The replication history this pod's data belongs to (`master_replid`). With
    /// `replicationOffset` and `keys` it is kept from the last report while the instance manager
    /// does not answer: the operator compares what every pod holds before it promotes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_id: Option<String>,
    /// Keys this pod held (`INFO keyspace`) when the status was last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u64>,
    /// The replication id of the last upstream this pod resynchronised from although it came
    /// back under another replication history, because its data is the same (keys sampled on
    /// both sides match): a source that restarted with its data. A Warning Event
    /// `SourceRestarted` said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_data_resync: Option<String>,
    /// What this pod's instance manager saved of its data before a resync replaced it: the
    /// writes its new upstream never received, or a snapshot (docs/salvage.md). A Warning Event
    /// `Salvaged` said so. Kept while the file is on the pod's volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salvage: Option<crate::report::Salvage>,
    /// Which of the auth Secret's passwords this pod's Redis accepts: `password`, or
    /// `password+previousPassword` during a rotation (docs/password-rotation.md: retire the
    /// previous one once every pod shows both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passwords: Option<String>,
}

/// Condition types and reasons: values of the CRD's `status.conditions`, user-visible and
/// compared by tools, so each is written once here. The `ReplicaMode` reasons and messages are
/// part of the user-facing API (docs/install.md shows them).
pub mod conditions {
    /// `True` while the cluster replicates an external source; `False` once promoted.
    pub const REPLICA_MODE: &str = "ReplicaMode";
    /// `True` when every instance serves data as its role requires.
    pub const READY: &str = "Ready";
    /// In replica mode: whether the leader's link to the external source is up.
    pub const SOURCE_LINK_UP: &str = "SourceLinkUp";
    /// `False` when the spec cannot be acted on (missing Secret, conflicting fields, ...).
    pub const CONFIGURATION_VALID: &str = "ConfigurationValid";
    /// Whether the cluster's primary answers; in standalone mode its `lastTransitionTime` to
    /// `False` starts the failover clock.
    pub const PRIMARY_AVAILABLE: &str = "PrimaryAvailable";

    /// `ReplicaMode=True`: replicating the source.
    pub const REASON_ENABLED: &str = "Enabled";
    /// `ReplicaMode=False`: promoted, the leader confirmed it is primary.
    pub const REASON_PROMOTED: &str = "Promoted";
    /// `ReplicaMode=True`: promotion requested, the leader has not confirmed yet.
    pub const REASON_PROMOTING: &str = "Promoting";
    /// `ReplicaMode=True`: returning to replicating the source after a promotion.
    pub const REASON_DEMOTING: &str = "Demoting";
    /// `ReplicaMode=False`: replica mode switched off (or never on while the field is set).
    pub const REASON_DISABLED: &str = "Disabled";

    /// `SourceLinkUp=Unknown`: no instance manager reported on the link yet.
    pub const REASON_NO_REPORTS: &str = "NoReports";
    /// `SourceLinkUp=True`.
    pub const REASON_LINK_UP: &str = "LinkUp";
    /// `SourceLinkUp=False`.
    pub const REASON_LINK_DOWN: &str = "LinkDown";

    /// `Ready=True`.
    pub const REASON_ALL_INSTANCES_READY: &str = "AllInstancesReady";
    /// `Ready=False`.
    pub const REASON_INSTANCES_NOT_READY: &str = "InstancesNotReady";

    /// `PrimaryAvailable=True`.
    pub const REASON_AVAILABLE: &str = "Available";
    /// `PrimaryAvailable=False`, no failover (yet).
    pub const REASON_UNAVAILABLE: &str = "Unavailable";
    /// `PrimaryAvailable=False`, the operator is failing over.
    pub const REASON_FAILING_OVER: &str = "FailingOver";
    /// `PrimaryAvailable=False`, the operator cannot fail over yet (no proof, no replica, or
    /// the best replica is further behind than `failover.maxLagBytes`).
    pub const REASON_FAILOVER_BLOCKED: &str = "FailoverBlocked";
    /// `PrimaryAvailable=False`: the primary came back without the data it (or its replicas)
    /// held; it is kept fenced and not labelled primary.
    pub const REASON_DATA_LOST: &str = "DataLost";
    /// `PrimaryAvailable=False`: the primary restarted with its data under a new replication
    /// history and may lack writes its replicas hold; it is kept fenced while the operator
    /// fails over to the replica holding the most of its former history (or, when no replica
    /// holds it, accepts the restart).
    pub const REASON_PRIMARY_RESTARTED: &str = "PrimaryRestarted";

    /// `SourceLinkUp=False`: a pod refuses its upstream's unrelated replication history (a
    /// sync would replace its data); accepted with the annotation
    /// `redis.io/accept-replication-history`.
    pub const REASON_UNRELATED_HISTORY: &str = "UnrelatedHistory";

    /// Which pod a promotion makes primary, and why (present while a promotion is in progress).
    pub const PROMOTION_TARGET: &str = "PromotionTarget";
    /// `PromotionTarget=True`: the pod holding the most data (or the one the user named) is
    /// being promoted.
    pub const REASON_CHOSEN: &str = "Chosen";
    /// `PromotionTarget=Unknown`: waiting (bounded) for pods that have not reported what they
    /// hold.
    pub const REASON_WAITING_FOR_REPORTS: &str = "WaitingForReports";
    /// `PromotionTarget=False`: no pod holds every other pod's data; the user chooses.
    pub const REASON_NEEDS_CHOICE: &str = "NeedsChoice";
    /// `PromotionTarget=Unknown`: a planned switchover waits for a pod to hold the promotion
    /// token (see `Switchover`).
    pub const REASON_WAITING_FOR_TOKEN: &str = "WaitingForPromotionToken";

    /// A planned switchover (docs/switchover.md), on either side, while it is relevant.
    pub const SWITCHOVER: &str = "Switchover";
    /// `Switchover=True` on the demoted side: its primary stopped taking writes; the token is
    /// in `status.demotionToken`.
    pub const REASON_DEMOTED: &str = "Demoted";
    /// `Switchover=Unknown` on the side being promoted: no pod holds the token yet.
    pub const REASON_TOKEN_WAITING: &str = "WaitingForToken";
    /// `Switchover=False`: the token has not been reached within the bound (link down, or not
    /// catching up); the promotion still waits.
    pub const REASON_TOKEN_NOT_REACHED: &str = "TokenNotReached";
    /// `Switchover=False`: the token names another history than the one the pods follow; the
    /// promotion is refused.
    pub const REASON_TOKEN_MISMATCH: &str = "TokenMismatch";
    /// `Switchover=True`: the promoted pod holds the token: no acknowledged write was lost.
    pub const REASON_TOKEN_REACHED: &str = "TokenReached";
    /// `Switchover=False` on the side being demoted: its Sentinels are failing its primary
    /// over; the demotion waits until they are done.
    pub const REASON_SENTINEL_FAILOVER_IN_PROGRESS: &str = "SentinelFailoverInProgress";

    /// After a promotion: whether the former source (`replicaMode.source`) still accepts
    /// writes. `True` is a warning: two regions take writes.
    pub const FORMER_SOURCE_WRITABLE: &str = "FormerSourceWritable";
    /// `FormerSourceWritable=True`: it is a primary that is not fenced.
    pub const REASON_ACCEPTS_WRITES: &str = "AcceptsWrites";
    /// `FormerSourceWritable=False`: it answers as a replica or refuses writes.
    pub const REASON_REFUSES_WRITES: &str = "RefusesWrites";
    /// `FormerSourceWritable=Unknown`: it does not answer (or could not be asked).
    pub const REASON_NOT_REACHABLE: &str = "NotReachable";

    /// `ConfigurationValid=True`. When `False`, the reason is the first problem's
    /// (`redis_topology::EventReason`: `SecretMissing`, `InvalidSpec`, ...).
    pub const REASON_VALID: &str = "Valid";

    /// The message for `ReplicaMode=True/Enabled` (user-facing, kept verbatim).
    pub fn replicating_message(source_name: &str, host: &str, port: i32) -> String {
        format!("Cluster is replicating from {source_name} ({host}:{port})")
    }

    /// The message for `ReplicaMode=False/Promoted` (user-facing, kept verbatim).
    pub fn promoted_message(source_name: &str) -> String {
        format!("Cluster promoted to standalone (former source: {source_name})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_quantities_and_the_plan() {
        for (q, b) in [
            ("1Gi", Some(1 << 30)),
            ("1.5Gi", Some(3 << 29)),
            ("512M", Some(512_000_000)),
            ("1073741824", Some(1 << 30)),
            ("1e9", None),
            ("100m", None),
        ] {
            assert_eq!(memory_bytes(q), b, "{q}");
        }
        let spec: RedisClusterSpec =
            serde_json::from_value(serde_json::json!({"storage": {"size": "1Gi"}})).unwrap();
        const MIB: u64 = 1 << 20;
        assert_eq!(
            spec.memory_plan(),
            Some(MemoryPlan {
                limit: Some(1024 * MIB),
                backlog: 128 * MIB,
                output_hard: 256 * MIB,
                output_soft: 128 * MIB,
                maxmemory: Some((1024 - 128 - 256) * MIB / 3 * 2),
            })
        );
        let spec: RedisClusterSpec = serde_json::from_value(serde_json::json!({
            "storage": {"size": "1Gi"}, "resources": {"requests": {"memory": "1Gi"}}
        }))
        .unwrap();
        assert_eq!(spec.memory_plan().unwrap().maxmemory, None, "no limit");
    }

    #[test]
    fn quantities_in_bytes() {
        for (q, b) in [
            ("128Mi", Some(134_217_728)),
            ("1Gi", Some(1 << 30)),
            ("500k", Some(500_000)),
            ("2M", Some(2_000_000)),
            ("1048576", Some(1_048_576)),
            ("1.5Gi", None),
            ("Mi", None),
            ("12Ti", None),
            ("", None),
            ("99999999999999999999Gi", None),
        ] {
            assert_eq!(quantity_bytes(q), b, "{q}");
        }
        let spec: RedisClusterSpec =
            serde_json::from_value(serde_json::json!({"storage": {"size": "1Gi"}})).unwrap();
        assert_eq!(spec.replication_backlog_bytes(), Some(128 << 20));
    }

    #[test]
    fn spec_messages_are_verbatim() {
        assert_eq!(
            conditions::replicating_message(
                "prod-redis-us-east",
                "prod-redis-leader.production.svc.cluster.local",
                6379
            ),
            "Cluster is replicating from prod-redis-us-east (prod-redis-leader.production.svc.cluster.local:6379)"
        );
        assert_eq!(
            conditions::promoted_message("prod-redis-us-east"),
            "Cluster promoted to standalone (former source: prod-redis-us-east)"
        );
    }

    #[test]
    fn defaults_match_the_spec() {
        let spec: RedisClusterSpec = serde_json::from_value(serde_json::json!({
            "storage": {"size": "1Gi"},
            "replicaMode": {"enabled": true, "source": {"host": "h"}}
        }))
        .unwrap();
        assert_eq!(spec.instances, 1);
        assert_eq!(spec.mode, ClusterMode::Standalone);
        let rm = spec.replica_mode.unwrap();
        assert!(!rm.promote);
        assert_eq!(rm.source.as_ref().unwrap().port, 6379);
        assert_eq!(rm.source.unwrap().display_name(), "h:6379");
    }
}
