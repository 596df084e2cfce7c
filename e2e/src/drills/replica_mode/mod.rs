//! The spec's story, end to end: a DR cluster replicates production across regions, the link is
//! slowed, then cut; the DR cluster is promoted and takes writes; production comes back and
//! replicates from DR; finally the roles are swapped back with the spec's `promote: false`.
//! Every step is asserted and timed.
//!
//! [`story`] is the list of steps; each step is a function whose doc comment is the banner it
//! prints (`make demo` adds the explanation). The two failovers (production's Sentinels, DR's
//! standalone failover) are in [`failover`].

mod failover;

use std::time::{Duration, Instant};

use redis_cluster_api::labels as l;
use redis_topology::EventReason;
use serde_json::json;

use crate::harness::checks::SplitBrainChecker;
use crate::harness::controllers::Controllers;
use crate::harness::net::{PROD_LEADER_VIP, pod_ip};
use crate::harness::operator::Operator;
use crate::harness::prom::Prometheus;
use crate::harness::{
    DR, DR_FAILOVER_AFTER_S, Drill, NS, Options, PROD, Report, SENTINEL_DOWN_AFTER_MS, im_addr, ip,
    run_story, wait,
};

/// The DR cluster's replication lag as Prometheus sees it (the largest of its pods').
const DR_LAG: &str = "max(redis_replication_lag_bytes{cluster=\"dr-redis\"})";

/// Run the whole drill.
pub fn run(o: &Options) -> Report {
    run_story(o, "drill aborted", story)
}

/// The story: the spec's clusters under the operator and the simulated controllers, then the
/// steps in order. A failed step ends it.
fn story(d: &mut Drill) -> Result<(), String> {
    setup(d)?;
    let operator = Operator::start(d.sim.clone());
    let controllers = Controllers::for_production(d);
    let result = steps(d);
    drop(controllers);
    drop(operator);
    result
}

fn steps(d: &mut Drill) -> Result<(), String> {
    let prom = start_pods_and_prometheus(d)?;
    dr_replicates_production(d)?;
    let checker = SplitBrainChecker::start(d);
    lag_under_a_rate_limited_link(d, &prom)?;
    failover::production_loses_its_primary(d)?;
    region_a_is_lost(d, &prom)?;
    promote_dr(d)?;
    let dr_primary = failover::dr_loses_its_primary(d)?;
    production_replicates_dr(d, &dr_primary)?;
    fail_back(d)?;
    never_two_primaries(d, checker)?;
    describe_events(d);
    Ok(())
}

/// Setup: two regions, production in A, DR in B
///
/// Region A and region B are network namespaces joined by one veth pair: the inter-region link.
/// Each 'pod' is a real redis-server plus the real redis-instance-manager sidecar.
/// The Kubernetes API is simulated (objects, annotations, status); the operator's real reconcile
/// code drives it. Production is the spec's prod-redis sample in sentinel mode: three real
/// redis-sentinel processes started from the operator's Sentinel StatefulSet. No DNS here: the
/// DR sample's source.host is production's -leader endpoint as a LoadBalancer address (a virtual
/// IP that follows the pod labelled primary); the DR cluster runs 5 instances, like the spec's
/// redis-west.
fn setup(d: &mut Drill) -> Result<(), String> {
    d.step(
        "Setup: two regions, production in A, DR in B",
        "Region A and region B are network namespaces joined by one veth pair: the inter-region link.\n\
         Each 'pod' is a real redis-server plus the real redis-instance-manager sidecar.\n\
         The Kubernetes API is simulated (objects, annotations, status); the operator's real reconcile\n\
         code drives it. Production is the spec's prod-redis sample in sentinel mode: three real\n\
         redis-sentinel processes started from the operator's Sentinel StatefulSet. No DNS here: the\n\
         DR sample's source.host is production's -leader endpoint as a LoadBalancer address (a virtual\n\
         IP that follows the pod labelled primary); the DR cluster runs 5 instances, like the spec's\n\
         redis-west.",
    );
    d.add_secrets();
    d.locate_production_sentinels();
    // The spec's prod-redis sample (mode: sentinel), with a Sentinel down-after short enough
    // for a drill (the default is 5 s).
    d.sim.apply(&d.sample("prod-redis.yaml")?, |v| {
        v["spec"]["sentinel"] = json!({"downAfterMilliseconds": SENTINEL_DOWN_AFTER_MS});
        // An isolated primary stops taking writes (min-replicas-to-write 1, max-lag 10 s).
        v["spec"]["minSyncReplicas"] = 1.into();
    })?;
    // DR replicates production's -leader endpoint (a LoadBalancer address here), with 5 pods
    // like the spec's cross-region example whose promoted leader reports connected_slaves:4.
    d.sim.apply(&d.sample("dr-redis.yaml")?, |v| {
        v["spec"]["replicaMode"]["source"]["host"] = PROD_LEADER_VIP.into();
        v["spec"]["instances"] = 5.into();
        v["spec"]["failover"] = json!({"primaryUnavailableSeconds": DR_FAILOVER_AFTER_S});
    })?;
    Ok(())
}

/// Both clusters' pods start once the operator applied their StatefulSets, and a real
/// Prometheus scrapes every instance manager.
fn start_pods_and_prometheus(d: &mut Drill) -> Result<Prometheus, String> {
    d.start_pods_when_applied(PROD)?;
    d.start_pods_when_applied(DR)?;
    let targets: Vec<String> = d.all_pods().iter().map(|p| im_addr(p)).collect();
    let prom_dir = d.o.dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir).map_err(|e| e.to_string())?;
    let prom = Prometheus::start(
        &prom_dir,
        &targets,
        &d.o.repo
            .join("config/prometheus/redis-replication-rules.yaml"),
    )?;
    d.say(&format!(
        "    Prometheus: http://{} (try: redis_replication_lag_bytes, redis_master_link_up)",
        prom.addr
    ));
    d.say(&format!(
        "    logs: {}/pods/<pod>/{{redis,instance-manager}}.log",
        d.o.dir.display()
    ));
    Ok(prom)
}

/// 1. Production is primary; DR replicates it from every pod
///
/// prod-redis-0 becomes primary (pod 0 is the designated leader); DR pods replicate it across regions.
fn dr_replicates_production(d: &mut Drill) -> Result<(), String> {
    d.step(
        "1. Production is primary; DR replicates it from every pod",
        "prod-redis-0 becomes primary (pod 0 is the designated leader); DR pods replicate it across regions.",
    );
    let took = d.wait_writable(
        "prod-redis-0 to accept writes",
        "prod-redis-0",
        ["drill:hello", "world"],
        Duration::from_secs(30),
    )?;
    d.time("production primary ready", took);
    d.write_keys("prod-redis-0", "seed", 5000, 100)?;
    let replicas: Vec<String> = d.all_pods().into_iter().skip(1).collect();
    let (_, took) = wait(
        "every DR pod linked to production and caught up",
        Duration::from_secs(60),
        || d.caught_up("prod-redis-0", &replicas),
    )?;
    d.time("DR caught up after seeding 5000 keys", took);
    let r = d.digests_equal(&d.all_pods());
    d.check(
        "every DR pod's keyspace equals production's (DEBUG DIGEST)",
        r,
    )?;
    let expected =
        format!("Cluster is replicating from prod-redis-us-east ({PROD_LEADER_VIP}:6379)");
    let r = d.wait_condition(DR, "ReplicaMode", "True", Some("Enabled"), &expected);
    d.check(
        &format!("status: ReplicaMode=True/Enabled \"{expected}\""),
        r,
    )?;
    let labels = d
        .sim
        .platform
        .pod(NS, "dr-redis-0")
        .map(|p| p.labels)
        .unwrap_or_default();
    let r = if labels.get(l::ROLE).map(String::as_str) == Some("primary") {
        Ok(())
    } else {
        Err(format!("{labels:?}"))
    };
    d.check("dr-redis-0 is labelled redis.io/role=primary while it is a replica (stable -leader endpoint)", r)
}

/// 2. Write load with the inter-region link rate-limited
///
/// tc tbf limits region A -> B. redis_replication_lag_bytes is the source's current offset minus
/// the replica's, read by the instance manager from the source itself.
fn lag_under_a_rate_limited_link(d: &mut Drill, prom: &Prometheus) -> Result<(), String> {
    d.step(
        "2. Write load with the inter-region link rate-limited",
        "tc tbf limits region A -> B. redis_replication_lag_bytes is the source's current offset minus\n\
         the replica's, read by the instance manager from the source itself.",
    );
    d.regions.rate_limit("8mbit")?;
    d.write_keys("prod-redis-0", "load", 2000, 1024)?;
    let r = wait("Prometheus to see lag > 0", Duration::from_secs(15), || {
        prom.scalar(DR_LAG).ok().flatten().filter(|v| *v > 0.0)
    });
    let peak = r.as_ref().map(|(v, _)| *v).unwrap_or(0.0);
    d.check(
        &format!("redis_replication_lag_bytes rises above 0 in Prometheus (saw {peak:.0} bytes)"),
        r.map(|_| ()),
    )?;
    sidecar_lag_agrees(d)?;
    let (_, drained) = wait(
        "lag back to 0 in Prometheus",
        Duration::from_secs(60),
        || prom.scalar(DR_LAG).ok().flatten().filter(|v| *v == 0.0),
    )?;
    d.check("lag returns to 0 when the load stops", Ok(()))?;
    d.time("lag drained after load", drained);
    d.regions.unlimit()
}

/// dr-redis-0's lag between production's offset and its own, read directly from both.
fn independent_lag(d: &Drill) -> Option<i64> {
    let up: i64 = d.offset("prod-redis-0")?.parse().ok()?;
    let down: i64 = d
        .info("dr-redis-0", "replication")
        .ok()?
        .get("slave_repl_offset")?
        .parse()
        .ok()?;
    Some(up - down)
}

/// The sidecar's lag agrees with an independent measurement, sandwiching its sample in time: the
/// lag only shrinks once the load stopped, so the sidecar's value must lie between a measurement
/// taken before its sample and one taken after.
fn sidecar_lag_agrees(d: &mut Drill) -> Result<(), String> {
    // A reading can fail transiently (a connection refused while the simulated -leader
    // Service moves): retry it rather than count a failed reading as 0.
    let measure = |d: &Drill| {
        wait("an independent lag reading", Duration::from_secs(2), || {
            independent_lag(d)
        })
        .map(|(v, _)| v)
        .unwrap_or(-1)
    };
    let before = measure(d);
    // The sidecar probes every second: its latest sample is at most ~1.2 s old.
    std::thread::sleep(Duration::from_millis(1500));
    let sidecar = wait("the sidecar's lag", Duration::from_secs(3), || {
        d.status_report("dr-redis-0").and_then(|r| r.lag_bytes)
    })
    .map(|(lag, _)| lag)
    .unwrap_or(-1);
    let after = measure(d);
    let r = if before > 0 && sidecar <= before + 256 && sidecar + 256 >= after {
        Ok(())
    } else {
        Err(format!(
            "independent before={before} after={after}, sidecar={sidecar}"
        ))
    };
    d.check(
        &format!("sidecar lag agrees with an independent measurement ({after} <= {sidecar} <= {before} bytes, ±256)"),
        r,
    )
}

/// 3. Region A is lost: the link is cut silently (no TCP reset)
///
/// Redis itself would only notice after repl-timeout (60 s). The instance manager probes the
/// source every second and reports the link down within seconds.
fn region_a_is_lost(d: &mut Drill, prom: &Prometheus) -> Result<(), String> {
    d.step(
        "3. Region A is lost: the link is cut silently (no TCP reset)",
        "Redis itself would only notice after repl-timeout (60 s). The instance manager probes the\n\
         source every second and reports the link down within seconds.",
    );
    d.regions.cut()?;
    let cut = Instant::now();
    let (_, took) = wait(
        "the instance manager to report the link down",
        Duration::from_secs(15),
        || d.status_report("dr-redis-0").filter(|r| !r.master_link_up),
    )?;
    d.time("link cut -> redis_master_link_up 0 (sidecar)", took);
    let r = if took < Duration::from_secs(10) {
        Ok(())
    } else {
        Err(format!("{took:?}"))
    };
    d.check("link down detected long before repl-timeout (60 s)", r)?;
    let (summary, _) = wait(
        "RedisReplicationDown to fire",
        Duration::from_secs(30),
        || {
            prom.firing()
                .ok()?
                .into_iter()
                .find(|(n, _)| n == "RedisReplicationDown")
                .map(|(_, s)| s)
        },
    )?;
    d.time(
        "link cut -> RedisReplicationDown firing (for: 3s in the drill)",
        cut.elapsed(),
    );
    d.check(
        &format!("alert RedisReplicationDown fires: \"{summary}\""),
        Ok(()),
    )?;
    let r = wait("status SourceLinkUp=False", Duration::from_secs(10), || {
        d.condition(DR, "SourceLinkUp").filter(|c| c.0 == "False")
    })
    .map(|(c, _)| c.2);
    let msg = r.clone().unwrap_or_default();
    d.check(
        &format!("status shows the link down: \"{msg}\""),
        r.map(|_| ()),
    )?;
    let r = d.all_alive();
    d.check("nothing crashed", r)
}

/// 4. Promote the DR cluster (the spec's patch: promote: true)
///
/// kubectl patch rediscluster dr-redis --type=merge -p '{"spec":{"replicaMode":{"promote":true}}}'
/// The leader is told first (REPLICAOF NO ONE); the others follow it only once it reports primary.
fn promote_dr(d: &mut Drill) -> Result<(), String> {
    d.step(
        "4. Promote the DR cluster (the spec's patch: promote: true)",
        "kubectl patch rediscluster dr-redis --type=merge -p '{\"spec\":{\"replicaMode\":{\"promote\":true}}}'\n\
         The leader is told first (REPLICAOF NO ONE); the others follow it only once it reports primary.",
    );
    let full_before = d.stat("dr-redis-0", "sync_full")?;
    let patched = Instant::now();
    d.sim
        .patch(NS, DR, &json!({"spec": {"replicaMode": {"promote": true}}}))?;
    let took = d.wait_writable(
        "dr-redis-0 to accept a write",
        "dr-redis-0",
        ["drill:promoted", "yes"],
        Duration::from_secs(30),
    )?;
    d.time(
        "promotion: patch -> first accepted write on the leader",
        took,
    );
    let leader_ip = pod_ip('b', 0);
    let followers: Vec<String> = d.pods(DR).into_iter().skip(1).collect();
    d.wait_linked(
        "the other DR pods to follow the leader",
        &followers,
        &leader_ip,
        Duration::from_secs(30),
    )?;
    d.time(
        "promotion: patch -> replicas re-attached to the leader",
        patched.elapsed(),
    );
    let full_after = d.stat("dr-redis-0", "sync_full")?;
    let partial = d.stat("dr-redis-0", "sync_partial_ok")?;
    let r = if full_after == full_before && partial >= 2 {
        Ok(())
    } else {
        Err(format!(
            "sync_full {full_before}->{full_after}, sync_partial_ok {partial}"
        ))
    };
    d.check(
        &format!(
            "zero full resyncs on the DR side (sync_full {full_after}, sync_partial_ok {partial})"
        ),
        r,
    )?;
    let replicas = d
        .info("dr-redis-0", "replication")?
        .get("connected_slaves")
        .cloned()
        .unwrap_or_default();
    d.check(
        &format!("the leader reports connected_slaves:{replicas}"),
        if replicas == followers.len().to_string() {
            Ok(())
        } else {
            Err(replicas.clone())
        },
    )?;
    let expected = "Cluster promoted to standalone (former source: prod-redis-us-east)";
    let r = d.wait_condition(DR, "ReplicaMode", "False", Some("Promoted"), expected);
    d.check(
        &format!("status: ReplicaMode=False/Promoted \"{expected}\""),
        r,
    )?;
    let primary = d.current_primary(DR);
    d.check(
        "status.currentPrimary is dr-redis-0",
        if primary.as_deref() == Some("dr-redis-0") {
            Ok(())
        } else {
            Err(format!("{primary:?}"))
        },
    )
}

/// 5. DR takes writes; region A comes back and replicates from DR (the spec's "Recover Primary Region")
///
/// prod-redis gets replicaMode.enabled: true with source = dr-redis's leader.
fn production_replicates_dr(d: &mut Drill, dr_primary: &str) -> Result<(), String> {
    d.step(
        "5. DR takes writes; region A comes back and replicates from DR (the spec's \"Recover Primary Region\")",
        "prod-redis gets replicaMode.enabled: true with source = dr-redis's leader.",
    );
    let leader_ip = ip(dr_primary);
    d.write_keys(dr_primary, "dr-writes", 1000, 100)?;
    d.regions.restore()?;
    let recovered = Instant::now();
    d.sim.apply(&d.sample("prod-redis.yaml")?, |v| {
        v["spec"]["replicaMode"] = json!({
            "enabled": true,
            "source": {"host": leader_ip, "port": 6379, "clusterName": "dr-redis", "authSecretName": "dr-redis-auth"}
        });
    })?;
    d.wait_linked(
        "production to replicate DR",
        &d.pods(PROD),
        &leader_ip,
        Duration::from_secs(60),
    )?;
    d.time(
        "recovery: apply -> production replicating DR",
        recovered.elapsed(),
    );
    let all = d.all_pods().len();
    d.check_keyspaces_converge(&format!("production converged: all {all} keyspaces equal"))?;
    let expected = format!("Cluster is replicating from dr-redis ({leader_ip}:6379)");
    let r = d.wait_condition(PROD, "ReplicaMode", "True", None, &expected);
    d.check(&format!("prod-redis status: \"{expected}\""), r)?;
    let prod_full = d.stat("dr-redis-0", "sync_full")?;
    d.say(&format!("    production resynchronised from DR with {prod_full} full sync(s): its pings during the cut moved its offset past DR's"));
    Ok(())
}

/// 6. Fail back: promote production, then return DR to replica mode (promote: false)
///
/// The spec says promotion is one-way, yet its DR drill demotes with promote: false. We implement
/// the drill: DR returns to replicating its source, with a Warning Event saying local writes since
/// promotion are discarded.
fn fail_back(d: &mut Drill) -> Result<(), String> {
    d.step(
        "6. Fail back: promote production, then return DR to replica mode (promote: false)",
        "The spec says promotion is one-way, yet its DR drill demotes with promote: false. We implement\n\
         the drill: DR returns to replicating its source, with a Warning Event saying local writes since\n\
         promotion are discarded.",
    );
    d.sim.patch(
        NS,
        PROD,
        &json!({"spec": {"replicaMode": {"promote": true}}}),
    )?;
    d.wait_writable(
        "prod-redis-0 to accept writes again",
        "prod-redis-0",
        ["drill:failback", "yes"],
        Duration::from_secs(30),
    )?;
    let demoted = Instant::now();
    d.sim.patch(
        NS,
        DR,
        &json!({"spec": {"replicaMode": {"promote": false}}}),
    )?;
    d.wait_linked(
        "DR to replicate production again",
        &d.pods(DR),
        PROD_LEADER_VIP,
        Duration::from_secs(60),
    )?;
    d.time(
        "demotion: patch -> DR replicating production",
        demoted.elapsed(),
    );
    let warned = d.events(DR, EventReason::Demoting).into_iter().next();
    let r = match &warned {
        Some((t, note)) if t == "Warning" && note.contains("discarded") => Ok(()),
        other => Err(format!("{other:?}")),
    };
    d.check(
        "Warning event Demoting says local writes since promotion are discarded",
        r,
    )?;
    let all = d.all_pods().len();
    d.check_keyspaces_converge(&format!(
        "after fail-back all {all} keyspaces are equal again"
    ))?;
    let expected =
        format!("Cluster is replicating from prod-redis-us-east ({PROD_LEADER_VIP}:6379)");
    let r = d.wait_condition(DR, "ReplicaMode", "True", Some("Enabled"), &expected);
    d.check("DR status back to ReplicaMode=True/Enabled", r)
}

/// Across the whole story: never two writable primaries in one cluster, and nothing crashed.
fn never_two_primaries(d: &mut Drill, checker: SplitBrainChecker) -> Result<(), String> {
    let (samples, violations) = checker.finish();
    let r = if violations.is_empty() {
        Ok(())
    } else {
        Err(violations.join("; "))
    };
    d.check(&format!("no split brain: never two writable primaries in one cluster ({samples} samples of every node)"), r)?;
    let r = d.all_alive();
    d.check("every redis-server and instance manager still running", r)
}

/// With `--narrate`: DR's Events, as `kubectl describe rediscluster dr-redis` would list them.
fn describe_events(d: &Drill) {
    if d.o.narrate {
        println!("\n    kubectl describe rediscluster dr-redis (Events, simulated):");
        for (cluster, t, reason, note) in d
            .sim
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.0 == DR && e.2 != "TopologyPublished")
        {
            println!("      {t:<8} {reason:<20} {cluster}: {note}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_step_is_documented_by_its_banner() {
        let steps = crate::harness::narration::assert_steps_documented(include_str!("mod.rs"))
            + crate::harness::narration::assert_steps_documented(include_str!("failover.rs"));
        assert_eq!(
            steps, 9,
            "the drill's banners: Setup, 1, 2, 2b, 3, 4, 4b, 5, 6"
        );
    }
}
