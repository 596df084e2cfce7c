//! `up` and `down`: the whole local cluster, in order:
//!
//! 1. the network ([`crate::net`]);
//! 2. certificates and kubeconfigs ([`crate::pki`]);
//! 3. etcd, kube-apiserver, kube-controller-manager, kube-scheduler;
//! 4. one kube-proxy per region;
//! 5. the add-ons (default StorageClass, CoreDNS, the region placement policy, the
//!    provisioner's RBAC);
//! 6. the node agents and the provisioner;
//! 7. wait until every node is Ready and DNS answers.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::daemon;
use crate::net::{
    self, APISERVER_IP, APISERVER_PORT, DNS_SERVICE_IP, REGIONS, Region, SERVICE_CIDR,
};
use crate::pki::{Identity, Pki, local_server};

/// Images the node agents run, as directories holding their binaries.
#[derive(Clone, Debug)]
pub struct ImageMapping {
    /// Image repository without tag (`ghcr.io/example/redis-operator`).
    pub repository: String,
    pub dir: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Where everything goes (absolute); emptied by `up`.
    pub dir: PathBuf,
    /// The control-plane binaries (`kube-apiserver`, ..., `etcd`, `kubectl`, `coredns`).
    pub bin_dir: PathBuf,
    /// The `redis-node-agent` binary; None: no nodes are started (for developing the agent).
    pub node_agent: Option<PathBuf>,
    pub images: Vec<ImageMapping>,
    /// Nodes per region.
    pub nodes: BTreeMap<Region, u32>,
    /// Which region the pods of an `app.kubernetes.io/instance` go to (the cluster admin's
    /// placement policy; the workloads' manifests stay as written).
    pub placement: Vec<(String, Region)>,
}

impl Options {
    /// The default layout: three nodes in regions a and b (production and DR), two in c (the
    /// operator, like a third zone's witness).
    pub fn new(dir: PathBuf, bin_dir: PathBuf, node_agent: Option<PathBuf>) -> Options {
        Options {
            dir,
            bin_dir,
            node_agent,
            images: vec![],
            nodes: BTreeMap::from([(Region('a'), 3), (Region('b'), 3), (Region('c'), 2)]),
            placement: vec![],
        }
    }
}

/// A running cluster, as far as a client needs to know.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    /// The admin's kubeconfig (`system:masters`): for the harness only.
    pub kubeconfig: PathBuf,
}

/// The API server's audit log (JSON lines): every request of a service account, metadata only.
pub fn audit_log(dir: &std::path::Path) -> PathBuf {
    dir.join("logs").join("audit.log")
}

/// A node of the cluster: its name, region and index (its kubelet port is 11250 + index).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub region: Region,
    pub number: u32,
    pub index: u32,
}

pub fn nodes(layout: &BTreeMap<Region, u32>) -> Vec<Node> {
    let mut out = Vec::new();
    for (region, count) in layout {
        for n in 1..=*count {
            out.push(Node {
                name: format!("{}-{n}", region.label()),
                region: *region,
                number: n,
                index: out.len() as u32,
            });
        }
    }
    out
}

pub const KUBELET_BASE_PORT: u16 = 11250;
const ETCD_CLIENT_PORT: u16 = 12379;
const ETCD_PEER_PORT: u16 = 12380;

/// How quickly the control plane notices a node that stopped reporting, and evicts its pods.
/// Kubernetes' defaults (50 s grace, 300 s tolerations) would make each fault step of the drill
/// take minutes; these are real flags, set shorter, and said in the docs.
pub const NODE_MONITOR_GRACE: &str = "20s";
pub const EVICTION_TOLERATION_SECONDS: &str = "10";

fn s(v: &str) -> String {
    v.to_string()
}

/// Where the directory of the cluster that is up is recorded: only one can run on a machine
/// (fixed network namespace names and ports).
const RUNNING: &str = "/run/kcluster/dir";

/// The directory of the cluster running on this machine, if any of its processes still runs.
pub fn running() -> Option<PathBuf> {
    let dir = PathBuf::from(fs::read_to_string(RUNNING).ok()?.trim());
    daemon::list(&dir)
        .iter()
        .any(|d| daemon::alive(d.pid))
        .then_some(dir)
}

pub fn up(o: &Options) -> Result<Cluster, String> {
    let started = start(o);
    if started.is_err() {
        // What started must not outlive the failure: a leftover etcd or apiserver holds the
        // ports the next `up` needs.
        down(&o.dir);
    }
    started
}

fn start(o: &Options) -> Result<Cluster, String> {
    match running() {
        Some(other) if other != o.dir => {
            return Err(format!(
                "a local cluster from {} is running: stop it first (kcluster down --dir {})",
                other.display(),
                other.display()
            ));
        }
        _ => {}
    }
    down(&o.dir);
    let _ = fs::remove_dir_all(&o.dir);
    fs::create_dir_all(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    let dir = &o.dir;
    let bin = |name: &str| o.bin_dir.join(name).display().to_string();
    for tool in ["kube-apiserver", "etcd", "kubectl", "coredns"] {
        if !o.bin_dir.join(tool).exists() {
            return Err(format!(
                "{} is missing in {}: run `make controlplane`",
                tool,
                o.bin_dir.display()
            ));
        }
    }
    net::create()?;
    fs::create_dir_all("/run/kcluster").map_err(|e| e.to_string())?;
    fs::write(RUNNING, o.dir.display().to_string()).map_err(|e| e.to_string())?;

    let pki = Pki::create(dir)?;
    let ca = pki.ca_cert().display().to_string();
    let serving = pki.apiserver()?;
    let (sa_key, sa_pub) = pki.service_account_key()?;
    let (sa_key, sa_pub) = (sa_key.display().to_string(), sa_pub.display().to_string());
    let kubelet_client = pki.client(
        "apiserver-kubelet-client",
        &Identity {
            user: "kube-apiserver-kubelet-client",
            groups: &["system:masters"],
        },
    )?;
    let local = local_server();
    let in_region = format!("https://{APISERVER_IP}:{APISERVER_PORT}");
    let admin = pki.kubeconfig(
        "admin",
        &Identity {
            user: "kubernetes-admin",
            groups: &["system:masters"],
        },
        &local,
    )?;
    let kcm = pki.kubeconfig(
        "controller-manager",
        &Identity {
            user: "system:kube-controller-manager",
            groups: &[],
        },
        &local,
    )?;
    let scheduler = pki.kubeconfig(
        "scheduler",
        &Identity {
            user: "system:kube-scheduler",
            groups: &[],
        },
        &local,
    )?;
    // kube-proxy runs inside each region's netns: it reaches the apiserver at its advertise
    // address, like a node does.
    let proxy = pki.kubeconfig(
        "kube-proxy",
        &Identity {
            user: "system:kube-proxy",
            groups: &[],
        },
        &in_region,
    )?;

    // Every request of a service account is audited (metadata only: no bodies, so no Secret
    // value): the drills compare what the operator and the instance managers really call with
    // the roles they are given.
    let audit_policy = dir.join("audit-policy.yaml");
    std::fs::write(
        &audit_policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  \
         - level: Metadata\n    userGroups: [\"system:serviceaccounts\"]\n  - level: None\n",
    )
    .map_err(|e| format!("{}: {e}", audit_policy.display()))?;

    let etcd_dir = dir.join("etcd").display().to_string();
    daemon::start(
        dir,
        "etcd",
        None,
        &[
            bin("etcd"),
            s("--name=kcluster"),
            format!("--data-dir={etcd_dir}"),
            format!("--listen-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}"),
            format!("--advertise-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}"),
            format!("--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}"),
            format!("--initial-cluster=kcluster=http://127.0.0.1:{ETCD_PEER_PORT}"),
            // Test data: speed over durability, as envtest does.
            s("--unsafe-no-fsync"),
            s("--log-level=warn"),
        ],
    )?;
    daemon::start(
        dir,
        "kube-apiserver",
        None,
        &[
            bin("kube-apiserver"),
            format!("--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}"),
            s("--bind-address=0.0.0.0"),
            format!("--secure-port={APISERVER_PORT}"),
            format!("--advertise-address={APISERVER_IP}"),
            format!("--tls-cert-file={}", serving.cert.display()),
            format!("--tls-private-key-file={}", serving.key.display()),
            format!("--client-ca-file={ca}"),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            s("--service-account-issuer=https://kubernetes.default.svc.cluster.local"),
            format!("--service-account-key-file={sa_pub}"),
            format!("--service-account-signing-key-file={sa_key}"),
            s("--authorization-mode=Node,RBAC"),
            s("--enable-admission-plugins=NodeRestriction"),
            format!(
                "--kubelet-client-certificate={}",
                kubelet_client.cert.display()
            ),
            format!("--kubelet-client-key={}", kubelet_client.key.display()),
            format!("--kubelet-certificate-authority={ca}"),
            s("--kubelet-preferred-address-types=InternalIP"),
            s("--allow-privileged=true"),
            format!("--default-not-ready-toleration-seconds={EVICTION_TOLERATION_SECONDS}"),
            format!("--default-unreachable-toleration-seconds={EVICTION_TOLERATION_SECONDS}"),
            s("--profiling=false"),
            format!("--audit-policy-file={}", audit_policy.display()),
            format!("--audit-log-path={}", audit_log(dir).display()),
            s("--audit-log-format=json"),
            s("--audit-log-maxsize=500"),
        ],
    )?;
    let cluster = Cluster {
        dir: dir.clone(),
        bin_dir: o.bin_dir.clone(),
        kubeconfig: admin.clone(),
    };
    wait_for("the apiserver to be ready", Duration::from_secs(90), || {
        cluster.kubectl(&["get", "--raw", "/readyz"]).ok()
    })?;
    daemon::start(
        dir,
        "kube-controller-manager",
        None,
        &[
            bin("kube-controller-manager"),
            format!("--kubeconfig={}", kcm.display()),
            format!("--authentication-kubeconfig={}", kcm.display()),
            format!("--authorization-kubeconfig={}", kcm.display()),
            s("--leader-elect=false"),
            s("--controllers=*"),
            // Every controller with its own service account, as in kubeadm clusters: the RBAC
            // they run with is the real bootstrap policy.
            s("--use-service-account-credentials=true"),
            format!("--service-account-private-key-file={sa_key}"),
            format!("--root-ca-file={ca}"),
            s("--bind-address=127.0.0.1"),
            format!("--node-monitor-grace-period={NODE_MONITOR_GRACE}"),
            s("--node-monitor-period=2s"),
            s("--profiling=false"),
        ],
    )?;
    daemon::start(
        dir,
        "kube-scheduler",
        None,
        &[
            bin("kube-scheduler"),
            format!("--kubeconfig={}", scheduler.display()),
            format!("--authentication-kubeconfig={}", scheduler.display()),
            format!("--authorization-kubeconfig={}", scheduler.display()),
            s("--leader-elect=false"),
            s("--bind-address=127.0.0.1"),
            s("--profiling=false"),
        ],
    )?;

    let all_nodes = nodes(&o.nodes);
    for region in REGIONS {
        let Some(first) = all_nodes.iter().find(|n| n.region == region) else {
            continue;
        };
        let config = dir.join(format!("kube-proxy-{}.yaml", region.0));
        fs::write(&config, kube_proxy_config(&proxy, &first.name)).map_err(|e| e.to_string())?;
        // Restarted when it exits, as its DaemonSet pod would be: kube-proxy exits when its
        // Node does not appear in time, and the nodes register after it starts.
        daemon::start(
            dir,
            &format!("kube-proxy-{}", region.0),
            Some(&region.netns()),
            &[
                s("sh"),
                s("-c"),
                s("while :; do \"$0\" \"$@\"; sleep 1; done"),
                bin("kube-proxy"),
                format!("--config={}", config.display()),
            ],
        )?;
    }

    apply_addons(&cluster, o)?;

    if let Some(agent) = &o.node_agent {
        let agent = agent.display().to_string();
        for node in &all_nodes {
            let kubeconfig = pki.kubeconfig(
                &format!("node-{}", node.name),
                &Identity {
                    user: &format!("system:node:{}", node.name),
                    groups: &["system:nodes"],
                },
                &local,
            )?;
            let serving = pki.kubelet_serving(&node.name)?;
            let mut args = vec![
                agent.clone(),
                s("node"),
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--node-name={}", node.name),
                format!("--region={}", node.region.0),
                format!("--region-netns={}", node.region.netns()),
                format!("--pod-cidr={}", node.region.node_pod_cidr(node.number)),
                format!("--kubelet-port={}", KUBELET_BASE_PORT + node.index as u16),
                format!("--tls-cert-file={}", serving.cert.display()),
                format!("--tls-key-file={}", serving.key.display()),
                format!("--client-ca-file={ca}"),
                format!(
                    "--state-dir={}",
                    dir.join("nodes").join(&node.name).display()
                ),
                format!("--cluster-dns={DNS_SERVICE_IP}"),
                s("--cluster-domain=cluster.local"),
            ];
            for image in &o.images {
                args.push(format!(
                    "--image-map={}={}",
                    image.repository,
                    image.dir.display()
                ));
            }
            args.push(format!(
                "--image-map=registry.k8s.io/coredns/coredns={}",
                o.bin_dir.display()
            ));
            daemon::start(dir, &format!("node-{}", node.name), None, &args)?;
        }
        let provisioner = pki.kubeconfig(
            "provisioner",
            &Identity {
                user: PROVISIONER_USER,
                groups: &[],
            },
            &local,
        )?;
        daemon::start(
            dir,
            "provisioner",
            None,
            &[
                agent,
                s("provisioner"),
                format!("--kubeconfig={}", provisioner.display()),
                format!("--state-dir={}", dir.join("volumes").display()),
            ],
        )?;
        let names: Vec<&str> = all_nodes.iter().map(|n| n.name.as_str()).collect();
        wait_for("every node to be Ready", Duration::from_secs(90), || {
            let out = cluster
                .kubectl(&[
                    "get",
                    "nodes",
                    "-o",
                    "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
                ])
                .ok()?;
            let ready: Vec<&str> = out
                .lines()
                .filter_map(|l| l.strip_suffix("=True"))
                .collect();
            names.iter().all(|n| ready.contains(n)).then_some(())
        })?;
        wait_for("CoreDNS to be available", Duration::from_secs(120), || {
            cluster
                .kubectl(&[
                    "-n",
                    "kube-system",
                    "wait",
                    "--for=condition=Available",
                    "deployment/coredns",
                    "--timeout=5s",
                ])
                .ok()
        })?;
    }
    write_env(&cluster)?;
    Ok(cluster)
}

/// The identity of the PVC provisioner (bound to its ClusterRole by the add-ons).
pub const PROVISIONER_USER: &str = "system:redis-e2e-provisioner";

fn kube_proxy_config(kubeconfig: &Path, node: &str) -> String {
    // nftables mode, inside the region's netns. conntrack sizes are left to the kernel (0): a
    // network namespace cannot set the global ones.
    format!(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n\
         kind: KubeProxyConfiguration\n\
         clientConnection:\n  kubeconfig: {kubeconfig}\n\
         hostnameOverride: {node}\n\
         mode: nftables\n\
         conntrack:\n  maxPerCore: 0\n  min: 0\n\
         metricsBindAddress: 127.0.0.1:10249\n\
         healthzBindAddress: 127.0.0.1:10256\n",
        kubeconfig = kubeconfig.display()
    )
}

fn apply_addons(cluster: &Cluster, o: &Options) -> Result<(), String> {
    let placement: String = o
        .placement
        .iter()
        .map(|(instance, region)| format!("  {instance:?}: {:?}\n", region.label()))
        .collect();
    let manifests = [
        ("storage", crate::addons::STORAGE.to_string()),
        (
            "coredns",
            crate::addons::COREDNS.replace("@DNS_IP@", DNS_SERVICE_IP),
        ),
        (
            "placement",
            crate::addons::PLACEMENT.replace("@PLACEMENT@\n", &placement),
        ),
        (
            "provisioner-rbac",
            crate::addons::PROVISIONER_RBAC.replace("@USER@", PROVISIONER_USER),
        ),
    ];
    let addons = cluster.dir.join("addons");
    fs::create_dir_all(&addons).map_err(|e| e.to_string())?;
    for (name, body) in manifests {
        let path = addons.join(format!("{name}.yaml"));
        fs::write(&path, body).map_err(|e| e.to_string())?;
        // The policy's API appears with the apiserver's discovery; retry briefly.
        wait_for(
            &format!("add-on {name} to apply"),
            Duration::from_secs(30),
            || {
                cluster
                    .kubectl(&["apply", "--server-side", "-f", &path.display().to_string()])
                    .ok()
            },
        )?;
    }
    Ok(())
}

/// `<dir>/env`: what a shell needs to use the cluster (`source .kcluster/env`).
fn write_env(cluster: &Cluster) -> Result<(), String> {
    let body = format!(
        "export KUBECONFIG={}\nexport PATH={}:$PATH\n",
        cluster.kubeconfig.display(),
        cluster.bin_dir.display()
    );
    fs::write(cluster.dir.join("env"), body).map_err(|e| e.to_string())
}

impl Cluster {
    /// The cluster recorded in `dir` by an earlier `up`.
    pub fn open(dir: &Path) -> Result<Cluster, String> {
        let kubeconfig = dir.join("pki").join("admin.kubeconfig");
        let api = daemon::get(dir, "kube-apiserver")
            .ok_or_else(|| format!("no cluster in {} (run `kcluster up`)", dir.display()))?;
        let bin_dir = PathBuf::from(&api.args[0])
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Ok(Cluster {
            dir: dir.to_path_buf(),
            bin_dir,
            kubeconfig,
        })
    }

    /// Run `kubectl` as the admin; its stdout, or an error with its output.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let kubectl = self.bin_dir.join("kubectl").display().to_string();
        let kubeconfig = format!("--kubeconfig={}", self.kubeconfig.display());
        let mut full = vec![kubectl.as_str(), kubeconfig.as_str()];
        full.extend_from_slice(args);
        net::sh(&full)
    }
}

/// The operator as a user installs it: `helm install` of the repository's chart into
/// namespace `redis-operator` (release `redis-operator`), waiting until its Deployment is
/// available. `extra` are more `helm` arguments (e.g. `--set`).
pub fn install_operator(
    cluster: &Cluster,
    helm: &Path,
    chart: &Path,
    extra: &[&str],
) -> Result<String, String> {
    let helm = helm.display().to_string();
    let chart = chart.display().to_string();
    let kubeconfig = format!("--kubeconfig={}", cluster.kubeconfig.display());
    let mut args = vec![
        helm.as_str(),
        "upgrade",
        "--install",
        "redis-operator",
        chart.as_str(),
        "--namespace",
        "redis-operator",
        "--create-namespace",
        "--wait",
        "--timeout",
        "180s",
        kubeconfig.as_str(),
    ];
    args.extend_from_slice(extra);
    net::sh(&args)
}

/// Stop every daemon of the cluster in `dir`, then remove the network (and any pod process
/// still in it). Leaves logs and data for reading; `up` removes them.
pub fn down(dir: &Path) {
    // Node agents first, so none restarts a pod while the rest goes; then the clients of the
    // API server; the API server before etcd, so it never runs without its storage.
    let rank = |name: &str| match name {
        n if n.starts_with("node-") => 0,
        "kube-apiserver" => 2,
        "etcd" => 3,
        _ => 1,
    };
    let mut daemons = daemon::list(dir);
    daemons.sort_by_key(|d| rank(&d.name));
    for d in &daemons {
        daemon::stop(d, Duration::from_secs(5));
    }
    daemon::stop_all(dir);
    net::teardown();
    unmount_below(dir);
    if fs::read_to_string(RUNNING).is_ok_and(|d| Path::new(d.trim()) == dir) {
        let _ = fs::remove_file(RUNNING);
    }
}

/// Unmount whatever a node agent left mounted under `dir` (memory-backed volumes).
fn unmount_below(dir: &Path) {
    let Ok(abs) = std::path::absolute(dir) else {
        return;
    };
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| Path::new(t).starts_with(&abs))
        .collect();
    // Deepest first.
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let _ = net::sh(&["umount", "-l", t]);
    }
}

/// Poll `f` every 200 ms until it returns Some, or fail after `timeout` saying what was awaited.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        daemon::reap();
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_numbered_per_region_and_indexed_globally() {
        let n = nodes(&BTreeMap::from([(Region('a'), 2), (Region('c'), 1)]));
        let names: Vec<_> = n.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["region-a-1", "region-a-2", "region-c-1"]);
        assert_eq!(n[2].index, 2);
        assert_eq!(n[2].number, 1);
    }
}
