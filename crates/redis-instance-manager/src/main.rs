//! `redis-instance-manager`: see the crate docs and docs/instance-manager.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use redis_instance_manager::commands::TlsFiles;
use redis_instance_manager::http;
use redis_instance_manager::intake::Delivered;
use redis_instance_manager::reconcile::{Manager, ManagerConfig, Shared};
use redis_instance_manager::source;
use tokio::sync::watch;
use tracing::{error, info};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Applies the operator's desired topology (pod annotation `redis.io/topology`) to the local
/// Redis, probes the upstream, and serves /metrics, /healthz, /readyz and /status.
#[derive(Parser, Debug)]
#[command(name = "redis-instance-manager", version)]
struct Args {
    /// The RedisCluster this pod belongs to (metric label `cluster`).
    #[arg(long, env = "CLUSTER_NAME")]
    cluster: String,
    /// The pod's namespace (metric label `namespace`; where the pod is watched).
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: String,
    /// The pod's name (metric label `pod`; the pod that is watched).
    #[arg(long, env = "POD_NAME")]
    pod: String,
    /// The local redis-server.
    #[arg(long, default_value = "127.0.0.1:6379")]
    redis_addr: String,
    /// File holding the local Redis password (mounted from the cluster's authSecret).
    #[arg(long)]
    redis_password_file: Option<PathBuf>,
    /// Downward-API annotations file to read the topology from (polled every 500 ms). Without
    /// it, the own pod is watched through the Kubernetes API (in-cluster config).
    #[arg(long)]
    topology_file: Option<PathBuf>,
    /// Address for /metrics, /healthz, /readyz and /status.
    #[arg(long, default_value = "0.0.0.0:9121")]
    http_addr: SocketAddr,
    /// How often the local Redis is reconciled and the upstream probed (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    probe_interval: Duration,
    /// Timeout of one upstream probe (connect + AUTH + INFO on a fresh connection, INFO on a
    /// kept one). A silent cut is reported within probe-interval + probe-timeout. The probe's
    /// connection is kept through timeouts for up to four of them (a saturated link delays
    /// answers; see docs/instance-manager.md).
    #[arg(long, default_value = "800ms", value_parser = parse_duration)]
    probe_timeout: Duration,
    /// The upstream probe opens a fresh connection at least this often: behind a Service or a
    /// virtual IP a kept connection stays with the server it first reached, and the link is
    /// reported up only while the replica streams from what the address leads to now.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    probe_connection_max_age: Duration,
    /// Directory for the instance manager's state file (the replication history this pod's
    /// data followed), on the pod's data volume so that it survives restarts. Without it the
    /// record is kept in memory only: a pod whose Redis restarted with appendonly (a new
    /// replication id) while the instance manager restarted too cannot show where its data
    /// came from, and the replication gate refuses to replace it.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// CA certificate for TLS replication and for probing a TLS upstream.
    #[arg(long, requires_all = ["tls_cert_file", "tls_key_file"])]
    tls_ca_file: Option<String>,
    /// Client certificate for TLS replication.
    #[arg(long, requires_all = ["tls_ca_file", "tls_key_file"])]
    tls_cert_file: Option<String>,
    /// Client private key for TLS replication.
    #[arg(long, requires_all = ["tls_ca_file", "tls_cert_file"])]
    tls_key_file: Option<String>,
    /// The local redis-server serves TLS only (`port 0`, `tls-port`): connect to it over TLS
    /// with the `--tls-*-file` files (its certificate must chain to the CA; its names are not
    /// checked, the connection stays inside the pod), and reload its certificates into it
    /// (`CONFIG SET tls-*`) when the files change.
    #[arg(long, requires = "tls_ca_file")]
    redis_tls: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// `1s`, `500ms`, `1.5s`, `2m`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 1s, 500ms)"))?;
    if !(v > 0.0 && v.is_finite()) {
        return Err(format!("{s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

fn split_host_port(addr: &str) -> Result<(String, u16), String> {
    let (h, p) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("--redis-addr {addr:?} is not host:port"))?;
    let port = p
        .parse()
        .map_err(|_| format!("--redis-addr {addr:?} has no valid port"))?;
    Ok((h.trim_matches(['[', ']']).to_string(), port))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // `Targets` (not `EnvFilter`): same `RUST_LOG` syntax for targets and levels
    // (`info,fred=warn`), without compiling regexes at start (smaller resident code).
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            "info,fred=warn,kube=warn"
                .parse()
                .expect("default filter parses")
        });
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Text => registry.with(fmt).init(),
        LogFormat::Json => registry.with(fmt.json()).init(),
    }
    // One thread: all work is I/O-bound and small; it keeps the sidecar's footprint low.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let (redis_host, redis_port) = split_host_port(&args.redis_addr)?;
    let tls = match (&args.tls_ca_file, &args.tls_cert_file, &args.tls_key_file) {
        (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let config = ManagerConfig {
        cluster: args.cluster,
        namespace: args.namespace.clone(),
        pod: args.pod.clone(),
        redis_host,
        redis_port,
        redis_password_file: args.redis_password_file,
        probe_interval: args.probe_interval,
        probe_timeout: args.probe_timeout,
        probe_max_age: args.probe_connection_max_age,
        tls,
        redis_tls: args.redis_tls,
        state_dir: args.state_dir,
    };
    if let Some(dir) = &config.state_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create --state-dir {}: {e}", dir.display()))?;
    }
    let shared = Arc::new(Shared::new(&config));
    let (tx, rx) = watch::channel::<Delivered>(None);
    match args.topology_file {
        Some(path) => {
            info!(path = %path.display(), "reading the topology from a downward-API file");
            tokio::spawn(source::poll_file(path, tx));
        }
        None => {
            info!(namespace = %args.namespace, pod = %args.pod, "watching the own pod for the topology");
            tokio::spawn(source::watch_pod(args.namespace, args.pod, tx));
        }
    }
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.http_addr))?;
    info!(addr = %args.http_addr, interval = ?config.probe_interval, timeout = ?config.probe_timeout, "serving /metrics /healthz /readyz /status");
    tokio::spawn(Manager::new(config, shared.clone()).run(rx));
    axum::serve(listener, http::router(shared))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| format!("http server: {e}"))
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_addresses() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
        assert_eq!(
            split_host_port("127.0.0.1:6379").unwrap(),
            ("127.0.0.1".into(), 6379)
        );
        assert_eq!(split_host_port("[::1]:6380").unwrap(), ("::1".into(), 6380));
        assert!(split_host_port("nope").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
