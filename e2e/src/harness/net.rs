//! Two "regions" on one machine: network namespaces joined by a veth pair the drill can cut,
//! restore and rate-limit. The root namespace (where the drill, the simulated operator and
//! Prometheus run) has its own link to each region, so observation survives a cut between them.
//!
//! ```text
//!   root ns: drill, operator loop, Prometheus
//!     rd-ra0 10.77.201.1/30 ---- rd-ra1 10.77.201.2/30   region A (rdrill-a): pods 10.77.10.N on lo
//!     rd-rb0 10.77.202.1/30 ---- rd-rb1 10.77.202.2/30   region B (rdrill-b): pods 10.77.20.N on lo
//!   region A rd-ab0 10.77.203.1/30 ==== rd-ab1 10.77.203.2/30 region B   <- the inter-region link
//! ```
//! Only addresses assigned here are ever contacted. The root namespace's links stay clear of the
//! real cluster's (`e2e/kcluster`: 10.77.0.1, 10.77.1-3.0/30 on the host, pods in 10.78-80/16),
//! so the drill and that cluster can run on one machine at the same time: with the same host
//! subnet on two links, the kernel routes the drill's traffic into the cluster's region.

use redis_test_support::netns::{in_ns, rate_limit, set_link, unlimit};
use redis_test_support::process::run as sh;

pub const NS_A: &str = "rdrill-a";
pub const NS_B: &str = "rdrill-b";
/// The inter-region link's ends.
pub const LINK_A: &str = "rd-ab0";
pub const LINK_B: &str = "rd-ab1";

pub fn pod_ip(region: char, ordinal: u32) -> String {
    match region {
        'a' => format!("10.77.10.{}", ordinal + 1),
        _ => format!("10.77.20.{}", ordinal + 1),
    }
}

/// Address of Sentinel pod `ordinal` of the region's cluster.
pub fn sentinel_ip(region: char, ordinal: u32) -> String {
    match region {
        'a' => format!("10.77.10.{}", ordinal + 21),
        _ => format!("10.77.20.{}", ordinal + 21),
    }
}

/// Most Sentinel pods a region can hold.
pub const MAX_SENTINELS: u32 = 3;

/// The address of production's `-leader` Service (as a LoadBalancer IP would be): it follows
/// the pod labelled `redis.io/role=primary` (see `controllers`).
pub const PROD_LEADER_VIP: &str = "10.77.10.200";

/// The two regions; removed on drop (also after a failed step).
pub struct Regions {
    pub pods_per_region: u32,
}

/// The root namespace's prefixes the drill adds: its links to the regions and the routes to
/// the regions' pods.
const ROOT_PREFIXES: [&str; 4] = [
    "10.77.201.0/30",
    "10.77.202.0/30",
    "10.77.10.0/24",
    "10.77.20.0/24",
];

/// Root, iproute2, and none of the drill's prefixes held by anyone else in the root namespace
/// once what an earlier run left behind is gone: sharing a subnet or a route would send the
/// drill's traffic (or theirs) to the wrong namespace, silently.
fn preflight() -> Result<(), String> {
    if sh(&["id", "-u"])?.trim() != "0" {
        return Err("the drill creates network namespaces and must run as root (CI does)".into());
    }
    sh(&["ip", "-V"]).map_err(|e| format!("iproute2 is missing ({e}): run `make deps`"))?;
    cleanup();
    for prefix in ROOT_PREFIXES {
        let holders = sh(&["ip", "-o", "addr", "show", "to", prefix])?
            + &sh(&["ip", "route", "show", "root", prefix])?;
        if let Some(line) = holders.lines().next() {
            return Err(format!(
                "{prefix} is already in use in the root network namespace ({line}): the drill's addresses must be free"
            ));
        }
    }
    Ok(())
}

/// Assign `addr/32` to the loopback of namespace `ns` (a pod, Sentinel or Service address).
fn add_address(ns: &str, addr: &str) -> Result<(), String> {
    in_ns(
        ns,
        &["ip", "addr", "add", &format!("{addr}/32"), "dev", "lo"],
    )
    .map(|_| ())
}

/// The namespaces and the veths: root <-> each region, and the inter-region link.
fn create_links() -> Result<(), String> {
    sh(&["ip", "netns", "add", NS_A])?;
    sh(&["ip", "netns", "add", NS_B])?;
    sh(&[
        "ip", "link", "add", "rd-ra0", "type", "veth", "peer", "name", "rd-ra1", "netns", NS_A,
    ])?;
    sh(&[
        "ip", "link", "add", "rd-rb0", "type", "veth", "peer", "name", "rd-rb1", "netns", NS_B,
    ])?;
    in_ns(
        NS_A,
        &[
            "ip", "link", "add", LINK_A, "type", "veth", "peer", "name", LINK_B, "netns", NS_B,
        ],
    )?;
    sh(&["ip", "addr", "add", "10.77.201.1/30", "dev", "rd-ra0"])?;
    sh(&["ip", "addr", "add", "10.77.202.1/30", "dev", "rd-rb0"])?;
    sh(&["ip", "link", "set", "rd-ra0", "up"])?;
    sh(&["ip", "link", "set", "rd-rb0", "up"])?;
    for (ns, root_link, root_addr, ab_link, ab_addr) in [
        (NS_A, "rd-ra1", "10.77.201.2/30", LINK_A, "10.77.203.1/30"),
        (NS_B, "rd-rb1", "10.77.202.2/30", LINK_B, "10.77.203.2/30"),
    ] {
        in_ns(ns, &["ip", "link", "set", "lo", "up"])?;
        in_ns(ns, &["ip", "addr", "add", root_addr, "dev", root_link])?;
        in_ns(ns, &["ip", "link", "set", root_link, "up"])?;
        in_ns(ns, &["ip", "addr", "add", ab_addr, "dev", ab_link])?;
        in_ns(ns, &["ip", "link", "set", ab_link, "up"])?;
    }
    Ok(())
}

/// Each region's pods from the root namespace and from the other region.
fn add_routes() -> Result<(), String> {
    sh(&["ip", "route", "add", "10.77.10.0/24", "via", "10.77.201.2"])?;
    sh(&["ip", "route", "add", "10.77.20.0/24", "via", "10.77.202.2"])?;
    in_ns(
        NS_A,
        &["ip", "route", "add", "10.77.20.0/24", "via", "10.77.203.2"],
    )?;
    in_ns(
        NS_B,
        &["ip", "route", "add", "10.77.10.0/24", "via", "10.77.203.1"],
    )?;
    Ok(())
}

impl Regions {
    pub fn create(pods_per_region: u32) -> Result<Regions, String> {
        preflight()?;
        let r = Regions { pods_per_region };
        create_links()?;
        for i in 0..pods_per_region {
            add_address(NS_A, &pod_ip('a', i))?;
            add_address(NS_B, &pod_ip('b', i))?;
        }
        for i in 0..MAX_SENTINELS {
            add_address(NS_A, &sentinel_ip('a', i))?;
            add_address(NS_B, &sentinel_ip('b', i))?;
        }
        add_address(NS_A, PROD_LEADER_VIP)?;
        add_routes()?;
        Ok(r)
    }

    /// Cut the inter-region link silently: the veth goes down, no TCP reset is sent, and packets
    /// already in flight are simply lost.
    pub fn cut(&self) -> Result<(), String> {
        set_link(NS_B, LINK_B, false)
    }

    pub fn restore(&self) -> Result<(), String> {
        set_link(NS_B, LINK_B, true)?;
        // Routes through a link that went down are gone; put them back.
        let _ = in_ns(
            NS_B,
            &[
                "ip",
                "route",
                "replace",
                "10.77.10.0/24",
                "via",
                "10.77.203.1",
            ],
        );
        let _ = in_ns(
            NS_A,
            &[
                "ip",
                "route",
                "replace",
                "10.77.20.0/24",
                "via",
                "10.77.203.2",
            ],
        );
        Ok(())
    }

    /// Rate-limit region A -> region B (the replication stream) with a token bucket. The queue
    /// holds at most 200 ms of traffic, as a shaped WAN link would; a deeper queue delays every
    /// packet (the instance manager's probe too) by seconds.
    pub fn rate_limit(&self, rate: &str) -> Result<(), String> {
        rate_limit(NS_A, LINK_A, rate, "32kb", "200ms")
    }

    pub fn unlimit(&self) -> Result<(), String> {
        unlimit(NS_A, LINK_A)
    }
}

impl Drop for Regions {
    fn drop(&mut self) {
        cleanup();
    }
}

/// Remove everything the drill creates (also what a killed earlier run left behind).
pub fn cleanup() {
    let _ = sh(&["ip", "route", "del", "10.77.10.0/24"]);
    let _ = sh(&["ip", "route", "del", "10.77.20.0/24"]);
    let _ = sh(&["ip", "link", "del", "rd-ra0"]);
    let _ = sh(&["ip", "link", "del", "rd-rb0"]);
    let _ = sh(&["ip", "netns", "del", NS_A]);
    let _ = sh(&["ip", "netns", "del", NS_B]);
}
