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
use redis_cluster_api::report::InstanceReport;
use redis_cluster_api::topology::Upstream;

use crate::info::{Observed, RedisRole};

/// `master_host`/`master_port`, as redis_exporter labels its replica metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MasterLabels {
    pub master_host: String,
    pub master_port: String,
}

impl MasterLabels {
    /// Replica series are labelled with the topology's upstream, or with the one Redis reports
    /// (the topology says primary but Redis still replicates); none for a master.
    pub fn of(upstream: Option<&Upstream>, observed: Option<&Observed>) -> Option<MasterLabels> {
        upstream
            .map(|u| (u.host.clone(), u.port))
            .or_else(|| observed.and_then(|o| o.master.clone()))
            .map(|(h, p)| MasterLabels {
                master_host: h,
                master_port: p.to_string(),
            })
    }
}

/// Labels of `redis_instance_info` (a subset of redis_exporter's).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub role: String,
    pub redis_version: String,
    pub redis_mode: String,
    pub run_id: String,
}

impl InfoLabels {
    pub fn of(o: &Observed) -> InfoLabels {
        InfoLabels {
            role: match o.role {
                RedisRole::Master => "master".into(),
                RedisRole::Slave => "slave".into(),
            },
            redis_version: o.redis_version.clone(),
            redis_mode: o.redis_mode.clone(),
            run_id: o.run_id.clone(),
        }
    }
}

/// The label sets exported now: when one changes, the series with the old labels are removed
/// rather than left behind at their last value.
#[derive(Debug, Default)]
pub struct Exported {
    master: Option<MasterLabels>,
    info: Option<InfoLabels>,
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
    pub history_blocked: Family<MasterLabels, Gauge>,
    pub upstream_last_seen_seconds: Family<MasterLabels, Gauge<f64, AtomicU64>>,
    pub lag_at_last_contact_bytes: Family<MasterLabels, Gauge>,
    pub lag_at_last_contact_seconds: Family<MasterLabels, Gauge<f64, AtomicU64>>,
    pub replication_lag_bytes: Gauge,
    pub replication_lag_seconds: Gauge<f64, AtomicU64>,
    pub upstream_backlog_bytes: Gauge,
    pub upstream_write_rate: Gauge<f64, AtomicU64>,
    pub backlog_outage_seconds: Gauge<f64, AtomicU64>,
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
    /// The local Redis's own metrics, redis_exporter's names ([`crate::stats`]).
    pub stats: crate::stats::Latest,
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
            history_blocked: Family::default(),
            upstream_last_seen_seconds: Family::default(),
            lag_at_last_contact_bytes: Family::default(),
            lag_at_last_contact_seconds: Family::default(),
            replication_lag_bytes: Gauge::default(),
            replication_lag_seconds: Gauge::default(),
            upstream_backlog_bytes: Gauge::default(),
            upstream_write_rate: Gauge::default(),
            backlog_outage_seconds: Gauge::default(),
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
            stats: crate::stats::Latest::default(),
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
            "redis_replication_history_blocked",
            "1 while this replica refuses to sync from its upstream because the upstream's replication history does not contain the data it holds (a sync would flush it); see /status historyBlocked",
            m.history_blocked.clone(),
        );
        r.register(
            "redis_replication_upstream_last_seen_seconds",
            "Seconds since the instance manager last read the upstream's replication offset (about 0 while the link is up): while the link is down, how long the upstream has been taking writes this replica cannot count",
            m.upstream_last_seen_seconds.clone(),
        );
        r.register(
            "redis_replication_lag_at_last_contact_bytes",
            "This replica's lag in bytes when the upstream was last read: while the link is down, the known part of what a promotion now would lose (the upstream's writes since are unknown)",
            m.lag_at_last_contact_bytes.clone(),
        );
        r.register(
            "redis_replication_lag_at_last_contact_seconds",
            "... the same lag in seconds of the upstream's writes, when it was known",
            m.lag_at_last_contact_seconds.clone(),
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
            "redis_replication_upstream_backlog_bytes",
            "The upstream's repl_backlog_size: bytes of its stream it keeps for a replica that reconnects",
            m.upstream_backlog_bytes.clone(),
        );
        r.register(
            "redis_replication_upstream_write_rate_bytes",
            "Bytes per second the upstream wrote to its replication stream over the last minute",
            m.upstream_write_rate.clone(),
        );
        r.register(
            "redis_replication_backlog_outage_seconds",
            "How long the link to the upstream can be down now before this replica needs a full resync: (upstream backlog - lag bytes) / upstream write rate; 86400 when nothing is written",
            m.backlog_outage_seconds.clone(),
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
        r.register_collector(Box::new(m.stats.clone()));
        m.applied_epoch.set(-1);
        Metrics { registry: r, ..m }
    }

    /// Set every series from one tick: its report, what the local Redis said (`None`: it could
    /// not be read), the topology's upstream, and how long the tick's reads took.
    pub fn publish(
        &self,
        exported: &mut Exported,
        report: &InstanceReport,
        observed: Option<&Observed>,
        upstream: Option<&Upstream>,
        probe_seconds: f64,
    ) {
        self.up.set(i64::from(observed.is_some()));
        self.applied_epoch
            .set(report.applied_epoch.map_or(-1, |e| e as i64));
        self.topology_errors.set(i64::from(report.error.is_some()));
        self.fenced.set(i64::from(report.fenced));
        if upstream.is_some() {
            self.upstream_probe_seconds.set(probe_seconds);
        }
        let info = observed.map(InfoLabels::of);
        if info != exported.info {
            self.instance_info.clear();
            if let Some(l) = &info {
                self.instance_info.get_or_create(l).set(1);
            }
            exported.info = info;
        }
        let master = MasterLabels::of(upstream, observed);
        if master != exported.master {
            self.master_link_up.clear();
            self.master_last_io_seconds_ago.clear();
            self.master_sync_in_progress.clear();
            self.slave_repl_offset.clear();
            self.upstream_repl_offset.clear();
            self.history_blocked.clear();
            self.upstream_last_seen_seconds.clear();
            self.lag_at_last_contact_bytes.clear();
            self.lag_at_last_contact_seconds.clear();
            exported.master = master.clone();
        }
        if let Some(l) = &master {
            self.master_link_up
                .get_or_create(l)
                .set(i64::from(report.master_link_up));
            self.history_blocked
                .get_or_create(l)
                .set(i64::from(report.history_blocked.is_some()));
            if let Some(o) = observed {
                self.master_last_io_seconds_ago
                    .get_or_create(l)
                    .set(o.master_last_io_seconds_ago.unwrap_or(-1));
                self.master_sync_in_progress
                    .get_or_create(l)
                    .set(i64::from(o.master_sync_in_progress));
                self.slave_repl_offset
                    .get_or_create(l)
                    .set(o.processed_offset());
            }
            if let Some(uo) = report.upstream_offset {
                self.upstream_repl_offset.get_or_create(l).set(uo);
            }
            if let Some(c) = &report.upstream_last_seen {
                self.upstream_last_seen_seconds
                    .get_or_create(l)
                    .set(c.seconds_ago);
                // Unknown then (the local Redis could not be read): no value rather than a
                // stale one from an earlier contact.
                match c.lag_bytes {
                    Some(b) => {
                        self.lag_at_last_contact_bytes.get_or_create(l).set(b);
                    }
                    None => {
                        self.lag_at_last_contact_bytes.remove(l);
                    }
                }
                match c.lag_seconds {
                    Some(s) => {
                        self.lag_at_last_contact_seconds.get_or_create(l).set(s);
                    }
                    None => {
                        self.lag_at_last_contact_seconds.remove(l);
                    }
                }
            }
        }
        if let Some(o) = observed {
            self.master_repl_offset.set(o.master_repl_offset);
            self.connected_slaves.set(i64::from(o.connected_slaves));
            self.resyncs_full.set(o.sync_full as i64);
            self.partial_resync_accepted.set(o.sync_partial_ok as i64);
            self.partial_resync_denied.set(o.sync_partial_err as i64);
        }
        // Not measurable this tick (see `lag::Reading`): the last value stays.
        if let Some(l) = report.lag_bytes {
            self.replication_lag_bytes.set(l);
        }
        if let Some(s) = report.lag_seconds {
            self.replication_lag_seconds.set(s);
        }
        // Replicas only; like the lag, the last value stays while it cannot be measured.
        if let Some(b) = report.upstream_backlog_bytes {
            self.upstream_backlog_bytes.set(b);
        }
        if let Some(r) = report.upstream_write_rate {
            self.upstream_write_rate.set(r);
        }
        if let Some(s) = report.backlog_outage_seconds {
            self.backlog_outage_seconds.set(s);
        }
        self.replication_diverged_bytes
            .set(report.diverged_bytes.unwrap_or(0));
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
    use crate::testing::{observed, upstream};

    /// Which `master_host`/`master_port` the replica series carry.
    #[test]
    fn replica_series_follow_the_topology_then_redis() {
        let labels = |h: &str, p: &str| {
            Some(MasterLabels {
                master_host: h.into(),
                master_port: p.into(),
            })
        };
        let src = upstream("src", 6379, false, None);
        let old = observed(RedisRole::Slave, Some(("old", 6380)));
        let master = observed(RedisRole::Master, None);
        let rows = [
            (
                "the topology's upstream",
                Some(&src),
                Some(&old),
                labels("src", "6379"),
            ),
            (
                "... also while Redis is down",
                Some(&src),
                None,
                labels("src", "6379"),
            ),
            (
                "no upstream: what Redis replicates",
                None,
                Some(&old),
                labels("old", "6380"),
            ),
            ("a master: none", None, Some(&master), None),
            ("nothing known: none", None, None, None),
        ];
        for (name, up, o, expected) in rows {
            assert_eq!(MasterLabels::of(up, o), expected, "{name}");
        }
    }

    /// Published series: a change of upstream replaces the `master_*` series, and a tick that
    /// cannot measure the lag keeps the last value.
    #[test]
    fn publishing_replaces_series_whose_labels_changed() {
        let m = Metrics::new("dr", "prod", "dr-0");
        let mut exported = Exported::default();
        let a = upstream("a", 6379, false, None);
        let b = upstream("b", 6379, false, None);
        let o = observed(RedisRole::Slave, Some(("a", 6379)));
        let report = InstanceReport {
            master_link_up: true,
            lag_bytes: Some(42),
            ..Default::default()
        };
        m.publish(&mut exported, &report, Some(&o), Some(&a), 0.01);
        let text = m.encode();
        assert!(text.contains("master_host=\"a\""), "{text}");
        assert!(
            text.contains("redis_replication_history_blocked{cluster=\"dr\",namespace=\"prod\",pod=\"dr-0\",master_host=\"a\",master_port=\"6379\"} 0"),
            "{text}"
        );
        let blocked = InstanceReport {
            master_link_up: false,
            history_blocked: Some(Default::default()),
            ..report.clone()
        };
        m.publish(&mut exported, &blocked, Some(&o), Some(&a), 0.01);
        let text = m.encode();
        assert!(
            text.contains("redis_replication_history_blocked{cluster=\"dr\",namespace=\"prod\",pod=\"dr-0\",master_host=\"a\",master_port=\"6379\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "redis_replication_lag_bytes{cluster=\"dr\",namespace=\"prod\",pod=\"dr-0\"} 42"
            ),
            "{text}"
        );
        let unmeasured = InstanceReport {
            lag_bytes: None,
            ..report
        };
        m.publish(&mut exported, &unmeasured, Some(&o), Some(&b), 0.01);
        let text = m.encode();
        assert!(!text.contains("master_host=\"a\""), "{text}");
        assert!(text.contains("master_host=\"b\""), "{text}");
        assert!(
            text.contains(
                "redis_replication_lag_bytes{cluster=\"dr\",namespace=\"prod\",pod=\"dr-0\"} 42"
            ),
            "{text}"
        );
        assert!(text.contains("redis_instance_info{"), "{text}");
        m.publish(&mut exported, &unmeasured, None, Some(&b), 0.01);
        let text = m.encode();
        assert!(!text.contains("redis_instance_info{"), "{text}");
        assert!(
            text.contains("redis_up{cluster=\"dr\",namespace=\"prod\",pod=\"dr-0\"} 0"),
            "{text}"
        );
    }

    /// While the link is down, the data at risk (issue 14): how long ago the upstream was last
    /// read and how far behind this replica was then; a lag unknown then has no series.
    #[test]
    fn the_last_contact_with_the_upstream_is_exported() {
        let m = Metrics::new("dr", "prod", "dr-0");
        let mut exported = Exported::default();
        let a = upstream("a", 6379, false, None);
        let o = observed(RedisRole::Slave, Some(("a", 6379)));
        let series = |name: &str, value: &str| {
            format!(
                "{name}{{cluster=\"dr\",namespace=\"prod\",pod=\"dr-0\",master_host=\"a\",master_port=\"6379\"}} {value}\n"
            )
        };
        let mut report = InstanceReport {
            master_link_up: false,
            upstream_last_seen: Some(redis_cluster_api::report::UpstreamContact {
                offset: 10_000,
                replid: "h".into(),
                lag_bytes: Some(1500),
                lag_seconds: Some(0.5),
                seconds_ago: 42.0,
                at: Some("2026-11-28T05:00:00Z".into()),
            }),
            ..Default::default()
        };
        m.publish(&mut exported, &report, Some(&o), Some(&a), 0.01);
        let text = m.encode();
        for want in [
            series("redis_replication_upstream_last_seen_seconds", "42.0"),
            series("redis_replication_lag_at_last_contact_bytes", "1500"),
            series("redis_replication_lag_at_last_contact_seconds", "0.5"),
        ] {
            assert!(text.contains(&want), "{want} in {text}");
        }
        let contact = report.upstream_last_seen.as_mut().unwrap();
        contact.lag_bytes = None;
        contact.lag_seconds = None;
        contact.seconds_ago = 50.0;
        m.publish(&mut exported, &report, None, Some(&a), 0.01);
        let text = m.encode();
        assert!(
            text.contains(&series(
                "redis_replication_upstream_last_seen_seconds",
                "50.0"
            )),
            "{text}"
        );
        assert!(
            !text.contains("redis_replication_lag_at_last_contact_bytes{"),
            "{text}"
        );
        assert!(
            !text.contains("redis_replication_lag_at_last_contact_seconds{"),
            "{text}"
        );
    }

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
            "redis_replication_upstream_backlog_bytes",
            "redis_replication_upstream_write_rate_bytes",
            "redis_replication_backlog_outage_seconds",
            "redis_replication_diverged_bytes",
            "redis_master_repl_offset",
            "redis_connected_slaves",
            "redis_replica_resyncs_full",
        ] {
            assert!(text.contains(&format!("\n{name}{{")), "{name}");
        }
    }
}
