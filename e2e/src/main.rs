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
