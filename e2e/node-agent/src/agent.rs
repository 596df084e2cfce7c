//! The `node` subcommand: one kubelet-like agent per Node. It registers the Node, renews its
//! Lease, keeps the node status current, watches the pods bound to it and gives each a
//! worker ([`crate::worker`]), and serves the kubelet API ([`crate::server`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, Patch, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::events::Events;
use crate::ipam::{Cidr, Ipam};
use crate::quantity::Quantity;
use crate::runtime::Tools;

#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// Kubeconfig with the node's identity (user system:node:<name>, group system:nodes).
    #[arg(long)]
    pub kubeconfig: PathBuf,
    #[arg(long)]
    pub node_name: String,
    /// The node's region: a, b or c (labels topology.kubernetes.io/region|zone=region-<r>).
    #[arg(long)]
    pub region: String,
    /// The region's network namespace, where the pods' veths are attached.
    #[arg(long)]
    pub region_netns: String,
    /// The node's podCIDR (10.7x.N.0/24).
    #[arg(long)]
    pub pod_cidr: String,
    /// Port of the kubelet API on 127.0.0.1.
    #[arg(long)]
    pub kubelet_port: u16,
    /// Serving certificate of the kubelet API.
    #[arg(long)]
    pub tls_cert_file: PathBuf,
    #[arg(long)]
    pub tls_key_file: PathBuf,
    /// CA of the client certificates accepted by the kubelet API (the apiserver's).
    #[arg(long)]
    pub client_ca_file: PathBuf,
    /// Where everything this agent writes goes (pods, volumes, logs, records).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// `<image repository>=<dir>`: the container's command is looked up in <dir> first, then
    /// on the host PATH (repeatable).
    #[arg(long = "image-map")]
    pub image_map: Vec<String>,
    /// The "image" PATH after a mapped directory: where an image's commands are found on the
    /// host. Not the agent's own PATH, which is the harness's (root's tool directories would
    /// leak into containers, and a non-root container cannot even search them).
    #[arg(long, default_value = DEFAULT_HOST_PATH)]
    pub host_path: String,
    #[arg(long, default_value = "10.96.0.10")]
    pub cluster_dns: String,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
}

/// The node's resources (as a modest real node would report).
pub const CAPACITY: [(&str, &str); 4] = [
    ("cpu", "8"),
    ("memory", "16Gi"),
    ("pods", "110"),
    ("ephemeral-storage", "100Gi"),
];

pub const KUBELET_VERSION: &str = "v1.37.2";

/// The PATH of a Debian image.
pub const DEFAULT_HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Agent {
    pub args: NodeArgs,
    /// This binary's path, taken at start: the shims are started from it. (Not
    /// /proc/self/exe at spawn time: a rebuild replaces the file while agents run.)
    pub exe: PathBuf,
    pub client: kube::Client,
    pub tools: Tools,
    pub images: Vec<(String, PathBuf)>,
    /// `--host-path`: the containers' PATH after their image's mapped directory.
    pub host_path: String,
    pub ipam: Mutex<Ipam>,
    pub services: Store<Service>,
    pub events: Events,
    pub allocatable: BTreeMap<String, Quantity>,
    /// Pods with a worker, by UID.
    pub pods: Mutex<HashMap<String, PodHandle>>,
}

pub struct PodHandle {
    pub namespace: String,
    pub name: String,
    /// When the worker started: of two pods with one name (a StatefulSet pod replaced while
    /// the old one is being torn down), the newer is the one asked about.
    pub since: std::time::Instant,
    pub tx: watch::Sender<Option<Pod>>,
}

impl Agent {
    pub fn pods_dir(&self) -> PathBuf {
        self.args.state_dir.join("pods")
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }

    /// The UID of the pod `namespace/name` this agent runs.
    pub fn pod_uid(&self, namespace: &str, name: &str) -> Option<String> {
        let pods = self.pods.lock().ok()?;
        pods.iter()
            .filter(|(_, h)| h.namespace == namespace && h.name == name)
            .max_by_key(|(_, h)| h.since)
            .map(|(uid, _)| uid.clone())
    }

    pub fn image_dir(&self, image: &str) -> Option<PathBuf> {
        image_dir(&self.images, image)
    }
}

/// An image's repository: without digest and tag (`docker.io/library/redis:7.2` ->
/// `docker.io/library/redis`).
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

fn normalize(repo: &str) -> &str {
    let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
    repo.strip_prefix("library/").unwrap_or(repo)
}

/// The directory an image is mapped to (`--image-map`), matching `redis` and
/// `docker.io/library/redis` alike.
pub fn image_dir(map: &[(String, PathBuf)], image: &str) -> Option<PathBuf> {
    let repo = normalize(repository(image));
    map.iter()
        .find(|(r, _)| normalize(r) == repo)
        .map(|(_, d)| d.clone())
}

pub fn parse_image_map(entries: &[String]) -> Result<Vec<(String, PathBuf)>> {
    entries
        .iter()
        .map(|e| {
            let (repo, dir) = e
                .split_once('=')
                .with_context(|| format!("--image-map {e:?}: expected <repository>=<dir>"))?;
            Ok((repository(repo).to_string(), PathBuf::from(dir)))
        })
        .collect()
}

fn node_object(args: &NodeArgs) -> Value {
    let region = format!("region-{}", args.region);
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": args.node_name,
            "labels": node_labels(args, &region),
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {"podCIDR": args.pod_cidr, "podCIDRs": [args.pod_cidr]},
    })
}

fn node_labels(args: &NodeArgs, region: &str) -> Value {
    json!({
        "kubernetes.io/hostname": args.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/region": region,
        "topology.kubernetes.io/zone": region,
    })
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// The node status the agent reports. `previous`: the conditions on the server, whose
/// transition times are kept when nothing changed.
pub fn node_status(args: &NodeArgs, previous: &[Value]) -> Value {
    let now = crate::model::time(Utc::now());
    let resources: Value = CAPACITY
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let cond = |t: &str, status: &str, reason: &str, message: &str| {
        let since = previous
            .iter()
            .find(|c| c["type"] == t && c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str().map(String::from))
            .unwrap_or_else(|| now.clone());
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    let machine = std::fs::read_to_string("/etc/machine-id")
        .unwrap_or_default()
        .trim()
        .to_string();
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": args.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": args.kubelet_port}},
        "declaredFeatures": ["ExtendWebSocketsToKubelet"],
        "nodeInfo": {
            "machineID": machine,
            "systemUUID": machine,
            "bootID": boot_id(),
            "kernelVersion": kernel_version(),
            "osImage": os_image(),
            "containerRuntimeVersion": format!("redis-node-agent://{}", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    })
}

/// Whether the node's status on the server needs this agent's update: Ready not True (the
/// node lifecycle controller marks a silent node Unknown), a stale heartbeat, or anything
/// else the agent reports that differs.
pub fn node_status_stale(server: &Value, wanted: &Value, max_age: Duration) -> bool {
    let conds = server["conditions"].as_array().cloned().unwrap_or_default();
    let ready = conds.iter().find(|c| c["type"] == "Ready");
    let ready_ok = ready.is_some_and(|c| c["status"] == "True" && c["reason"] == "KubeletReady");
    let heartbeat_old = ready
        .and_then(|c| c["lastHeartbeatTime"].as_str())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_none_or(|t| {
            (Utc::now() - t.with_timezone(&Utc))
                .to_std()
                .unwrap_or_default()
                >= max_age
        });
    let same = |k: &str| server[k] == wanted[k];
    !ready_ok
        || heartbeat_old
        || !same("addresses")
        || !same("capacity")
        || !same("allocatable")
        || !same("daemonEndpoints")
        || server["declaredFeatures"] != wanted["declaredFeatures"]
        || server["nodeInfo"]["bootID"] != wanted["nodeInfo"]["bootID"]
}

async fn register(agent: &Agent) -> Result<()> {
    let nodes: Api<Node> = Api::all(agent.client.clone());
    let obj: Node = serde_json::from_value(node_object(&agent.args))?;
    match nodes.create(&PostParams::default(), &obj).await {
        Ok(_) => tracing::info!(node = %agent.args.node_name, "node registered"),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // Registered before (a restarted agent): bring the labels and podCIDR in line.
            let region = format!("region-{}", agent.args.region);
            let patch = json!({"metadata": {"labels": node_labels(&agent.args, &region)}});
            nodes
                .patch(
                    &agent.args.node_name,
                    &crate::kubelet_patch(),
                    &Patch::Merge(&patch),
                )
                .await
                .context("updating the node's labels")?;
            tracing::info!(node = %agent.args.node_name, "node already registered");
        }
        Err(e) => return Err(e).context("registering the node"),
    }
    Ok(())
}

/// Keep the node status current: at start, whenever the server's copy needs it, and at
/// least every 60 s (checked every 10 s, like the kubelet's nodeStatusUpdateFrequency).
async fn status_loop(agent: Arc<Agent>) {
    let nodes: Api<Node> = Api::all(agent.client.clone());
    let name = agent.args.node_name.clone();
    loop {
        let server = match nodes.get(&name).await {
            Ok(n) => serde_json::to_value(n.status.unwrap_or_default()).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the node status");
                Value::Null
            }
        };
        let previous = server["conditions"].as_array().cloned().unwrap_or_default();
        let wanted = node_status(&agent.args, &previous);
        if node_status_stale(&server, &wanted, Duration::from_secs(60)) {
            let patch = json!({"status": wanted});
            match nodes
                .patch_status(&name, &crate::kubelet_patch(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => tracing::debug!("node status updated"),
                Err(e) => tracing::warn!(error = %e, "updating the node status"),
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// Renew the node's Lease in kube-node-lease every 10 s (leaseDurationSeconds 40).
async fn lease_loop(agent: Arc<Agent>) {
    let leases: Api<Lease> = Api::namespaced(agent.client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(agent.client.clone());
    let name = agent.args.node_name.clone();
    loop {
        let now = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let result = match leases.get_opt(&name).await {
            Ok(Some(_)) => {
                let patch = json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}});
                leases
                    .patch(&name, &crate::kubelet_patch(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            Ok(None) => {
                let owner = nodes.get(&name).await.ok().and_then(|n| n.metadata.uid);
                let mut lease = json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now},
                });
                if let Some(uid) = owner {
                    lease["metadata"]["ownerReferences"] =
                        json!([{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]);
                }
                match serde_json::from_value::<Lease>(lease) {
                    Ok(l) => leases.create(&PostParams::default(), &l).await.map(|_| ()),
                    Err(e) => {
                        tracing::error!(error = %e, "lease object");
                        Ok(())
                    }
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "renewing the node lease");
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// Hand each pod event to its worker, starting workers for new pods and telling workers of
/// pods that disappeared (deleted, or missing from a re-list).
async fn pod_loop(agent: Arc<Agent>) -> Result<()> {
    let pods: Api<Pod> = Api::all(agent.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", agent.args.node_name));
    let mut stream = watcher(pods, cfg).default_backoff().boxed();
    let mut listing: Option<HashSet<String>> = None;
    let mut first_list_done = false;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch");
                continue;
            }
        };
        match event {
            watcher::Event::Init => listing = Some(HashSet::new()),
            watcher::Event::InitApply(pod) => {
                if let (Some(l), Some(uid)) = (listing.as_mut(), pod.metadata.uid.clone()) {
                    l.insert(uid);
                }
                deliver(&agent, pod);
            }
            watcher::Event::Apply(pod) => deliver(&agent, pod),
            watcher::Event::Delete(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    gone(&agent, uid);
                }
            }
            watcher::Event::InitDone => {
                let seen = listing.take().unwrap_or_default();
                let known: Vec<String> = agent
                    .pods
                    .lock()
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                for uid in known.iter().filter(|u| !seen.contains(*u)) {
                    gone(&agent, uid);
                }
                if !first_list_done {
                    first_list_done = true;
                    // Pods on disk the API no longer has were deleted while the agent was away.
                    crate::worker::clean_orphans(agent.clone(), &seen);
                }
            }
        }
    }
    bail!("pod watch ended")
}

fn deliver(agent: &Arc<Agent>, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    let mut pods = match agent.pods.lock() {
        Ok(p) => p,
        Err(_) => return,
    };
    if let Some(h) = pods.get(&uid) {
        let _ = h.tx.send(Some(pod));
        return;
    }
    let (tx, rx) = watch::channel(Some(pod.clone()));
    pods.insert(
        uid.clone(),
        PodHandle {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            since: std::time::Instant::now(),
            tx,
        },
    );
    drop(pods);
    let agent = agent.clone();
    tokio::spawn(async move {
        crate::worker::run(agent.clone(), uid.clone(), rx).await;
        if let Ok(mut p) = agent.pods.lock() {
            p.remove(&uid);
        }
    });
}

fn gone(agent: &Agent, uid: &str) {
    if let Ok(pods) = agent.pods.lock()
        && let Some(h) = pods.get(uid)
    {
        let _ = h.tx.send(None);
    }
}

pub async fn run(args: NodeArgs) -> Result<()> {
    let mut args = args;
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    // Absolute: volume paths are bind-mounted from other mount namespaces.
    args.state_dir = std::fs::canonicalize(&args.state_dir)?;
    let cidr = Cidr::parse(&args.pod_cidr).map_err(anyhow::Error::msg)?;
    let tools = Tools::find().map_err(anyhow::Error::msg)?;
    let images = parse_image_map(&args.image_map)?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let ipam = Ipam::new(cidr, args.state_dir.join("ipam"))?;
    let allocatable = CAPACITY
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), Quantity::parse(v).ok()?)))
        .collect();

    // Services, for the containers' service variables (the kubelet's service lister).
    let (services, writer) = reflector::store();
    let svc_stream = reflector::reflector(
        writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    tokio::spawn(async move {
        futures::pin_mut!(svc_stream);
        while let Some(e) = svc_stream.next().await {
            if let Err(e) = e {
                tracing::debug!(error = %e, "service watch");
            }
        }
    });

    let exe = std::env::current_exe().context("the agent's own path")?;
    let agent = Arc::new(Agent {
        exe,
        events: Events::new(client.clone(), &args.node_name),
        host_path: args.host_path.clone(),
        args,
        client,
        tools,
        images,
        ipam: Mutex::new(ipam),
        services,
        allocatable,
        pods: Mutex::new(HashMap::new()),
    });
    register(&agent).await?;
    tokio::spawn(status_loop(agent.clone()));
    tokio::spawn(lease_loop(agent.clone()));
    let server = crate::server::serve(agent.clone());
    // The services cache fills quickly; pods wait a moment for it so their first containers
    // get the service variables.
    let _ = tokio::time::timeout(Duration::from_secs(5), agent.services.wait_until_ready()).await;
    tokio::select! {
        r = server => r,
        r = pod_loop(agent.clone()) => r,
        _ = shutdown_signal() => {
            // Like a kubelet: stopping the agent stops nothing it started.
            tracing::info!("stopping; pods keep running");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> NodeArgs {
        NodeArgs {
            kubeconfig: "k".into(),
            node_name: "region-b-2".into(),
            region: "b".into(),
            region_netns: "kc-rb".into(),
            pod_cidr: "10.79.2.0/24".into(),
            kubelet_port: 11254,
            tls_cert_file: "c".into(),
            tls_key_file: "k".into(),
            client_ca_file: "ca".into(),
            state_dir: "/tmp/x".into(),
            image_map: vec![],
            host_path: DEFAULT_HOST_PATH.into(),
            cluster_dns: "10.96.0.10".into(),
            cluster_domain: "cluster.local".into(),
        }
    }

    #[test]
    fn images_map_by_repository() {
        assert_eq!(repository("redis:7.2"), "redis");
        assert_eq!(
            repository("ghcr.io/example/redis-operator:0.1.0"),
            "ghcr.io/example/redis-operator"
        );
        assert_eq!(repository("localhost:5000/x"), "localhost:5000/x");
        assert_eq!(
            repository("localhost:5000/x:1@sha256:abc"),
            "localhost:5000/x"
        );
        let map = parse_image_map(&[
            "ghcr.io/example/redis-operator=/opt/op".into(),
            "docker.io/library/busybox=/opt/bb".into(),
        ])
        .unwrap();
        assert_eq!(
            image_dir(&map, "ghcr.io/example/redis-operator:0.1.0"),
            Some("/opt/op".into())
        );
        assert_eq!(image_dir(&map, "busybox:1.36"), Some("/opt/bb".into()));
        assert_eq!(image_dir(&map, "redis:7.2"), None);
        assert!(parse_image_map(&["nodir".into()]).is_err());
    }

    #[test]
    fn node_object_and_status_follow_the_contract() {
        let a = args();
        let n = node_object(&a);
        assert_eq!(
            n["metadata"]["labels"]["topology.kubernetes.io/region"],
            "region-b"
        );
        assert_eq!(
            n["metadata"]["labels"]["topology.kubernetes.io/zone"],
            "region-b"
        );
        assert_eq!(
            n["metadata"]["labels"]["kubernetes.io/hostname"],
            "region-b-2"
        );
        assert_eq!(n["spec"]["podCIDR"], "10.79.2.0/24");
        let s = node_status(&a, &[]);
        assert_eq!(s["capacity"]["cpu"], "8");
        assert_eq!(s["allocatable"]["memory"], "16Gi");
        assert_eq!(s["capacity"]["pods"], "110");
        assert_eq!(
            s["addresses"][0],
            json!({"type": "InternalIP", "address": "127.0.0.1"})
        );
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 11254);
        assert_eq!(s["declaredFeatures"], json!(["ExtendWebSocketsToKubelet"]));
        assert_eq!(s["conditions"][3]["type"], "Ready");
        // Fresh status from this agent: nothing to do; a server copy marked Unknown by the
        // node lifecycle controller: update.
        assert!(!node_status_stale(&s, &s, Duration::from_secs(60)));
        let mut unknown = s.clone();
        unknown["conditions"][3]["status"] = json!("Unknown");
        unknown["conditions"][3]["reason"] = json!("NodeStatusUnknown");
        assert!(node_status_stale(&unknown, &s, Duration::from_secs(60)));
        assert!(node_status_stale(&Value::Null, &s, Duration::from_secs(60)));
        // Transition times are kept for unchanged conditions.
        let mut old = s["conditions"].as_array().unwrap().clone();
        old[3]["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
        let again = node_status(&a, &old);
        assert_eq!(
            again["conditions"][3]["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
    }
}
