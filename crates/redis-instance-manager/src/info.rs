//! Parsing `INFO` and `CONFIG GET` replies into what `commands_for` and the metrics need.

use std::collections::BTreeMap;

use redis_cluster_api::topology::FENCE_MIN_REPLICAS;

use crate::divergence::UpstreamIds;
use crate::secret::Secret;

/// The parameters the instance manager owns, as `CONFIG GET` spells them.
pub const OWNED_PARAMETERS: &[&str] = &[
    "replica-priority",
    "replica-announced",
    "min-replicas-to-write",
    "min-replicas-max-lag",
    "masteruser",
    "masterauth",
    "tls-replication",
    "tls-ca-cert-file",
    "tls-cert-file",
    "tls-key-file",
];

/// The role Redis reports in `INFO replication`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisRole {
    Master,
    Slave,
}

/// What one `INFO` (default sections) says about a Redis server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub run_id: String,
    pub redis_version: String,
    pub redis_mode: String,
    pub role: RedisRole,
    /// `master_host`/`master_port`, when a replica.
    pub master: Option<(String, u16)>,
    /// `master_link_status:up`.
    pub master_link_status_up: bool,
    /// `master_last_io_seconds_ago` (-1 when never).
    pub master_last_io_seconds_ago: Option<i64>,
    /// `master_sync_in_progress:1`.
    pub master_sync_in_progress: bool,
    /// `slave_repl_offset` (replicas only).
    pub slave_repl_offset: Option<i64>,
    /// `master_repl_offset`.
    pub master_repl_offset: i64,
    /// `master_replid`: on a replica, the replication id of the history it follows.
    pub master_replid: String,
    /// `master_replid2`: the history this one continued from (`000...` when none).
    pub master_replid2: String,
    /// `second_repl_offset`: up to where `master_replid2` is shared (-1 when none).
    pub second_repl_offset: i64,
    /// Keys held: the sum of `keys=` over the databases of the keyspace section.
    pub keys: u64,
    /// `uptime_in_seconds`.
    pub uptime_seconds: u64,
    pub connected_slaves: u32,
    pub sync_full: u64,
    pub sync_partial_ok: u64,
    pub sync_partial_err: u64,
    /// `loading:1` (an RDB/AOF is being loaded; commands answer `-LOADING`).
    pub loading: bool,
}

/// `key:value` lines of an `INFO` reply.
pub fn info_fields(text: &str) -> BTreeMap<&str, &str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
        .collect()
}

/// The keys of every database of an `INFO keyspace` section (`db0:keys=3,expires=0,...`).
pub fn keyspace_keys(f: &BTreeMap<&str, &str>) -> u64 {
    f.iter()
        .filter(|(k, _)| {
            k.strip_prefix("db")
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|(_, v)| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("keys="))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

impl Observed {
    /// Parse an `INFO` reply that includes the server, persistence, stats and replication
    /// sections (plain `INFO` does).
    pub fn parse(text: &str) -> Result<Observed, String> {
        let f = info_fields(text);
        let get = |k: &str| f.get(k).copied();
        let num = |k: &str| get(k).and_then(|v| v.parse::<i64>().ok());
        let role = match get("role") {
            Some("master") => RedisRole::Master,
            Some("slave") => RedisRole::Slave,
            other => return Err(format!("INFO has no usable role field ({other:?})")),
        };
        let master = match (role, get("master_host"), num("master_port")) {
            (RedisRole::Slave, Some(h), Some(p)) => Some((h.to_string(), p as u16)),
            _ => None,
        };
        Ok(Observed {
            run_id: get("run_id").unwrap_or_default().to_string(),
            redis_version: get("redis_version").unwrap_or_default().to_string(),
            redis_mode: get("redis_mode").unwrap_or_default().to_string(),
            role,
            master,
            master_link_status_up: get("master_link_status") == Some("up"),
            master_last_io_seconds_ago: num("master_last_io_seconds_ago"),
            master_sync_in_progress: get("master_sync_in_progress") == Some("1"),
            slave_repl_offset: num("slave_repl_offset"),
            master_repl_offset: num("master_repl_offset").unwrap_or(0),
            master_replid: get("master_replid").unwrap_or_default().to_string(),
            master_replid2: get("master_replid2").unwrap_or_default().to_string(),
            second_repl_offset: num("second_repl_offset").unwrap_or(-1),
            keys: keyspace_keys(&f),
            uptime_seconds: num("uptime_in_seconds").unwrap_or(0).max(0) as u64,
            connected_slaves: num("connected_slaves").unwrap_or(0) as u32,
            sync_full: num("sync_full").unwrap_or(0) as u64,
            sync_partial_ok: num("sync_partial_ok").unwrap_or(0) as u64,
            sync_partial_err: num("sync_partial_err").unwrap_or(0) as u64,
            loading: get("loading") == Some("1"),
        })
    }

    /// What this replica has processed: `slave_repl_offset` (falls back to
    /// `master_repl_offset`, which Redis keeps equal on a replica).
    pub fn processed_offset(&self) -> i64 {
        self.slave_repl_offset.unwrap_or(self.master_repl_offset)
    }
}

/// What the upstream probe's `INFO replication` says, as far as the instance manager uses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamInfo {
    /// The upstream's `master_repl_offset`: what it has written, the reference for lag.
    pub master_repl_offset: Option<i64>,
    /// Its replication ids, to tell whether this replica diverged at a failover and whether it
    /// still streams from what the address leads to.
    pub ids: Option<UpstreamIds>,
    /// Its role (`None` if the reply has none).
    pub role: Option<RedisRole>,
    /// When it is itself a replica: whom it replicates (`master_host`, `master_port`).
    pub master: Option<(String, u16)>,
    /// Its `repl_backlog_size`: how many bytes of its stream it keeps for replicas that
    /// reconnect (more than that written while a replica is away means a full resync).
    pub repl_backlog_size: Option<i64>,
    /// When it is itself a replica: whether its own link is up (`master_link_status`).
    pub master_link_up: Option<bool>,
}

impl UpstreamInfo {
    pub fn parse(text: &str) -> UpstreamInfo {
        let f = info_fields(text);
        let role = match f.get("role") {
            Some(&"master") => Some(RedisRole::Master),
            Some(&"slave") => Some(RedisRole::Slave),
            _ => None,
        };
        let master = match (
            role,
            f.get("master_host"),
            f.get("master_port").and_then(|p| p.parse().ok()),
        ) {
            (Some(RedisRole::Slave), Some(h), Some(p)) => Some((h.to_string(), p)),
            _ => None,
        };
        UpstreamInfo {
            master_repl_offset: f.get("master_repl_offset").and_then(|v| v.parse().ok()),
            ids: UpstreamIds::from_fields(&f),
            role,
            master,
            repl_backlog_size: f.get("repl_backlog_size").and_then(|v| v.parse().ok()),
            master_link_up: f.get("master_link_status").map(|v| *v == "up"),
        }
    }
}

/// The current values of [`OWNED_PARAMETERS`]. `masterauth` is kept as a [`Secret`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisConfig {
    pub values: BTreeMap<String, String>,
    pub masterauth: Option<Secret>,
}

impl RedisConfig {
    /// From the flat `[name, value, name, value, ...]` reply of `CONFIG GET`.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> RedisConfig {
        let mut c = RedisConfig::default();
        for (k, v) in pairs {
            if k == "masterauth" {
                c.masterauth = (!v.is_empty()).then(|| Secret::new(v));
            } else {
                c.values.insert(k, v);
            }
        }
        c
    }

    pub fn get(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }

    /// `min-replicas-to-write` is at the fence value: Redis accepts no write (`-NOREPLICAS`).
    pub fn fenced(&self) -> bool {
        self.get("min-replicas-to-write")
            .parse::<u32>()
            .is_ok_and(|v| v >= FENCE_MIN_REPLICAS)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const REPLICA_INFO: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nrun_id:abc\r\n\r\n# Persistence\r\nloading:0\r\n\r\n# Stats\r\nsync_full:0\r\nsync_partial_ok:2\r\nsync_partial_err:0\r\n\r\n# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:1\r\nmaster_sync_in_progress:0\r\nslave_read_repl_offset:1500\r\nslave_repl_offset:1500\r\nslave_priority:0\r\nconnected_slaves:0\r\nmaster_repl_offset:1500\r\n";

    #[test]
    fn parses_a_replica() {
        let o = Observed::parse(REPLICA_INFO).unwrap();
        assert_eq!(o.role, RedisRole::Slave);
        assert_eq!(o.master, Some(("10.0.0.1".into(), 6379)));
        assert!(o.master_link_status_up);
        assert_eq!(o.slave_repl_offset, Some(1500));
        assert_eq!(o.sync_partial_ok, 2);
        assert_eq!(o.run_id, "abc");
        assert_eq!(o.processed_offset(), 1500);
        assert!(!o.loading);
    }

    #[test]
    fn keys_are_summed_over_the_databases() {
        let text = "# Server\r\nuptime_in_seconds:42\r\n# Replication\r\nrole:master\r\nmaster_replid:aaa\r\nmaster_replid2:bbb\r\nsecond_repl_offset:7\r\n# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb5:keys=4,expires=1,avg_ttl=10\r\n";
        let o = Observed::parse(text).unwrap();
        assert_eq!(o.keys, 7);
        assert_eq!(o.uptime_seconds, 42);
        assert_eq!(
            (o.master_replid2.as_str(), o.second_repl_offset),
            ("bbb", 7)
        );
        // An empty keyspace section has no db lines.
        let o = Observed::parse("role:master\r\n# Keyspace\r\n").unwrap();
        assert_eq!(o.keys, 0);
        assert_eq!(o.second_repl_offset, -1);
    }

    #[test]
    fn parses_a_master_and_rejects_garbage() {
        let o = Observed::parse("role:master\r\nconnected_slaves:2\r\nmaster_repl_offset:77\r\nloading:1\r\nmaster_host:ignored\r\n").unwrap();
        assert_eq!(o.role, RedisRole::Master);
        assert_eq!(o.master, None);
        assert_eq!(o.connected_slaves, 2);
        assert_eq!(o.master_repl_offset, 77);
        assert!(o.loading);
        assert!(Observed::parse("nothing here").is_err());
    }

    #[test]
    fn parses_what_the_probe_uses_of_the_upstream() {
        let u = UpstreamInfo::parse(
            "# Replication\r\nrole:master\r\nmaster_replid:bbb\r\nmaster_replid2:aaa\r\nmaster_repl_offset:900\r\nsecond_repl_offset:501\r\n",
        );
        assert_eq!(u.master_repl_offset, Some(900));
        assert_eq!(u.role, Some(RedisRole::Master));
        assert_eq!(u.master, None);
        assert_eq!(u.ids.unwrap().second_repl_offset, 501);
        let r = UpstreamInfo::parse(
            "role:slave\r\nmaster_host:10.0.0.9\r\nmaster_port:6380\r\nrepl_backlog_size:1048576\r\n",
        );
        assert_eq!(r.repl_backlog_size, Some(1_048_576));
        assert_eq!(r.role, Some(RedisRole::Slave));
        assert_eq!(r.master, Some(("10.0.0.9".into(), 6380)));
        assert_eq!(
            UpstreamInfo::parse("role:master\r\n"),
            UpstreamInfo {
                role: Some(RedisRole::Master),
                ..Default::default()
            }
        );
    }

    #[test]
    fn config_keeps_masterauth_secret() {
        let c = RedisConfig::from_pairs(vec![
            ("masterauth".into(), "hunter2".into()),
            ("replica-priority".into(), "0".into()),
        ]);
        assert_eq!(c.get("replica-priority"), "0");
        assert_eq!(c.get("masterauth"), "");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.fenced());
    }

    #[test]
    fn fenced_is_min_replicas_to_write_at_the_fence_value() {
        let c = |v: &str| RedisConfig::from_pairs(vec![("min-replicas-to-write".into(), v.into())]);
        assert!(c("1000000").fenced());
        assert!(c("2000000").fenced());
        assert!(!c("999999").fenced());
        assert!(!c("0").fenced());
        assert!(!RedisConfig::default().fenced());
    }
}
