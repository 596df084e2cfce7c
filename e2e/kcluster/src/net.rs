//! The regions: network namespaces joined by veth pairs, and the host's links to each.
//!
//! ```text
//!   host netns: etcd, kube-apiserver (10.77.0.1:6443 on lo), controller-manager,
//!               scheduler, node agents (kubelet API on 127.0.0.1), the harness
//!     kc-ha 10.77.1.1/30 ---- kc-ua 10.77.1.2/30  region a (kc-ra): pods 10.78.0.0/16
//!     kc-hb 10.77.2.1/30 ---- kc-ub 10.77.2.2/30  region b (kc-rb): pods 10.79.0.0/16
//!     kc-hc 10.77.3.1/30 ---- kc-uc 10.77.3.2/30  region c (kc-rc): pods 10.80.0.0/16
//!   kc-ab 10.77.10.1/30 ==== kc-ba 10.77.10.2/30   a <-> b: the link the drill cuts and slows
//!   kc-ac 10.77.11.1/30 ---- kc-ca 10.77.11.2/30   a <-> c (never cut)
//!   kc-bc 10.77.12.1/30 ---- kc-cb 10.77.12.2/30   b <-> c (never cut)
//! ```
//!
//! Each region routes another region's pods only over their direct link, so cutting a <-> b
//! partitions exactly those two while both keep the control plane (through the host) and region
//! c (where the operator runs, like a third zone's witness). Pods get their own network
//! namespaces, attached to their region by the node agent (routed, Calico-style). Only addresses
//! assigned here are ever contacted.

use std::process::Command;

/// A region of the local cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Region(pub char);

pub const REGIONS: [Region; 3] = [Region('a'), Region('b'), Region('c')];

/// The kube-apiserver's advertise address (on a dummy interface in the host netns).
pub const APISERVER_IP: &str = "10.77.0.1";
pub const APISERVER_PORT: u16 = 6443;
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service's ClusterIP (first address of the Service CIDR).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
/// CoreDNS's `kube-dns` Service.
pub const DNS_SERVICE_IP: &str = "10.96.0.10";
pub const CLUSTER_DOMAIN: &str = "cluster.local";

impl Region {
    fn index(self) -> u8 {
        (self.0 as u8) - b'a'
    }

    /// The region's network namespace.
    pub fn netns(self) -> String {
        format!("kc-r{}", self.0)
    }

    /// `topology.kubernetes.io/region` (and zone) of its nodes.
    pub fn label(self) -> String {
        format!("region-{}", self.0)
    }

    /// The pod CIDR of the whole region.
    pub fn pod_cidr(self) -> String {
        format!("10.{}.0.0/16", 78 + self.index())
    }

    /// The podCIDR of node `n` (from 1) of the region.
    pub fn node_pod_cidr(self, n: u32) -> String {
        format!("10.{}.{n}.0/24", 78 + self.index())
    }

    /// The host's end of the host <-> region link, and the region's end.
    fn host_link(self) -> (String, String, String, String) {
        let i = self.index() + 1;
        (
            format!("kc-h{}", self.0),
            format!("10.77.{i}.1"),
            format!("kc-u{}", self.0),
            format!("10.77.{i}.2"),
        )
    }
}

/// The veth ends of the link between two regions: (name in `a`, address in `a`, name in `b`,
/// address in `b`), with `a < b`.
pub fn region_link(a: Region, b: Region) -> (String, String, String, String) {
    let (a, b) = if a < b { (a, b) } else { (b, a) };
    let net = 10 + a.index() + b.index() - 1;
    (
        format!("kc-{}{}", a.0, b.0),
        format!("10.77.{net}.1"),
        format!("kc-{}{}", b.0, a.0),
        format!("10.77.{net}.2"),
    )
}

/// Run a command, failing loudly with its output.
pub fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a command inside network namespace `ns`.
pub fn in_ns(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    sh(&full)
}

/// Create the host's API address, the three regions and their links. Idempotent only through
/// [`teardown`] first, which [`crate::cluster::up`] does.
pub fn create() -> Result<(), String> {
    if sh(&["id", "-u"])?.trim() != "0" {
        return Err("the local cluster creates network namespaces and must run as root".into());
    }
    // On the host's loopback (the machine's kernel has no dummy interfaces): reachable from the
    // regions through their links, never from outside.
    sh(&[
        "ip",
        "addr",
        "add",
        &format!("{APISERVER_IP}/32"),
        "dev",
        "lo",
    ])?;
    sh(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    for r in REGIONS {
        let ns = r.netns();
        sh(&["ip", "netns", "add", &ns])?;
        in_ns(&ns, &["ip", "link", "set", "lo", "up"])?;
        in_ns(&ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        let (host_if, host_ip, region_if, region_ip) = r.host_link();
        sh(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &region_if, "netns", &ns,
        ])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &host_if,
        ])?;
        sh(&["ip", "link", "set", &host_if, "up"])?;
        in_ns(
            &ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{region_ip}/30"),
                "dev",
                &region_if,
            ],
        )?;
        in_ns(&ns, &["ip", "link", "set", &region_if, "up"])?;
        sh(&["ip", "route", "add", &r.pod_cidr(), "via", &region_ip])?;
        in_ns(
            &ns,
            &[
                "ip",
                "route",
                "add",
                &format!("{APISERVER_IP}/32"),
                "via",
                &host_ip,
            ],
        )?;
    }
    for (i, a) in REGIONS.iter().enumerate() {
        for b in &REGIONS[i + 1..] {
            let (a_if, a_ip, b_if, b_ip) = region_link(*a, *b);
            in_ns(
                &a.netns(),
                &[
                    "ip",
                    "link",
                    "add",
                    &a_if,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &b_if,
                    "netns",
                    &b.netns(),
                ],
            )?;
            for (ns, ifname, ip) in [(a.netns(), &a_if, &a_ip), (b.netns(), &b_if, &b_ip)] {
                in_ns(
                    &ns,
                    &["ip", "addr", "add", &format!("{ip}/30"), "dev", ifname],
                )?;
                in_ns(&ns, &["ip", "link", "set", ifname, "up"])?;
            }
            in_ns(
                &a.netns(),
                &["ip", "route", "add", &b.pod_cidr(), "via", &b_ip],
            )?;
            in_ns(
                &b.netns(),
                &["ip", "route", "add", &a.pod_cidr(), "via", &a_ip],
            )?;
        }
    }
    Ok(())
}

/// Remove everything [`create`] made and every pod network namespace a node agent left
/// behind (with the processes still inside them). Never fails: what is already gone is fine.
pub fn teardown() {
    let namespaces = sh(&["ip", "netns", "list"]).unwrap_or_default();
    for line in namespaces.lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        if !(ns.starts_with("kc-r") || ns.starts_with("kcp-")) {
            continue;
        }
        // Processes still in a pod or region namespace (a pod whose node agent is gone).
        if let Ok(pids) = sh(&["ip", "netns", "pids", ns]) {
            for pid in pids.split_whitespace() {
                let _ = sh(&["kill", "-9", pid]);
            }
        }
        let _ = sh(&["ip", "netns", "del", ns]);
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
    }
    for link in ["kc-ha", "kc-hb", "kc-hc"] {
        let _ = sh(&["ip", "link", "del", link]);
    }
    let _ = sh(&[
        "ip",
        "addr",
        "del",
        &format!("{APISERVER_IP}/32"),
        "dev",
        "lo",
    ]);
}

/// Cut (`false`) or restore (`true`) the link between two regions, silently as a partition
/// would: the interfaces go down, nothing is told.
pub fn set_link(a: Region, b: Region, up: bool) -> Result<(), String> {
    let (a_if, _, b_if, _) = region_link(a, b);
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let state = if up { "up" } else { "down" };
    in_ns(&lo.netns(), &["ip", "link", "set", &a_if, state])?;
    in_ns(&hi.netns(), &["ip", "link", "set", &b_if, state])?;
    if up {
        // Routes over a link that went down are removed by the kernel: put them back. Right
        // after `ip link set up` the veth may not carry yet, and a route via its peer is then
        // refused ("Nexthop has invalid gateway"): retry until both routes are in place. The
        // errors used to be ignored, and a drill once lost the route from B to A for good (new
        // connections to region A timed out for the next 90 s).
        let (_, a_ip, _, b_ip) = region_link(lo, hi);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let there = in_ns(
                &lo.netns(),
                &["ip", "route", "replace", &hi.pod_cidr(), "via", &b_ip],
            );
            let back = in_ns(
                &hi.netns(),
                &["ip", "route", "replace", &lo.pod_cidr(), "via", &a_ip],
            );
            match (there, back) {
                (Ok(_), Ok(_)) => break,
                (there, back) if std::time::Instant::now() >= deadline => {
                    return Err(format!(
                        "routes between {lo:?} and {hi:?} not restored: {there:?} / {back:?}"
                    ));
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    }
    Ok(())
}

/// Limit the bandwidth between two regions (both directions) with `tc tbf`, or remove the
/// limit with `None`.
pub fn rate_limit(a: Region, b: Region, rate: Option<&str>) -> Result<(), String> {
    let (a_if, _, b_if, _) = region_link(a, b);
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    for (ns, ifname) in [(lo.netns(), a_if), (hi.netns(), b_if)] {
        let _ = in_ns(&ns, &["tc", "qdisc", "del", "dev", &ifname, "root"]);
        if let Some(rate) = rate {
            in_ns(
                &ns,
                &[
                    "tc", "qdisc", "add", "dev", &ifname, "root", "tbf", "rate", rate, "burst",
                    "32kbit", "latency", "400ms",
                ],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_do_not_collide() {
        assert_eq!(Region('a').pod_cidr(), "10.78.0.0/16");
        assert_eq!(Region('c').node_pod_cidr(2), "10.80.2.0/24");
        assert_eq!(Region('b').netns(), "kc-rb");
        let ab = region_link(Region('a'), Region('b'));
        let ac = region_link(Region('a'), Region('c'));
        let bc = region_link(Region('c'), Region('b'));
        assert_eq!(ab.0, "kc-ab");
        assert_eq!(ab.2, "kc-ba");
        assert_eq!(
            bc.0, "kc-bc",
            "ordered by region whatever the argument order"
        );
        let mut nets = vec![ab.1, ac.1, bc.1];
        nets.extend(REGIONS.iter().map(|r| r.host_link().1));
        let len = nets.len();
        nets.sort();
        nets.dedup();
        assert_eq!(nets.len(), len, "{nets:?}");
        // Interface names fit Linux's 15 characters.
        for r in REGIONS {
            let (h, _, u, _) = r.host_link();
            assert!(h.len() <= 15 && u.len() <= 15);
        }
    }
}
