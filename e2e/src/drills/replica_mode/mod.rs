//! The spec's story, end to end: a DR cluster replicates production across regions, the link is
//! slowed, then cut; the DR cluster is promoted and takes writes; production comes back and
//! replicates from DR; finally the roles are swapped back with the spec's `promote: false`.
//! Every step is asserted and timed.
//!
//! [`story`] is the list of steps; each step is a function whose doc comment is the banner it
//! prints (`make demo` adds the explanation). The two failovers (production's Sentinels, DR's
//! standalone failover) are in [`failover`].

mod failover;
mod plugin;

use std::time::{Duration, Instant};

use redis_topology::EventReason;
use serde_json::json;

use crate::harness::checks::SplitBrainChecker;
use crate::harness::prom::Prometheus;
use crate::harness::{
    DR, DR_FAILOVER_AFTER_S, Drill, NS, Options, PROD, Report, SENTINEL_DOWN_AFTER_MS, run_story,
    wait,
};

/// The DR cluster's replication lag as Prometheus sees it (the largest of its pods').
const DR_LAG: &str = "max(redis_replication_lag_bytes{cluster=\"dr-redis\"})";

/// What the DR sample's `source.host` names: production's `-leader` Service.
const PROD_LEADER: &str = "prod-redis-leader.production.svc.cluster.local";
/// What production's `source.host` names when it replicates DR (the spec's "Recover Primary
/// Region"): DR's `-leader` Service.
const DR_LEADER: &str = "dr-redis-leader.production.svc.cluster.local";

/// Run the whole drill.
pub fn run(o: &Options) -> Report {
    run_story(o, "drill aborted", story)
}

/// The story: the spec's clusters created through the API, then the steps in order. A failed
/// step ends it.
fn story(d: &mut Drill) -> Result<(), String> {
    setup(d)?;
    let prom = start_prometheus(d)?;
    dr_replicates_production(d)?;
    let checker = SplitBrainChecker::start(d);
    lag_under_a_rate_limited_link(d, &prom)?;
    the_dashboard_shows_every_pod(d, &prom)?;
    failover::production_loses_its_primary(d)?;
    region_a_is_lost(d, &prom)?;
    promote_dr(d)?;
    let dr_primary = failover::dr_loses_its_primary(d)?;
    production_replicates_dr(d, &dr_primary)?;
    fail_back(d)?;
    planned_switchover(d)?;
    never_two_primaries(d, checker)?;
    roles_match_the_calls(d)?;
    describe_events(d)?;
    plugin::kubectl_plugin(d)
}

/// Setup: a real Kubernetes in three regions, the operator installed with Helm, the spec's samples applied
///
/// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy and CoreDNS are the real
/// ones (built from their Go modules); only the kubelet is simulated (redis-node-agent: every container
/// a real process in its pod's network namespace). Regions are network namespaces; A and B are joined
/// by the inter-region link. The chart installs two operator replicas (leader election) in region C.
/// The spec's prod-redis and dr-redis samples are applied with kubectl exactly as written (a placement
/// policy puts production in A and DR in B), then patched for a faster drill: Sentinel down-after 2 s,
/// minSyncReplicas 1 and DR as its (unused) source for production, 5 instances and a 3 s failover
/// threshold for DR (like the spec's redis-west).
pub(crate) fn setup(d: &mut Drill) -> Result<(), String> {
    d.step(
        "Setup: a real Kubernetes in three regions, the operator installed with Helm, the spec's samples applied",
        "etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy and CoreDNS are the real\n\
         ones (built from their Go modules); only the kubelet is simulated (redis-node-agent: every container\n\
         a real process in its pod's network namespace). Regions are network namespaces; A and B are joined\n\
         by the inter-region link. The chart installs two operator replicas (leader election) in region C.\n\
         The spec's prod-redis and dr-redis samples are applied with kubectl exactly as written (a placement\n\
         policy puts production in A and DR in B), then patched for a faster drill: Sentinel down-after 2 s,\n\
         minSyncReplicas 1 and DR as its (unused) source for production, 5 instances and a 3 s failover\n\
         threshold for DR (like the spec's redis-west).",
    );
    d.say(&format!(
        "    KUBECONFIG={} (kubectl 1.37 in {})",
        d.cluster.kubeconfig.display(),
        d.cluster.bin_dir.display()
    ));
    d.create_secrets()?;
    d.apply_sample("prod-redis.yaml")?;
    d.patch(
        PROD,
        &json!({"spec": {
            "sentinel": {"downAfterMilliseconds": SENTINEL_DOWN_AFTER_MS},
            // An isolated primary stops taking writes (min-replicas-to-write 1, max-lag 10 s).
            "minSyncReplicas": 1,
            // DR named as production's source, unused (enabled: false) until a switchover
            // demotes it: docs/switchover.md's preparation, done before the pods hold data so
            // that the Secret it mounts rolls nothing later.
            "replicaMode": {"enabled": false, "source": {
                "host": DR_LEADER, "port": 6379, "clusterName": "dr-redis",
                "authSecretName": "dr-redis-auth"}},
        }}),
    )?;
    d.apply_sample("dr-redis.yaml")?;
    d.patch(
        DR,
        &json!({"spec": {
            "instances": 5,
            "failover": {"primaryUnavailableSeconds": DR_FAILOVER_AFTER_S},
        }}),
    )?;
    let took = d.wait_pods_running(PROD, Duration::from_secs(120))?;
    d.time("apply -> production's pods running", took);
    d.wait_pods_running(DR, Duration::from_secs(120))?;
    let placed = [PROD, DR].iter().all(|c| {
        d.pods(c).iter().all(|p| {
            d.kube
                .pod(NS, p)
                .and_then(|p| p.spec?.node_name)
                .is_some_and(|n| n.starts_with(&crate::harness::region_of(c).label()))
        })
    });
    d.check(
        "the samples' pods run in their regions (production in A, DR in B) as real processes under the node agents",
        if placed { Ok(()) } else { Err("misplaced pods".into()) },
    )?;
    rbac_is_enforced(d)
}

/// The service accounts the chart and the operator create, asked by the apiserver's real RBAC
/// authorizer (requests sent as them, by impersonation): what they need is allowed, and requests
/// outside their roles are refused.
fn rbac_is_enforced(d: &mut Drill) -> Result<(), String> {
    let operator = "system:serviceaccount:redis-operator:redis-operator".to_string();
    let instance_manager = format!(
        "system:serviceaccount:{NS}:{}",
        redis_cluster_api::names::instance_manager_account(DR)
    );
    let asks: [(&str, &str, &[&str], bool); 11] = [
        // The instance manager lists and watches its own pod (a metadata.name field selector,
        // as its watch does) and nothing else, not even a pod by name.
        (
            "instance manager",
            &instance_manager,
            &["get", "pod", "-n", NS, "dr-redis-1"],
            false,
        ),
        (
            "instance manager",
            &instance_manager,
            &[
                "get",
                "pods",
                "-n",
                NS,
                "--field-selector",
                "metadata.name=dr-redis-1",
            ],
            true,
        ),
        (
            "instance manager",
            &instance_manager,
            &["get", "pods", "-n", NS],
            false,
        ),
        (
            "instance manager",
            &instance_manager,
            &["get", "pod", "-n", NS, "prod-redis-0"],
            false,
        ),
        (
            "instance manager",
            &instance_manager,
            &["get", "secrets", "-n", NS],
            false,
        ),
        (
            "instance manager",
            &instance_manager,
            &["annotate", "pod", "-n", NS, "dr-redis-1", "x=y"],
            false,
        ),
        ("operator", &operator, &["get", "redisclusters", "-A"], true),
        // Secrets are read one by name, never listed; pods are never deleted by it.
        ("operator", &operator, &["get", "secrets", "-A"], false),
        (
            "operator",
            &operator,
            &["delete", "pod", "-n", NS, "dr-redis-1", "--dry-run=server"],
            false,
        ),
        (
            "operator",
            &operator,
            &["delete", "node", "region-a-1", "--dry-run=server"],
            false,
        ),
        (
            "operator",
            &operator,
            &[
                "create",
                "clusterrolebinding",
                "drill-escalation",
                "--clusterrole=cluster-admin",
                "--serviceaccount=redis-operator:redis-operator",
                "--dry-run=server",
            ],
            false,
        ),
    ];
    let mut wrong = Vec::new();
    for (who, user, args, allowed) in asks {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--as", user]);
        let got = d.kubectl(&full);
        let ok = match (&got, allowed) {
            (Ok(_), true) => true,
            (Err(e), false) => e.contains("Forbidden") || e.contains("forbidden"),
            _ => false,
        };
        if !ok {
            wrong.push(format!(
                "{who} `kubectl {}`: expected {}, got {got:?}",
                args.join(" "),
                if allowed { "allowed" } else { "Forbidden" }
            ));
        }
    }
    d.check(
        "RBAC is real: the operator and the instance managers are refused outside their roles (the instance manager: other pods, listing pods, Secrets, a pod's annotations; the operator: listing Secrets, deleting pods, Nodes, granting itself cluster-admin) and allowed within (the instance manager: listing its own pod by field selector)",
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        },
    )
}

/// A real Prometheus, finding the instance managers through the API server as the chart's
/// PodMonitor would.
fn start_prometheus(d: &mut Drill) -> Result<Prometheus, String> {
    let prom_dir = d.o.dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir).map_err(|e| e.to_string())?;
    let prom = Prometheus::start(
        &prom_dir,
        &d.cluster,
        NS,
        &d.o.repo
            .join("config/prometheus/redis-replication-rules.yaml"),
    )?;
    d.say(&format!(
        "    Prometheus: http://{} (try: redis_replication_lag_bytes, redis_master_link_up)",
        prom.addr
    ));
    d.say(&format!(
        "    logs: {}/logs (control plane), kubectl logs <pod> -c redis|instance-manager",
        d.cluster.dir.display()
    ));
    Ok(prom)
}

/// 1. Production is primary; DR replicates it from every pod
///
/// prod-redis-0 becomes primary (pod 0 is the designated leader); DR pods replicate it across regions.
pub(crate) fn dr_replicates_production(d: &mut Drill) -> Result<(), String> {
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
    // Production asks for a synchronous replica (minSyncReplicas): right after setup a write
    // is refused with NOREPLICAS until a replica has finished its first sync and acknowledged
    // (seen in two clean runs). The seed is idempotent (SETs): written again until the primary
    // takes all of it.
    wait(
        "production's primary to take the seed writes",
        Duration::from_secs(30),
        || match d.write_keys("prod-redis-0", "seed", 5000, 100) {
            Ok(()) => Some(Ok(())),
            Err(e) if e.contains("NOREPLICAS") => None,
            Err(e) => Some(Err(e)),
        },
    )?
    .0?;
    let replicas: Vec<String> = d.all_pods().into_iter().skip(1).collect();
    let (_, took) = wait(
        "every DR pod linked to production and caught up",
        Duration::from_secs(60),
        || d.caught_up("prod-redis-0", &replicas),
    )?;
    d.time("DR caught up after seeding 5000 keys", took);
    let r = d.digests_equal(&d.all_pods());
    d.check(
        "every DR pod's keyspace equals production's (every key and value)",
        r,
    )?;
    let expected = format!("Cluster is replicating from prod-redis-us-east ({PROD_LEADER}:6379)");
    let r = d.wait_condition(DR, "ReplicaMode", "True", Some("Enabled"), &expected);
    d.check(
        &format!("status: ReplicaMode=True/Enabled \"{expected}\""),
        r,
    )?;
    let r = match d.labelled_primary(DR).as_deref() {
        Some("dr-redis-0") => Ok(()),
        other => Err(format!("labelled primary: {other:?}")),
    };
    d.check("dr-redis-0 is labelled redis.io/role=primary while it is a replica (stable -leader endpoint)", r)?;
    // The spec's own command ("Verify Replication"), through the API server and the kubelet's
    // exec: the password from the Secret with kubectl, then redis-cli -a in the pod.
    let encoded = d.kubectl(&[
        "-n",
        NS,
        "get",
        "secret",
        "dr-redis-auth",
        "-o",
        "jsonpath={.data.password}",
    ])?;
    let password = decode_base64(&encoded)?;
    let out = d.kubectl(&[
        "-n",
        NS,
        "exec",
        "dr-redis-0",
        "--",
        "redis-cli",
        "-a",
        &password,
        "INFO",
        "replication",
    ])?;
    let r = if out.contains("role:slave")
        && out.contains(&format!("master_host:{PROD_LEADER}"))
        && out.contains("master_link_status:up")
    {
        Ok(())
    } else {
        Err(out.clone())
    };
    d.check(
        &format!("kubectl exec dr-redis-0 -- redis-cli INFO replication: role:slave, master_host:{PROD_LEADER}, master_link_status:up"),
        r,
    )
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
    d.rate_limit(Some("8mbit"))?;
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
    d.rate_limit(None)
}

/// dr-redis-0's lag between production's offset and its own, read directly from both.
fn independent_lag(d: &Drill) -> Option<i64> {
    let primary = d.labelled_primary(PROD)?;
    let up: i64 = d.offset(&primary)?.parse().ok()?;
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
    // A reading can fail transiently: retry it rather than count a failed reading as 0.
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

/// The shipped Grafana dashboard's panels, evaluated by the drill's Prometheus over what the
/// instance managers export: every query of a panel built on their metrics returns series,
/// and the per-pod ones return one for every data pod of both clusters. (The operator's
/// `redis_operator_promotions_total` is not scraped here.)
fn the_dashboard_shows_every_pod(d: &mut Drill, prom: &Prometheus) -> Result<(), String> {
    let path =
        d.o.repo
            .join("charts/redis-operator/dashboards/redis-replication.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dash: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    // Every data pod Prometheus scrapes (both clusters), at least the six of the samples.
    let pods = prom.scalar("count(redis_up)")?.unwrap_or(0.0);
    if pods < 6.0 {
        return d.check(
            "the shipped Grafana dashboard's queries return data",
            Err(format!(
                "Prometheus scrapes {pods} instance managers, want 6"
            )),
        );
    }
    let replicas = prom
        .scalar("count(redis_instance_info{role=\"slave\"})")?
        .unwrap_or(0.0);
    let mut checked = 0;
    let mut missing = Vec::new();
    for panel in dash["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            if expr.contains("redis_operator_") {
                continue;
            }
            let q = expr
                .replace("$namespace", ".*")
                .replace("$cluster", ".*")
                .replace("$__rate_interval", "30s");
            let per_pod = q.contains("by (namespace, cluster, pod)");
            // `redis_master_link_up` exists on replicas only.
            let want = match (per_pod, q.contains("redis_master_link_up")) {
                (false, _) => 1.0,
                (true, false) => pods,
                (true, true) => replicas,
            };
            let got = prom.scalar(&format!("count({q})"))?.unwrap_or(0.0);
            checked += 1;
            if got < want {
                missing.push(format!("{title}: {expr} -> {got} series, want {want}"));
            }
        }
    }
    let r = if missing.is_empty() && checked >= 20 {
        Ok(())
    } else {
        Err(format!("{checked} queries; {}", missing.join("; ")))
    };
    d.check(
        &format!("the shipped Grafana dashboard's {checked} queries on the instance managers' metrics return data (every data pod for the per-pod ones)"),
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
    d.set_inter_region_link(false)?;
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
    data_at_risk_is_shown(d, cut)?;
    let restarts = d.unexpected_restarts();
    d.check(
        "nothing crashed (no container restarted but those the drill broke)",
        if restarts.is_empty() {
            Ok(())
        } else {
            Err(restarts.join(", "))
        },
    )
}

/// Issue 14: before promoting, the status and the metrics say what a promotion now would
/// lose: dr-redis-0's lag when it last read the source (at most a few seconds before the cut),
/// and how long ago that was.
fn data_at_risk_is_shown(d: &mut Drill, cut: Instant) -> Result<(), String> {
    let cut_at = k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::try_from(cut.elapsed()).map_err(|e| e.to_string())?;
    let (risk, _) = wait("status.dataAtRisk", Duration::from_secs(10), || {
        d.data_at_risk(DR)
    })?;
    let seen: Option<k8s_openapi::jiff::Timestamp> = risk
        .source_last_seen
        .as_deref()
        .and_then(|t| t.parse().ok());
    let before_cut = seen.map(|t| cut_at.duration_since(t).as_secs_f64());
    d.check(
        &format!(
            "status.dataAtRisk before promoting: \"{}\" (source last seen {:.1} s before the cut)",
            risk.message,
            before_cut.unwrap_or(f64::NAN)
        ),
        if risk.pod == "dr-redis-0"
            && risk.lag_bytes.is_some()
            && before_cut.is_some_and(|s| (-1.5..5.0).contains(&s))
            && risk.message.contains("a promotion now loses")
        {
            Ok(())
        } else {
            Err(format!("{risk:?}, cut at {cut_at}"))
        },
    )?;
    // How long ago: the instance manager's metric, which ages while the status stays put.
    let ago = redis_test_support::http::get(&crate::harness::im_addr("dr-redis-0"), "/metrics")
        .ok()
        .and_then(|(_, body)| {
            body.lines()
                .find(|l| l.starts_with("redis_replication_upstream_last_seen_seconds{"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        });
    d.check(
        &format!(
            "redis_replication_upstream_last_seen_seconds on dr-redis-0: {ago:?} s, {:.1} s after the cut",
            cut.elapsed().as_secs_f64()
        ),
        match ago {
            Some(a) if a > 0.0 && a <= cut.elapsed().as_secs_f64() + 5.0 => Ok(()),
            _ => Err(format!("{ago:?}")),
        },
    )
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
    let followers: Vec<String> = d.pods(DR).into_iter().skip(1).collect();
    d.wait_linked(
        "the other DR pods to follow the leader",
        &followers,
        "dr-redis-0",
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
    let promoted = wait("the Promoted Event", Duration::from_secs(10), || {
        d.event(DR, EventReason::Promoted)
    })
    .map(|(e, _)| e.1);
    d.check(
        &format!("the Promoted Event records the data at risk: {promoted:?}"),
        match &promoted {
            Ok(note) if note.contains("; data at risk when it was promoted: dr-redis-0 ") => Ok(()),
            _ => Err(format!("{promoted:?}")),
        },
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
/// prod-redis gets replicaMode.enabled: true with source = dr-redis's -leader Service. Production's
/// data is older than DR's history remembers (DR was promoted, then failed over): its pods refuse
/// to throw their data away on their own, say so in SourceLinkUp with the command to accept DR's
/// history, and the drill runs that command. What production's primary wrote during the split is
/// salvaged first (a Salvaged Event, a snapshot on its volume).
fn production_replicates_dr(d: &mut Drill, dr_primary: &str) -> Result<(), String> {
    d.step(
        "5. DR takes writes; region A comes back and replicates from DR (the spec's \"Recover Primary Region\")",
        "prod-redis gets replicaMode.enabled: true with source = dr-redis's -leader Service. Production's\n\
         data is older than DR's history remembers (DR was promoted, then failed over): its pods refuse\n\
         to throw their data away on their own, say so in SourceLinkUp with the command to accept DR's\n\
         history, and the drill runs that command. What production's primary wrote during the split is\n\
         salvaged first (a Salvaged Event, a snapshot on its volume).",
    );
    d.write_keys(dr_primary, "dr-writes", 1000, 100)?;
    // Both sides writable (issue 14): production's primary, cut off, still takes writes that DR
    // never gets. They are salvaged before production's resync replaces them (below).
    let prod_primary = d
        .current_primary(PROD)
        .ok_or("prod-redis has no currentPrimary")?;
    let salvaged_before = d.salvage_of(PROD, &prod_primary);
    const SPLIT_WRITES: usize = 300;
    d.write_keys(&prod_primary, "split-a", SPLIT_WRITES, 64)?;
    d.set_inter_region_link(true)?;
    let recovered = Instant::now();
    let recover = d.sample("prod-redis.yaml")?
        + &format!(
            "  replicaMode:\n    enabled: true\n    source:\n      host: {DR_LEADER}\n      port: 6379\n      clusterName: dr-redis\n      authSecretName: dr-redis-auth\n"
        );
    d.apply_yaml(&recover)?;
    let (blocked, _) = wait(
        "production to report DR's unrelated history",
        Duration::from_secs(60),
        || {
            d.condition(PROD, "SourceLinkUp")
                .filter(|c| c.0 == "False" && c.1 == "UnrelatedHistory")
        },
    )?;
    // The message lists each pod's state, "; "-separated; the command ends at its pod's entry.
    let command = blocked
        .2
        .split("To replace its data with the upstream's: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .map(str::to_string);
    d.check(
        &format!(
            "production keeps its data and says why: SourceLinkUp=False/UnrelatedHistory \"{}\"",
            blocked.2
        ),
        match &command {
            Some(c) if c.starts_with("kubectl annotate rediscluster") => Ok(()),
            _ => Err("no command to accept the history".into()),
        },
    )?;
    // The user's deliberate action, exactly as the condition spells it.
    let command = command.unwrap_or_default();
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    d.kubectl(&args)?;
    let prod_pods = d.pods(PROD);
    d.wait_linked(
        "production to replicate DR",
        &prod_pods,
        DR_LEADER,
        Duration::from_secs(60),
    )?;
    d.time(
        "recovery: apply -> history accepted -> production replicating DR",
        recovered.elapsed(),
    );
    let all = d.all_pods().len();
    d.check_keyspaces_converge(&format!("production converged: all {all} keyspaces equal"))?;
    let expected = format!("Cluster is replicating from dr-redis ({DR_LEADER}:6379)");
    let r = d.wait_condition(PROD, "ReplicaMode", "True", None, &expected);
    d.check(&format!("prod-redis status: \"{expected}\""), r)?;
    split_writes_salvaged(d, &prod_primary, salvaged_before.as_ref(), SPLIT_WRITES)
}

/// Issue 14 item 3 (docs/salvage.md): the writes production's primary took during the split were
/// saved before its resync replaced them (a snapshot here: the user accepted DR's unrelated
/// history), reported by a `Salvaged` Event and the pod's status, in a private file on its
/// volume that loads into a redis-server with every one of them.
fn split_writes_salvaged(
    d: &mut Drill,
    pod: &str,
    before: Option<&redis_cluster_api::report::Salvage>,
    writes: usize,
) -> Result<(), String> {
    let split: Vec<String> = (0..writes).map(|i| format!("split-a:{i}")).collect();
    let (event, salvage) = d.salvaged(PROD, pod, before, Duration::from_secs(20))?;
    d.check(
        &format!("Warning Salvaged: \"{}\"", event.1),
        if event.0 == "Warning" && event.1.starts_with(&format!("{pod} saved a snapshot")) {
            Ok(())
        } else {
            Err(format!("{event:?}"))
        },
    )?;
    let (_, mode) = d.salvage_file(pod, &salvage)?;
    let (loaded, _copy) = d.load_snapshot(pod, &salvage)?;
    let mut missing = 0;
    for k in &split {
        if loaded.cli(&["EXISTS", k]).trim() != "1" {
            missing += 1;
        }
    }
    d.check(
        &format!(
            "status.instancesStatus[{pod}].salvage: {} of {} bytes, {} keys, file {} (mode {mode:o}); loaded into a redis-server it holds all {writes} writes production took during the split",
            salvage.kind, salvage.bytes, salvage.keys, salvage.file
        ),
        if salvage.kind == "snapshot"
            && missing == 0
            && mode == 0o600
            && salvage.keys >= writes as u64
        {
            Ok(())
        } else {
            Err(format!(
                "{missing} of {writes} missing; {salvage:?}, mode {mode:o}"
            ))
        },
    )?;
    // Then production resynchronised: DR's data replaced those writes on every pod.
    let still: Vec<String> = d
        .pods(PROD)
        .into_iter()
        .filter(|p| d.keys_present(p, &split[..1]).is_ok())
        .collect();
    d.check(
        "then production resynchronised from DR: no production pod holds the split's writes any more",
        if still.is_empty() {
            Ok(())
        } else {
            Err(format!("still on {still:?}"))
        },
    )
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
    // Production's promotion through the plugin: it shows the data at risk, patches the spec's
    // field and waits until the leader is primary and named.
    let (code, out, err) = d.kubectl_redis(&["promote", PROD, "-n", NS, "--yes"], None)?;
    let done = out
        .lines()
        .find(|l| l.contains("done:"))
        .unwrap_or_default()
        .trim()
        .to_string();
    d.check(
        &format!("kubectl redis promote prod-redis --yes: shows the data at risk, patches, waits ({done})"),
        if code == 0 && out.contains("Data at risk:") && !done.is_empty() {
            Ok(())
        } else {
            Err(format!("exit {code}: {out}{err}"))
        },
    )?;
    let (leader, _) = wait(
        "production's leader to accept writes again",
        Duration::from_secs(30),
        || {
            let leader = d.labelled_primary(PROD)?;
            d.accepts_write(&leader, ["drill:failback", "yes"])
                .then_some(leader)
        },
    )?;
    let demoted = Instant::now();
    d.kubectl(&[
        "-n",
        NS,
        "patch",
        "rediscluster",
        DR,
        "--type=merge",
        "-p",
        r#"{"spec":{"replicaMode":{"promote":false}}}"#,
    ])?;
    let dr_pods = d.pods(DR);
    d.wait_linked(
        "DR to replicate production again",
        &dr_pods,
        PROD_LEADER,
        Duration::from_secs(60),
    )?;
    d.time(
        "demotion: patch -> DR replicating production",
        demoted.elapsed(),
    );
    // The Event is written after the pods are told (it says what was done): the pods may link
    // before it is there.
    let warned = wait("the Demoting Event", Duration::from_secs(10), || {
        d.events(DR, EventReason::Demoting).into_iter().next()
    })
    .ok()
    .map(|(e, _)| e);
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
        "after fail-back all {all} keyspaces are equal again (production's leader: {leader})"
    ))?;
    let expected = format!("Cluster is replicating from prod-redis-us-east ({PROD_LEADER}:6379)");
    let r = d.wait_condition(DR, "ReplicaMode", "True", Some("Enabled"), &expected);
    d.check("DR status back to ReplicaMode=True/Enabled", r)
}

/// 7. Planned switchover to DR and back, under a writer: no acknowledged write lost, no full resync
///
/// Production is demoted (promote: false): its primary stops taking writes and publishes the
/// promotion token (status.demotionToken). DR is promoted with it (promotionToken): it waits until a
/// pod holds the token, then promotes that pod; production follows DR with partial resyncs. Then the
/// same operation the other way. A writer that records every acknowledged write runs throughout.
fn planned_switchover(d: &mut Drill) -> Result<(), String> {
    d.step(
        "7. Planned switchover to DR and back, under a writer: no acknowledged write lost, no full resync",
        "Production is demoted (promote: false): its primary stops taking writes and publishes the\n\
         promotion token (status.demotionToken). DR is promoted with it (promotionToken): it waits until a\n\
         pod holds the token, then promotes that pod; production follows DR with partial resyncs. Then the\n\
         same operation the other way. A writer that records every acknowledged write runs throughout.",
    );
    // Production is primary (step 6) and DR replicates it.
    let demote = json!({"spec": {"replicaMode": {"promote": false}}});
    switchover_undone(d)?;
    switchover(d, PROD, DR, DR_LEADER, &demote)?;
    switchover(d, DR, PROD, PROD_LEADER, &demote).map(|_| ())
}

/// A switchover undone before the promotion: production demoted (it publishes its token and
/// refuses writes), then made primary again (`promote: true`): it takes writes, and DR, which
/// was never patched, goes on replicating it with partial resyncs.
fn switchover_undone(d: &mut Drill) -> Result<(), String> {
    let pods: Vec<String> = d.pods(PROD).into_iter().chain(d.pods(DR)).collect();
    let full_before = d.full_syncs(&pods)?;
    let primary = d
        .labelled_primary(PROD)
        .ok_or("production has no primary")?;
    d.patch(PROD, &json!({"spec": {"replicaMode": {"promote": false}}}))?;
    let (token, _) = d.wait_demotion_token(PROD)?;
    let refused = !d.accepts_write(&primary, ["drill:undone", "refused"]);
    d.patch(PROD, &json!({"spec": {"replicaMode": {"promote": true}}}))?;
    // The pod that waits, demoted, gets the role back (it holds everything; the -leader
    // endpoint does not move).
    let took = d.wait_writable(
        &format!("{primary} to take writes again"),
        &primary,
        ["drill:undone", "accepted"],
        Duration::from_secs(30),
    )?;
    let dr_pods = d.pods(DR);
    d.wait_linked(
        "DR to follow production again",
        &dr_pods,
        PROD_LEADER,
        Duration::from_secs(30),
    )?;
    wait(
        "DR to hold production's write",
        Duration::from_secs(10),
        || {
            d.keys_present(&dr_pods[0], &["drill:undone".to_string()])
                .ok()
        },
    )?;
    let full_after = d.full_syncs(&pods)?;
    let dr_mode = d.condition(DR, "ReplicaMode");
    d.check(
        &format!(
            "undone before the promotion: {primary} refused writes while demoted (token {token}), takes them {:.2} s after promote: true; DR untouched ({:?}), following partially (sync_full {full_before} -> {full_after})",
            took.as_secs_f64(),
            dr_mode.as_ref().map(|c| &c.1)
        ),
        if refused
            && full_after == full_before
            && dr_mode.is_some_and(|c| c.1 == "Enabled")
        {
            Ok(())
        } else {
            Err(format!("refused while demoted: {refused}"))
        },
    )
}

/// One planned switchover: `from` (primary) is demoted by the `demote` patch, `to` (its
/// replica) promoted with the token; `from` then replicates `to_leader`. Checked as the drill
/// checks it; returns the longest write pause and the whole duration (demotion patch -> every
/// pod of `from` replicating `to`), for `--bench-switchover`.
pub(crate) fn switchover(
    d: &mut Drill,
    from: &str,
    to: &str,
    to_leader: &str,
    demote: &serde_json::Value,
) -> Result<(Duration, Duration), String> {
    let pods: Vec<String> = d.pods(from).into_iter().chain(d.pods(to)).collect();
    let full_before = d.full_syncs(&pods)?;
    let primary = d
        .labelled_primary(from)
        .ok_or_else(|| format!("{from} has no primary"))?;
    let writer =
        d.start_switchover_writer(&format!("drill:switchover:{from}"), from, &primary, to)?;

    let started = Instant::now();
    d.patch(from, demote)?;
    let (token, took) = d.wait_demotion_token(from)?;
    d.time(&format!("{from} demoted: patch -> demotionToken"), took);
    let demoted = d.condition(from, "Switchover");
    d.check(
        &format!("{from} demoted: Switchover=True/Demoted, status.demotionToken {token}"),
        match &demoted {
            Some((s, r, m)) if s == "True" && r == "Demoted" && m.contains(&token) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )?;
    let before_promotion = writer.log().acked.len();
    d.patch(
        to,
        &json!({"spec": {"replicaMode": {"promote": true, "promotionToken": token}}}),
    )?;
    let (new_primary, took) = wait(
        &format!("{to}'s promoted pod to take a write"),
        Duration::from_secs(60),
        || {
            writer
                .log()
                .acked
                .iter()
                .skip(before_promotion)
                .find(|(_, pod)| pod != &primary)
                .map(|(_, pod)| pod.clone())
        },
    )?;
    d.time(
        &format!("{to} promoted with the token: patch -> first write on {new_primary}"),
        took,
    );
    let from_pods = d.pods(from);
    d.wait_linked(
        &format!("{from} to replicate {to}"),
        &from_pods,
        to_leader,
        Duration::from_secs(60),
    )?;
    wait(
        &format!("{to}'s status to say it is promoted"),
        Duration::from_secs(30),
        || {
            d.condition(to, "ReplicaMode")
                .filter(|c| c.0 == "False" && c.1 == "Promoted")
        },
    )?;
    let total = started.elapsed();
    d.time(
        &format!(
            "switchover {from} -> {to}: demotion patch -> {from} replicating {to}, {to} Promoted"
        ),
        total,
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = writer.finish();
    let keys: Vec<String> = log.acked.iter().map(|(k, _)| k.clone()).collect();
    let on_from = log.acked.iter().filter(|(_, p)| p == &primary).count();
    wait(
        &format!("{from} to catch up with {new_primary}"),
        Duration::from_secs(30),
        || d.caught_up(&new_primary, &from_pods),
    )?;
    let r = d
        .keys_present(&new_primary, &keys)
        .and_then(|()| d.keys_present(&from_pods[0], &keys));
    d.check(
        &format!(
            "every acknowledged write is on {new_primary} and on {}: {} keys ({on_from} acknowledged by {primary} before the demotion, {} by {new_primary}); longest write pause {} ms",
            from_pods[0],
            keys.len(),
            keys.len() - on_from,
            log.longest_pause.as_millis()
        ),
        r,
    )?;
    d.time(
        &format!("switchover {from} -> {to}: longest write pause"),
        log.longest_pause,
    );
    let full_after = d.full_syncs(&pods)?;
    d.check(
        &format!(
            "no full resync on either side (sync_full summed over both clusters' pods: {full_before} before, {full_after} after)"
        ),
        if full_after == full_before {
            Ok(())
        } else {
            Err(format!("{} full resyncs", full_after - full_before))
        },
    )?;
    let reached = d.condition(to, "Switchover");
    d.check(
        &format!("{to}: Switchover=True/TokenReached"),
        match &reached {
            Some((s, r, _)) if s == "True" && r == "TokenReached" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )?;
    let events = d.events(from, EventReason::Demoted);
    d.check(
        &format!("{from}'s Demoted Event carries the token"),
        if events.iter().any(|(_, note)| note.contains(&token)) {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        },
    )?;
    Ok((log.longest_pause, total))
}

/// Across the whole story: never two writable primaries in one cluster, and no container
/// restarted but those the drill broke.
fn never_two_primaries(d: &mut Drill, checker: SplitBrainChecker) -> Result<(), String> {
    let (samples, violations) = checker.finish();
    let r = if violations.is_empty() {
        Ok(())
    } else {
        Err(violations.join("; "))
    };
    d.check(&format!("no split brain: never two writable primaries in one cluster ({samples} samples of every node)"), r)?;
    let restarts = d.unexpected_restarts();
    d.check(
        "no container restarted but those the drill broke",
        if restarts.is_empty() {
            Ok(())
        } else {
            Err(restarts.join(", "))
        },
    )
}

/// What the operator's ClusterRole grants and the API server's audit log shows was not used:
/// allowed only with a reason.
const UNUSED_WITH_A_REASON: [(&str, &str, &str, &str); 1] = [(
    "redis.io",
    "redisclusters/finalizers",
    "update",
    "blockOwnerDeletion, checked only where OwnerReferencesPermissionEnforcement is enabled",
)];

/// The roles against the calls, from the real API server's audit log of the whole story (every
/// request of a service account, `kcluster::cluster::audit_log`): every request of the operator
/// and of the instance managers was allowed; the operator's ClusterRole grants nothing the
/// operator did not use (`create` is used by server-side apply, which creates a missing object
/// through a PATCH the API server also authorizes as create; the exceptions above); the
/// instance managers read nothing but their own pod.
fn roles_match_the_calls(d: &mut Drill) -> Result<(), String> {
    use std::collections::BTreeSet;
    let path = kcluster::cluster::audit_log(&d.cluster.dir);
    let log = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let operator = "system:serviceaccount:redis-operator:redis-operator";
    let im_account = |user: &str| {
        user.strip_prefix(&format!("system:serviceaccount:{NS}:"))
            .is_some_and(|a| a.ends_with("-instance-manager"))
    };
    let (mut used, mut refused, mut im_calls, mut im_wrong) =
        (BTreeSet::new(), Vec::new(), 0, Vec::new());
    let mut operator_calls = 0;
    for line in log.lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let user = e["user"]["username"].as_str().unwrap_or_default();
        let verb = e["verb"].as_str().unwrap_or_default().to_string();
        let r = &e["objectRef"];
        let resource = match r["subresource"].as_str() {
            Some(sub) => format!("{}/{sub}", r["resource"].as_str().unwrap_or_default()),
            None => r["resource"].as_str().unwrap_or_default().to_string(),
        };
        let group = r["apiGroup"].as_str().unwrap_or_default().to_string();
        let forbidden = e["annotations"]["authorization.k8s.io/decision"] == "forbid";
        let what = format!("{verb} {group}/{resource} {}", e["requestURI"]);
        if user == operator {
            operator_calls += 1;
            if forbidden {
                refused.push(what.clone());
            }
            used.insert((group, resource, verb));
        } else if im_account(user) {
            im_calls += 1;
            let uri = e["requestURI"].as_str().unwrap_or_default();
            let own_pod = resource == "pods"
                && (r["name"].is_string() || uri.contains("fieldSelector=metadata.name%3D"));
            if forbidden || !own_pod {
                im_wrong.push(what);
            }
        }
    }
    let role: serde_json::Value = serde_json::from_str(&d.kubectl(&[
        "get",
        "clusterrole",
        "redis-operator",
        "-o",
        "json",
    ])?)
    .map_err(|e| e.to_string())?;
    let mut unused = Vec::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        let strings = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        };
        for g in strings("apiGroups") {
            for res in strings("resources") {
                for v in strings("verbs") {
                    let excused = v == "create"
                        || UNUSED_WITH_A_REASON
                            .iter()
                            .any(|(eg, er, ev, _)| *eg == g && *er == res && *ev == v);
                    if !excused && !used.contains(&(g.clone(), res.clone(), v.clone())) {
                        unused.push(format!("{v} {g}/{res}"));
                    }
                }
            }
        }
    }
    d.check(
        &format!(
            "the operator's {operator_calls} requests in the API server's audit log were all allowed, and its ClusterRole grants nothing it did not use (but {})",
            UNUSED_WITH_A_REASON
                .iter()
                .map(|(g, r, v, why)| format!("{v} {g}/{r}: {why}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        match (refused.is_empty(), unused.is_empty()) {
            (true, true) => Ok(()),
            _ => Err(format!("refused: {refused:?}; granted, never used: {unused:?}")),
        },
    )?;
    d.check(
        &format!(
            "the instance managers' {im_calls} requests were all allowed and read only their own pod"
        ),
        if im_calls > 0 && im_wrong.is_empty() {
            Ok(())
        } else {
            Err(format!("{im_calls} requests; outside their own pod or refused: {im_wrong:?}"))
        },
    )
}

/// `kubectl get redisclusters` shows the printer columns, `kubectl describe` the Events the story
/// produced (printed with `--narrate`).
fn describe_events(d: &mut Drill) -> Result<(), String> {
    let table = d.kubectl(&["-n", NS, "get", "redisclusters"])?;
    let header = table.lines().next().unwrap_or_default().to_string();
    let columns = [
        "NAME",
        "INSTANCES",
        "READY",
        "MODE",
        "PRIMARY",
        "REPLICATING FROM",
        "AGE",
    ];
    d.check(
        &format!(
            "kubectl get redisclusters shows the printer columns: {}",
            header.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
        if columns.iter().all(|c| header.contains(c)) {
            Ok(())
        } else {
            Err(table.clone())
        },
    )?;
    let described = d.kubectl(&["-n", NS, "describe", "rediscluster", DR])?;
    let events = described
        .split("Events:")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    d.say(&format!(
        "\n    kubectl get redisclusters:\n{}",
        indent(&table)
    ));
    d.say(&format!(
        "    kubectl describe rediscluster dr-redis (Events):{}",
        indent(&events)
    ));
    d.check(
        "kubectl describe rediscluster dr-redis lists the story's Events (Promoted, Failover, Demoting)",
        if ["Promoted", "Failover", "Demoting"].iter().all(|r| events.contains(r)) {
            Ok(())
        } else {
            Err(events)
        },
    )
}

/// What `base64 -d` does to a Secret's value.
fn decode_base64(text: &str) -> Result<String, String> {
    let out = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(text.trim().as_bytes())?;
            child.wait_with_output()
        })
        .map_err(|e| format!("base64 -d: {e}"))?;
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_step_is_documented_by_its_banner() {
        let steps = crate::harness::narration::assert_steps_documented(include_str!("mod.rs"))
            + crate::harness::narration::assert_steps_documented(include_str!("failover.rs"))
            + crate::harness::narration::assert_steps_documented(include_str!("plugin.rs"));
        assert_eq!(
            steps, 11,
            "the drill's banners: Setup, 1, 2, 2b, 3, 4, 4b, 5, 6, 7, 8"
        );
    }
}
