//! A real Prometheus scraping every instance manager, loaded with the project's alert rules
//! (config/prometheus/redis-replication-rules.yaml, which `make test` keeps identical to the Helm
//! chart's PrometheusRule) with shorter `for:` durations for the drill.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kcluster::client::Kube;
use kcluster::cluster::Cluster;

use redis_test_support::http::get as http_get;
use redis_test_support::process::{Proc, free_port};
use serde_json::Value;

use super::wait;

pub struct Prometheus {
    pub addr: String,
    _proc: Proc,
    _discovery: Discovery,
}

/// Service discovery through the API server. Debian's Prometheus is built without its
/// Kubernetes discovery, so this thread does what that would: it lists the pods of a RedisCluster
/// (label `redis.io/cluster`) with a container port named `metrics` — what the chart's PodMonitor
/// selects — and writes them as a `file_sd` target file whenever they change.
struct Discovery {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Discovery {
    fn start(cluster: &Cluster, namespace: &str, file: PathBuf) -> Result<Discovery, String> {
        let kube = Kube::new(cluster)?;
        let namespace = namespace.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let write = move |last: &mut String| {
            let Ok(pods) = kube.pods(&namespace, redis_cluster_api::labels::CLUSTER) else {
                return;
            };
            let mut targets: Vec<String> = pods
                .into_iter()
                .filter_map(|p| {
                    let ip = p.status?.pod_ip?;
                    let port = p.spec?.containers.into_iter().find_map(|c| {
                        c.ports?
                            .into_iter()
                            .find(|port| port.name.as_deref() == Some("metrics"))
                            .map(|port| port.container_port)
                    })?;
                    Some(format!("{ip}:{port}"))
                })
                .collect();
            targets.sort();
            let body = serde_json::json!([{"targets": targets}]).to_string();
            if body != *last {
                let tmp = file.with_extension("tmp");
                if std::fs::write(&tmp, &body).is_ok() && std::fs::rename(&tmp, &file).is_ok() {
                    *last = body;
                }
            }
        };
        let mut last = String::new();
        write(&mut last);
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                write(&mut last);
            }
        });
        Ok(Discovery {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// `for:` durations in the drill: the spec's 5m/1m would make the drill last minutes.
pub const DRILL_LAG_FOR: &str = "10s";
pub const DRILL_DOWN_FOR: &str = "3s";

impl Prometheus {
    /// A Prometheus scraping the instance managers of `namespace`, found through the API server
    /// as the chart's PodMonitor would find them ([`Discovery`]), with `honor_labels`.
    pub fn start(
        dir: &Path,
        cluster: &Cluster,
        namespace: &str,
        rules_source: &Path,
    ) -> Result<Prometheus, String> {
        let rules = std::fs::read_to_string(rules_source)
            .map_err(|e| format!("{}: {e}", rules_source.display()))?;
        let rules = rules
            .replace("for: 5m", &format!("for: {DRILL_LAG_FOR}"))
            .replace("for: 1m", &format!("for: {DRILL_DOWN_FOR}"));
        if !rules.contains("RedisReplicationDown") || !rules.contains("RedisReplicationLagHigh") {
            return Err(format!(
                "{} lacks the spec's alerts",
                rules_source.display()
            ));
        }
        std::fs::write(dir.join("rules.yaml"), rules).map_err(|e| e.to_string())?;
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 900ms\n\
             rule_files: ['{rules}']\n\
             scrape_configs:\n\
             \x20 - job_name: redis-instance-manager\n\
             \x20   honor_labels: true\n\
             \x20   file_sd_configs:\n\
             \x20     - files: ['{targets}']\n\
             \x20       refresh_interval: 1s\n",
            rules = dir.join("rules.yaml").display(),
            targets = dir.join("targets.json").display(),
        );
        let discovery = Discovery::start(cluster, namespace, dir.join("targets.json"))?;
        std::fs::write(dir.join("prometheus.yml"), config).map_err(|e| e.to_string())?;
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let args: Vec<String> = vec![
            "prometheus".into(),
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            format!("--web.listen-address={addr}"),
            "--log.level=warn".into(),
        ];
        let proc = Proc::spawn("prometheus", None, &args, &dir.join("prometheus.log"))?;
        let p = Prometheus {
            addr,
            _proc: proc,
            _discovery: discovery,
        };
        wait(
            "Prometheus to become ready",
            Duration::from_secs(30),
            || {
                http_get(&p.addr, "/-/ready")
                    .is_ok_and(|(code, _)| code == 200)
                    .then_some(())
            },
        )
        .map_err(|_| {
            format!(
                "Prometheus did not become ready; see {}",
                dir.join("prometheus.log").display()
            )
        })?;
        Ok(p)
    }

    /// The value of an instant query returning one series (None when it returns nothing).
    pub fn scalar(&self, query: &str) -> Result<Option<f64>, String> {
        let (code, body) = http_get(
            &self.addr,
            &format!("/api/v1/query?query={}", urlencode(query)),
        )?;
        if code != 200 {
            return Err(format!("query {query}: HTTP {code}: {body}"));
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        Ok(v["data"]["result"]
            .as_array()
            .and_then(|r| r.first())
            .and_then(|s| s["value"][1].as_str())
            .and_then(|s| s.parse().ok()))
    }

    /// Names of the alerts currently firing.
    pub fn firing(&self) -> Result<Vec<(String, String)>, String> {
        let (_, body) = http_get(&self.addr, "/api/v1/alerts")?;
        let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        Ok(v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                (
                    a["labels"]["alertname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    a["annotations"]["summary"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect())
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
