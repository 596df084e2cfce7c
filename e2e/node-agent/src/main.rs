use std::path::PathBuf;

use clap::{Parser, Subcommand};

use redis_node_agent::{agent, provisioner, runtime, selftest};

/// Plays the kubelet for the local multi-region cluster: runs the pods bound to a Node as
/// processes in network namespaces, and provisions local PersistentVolumes.
#[derive(Parser)]
#[command(name = "redis-node-agent", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One Node: registration, Lease, pods, kubelet API.
    Node(Box<agent::NodeArgs>),
    /// Dynamic provisioning for StorageClass provisioner `redis-e2e.io/local`.
    Provisioner(provisioner::ProvisionerArgs),
    /// End-to-end checks against a real control plane (kcluster), through kubectl.
    SelfTest(selftest::SelfTestArgs),
    /// (internal) The parent of one container: logs its output, records its exit.
    #[command(hide = true)]
    Shim {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        log: PathBuf,
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn,hyper=warn,rustls=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        // No runtime and no tracing in the shim: it is a small, long-lived process per container.
        Command::Shim { dir, log, argv } => {
            std::process::exit(runtime::shim_main(&dir, &log, &argv))
        }
        Command::Node(args) => {
            init_tracing();
            tokio::runtime::Runtime::new()?.block_on(agent::run(*args))
        }
        Command::SelfTest(args) => selftest::run(args),
        Command::Provisioner(args) => {
            init_tracing();
            tokio::runtime::Runtime::new()?.block_on(provisioner::run(args))
        }
    }
}
