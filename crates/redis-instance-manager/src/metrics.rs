//! The metrics Prometheus scrapes, with redis_exporter's names where it has one.
//!
//! Every series carries `cluster`, `namespace` and `pod` (registry-wide labels). Values are
//! updated by the reconcile loop once per probe interval; a scrape only encodes them, so it
//! costs no Redis round trip and cannot hang on a slow upstream.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `master_host`/`master_port`, as redis_exporter labels its replica metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MasterLabels {
    pub master_host: String,
    pub master_port: String,
}

/// Labels of `redis_instance_info` (a subset of redis_exporter's).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub role: String,
    pub redis_version: String,
    pub redis_mode: String,
    pub run_id: String,
}

/// OpenMetrics content type for `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Metrics {
    registry: Registry,
    pub up: Gauge,
    pub instance_info: Family<InfoLabels, Gauge>,
    pub master_link_up: Family<MasterLabels, Gauge>,
    pub master_last_io_seconds_ago: Family<MasterLabels, Gauge>,
    pub master_sync_in_progress: Family<MasterLabels, Gauge>,
    pub slave_repl_offset: Family<MasterLabels, Gauge>,
    pub upstream_repl_offset: Family<MasterLabels, Gauge>,
    pub replication_lag_bytes: Gauge,
    pub replication_lag_seconds: Gauge<f64, AtomicU64>,
    pub replication_diverged_bytes: Gauge,
    pub master_repl_offset: Gauge,
    pub connected_slaves: Gauge,
    pub resyncs_full: Gauge,
    pub partial_resync_accepted: Gauge,
    pub partial_resync_denied: Gauge,
    pub applied_epoch: Gauge,
    pub topology_errors: Gauge,
    pub fenced: Gauge,
    pub upstream_probe_seconds: Gauge<f64, AtomicU64>,
}

impl Metrics {
    pub fn new(cluster: &str, namespace: &str, pod: &str) -> Metrics {
        let labels = [
            ("cluster", cluster.to_string()),
            ("namespace", namespace.to_string()),
            ("pod", pod.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v)));
        let mut r = Registry::with_labels(labels);
        let m = Metrics {
            registry: Registry::default(),
            up: Gauge::default(),
            instance_info: Family::default(),
            master_link_up: Family::default(),
            master_last_io_seconds_ago: Family::default(),
            master_sync_in_progress: Family::default(),
            slave_repl_offset: Family::default(),
            upstream_repl_offset: Family::default(),
            replication_lag_bytes: Gauge::default(),
            replication_lag_seconds: Gauge::default(),
            replication_diverged_bytes: Gauge::default(),
            master_repl_offset: Gauge::default(),
            connected_slaves: Gauge::default(),
            resyncs_full: Gauge::default(),
            partial_resync_accepted: Gauge::default(),
            partial_resync_denied: Gauge::default(),
            applied_epoch: Gauge::default(),
            topology_errors: Gauge::default(),
            fenced: Gauge::default(),
            upstream_probe_seconds: Gauge::default(),
        };
        r.register(
            "redis_up",
            "1 if the local redis-server answered INFO in the last probe",
            m.up.clone(),
        );
        r.register(
            "redis_instance_info",
            "Information about the local Redis; the role label is master or slave",
            m.instance_info.clone(),
        );
        r.register(
            "redis_master_link_up",
            "1 if Redis reports master_link_status:up AND the instance manager's own probe of the upstream answered within the probe timeout",
            m.master_link_up.clone(),
        );
        r.register(
            "redis_master_last_io_seconds_ago",
            "Seconds since the last interaction with the upstream (master_last_io_seconds_ago)",
            m.master_last_io_seconds_ago.clone(),
        );
        r.register(
            "redis_master_sync_in_progress",
            "1 while a sync from the upstream is in progress",
            m.master_sync_in_progress.clone(),
        );
        r.register(
            "redis_slave_repl_offset",
            "Replication offset this replica has processed (slave_repl_offset)",
            m.slave_repl_offset.clone(),
        );
        r.register(
            "redis_upstream_repl_offset",
            "The upstream's master_repl_offset, read from the upstream by the instance manager",
            m.upstream_repl_offset.clone(),
        );
        r.register(
            "redis_replication_lag_bytes",
            "Upstream master_repl_offset (read from the upstream) minus this replica's slave_repl_offset; 0 on a primary",
            m.replication_lag_bytes.clone(),
        );
        r.register(
            "redis_replication_lag_seconds",
            "Seconds since the upstream's offset first exceeded this replica's offset (probe-interval resolution); 0 when caught up and on a primary",
            m.replication_lag_seconds.clone(),
        );
        r.register(
            "redis_replication_diverged_bytes",
            "Bytes this replica held that its new upstream never received, at the last failover of the upstream since the instance manager started (a full resync lost them); 0 if none",
            m.replication_diverged_bytes.clone(),
        );
        r.register(
            "redis_master_repl_offset",
            "master_repl_offset of the local Redis",
            m.master_repl_offset.clone(),
        );
        r.register(
            "redis_connected_slaves",
            "Replicas connected to the local Redis",
            m.connected_slaves.clone(),
        );
        r.register(
            "redis_replica_resyncs_full",
            "Full resyncs the local Redis served (sync_full; resets when redis-server restarts)",
            m.resyncs_full.clone(),
        );
        r.register(
            "redis_replica_partial_resync_accepted",
            "Partial resyncs the local Redis accepted (sync_partial_ok)",
            m.partial_resync_accepted.clone(),
        );
        r.register(
            "redis_replica_partial_resync_denied",
            "Partial resyncs the local Redis denied (sync_partial_err)",
            m.partial_resync_denied.clone(),
        );
        r.register(
            "redis_instance_manager_applied_epoch",
            "Highest topology epoch applied to the local Redis (-1: none yet)",
            m.applied_epoch.clone(),
        );
        r.register(
            "redis_instance_manager_topology_error",
            "1 while the topology cannot be applied (see /status error)",
            m.topology_errors.clone(),
        );
        r.register(
            "redis_instance_manager_fenced",
            "1 while min-replicas-to-write is at the fence value: Redis refuses every write",
            m.fenced.clone(),
        );
        r.register(
            "redis_instance_manager_upstream_probe_seconds",
            "Duration of the last tick's concurrent reads: local INFO and CONFIG GET, and the upstream probe",
            m.upstream_probe_seconds.clone(),
        );
        m.applied_epoch.set(-1);
        Metrics { registry: r, ..m }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut s, &self.registry)
            .expect("writing to a String cannot fail");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_has_the_pod_labels_and_exporter_names() {
        let m = Metrics::new("dr", "prod", "dr-0");
        m.up.set(1);
        m.master_link_up
            .get_or_create(&MasterLabels {
                master_host: "src".into(),
                master_port: "6379".into(),
            })
            .set(1);
        let text = m.encode();
        assert!(text.ends_with("# EOF\n"));
        let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(series.len() > 10);
        for s in series {
            assert!(
                s.contains("cluster=\"dr\"")
                    && s.contains("namespace=\"prod\"")
                    && s.contains("pod=\"dr-0\""),
                "{s}"
            );
        }
        for name in [
            "redis_up",
            "redis_master_link_up",
            "redis_replication_lag_bytes",
            "redis_replication_diverged_bytes",
            "redis_master_repl_offset",
            "redis_connected_slaves",
            "redis_replica_resyncs_full",
        ] {
            assert!(text.contains(&format!("\n{name}{{")), "{name}");
        }
    }
}
