//! `redis-operator run`: the controller. `redis-operator render`: print the objects the operator
//! would create for RedisCluster manifests (for review and offline validation). `redis-operator
//! crd`: print the CustomResourceDefinition.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use redis_cluster_api::RedisCluster;
use redis_operator::controller::{self, Context};
use redis_operator::leader::{self, Elector, KubeLease, Leadership, Timing};
use redis_operator::metrics::{self, Metrics};
use redis_operator::objects::{Settings, build};
use redis_operator::platform::kube::KubePlatform;
use redis_topology::Environment;
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    version,
    about = "Kubernetes operator for Redis with cross-region replica mode"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run {
        /// Serve /metrics, /healthz and /readyz here.
        #[arg(long, default_value = "0.0.0.0:8080")]
        metrics_addr: std::net::SocketAddr,
        /// Watch only this namespace (namespaced install); all namespaces when unset.
        #[arg(long, env = "WATCH_NAMESPACE")]
        namespace: Option<String>,
        /// Image of the Redis containers.
        #[arg(long, default_value = "redis:7.2")]
        redis_image: String,
        /// Image holding the redis-instance-manager sidecar binary.
        #[arg(long, default_value = "ghcr.io/example/redis-operator:0.1.0")]
        instance_manager_image: String,
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Namespace of the leader-election Lease (the operator's own).
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        /// This replica's identity in the Lease.
        #[arg(long, env = "POD_NAME", default_value = "redis-operator")]
        identity: String,
        /// Disable leader election (a single replica only).
        #[arg(long)]
        no_leader_election: bool,
        /// Reconciles that may run at once (0: no bound, the default). Requests for a cluster
        /// waiting its turn are merged, so a bound eases a burst of new clusters on the API
        /// server, but a promotion then waits its turn too (docs/operator.md, "Under a burst").
        #[arg(long, default_value_t = 0)]
        max_concurrent_reconciles: u16,
    },
    /// Print the objects the operator creates for each RedisCluster manifest, as YAML.
    Render { files: Vec<PathBuf> },
    /// Print the RedisCluster CustomResourceDefinition.
    Crd,
}

/// The leader-election Lease, in the operator's namespace.
const LEASE_NAME: &str = "redis-operator-leader";

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command {
        Command::Crd => print!("{}", redis_cluster_api::crd_yaml()),
        Command::Render { files } => {
            for file in files {
                let text = std::fs::read_to_string(&file)?;
                let mut rc: RedisCluster =
                    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
                rc.metadata
                    .uid
                    .get_or_insert_with(|| "00000000-0000-0000-0000-000000000000".into());
                rc.metadata
                    .namespace
                    .get_or_insert_with(|| "default".into());
                for obj in build(&rc, &Settings::default()).to_values() {
                    print!("---\n{}", serde_yaml::to_string(&obj)?);
                }
            }
        }
        Command::Run {
            metrics_addr,
            namespace,
            redis_image,
            instance_manager_image,
            log_format,
            lease_namespace,
            identity,
            no_leader_election,
            max_concurrent_reconciles,
        } => {
            init_logs(log_format);
            let client = kube::Client::try_default().await?;
            let metrics = Arc::new(Metrics::default());
            let listener = tokio::net::TcpListener::bind(metrics_addr).await?;
            tokio::spawn(axum::serve(listener, metrics::router(metrics.clone())).into_future());

            let (stop_tx, stop_rx) = watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            });

            // Leader election (client-go's rules, see `leader`): this replica acts only while
            // its Lease's renew deadline has not passed; every write checks it, and losing it
            // ends the process (it restarts as a standby).
            let leadership = if no_leader_election {
                Leadership::always()
            } else {
                Leadership::default()
            };
            // The Lease has its own client, i.e. its own connections: a renewal never waits
            // behind the reconciles' requests in this process (the chart's FlowSchema does the
            // same in the API server's fairness queues).
            let lease_client = kube::Client::try_default().await?;
            let lease = || KubeLease::new(lease_client.clone(), &lease_namespace, LEASE_NAME);
            if !no_leader_election {
                tracing::info!(%identity, "waiting for the leader Lease");
                let mut elector = Elector::new(lease(), &identity, Timing::default());
                let (acquired_tx, mut acquired_rx) = watch::channel(false);
                let (l, m) = (leadership.clone(), metrics.clone());
                tokio::spawn(async move {
                    leader::run(&mut elector, &l, |event| match event {
                        // A standby that can read the Lease is ready: ready to take over. Only
                        // the leader reconciles; `redis_operator_leader` says which one that
                        // is. (Were standbys unready, a Deployment of two replicas would never
                        // be fully available and `helm install --wait` would time out.)
                        leader::Event::Standby => {
                            m.ready.store(true, std::sync::atomic::Ordering::Relaxed)
                        }
                        leader::Event::Acquired => {
                            let _ = acquired_tx.send(true);
                        }
                        leader::Event::Lost => {
                            tracing::error!(
                                "lost the leader Lease (its renew deadline passed): stopped writing; exiting to restart as a standby"
                            );
                            std::process::exit(1);
                        }
                    })
                    .await;
                });
                let mut stop = stop_rx.clone();
                tokio::select! {
                    _ = acquired_rx.wait_for(|a| *a) => {}
                    _ = stop.changed() => return Ok(()),
                }
                metrics.leader.set(1);
                tracing::info!(%identity, "leading");
            }
            let (caches, writers) = redis_operator::platform::kube::caches();
            let (watches, triggered) = redis_operator::platform::report::Watches::new();
            let ctx = Arc::new(Context {
                platform: KubePlatform::new(
                    client.clone(),
                    Some(identity.clone()),
                    caches,
                    watches,
                )
                .with_leadership(leadership),
                settings: Settings {
                    redis_image,
                    instance_manager_image,
                },
                env: Environment::kubernetes(),
                metrics,
            });
            let mut stop = stop_rx.clone();
            let shutdown = async move {
                let _ = stop.changed().await;
            };
            controller::run(
                client.clone(),
                namespace,
                max_concurrent_reconciles,
                ctx,
                writers,
                triggered,
                shutdown,
            )
            .await;
            if !no_leader_election {
                // Give the Lease up so a standby takes over at once instead of after expiry.
                Elector::new(lease(), &identity, Timing::default())
                    .release()
                    .await;
            }
            tracing::info!("stopped");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
