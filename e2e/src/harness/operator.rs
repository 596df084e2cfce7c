//! The operator as the API server sees it: who leads, its metrics through the pod proxy, and
//! its requests in the audit log (issue 16's quiet-state check and `--bench-scale`).

use kcluster::cluster::{self, Cluster};

use super::OPERATOR_NS;

/// The operator pod holding the leader Lease.
pub fn operator_leader(c: &Cluster) -> Option<String> {
    let holder = c
        .kubectl(&[
            "-n",
            OPERATOR_NS,
            "get",
            "lease",
            "redis-operator-leader",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .ok()?;
    let holder = holder.trim().to_string();
    (!holder.is_empty()).then_some(holder)
}

/// `(reconciles, seconds spent reconciling)` of the leading operator, from its metrics
/// (`redis_operator_reconciliations_total`, `redis_operator_reconcile_duration_seconds_sum`),
/// read through the API server's pod proxy.
pub fn reconcile_metrics(c: &Cluster) -> Result<(f64, f64), String> {
    let pod = operator_leader(c).ok_or("no operator holds the Lease")?;
    let text = c.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/{OPERATOR_NS}/pods/{pod}:8080/proxy/metrics"),
    ])?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Ok((
        value("redis_operator_reconciliations_total")
            .ok_or("no redis_operator_reconciliations_total in the operator's metrics")?,
        value("redis_operator_reconcile_duration_seconds_sum").unwrap_or(0.0),
    ))
}

/// Whether a request of [`operator_requests`] changes something, leader election aside (the
/// Lease renewals are the operator's heartbeat, one per retry period whatever the clusters do).
pub fn is_write(request: &str) -> bool {
    !(request.starts_with("get ")
        || request.starts_with("list ")
        || request.starts_with("watch ")
        || request.ends_with("coordination.k8s.io/leases"))
}

/// The operator's requests in the API server's audit log received within [from, to), as
/// `verb group/resource[/subresource]`.
pub fn operator_requests(
    c: &Cluster,
    from: k8s_openapi::jiff::Timestamp,
    to: k8s_openapi::jiff::Timestamp,
) -> Result<Vec<String>, String> {
    let path = cluster::audit_log(&c.dir);
    let log = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let operator = format!("system:serviceaccount:{OPERATOR_NS}:redis-operator");
    let mut out = Vec::new();
    for line in log.lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if e["user"]["username"] != operator.as_str() {
            continue;
        }
        let Some(at) = e["requestReceivedTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        else {
            continue;
        };
        if at < from || at >= to {
            continue;
        }
        let r = &e["objectRef"];
        let mut resource = r["resource"].as_str().unwrap_or_default().to_string();
        if let Some(sub) = r["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        out.push(format!(
            "{} {}/{resource}",
            e["verb"].as_str().unwrap_or_default(),
            r["apiGroup"].as_str().unwrap_or_default()
        ));
    }
    Ok(out)
}
