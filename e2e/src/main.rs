//! `redis-drill`: run the multi-region DR drill. Needs root (network namespaces).

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use redis_e2e::drills::{cluster_faults, replica_mode, source_failover};
use redis_e2e::harness::Options;

#[derive(Parser)]
#[command(about = "The multi-region DR drill with real Redis servers")]
struct Args {
    /// Explain each step for a newcomer.
    #[arg(long)]
    narrate: bool,
    /// Where logs and data go (removed at the start of a run, kept afterwards for reading).
    #[arg(long, default_value = ".drill")]
    dir: PathBuf,
    /// The redis-instance-manager binary (default: next to this one).
    #[arg(long)]
    instance_manager: Option<PathBuf>,
    /// Instead of the drill, measure the drill's timings against plain redis-cli (`make bench`).
    #[arg(long)]
    bench: bool,
    /// Instead of the drill, replica mode against a Sentinel-managed source that fails over.
    #[arg(long)]
    source_failover: bool,
    /// Instead of the drill, the faults only a real cluster has: the API server restarting, the
    /// operator's leader dying mid-promotion, a node that stops reporting, an operator upgrade.
    #[arg(long)]
    cluster_faults: bool,
    /// Instead of the drill, measure failover times: sentinel and standalone mode vs raw
    /// Sentinel (`make bench-failover`).
    #[arg(long)]
    bench_failover: bool,
    /// Instead of the drill, measure planned switchovers: the operator's two steps (demote,
    /// promote with the token) next to the raw Redis steps by hand, across the same link (`make
    /// bench-switchover`, docs/switchover.md).
    #[arg(long)]
    bench_switchover: bool,
    /// Instead of the drill, measure the operator at scale on the real control plane: for each
    /// N of the comma-separated list, N RedisClusters of 3 pods created at once (`make
    /// bench-scale`, docs/bench-scale.md).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    bench_scale: Vec<usize>,
    /// Instead of the drill, measure the reconcile itself: N clusters of 3 pods on the
    /// in-memory API, the first reconcile of each and a steady pass over all of them (`make
    /// bench-reconcile`, docs/bench-scale.md). Needs no root and no cluster.
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    bench_reconcile: Vec<usize>,
    /// Leave the cluster running afterwards, for a look with kubectl (`source <dir>/cluster/env`);
    /// stop it with `target/debug/kcluster down --dir <dir>/cluster`.
    #[arg(long)]
    keep_cluster: bool,
}

fn main() {
    let args = Args::parse();
    let instance_manager = args.instance_manager.unwrap_or_else(|| {
        std::env::current_exe()
            .expect("own path")
            .with_file_name("redis-instance-manager")
    });
    let dir = std::path::absolute(&args.dir).unwrap_or(args.dir);
    let options = Options {
        narrate: args.narrate,
        repo: redis_test_support::repo_root(),
        dir,
        instance_manager,
        keep_cluster: args.keep_cluster,
    };
    let started = Instant::now();
    if args.bench {
        bench(&options, started);
    } else if args.bench_failover {
        bench_failover(&options, started);
    } else if args.bench_switchover {
        bench_switchover(&options, started);
    } else if !args.bench_scale.is_empty() {
        bench_scale(&options, &args.bench_scale, started);
    } else if !args.bench_reconcile.is_empty() {
        bench_reconcile(&args.bench_reconcile);
    }
    let report = if args.source_failover {
        source_failover::run(&options)
    } else if args.cluster_faults {
        cluster_faults::run(&options)
    } else {
        replica_mode::run(&options)
    };
    println!("\nTimings:");
    for (name, d) in &report.timings {
        println!("  {:<62} {:>7.2} s", name, d.as_secs_f64());
    }
    let failed = report.failed();
    let passed = report.checks.len() - failed;
    println!("\nThe drill took {:.0} s.", started.elapsed().as_secs_f64());
    println!("drill: {passed} passed, {failed} failed");
    std::process::exit(if failed == 0 && passed > 0 { 0 } else { 1 });
}

/// `--bench`: the table, then exit.
fn bench(options: &Options, started: Instant) -> ! {
    match redis_e2e::bench::run(options) {
        Ok(rows) => {
            println!(
                "\n{:<78} {:>9}  {:>9}  baseline",
                "measurement", "operator", "baseline"
            );
            let fmt = |d: Option<std::time::Duration>| {
                d.map(|d| format!("{:.2} s", d.as_secs_f64()))
                    .unwrap_or_else(|| "-".into())
            };
            for r in rows {
                println!(
                    "{:<78} {:>9}  {:>9}  {}",
                    r.what,
                    fmt(r.operator),
                    fmt(r.baseline),
                    r.baseline_name
                );
            }
            println!("\nbench took {:.0} s", started.elapsed().as_secs_f64());
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}

/// `--bench-switchover`: the table, then exit.
fn bench_switchover(options: &Options, started: Instant) -> ! {
    match redis_e2e::bench_switchover::run(options) {
        Ok(series) => {
            println!(
                "\nPlanned switchover under a writer (median [min-max] of {} rounds each way)",
                redis_e2e::bench_switchover::ROUNDS
            );
            print!("{}", redis_e2e::bench_switchover::table(&series));
            println!("\nbench took {:.0} s", started.elapsed().as_secs_f64());
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}

/// `--bench-failover`: the series, then exit.
fn bench_failover(options: &Options, started: Instant) -> ! {
    match redis_e2e::bench_failover::run(options) {
        Ok(series) => {
            println!("\nFailover: Redis primary killed -> first write accepted");
            for s in &series {
                println!(
                    "  {:<66} {}",
                    s.mode,
                    redis_e2e::bench_failover::summary(&s.times)
                );
            }
            println!("\nbench took {:.0} s", started.elapsed().as_secs_f64());
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}

/// `--bench-reconcile`: the table, then exit.
fn bench_reconcile(sizes: &[usize]) -> ! {
    match redis_e2e::bench_reconcile::run(sizes) {
        Ok(rows) => {
            println!(
                "{:>5} | {:>12} | {:>14} {:>13} {:>7} | {:>13}",
                "N", "initial", "steady pass", "reconciles/s", "passes", "steady writes"
            );
            for r in &rows {
                println!(
                    "{:>5} | {:>9.2} ms | {:>11.2} ms {:>13.0} {:>7} | {:>13}",
                    r.n,
                    r.initial.as_secs_f64() * 1000.0,
                    r.steady_pass.as_secs_f64() * 1000.0,
                    r.reconciles_per_second(),
                    r.passes,
                    r.steady_writes
                );
            }
            if rows.iter().any(|r| r.steady_writes > 0) {
                eprintln!("bench failed: a steady pass wrote something");
                std::process::exit(1);
            }
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}

/// `--bench-scale`: the table, then exit.
fn bench_scale(options: &Options, sizes: &[usize], started: Instant) -> ! {
    match redis_e2e::bench_scale::run(options, sizes) {
        Ok(rows) => {
            println!(
                "\n{:>4} {:>5} | {:>8} {:>10} {:>10} {:>11} {:>9} | {:>10} {:>7} | {:>9} {:>12} {:>13} {:>8} {:>6}",
                "N",
                "pods",
                "apply",
                "objects",
                "kubectl",
                "reconciling",
                "ready",
                "promotion",
                "leases",
                "req/min",
                "req/cl/min",
                "writes/min",
                "RSS MiB",
                "CPU%"
            );
            let s = |d: Option<std::time::Duration>| {
                d.map(|d| format!("{:.2} s", d.as_secs_f64()))
                    .unwrap_or_else(|| "-".into())
            };
            for r in &rows {
                println!(
                    "{:>4} {:>5} | {:>8} {:>10} {:>10} {:>9.2} s {:>9} | {:>10} {:>7} | {:>9} {:>12.2} {:>13} {:>8.1} {:>6.1}",
                    r.n,
                    r.pods,
                    s(Some(r.apply)),
                    s(Some(r.objects)),
                    s(Some(r.baseline)),
                    r.reconcile_seconds,
                    s(r.ready),
                    s(r.promotion),
                    r.lease_changes,
                    r.steady_total(),
                    r.steady_total() as f64 / (r.n + 2) as f64,
                    r.steady_writes(),
                    r.rss_kib as f64 / 1024.0,
                    r.cpu_percent,
                );
            }
            for r in &rows {
                println!(
                    "\nN = {}: steady-state minute, {} reconciles of {} clusters; requests by kind: {:?}; initial reconciles: {}",
                    r.n,
                    r.steady_reconciles,
                    r.n + 2,
                    r.steady,
                    r.reconciles_initial
                );
            }
            println!("\nbench took {:.0} s", started.elapsed().as_secs_f64());
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}
