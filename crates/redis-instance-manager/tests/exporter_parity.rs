//! The sidecar's Redis metrics (`stats.rs`) against prometheus-redis-exporter itself, on the
//! same redis-server: every family the sidecar exports from `INFO` must exist in the exporter's
//! output with the same name, type and labels, and the values that stand still between the two
//! scrapes must be equal. So a dashboard or alert written for redis_exporter works on the sidecar.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// `name{labels}` -> value, and `name` -> type, of a Prometheus or OpenMetrics text.
fn parse(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut it = t.split_whitespace();
            if let (Some(n), Some(ty)) = (it.next(), it.next()) {
                types.insert(n.to_string(), ty.to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if let Ok(v) = value.parse::<f64>() {
            samples.insert(series.to_string(), v);
        }
    }
    (samples, types)
}

/// The sidecar's series without its registry-wide labels (`cluster`, `namespace`, `pod`), so
/// that `redis_db_keys{cluster="dr",namespace="test",pod="x",db="db0"}` reads
/// `redis_db_keys{db="db0"}` as the exporter writes it.
fn strip_pod_labels(series: &str) -> String {
    let Some((name, rest)) = series.split_once('{') else {
        return series.to_string();
    };
    let labels: Vec<&str> = rest
        .trim_end_matches('}')
        .split(',')
        .filter(|l| {
            !l.starts_with("cluster=") && !l.starts_with("namespace=") && !l.starts_with("pod=")
        })
        .collect();
    if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

#[test]
fn the_sidecars_redis_metrics_are_redis_exporters() {
    require("prometheus-redis-exporter");
    let dir = scratch("parity");
    let redis = RedisServer::start(RedisOpts::default());
    let topo = TopologyFile::new(&dir);
    topo.write(&primary_topology(1));
    let im = Im::start(None, &redis, &topo, &dir, &[]);
    im.wait_status("primary, writable", SECS(15), |s| {
        s["role"] == "primary" && s["fenced"] == false
    });
    // Something in every section: keys in two databases, expiries, hits, misses, a failed
    // call, a snapshot.
    for i in 0..20 {
        redis.cli(&["SET", &format!("k{i}"), "v"]);
    }
    redis.cli(&["SET", "ttl", "v", "EX", "1000"]);
    redis.cli(&["-n", "3", "SET", "other", "v"]);
    redis.cli(&["GET", "k1"]);
    redis.cli(&["GET", "missing"]);
    redis.cli(&["INCR", "k2"]);
    redis.cli(&["SAVE"]);

    let port = free_port();
    let _exporter = Proc::adopt(
        "exporter",
        Command::new("prometheus-redis-exporter")
            .args([
                "--redis.addr",
                &format!("redis://127.0.0.1:{}", redis.port()),
            ])
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let scrape = || {
        redis_test_support::http::get(&format!("127.0.0.1:{port}"), "/metrics")
            .ok()
            .filter(|(code, body)| *code == 200 && body.contains("redis_up 1"))
            .map(|(_, body)| body)
    };
    wait_until(SECS(10), || scrape().is_some()).expect("the exporter answers");
    let exporter_text = scrape().expect("the exporter answers");
    // The sidecar's next tick reads INFO after the writes above.
    std::thread::sleep(SECS(2));
    let (ours, our_types) = parse(&im.metrics());
    let (theirs, their_types) = parse(&exporter_text);
    let ours: BTreeMap<String, f64> = ours
        .into_iter()
        .map(|(k, v)| (strip_pod_labels(&k), v))
        .collect();

    let families = redis_instance_manager::stats::series(&redis.cli(&["INFO", "all"]));
    assert!(families.len() >= 40, "{} families", families.len());
    let mut checked = BTreeSet::new();
    for f in &families {
        // OpenMetrics types a counter family without `_total`; the exporter's text format
        // with it.
        let family = match f.kind {
            redis_instance_manager::stats::Kind::Counter => f.name.trim_end_matches("_total"),
            redis_instance_manager::stats::Kind::Gauge => f.name,
        };
        let ty = our_types.get(family).map(String::as_str);
        let expected = match f.kind {
            redis_instance_manager::stats::Kind::Counter => "counter",
            redis_instance_manager::stats::Kind::Gauge => "gauge",
        };
        assert_eq!(ty, Some(expected), "{} typed {ty:?} by the sidecar", f.name);
        assert_eq!(
            their_types.get(f.name).map(String::as_str),
            Some(expected),
            "{} has another type (or none) in the exporter",
            f.name
        );
        for (label, _) in &f.samples {
            let series = match label {
                None => f.name.to_string(),
                Some((k, v)) => format!("{}{{{k}=\"{v}\"}}", f.name),
            };
            // The exporter's own calls (CONFIG GET, INFO, CLIENT, SLOWLOG, ...) are its
            // business; the sidecar's INFO and CONFIG GET are the sidecar's.
            if series.starts_with("redis_commands")
                && !["set", "get", "incr", "save"]
                    .iter()
                    .any(|c| series.contains(&format!("cmd=\"{c}\"")))
            {
                continue;
            }
            assert!(
                ours.contains_key(&series),
                "{series} not exported by the sidecar"
            );
            assert!(
                theirs.contains_key(&series),
                "{series} exported by the sidecar but not by redis_exporter"
            );
            checked.insert(series);
        }
    }
    // Values that stand still between the two scrapes.
    for series in [
        "redis_db_keys{db=\"db0\"}",
        "redis_db_keys{db=\"db3\"}",
        "redis_db_keys_expiring{db=\"db0\"}",
        "redis_memory_max_bytes",
        "redis_config_maxclients",
        "redis_aof_enabled",
        "redis_rdb_last_bgsave_status",
        "redis_rdb_last_save_timestamp_seconds",
        "redis_rdb_changes_since_last_save",
        "redis_expired_keys_total",
        "redis_evicted_keys_total",
        "redis_keyspace_hits_total",
        "redis_keyspace_misses_total",
        "redis_commands_total{cmd=\"set\"}",
        "redis_commands_total{cmd=\"incr\"}",
        "redis_commands_failed_calls_total{cmd=\"incr\"}",
        "redis_loading_dump_file",
    ] {
        assert_eq!(
            ours.get(series),
            theirs.get(series),
            "{series}: sidecar vs redis_exporter"
        );
    }
    assert_eq!(ours.get("redis_db_keys{db=\"db0\"}"), Some(&21.0));
    assert_eq!(
        ours.get("redis_commands_failed_calls_total{cmd=\"incr\"}"),
        Some(&1.0)
    );
    eprintln!(
        "parity: {} series checked against redis_exporter ({} families)",
        checked.len(),
        families.len()
    );

    // Redis gone: redis_up 0 and none of its numbers (the exporter does the same).
    drop(redis);
    wait_until(SECS(10), || im.metric("redis_up") == Some(0.0)).expect("redis_up 0");
    let text = im.metrics();
    assert!(
        !text.contains("redis_memory_used_bytes"),
        "stale numbers of a Redis that cannot be read:\n{text}"
    );
}
