//! Configuration files rendered from a `RedisCluster`: `redis.conf` for the data pods and the
//! Sentinels' `sentinel.conf` template, both shipped in the cluster's ConfigMap. No secret is ever
//! rendered here: the init scripts ([`crate::scripts`]) add the password lines from the mounted
//! Secret when a pod starts.

use kube::ResourceExt;
use redis_cluster_api::RedisCluster;
use redis_cluster_api::names::{self, paths};

/// redis.conf shared by every pod of the cluster. Secrets are not in it: the password is
/// included from a file the init container writes into a memory-backed volume.
pub fn redis_conf(rc: &RedisCluster) -> String {
    let spec = &rc.spec;
    let mut c = String::from("# Managed by redis-operator: edits are overwritten.\n");
    c.push_str(&format!(
        "bind * -::*\nprotected-mode no\ndir {}\n",
        paths::DATA_DIR
    ));
    if spec.tls_secret.is_some() {
        c.push_str(&tls_lines());
    } else {
        c.push_str(&format!("port {}\n", names::REDIS_PORT));
    }
    c.push_str("appendonly yes\nappendfsync everysec\nreplica-read-only yes\n");
    // Fenced until told: Redis starts as a primary, so a new or restarted pod would accept
    // writes nobody asked for. It refuses them until its instance manager applies the
    // operator's topology (which sets min-replicas-to-write to the cluster's real value). The
    // redis container repeats it on its command line (topology::boot_fence_args), which wins
    // over what CONFIG REWRITE leaves in /data/redis.conf for a container restart.
    c.push_str("min-replicas-to-write 1000000\nmin-replicas-max-lag 10\n");
    // Diskless full sync without the default 5 s wait for more replicas: after a promotion the
    // replicas continue partially, and a lone new replica should not wait. Nothing here depends
    // on `instances`, so scaling never restarts pods.
    c.push_str("repl-diskless-sync yes\nrepl-diskless-sync-delay 0\n");
    c.push_str(&memory_lines(spec));
    // Only this cluster's instance managers and Sentinels may re-point a pod: REPLICAOF gets a
    // per-cluster name (they are told it) and SLAVEOF is gone. Anyone else holding the password,
    // such as the source region's Sentinels "fixing" a DR pod to the source primary's own address
    // instead of the stable endpoint, gets an unknown-command error.
    c.push_str(&format!(
        "rename-command SLAVEOF \"\"\nrename-command REPLICAOF {}\n",
        cluster_replicaof_command(rc)
    ));
    if spec.auth_secret.is_some() {
        c.push_str(&format!("include {}\n", paths::auth_conf_file()));
    }
    c
}

/// `repl-backlog-size` (a replica away while less than this was written resumes partially),
/// the replicas' output-buffer limits, `maxmemory` and its policy, from the spec's
/// [`redis_cluster_api::MemoryPlan`]. During a full sync the primary queues every write made
/// meanwhile in the replica's output buffer, and drops the replica (which starts the sync over,
/// and over) when that exceeds the hard limit, or the soft limit for 120 s: Redis's defaults
/// (256 MB, 64 MB for 60 s) cut a sync over a slow WAN link under steady writes. A backlog
/// size the schema refuses renders none of these (Redis's defaults; validation reports it).
fn memory_lines(spec: &redis_cluster_api::RedisClusterSpec) -> String {
    let mut c = String::new();
    if let Some(p) = spec.memory_plan() {
        c.push_str(&format!(
            "repl-backlog-size {}\nclient-output-buffer-limit replica {} {} 120\n",
            p.backlog, p.output_hard, p.output_soft
        ));
        // 0 would mean "no limit" to Redis: such a spec is refused by validation.
        if let Some(m) = p.maxmemory.filter(|m| *m > 0) {
            c.push_str(&format!("maxmemory {m}\n"));
        }
    }
    c.push_str(&format!(
        "maxmemory-policy {}\n",
        spec.maxmemory_policy.unwrap_or_default().as_str()
    ));
    c
}

/// TLS only, on the usual port; replicas and clients use the mounted `tlsSecret`.
fn tls_lines() -> String {
    let file = |key| paths::file(paths::TLS_DIR, key);
    format!(
        "port 0\ntls-port {}\n\
         tls-cert-file {}\ntls-key-file {}\n\
         tls-ca-cert-file {}\ntls-replication yes\ntls-auth-clients optional\n",
        names::REDIS_PORT,
        file(names::TLS_CERT_KEY),
        file(names::TLS_KEY_KEY),
        file(names::TLS_CA_KEY),
    )
}

/// The name `REPLICAOF` has in this cluster's pods (see [`redis_conf`]).
pub fn cluster_replicaof_command(rc: &RedisCluster) -> String {
    redis_cluster_api::topology::replicaof_command(
        rc.metadata.uid.as_deref(),
        &rc.namespace().unwrap_or_default(),
        &rc.name_any(),
    )
}

/// FNV-1a of a configuration file: stable across builds and platforms (unlike `DefaultHasher`),
/// for the pod-template annotation that rolls the pods when the file changes.
pub fn config_hash(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    format!("{hash:016x}")
}

/// The Sentinel quorum for `replicas` Sentinels: a majority.
pub fn sentinel_quorum(replicas: i32) -> i32 {
    replicas / 2 + 1
}

/// The line of [`sentinel_conf`] that stands where the `sentinel monitor` line belongs. The
/// Sentinel init script (`scripts/sentinel-init.sh`) substitutes it by this exact text.
pub const SENTINEL_MONITOR_PLACEHOLDER: &str = "# sentinel monitor: added at start";

/// The static part of every Sentinel's configuration (the ConfigMap key `sentinel.conf`). No
/// secret, no address: the Sentinel's init script ([`crate::scripts::SENTINEL_INIT_SCRIPT`])
/// completes it.
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
    let master = names::sentinel_master_name(&rc.name_any());
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
        port = names::SENTINEL_PORT,
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
        names::sentinel_master_name(&rc.name_any()),
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
/// contract), quoted exactly as [`crate::scripts::SENTINEL_INIT_SCRIPT`] writes them. For callers
/// that hold the password anyway (tests, the drill); the operator never renders them.
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
        names::sentinel_master_name(&rc.name_any())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::tests::sample;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

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
        assert!(
            crate::scripts::SENTINEL_INIT_SCRIPT
                .contains(&format!("s|^{SENTINEL_MONITOR_PLACEHOLDER}\\$|"))
        );
        // Defaults when the spec says nothing.
        rc.spec.sentinel = None;
        let conf = sentinel_conf(&rc);
        assert!(conf.contains("sentinel down-after-milliseconds prod-redis 5000\n"));
        assert!(conf.contains("sentinel failover-timeout prod-redis 60000\n"));
    }

    /// The backlog and the replicas' output buffers follow `replicationBacklogSize`, never
    /// below Redis's own limits.
    #[test]
    fn replication_buffers_follow_the_backlog() {
        let mut rc = sample("dr-redis.yaml");
        let conf = redis_conf(&rc);
        // The defaults: 128 MiB of backlog, a 1 GiB limit:
        // maxmemory = (1024 - 128 - 256) MiB / 3 * 2 = 426.67 MiB.
        assert!(
            conf.contains(
                "repl-backlog-size 134217728\nclient-output-buffer-limit replica 268435456 134217728 120\nmaxmemory 447392426\nmaxmemory-policy noeviction\n"
            ),
            "{conf}"
        );
        rc.spec.replication_backlog_size = Some("1Gi".into());
        rc.spec.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some([("memory".to_string(), Quantity("8Gi".into()))].into()),
            ..Default::default()
        });
        rc.spec.maxmemory_policy = Some(redis_cluster_api::MaxmemoryPolicy::AllkeysLru);
        assert!(redis_conf(&rc).contains(
            "repl-backlog-size 1073741824\nclient-output-buffer-limit replica 2147483648 1073741824 120\nmaxmemory 3579139412\nmaxmemory-policy allkeys-lru\n"
        ));
        rc.spec.replication_backlog_size = Some("1Mi".into());
        assert!(redis_conf(&rc).contains(
            "repl-backlog-size 1048576\nclient-output-buffer-limit replica 268435456 67108864 120\n"
        ));
        // No memory limit: no maxmemory.
        rc.spec.resources = Some(Default::default());
        assert!(!redis_conf(&rc).contains("maxmemory "));
        // Refused by the schema (an old CRD let it in): Redis's defaults.
        rc.spec.replication_backlog_size = Some("lots".into());
        assert!(!redis_conf(&rc).contains("repl-backlog-size"));
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
}
