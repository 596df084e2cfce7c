//! The plugin's calls to the API server, and the errors a person can act on. Thin: every call is
//! one request; what the answers mean is decided in `view` and `actions`.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, LogParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use redis_cluster_api::report::InstanceReport;
use redis_cluster_api::{RedisCluster, labels, names};

use crate::view::OperatorView;

/// An error a person can act on: what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "not allowed to {verb} {resource}{scope}: {message}\n  check with: kubectl auth can-i {verb} {resource}{ns_flag}\n  the plugin needs get/list/patch on redisclusters.redis.io, list on pods and events, and for `report` get on pods/log and pods/proxy (docs/kubectl-plugin.md, \"Permissions\")"
    )]
    Forbidden {
        verb: String,
        resource: String,
        scope: String,
        ns_flag: String,
        message: String,
    },
    #[error(
        "RedisCluster {name} not found in namespace {namespace} (`kubectl redis status -A` lists every cluster)"
    )]
    NotFound { name: String, namespace: String },
    #[error(
        "the RedisCluster API (redis.io/v1) is not installed on this cluster: install the operator's CRD (helm install redis-operator, see docs/install.md)"
    )]
    NoCrd,
    #[error(
        "cannot reach the Kubernetes API server: {0}\n  check KUBECONFIG / --kubeconfig / --context"
    )]
    Unreachable(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where to connect: the kubeconfig flags kubectl would take (kubectl passes a plugin only the
/// arguments after its name, so the plugin reads them itself).
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub kubeconfig: Option<std::path::PathBuf>,
    pub context: Option<String>,
}

/// A client and the namespace of the current context.
pub async fn connect(t: &Target) -> Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: t.context.clone(),
        ..Default::default()
    };
    let config = match &t.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| Error::Unreachable(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &options).await
        }
        None if t.context.is_some() => Config::from_kubeconfig(&options).await,
        None => {
            return Config::infer()
                .await
                .map_err(|e| Error::Unreachable(e.to_string()))
                .and_then(|c| {
                    let ns = c.default_namespace.clone();
                    Client::try_from(c)
                        .map(|client| (client, ns))
                        .map_err(|e| Error::Unreachable(e.to_string()))
                });
        }
    }
    .map_err(|e| Error::Unreachable(e.to_string()))?;
    let ns = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| Error::Unreachable(e.to_string()))?;
    Ok((client, ns))
}

/// Turn a kube error into one a person can act on. `what` names the call (`list
/// redisclusters`), `ns` its namespace (None: all namespaces).
pub fn explain(e: kube::Error, verb: &str, resource: &str, ns: Option<&str>) -> Error {
    match e {
        kube::Error::Api(s) if s.code == 403 => Error::Forbidden {
            verb: verb.into(),
            resource: resource.into(),
            scope: ns
                .map(|n| format!(" in namespace {n}"))
                .unwrap_or_else(|| " in all namespaces".into()),
            ns_flag: ns
                .map(|n| format!(" -n {n}"))
                .unwrap_or_else(|| " -A".into()),
            message: s.message,
        },
        kube::Error::Api(s) if s.code == 404 && resource == "redisclusters" && verb == "list" => {
            Error::NoCrd
        }
        kube::Error::Api(s) if s.code == 401 => Error::Unreachable(format!(
            "the API server refused the credentials ({}): log in again or check the kubeconfig's user",
            s.message
        )),
        kube::Error::Api(s) => {
            Error::Other(format!("{verb} {resource}: {} ({})", s.message, s.code))
        }
        other => Error::Unreachable(other.to_string()),
    }
}

pub async fn get_cluster(client: &Client, ns: &str, name: &str) -> Result<RedisCluster> {
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), ns);
    match api.get(name).await {
        Ok(c) => Ok(c),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            // Distinguish a missing cluster from a missing CRD.
            list_clusters(client, Some(ns)).await?;
            Err(Error::NotFound {
                name: name.into(),
                namespace: ns.into(),
            })
        }
        Err(e) => Err(explain(e, "get", "redisclusters", Some(ns))),
    }
}

/// Every cluster in `ns` (None: all namespaces), by namespace then name.
pub async fn list_clusters(client: &Client, ns: Option<&str>) -> Result<Vec<RedisCluster>> {
    let api: Api<RedisCluster> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut items = api
        .list(&ListParams::default())
        .await
        .map_err(|e| explain(e, "list", "redisclusters", ns))?
        .items;
    items.sort_by_key(|c| (c.metadata.namespace.clone(), c.metadata.name.clone()));
    Ok(items)
}

/// `kubectl patch rediscluster <name> --type=merge -p <patch>`.
pub async fn patch_cluster(
    client: &Client,
    ns: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<RedisCluster> {
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), ns);
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| explain(e, "patch", "redisclusters", Some(ns)))
}

/// The cluster's Events (any age; the caller keeps the newest).
pub async fn events(client: &Client, ns: &str, name: &str) -> Result<Vec<Event>> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind=RedisCluster,involvedObject.name={name}"
    ));
    Ok(api
        .list(&lp)
        .await
        .map_err(|e| explain(e, "list", "events", Some(ns)))?
        .items)
}

/// The cluster's data pods.
pub async fn data_pods(client: &Client, ns: &str, name: &str) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{}={name}", labels::CLUSTER));
    let mut pods = api
        .list(&lp)
        .await
        .map_err(|e| explain(e, "list", "pods", Some(ns)))?
        .items;
    pods.sort_by_key(|p| {
        let n = p.metadata.name.clone().unwrap_or_default();
        (names::ordinal_of(name, &n).unwrap_or(u32::MAX), n)
    });
    Ok(pods)
}

/// Whether the operator runs: its pods anywhere (label `app.kubernetes.io/name=redis-operator`),
/// ready or not.
pub async fn operator(client: &Client) -> OperatorView {
    let api: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{}={}", labels::APP_NAME, labels::MANAGER));
    let pods = api.list(&lp).await.map(|l| {
        l.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| {
                let ready = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                (p.metadata.name.clone().unwrap_or_default(), ready)
            })
            .collect()
    });
    OperatorView::from_pods(pods.map_err(|e| match explain(e, "list", "pods", None) {
        Error::Forbidden { .. } => {
            "not allowed to list pods in all namespaces (kubectl auth can-i list pods -A)".into()
        }
        other => other.to_string(),
    }))
}

/// A path the API server proxies to a pod's port.
fn proxy_path(ns: &str, pod: &str, port: u16, path: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy{path}")
}

/// `GET <path>` on a pod's port through the API server (pods/proxy), within `timeout`.
pub async fn pod_get(
    client: &Client,
    ns: &str,
    pod: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<String, String> {
    let req = http::Request::get(proxy_path(ns, pod, port, path))
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, client.request_text(req)).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => Err(explain(e, "get", "pods/proxy", Some(ns)).to_string()),
        Ok(Ok(text)) => Ok(text),
    }
}

/// Each running pod's instance-manager report (`GET /status`), asked concurrently; pods that do
/// not answer are left out (the view falls back to `status.instancesStatus`).
pub async fn reports(client: &Client, ns: &str, pods: &[Pod]) -> Vec<InstanceReport> {
    let asks = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .map(|pod| async move {
            let text = pod_get(
                client,
                ns,
                &pod,
                names::METRICS_PORT,
                "/status",
                Duration::from_secs(3),
            )
            .await
            .ok()?;
            serde_json::from_str::<InstanceReport>(&text).ok()
        });
    join_all(asks).await.into_iter().flatten().collect()
}

/// A container's log (the last `tail` lines).
pub async fn logs(
    client: &Client,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    tail: i64,
) -> Result<String, String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = LogParams {
        container: container.map(str::to_string),
        tail_lines: Some(tail),
        ..LogParams::default()
    };
    api.logs(pod, &lp)
        .await
        .map_err(|e| explain(e, "get", "pods/log", Some(ns)).to_string())
}
