//! `kubectl redis report NAME`: everything support needs in one `.tar.gz`, with every secret
//! value redacted (see `redact`). What could not be collected is listed in the bundle's
//! `README.txt`, never silently missing.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use redis_cluster_api::{RedisCluster, labels, names};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api;
use crate::redact::{REDACTED, redact};

/// The files of a bundle, before redaction: (path inside the archive, contents).
#[derive(Default)]
pub struct Bundle {
    pub files: Vec<(String, String)>,
    /// What could not be collected, and why.
    pub missing: Vec<String>,
}

impl Bundle {
    fn add(&mut self, path: impl Into<String>, text: impl Into<String>) {
        self.files.push((path.into(), text.into()));
    }

    fn yaml<T: Serialize>(&mut self, path: impl Into<String>, value: &T) {
        match serde_yaml::to_string(value) {
            Ok(text) => self.add(path, text),
            Err(e) => self.missing.push(format!("{}: {e}", path.into())),
        }
    }
}

/// Drop what only adds noise (managedFields) and what may carry a secret by accident (the
/// last-applied annotation holds whatever was applied).
fn clean<K: Resource>(mut o: K) -> K {
    let meta = o.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    o
}

async fn list<K>(client: &Client, ns: &str, selector: &str) -> Result<Vec<K>, String>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items.into_iter().map(clean).collect())
        .map_err(|e| api::explain(e, "list", &K::plural(&Default::default()), Some(ns)).to_string())
}

/// The names of the Secrets the cluster references (`authSecret`, `source.authSecretName`,
/// `tlsSecret`).
pub fn referenced_secrets(c: &RedisCluster) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = &c.spec.auth_secret {
        out.push(s.name.clone());
    }
    if let Some(s) = c
        .spec
        .replica_mode
        .as_ref()
        .and_then(|rm| rm.source.as_ref())
        .and_then(|s| s.auth_secret_name.clone())
    {
        out.push(s);
    }
    if let Some(s) = &c.spec.tls_secret {
        out.push(s.name.clone());
    }
    out.sort();
    out.dedup();
    out
}

/// Collect everything about `name` in `ns`.
pub async fn collect(client: &Client, ns: &str, name: &str) -> Result<Bundle, api::Error> {
    let cluster = api::get_cluster(client, ns, name).await?;
    let mut b = Bundle::default();
    b.yaml("cluster.yaml", &clean(cluster.clone()));

    let selector = format!(
        "{}={name},{}={}",
        labels::APP_INSTANCE,
        labels::APP_MANAGED_BY,
        labels::MANAGER
    );
    macro_rules! objects {
        ($t:ty, $file:expr) => {
            match list::<$t>(client, ns, &selector).await {
                Ok(items) => b.yaml(format!("objects/{}.yaml", $file), &items),
                Err(e) => b.missing.push(format!("objects/{}.yaml: {e}", $file)),
            }
        };
    }
    objects!(StatefulSet, "statefulsets");
    objects!(Service, "services");
    objects!(ConfigMap, "configmaps");
    objects!(PersistentVolumeClaim, "persistentvolumeclaims");
    objects!(PodDisruptionBudget, "poddisruptionbudgets");
    let pods: Vec<Pod> = match list::<Pod>(client, ns, &selector).await {
        Ok(items) => {
            b.yaml("objects/pods.yaml", &items);
            items
        }
        Err(e) => {
            b.missing.push(format!("objects/pods.yaml: {e}"));
            Vec::new()
        }
    };

    // Secrets: which keys exist, never their values (those are only used to redact).
    let secrets_api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut secret_values = Vec::new();
    let mut secrets_listed = Vec::new();
    for s in referenced_secrets(&cluster) {
        match secrets_api.get(&s).await {
            Ok(secret) => {
                let keys: Vec<String> = secret
                    .data
                    .as_ref()
                    .map(|d| d.keys().cloned().collect())
                    .unwrap_or_default();
                for v in secret.data.iter().flat_map(|d| d.values()) {
                    if let Ok(text) = String::from_utf8(v.0.clone()) {
                        secret_values.push(text.trim_end().to_string());
                        secret_values.push(text);
                    }
                }
                secrets_listed.push(format!("{s}: keys {} (values {REDACTED})", keys.join(", ")));
            }
            Err(kube::Error::Api(st)) if st.code == 404 => {
                secrets_listed.push(format!("{s}: MISSING (the cluster references it)"))
            }
            Err(e) => {
                secrets_listed.push(format!("{s}: could not be read ({})", short(&e)));
                b.missing.push(format!(
                    "Secret {s} could not be read, so its value could not be searched for and \
                     redacted everywhere; known password places were still blanked"
                ));
            }
        }
    }
    b.add("secrets.txt", secrets_listed.join("\n") + "\n");

    match api::events(client, ns, name).await {
        Ok(mut ev) => {
            // The pods' Events too: restarts, probes, evictions.
            let lp = ListParams::default();
            let all: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
            if let Ok(l) = all.list(&lp).await {
                let prefix = format!("{name}-");
                ev.extend(l.items.into_iter().filter(|e| {
                    e.involved_object.kind.as_deref() == Some("Pod")
                        && e.involved_object
                            .name
                            .as_deref()
                            .is_some_and(|n| n.starts_with(&prefix))
                }));
            }
            let ev: Vec<_> = ev.into_iter().map(clean).collect();
            b.yaml("events.yaml", &ev);
        }
        Err(e) => b.missing.push(format!("events.yaml: {e}")),
    }

    for pod in &pods {
        let p = pod.name_any();
        let t = Duration::from_secs(5);
        match api::pod_get(client, ns, &p, names::METRICS_PORT, "/status", t).await {
            Ok(s) => b.add(format!("pods/{p}/instance-manager-status.json"), s),
            Err(e) => b
                .missing
                .push(format!("pods/{p}/instance-manager-status.json: {e}")),
        }
        match api::pod_get(client, ns, &p, names::METRICS_PORT, "/info", t).await {
            Ok(s) => b.add(format!("pods/{p}/info.txt"), s),
            Err(e) => b.missing.push(format!("pods/{p}/info.txt: {e}")),
        }
        let containers: Vec<String> = pod
            .spec
            .iter()
            .flat_map(|s| {
                s.init_containers
                    .iter()
                    .flatten()
                    .chain(s.containers.iter())
                    .map(|c| c.name.clone())
            })
            .collect();
        for c in containers {
            match api::logs(client, ns, &p, Some(&c), 2000).await {
                Ok(s) => b.add(format!("pods/{p}/{c}.log"), s),
                Err(e) => b.missing.push(format!("pods/{p}/{c}.log: {e}")),
            }
        }
    }

    // The operator's logs (every replica: only the leader acts, the others say why not).
    let all_pods: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{}={}", labels::APP_NAME, labels::MANAGER));
    match all_pods.list(&lp).await {
        Ok(l) => {
            for op in l.items {
                let (opns, opname) = (op.namespace().unwrap_or_default(), op.name_any());
                match api::logs(client, &opns, &opname, None, 5000).await {
                    Ok(s) => b.add(format!("operator/{opns}/{opname}.log"), s),
                    Err(e) => b.missing.push(format!("operator/{opns}/{opname}.log: {e}")),
                }
            }
        }
        Err(e) => b.missing.push(format!(
            "operator logs: {}",
            api::explain(e, "list", "pods", None)
        )),
    }

    // Redact every file, then make sure no known value survived.
    for (_, text) in b.files.iter_mut() {
        *text = redact(text, &secret_values);
    }
    Ok(b)
}

fn short(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.reason),
        other => other.to_string(),
    }
}

/// The bundle's `README.txt`: what it is, when, and what is missing.
pub fn readme(ns: &str, name: &str, now: Timestamp, b: &Bundle) -> String {
    let mut out = format!(
        "kubectl redis report {name} -n {ns}\ncollected {}\nplugin {}\n\n\
         cluster.yaml                          the RedisCluster (spec and status)\n\
         events.yaml                           its Events and its pods'\n\
         objects/*.yaml                        the objects the operator owns for it\n\
         secrets.txt                           the Secrets it references: names and keys only\n\
         pods/<pod>/instance-manager-status.json  GET /status of each instance manager\n\
         pods/<pod>/info.txt                   the pod's Redis INFO (GET /info)\n\
         pods/<pod>/<container>.log            container logs (last 2000 lines)\n\
         operator/<ns>/<pod>.log               the operator's logs (last 5000 lines)\n\n\
         Every value of the referenced Secrets and every known password place \
         (requirepass, masterauth, AUTH, -a, password=) is replaced by {REDACTED}.\n",
        now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        env!("CARGO_PKG_VERSION"),
    );
    if b.missing.is_empty() {
        out.push_str("\nNothing is missing.\n");
    } else {
        out.push_str("\nNot collected:\n");
        for m in &b.missing {
            out.push_str(&format!("  - {m}\n"));
        }
    }
    out
}

/// Write the bundle as a gzipped tar under `dir/` in the archive, readable by its owner only
/// (it describes the cluster in detail even without secrets).
pub fn write(path: &Path, dir: &str, files: &[(String, String)]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (name, text) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(mtime);
        h.set_cksum();
        tar.append_data(&mut h, format!("{dir}/{name}"), text.as_bytes())?;
    }
    let gz = tar.into_inner()?;
    gz.finish()?.flush()
}
