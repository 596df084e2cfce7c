//! Builders for the unit tests' inputs: a Redis as `INFO`/`CONFIG GET` describe it, and
//! desired topologies.

use redis_cluster_api::topology::{
    DesiredTopology, FENCE_MIN_REPLICAS, FORMAT_VERSION, Role, SentinelTopology, Upstream,
    UpstreamKind,
};

use crate::commands::TlsFiles;
use crate::info::{Observed, RedisConfig, RedisRole};

pub fn observed(role: RedisRole, master: Option<(&str, u16)>) -> Observed {
    Observed {
        run_id: "r".into(),
        redis_version: "7.0.15".into(),
        redis_mode: "standalone".into(),
        role,
        master: master.map(|(h, p)| (h.to_string(), p)),
        master_link_status_up: master.is_some(),
        master_last_io_seconds_ago: None,
        master_sync_in_progress: false,
        slave_repl_offset: None,
        master_repl_offset: 0,
        master_replid: String::new(),
        master_replid2: "0000000000000000000000000000000000000000".into(),
        second_repl_offset: -1,
        keys: 0,
        uptime_seconds: 100,
        connected_slaves: 0,
        sync_full: 0,
        sync_partial_ok: 0,
        sync_partial_err: 0,
        loading: false,
    }
}

/// Redis as Redis 7 starts without any of our settings.
pub fn default_config() -> RedisConfig {
    RedisConfig::from_pairs(
        [
            ("replica-priority", "100"),
            ("replica-announced", "yes"),
            ("min-replicas-to-write", "0"),
            ("min-replicas-max-lag", "10"),
            ("masteruser", ""),
            ("masterauth", ""),
            ("tls-replication", "no"),
            ("tls-ca-cert-file", ""),
            ("tls-cert-file", ""),
            ("tls-key-file", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    )
}

pub fn upstream(host: &str, port: u16, tls: bool, user: Option<&str>) -> Upstream {
    Upstream {
        kind: UpstreamKind::External,
        host: host.into(),
        port,
        tls,
        password_file: Some("/etc/redis-source/password".into()),
        username: user.map(Into::into),
        cluster_name: None,
    }
}

pub fn topo(
    role: Role,
    up: Option<Upstream>,
    prio: u32,
    announced: bool,
    mrtw: u32,
) -> DesiredTopology {
    DesiredTopology {
        version: FORMAT_VERSION,
        cluster: "dr".into(),
        epoch: 1,
        role,
        upstream: up,
        replica_priority: prio,
        replica_announced: announced,
        min_replicas_to_write: mrtw,
        min_replicas_max_lag: 10,
        primary: None,
        sentinel: None,
        replicaof_command: None,
        accept_history: None,
    }
}

pub fn tls_files() -> TlsFiles {
    TlsFiles {
        ca: "/tls/ca.crt".into(),
        cert: "/tls/tls.crt".into(),
        key: "/tls/tls.key".into(),
    }
}

pub fn with_sentinels(mut d: DesiredTopology) -> DesiredTopology {
    d.sentinel = Some(SentinelTopology {
        master_name: "mymaster".into(),
        addresses: vec!["s-0:26379".into(), "s-1:26379".into()],
        announce_host: "me".into(),
        password_file: None,
    });
    d
}

pub fn fenced_config() -> RedisConfig {
    let mut c = default_config();
    c.values.insert(
        "min-replicas-to-write".into(),
        FENCE_MIN_REPLICAS.to_string(),
    );
    c
}
