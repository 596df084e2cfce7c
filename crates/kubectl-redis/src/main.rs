//! `kubectl-redis`: found by kubectl on PATH, run as `kubectl redis <command>`. kubectl passes a
//! plugin only the arguments after its name, so the connection flags (`--kubeconfig`,
//! `--context`, `-n`) are the plugin's own, with kubectl's meaning.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kubectl_redis::actions::{self, Progress};
use kubectl_redis::api::{self, Error, Target};
use kubectl_redis::bundle;
use kubectl_redis::render::{self, Style};
use kubectl_redis::view::{self, ClusterView, Inputs};
use redis_cluster_api::RedisCluster;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl redis",
    bin_name = "kubectl redis",
    version,
    about = "RedisCluster at a glance, and the risky operations with their safety checks",
    after_help = "Examples:\n  \
        kubectl redis status -A\n  \
        kubectl redis status dr-redis -n production -o json\n  \
        kubectl redis promote dr-redis -n production\n  \
        kubectl redis demote dr-redis -n production\n  \
        kubectl redis switchover prod-redis --to dr-redis -n production\n  \
        kubectl redis report dr-redis -n production -o dr-redis-report.tar.gz\n\n\
        Docs: docs/kubectl-plugin.md. Exit codes: 0 done, 1 refused or failed, 2 usage."
)]
struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    context: Option<String>,
    /// Namespace (default: the context's).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    Text,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every cluster (or one): mode, replica mode and source, primary, each pod's role, link,
    /// lag, resyncs, fencing, data at risk, the last Events.
    Status {
        /// One cluster (default: every cluster in the namespace).
        name: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
        /// No colours even on a terminal (also: NO_COLOR set).
        #[arg(long)]
        no_color: bool,
    },
    /// Promote a replica cluster to a standalone primary (spec.replicaMode.promote: true),
    /// showing first what a promotion now would lose; waits until it accepts writes.
    Promote {
        name: String,
        /// Promote this pod instead of the designated leader (annotation redis.io/promote-pod).
        #[arg(long)]
        pod: Option<String>,
        #[command(flatten)]
        change: Change,
    },
    /// Return a promoted cluster to replicating its source (spec.replicaMode.promote: false):
    /// the writes it took since promotion are DISCARDED.
    Demote {
        name: String,
        #[command(flatten)]
        change: Change,
    },
    /// A planned, zero-loss move of the primary role from this cluster to the cluster that
    /// replicates it (docs/switchover.md): demote this one (it stops taking writes and publishes
    /// its token), promote the other with the token, wait until this one follows it.
    Switchover {
        /// The cluster that is primary now.
        name: String,
        /// The cluster that replicates it and becomes primary.
        #[arg(long)]
        to: String,
        /// Its namespace (default: the same as NAME's).
        #[arg(long)]
        to_namespace: Option<String>,
        /// Its kubeconfig context, when it runs in another Kubernetes cluster (default: --context).
        #[arg(long)]
        to_context: Option<String>,
        /// Its kubeconfig file (default: --kubeconfig).
        #[arg(long, value_name = "PATH")]
        to_kubeconfig: Option<PathBuf>,
        #[command(flatten)]
        change: Change,
    },
    /// Fence a pod (refuse writes) by hand (not supported by this operator version).
    Fence { pod: String },
    /// Lift a manual fence (not supported by this operator version).
    Unfence { pod: String },
    /// A support bundle: objects, status, Events, each pod's instance-manager status and Redis
    /// INFO, container and operator logs, every secret value redacted, in one .tar.gz.
    Report {
        name: String,
        /// The archive to write (default: redis-report-<ns>-<name>-<time>.tar.gz here).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
}

/// How `promote` and `demote` change a cluster: ask first, then wait.
#[derive(clap::Args, Debug, Clone, Copy)]
struct Change {
    /// Do not ask for confirmation (scripts).
    #[arg(short = 'y', long)]
    yes: bool,
    /// How long to wait for the operator to complete the change.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,
    /// Patch and return without waiting.
    #[arg(long)]
    no_wait: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = num.parse().map_err(|_| format!("not a duration: {s}"))?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "ms" => Ok(Duration::from_millis(n)),
        _ => Err(format!("not a duration: {s} (use 90s, 2m, 500ms)")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    let not_supported = |what: &str| {
        Err(Error::Refused(format!(
            "{what} is not supported by this operator version: the operator has no manual \
             fencing (it fences pods itself during promotions, failovers and switchovers). A \
             planned move is `kubectl redis switchover`, an unplanned promotion `kubectl redis \
             promote`; see docs/kubectl-plugin.md"
        )))
    };
    if let Command::Fence { .. } | Command::Unfence { .. } = &cli.command {
        return not_supported("manual fencing");
    }
    let target = Target {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
    };
    let (client, default_ns) = api::connect(&target).await?;
    let ns = cli.namespace.clone().unwrap_or(default_ns);
    match cli.command {
        Command::Status {
            name,
            all_namespaces,
            output,
            no_color,
        } => status(&client, &ns, name, all_namespaces, output, no_color).await,
        Command::Promote { name, pod, change } => promote(&client, &ns, &name, pod, &change).await,
        Command::Demote { name, change } => demote(&client, &ns, &name, &change).await,
        Command::Report { name, output } => report(&client, &ns, &name, output).await,
        Command::Switchover {
            name,
            to,
            to_namespace,
            to_context,
            to_kubeconfig,
            change,
        } => {
            let other = if to_context.is_some() || to_kubeconfig.is_some() {
                let t = Target {
                    kubeconfig: to_kubeconfig.or(cli.kubeconfig.clone()),
                    context: to_context.or(cli.context.clone()),
                };
                let (c, default) = api::connect(&t).await?;
                (c, to_namespace.unwrap_or(default))
            } else {
                (client.clone(), to_namespace.unwrap_or(ns.clone()))
            };
            switchover(&client, &ns, &name, (&other.0, &other.1, &to), &change).await
        }
        Command::Fence { .. } | Command::Unfence { .. } => unreachable!("answered above"),
    }
}

async fn view_of(client: &Client, c: &RedisCluster, op: &view::OperatorView) -> ClusterView {
    let ns = c.metadata.namespace.clone().unwrap_or_default();
    let name = c.metadata.name.clone().unwrap_or_default();
    let pods = api::data_pods(client, &ns, &name).await.unwrap_or_default();
    let reports = api::reports(client, &ns, &pods).await;
    let events = api::events(client, &ns, &name).await.unwrap_or_default();
    view::view(&Inputs {
        cluster: c,
        reports: &reports,
        events: &events,
        operator: op,
    })
}

async fn status(
    client: &Client,
    ns: &str,
    name: Option<String>,
    all: bool,
    output: Output,
    no_color: bool,
) -> Result<(), Error> {
    let clusters = match &name {
        Some(n) => vec![api::get_cluster(client, ns, n).await?],
        None => api::list_clusters(client, (!all).then_some(ns)).await?,
    };
    let op = api::operator(client).await;
    let views: Vec<ClusterView> =
        futures::future::join_all(clusters.iter().map(|c| view_of(client, c, &op))).await;
    let text = match output {
        Output::Text => {
            let style = if no_color
                || std::env::var_os("NO_COLOR").is_some()
                || !std::io::stdout().is_terminal()
            {
                Style::Plain
            } else {
                Style::Color
            };
            if views.is_empty() {
                format!(
                    "No RedisCluster found in {}.\n",
                    if all {
                        "any namespace".to_string()
                    } else {
                        format!("namespace {ns}")
                    }
                )
            } else {
                render::clusters(&views, Timestamp::now(), style)
            }
        }
        Output::Json => {
            let v = match name {
                Some(_) => serde_json::to_value(&views[0]),
                None => serde_json::to_value(serde_json::json!({"items": views})),
            };
            v.and_then(|v| serde_json::to_string_pretty(&v))
                .map(|s| s + "\n")
                .map_err(|e| Error::Other(e.to_string()))?
        }
        Output::Yaml => match name {
            Some(_) => serde_yaml::to_string(&views[0]),
            None => serde_yaml::to_string(&serde_json::json!({"items": views})),
        }
        .map_err(|e| Error::Other(e.to_string()))?,
    };
    print!("{text}");
    Ok(())
}

/// Ask the person at the terminal; refuse when there is none (scripts must say --yes).
fn confirm(question: &str, yes: bool) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Refused(
            "refusing without confirmation: stdin is not a terminal; add --yes".into(),
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::Other(e.to_string()))?;
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::Refused("not confirmed: nothing changed".into()))
    }
}

async fn promote(
    client: &Client,
    ns: &str,
    name: &str,
    pod: Option<String>,
    change: &Change,
) -> Result<(), Error> {
    let c = api::get_cluster(client, ns, name).await?;
    let op = api::operator(client).await;
    let pods: Vec<String> = api::data_pods(client, ns, name)
        .await?
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    actions::check_promote(&c, &op, pod.as_deref(), &pods).map_err(Error::Refused)?;
    let v = view_of(client, &c, &op).await;
    let risk = v
        .data_at_risk
        .as_ref()
        .map(|r| r.summary.clone())
        .unwrap_or_else(|| "unknown".into());
    println!("Promoting {name} ({ns}) to a standalone primary.");
    println!("  Data at risk: {risk}");
    if op.state == "unknown" {
        println!("  Operator:     {}", op.message);
    }
    println!(
        "  Afterwards {} takes writes; the source ({}) must not: fence or shut it down.",
        name,
        v.source.as_deref().unwrap_or("-")
    );
    confirm(&format!("Promote {name}?"), change.yes)?;
    let patch = actions::promote_patch(pod.as_deref());
    patch_and_follow(
        client,
        ns,
        name,
        &patch,
        change,
        actions::promotion_progress,
    )
    .await
}

async fn demote(client: &Client, ns: &str, name: &str, change: &Change) -> Result<(), Error> {
    let c = api::get_cluster(client, ns, name).await?;
    let op = api::operator(client).await;
    actions::check_demote(&c, &op).map_err(Error::Refused)?;
    let source = view::source_text(&c).unwrap_or_else(|| "-".into());
    println!("Returning {name} ({ns}) to replicating {source}.");
    println!(
        "  Every write {name} took since its promotion is DISCARDED: its pods resynchronise \
         from the source. Its primary saves them to its volume first (a Salvaged Event, \
         docs/salvage.md); nothing is replayed."
    );
    confirm(
        &format!("Demote {name} and discard its writes?"),
        change.yes,
    )?;
    let patch = actions::demote_patch();
    patch_and_follow(client, ns, name, &patch, change, actions::demotion_progress).await
}

/// The planned switchover's three steps (docs/switchover.md), each followed until done.
async fn switchover(
    client: &Client,
    ns: &str,
    name: &str,
    (to_client, to_ns, to): (&Client, &str, &str),
    change: &Change,
) -> Result<(), Error> {
    let from_c = api::get_cluster(client, ns, name).await?;
    let to_c = api::get_cluster(to_client, to_ns, to).await?;
    let from_op = api::operator(client).await;
    let to_op = api::operator(to_client).await;
    actions::check_switchover(&from_c, &to_c, &from_op, &to_op).map_err(Error::Refused)?;
    println!("Planned switchover: {name} ({ns}) -> {to} ({to_ns}).");
    println!(
        "  1. {name} stops taking writes (its primary becomes a read-only replica) and publishes \
         its promotion token;"
    );
    println!(
        "  2. {to} is promoted once one of its pods holds that token: no acknowledged write is lost;"
    );
    println!("  3. {name} follows {to} with a partial resync.");
    println!(
        "  Clients see writes refused from step 1 until step 2 completes (typically under a second)."
    );
    confirm(&format!("Switch over from {name} to {to}?"), change.yes)?;
    let started = Instant::now();
    let abort = format!(
        "to abort before {to} is promoted: kubectl patch rediscluster -n {ns} {name} --type=merge -p '{}'",
        actions::switchover_abort_patch(&from_c)
    );
    // Each step waits for the one before: --no-wait would stop after the demotion.
    let change = Change {
        no_wait: false,
        ..*change
    };
    println!("1/3 {name}:");
    patch_and_follow(
        client,
        ns,
        name,
        &actions::switchover_demote_patch(&from_c),
        &change,
        actions::demotion_token_progress,
    )
    .await
    .map_err(|e| Error::Refused(format!("{e}; {abort}")))?;
    let token = api::get_cluster(client, ns, name)
        .await?
        .status
        .and_then(|s| s.demotion_token)
        .ok_or_else(|| Error::Other("the demotion token disappeared".into()))?;
    println!("2/3 {to}:");
    patch_and_follow(
        to_client,
        to_ns,
        to,
        &actions::switchover_promote_patch(&token),
        &change,
        actions::token_promotion_progress,
    )
    .await
    .map_err(|e| {
        Error::Refused(format!(
            "{e}; {to} keeps waiting for the token and is never promoted without it; {abort} (and \
             remove promote and promotionToken from {to})"
        ))
    })?;
    println!("3/3 {name} follows {to}");
    follow(client, ns, name, change.timeout, actions::follows_progress).await?;
    println!(
        "switchover done in {:.1}s: {to} is primary, {name} replicates it",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Send the merge patch, say so, then (unless `--no-wait`) follow the cluster until `progress`
/// says the generation the patch made is done.
async fn patch_and_follow(
    client: &Client,
    ns: &str,
    name: &str,
    patch: &serde_json::Value,
    change: &Change,
    progress: fn(&RedisCluster, i64) -> Progress,
) -> Result<(), Error> {
    let patched = api::patch_cluster(client, ns, name, patch).await?;
    println!("patched {patch}");
    if change.no_wait {
        return Ok(());
    }
    let generation = patched.metadata.generation.unwrap_or(0);
    follow(client, ns, name, change.timeout, |c| {
        progress(c, generation)
    })
    .await
}

/// How long the cluster must stay stuck before `follow` gives up: the operator decides from
/// the pods' reports, and a pass right after a change can see one a second old (a pod that has
/// just finished a full resync reported under its former history: `NeedsChoice`); its next pass,
/// a few seconds later, decides again.
const STUCK_GRACE: Duration = Duration::from_secs(10);

/// Poll the cluster until `progress` says done, or stuck for [`STUCK_GRACE`], printing each
/// new message.
async fn follow(
    client: &Client,
    ns: &str,
    name: &str,
    timeout: Duration,
    progress: impl Fn(&RedisCluster) -> Progress,
) -> Result<(), Error> {
    let started = Instant::now();
    let mut last = String::new();
    let mut stuck_since: Option<Instant> = None;
    loop {
        let c = api::get_cluster(client, ns, name).await?;
        let p = progress(&c);
        let t = started.elapsed().as_secs_f64();
        match p {
            Progress::Done(msg) => {
                println!("[{t:5.1}s] done: {msg}");
                return Ok(());
            }
            Progress::Stuck(msg) => {
                let since = *stuck_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= STUCK_GRACE {
                    return Err(Error::Refused(format!(
                        "cannot complete without you: {msg}"
                    )));
                }
                if msg != last {
                    println!(
                        "[{t:5.1}s] {msg} (the operator's next pass decides again: waiting up to {}s)",
                        STUCK_GRACE.as_secs()
                    );
                    last = msg;
                }
            }
            Progress::Pending(msg) => {
                stuck_since = None;
                if msg != last {
                    println!("[{t:5.1}s] {msg}");
                    last = msg;
                }
            }
        }
        if started.elapsed() >= timeout {
            return Err(Error::Refused(format!(
                "not complete after {timeout:?} (last: {last}); the operator keeps going: follow \
                 it with `kubectl redis status {name} -n {ns}`"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn report(
    client: &Client,
    ns: &str,
    name: &str,
    output: Option<PathBuf>,
) -> Result<(), Error> {
    let now = Timestamp::now();
    let stamp = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let dir = format!("redis-report-{ns}-{name}-{stamp}");
    let path = output.unwrap_or_else(|| PathBuf::from(format!("{dir}.tar.gz")));
    let b = bundle::collect(client, ns, name).await?;
    let mut files = vec![("README.txt".to_string(), bundle::readme(ns, name, now, &b))];
    files.extend(b.files.iter().cloned());
    bundle::write(&path, &dir, &files)
        .map_err(|e| Error::Other(format!("writing {}: {e}", path.display())))?;
    println!(
        "wrote {} ({} files{})",
        path.display(),
        files.len(),
        if b.missing.is_empty() {
            String::new()
        } else {
            format!(
                "; {} item(s) not collected, listed in README.txt",
                b.missing.len()
            )
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl_timeouts() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn connection_flags_are_accepted_after_the_command_as_kubectl_users_type_them() {
        let cli = Cli::try_parse_from([
            "kubectl-redis",
            "status",
            "dr-redis",
            "-n",
            "production",
            "--context",
            "west",
            "-o",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("production"));
        assert_eq!(cli.context.as_deref(), Some("west"));
        assert!(matches!(
            cli.command,
            Command::Status {
                output: Output::Json,
                ..
            }
        ));
        // promote needs a name; promote and demote take the same confirmation and wait flags.
        assert!(Cli::try_parse_from(["kubectl-redis", "promote"]).is_err());
        for verb in ["promote", "demote"] {
            let cli = Cli::try_parse_from([
                "kubectl-redis",
                verb,
                "dr",
                "--yes",
                "--timeout",
                "2m",
                "--no-wait",
            ])
            .unwrap();
            let change = match cli.command {
                Command::Promote { change, .. } | Command::Demote { change, .. } => change,
                other => panic!("{other:?}"),
            };
            assert!(change.yes && change.no_wait, "{verb}");
            assert_eq!(change.timeout, Duration::from_secs(120), "{verb}");
        }
    }
}
