//! `make bench`: the drill's timings on the real cluster side by side with the physical
//! baseline, measured in the same run with plain `redis-server`s and `redis-cli`.
//!
//! Production (the spec's `prod-redis` sample, `mode: standalone`: this bench measures syncs and
//! promotion, not Sentinel) runs in region A and is seeded with 150 000 keys of 1 000 bytes.
//! The baselines run first, on plain `redis-server`s started by the bench in region B's network
//! namespace (`kc-rb`) on addresses outside every node's podCIDR (10.79.250.0/24): no operator,
//! no instance manager, no Kubernetes; the operator's `redis.conf` minus its boot fence, its
//! included auth file and its renamed commands. They replicate production's `-leader` Service
//! over the same inter-region link as the DR pods. Then they are stopped and the DR cluster
//! (the spec's `dr-redis` sample) is applied.
//!
//! 1. Full sync of the seeded dataset: `kubectl apply` of the DR sample -> every DR pod caught
//!    up, vs `redis-cli REPLICAOF` on one plain server (the source at the operator's
//!    `repl-diskless-sync-delay 0`, then at Redis's default 5), and on three at once.
//! 2. A 4 MB write burst over a 16 Mbit/s link until every replica has it: direct (every DR pod
//!    replicates the source) vs cascading (only the leader crosses regions), and the same two
//!    shapes built by hand with three plain servers.
//! 3. Promotion: `kubectl patch ... promote: true` -> first accepted write on the leader, and ->
//!    the other pods replicating it (following its new replication history), cascading then
//!    direct, vs `redis-cli REPLICAOF NO ONE` / `REPLICAOF <leader>` on the plain servers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use redis_cluster_api::RedisCluster;
use redis_cluster_api::labels as l;
use redis_operator::config::redis_conf;
use redis_test_support::process::command;
use redis_test_support::redis::{quote, spawn_on};
use redis_test_support::resp::Conn;
use redis_test_support::wait::poll_every;
use serde_json::json;

use crate::harness::observe::accepts_write;
use crate::harness::{DR, Drill, NS, Options, PROD, addr, wait};

const SEED_KEYS: usize = 150_000;
const SEED_VALUE: usize = 1_000;
/// The write burst: 4000 keys of 1000 bytes (the same keys every time, so the dataset does not
/// grow from one burst to the next).
const BURST_KEYS: usize = 4_000;
const BURST_RATE: &str = "16mbit";

/// What DR's `source.host` names (the sample, verbatim): production's `-leader` Service.
const PROD_LEADER: &str = "prod-redis-leader.production.svc.cluster.local";

pub struct Row {
    pub what: String,
    pub operator: Option<Duration>,
    pub baseline: Option<Duration>,
    pub baseline_name: String,
}

/// Region B's network namespace: the benches' plain servers run there, outside Kubernetes (as
/// the source drill's external production does in region A).
pub(crate) const PLAIN_NETNS: &str = "kc-rb";

/// Address `n` for the benches' plain servers: in region B's range (10.79.0.0/16, which region
/// A routes over the inter-region link) but outside every node's podCIDR (10.79.1-3.0/24), so
/// no pod ever gets it.
pub(crate) fn plain_ip(n: u32) -> String {
    format!("10.79.250.{n}")
}

/// The RedisCluster of sample `file` as the operator would render it (no uid: a plain server's
/// renamed commands, when kept, are computed from the namespace and name alone).
pub(crate) fn sample_cluster(d: &Drill, file: &str) -> Result<RedisCluster, String> {
    serde_yaml::from_str(&d.sample(file)?).map_err(|e| format!("{file}: {e}"))
}

/// The operator's `redis.conf` for `rc` as a plain server's: its own address (also the source
/// address of its replication link), directory and password, without the boot fence
/// (`min-replicas-to-write 0`) and the included auth file. With `plain_commands` also without
/// the renamed commands: `REPLICAOF` as Redis ships it.
pub(crate) fn plain_redis_conf(
    rc: &RedisCluster,
    ip: &str,
    dir: &Path,
    password: &str,
    plain_commands: bool,
) -> String {
    let mut conf: String = redis_conf(rc)
        .lines()
        .filter(|line| {
            !(line.starts_with("dir ")
                || line.starts_with("include ")
                || (plain_commands && line.starts_with("rename-command ")))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let pw = quote(password);
    conf.push_str(&format!(
        "bind {ip}\nbind-source-addr {ip}\ndir {}\nmin-replicas-to-write 0\nrequirepass {pw}\nmasterauth {pw}\n",
        dir.display()
    ));
    conf
}

/// Start `program` (`redis-server` or `redis-sentinel`) on `conf` in region B, on its own
/// address `ip` there, as `d.procs[name]` (killed when removed from there, or at the end).
pub(crate) fn start_plain(
    d: &mut Drill,
    name: &str,
    program: &str,
    ip: &str,
    conf: &Path,
) -> Result<(), String> {
    start_plain_in(d, PLAIN_NETNS, name, program, ip, conf)
}

/// [`start_plain`] in the network namespace `netns` (a region's).
pub(crate) fn start_plain_in(
    d: &mut Drill,
    netns: &str,
    name: &str,
    program: &str,
    ip: &str,
    conf: &Path,
) -> Result<(), String> {
    let out = command(Some(netns), "ip")
        .args(["addr", "replace", &format!("{ip}/32"), "dev", "lo"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "adding {ip} in {netns}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let log = conf.with_extension("log");
    let p = spawn_on(program, name, Some(netns), conf, &log)?;
    d.procs.insert(name.to_string(), p);
    Ok(())
}

/// `redis-cli -h <ip> <args>` in region B, the password in the environment (never an
/// argument), as a person would type it.
pub(crate) fn redis_cli(ip: &str, password: &str, args: &[&str]) -> Result<String, String> {
    let out = command(Some(PLAIN_NETNS), "redis-cli")
        .args(["-h", ip])
        .args(args)
        .env("REDISCLI_AUTH", password)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || text.starts_with("ERR") || text.contains("Could not connect") {
        return Err(format!(
            "redis-cli -h {ip} {args:?}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(text)
}

/// `INFO <section>` of the Redis at `addr`.
pub(crate) fn info_at(
    addr: &str,
    password: &str,
    section: &str,
) -> Option<BTreeMap<String, String>> {
    Conn::connect(addr, Some(password), Duration::from_millis(500))
        .ok()?
        .info(section)
        .ok()
}

/// Poll every 10 ms until the Redis at `addr` accepts a write: the time since `from`.
fn first_write(from: Instant, addr: &str, password: &str) -> Result<Duration, String> {
    poll_every(
        Duration::from_millis(10),
        &format!("{addr} to accept a write"),
        Duration::from_secs(120),
        || {
            accepts_write(
                addr,
                password,
                ["bench:write", "1"],
                Duration::from_millis(200),
            )
            .then_some(())
        },
    )
    .map(|_| from.elapsed())
}

/// Every replica at `replicas` (`ip:port`) has its link up and is at the offset of `source`
/// (read fresh each time: a primary's replication pings move it every 10 s).
fn caught_up(source: (&str, &str), replicas: &[String], password: &str) -> bool {
    let Some(target) = info_at(source.0, source.1, "replication")
        .and_then(|i| i.get("master_repl_offset").cloned())
    else {
        return false;
    };
    replicas.iter().all(|r| {
        info_at(r, password, "replication").is_some_and(|i| {
            i.get("master_link_status").map(String::as_str) == Some("up")
                && i.get("slave_repl_offset") == Some(&target)
        })
    })
}

/// Wait (up to 5 min) until [`caught_up`]: how long it took.
fn wait_caught_up(
    what: &str,
    source: (&str, &str),
    replicas: &[String],
    password: &str,
) -> Result<Duration, String> {
    poll_every(
        Duration::from_millis(20),
        what,
        Duration::from_secs(300),
        || caught_up(source, replicas, password).then_some(()),
    )
    .map(|(_, took)| took)
}

/// Every follower replicates the leader at `leader` and follows its current replication history:
/// link up, no sync in progress, the leader's `master_replid` (so a promotion's new history has
/// reached it, not merely a link that is still up from before).
fn attached(leader: &str, followers: &[String], password: &str) -> bool {
    let Some(id) =
        info_at(leader, password, "replication").and_then(|i| i.get("master_replid").cloned())
    else {
        return false;
    };
    followers.iter().all(|f| {
        info_at(f, password, "replication").is_some_and(|i| {
            i.get("master_link_status").map(String::as_str) == Some("up")
                && i.get("master_sync_in_progress").map(String::as_str) == Some("0")
                && i.get("master_replid") == Some(&id)
        })
    })
}

/// Wait until [`attached`]: the time since `from`.
fn wait_attached(
    what: &str,
    from: Instant,
    leader: &str,
    followers: &[String],
    password: &str,
) -> Result<Duration, String> {
    poll_every(
        Duration::from_millis(20),
        what,
        Duration::from_secs(120),
        || attached(leader, followers, password).then_some(()),
    )
    .map(|_| from.elapsed())
}

/// `CONFIG SET repl-diskless-sync-delay` on production's primary.
fn diskless_sync_delay(d: &Drill, delay: &str) -> Result<(), String> {
    let r = d
        .conn("prod-redis-0")?
        .cmd(&["CONFIG", "SET", "repl-diskless-sync-delay", delay])
        .map_err(|e| e.to_string())?;
    if r.is_error() {
        return Err(r.text());
    }
    Ok(())
}

pub fn run(o: &Options) -> Result<Vec<Row>, String> {
    let mut d = Drill::prepare(o)?;
    let source = production(&mut d)?;
    let plain = plain_baselines(&mut d, &source)?;
    let mut rows = operator_full_sync(&mut d, &source, &plain)?;
    rows.extend(operator_bursts(&mut d, &plain)?);
    rows.extend(operator_promotions(&mut d, &plain)?);
    Ok(rows)
}

/// What the plain servers replicate, and what the dataset is.
struct Source {
    /// The `-leader` Service's ClusterIP (kube-proxy in region B sends it to production's
    /// primary over the inter-region link, as for the DR pods; they reach it by its DNS name).
    host: String,
    used_memory: String,
}

/// Production: the secrets, the prod-redis sample in `mode: standalone`, its primary seeded.
fn production(d: &mut Drill) -> Result<Source, String> {
    println!("==> production: the prod-redis sample (mode: standalone), seeded");
    d.create_secrets()?;
    let sample = d.sample("prod-redis.yaml")?;
    let standalone = sample.replace("mode: sentinel", "mode: standalone");
    if standalone == sample {
        return Err("prod-redis.yaml no longer says mode: sentinel".into());
    }
    d.apply_yaml(&standalone)?;
    d.wait_pods_running(PROD, Duration::from_secs(180))?;
    d.wait_writable(
        "prod-redis-0 to accept writes",
        "prod-redis-0",
        ["bench:hello", "1"],
        Duration::from_secs(60),
    )?;
    println!("seeding {SEED_KEYS} keys of {SEED_VALUE} bytes on prod-redis-0 ...");
    d.write_keys("prod-redis-0", "seed", SEED_KEYS, SEED_VALUE)?;
    let used_memory = d
        .info("prod-redis-0", "memory")?
        .get("used_memory_human")
        .cloned()
        .unwrap_or_default();
    println!("dataset: {used_memory}");
    let host = d
        .kubectl(&[
            "-n",
            NS,
            "get",
            "service",
            &l::leader_service(PROD),
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])?
        .trim()
        .to_string();
    // The plain servers live in region B's own network namespace, where kube-proxy programs the
    // Services for the region (locally sent packets included): a plain server reaches the
    // ClusterIP like a DR pod does, minus the DNS lookup.
    let pong = redis_cli(&host, &d.passwords[PROD], &["PING"]);
    if pong.as_deref() != Ok("PONG") {
        return Err(format!(
            "{} ({host}) is not reachable from {PLAIN_NETNS}: {pong:?}",
            l::leader_service(PROD)
        ));
    }
    Ok(Source { host, used_memory })
}

/// The plain servers' measurements.
struct Plain {
    sync_one: Duration,
    sync_one_default_delay: Duration,
    sync_three: Duration,
    burst_direct: Duration,
    burst_cascading: Duration,
    cascading_write: Duration,
    cascading_attach: Duration,
    direct_write: Duration,
    direct_attach: Duration,
}

/// A 4 MB burst on production's primary with the inter-region link limited: the time until
/// `replicas` all have it.
fn burst(d: &Drill, replicas: &[String], password: &str) -> Result<Duration, String> {
    let source = addr("prod-redis-0");
    let prod_pw = d.passwords[PROD].clone();
    wait_caught_up(
        "replicas caught up before the burst",
        (&source, &prod_pw),
        replicas,
        password,
    )?;
    d.rate_limit(Some(BURST_RATE))?;
    let start = Instant::now();
    let result = d
        .write_keys("prod-redis-0", "burst", BURST_KEYS, 1000)
        .and_then(|_| {
            wait_caught_up(
                "the burst to reach every replica",
                (&source, &prod_pw),
                replicas,
                password,
            )
        });
    let took = start.elapsed();
    d.rate_limit(None)?;
    result.map(|_| took)
}

/// The baselines: plain redis-servers in region B, `redis-cli` only. Stopped at the end.
fn plain_baselines(d: &mut Drill, source: &Source) -> Result<Plain, String> {
    println!(
        "==> baselines: plain redis-servers in region B ({PLAIN_NETNS}, 10.79.250.0/24), redis-cli only, source {} ({})",
        source.host,
        l::leader_service(PROD)
    );
    let pw = d.passwords[PROD].clone();
    let rc = sample_cluster(d, "dr-redis.yaml")?;
    let base = d.o.dir.join("plain");
    let start = |d: &mut Drill, n: u32| -> Result<String, String> {
        let ip = plain_ip(n);
        let dir = base.join(format!("plain-{n}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let conf = dir.join("redis.conf");
        std::fs::write(&conf, plain_redis_conf(&rc, &ip, &dir, &pw, true))
            .map_err(|e| e.to_string())?;
        start_plain(d, &format!("plain-{n}"), "redis-server", &ip, &conf)?;
        wait(
            &format!("plain-{n} to answer"),
            Duration::from_secs(10),
            || info_at(&format!("{ip}:6379"), &pw, "server"),
        )?;
        Ok(ip)
    };
    let prod = addr("prod-redis-0");
    let sync = |ips: &[String]| -> Result<Duration, String> {
        let t = Instant::now();
        for ip in ips {
            redis_cli(ip, &pw, &["REPLICAOF", &source.host, "6379"])?;
        }
        let replicas: Vec<String> = ips.iter().map(|ip| format!("{ip}:6379")).collect();
        wait_caught_up("the plain full sync", (&prod, &pw), &replicas, &pw)?;
        Ok(t.elapsed())
    };

    // 1. Full syncs into empty servers: one alone (source delay 0, then 5), then three at once.
    let one = start(d, 1)?;
    diskless_sync_delay(d, "0")?;
    let sync_one = sync(std::slice::from_ref(&one))?;
    d.procs.remove("plain-1");
    let one = start(d, 2)?;
    diskless_sync_delay(d, "5")?;
    let sync_one_default_delay = sync(std::slice::from_ref(&one));
    diskless_sync_delay(d, "0")?;
    let sync_one_default_delay = sync_one_default_delay?;
    d.procs.remove("plain-2");
    let three: Vec<String> = (11..14).map(|n| start(d, n)).collect::<Result<_, _>>()?;
    let sync_three = sync(&three)?;
    println!(
        "    full sync: one server {:.2} s (delay 5: {:.2} s), three at once {:.2} s",
        sync_one.as_secs_f64(),
        sync_one_default_delay.as_secs_f64(),
        sync_three.as_secs_f64()
    );

    // 2. Bursts: all three replicate the source, then two of them replicate the first.
    let replicas: Vec<String> = three.iter().map(|ip| format!("{ip}:6379")).collect();
    let burst_direct = burst(d, &replicas, &pw)?;
    for ip in &three[1..] {
        redis_cli(ip, &pw, &["REPLICAOF", &three[0], "6379"])?;
    }
    wait("plain cascading", Duration::from_secs(60), || {
        replicas[1..]
            .iter()
            .all(|r| {
                info_at(r, &pw, "replication").is_some_and(|i| {
                    i.get("master_host") == Some(&three[0])
                        && i.get("master_link_status").map(String::as_str) == Some("up")
                })
            })
            .then_some(())
    })?;
    let burst_cascading = burst(d, &replicas, &pw)?;
    println!(
        "    burst: direct {:.2} s, cascading {:.2} s",
        burst_direct.as_secs_f64(),
        burst_cascading.as_secs_f64()
    );

    // 3. Promotions: cascading (the others already replicate the leader), then direct.
    let t = Instant::now();
    redis_cli(&three[0], &pw, &["REPLICAOF", "NO", "ONE"])?;
    let cascading_write = first_write(t, &replicas[0], &pw)?;
    let cascading_attach = wait_attached("plain re-attach", t, &replicas[0], &replicas[1..], &pw)?;
    sync(&three)?;
    let t = Instant::now();
    redis_cli(&three[0], &pw, &["REPLICAOF", "NO", "ONE"])?;
    let direct_write = first_write(t, &replicas[0], &pw)?;
    for ip in &three[1..] {
        redis_cli(ip, &pw, &["REPLICAOF", &three[0], "6379"])?;
    }
    let direct_attach = wait_attached("plain re-attach", t, &replicas[0], &replicas[1..], &pw)?;
    println!(
        "    promotion: cascading {:.2} s / {:.2} s, direct {:.2} s / {:.2} s",
        cascading_write.as_secs_f64(),
        cascading_attach.as_secs_f64(),
        direct_write.as_secs_f64(),
        direct_attach.as_secs_f64()
    );
    for n in 11..14 {
        d.procs.remove(&format!("plain-{n}"));
    }
    Ok(Plain {
        sync_one,
        sync_one_default_delay,
        sync_three,
        burst_direct,
        burst_cascading,
        cascading_write,
        cascading_attach,
        direct_write,
        direct_attach,
    })
}

/// The DR pods' addresses, `ip:6379`, in ordinal order.
fn dr_addrs(d: &Drill) -> Vec<String> {
    d.pods(DR).iter().map(|p| addr(p)).collect()
}

/// 1. `kubectl apply` of the DR sample (verbatim: it replicates `prod-redis-leader`) -> every DR
///    pod caught up with production.
fn operator_full_sync(d: &mut Drill, source: &Source, plain: &Plain) -> Result<Vec<Row>, String> {
    println!("==> operator: kubectl apply -f config/samples/dr-redis.yaml");
    let applied = Instant::now();
    d.apply_sample("dr-redis.yaml")?;
    d.wait_pods_running(DR, Duration::from_secs(300))?;
    let running_at = applied.elapsed();
    let prod = addr("prod-redis-0");
    let pods = dr_addrs(d);
    wait_caught_up(
        "every DR pod caught up with production",
        (&prod, &d.passwords[PROD]),
        &pods,
        &d.passwords[DR],
    )?;
    let synced = applied.elapsed();
    let linked = d.pods(DR).iter().all(|p| d.linked_to(p, PROD_LEADER));
    if !linked {
        return Err(format!("the DR pods do not replicate {PROD_LEADER}"));
    }
    println!(
        "    apply -> pods running {:.2} s, -> all caught up {:.2} s",
        running_at.as_secs_f64(),
        synced.as_secs_f64()
    );
    let n = pods.len();
    Ok(vec![
        Row {
            what: format!(
                "full sync of {} to {n} DR pods (operator: apply -> all caught up)",
                source.used_memory
            ),
            operator: Some(synced),
            baseline: Some(plain.sync_one),
            baseline_name: "redis-cli REPLICAOF, 1 plain server, delay 0 (the operator's)".into(),
        },
        Row {
            what: format!("  of which apply -> all {n} DR pods Running (API, scheduler, volumes)"),
            operator: Some(running_at),
            baseline: None,
            baseline_name: String::new(),
        },
        Row {
            what: format!("  the same full sync to {n} plain servers at once (REPLICAOF on each)"),
            operator: None,
            baseline: Some(plain.sync_three),
            baseline_name: format!("redis-cli REPLICAOF, {n} plain servers, delay 0"),
        },
        Row {
            what: "  same raw full sync with Redis's default repl-diskless-sync-delay 5".into(),
            operator: None,
            baseline: Some(plain.sync_one_default_delay),
            baseline_name: "redis-cli REPLICAOF, 1 plain server, delay 5 (Redis default)".into(),
        },
    ])
}

/// Wait until DR replicates in `topology`: every pod caught up with production, through the
/// leader for `cascading`.
fn wait_topology(d: &Drill, cascading: bool) -> Result<(), String> {
    let pods = d.pods(DR);
    wait(
        if cascading {
            "cascading topology"
        } else {
            "direct topology"
        },
        Duration::from_secs(300),
        || {
            let shaped = pods.iter().enumerate().all(|(i, p)| {
                let upstream = if cascading && i > 0 {
                    "dr-redis-0"
                } else {
                    PROD_LEADER
                };
                d.linked_to(p, upstream)
            });
            (shaped && d.caught_up("prod-redis-0", &pods).is_some()).then_some(())
        },
    )
    .map(|_| ())
}

/// 2. The burst, direct (the sample's default) then cascading.
fn operator_bursts(d: &mut Drill, plain: &Plain) -> Result<Vec<Row>, String> {
    println!("==> operator: a 4 MB burst over a {BURST_RATE} link, direct then cascading");
    let pw = d.passwords[DR].clone();
    let pods = dr_addrs(d);
    wait_topology(d, false)?;
    let direct = burst(d, &pods, &pw)?;
    d.patch(
        DR,
        &json!({"spec": {"replicaMode": {"topology": "cascading"}}}),
    )?;
    wait_topology(d, true)?;
    let cascading = burst(d, &pods, &pw)?;
    println!(
        "    direct {:.2} s, cascading {:.2} s",
        direct.as_secs_f64(),
        cascading.as_secs_f64()
    );
    let n = pods.len();
    Ok(vec![
        Row {
            what: format!("4 MB burst over a 16 Mbit/s link, all {n} DR pods caught up: direct"),
            operator: Some(direct),
            baseline: Some(plain.burst_direct),
            baseline_name: format!("{n} plain servers, each REPLICAOF the source"),
        },
        Row {
            what: "  same burst, cascading (one cross-region stream)".into(),
            operator: Some(cascading),
            baseline: Some(plain.burst_cascading),
            baseline_name: "1 plain server REPLICAOF the source, the others REPLICAOF it".into(),
        },
    ])
}

/// `kubectl patch ... promote: true`: (patch -> first write on dr-redis-0, patch -> the others
/// replicating its new history).
fn promote(d: &Drill) -> Result<(Duration, Duration), String> {
    let pw = d.passwords[DR].clone();
    let pods = dr_addrs(d);
    let t = Instant::now();
    d.kubectl(&[
        "-n",
        NS,
        "patch",
        "rediscluster",
        DR,
        "--type=merge",
        "-p",
        r#"{"spec":{"replicaMode":{"promote":true}}}"#,
    ])?;
    let write = first_write(t, &pods[0], &pw)?;
    let attach = wait_attached("the DR pods re-attached", t, &pods[0], &pods[1..], &pw)?;
    Ok((write, attach))
}

/// `promote: false`, and wait until DR replicates production again. The leader took a write
/// while promoted, so its history no longer continues production's: the replication gate keeps
/// its data until the user accepts production's history with the command the SourceLinkUp
/// condition prints (the drill's "Recover Primary Region" step does the same).
fn demote(d: &Drill, cascading: bool) -> Result<(), String> {
    d.patch(DR, &json!({"spec": {"replicaMode": {"promote": false}}}))?;
    let pods = d.pods(DR);
    let (blocked, _) = wait(
        "DR to replicate production again",
        Duration::from_secs(300),
        || {
            if let Some(c) = d
                .condition(DR, "SourceLinkUp")
                .filter(|c| c.0 == "False" && c.1 == "UnrelatedHistory")
            {
                return Some(Some(c.2));
            }
            d.caught_up("prod-redis-0", &pods).map(|_| None)
        },
    )?;
    if let Some(message) = blocked {
        let command = message
            .split("To replace its data with the upstream's: ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .ok_or(format!("blocked, without a command: {message}"))?;
        println!("    the gate kept DR's promoted history; accepting production's: {command}");
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        d.kubectl(&args)?;
    }
    wait_topology(d, cascading)
}

/// 3. Promotion, cascading (the topology the bursts left) then direct.
fn operator_promotions(d: &mut Drill, plain: &Plain) -> Result<Vec<Row>, String> {
    println!("==> operator: kubectl patch promote: true, cascading then direct");
    let (cascading_write, cascading_attach) = promote(d)?;
    println!(
        "    cascading: first write {:.2} s, re-attached {:.2} s",
        cascading_write.as_secs_f64(),
        cascading_attach.as_secs_f64()
    );
    demote(d, true)?;
    d.patch(
        DR,
        &json!({"spec": {"replicaMode": {"topology": "direct"}}}),
    )?;
    wait_topology(d, false)?;
    let (direct_write, direct_attach) = promote(d)?;
    println!(
        "    direct: first write {:.2} s, re-attached {:.2} s",
        direct_write.as_secs_f64(),
        direct_attach.as_secs_f64()
    );
    let row = |what: &str, operator, baseline, baseline_name: &str| Row {
        what: what.into(),
        operator: Some(operator),
        baseline: Some(baseline),
        baseline_name: baseline_name.into(),
    };
    Ok(vec![
        row(
            "promotion, direct: patch -> first accepted write on the leader",
            direct_write,
            plain.direct_write,
            "redis-cli REPLICAOF NO ONE -> first write",
        ),
        row(
            "promotion, direct: patch -> both replicas re-attached",
            direct_attach,
            plain.direct_attach,
            "+ redis-cli REPLICAOF <leader> on both",
        ),
        row(
            "promotion, cascading: patch -> first accepted write",
            cascading_write,
            plain.cascading_write,
            "redis-cli REPLICAOF NO ONE -> first write",
        ),
        row(
            "promotion, cascading: patch -> replicas attached",
            cascading_attach,
            plain.cascading_attach,
            "(they reconnect on their own, new history)",
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcluster::net::Region;

    #[test]
    fn plain_addresses_are_in_region_b_outside_every_node_pod_cidr() {
        let b = Region('b');
        assert_eq!(b.netns(), PLAIN_NETNS);
        assert!(
            plain_ip(1).starts_with("10.79."),
            "region B's range: {}",
            b.pod_cidr()
        );
        for n in 1..=3 {
            assert_ne!(b.node_pod_cidr(n), "10.79.250.0/24");
        }
    }
}
