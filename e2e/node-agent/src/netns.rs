//! Pod networking as the cluster contract (cluster-layout.md) has it, the agent being the
//! CNI plugin: a network namespace per pod (`kcp-<8 hex of the UID>`), a veth whose pod end
//! is `eth0` with the pod's /32 and whose other end (`kcv<8 hex>`) sits in the region's
//! namespace with proxy ARP and a /32 route (Calico-style routed pods), and the pod's
//! `resolv.conf`/`hosts` in `/etc/netns/<ns>/`, which `ip netns exec` bind-mounts.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::core::v1::Pod;

/// The pod's network namespace name.
pub fn pod_netns(uid: &str) -> String {
    format!("kcp-{}", uid_hex8(uid))
}

/// The region-side veth name.
pub fn pod_veth(uid: &str) -> String {
    format!("kcv{}", uid_hex8(uid))
}

fn uid_hex8(uid: &str) -> String {
    uid.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .collect::<String>()
        .to_lowercase()
}

/// DNS settings of the node (`--cluster-dns`, `--cluster-domain`).
#[derive(Clone, Debug)]
pub struct Dns {
    pub server: String,
    pub domain: String,
}

/// The pod's resolv.conf, or None when the host's is used (`dnsPolicy: Default`).
pub fn resolv_conf(pod: &Pod, dns: &Dns) -> Option<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.as_ref()?;
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let (mut servers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        match policy {
            "Default" => return None,
            "None" => (vec![], vec![], vec![]),
            _ => (
                vec![dns.server.clone()],
                vec![
                    format!("{ns}.svc.{}", dns.domain),
                    format!("svc.{}", dns.domain),
                    dns.domain.clone(),
                ],
                vec!["ndots:5".into()],
            ),
        };
    if let Some(cfg) = &spec.dns_config {
        servers.extend(cfg.nameservers.iter().flatten().cloned());
        searches.extend(cfg.searches.iter().flatten().cloned());
        for o in cfg.options.iter().flatten() {
            let opt = match &o.value {
                Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            let key = opt.split(':').next().unwrap_or_default().to_string();
            options.retain(|x| x.split(':').next() != Some(key.as_str()));
            options.push(opt);
        }
    }
    let mut out = String::new();
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    Some(out)
}

/// The pod's hostname and, for pods with a `subdomain`, its domain (`GeneratePodHostNameAndDomain`).
pub fn hostname_and_domain(pod: &Pod, cluster_domain: &str) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    let mut hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    hostname.truncate(63);
    let hostname = hostname.trim_end_matches(['-', '.']).to_string();
    let domain = spec
        .and_then(|s| s.subdomain.clone())
        .filter(|s| !s.is_empty())
        .map(|sub| {
            format!(
                "{sub}.{}.svc.{cluster_domain}",
                pod.metadata.namespace.as_deref().unwrap_or("default")
            )
        });
    (hostname, domain)
}

/// The UTS hostname (the FQDN with `setHostnameAsFQDN`).
pub fn uts_hostname(pod: &Pod, cluster_domain: &str) -> String {
    let (h, d) = hostname_and_domain(pod, cluster_domain);
    match d {
        Some(d) if pod.spec.as_ref().and_then(|s| s.set_hostname_as_fqdn) == Some(true) => {
            format!("{h}.{d}")
        }
        _ => h,
    }
}

/// The kubelet's managed hosts file.
pub fn hosts_file(pod: &Pod, ip: Ipv4Addr, cluster_domain: &str) -> String {
    let (hostname, domain) = hostname_and_domain(pod, cluster_domain);
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    match domain {
        Some(d) => out.push_str(&format!("{ip}\t{hostname}.{d}\t{hostname}\n")),
        None => out.push_str(&format!("{ip}\t{hostname}\n")),
    }
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            out.push_str(&format!(
                "{}\t{}\n",
                a.ip,
                a.hostnames.unwrap_or_default().join("\t")
            ));
        }
    }
    out
}

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn netns_exists(name: &str) -> bool {
    PathBuf::from("/run/netns").join(name).exists()
}

pub fn etc_netns(name: &str) -> PathBuf {
    PathBuf::from("/etc/netns").join(name)
}

/// Create the pod's namespace and veth, and write its resolv.conf and hosts.
pub fn setup(
    ip_tool: &str,
    uid: &str,
    region_netns: &str,
    ip: Ipv4Addr,
    resolv: Option<&str>,
    hosts: &str,
) -> Result<(), String> {
    let ns = pod_netns(uid);
    let veth = pod_veth(uid);
    let ip_s = format!("{ip}/32");
    let dir = etc_netns(&ns);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if let Some(r) = resolv {
        fs::write(dir.join("resolv.conf"), r).map_err(|e| e.to_string())?;
    }
    fs::write(dir.join("hosts"), hosts).map_err(|e| e.to_string())?;
    run(&[ip_tool, "netns", "add", &ns])?;
    run(&[ip_tool, "-n", &ns, "link", "set", "lo", "up"])?;
    run(&[
        ip_tool,
        "link",
        "add",
        "name",
        &veth,
        "netns",
        region_netns,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &ns,
    ])?;
    run(&[ip_tool, "-n", &ns, "addr", "add", &ip_s, "dev", "eth0"])?;
    run(&[ip_tool, "-n", &ns, "link", "set", "eth0", "up"])?;
    run(&[
        ip_tool,
        "-n",
        &ns,
        "route",
        "add",
        "169.254.1.1",
        "dev",
        "eth0",
        "scope",
        "link",
    ])?;
    run(&[
        ip_tool,
        "-n",
        &ns,
        "route",
        "add",
        "default",
        "via",
        "169.254.1.1",
        "dev",
        "eth0",
    ])?;
    run(&[
        ip_tool,
        "netns",
        "exec",
        region_netns,
        "sysctl",
        "-qw",
        &format!("net.ipv4.conf.{veth}.proxy_arp=1"),
    ])?;
    run(&[ip_tool, "-n", region_netns, "link", "set", &veth, "up"])?;
    run(&[
        ip_tool,
        "-n",
        region_netns,
        "route",
        "replace",
        &ip_s,
        "dev",
        &veth,
    ])?;
    // Proxy ARP answers only for addresses the region can route elsewhere, and a region has
    // no default route: the pod's gateway gets a permanent neighbour entry instead (the
    // region end's MAC), as Calico's CNI plugin does.
    let link = run(&[
        ip_tool,
        "-n",
        region_netns,
        "-o",
        "link",
        "show",
        "dev",
        &veth,
    ])?;
    let mac = link_mac(&link).ok_or_else(|| format!("no MAC address for {veth}: {link}"))?;
    run(&[
        ip_tool,
        "-n",
        &ns,
        "neigh",
        "replace",
        "169.254.1.1",
        "lladdr",
        &mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ])?;
    Ok(())
}

/// The MAC address in an `ip -o link show` line.
pub fn link_mac(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == "link/ether")?;
    words.next().map(String::from)
}

/// Remove the pod's namespace (killing what still runs in it: only pods being torn down
/// get here), its veth (gone with the namespace, and the region's route with it) and
/// `/etc/netns/<ns>`. Never fails: what is gone is fine.
pub fn teardown(ip_tool: &str, uid: &str) {
    let ns = pod_netns(uid);
    if netns_exists(&ns) {
        if let Ok(pids) = run(&[ip_tool, "netns", "pids", &ns]) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = run(&[ip_tool, "netns", "del", &ns]);
    }
    let _ = fs::remove_dir_all(etc_netns(&ns));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(extra: serde_json::Value) -> Pod {
        let mut base = json!({
            "metadata": {"name": "dr-redis-0", "namespace": "dr", "uid": "7f3a9c1e-0000-4000-8000-000000000000"},
            "spec": {"containers": [{"name": "c"}]}
        });
        for (k, v) in extra.as_object().unwrap() {
            base["spec"][k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn dns() -> Dns {
        Dns {
            server: "10.96.0.10".into(),
            domain: "cluster.local".into(),
        }
    }

    #[test]
    fn names_fit_the_contract() {
        let uid = "7F3A9C1E-0000-4000-8000-000000000000";
        assert_eq!(pod_netns(uid), "kcp-7f3a9c1e");
        assert_eq!(pod_veth(uid), "kcv7f3a9c1e");
        assert!(pod_veth(uid).len() <= 15);
    }

    #[test]
    fn mac_from_ip_link() {
        let line = "5: kcvd58fc96f@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP \\    link/ether 9a:6f:ef:ca:58:7f brd ff:ff:ff:ff:ff:ff link-netns kcp-d58fc96f";
        assert_eq!(link_mac(line).as_deref(), Some("9a:6f:ef:ca:58:7f"));
        assert_eq!(link_mac("1: lo: <LOOPBACK>"), None);
    }

    #[test]
    fn resolv_conf_cluster_first() {
        assert_eq!(
            resolv_conf(&pod(json!({})), &dns()).unwrap(),
            "nameserver 10.96.0.10\nsearch dr.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
        assert_eq!(
            resolv_conf(&pod(json!({"dnsPolicy": "Default"})), &dns()),
            None
        );
        let custom = pod(
            json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]}}),
        );
        assert_eq!(
            resolv_conf(&custom, &dns()).unwrap(),
            "nameserver 1.1.1.1\noptions ndots:2\n"
        );
        let merged = pod(
            json!({"dnsConfig": {"options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]}}),
        );
        assert!(
            resolv_conf(&merged, &dns())
                .unwrap()
                .ends_with("options ndots:1 edns0\n")
        );
    }

    #[test]
    fn hosts_for_statefulset_pods() {
        let p = pod(json!({"hostname": "dr-redis-0", "subdomain": "dr-redis-headless"}));
        let h = hosts_file(&p, Ipv4Addr::new(10, 79, 1, 2), "cluster.local");
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with(
            "10.79.1.2\tdr-redis-0.dr-redis-headless.dr.svc.cluster.local\tdr-redis-0\n"
        ));
        assert_eq!(uts_hostname(&p, "cluster.local"), "dr-redis-0");
        let plain = hosts_file(
            &pod(json!({})),
            Ipv4Addr::new(10, 79, 1, 3),
            "cluster.local",
        );
        assert!(plain.ends_with("10.79.1.3\tdr-redis-0\n"));
        let fqdn = pod(json!({"subdomain": "h", "setHostnameAsFQDN": true}));
        assert_eq!(
            uts_hostname(&fqdn, "cluster.local"),
            "dr-redis-0.h.dr.svc.cluster.local"
        );
        let aliased = pod(json!({"hostAliases": [{"ip": "10.0.0.9", "hostnames": ["a", "b"]}]}));
        assert!(
            hosts_file(&aliased, Ipv4Addr::new(10, 79, 1, 3), "cluster.local")
                .ends_with("10.0.0.9\ta\tb\n")
        );
    }
}
