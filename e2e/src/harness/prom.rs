//! A real Prometheus scraping every instance manager, loaded with the project's alert rules
//! (config/prometheus/redis-replication-rules.yaml, which `make test` keeps identical to the Helm
//! chart's PrometheusRule) with shorter `for:` durations for the drill.

use std::path::Path;
use std::time::Duration;

use redis_test_support::http::get as http_get;
use redis_test_support::process::{Proc, free_port};
use serde_json::Value;

use super::wait;

pub struct Prometheus {
    pub addr: String,
    _proc: Proc,
}

/// `for:` durations in the drill: the spec's 5m/1m would make the drill last minutes.
pub const DRILL_LAG_FOR: &str = "10s";
pub const DRILL_DOWN_FOR: &str = "3s";

impl Prometheus {
    pub fn start(
        dir: &Path,
        targets: &[String],
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
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 900ms\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: redis-instance-manager\n    honor_labels: true\n    static_configs:\n      - targets: [{}]\n",
            dir.join("rules.yaml").display(),
            targets.join(", ")
        );
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
        let p = Prometheus { addr, _proc: proc };
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
