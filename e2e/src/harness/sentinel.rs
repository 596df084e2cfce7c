//! Questions to Sentinels (real `redis-sentinel`s: the operator's, in production's pods, or the
//! external source's), and the stable names they know Redis by.

use std::collections::BTreeMap;
use std::time::Duration;

use redis_cluster_api::labels as l;
use redis_cluster_api::names;
use redis_test_support::resp::{Conn, Reply};

use super::{NS, try_ip};

/// The Sentinels of `cluster` that have an address now, `ip:port` (their pods, by IP: the
/// harness has no cluster DNS).
pub fn sentinel_addrs(cluster: &str, replicas: u32) -> Vec<String> {
    (0..replicas)
        .filter_map(|i| try_ip(&l::sentinel_pod_name(cluster, i)))
        .map(|ip| format!("{ip}:{}", l::SENTINEL_PORT))
        .collect()
}

/// The name a data pod is known by to its Sentinels (and to its peers):
/// `<pod>.<cluster>-headless.<namespace>.svc`.
pub fn known_as(cluster: &str, pod: &str) -> String {
    names::pod_fqdn(cluster, NS, pod)
}

/// An empty `password` means a server without `requirepass` (no AUTH).
fn conn(addr: &str, password: &str) -> Option<Conn> {
    let auth = (!password.is_empty()).then_some(password);
    Conn::connect(addr, auth, Duration::from_millis(300)).ok()
}

/// `SENTINEL get-master-addr-by-name` from one Sentinel.
pub fn sentinel_master(addr: &str, password: &str, master: &str) -> Option<String> {
    let r = conn(addr, password)?
        .cmd(&["SENTINEL", "get-master-addr-by-name", master])
        .ok()?;
    match r {
        Reply::Array(Some(items)) if !items.is_empty() => Some(items[0].text()),
        _ => None,
    }
}

/// `SENTINEL MASTER <name>` from one Sentinel, as field -> value.
pub fn sentinel_view(addr: &str, password: &str, master: &str) -> Option<BTreeMap<String, String>> {
    conn(addr, password)?
        .cmd(&["SENTINEL", "MASTER", master])
        .ok()?
        .fields()
}

/// `SENTINEL REPLICAS <name>` from one Sentinel: each listed replica as field -> value. Replicas
/// that set `replica-announced no` (the DR pods) are not listed.
pub fn sentinel_replicas(
    addr: &str,
    password: &str,
    master: &str,
) -> Option<Vec<BTreeMap<String, String>>> {
    let r = conn(addr, password)?
        .cmd(&["SENTINEL", "REPLICAS", master])
        .ok()?;
    match r {
        Reply::Array(Some(items)) => Some(items.iter().filter_map(Reply::fields).collect()),
        _ => None,
    }
}

/// Every Sentinel at `addrs` sees `primary` as a healthy master, lists exactly `replicas` as its
/// healthy replicas, and knows every other Sentinel: a failover from now on has somewhere to go.
/// (Sentinels learn replicas from the primary's INFO every 10 s: right after a start or a
/// failover they may not know them yet.)
pub fn sentinels_settled(
    addrs: &[String],
    password: &str,
    master: &str,
    primary: &str,
    replicas: &[String],
) -> bool {
    addrs.iter().all(|a| {
        let healthy_master = sentinel_view(a, password, master).is_some_and(|v| {
            v.get("ip").map(String::as_str) == Some(primary)
                && v.get("flags").map(String::as_str) == Some("master")
                && v.get("num-other-sentinels")
                    .and_then(|n| n.parse::<usize>().ok())
                    == Some(addrs.len() - 1)
        });
        let mut listed: Vec<String> = sentinel_replicas(a, password, master)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.get("flags").map(String::as_str) == Some("slave"))
            .filter_map(|r| r.get("ip").cloned())
            .collect();
        listed.sort();
        let mut want = replicas.to_vec();
        want.sort();
        healthy_master && listed == want
    })
}
