//! The Kubernetes controllers the drill plays besides the API server (see `sim`), in one
//! background thread:
//!
//! - the StatefulSet controller for `<name>-sentinel`: as many real `redis-sentinel` processes as
//!   the operator's StatefulSet asks for (0 while the cluster is in replica mode), each started the
//!   way the Sentinel pods' init script starts them: monitoring the primary the running Sentinels
//!   agree on, else the operator's `status.currentPrimary`, else pod 0;
//! - the `-leader` Service of production: a virtual IP (the LoadBalancer address the DR cluster
//!   replicates from) that follows the pod labelled `redis.io/role=primary`, as kube-proxy
//!   follows a Service's endpoints. It is moved with `CONFIG SET bind`.
//!
//! Only these are simulated; the Sentinels, Redis and the instance managers are real.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_cluster_api::labels as l;
use redis_operator::config::{sentinel_auth_conf, sentinel_conf_with_monitor};

use redis_test_support::process::Proc;
use redis_test_support::redis::spawn_on;
use redis_test_support::resp::{Conn, Reply};

use super::net::{MAX_SENTINELS, NS_A, NS_B, PROD_LEADER_VIP, pod_ip, sentinel_ip};
use super::sim::Sim;
use super::{Drill, NS, PROD};

/// One simulated cluster's Sentinels and (optionally) leader VIP.
#[derive(Clone)]
pub struct Managed {
    pub namespace: String,
    pub cluster: String,
    pub region: char,
    pub password: String,
    /// Move this address to the pod labelled primary.
    pub leader_vip: Option<String>,
}

pub struct Controllers {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    /// Where the leader VIP currently is (pod name), for the drill's checks.
    pub vip_on: Arc<Mutex<Option<String>>>,
    /// Sentinel processes by pod name; killed when the controllers stop.
    pub sentinels: Arc<Mutex<BTreeMap<String, Proc>>>,
}

/// The Sentinels of a region's cluster, `ip:port` (no DNS here).
pub fn sentinel_addrs(region: char) -> Vec<String> {
    (0..MAX_SENTINELS)
        .map(|i| format!("{}:{}", sentinel_ip(region, i), l::SENTINEL_PORT))
        .collect()
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

impl Controllers {
    /// Production's: its Sentinel StatefulSet in region A, and its `-leader` Service as the
    /// virtual IP the DR cluster replicates from.
    pub fn for_production(d: &Drill) -> Controllers {
        Controllers::start(
            d.sim.clone(),
            vec![Managed {
                namespace: NS.into(),
                cluster: PROD.into(),
                region: 'a',
                password: d.passwords[PROD].clone(),
                leader_vip: Some(PROD_LEADER_VIP.into()),
            }],
            d.o.dir.join("sentinels"),
        )
    }

    pub fn start(sim: Arc<Sim>, managed: Vec<Managed>, dir: PathBuf) -> Controllers {
        let stop = Arc::new(AtomicBool::new(false));
        let vip_on = Arc::new(Mutex::new(None));
        let sentinels: Arc<Mutex<BTreeMap<String, Proc>>> = Arc::new(Mutex::new(BTreeMap::new()));
        let (s, v, procs) = (stop.clone(), vip_on.clone(), sentinels.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for m in &managed {
                    if let Err(e) = sync_sentinels(&sim, m, &dir, &procs) {
                        eprintln!("sentinel controller {}: {e}", m.cluster);
                    }
                    if let Some(vip) = &m.leader_vip {
                        follow_leader(&sim, m, vip, &v);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Controllers {
            stop,
            handle: Some(handle),
            vip_on,
            sentinels,
        }
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.sentinels.lock().unwrap().clear();
    }
}

fn sync_sentinels(
    sim: &Sim,
    m: &Managed,
    dir: &std::path::Path,
    procs: &Mutex<BTreeMap<String, Proc>>,
) -> Result<(), String> {
    let set = format!(
        "StatefulSet/{}/{}",
        m.namespace,
        l::sentinel_service(&m.cluster)
    );
    let replicas = {
        let state = sim.platform.state.lock().unwrap();
        match state.objects.get(&set) {
            Some(obj) => obj["spec"]["replicas"].as_u64().unwrap_or(0) as u32,
            None => return Ok(()),
        }
    };
    let mut procs = procs.lock().unwrap();
    // Scale down: highest ordinals first, as a StatefulSet does.
    let names: Vec<String> = procs
        .keys()
        .filter(|n| n.starts_with(&format!("{}-sentinel-", m.cluster)))
        .cloned()
        .collect();
    for name in names {
        let ordinal: u32 = name.rsplit('-').next().unwrap().parse().unwrap_or(0);
        if ordinal >= replicas {
            procs.remove(&name);
        }
    }
    let rc = sim.get(&m.namespace, &m.cluster);
    let master = l::sentinel_master_name(&m.cluster);
    for i in 0..replicas {
        let name = l::sentinel_pod_name(&m.cluster, i);
        if procs.get_mut(&name).is_some_and(|p| p.alive()) {
            continue;
        }
        // The init script's choice: the running Sentinels' primary, else the operator's
        // recorded primary, else pod 0.
        let peers: Vec<String> = (0..replicas)
            .filter(|j| *j != i)
            .map(|j| format!("{}:{}", sentinel_ip(m.region, j), l::SENTINEL_PORT))
            .collect();
        let monitor = peers
            .iter()
            .find_map(|a| sentinel_master(a, &m.password, &master))
            .or_else(|| {
                let pod = rc.status.as_ref()?.current_primary.clone()?;
                let ordinal = l::ordinal_of(&m.cluster, &pod)?;
                Some(pod_ip(m.region, ordinal))
            })
            .unwrap_or_else(|| pod_ip(m.region, 0));
        let ip = sentinel_ip(m.region, i);
        let pod_dir = dir.join(&name);
        std::fs::create_dir_all(&pod_dir).map_err(|e| e.to_string())?;
        // What the Sentinel pod's init script writes, with IPs instead of DNS names.
        let conf = format!(
            "{}bind {ip}\nsentinel announce-ip {ip}\ndir {}\n{}",
            sentinel_conf_with_monitor(&rc, &monitor, 6379),
            pod_dir.display(),
            sentinel_auth_conf(&rc, &m.password)
        );
        let path = pod_dir.join("sentinel.conf");
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        let ns = if m.region == 'a' { NS_A } else { NS_B };
        let log = pod_dir.join("sentinel.log");
        let p = spawn_on("redis-sentinel", &name, Some(ns), &path, &log)?;
        procs.insert(name, p);
    }
    Ok(())
}

/// Move `vip` to the pod labelled primary: off the old one first (two listeners on one address
/// cannot coexist), then onto the new one.
fn follow_leader(sim: &Sim, m: &Managed, vip: &str, on: &Mutex<Option<String>>) {
    let labelled = {
        let state = sim.platform.state.lock().unwrap();
        state
            .pods
            .values()
            .filter(|p| p.labels.get(l::CLUSTER) == Some(&m.cluster))
            .find(|p| p.labels.get(l::ROLE).map(String::as_str) == Some(l::ROLE_PRIMARY))
            .map(|p| p.name.clone())
    };
    let Some(target) = labelled else { return };
    let mut current = on.lock().unwrap();
    if current.as_deref() == Some(target.as_str()) {
        // Re-assert: a restarted pod comes back without the VIP in its bind list.
        if let Some(ordinal) = l::ordinal_of(&m.cluster, &target) {
            let ip = pod_ip(m.region, ordinal);
            if let Some(mut c) = conn(&format!("{ip}:6379"), &m.password)
                && let Ok(r) = c.cmd(&["CONFIG", "GET", "bind"])
                && !r.text().contains(vip)
            {
                let _ = c.cmd(&["CONFIG", "SET", "bind", &format!("{ip} {vip}")]);
            }
        }
        return;
    }
    if let Some(old) = current.as_ref()
        && let Some(ordinal) = l::ordinal_of(&m.cluster, old)
    {
        let ip = pod_ip(m.region, ordinal);
        if let Some(mut c) = conn(&format!("{ip}:6379"), &m.password) {
            let _ = c.cmd(&["CONFIG", "SET", "bind", &ip]);
        }
    }
    let Some(ordinal) = l::ordinal_of(&m.cluster, &target) else {
        return;
    };
    let ip = pod_ip(m.region, ordinal);
    if let Some(mut c) = conn(&format!("{ip}:6379"), &m.password)
        && c.cmd(&["CONFIG", "SET", "bind", &format!("{ip} {vip}")])
            .is_ok_and(|r| !r.is_error())
    {
        *current = Some(target);
    }
}
