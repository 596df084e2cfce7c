//! Fixtures: RedisClusters as the API returns them, instance reports, Events.
#![allow(dead_code)]

use k8s_openapi::api::core::v1::Event;
use redis_cluster_api::RedisCluster;
use redis_cluster_api::report::InstanceReport;
use serde_json::{Value, json};

pub const NOW: &str = "2026-11-27T12:00:00Z";

pub fn cond(type_: &str, status: &str, reason: &str, message: &str, at: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": at, "observedGeneration": 2})
}

/// The spec's dr-redis: 3 pods replicating prod-redis.
pub fn dr(conditions: Vec<Value>, promote: bool, primary: Option<&str>) -> RedisCluster {
    let mut status = json!({
        "observedGeneration": 2,
        "conditions": conditions,
        "instances": 3,
        "readyInstances": 3,
        "instancesStatus": [
            {"name": "dr-redis-0", "role": "replica", "upstream": "prod-redis-leader.production.svc.cluster.local:6379",
             "masterLinkUp": true, "replicationOffset": 1000, "lagBytes": 0, "ready": true},
            {"name": "dr-redis-1", "role": "replica", "upstream": "prod-redis-leader.production.svc.cluster.local:6379",
             "masterLinkUp": true, "replicationOffset": 990, "lagBytes": 10, "ready": true},
            {"name": "dr-redis-2", "role": "replica", "upstream": "prod-redis-leader.production.svc.cluster.local:6379",
             "masterLinkUp": false, "ready": false, "error": "cannot reach the source: connection refused"}
        ]
    });
    if let Some(p) = primary {
        status["currentPrimary"] = json!(p);
    }
    serde_json::from_value(json!({
        "apiVersion": "redis.io/v1", "kind": "RedisCluster",
        "metadata": {"name": "dr-redis", "namespace": "production", "generation": 2},
        "spec": {
            "instances": 3, "mode": "standalone", "storage": {"size": "100Gi"},
            "authSecret": {"name": "dr-redis-auth"},
            "replicaMode": {"enabled": true, "promote": promote, "source": {
                "clusterName": "prod-redis-us-east",
                "host": "prod-redis-leader.production.svc.cluster.local", "port": 6379,
                "authSecretName": "prod-redis-auth"}}
        },
        "status": status
    }))
    .unwrap()
}

pub fn prod() -> RedisCluster {
    serde_json::from_value(json!({
        "apiVersion": "redis.io/v1", "kind": "RedisCluster",
        "metadata": {"name": "prod-redis", "namespace": "production", "generation": 1},
        "spec": {"instances": 3, "mode": "sentinel", "storage": {"size": "100Gi"}},
        "status": {"observedGeneration": 1, "currentPrimary": "prod-redis-0", "instances": 3, "readyInstances": 3,
            "conditions": [cond("Ready", "True", "AllInstancesReady", "3/3 instances ready", "2026-11-27T11:00:00Z"),
                           cond("ReplicaMode", "False", "Disabled", "Replica mode is not enabled", "2026-11-27T11:00:00Z")],
            "instancesStatus": [{"name": "prod-redis-0", "role": "primary", "replicationOffset": 1000, "ready": true}]}
    }))
    .unwrap()
}

pub fn replicating() -> Vec<Value> {
    vec![
        cond(
            "Ready",
            "False",
            "InstancesNotReady",
            "2/3 instances ready",
            "2026-11-27T11:58:00Z",
        ),
        cond(
            "ReplicaMode",
            "True",
            "Enabled",
            "Cluster is replicating from prod-redis-us-east (prod-redis-leader.production.svc.cluster.local:6379)",
            "2026-11-27T11:00:00Z",
        ),
        cond(
            "SourceLinkUp",
            "True",
            "LinkUp",
            "dr-redis-0 replicates the source",
            "2026-11-27T11:00:00Z",
        ),
    ]
}

pub fn link_down() -> Vec<Value> {
    vec![
        cond(
            "Ready",
            "False",
            "InstancesNotReady",
            "0/3 instances ready",
            "2026-11-27T11:57:00Z",
        ),
        cond(
            "ReplicaMode",
            "True",
            "Enabled",
            "Cluster is replicating from prod-redis-us-east (prod-redis-leader.production.svc.cluster.local:6379)",
            "2026-11-27T11:00:00Z",
        ),
        cond(
            "SourceLinkUp",
            "False",
            "LinkDown",
            "dr-redis-0 cannot reach the source: no answer within the probe timeout",
            "2026-11-27T11:57:00Z",
        ),
    ]
}

pub fn promoted() -> Vec<Value> {
    vec![
        cond(
            "Ready",
            "True",
            "AllInstancesReady",
            "3/3 instances ready",
            "2026-11-27T11:59:00Z",
        ),
        cond(
            "ReplicaMode",
            "False",
            "Promoted",
            "Cluster promoted to standalone (former source: prod-redis-us-east)",
            "2026-11-27T11:59:00Z",
        ),
        cond(
            "FormerSourceWritable",
            "True",
            "AcceptsWrites",
            "prod-redis-us-east still accepts writes: two regions take writes",
            "2026-11-27T11:59:30Z",
        ),
    ]
}

pub fn report(pod: &str, lag: i64, lag_s: f64, fenced: bool) -> InstanceReport {
    serde_json::from_value(json!({
        "pod": pod, "appliedEpoch": 3, "role": "replica",
        "upstream": "prod-redis-leader.production.svc.cluster.local:6379",
        "masterLinkUp": true, "replOffset": 1_000_000 - lag, "upstreamOffset": 1_000_000, "lagBytes": lag,
        "lagSeconds": lag_s, "syncInProgress": false, "syncFull": 0, "syncPartialOk": 2,
        "connectedReplicas": 0, "ready": true, "fenced": fenced
    }))
    .unwrap()
}

pub fn event(reason: &str, type_: &str, message: &str, at: &str, count: i32) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": format!("dr-redis.{reason}"), "namespace": "production"},
        "involvedObject": {"kind": "RedisCluster", "name": "dr-redis", "namespace": "production"},
        "reason": reason, "type": type_, "message": message, "count": count,
        "lastTimestamp": at
    }))
    .unwrap()
}
