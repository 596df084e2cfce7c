//! `make bench`: the drill's timings side by side with the physical baseline, measured in the
//! same run on the same servers with plain `redis-cli`.
//!
//! 1. Full sync of a ~150 MB dataset to the DR cluster through the operator, vs `redis-cli
//!    REPLICAOF` on the same server, vs the same with Redis's default
//!    `repl-diskless-sync-delay 5` on the source (what the operator's redis.conf tunes away).
//! 2. Cross-region catch-up of a write burst over a rate-limited link: direct (every DR pod
//!    replicates the source) vs cascading (only the leader crosses regions).
//! 3. Promotion (patch -> first accepted write on the leader) and re-attach of the other pods,
//!    direct and cascading, vs `redis-cli REPLICAOF NO ONE` / `REPLICAOF <leader>`.

use std::time::{Duration, Instant};

use redis_test_support::process::command;
use serde_json::json;

use crate::harness::net::{NS_B, pod_ip};
use crate::harness::operator::Operator;
use crate::harness::{DR, Drill, NS, Options, PROD, wait};

const SEED_KEYS: usize = 150_000;
const SEED_VALUE: usize = 1_000;

pub struct Row {
    pub what: String,
    pub operator: Option<Duration>,
    pub baseline: Option<Duration>,
    pub baseline_name: String,
}

pub fn run(o: &Options) -> Result<Vec<Row>, String> {
    let mut d = Drill::prepare(o)?;
    let _operator = Operator::start(d.sim.clone());
    let mut rows = full_syncs(&mut d)?;
    rows.extend(bursts(&mut d)?);
    rows.extend(promotions(&mut d)?);
    Ok(rows)
}

/// Caught up: linked to `upstream_ip`, not syncing, at prod-redis-0's current offset (read
/// fresh each time: the source's replication pings move it every 10 s).
fn caught_up(d: &Drill, pod: &str, upstream_ip: &str) -> bool {
    let Some(target) = d.offset("prod-redis-0") else {
        return false;
    };
    d.info(pod, "replication").is_ok_and(|i| {
        i.get("master_host").map(String::as_str) == Some(upstream_ip)
            && i.get("master_link_status").map(String::as_str) == Some("up")
            && i.get("slave_repl_offset") == Some(&target)
    })
}

/// Wait until every DR pod (from `skip` on) is [`caught_up`] with `upstream_ip`.
fn all_caught_up(d: &Drill, what: &str, skip: usize, upstream_ip: &str) -> Result<(), String> {
    wait(what, Duration::from_secs(300), || {
        d.pods(DR)
            .iter()
            .skip(skip)
            .all(|p| caught_up(d, p, upstream_ip))
            .then_some(())
    })
    .map(|_| ())
}

/// `redis-cli` in region B, with the password in the environment (never an argument).
fn redis_cli(d: &Drill, pod: &str, args: &[&str]) -> Result<String, String> {
    let ordinal = redis_cluster_api::labels::ordinal_of(DR, pod).ok_or("not a DR pod")?;
    let out = command(Some(NS_B), "redis-cli")
        .args(["-h", &pod_ip('b', ordinal)])
        .args(args)
        .env("REDISCLI_AUTH", &d.passwords[DR])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || text.starts_with("ERR") {
        return Err(format!(
            "redis-cli {args:?}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(text)
}

fn first_write(d: &Drill, pod: &str) -> Result<Duration, String> {
    d.wait_writable(
        &format!("{pod} to accept a write"),
        pod,
        ["bench:write", "1"],
        Duration::from_secs(60),
    )
}

fn stop_instance_managers(d: &mut Drill, cluster: &str) {
    for pod in d.pods(cluster) {
        if let Some(p) = d.procs.get_mut(&format!("{pod}/instance-manager")) {
            p.kill();
        }
    }
}

/// `CONFIG SET repl-diskless-sync-delay` on production's primary.
fn diskless_sync_delay(d: &Drill, delay: &str) -> Result<(), String> {
    d.conn("prod-redis-0")?
        .cmd(&["CONFIG", "SET", "repl-diskless-sync-delay", delay])
        .map_err(|e| e.to_string())
        .map(|_| ())
}

/// 1. Full sync of the seeded dataset to the DR cluster through the operator, vs `redis-cli
///    REPLICAOF` on dr-redis-2 (tuned, and with Redis's default delay).
fn full_syncs(d: &mut Drill) -> Result<Vec<Row>, String> {
    d.add_secrets();
    // This bench measures syncs and promotion, not Sentinel (see bench_failover): production
    // runs standalone here so no Sentinel is needed.
    d.sim.apply(&d.sample("prod-redis.yaml")?, |v| {
        v["spec"]["mode"] = "standalone".into();
    })?;
    d.start_pods_when_applied(PROD)?;
    first_write(d, "prod-redis-0")?;
    println!("seeding {SEED_KEYS} keys of {SEED_VALUE} bytes on prod-redis-0 ...");
    d.write_keys("prod-redis-0", "seed", SEED_KEYS, SEED_VALUE)?;
    let used = d
        .info("prod-redis-0", "memory")?
        .get("used_memory_human")
        .cloned()
        .unwrap_or_default();
    println!("dataset: {used}");
    let prod_ip = pod_ip('a', 0);

    // Through the operator.
    let applied = Instant::now();
    d.sim.apply(&d.sample("dr-redis.yaml")?, |v| {
        v["spec"]["replicaMode"]["source"]["host"] = prod_ip.clone().into()
    })?;
    d.start_pods_when_applied(DR)?;
    all_caught_up(d, "DR full sync", 0, &prod_ip)?;
    let operator_sync = applied.elapsed();

    // Raw baseline on the same server (dr-redis-2, its instance manager stopped): a replica that
    // was promoted has a new replication ID, so REPLICAOF back means a full sync.
    d.procs
        .get_mut("dr-redis-2/instance-manager")
        .unwrap()
        .kill();
    // The operator's pods know REPLICAOF under a per-cluster name only (see config::redis_conf).
    let replicaof = redis_operator::config::cluster_replicaof_command(&d.sim.get(NS, DR));
    let raw = |delay: &str| -> Result<Duration, String> {
        diskless_sync_delay(d, delay)?;
        redis_cli(d, "dr-redis-2", &[&replicaof, "NO", "ONE"])?;
        redis_cli(
            d,
            "dr-redis-2",
            &["CONFIG", "SET", "masterauth", &d.passwords[PROD]],
        )?;
        let t = Instant::now();
        redis_cli(d, "dr-redis-2", &[&replicaof, &prod_ip, "6379"])?;
        wait("raw full sync", Duration::from_secs(300), || {
            caught_up(d, "dr-redis-2", &prod_ip).then_some(())
        })?;
        Ok(t.elapsed())
    };
    let raw_tuned = raw("0")?;
    let raw_default = raw("5")?;
    diskless_sync_delay(d, "0")?;
    // Give dr-redis-2 back to the operator.
    d.start_instance_manager(DR, 2, "instance-manager-2.log")?;
    wait(
        "dr-redis-2 back under the operator",
        Duration::from_secs(300),
        || caught_up(d, "dr-redis-2", &prod_ip).then_some(()),
    )?;
    Ok(vec![
        Row {
            what: format!(
                "full sync of {used} to {} DR pods (operator: apply -> all caught up)",
                d.pods(DR).len()
            ),
            operator: Some(operator_sync),
            baseline: Some(raw_tuned),
            baseline_name: "redis-cli REPLICAOF, 1 pod, same source config (delay 0)".into(),
        },
        Row {
            what: "  same raw full sync with Redis's default repl-diskless-sync-delay 5".into(),
            operator: None,
            baseline: Some(raw_default),
            baseline_name: "redis-cli REPLICAOF, 1 pod, delay 5 (Redis default)".into(),
        },
    ])
}

/// 2. A write burst over a rate-limited link: direct (every DR pod replicates the source) vs
///    cascading (only the leader crosses regions).
fn bursts(d: &mut Drill) -> Result<Vec<Row>, String> {
    let burst = |d: &mut Drill, label: &str| -> Result<Duration, String> {
        d.regions.rate_limit("16mbit")?;
        let start = Instant::now();
        d.write_keys("prod-redis-0", label, 4000, 1000)?;
        wait("DR to catch up the burst", Duration::from_secs(120), || {
            let target = d.offset("prod-redis-0")?;
            d.pods(DR)
                .iter()
                .all(|p| {
                    d.info(p, "replication")
                        .is_ok_and(|i| i.get("slave_repl_offset") == Some(&target))
                })
                .then_some(())
        })?;
        d.regions.unlimit()?;
        Ok(start.elapsed())
    };
    let direct_burst = burst(d, "burst-direct")?;
    d.sim.patch(
        NS,
        DR,
        &json!({"spec": {"replicaMode": {"topology": "cascading"}}}),
    )?;
    let leader_ip = pod_ip('b', 0);
    wait("cascading topology", Duration::from_secs(60), || {
        d.pods(DR)
            .iter()
            .skip(1)
            .all(|p| caught_up(d, p, &leader_ip))
            .then_some(())
    })?;
    let cascading_burst = burst(d, "burst-cascading")?;
    Ok(vec![
        Row {
            what: format!(
                "4 MB burst over a 16 Mbit/s link, all {} DR pods caught up: direct",
                d.pods(DR).len()
            ),
            operator: Some(direct_burst),
            baseline: None,
            baseline_name: String::new(),
        },
        Row {
            what: "  same burst, cascading (one cross-region stream)".into(),
            operator: Some(cascading_burst),
            baseline: None,
            baseline_name: String::new(),
        },
    ])
}

/// The other DR pods are linked replicas of the leader.
fn reattached(d: &Drill, what: &str, leader_ip: &str) -> Result<(), String> {
    let followers: Vec<String> = d.pods(DR).into_iter().skip(1).collect();
    d.wait_linked(what, &followers, leader_ip, Duration::from_secs(60))
}

/// 3. Promotion (patch -> first write on the leader, -> the others re-attached), cascading then
///    direct, vs `redis-cli REPLICAOF NO ONE` / `REPLICAOF <leader>` on the same servers.
fn promotions(d: &mut Drill) -> Result<Vec<Row>, String> {
    let prod_ip = pod_ip('a', 0);
    let leader_ip = pod_ip('b', 0);
    let promote = |d: &mut Drill, label: &str| -> Result<(Duration, Duration), String> {
        let t = Instant::now();
        d.sim
            .patch(NS, DR, &json!({"spec": {"replicaMode": {"promote": true}}}))?;
        let write = first_write(d, "dr-redis-0")?;
        reattached(d, "re-attach", &leader_ip)?;
        println!("promotion ({label}) done");
        Ok((write, t.elapsed()))
    };
    let demote = |d: &mut Drill| -> Result<(), String> {
        d.sim.patch(
            NS,
            DR,
            &json!({"spec": {"replicaMode": {"promote": false}}}),
        )?;
        wait("demotion", Duration::from_secs(300), || {
            caught_up(d, "dr-redis-0", &prod_ip).then_some(())
        })?;
        Ok(())
    };
    let (casc_write, casc_attach) = promote(d, "cascading")?;
    demote(d)?;
    d.sim.patch(
        NS,
        DR,
        &json!({"spec": {"replicaMode": {"topology": "direct"}}}),
    )?;
    all_caught_up(d, "direct topology", 0, &prod_ip)?;
    let (direct_write, direct_attach) = promote(d, "direct")?;

    // Raw baseline on the same servers: the instance managers stopped, plain redis-cli.
    demote(d)?;
    all_caught_up(d, "direct again", 0, &prod_ip)?;
    stop_instance_managers(d, DR);
    let replicaof = redis_operator::config::cluster_replicaof_command(&d.sim.get(NS, DR));
    let t = Instant::now();
    redis_cli(d, "dr-redis-0", &[&replicaof, "NO", "ONE"])?;
    first_write(d, "dr-redis-0")?;
    let raw_write = t.elapsed();
    for p in d.pods(DR).iter().skip(1) {
        redis_cli(d, p, &["CONFIG", "SET", "masterauth", &d.passwords[DR]])?;
        redis_cli(d, p, &[&replicaof, &leader_ip, "6379"])?;
    }
    reattached(d, "raw re-attach", &leader_ip)?;
    let raw_attach = t.elapsed();
    let row = |what: &str, operator, baseline, baseline_name: &str| Row {
        what: what.into(),
        operator: Some(operator),
        baseline,
        baseline_name: baseline_name.into(),
    };
    Ok(vec![
        row(
            "promotion, direct: patch -> first accepted write on the leader",
            direct_write,
            Some(raw_write),
            "redis-cli REPLICAOF NO ONE -> first write",
        ),
        row(
            "promotion, direct: patch -> both replicas re-attached",
            direct_attach,
            Some(raw_attach),
            "+ redis-cli REPLICAOF <leader> on both",
        ),
        row(
            "promotion, cascading: patch -> first accepted write",
            casc_write,
            None,
            "",
        ),
        row(
            "promotion, cascading: patch -> replicas attached",
            casc_attach,
            None,
            "",
        ),
    ])
}
