//! A real Prometheus scraping every instance manager, loaded with the project's alert rules
//! (config/prometheus/redis-replication-rules.yaml, which `make test` keeps identical to the Helm
//! chart's PrometheusRule) with shorter `for:` durations for the drill.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::procs::Proc;

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
        let port = free_port()?;
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
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get(&p.addr, "/-/ready").is_ok_and(|(code, _)| code == 200) {
                return Ok(p);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!(
            "Prometheus did not become ready; see {}",
            dir.join("prometheus.log").display()
        ))
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

pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
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

/// A blocking HTTP/1.0 GET (no chunking, the server closes): status code and body.
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))
        .map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("{addr}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("bad status line")?;
    Ok((code, body.to_string()))
}
