//! Network namespaces: commands inside them, veth pairs between them, and the faults a WAN link
//! has (a silent cut, a rate limit). Needs root and iproute2 (`process::require_root`).

use crate::process::{require_root, run, unique};

/// Run `args` inside network namespace `ns`.
pub fn in_ns(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    run(&full)
}

/// Take interface `dev` in `ns` down (`up: false`) or up. Down is a silent cut: packets vanish
/// and nobody gets a reset.
pub fn set_link(ns: &str, dev: &str, up: bool) -> Result<(), String> {
    let state = if up { "up" } else { "down" };
    in_ns(ns, &["ip", "link", "set", dev, state]).map(|_| ())
}

/// Shape what leaves `dev` in `ns` with a token bucket (`tc tbf`): `rate` (e.g. `8mbit`), a
/// `burst` (e.g. `32kb`) and the most queueing delay a packet may wait (`latency`, e.g. `200ms`).
pub fn rate_limit(
    ns: &str,
    dev: &str,
    rate: &str,
    burst: &str,
    latency: &str,
) -> Result<(), String> {
    in_ns(
        ns,
        &[
            "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", burst,
            "latency", latency,
        ],
    )
    .map(|_| ())
}

/// Remove [`rate_limit`]'s shaping.
pub fn unlimit(ns: &str, dev: &str) -> Result<(), String> {
    in_ns(ns, &["tc", "qdisc", "del", "dev", dev, "root"]).map(|_| ())
}

/// Two network namespaces joined by a veth pair: `a` has `10.251.<subnet>.1/30`, `b` has `.2`.
/// Both are deleted when dropped (and with them the pair).
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub veth_a: String,
    pub veth_b: String,
    pub ip_a: String,
    pub ip_b: String,
}

impl NetnsPair {
    pub fn new(subnet: u8) -> NetnsPair {
        require_root();
        let id = unique("");
        let p = NetnsPair {
            a: format!("imt-a-{id}"),
            b: format!("imt-b-{id}"),
            // Interface names are limited to 15 characters.
            veth_a: format!("va{}", &id[id.len().saturating_sub(10)..]),
            veth_b: format!("vb{}", &id[id.len().saturating_sub(10)..]),
            ip_a: format!("10.251.{subnet}.1"),
            ip_b: format!("10.251.{subnet}.2"),
        };
        let ip = |args: &[&str]| {
            let mut full = vec!["ip"];
            full.extend_from_slice(args);
            run(&full).unwrap_or_else(|e| panic!("{e}"));
        };
        ip(&["netns", "add", &p.a]);
        ip(&["netns", "add", &p.b]);
        ip(&[
            "link", "add", &p.veth_a, "type", "veth", "peer", "name", &p.veth_b,
        ]);
        ip(&["link", "set", &p.veth_a, "netns", &p.a]);
        ip(&["link", "set", &p.veth_b, "netns", &p.b]);
        for (ns, dev, addr) in [(&p.a, &p.veth_a, &p.ip_a), (&p.b, &p.veth_b, &p.ip_b)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    /// Take the link down on a's side: packets vanish, nobody gets a reset.
    pub fn cut(&self) {
        set_link(&self.a, &self.veth_a, false).unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn heal(&self) {
        set_link(&self.a, &self.veth_a, true).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Shape a -> b traffic with a token bucket.
    pub fn limit_a_to_b(&self, rate: &str, burst: &str, latency: &str) {
        rate_limit(&self.a, &self.veth_a, rate, burst, latency).unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn unlimit(&self) {
        let _ = unlimit(&self.a, &self.veth_a);
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it the pair.
        let _ = run(&["ip", "netns", "delete", &self.a]);
        let _ = run(&["ip", "netns", "delete", &self.b]);
    }
}
