//! The Redis metrics a team already charts (memory, clients, commands, keyspace, evictions,
//! persistence), under redis_exporter's names, types and units, so that the common dashboards
//! and alert rules work on the sidecar alone, without a second exporter per pod.
//!
//! They come from the `INFO all` the reconcile loop reads from the local Redis once per tick
//! (one round trip it makes anyway): [`series`] turns that text into the series, the loop keeps
//! the latest set, and a scrape only encodes it ([`Latest`]). Not exported: the exporter's
//! series that need more than `INFO` (`CONFIG GET *`, `SLOWLOG`, `LATENCY`, key sampling), and
//! the allocator/defrag/tracking internals; docs/instance-manager.md lists the set.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::info::info_fields;

/// Counter or gauge, as redis_exporter types the series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One metric family: its name as Prometheus stores it (counters end in `_total`), and its
/// samples (a label, or none).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<(Option<(&'static str, String)>, f64)>,
}

/// How a field of `INFO` becomes a series.
enum Conv {
    /// The number as it is.
    Same,
    /// Microseconds (or milliseconds) to seconds.
    Scale(f64),
    /// `ok` is 1, anything else 0 (`rdb_last_bgsave_status`, `aof_last_write_status`, ...).
    Ok,
}

/// `(INFO field, name, kind, conversion, help)`, one per series; all from redis_exporter 1.45's
/// output for Redis 7.0 (the real-Redis test compares names, types and values with it).
#[rustfmt::skip]
const FIELDS: &[(&str, &str, Kind, Conv, &str)] = {
    use Conv::*;
    use Kind::*;
    &[
        ("uptime_in_seconds", "redis_uptime_in_seconds", Gauge, Same, "Seconds since the redis-server started"),
        ("connected_clients", "redis_connected_clients", Gauge, Same, "Client connections (replicas excluded)"),
        ("blocked_clients", "redis_blocked_clients", Gauge, Same, "Clients blocked in BLPOP, WAIT and the like"),
        ("maxclients", "redis_config_maxclients", Gauge, Same, "The maxclients setting"),
        ("client_recent_max_input_buffer", "redis_client_recent_max_input_buffer_bytes", Gauge, Same, "Largest client input buffer, recently"),
        ("client_recent_max_output_buffer", "redis_client_recent_max_output_buffer_bytes", Gauge, Same, "Largest client output buffer, recently"),
        ("used_memory", "redis_memory_used_bytes", Gauge, Same, "Memory Redis allocated (what maxmemory limits)"),
        ("used_memory_rss", "redis_memory_used_rss_bytes", Gauge, Same, "Resident memory of the redis-server process"),
        ("used_memory_peak", "redis_memory_used_peak_bytes", Gauge, Same, "Peak of used_memory"),
        ("used_memory_dataset", "redis_memory_used_dataset_bytes", Gauge, Same, "Memory used by the data"),
        ("used_memory_overhead", "redis_memory_used_overhead_bytes", Gauge, Same, "Memory used by Redis's own structures, buffers included"),
        ("maxmemory", "redis_memory_max_bytes", Gauge, Same, "The maxmemory setting (0: none)"),
        ("mem_fragmentation_ratio", "redis_mem_fragmentation_ratio", Gauge, Same, "RSS over used_memory"),
        ("mem_clients_slaves", "redis_mem_clients_slaves", Gauge, Same, "Memory of the replicas' output buffers"),
        ("mem_clients_normal", "redis_mem_clients_normal", Gauge, Same, "Memory of the clients' buffers"),
        ("loading", "redis_loading_dump_file", Gauge, Same, "1 while an RDB/AOF is being loaded"),
        ("rdb_changes_since_last_save", "redis_rdb_changes_since_last_save", Gauge, Same, "Writes since the last RDB save"),
        ("rdb_bgsave_in_progress", "redis_rdb_bgsave_in_progress", Gauge, Same, "1 while an RDB save runs"),
        ("rdb_last_save_time", "redis_rdb_last_save_timestamp_seconds", Gauge, Same, "Unix time of the last successful RDB save"),
        ("rdb_last_bgsave_status", "redis_rdb_last_bgsave_status", Gauge, Ok, "1 if the last RDB save succeeded"),
        ("rdb_last_bgsave_time_sec", "redis_rdb_last_bgsave_duration_sec", Gauge, Same, "Duration of the last RDB save (-1: none)"),
        ("rdb_last_cow_size", "redis_rdb_last_cow_size_bytes", Gauge, Same, "Copy-on-write memory of the last RDB save's fork"),
        ("aof_enabled", "redis_aof_enabled", Gauge, Same, "1 if appendonly is on"),
        ("aof_rewrite_in_progress", "redis_aof_rewrite_in_progress", Gauge, Same, "1 while an AOF rewrite runs"),
        ("aof_last_bgrewrite_status", "redis_aof_last_bgrewrite_status", Gauge, Ok, "1 if the last AOF rewrite succeeded"),
        ("aof_last_write_status", "redis_aof_last_write_status", Gauge, Ok, "1 if the last AOF write succeeded"),
        ("total_connections_received", "redis_connections_received_total", Counter, Same, "Connections accepted"),
        ("total_commands_processed", "redis_commands_processed_total", Counter, Same, "Commands processed"),
        ("total_net_input_bytes", "redis_net_input_bytes_total", Counter, Same, "Bytes read from the network (replication included)"),
        ("total_net_output_bytes", "redis_net_output_bytes_total", Counter, Same, "Bytes written to the network (replication included)"),
        ("rejected_connections", "redis_rejected_connections_total", Counter, Same, "Connections refused (maxclients)"),
        ("expired_keys", "redis_expired_keys_total", Counter, Same, "Keys expired"),
        ("evicted_keys", "redis_evicted_keys_total", Counter, Same, "Keys evicted by the maxmemory policy"),
        ("keyspace_hits", "redis_keyspace_hits_total", Counter, Same, "Lookups that found their key"),
        ("keyspace_misses", "redis_keyspace_misses_total", Counter, Same, "Lookups that did not"),
        ("pubsub_channels", "redis_pubsub_channels", Gauge, Same, "Pub/sub channels with subscribers"),
        ("pubsub_patterns", "redis_pubsub_patterns", Gauge, Same, "Pub/sub pattern subscriptions"),
        ("latest_fork_usec", "redis_latest_fork_seconds", Gauge, Scale(1e-6), "Duration of the latest fork"),
        ("used_cpu_sys", "redis_cpu_sys_seconds_total", Counter, Same, "System CPU time of redis-server"),
        ("used_cpu_user", "redis_cpu_user_seconds_total", Counter, Same, "User CPU time of redis-server"),
    ]
};

/// The series of one `INFO all` reply. Fields the Redis version does not have are left out
/// (no zero that would look like a measurement). `db0` is always there (0 keys when empty, as
/// the exporter has it); the other databases when they hold keys.
pub fn series(text: &str) -> Vec<Series> {
    let f = info_fields(text);
    let mut out: Vec<Series> = FIELDS
        .iter()
        .filter_map(|(field, name, kind, conv, help)| {
            let raw = f.get(field)?;
            let value = match conv {
                Conv::Same => raw.parse::<f64>().ok()?,
                Conv::Scale(k) => raw.parse::<f64>().ok()? * k,
                Conv::Ok => f64::from(u8::from(*raw == "ok")),
            };
            Some(Series {
                name,
                help,
                kind: *kind,
                samples: vec![(None, value)],
            })
        })
        .collect();
    out.extend(keyspace(&f));
    out.extend(commandstats(&f));
    out
}

/// `db<N>:keys=..,expires=..,avg_ttl=..` lines.
fn keyspace(f: &std::collections::BTreeMap<&str, &str>) -> Vec<Series> {
    let mut dbs: Vec<(u32, [f64; 3])> = f
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix("db")?.parse::<u32>().ok()?;
            let kv = |key: &str| {
                v.split(',')
                    .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|x| x.parse::<f64>().ok())
            };
            Some((
                n,
                [kv("keys")?, kv("expires")?, kv("avg_ttl").unwrap_or(0.0)],
            ))
        })
        .collect();
    if !dbs.iter().any(|(n, _)| *n == 0) {
        dbs.push((0, [0.0; 3]));
    }
    dbs.sort_by_key(|(n, _)| *n);
    let family = |name, help, i: usize, scale: f64| Series {
        name,
        help,
        kind: Kind::Gauge,
        samples: dbs
            .iter()
            .map(|(n, v)| (Some(("db", format!("db{n}"))), v[i] * scale))
            .collect(),
    };
    vec![
        family("redis_db_keys", "Keys per database", 0, 1.0),
        family(
            "redis_db_keys_expiring",
            "Keys with an expiry per database",
            1,
            1.0,
        ),
        family(
            "redis_db_avg_ttl_seconds",
            "Average time to live of the keys with an expiry",
            2,
            1e-3,
        ),
    ]
}

/// `cmdstat_<cmd>:calls=..,usec=..,usec_per_call=..,rejected_calls=..,failed_calls=..` lines
/// (`cmdstat_config|get` for subcommands; the exporter keeps the `|`).
fn commandstats(f: &std::collections::BTreeMap<&str, &str>) -> Vec<Series> {
    let cmds: Vec<(String, [f64; 4])> = f
        .iter()
        .filter_map(|(k, v)| {
            let cmd = k.strip_prefix("cmdstat_")?;
            let kv = |key: &str| {
                v.split(',')
                    .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|x| x.parse::<f64>().ok())
            };
            Some((
                cmd.to_string(),
                [
                    kv("calls")?,
                    kv("usec")? * 1e-6,
                    kv("rejected_calls").unwrap_or(0.0),
                    kv("failed_calls").unwrap_or(0.0),
                ],
            ))
        })
        .collect();
    if cmds.is_empty() {
        return Vec::new();
    }
    let family = |name, help, i: usize| Series {
        name,
        help,
        kind: Kind::Counter,
        samples: cmds
            .iter()
            .map(|(c, v)| (Some(("cmd", c.clone())), v[i]))
            .collect(),
    };
    vec![
        family("redis_commands_total", "Calls per command", 0),
        family(
            "redis_commands_duration_seconds_total",
            "Time spent per command",
            1,
        ),
        family(
            "redis_commands_rejected_calls_total",
            "Calls refused before running, per command",
            2,
        ),
        family(
            "redis_commands_failed_calls_total",
            "Calls that failed while running, per command",
            3,
        ),
    ]
}

/// The latest series, shared between the reconcile loop (which replaces them each tick) and
/// the registry (which encodes them on a scrape). Empty while the local Redis cannot be read:
/// `redis_up 0` says why, and no stale number passes for a current one.
#[derive(Clone, Debug, Default)]
pub struct Latest(Arc<Mutex<Vec<Series>>>);

impl Latest {
    pub fn set(&self, series: Vec<Series>) {
        *self.0.lock().expect("stats lock") = series;
    }
}

impl Collector for Latest {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.0.lock().expect("stats lock");
        for s in all.iter() {
            // OpenMetrics names a counter family without `_total` and adds it to its samples.
            let (family, ty) = match s.kind {
                Kind::Counter => (
                    s.name.strip_suffix("_total").unwrap_or(s.name),
                    MetricType::Counter,
                ),
                Kind::Gauge => (s.name, MetricType::Gauge),
            };
            let mut m = encoder.encode_descriptor(family, s.help, None, ty)?;
            match s.samples.as_slice() {
                // One sample without a label: the family's only one.
                [(None, value)] => encode_one(s.kind, *value, m)?,
                samples => {
                    for (label, value) in samples {
                        if let Some((k, v)) = label {
                            let labels = [(*k, v.as_str())];
                            encode_one(s.kind, *value, m.encode_family(&labels)?)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn encode_one(
    kind: Kind,
    value: f64,
    encoder: prometheus_client::encoding::MetricEncoder,
) -> Result<(), std::fmt::Error> {
    match kind {
        // A counter read from Redis is a whole number unless it is seconds.
        Kind::Counter if value.fract() == 0.0 && value >= 0.0 && value < u64::MAX as f64 => {
            ConstCounter::new(value as u64).encode(encoder)
        }
        Kind::Counter => ConstCounter::new(value).encode(encoder),
        Kind::Gauge if value.fract() == 0.0 && value.abs() < i64::MAX as f64 => {
            ConstGauge::new(value as i64).encode(encoder)
        }
        Kind::Gauge => ConstGauge::new(value).encode(encoder),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `INFO all` of redis-server 7.0.15 (trimmed), with a subcommand in the commandstats and
    /// a second database.
    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:42\r\n\
# Clients\r\nconnected_clients:3\r\nmaxclients:10000\r\nblocked_clients:1\r\n\
# Memory\r\nused_memory:1048576\r\nmaxmemory:0\r\nmem_fragmentation_ratio:1.25\r\n\
# Persistence\r\nloading:0\r\nrdb_last_bgsave_status:err\r\naof_last_write_status:ok\r\n\
rdb_last_save_time:1764280000\r\n\
# Stats\r\ntotal_commands_processed:1234\r\nlatest_fork_usec:1500\r\nexpired_keys:7\r\n\
# CPU\r\nused_cpu_sys:0.125\r\n\
# Commandstats\r\ncmdstat_set:calls=10,usec=50,usec_per_call=5.00,rejected_calls=1,failed_calls=2\r\n\
cmdstat_config|get:calls=3,usec=300,usec_per_call=100.00,rejected_calls=0,failed_calls=0\r\n\
# Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=1500\r\ndb3:keys=1,expires=0,avg_ttl=0\r\n";

    fn value(all: &[Series], name: &str, label: Option<&str>) -> Option<f64> {
        let s = all.iter().find(|s| s.name == name)?;
        s.samples
            .iter()
            .find(|(l, _)| l.as_ref().map(|(_, v)| v.as_str()) == label)
            .map(|(_, v)| *v)
    }

    #[test]
    fn info_fields_become_exporter_series() {
        let all = series(INFO);
        let rows: &[(&str, Option<&str>, Option<f64>)] = &[
            ("redis_uptime_in_seconds", None, Some(42.0)),
            ("redis_connected_clients", None, Some(3.0)),
            ("redis_config_maxclients", None, Some(10000.0)),
            ("redis_memory_used_bytes", None, Some(1048576.0)),
            ("redis_memory_max_bytes", None, Some(0.0)),
            ("redis_mem_fragmentation_ratio", None, Some(1.25)),
            ("redis_rdb_last_bgsave_status", None, Some(0.0)),
            ("redis_aof_last_write_status", None, Some(1.0)),
            ("redis_commands_processed_total", None, Some(1234.0)),
            ("redis_latest_fork_seconds", None, Some(0.0015)),
            ("redis_cpu_sys_seconds_total", None, Some(0.125)),
            ("redis_expired_keys_total", None, Some(7.0)),
            ("redis_db_keys", Some("db0"), Some(5.0)),
            ("redis_db_keys", Some("db3"), Some(1.0)),
            ("redis_db_keys_expiring", Some("db0"), Some(2.0)),
            ("redis_db_avg_ttl_seconds", Some("db0"), Some(1.5)),
            ("redis_commands_total", Some("set"), Some(10.0)),
            ("redis_commands_total", Some("config|get"), Some(3.0)),
            (
                "redis_commands_duration_seconds_total",
                Some("config|get"),
                Some(0.0003),
            ),
            (
                "redis_commands_rejected_calls_total",
                Some("set"),
                Some(1.0),
            ),
            ("redis_commands_failed_calls_total", Some("set"), Some(2.0)),
            // Not in this INFO: left out, not zero.
            ("redis_evicted_keys_total", None, None),
            ("redis_memory_used_rss_bytes", None, None),
        ];
        for (name, label, expected) in rows {
            let got = value(&all, name, *label);
            match (got, expected) {
                (Some(g), Some(e)) => assert!((g - e).abs() < 1e-9, "{name} {label:?}: {g} != {e}"),
                (g, e) => assert_eq!(g, *e, "{name} {label:?}"),
            }
        }
    }

    #[test]
    fn an_empty_keyspace_still_has_db0_and_no_commandstats_no_command_series() {
        let all = series("# Keyspace\r\n");
        assert_eq!(value(&all, "redis_db_keys", Some("db0")), Some(0.0));
        assert!(!all.iter().any(|s| s.name == "redis_commands_total"));
    }

    #[test]
    fn encoded_as_openmetrics_with_the_exporters_names() {
        let latest = Latest::default();
        latest.set(series(INFO));
        let mut r = prometheus_client::registry::Registry::default();
        r.register_collector(Box::new(latest.clone()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        for line in [
            "# TYPE redis_commands_processed counter",
            "redis_commands_processed_total 1234",
            "redis_cpu_sys_seconds_total 0.125",
            "# TYPE redis_memory_used_bytes gauge",
            "redis_memory_used_bytes 1048576",
            "redis_mem_fragmentation_ratio 1.25",
            "redis_db_keys{db=\"db3\"} 1",
            "redis_commands_total{cmd=\"config|get\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        // Redis cannot be read: nothing, rather than the last numbers.
        latest.set(Vec::new());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert_eq!(text.trim(), "# EOF");
    }
}
