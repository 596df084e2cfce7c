//! Probes as the kubelet's prober workers run them (pkg/kubelet/prober/worker.go): one worker
//! per container and probe, probing at once and then every `periodSeconds`, nothing before
//! `initialDelaySeconds`, liveness and readiness held until the startup probe succeeded, a
//! result flipping only after `successThreshold`/`failureThreshold` equal results in a row.
//! The decisions are pure; [`run_network_probe`] does the TCP and HTTP(S) probing.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Startup,
    Readiness,
    Liveness,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Readiness => "Readiness",
            Kind::Liveness => "Liveness",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Exec(Vec<String>),
    Tcp {
        host: Option<String>,
        port: u16,
    },
    Http {
        https: bool,
        host: Option<String>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    /// gRPC probes are not implemented: they always fail, loudly in the message.
    Unsupported(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub kind: Kind,
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// `terminationGracePeriodSeconds` of a liveness/startup probe (overrides the pod's).
    pub termination_grace: Option<i64>,
}

fn resolve_port(container: &Container, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| {
                    format!(
                        "port {name:?} is not a named port of container {}",
                        container.name
                    )
                })
        }
    }
}

/// The probe spec with Kubernetes' defaults (period 10 s, timeout 1 s, thresholds 1 and 3)
/// and named ports resolved against the container.
pub fn spec(kind: Kind, probe: &Probe, container: &Container) -> Spec {
    let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
    let action = if let Some(e) = &probe.exec {
        Action::Exec(e.command.clone().unwrap_or_default())
    } else if let Some(t) = &probe.tcp_socket {
        match resolve_port(container, &t.port) {
            Ok(port) => Action::Tcp {
                host: t.host.clone().filter(|h| !h.is_empty()),
                port,
            },
            Err(e) => Action::Unsupported(e),
        }
    } else if let Some(h) = &probe.http_get {
        match resolve_port(container, &h.port) {
            Ok(port) => Action::Http {
                https: h.scheme.as_deref() == Some("HTTPS"),
                host: h.host.clone().filter(|h| !h.is_empty()),
                port,
                path: h.path.clone().unwrap_or_else(|| "/".into()),
                headers: h
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            },
            Err(e) => Action::Unsupported(e),
        }
    } else if probe.grpc.is_some() {
        Action::Unsupported("gRPC probes are not simulated by redis-node-agent".into())
    } else {
        Action::Unsupported("probe has no handler".into())
    };
    Spec {
        kind,
        action,
        initial_delay: secs(probe.initial_delay_seconds, 0),
        period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        termination_grace: probe.termination_grace_period_seconds,
    }
}

/// The probes of a container, in the order the kubelet starts their workers.
pub fn container_probes(container: &Container) -> Vec<Spec> {
    let mut out = Vec::new();
    if let Some(p) = &container.startup_probe {
        out.push(spec(Kind::Startup, p, container));
    }
    if let Some(p) = &container.readiness_probe {
        out.push(spec(Kind::Readiness, p, container));
    }
    if let Some(p) = &container.liveness_probe {
        out.push(spec(Kind::Liveness, p, container));
    }
    out
}

/// A probe's result as the kubelet keeps it: thresholds on consecutive equal results.
#[derive(Clone, Debug, PartialEq)]
pub struct Tracker {
    /// None: unknown (a startup probe that has not decided yet).
    pub result: Option<bool>,
    last: Option<bool>,
    run: u32,
    success_threshold: u32,
    failure_threshold: u32,
}

impl Tracker {
    /// The initial result: not ready, alive, startup unknown.
    pub fn new(spec: &Spec) -> Tracker {
        Tracker {
            result: match spec.kind {
                Kind::Readiness => Some(false),
                Kind::Liveness => Some(true),
                Kind::Startup => None,
            },
            last: None,
            run: 0,
            success_threshold: spec.success_threshold,
            failure_threshold: spec.failure_threshold,
        }
    }

    /// Record one probe's outcome; true when the kept result changed.
    pub fn observe(&mut self, ok: bool) -> bool {
        if self.last == Some(ok) {
            self.run += 1;
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < threshold || self.result == Some(ok) {
            return false;
        }
        self.result = Some(ok);
        true
    }
}

/// Whether a worker probes now (`doProbe`'s early returns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    Probe,
    /// Too early, or waiting for the startup probe: the result stays as it is.
    Wait,
    /// A startup probe that already succeeded probes no more.
    Done,
}

pub fn gate(
    spec: &Spec,
    since_start: Duration,
    startup_pending: bool,
    startup_succeeded: bool,
) -> Gate {
    if spec.kind == Kind::Startup && startup_succeeded {
        return Gate::Done;
    }
    if spec.kind != Kind::Startup && startup_pending {
        return Gate::Wait;
    }
    if since_start < spec.initial_delay {
        return Gate::Wait;
    }
    Gate::Probe
}

/// A TCP or HTTP(S) probe against `pod_ip` (or the probe's `host`), from the host network
/// namespace as the kubelet probes from the node. Ok(()) or the failure's message.
pub async fn run_network_probe(
    action: &Action,
    pod_ip: IpAddr,
    timeout: Duration,
) -> Result<(), String> {
    let target = |host: &Option<String>, port: u16| match host {
        Some(h) => format!("{h}:{port}"),
        None => format!("{pod_ip}:{port}"),
    };
    match action {
        Action::Tcp { host, port } => {
            let addr = target(host, *port);
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr))
                .await
                .map_err(|_| format!("dial tcp {addr}: i/o timeout"))?
                .map_err(|e| format!("dial tcp {addr}: {e}"))?;
            Ok(())
        }
        Action::Http {
            https,
            host,
            port,
            path,
            headers,
        } => {
            let addr = target(host, *port);
            let scheme = if *https { "https" } else { "http" };
            let url = format!("{scheme}://{addr}{path}");
            let code = tokio::time::timeout(timeout, http_get(*https, &addr, path, headers))
                .await
                .map_err(|_| {
                    format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")
                })?
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        }
        Action::Exec(_) => Err("exec probes run in the container".into()),
        Action::Unsupported(m) => Err(m.clone()),
    }
}

async fn http_get(
    https: bool,
    addr: &str,
    path: &str,
    headers: &[(String, String)],
) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("dial tcp {addr}: connect: {e}"))?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut buf = Vec::new();
    if https {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify))
        .with_no_client_auth();
        let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
        let name =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        read_status_line(&mut tls, &mut buf).await
    } else {
        let mut stream = stream;
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        read_status_line(&mut stream, &mut buf).await
    }
}

async fn read_status_line<R: AsyncReadExt + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<u16, String> {
    let mut chunk = [0u8; 1024];
    while !buf.contains(&b'\n') {
        let n = r.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("EOF".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_status_line(buf).ok_or_else(|| "malformed HTTP response".into())
}

pub fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// The kubelet does not verify the certificates of HTTPS probes.
#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container() -> Container {
        serde_json::from_value(json!({
            "name": "redis", "image": "redis:7.2",
            "ports": [{"name": "redis", "containerPort": 6379}, {"name": "metrics", "containerPort": 9121}],
            "startupProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 2, "failureThreshold": 150},
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 2, "failureThreshold": 2},
            "livenessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "initialDelaySeconds": 5}
        }))
        .unwrap()
    }

    #[test]
    fn specs_resolve_named_ports_and_defaults() {
        let probes = container_probes(&container());
        assert_eq!(probes.len(), 3);
        assert_eq!(probes[0].kind, Kind::Startup);
        assert_eq!(
            probes[0].action,
            Action::Tcp {
                host: None,
                port: 6379
            }
        );
        assert_eq!(probes[0].failure_threshold, 150);
        assert_eq!(probes[1].period, Duration::from_secs(2));
        assert!(
            matches!(&probes[1].action, Action::Http { port: 9121, path, .. } if path == "/readyz")
        );
        assert_eq!(
            probes[2].action,
            Action::Exec(vec!["redis-cli".into(), "ping".into()])
        );
        assert_eq!(probes[2].period, Duration::from_secs(10));
        assert_eq!(probes[2].timeout, Duration::from_secs(1));
        assert_eq!(
            (probes[2].success_threshold, probes[2].failure_threshold),
            (1, 3)
        );
        let mut bad = container();
        bad.readiness_probe
            .as_mut()
            .unwrap()
            .http_get
            .as_mut()
            .unwrap()
            .port = IntOrString::String("nope".into());
        assert!(matches!(
            container_probes(&bad)[1].action,
            Action::Unsupported(_)
        ));
    }

    #[test]
    fn thresholds_need_consecutive_results() {
        let probes = container_probes(&container());
        let mut ready = Tracker::new(&probes[1]);
        assert_eq!(
            ready.result,
            Some(false),
            "not ready until a probe succeeds"
        );
        assert!(ready.observe(true));
        assert_eq!(ready.result, Some(true));
        // failureThreshold 2: one failure is not enough, two in a row are.
        assert!(!ready.observe(false));
        assert_eq!(ready.result, Some(true));
        assert!(!ready.observe(true));
        assert!(!ready.observe(false));
        assert!(ready.observe(false));
        assert_eq!(ready.result, Some(false));

        let mut live = Tracker::new(&probes[2]);
        assert_eq!(live.result, Some(true));
        assert!(!live.observe(false));
        assert!(!live.observe(false));
        assert!(live.observe(false), "third failure in a row");
        let mut startup = Tracker::new(&probes[0]);
        assert_eq!(startup.result, None);
        assert!(startup.observe(true));
    }

    #[test]
    fn gates() {
        let probes = container_probes(&container());
        let (startup, ready, live) = (&probes[0], &probes[1], &probes[2]);
        let s = Duration::from_secs;
        assert_eq!(gate(startup, s(0), true, false), Gate::Probe);
        assert_eq!(gate(startup, s(9), false, true), Gate::Done);
        assert_eq!(
            gate(ready, s(9), true, false),
            Gate::Wait,
            "held by the startup probe"
        );
        assert_eq!(gate(ready, s(0), false, true), Gate::Probe);
        assert_eq!(
            gate(live, s(4), false, true),
            Gate::Wait,
            "initialDelaySeconds 5"
        );
        assert_eq!(gate(live, s(5), false, true), Gate::Probe);
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status_line(b"garbage\r\n"), None);
    }

    #[tokio::test]
    async fn network_probes_against_a_local_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let code = if req.starts_with("GET /ok ") {
                    "200 OK"
                } else {
                    "500 Oops"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t = Duration::from_secs(2);
        assert!(
            run_network_probe(&Action::Tcp { host: None, port }, ip, t)
                .await
                .is_ok()
        );
        let http = |path: &str| Action::Http {
            https: false,
            host: None,
            port,
            path: path.into(),
            headers: vec![],
        };
        assert!(run_network_probe(&http("/ok"), ip, t).await.is_ok());
        let err = run_network_probe(&http("/bad"), ip, t).await.unwrap_err();
        assert_eq!(err, "HTTP probe failed with statuscode: 500");
        // Nothing listens on port 1.
        assert!(
            run_network_probe(
                &Action::Tcp {
                    host: None,
                    port: 1
                },
                ip,
                t
            )
            .await
            .is_err()
        );
    }
}
