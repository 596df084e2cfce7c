//! What `kubectl redis status` shows, computed from what the API holds (the RedisCluster, its
//! Events, the operator's pods) and what each instance manager reports (`/status`). Pure: the
//! caller fetches, this decides what it means, so every case is a unit test.

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use redis_cluster_api::cluster::conditions as cond;
use redis_cluster_api::report::{InstanceReport, ObservedRole};
use redis_cluster_api::{RedisCluster, names};
use redis_topology::plan::PROMOTE_POD_ANNOTATION;
use serde::Serialize;

/// One cluster, as a person on call needs to see it.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    pub namespace: String,
    pub name: String,
    /// `standalone` or `sentinel`.
    pub mode: String,
    pub instances: i32,
    pub ready_instances: i32,
    /// `Ready` condition status: `True`, `False` or `Unknown` (no status yet).
    pub ready: String,
    /// `replicating`, `promoting`, `promoted`, `demoting` or `off` (not a replica cluster).
    pub replica_mode: String,
    /// `<clusterName> (<host>:<port>)` of `replicaMode.source`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The `SourceLinkUp` condition, in replica mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_link: Option<LinkView>,
    /// `status.currentPrimary`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// What a promotion now would lose (replica mode, not promoted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_at_risk: Option<DataAtRisk>,
    pub pods: Vec<PodView>,
    /// Conditions that are not in their healthy state, as `Type=Status Reason: message`.
    pub attention: Vec<String>,
    /// The cluster's newest Events first (at most [`EVENTS_SHOWN`]).
    pub events: Vec<EventView>,
    pub operator: OperatorView,
}

/// How many Events `status` shows per cluster.
pub const EVENTS_SHOWN: usize = 5;

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LinkView {
    /// `up`, `down` or `unknown`.
    pub state: String,
    /// When the condition last changed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    pub message: String,
}

/// Data at risk: what the source has that the pod a promotion would pick does not.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataAtRisk {
    /// `none` (the target holds everything the source has), `bytes` (`lagBytes` known, link up)
    /// or `unknown` (the source cannot be read: everything it accepted since `linkDownSince`).
    pub state: String,
    /// The pod a promotion would make primary (the designated leader, or the pod the annotation
    /// `redis.io/promote-pod` names; the operator may pick a pod holding more, see
    /// `PromotionTarget`).
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// When the source link went down (RFC 3339), if it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_down_since: Option<String>,
    /// When the target last read the source (RFC 3339; `status.dataAtRisk`), if the link is
    /// down: `lagBytes`/`lagSeconds` are then its lag at that moment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_last_seen: Option<String>,
    /// One sentence for a person.
    pub summary: String,
}

#[derive(Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    pub name: String,
    /// `primary`, `replica`, or None when not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_up: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Full and partial resyncs this Redis served as a primary (`sync_full`, `sync_partial_ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_resyncs_served: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_resyncs_served: Option<u64>,
    /// Redis refuses every write (fenced by the operator or booted fenced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fenced: Option<bool>,
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `live` (the instance manager answered now) or `status` (from `status.instancesStatus`:
    /// the instance manager could not be reached through the API server).
    pub source: String,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// RFC 3339.
    pub time: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
}

/// Whether the operator runs, from its pods (label `app.kubernetes.io/name=redis-operator`).
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OperatorView {
    /// `running`, `not running` or `unknown` (its pods could not be listed).
    pub state: String,
    pub message: String,
}

impl OperatorView {
    /// From the operator's pods: (name, ready) pairs, or the error listing them.
    pub fn from_pods(pods: Result<Vec<(String, bool)>, String>) -> Self {
        match pods {
            Err(e) => OperatorView {
                state: "unknown".into(),
                message: format!("cannot list the operator's pods: {e}"),
            },
            Ok(pods) if pods.is_empty() => OperatorView {
                state: "not running".into(),
                message: "no pod labelled app.kubernetes.io/name=redis-operator: nothing acts on \
                          these clusters (helm install redis-operator, see docs/install.md)"
                    .into(),
            },
            Ok(pods) => {
                let ready: Vec<&str> = pods
                    .iter()
                    .filter(|(_, r)| *r)
                    .map(|(n, _)| n.as_str())
                    .collect();
                if ready.is_empty() {
                    OperatorView {
                        state: "not running".into(),
                        message: format!(
                            "{} operator pod(s), none ready: nothing acts on these clusters \
                             (kubectl logs -l app.kubernetes.io/name=redis-operator -A)",
                            pods.len()
                        ),
                    }
                } else {
                    OperatorView {
                        state: "running".into(),
                        message: format!("{} of {} pods ready", ready.len(), pods.len()),
                    }
                }
            }
        }
    }

    pub fn running(&self) -> bool {
        self.state == "running"
    }
}

/// Everything `view` reads for one cluster.
pub struct Inputs<'a> {
    pub cluster: &'a RedisCluster,
    /// Each pod's live instance-manager report, by pod name (absent: not reachable).
    pub reports: &'a [InstanceReport],
    pub events: &'a [Event],
    pub operator: &'a OperatorView,
}

/// The cluster's replica-mode state as one word (see [`ClusterView::replica_mode`]).
pub fn replica_mode_state(cluster: &RedisCluster) -> &'static str {
    let enabled = cluster
        .spec
        .replica_mode
        .as_ref()
        .is_some_and(|rm| rm.enabled);
    if !enabled {
        return "off";
    }
    let reason = condition(cluster, cond::REPLICA_MODE).map(|c| c.reason.as_str());
    match reason {
        Some(cond::REASON_PROMOTED) => "promoted",
        Some(cond::REASON_PROMOTING) => "promoting",
        Some(cond::REASON_DEMOTING) => "demoting",
        _ if promote_requested(cluster) => "promoting",
        _ => "replicating",
    }
}

/// `<clusterName> (<host>:<port>)` of `replicaMode.source`, as the conditions name it.
pub fn source_text(cluster: &RedisCluster) -> Option<String> {
    cluster
        .spec
        .replica_mode
        .as_ref()
        .and_then(|rm| rm.source.as_ref())
        .map(|s| format!("{} ({}:{})", s.display_name(), s.host, s.port))
}

/// `spec.replicaMode.promote`.
pub fn promote_requested(cluster: &RedisCluster) -> bool {
    cluster
        .spec
        .replica_mode
        .as_ref()
        .is_some_and(|rm| rm.enabled && rm.promote)
}

pub fn condition<'a>(cluster: &'a RedisCluster, type_: &str) -> Option<&'a Condition> {
    cluster
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

fn rfc3339(t: &Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The pod a promotion would make primary, as far as the spec says: the one the annotation names,
/// else pod 0.
pub fn promotion_target(cluster: &RedisCluster) -> String {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROMOTE_POD_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| names::pod_name(&name, 0))
}

/// Build the view. `now` only orders nothing here (times are printed by the renderer).
pub fn view(i: &Inputs) -> ClusterView {
    let c = i.cluster;
    let name = c.metadata.name.clone().unwrap_or_default();
    let status = c.status.clone().unwrap_or_default();
    let state = replica_mode_state(c);
    let source = c
        .spec
        .replica_mode
        .as_ref()
        .filter(|rm| rm.enabled)
        .and(source_text(c));
    // After a promotion the source link is history; the FormerSourceWritable condition says
    // what matters about the source then.
    let source_link = (!matches!(state, "off" | "promoted"))
        .then(|| link_view(condition(c, cond::SOURCE_LINK_UP)));

    let mut pods: Vec<PodView> = Vec::new();
    let mut names_seen: Vec<String> = status
        .instances_status
        .iter()
        .map(|s| s.name.clone())
        .collect();
    for r in i.reports {
        if !names_seen.contains(&r.pod) {
            names_seen.push(r.pod.clone());
        }
    }
    names_seen.sort_by_key(|n| (names::ordinal_of(&name, n).unwrap_or(u32::MAX), n.clone()));
    for pod in names_seen {
        let live = i.reports.iter().find(|r| r.pod == pod);
        let stored = status.instances_status.iter().find(|s| s.name == pod);
        pods.push(match (live, stored) {
            (Some(r), _) => PodView {
                name: pod,
                role: r.role.map(|role| match role {
                    ObservedRole::Primary => "primary".to_string(),
                    ObservedRole::Replica => "replica".to_string(),
                }),
                upstream: r.upstream.clone(),
                link_up: (r.role == Some(ObservedRole::Replica)).then_some(r.master_link_up),
                lag_bytes: r.lag_bytes,
                lag_seconds: r.lag_seconds,
                offset: r.repl_offset,
                full_resyncs_served: Some(r.sync_full),
                partial_resyncs_served: Some(r.sync_partial_ok),
                fenced: Some(r.fenced),
                ready: r.ready,
                error: r.error.clone().or_else(|| r.link_error.clone()),
                source: "live".into(),
            },
            (None, Some(s)) => PodView {
                name: pod,
                role: s.role.clone(),
                upstream: s.upstream.clone(),
                link_up: s.master_link_up,
                lag_bytes: s.lag_bytes,
                offset: s.replication_offset,
                ready: s.ready,
                error: s.error.clone(),
                source: "status".into(),
                ..PodView::default()
            },
            (None, None) => unreachable!("every name comes from a report or the status"),
        });
    }

    let data_at_risk = matches!(state, "replicating" | "demoting")
        .then(|| data_at_risk(c, &pods, source_link.as_ref()));

    let mut attention = Vec::new();
    for cnd in &status.conditions {
        let healthy = match cnd.type_.as_str() {
            cond::FORMER_SOURCE_WRITABLE => cnd.status == "False",
            cond::REPLICA_MODE | cond::PROMOTION_TARGET => true,
            _ => cnd.status == "True",
        };
        if !healthy {
            attention.push(format!(
                "{}={} {}: {}",
                cnd.type_, cnd.status, cnd.reason, cnd.message
            ));
        }
    }
    if let Some(target) = condition(c, cond::PROMOTION_TARGET) {
        attention.push(format!(
            "{}={} {}: {}",
            target.type_, target.status, target.reason, target.message
        ));
    }

    let mut events: Vec<EventView> = i.events.iter().map(event_view).collect();
    events.sort_by(|a, b| b.time.cmp(&a.time));
    events.truncate(EVENTS_SHOWN);

    ClusterView {
        namespace: c.metadata.namespace.clone().unwrap_or_default(),
        name,
        mode: serde_json::to_value(c.spec.mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        instances: c.spec.instances,
        ready_instances: status.ready_instances,
        ready: condition(c, cond::READY)
            .map(|c| c.status.clone())
            .unwrap_or_else(|| "Unknown".into()),
        replica_mode: state.into(),
        source,
        source_link,
        primary: status.current_primary.clone(),
        data_at_risk,
        pods,
        attention,
        events,
        operator: i.operator.clone(),
    }
}

fn link_view(c: Option<&Condition>) -> LinkView {
    match c {
        None => LinkView {
            state: "unknown".into(),
            since: None,
            message: "no instance manager reported on the link yet".into(),
        },
        Some(c) => LinkView {
            state: match c.status.as_str() {
                "True" => "up",
                "False" => "down",
                _ => "unknown",
            }
            .into(),
            since: Some(rfc3339(&c.last_transition_time.0)),
            message: c.message.clone(),
        },
    }
}

fn data_at_risk(c: &RedisCluster, pods: &[PodView], link: Option<&LinkView>) -> DataAtRisk {
    let target = promotion_target(c);
    let pod = pods.iter().find(|p| p.name == target);
    let lag_bytes = pod.and_then(|p| p.lag_bytes);
    let lag_seconds = pod.and_then(|p| p.lag_seconds);
    let link_state = link.map(|l| l.state.as_str()).unwrap_or("unknown");
    let link_down_since = link
        .filter(|l| l.state == "down")
        .and_then(|l| l.since.clone());
    // The operator's account while the source is silent: the target's lag when it last read
    // the source, and when (docs/data-safety.md, "Data at risk").
    if link_state == "down"
        && let Some(r) = c
            .status
            .as_ref()
            .and_then(|s| s.data_at_risk.as_ref())
            .filter(|r| r.pod == target)
    {
        return DataAtRisk {
            state: "unknown".into(),
            target,
            lag_bytes: r.lag_bytes,
            lag_seconds: r.lag_seconds,
            link_down_since,
            source_last_seen: r.source_last_seen.clone(),
            summary: format!("unknown: {}", r.message),
        };
    }
    let (state, summary) = match (link_state, lag_bytes) {
        ("up", Some(0)) => (
            "none",
            format!("none: {target} holds everything the source has written"),
        ),
        ("up", Some(b)) => (
            "bytes",
            format!(
                "a promotion now would lose the source's last {}{} ({target} is behind)",
                bytes(b),
                lag_seconds
                    .map(|s| format!(", about {}", seconds(s)))
                    .unwrap_or_default()
            ),
        ),
        ("down", _) => (
            "unknown",
            format!(
                "unknown: the source has been unreachable since {}; a promotion now loses every \
                 write it accepted since then{}",
                link_down_since.as_deref().unwrap_or("(unknown)"),
                lag_bytes
                    .map(|b| format!(", plus the {} {target} was behind", bytes(b)))
                    .unwrap_or_default()
            ),
        ),
        _ => (
            "unknown",
            format!("unknown: {target} has not reported its lag behind the source"),
        ),
    };
    DataAtRisk {
        state: state.into(),
        target,
        lag_bytes,
        lag_seconds,
        link_down_since,
        source_last_seen: None,
        summary,
    }
}

fn event_view(e: &Event) -> EventView {
    let time = e
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or(e.last_timestamp.as_ref().map(|t| t.0))
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0));
    EventView {
        time: time.map(|t| rfc3339(&t)).unwrap_or_default(),
        type_: e.type_.clone().unwrap_or_default(),
        reason: e.reason.clone().unwrap_or_default(),
        message: e.message.clone().unwrap_or_default(),
        count: e
            .series
            .as_ref()
            .and_then(|s| s.count)
            .or(e.count)
            .unwrap_or(1)
            .max(1),
    }
}

/// `1.2 MiB`-style sizes.
pub fn bytes(b: i64) -> String {
    let f = b as f64;
    if b.abs() < 1024 {
        format!("{b} B")
    } else if b.abs() < 1024 * 1024 {
        format!("{:.1} KiB", f / 1024.0)
    } else if b.abs() < 1024 * 1024 * 1024 {
        format!("{:.1} MiB", f / 1024.0 / 1024.0)
    } else {
        format!("{:.1} GiB", f / 1024.0 / 1024.0 / 1024.0)
    }
}

pub fn seconds(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.0} min", s / 60.0)
    }
}
