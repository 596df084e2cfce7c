//! `kcluster`: start, inspect and stop the local multi-region Kubernetes cluster
//! (`docs/real-cluster.md`). Needs root (network namespaces).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kcluster::cluster::{self, Cluster, ImageMapping, Options};
use kcluster::daemon;
use kcluster::net::{self, Region};

#[derive(Parser)]
#[command(about = "A real Kubernetes control plane in local network-namespace regions")]
struct Cli {
    /// The cluster's directory (certificates, logs, data, the admin kubeconfig).
    #[arg(long, global = true, default_value = ".kcluster")]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a cluster (replacing one in the same directory) and leave it running.
    Up {
        /// Control-plane binaries; default: built or found by hack/build-controlplane.sh.
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// The node agent; default: redis-node-agent next to this binary.
        #[arg(long)]
        node_agent: Option<PathBuf>,
        /// Start no nodes (only the control plane, network and add-ons).
        #[arg(long)]
        no_nodes: bool,
        /// `<image repository>=<directory>`: where the node agents find an image's binaries
        /// (repeatable). The operator's image maps to this binary's directory by default.
        #[arg(long = "image-map")]
        image_map: Vec<String>,
        /// `<app.kubernetes.io/instance>=<region letter>`: pin those pods to a region
        /// (repeatable). Default: the spec's prod-redis in a, dr-redis in b, the operator in c.
        #[arg(long = "place")]
        place: Vec<String>,
        /// Also `helm install` the operator from charts/redis-operator.
        #[arg(long)]
        install_operator: bool,
    },
    /// `helm upgrade --install` the operator from charts/redis-operator (extra arguments are
    /// passed to helm, e.g. `-- --set operator.logFormat=text`).
    InstallOperator { helm_args: Vec<String> },
    /// Stop the cluster and remove its network; logs and data stay in the directory.
    Down,
    /// Print the shell lines that point kubectl at the cluster (`eval "$(kcluster env)"`).
    Env,
    /// Restart one of the cluster's processes (e.g. kube-apiserver) with its command line.
    Restart { daemon: String },
    /// Freeze (SIGSTOP) one of the cluster's processes, e.g. a node agent (`node-us-west-2-1`).
    Freeze { daemon: String },
    /// Resume a frozen process.
    Thaw { daemon: String },
    /// Cut or restore the link between two regions: `link down a b`, `link up a b`.
    Link { state: String, a: char, b: char },
    /// List the cluster's processes.
    Ps,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository")
}

/// helm from the project's tools (`make deps`), else from PATH.
fn helm() -> PathBuf {
    let local = repo_root().join(".tools/bin/helm");
    if local.exists() {
        local
    } else {
        PathBuf::from("helm")
    }
}

fn main() {
    let cli = Cli::parse();
    let dir = std::path::absolute(&cli.dir).unwrap_or(cli.dir);
    if let Err(e) = run(dir, cli.command) {
        eprintln!("kcluster: {e}");
        std::process::exit(1);
    }
}

fn run(dir: PathBuf, command: Command) -> Result<(), String> {
    let own_dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    match command {
        Command::Up {
            bin_dir,
            node_agent,
            no_nodes,
            image_map,
            place,
            install_operator,
        } => {
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => PathBuf::from(
                    net::sh(&[&repo_root()
                        .join("hack/build-controlplane.sh")
                        .display()
                        .to_string()])?
                    .trim(),
                ),
            };
            let agent =
                (!no_nodes).then(|| node_agent.unwrap_or_else(|| own_dir.join("redis-node-agent")));
            let mut o = Options::new(dir, bin_dir, agent);
            o.images.push(ImageMapping {
                repository: "ghcr.io/example/redis-operator".into(),
                dir: own_dir.clone(),
            });
            for m in image_map {
                let (repository, d) = m
                    .split_once('=')
                    .ok_or_else(|| format!("--image-map {m}: expected <repository>=<dir>"))?;
                o.images.push(ImageMapping {
                    repository: repository.into(),
                    dir: PathBuf::from(d),
                });
            }
            o.placement = if place.is_empty() {
                vec![
                    ("prod-redis".into(), Region('a')),
                    ("dr-redis".into(), Region('b')),
                    ("redis-operator".into(), Region('c')),
                ]
            } else {
                place
                    .iter()
                    .map(|p| match p.split_once('=') {
                        Some((i, r)) if r.len() == 1 => {
                            Ok((i.to_string(), Region(r.chars().next().unwrap())))
                        }
                        _ => Err(format!("--place {p}: expected <instance>=<a|b|c>")),
                    })
                    .collect::<Result<_, _>>()?
            };
            let c = cluster::up(&o)?;
            if install_operator {
                cluster::install_operator(
                    &c,
                    &helm(),
                    &repo_root().join("charts/redis-operator"),
                    &[],
                )?;
                println!(
                    "operator installed (helm release redis-operator in namespace redis-operator)"
                );
            }
            println!("cluster up in {}", c.dir.display());
            println!(
                "use it with:\n  export KUBECONFIG={}",
                c.kubeconfig.display()
            );
            println!("  export PATH={}:$PATH", c.bin_dir.display());
            println!("(or: source {})", c.dir.join("env").display());
        }
        Command::InstallOperator { helm_args } => {
            let c = Cluster::open(&dir)?;
            let extra: Vec<&str> = helm_args.iter().map(String::as_str).collect();
            print!(
                "{}",
                cluster::install_operator(
                    &c,
                    &helm(),
                    &repo_root().join("charts/redis-operator"),
                    &extra
                )?
            );
        }
        Command::Down => {
            cluster::down(&dir);
            println!("cluster in {} stopped", dir.display());
        }
        Command::Env => {
            let c = Cluster::open(&dir)?;
            print!(
                "{}",
                std::fs::read_to_string(c.dir.join("env")).map_err(|e| e.to_string())?
            );
        }
        Command::Restart { daemon: name } => {
            let d = daemon::restart(&dir, &name, Duration::from_secs(10))?;
            println!("{} restarted (pid {})", d.name, d.pid);
        }
        Command::Freeze { daemon: name } => {
            let d = daemon::get(&dir, &name).ok_or_else(|| format!("no daemon {name}"))?;
            daemon::signal(&d, nix::sys::signal::Signal::SIGSTOP)?;
        }
        Command::Thaw { daemon: name } => {
            let d = daemon::get(&dir, &name).ok_or_else(|| format!("no daemon {name}"))?;
            daemon::signal(&d, nix::sys::signal::Signal::SIGCONT)?;
        }
        Command::Link { state, a, b } => {
            let up = match state.as_str() {
                "up" => true,
                "down" => false,
                _ => return Err(format!("link {state}: expected up or down")),
            };
            net::set_link(Region(a), Region(b), up)?;
        }
        Command::Ps => {
            for d in daemon::list(&dir) {
                let state = if daemon::alive(d.pid) {
                    "running"
                } else {
                    "exited"
                };
                println!("{:<32} {:>8} {state}", d.name, d.pid);
            }
        }
    }
    Ok(())
}
