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

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::net::{NS_B, pod_ip};
use crate::scenario::{DR, Drill, NS, Options, PROD, operator_loop, pods, wait};

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
    let sim = d.sim.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let operator = operator_loop(sim.clone(), stop.clone());
    let result = measure(&mut d);
    stop.store(true, Ordering::Relaxed);
    let _ = operator.join();
    result
}

/// Caught up: linked to `upstream_ip`, not syncing, at prod-redis-0's current offset (read
/// fresh each time: the source's replication pings move it every 10 s).
fn caught_up(d: &Drill, pod: &str, upstream_ip: &str) -> bool {
    let Ok(target) = offset(d, "prod-redis-0") else {
        return false;
    };
    d.info(pod, "replication").is_ok_and(|i| {
        i.get("master_host").map(String::as_str) == Some(upstream_ip)
            && i.get("master_link_status").map(String::as_str) == Some("up")
            && i.get("slave_repl_offset") == Some(&target)
    })
}

fn offset(d: &Drill, pod: &str) -> Result<String, String> {
    d.info(pod, "replication")?
        .get("master_repl_offset")
        .cloned()
        .ok_or("no offset".into())
}

/// `redis-cli` in region B, with the password in the environment (never an argument).
fn redis_cli(d: &Drill, pod: &str, args: &[&str]) -> Result<String, String> {
    let ordinal = redis_cluster_api::labels::ordinal_of(DR, pod).ok_or("not a DR pod")?;
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            NS_B,
            "redis-cli",
            "-h",
            &pod_ip('b', ordinal),
        ])
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
    let start = Instant::now();
    wait(
        &format!("{pod} to accept a write"),
        Duration::from_secs(60),
        || {
            let mut c = d.conn(pod).ok()?;
            c.cmd(&["SET", "bench:write", "1"])
                .ok()
                .filter(|r| !r.is_error())
        },
    )?;
    Ok(start.elapsed())
}

fn stop_instance_managers(d: &mut Drill, cluster: &str) {
    for pod in pods(cluster) {
        if let Some(p) = d.procs.get_mut(&format!("{pod}/instance-manager")) {
            p.kill();
        }
    }
}

fn measure(d: &mut Drill) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let samples = d.o.repo.join("config/samples");
    let read = |f: &str| std::fs::read_to_string(samples.join(f)).map_err(|e| e.to_string());
    d.sim.add_secret(NS, "prod-redis-auth", &d.passwords[PROD]);
    d.sim.add_secret(NS, "dr-redis-auth", &d.passwords[DR]);
    // This bench measures syncs and promotion, not Sentinel (see bench_failover): production
    // runs standalone here so no Sentinel is needed.
    d.sim.apply(&read("prod-redis.yaml")?, |v| {
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

    // 1. Full sync through the operator.
    let ip = prod_ip.clone();
    let applied = Instant::now();
    d.sim.apply(&read("dr-redis.yaml")?, move |v| {
        v["spec"]["replicaMode"]["source"]["host"] = ip.into()
    })?;
    d.start_pods_when_applied(DR)?;
    wait("DR full sync", Duration::from_secs(300), || {
        pods(DR)
            .iter()
            .all(|p| caught_up(d, p, &prod_ip))
            .then_some(())
    })?;
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
        d.conn("prod-redis-0")?
            .cmd(&["CONFIG", "SET", "repl-diskless-sync-delay", delay])
            .map_err(|e| e.to_string())?;
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
    d.conn("prod-redis-0")?
        .cmd(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"])
        .map_err(|e| e.to_string())?;
    rows.push(Row {
        what: format!(
            "full sync of {used} to {} DR pods (operator: apply -> all caught up)",
            pods(DR).len()
        ),
        operator: Some(operator_sync),
        baseline: Some(raw_tuned),
        baseline_name: "redis-cli REPLICAOF, 1 pod, same source config (delay 0)".into(),
    });
    rows.push(Row {
        what: "  same raw full sync with Redis's default repl-diskless-sync-delay 5".into(),
        operator: None,
        baseline: Some(raw_default),
        baseline_name: "redis-cli REPLICAOF, 1 pod, delay 5 (Redis default)".into(),
    });
    // Give dr-redis-2 back to the operator.
    let dir = d.sim.pod_dir("dr-redis-2");
    let env = d.sim.env(NS, DR);
    let im = crate::procs::Proc::spawn(
        "dr-redis-2/instance-manager",
        Some(NS_B),
        &[
            d.o.instance_manager.display().to_string(),
            format!("--cluster={DR}"),
            format!("--namespace={NS}"),
            "--pod=dr-redis-2".into(),
            format!("--redis-addr={}:6379", pod_ip('b', 2)),
            format!("--redis-password-file={}", env.auth_password_file),
            format!("--topology-file={}", dir.join("annotations").display()),
            format!("--http-addr={}:9121", pod_ip('b', 2)),
        ],
        &dir.join("instance-manager-2.log"),
    )?;
    d.procs.insert("dr-redis-2/instance-manager".into(), im);
    wait(
        "dr-redis-2 back under the operator",
        Duration::from_secs(300),
        || caught_up(d, "dr-redis-2", &prod_ip).then_some(()),
    )?;

    // 2. Direct vs cascading under a rate-limited link.
    let burst = |d: &mut Drill, label: &str| -> Result<Duration, String> {
        d.regions.rate_limit("16mbit")?;
        let start = Instant::now();
        d.write_keys("prod-redis-0", label, 4000, 1000)?;
        wait("DR to catch up the burst", Duration::from_secs(120), || {
            let target = offset(d, "prod-redis-0").ok()?;
            pods(DR)
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
        pods(DR)
            .iter()
            .skip(1)
            .all(|p| caught_up(d, p, &leader_ip))
            .then_some(())
    })?;
    let cascading_burst = burst(d, "burst-cascading")?;
    rows.push(Row {
        what: format!(
            "4 MB burst over a 16 Mbit/s link, all {} DR pods caught up: direct",
            pods(DR).len()
        ),
        operator: Some(direct_burst),
        baseline: None,
        baseline_name: String::new(),
    });
    rows.push(Row {
        what: "  same burst, cascading (one cross-region stream)".into(),
        operator: Some(cascading_burst),
        baseline: None,
        baseline_name: String::new(),
    });

    // 3. Promotion, cascading then direct.
    let promote = |d: &mut Drill, label: &str| -> Result<(Duration, Duration), String> {
        let t = Instant::now();
        d.sim
            .patch(NS, DR, &json!({"spec": {"replicaMode": {"promote": true}}}))?;
        let write = first_write(d, "dr-redis-0")?;
        wait("re-attach", Duration::from_secs(60), || {
            pods(DR)
                .iter()
                .skip(1)
                .all(|p| d.linked_to(p, &leader_ip))
                .then_some(())
        })?;
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
    wait("direct topology", Duration::from_secs(300), || {
        pods(DR)
            .iter()
            .all(|p| caught_up(d, p, &prod_ip))
            .then_some(())
    })?;
    let (direct_write, direct_attach) = promote(d, "direct")?;

    // Raw baseline on the same servers: the instance managers stopped, plain redis-cli.
    demote(d)?;
    wait("direct again", Duration::from_secs(300), || {
        pods(DR)
            .iter()
            .all(|p| caught_up(d, p, &prod_ip))
            .then_some(())
    })?;
    stop_instance_managers(d, DR);
    let replicaof = redis_operator::config::cluster_replicaof_command(&d.sim.get(NS, DR));
    let t = Instant::now();
    redis_cli(d, "dr-redis-0", &[&replicaof, "NO", "ONE"])?;
    first_write(d, "dr-redis-0")?;
    let raw_write = t.elapsed();
    for p in pods(DR).iter().skip(1) {
        redis_cli(d, p, &["CONFIG", "SET", "masterauth", &d.passwords[DR]])?;
        redis_cli(d, p, &[&replicaof, &leader_ip, "6379"])?;
    }
    wait("raw re-attach", Duration::from_secs(60), || {
        pods(DR)
            .iter()
            .skip(1)
            .all(|p| d.linked_to(p, &leader_ip))
            .then_some(())
    })?;
    let raw_attach = t.elapsed();
    rows.push(Row {
        what: "promotion, direct: patch -> first accepted write on the leader".into(),
        operator: Some(direct_write),
        baseline: Some(raw_write),
        baseline_name: "redis-cli REPLICAOF NO ONE -> first write".into(),
    });
    rows.push(Row {
        what: "promotion, direct: patch -> both replicas re-attached".into(),
        operator: Some(direct_attach),
        baseline: Some(raw_attach),
        baseline_name: "+ redis-cli REPLICAOF <leader> on both".into(),
    });
    rows.push(Row {
        what: "promotion, cascading: patch -> first accepted write".into(),
        operator: Some(casc_write),
        baseline: None,
        baseline_name: String::new(),
    });
    rows.push(Row {
        what: "promotion, cascading: patch -> replicas attached".into(),
        operator: Some(casc_attach),
        baseline: None,
        baseline_name: String::new(),
    });
    Ok(rows)
}
