//! The simulated Kubernetes, the one thing the drill fakes.
//!
//! - The API server: `RedisCluster` objects stored as the apiserver would store them (validated
//!   against the generated CRD schema and CEL rules, defaults applied, `generation` bumped on
//!   spec changes, merge patches as `kubectl patch --type=merge` sends them), and the operator's
//!   `MemoryPlatform` for everything else (owned objects, pods, status, events).
//! - The kubelet: writes each pod's annotations to a downward-API style file (the format a
//!   `downwardAPI` volume produces) and "mounts" Secrets as files.
//!
//! The operator's real reconcile code runs against it unchanged; the instance managers read their
//! topology through the same contract as in a cluster; reports come from the real instance
//! managers over HTTP.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use redis_cluster_api::RedisCluster;
use redis_cluster_api::validation::merge_patch;
use redis_operator::objects::Settings;
use redis_operator::platform::{Call, MemoryPlatform};
use redis_operator::reconcile::{Outcome, reconcile};
use redis_topology::Environment;
use serde_json::Value;

pub struct Sim {
    pub platform: MemoryPlatform,
    clusters: Mutex<BTreeMap<String, Value>>,
    secrets: Mutex<BTreeMap<String, String>>,
    written: Mutex<BTreeMap<String, String>>,
    /// Where each cluster's Sentinels listen (no DNS here), by cluster name.
    pub sentinel_addresses: Mutex<BTreeMap<String, Vec<String>>>,
    /// `kubectl describe`'s Events, in order: (cluster, type, reason, note).
    pub events: Mutex<Vec<(String, String, String, String)>>,
    dir: PathBuf,
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl Sim {
    pub fn new(dir: &Path) -> Sim {
        Sim {
            platform: MemoryPlatform::new(),
            clusters: Mutex::new(BTreeMap::new()),
            secrets: Mutex::new(BTreeMap::new()),
            written: Mutex::new(BTreeMap::new()),
            sentinel_addresses: Mutex::new(BTreeMap::new()),
            events: Mutex::new(Vec::new()),
            dir: dir.to_path_buf(),
        }
    }

    pub fn add_secret(&self, ns: &str, name: &str, password: &str) {
        self.platform.add_secret(ns, name, &["password"]);
        self.secrets
            .lock()
            .unwrap()
            .insert(key(ns, name), password.into());
    }

    pub fn secret(&self, ns: &str, name: &str) -> Option<String> {
        self.secrets.lock().unwrap().get(&key(ns, name)).cloned()
    }

    /// `kubectl apply -f` of a manifest (after `edit`, e.g. to point a sample at a drill address).
    pub fn apply(&self, yaml: &str, edit: impl FnOnce(&mut Value)) -> Result<RedisCluster, String> {
        let mut object: Value = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        edit(&mut object);
        self.store(object)
    }

    /// `kubectl patch rediscluster <name> --type=merge -p <patch>`.
    pub fn patch(&self, ns: &str, name: &str, patch: &Value) -> Result<RedisCluster, String> {
        let mut object = self
            .clusters
            .lock()
            .unwrap()
            .get(&key(ns, name))
            .cloned()
            .ok_or_else(|| format!("redisclusters.redis.io \"{name}\" not found"))?;
        merge_patch(&mut object, patch);
        self.store(object)
    }

    fn store(&self, mut object: Value) -> Result<RedisCluster, String> {
        let existing = {
            let ns = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default");
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            self.clusters.lock().unwrap().get(&key(ns, name)).cloned()
        };
        // An update is validated with its transition rules (oldSelf), as the apiserver does.
        let validated = match &existing {
            Some(old) => redis_cluster_api::validation::validate_update(old, &object),
            None => redis_cluster_api::validation::validate_object(&object),
        };
        let stored = validated.map_err(|errors| {
            errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        object = stored;
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        object["metadata"]["namespace"] = ns.clone().into();
        let mut clusters = self.clusters.lock().unwrap();
        let generation = match clusters.get(&key(&ns, &name)) {
            Some(old) if old["spec"] == object["spec"] => {
                old["metadata"]["generation"].as_i64().unwrap_or(1)
            }
            Some(old) => old["metadata"]["generation"].as_i64().unwrap_or(1) + 1,
            None => 1,
        };
        object["metadata"]["generation"] = generation.into();
        object["metadata"]["uid"] = format!("uid-{ns}-{name}").into();
        if let Some(old) = clusters.get(&key(&ns, &name)) {
            object["status"] = old["status"].clone();
        }
        let rc: RedisCluster = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
        clusters.insert(key(&ns, &name), object);
        Ok(rc)
    }

    pub fn get(&self, ns: &str, name: &str) -> RedisCluster {
        let v = self.clusters.lock().unwrap()[&key(ns, name)].clone();
        serde_json::from_value(v).expect("stored clusters deserialize")
    }

    /// Where the kubelet mounts cluster `name`'s Secrets and writes its pods' files.
    pub fn env(&self, ns: &str, name: &str) -> Environment {
        let d = self.dir.join(format!("{ns}-{name}"));
        Environment {
            auth_password_file: d.join("auth/password").display().to_string(),
            source_password_file: d.join("source/password").display().to_string(),
            redis_port: 6379,
            sentinel_addresses: self.sentinel_addresses.lock().unwrap().get(name).cloned(),
        }
    }

    /// What the kubelet reports about a pod's Redis container.
    pub fn set_redis_running(&self, ns: &str, pod: &str, running: bool) {
        if let Some(p) = self
            .platform
            .state
            .lock()
            .unwrap()
            .pods
            .get_mut(&key(ns, pod))
        {
            p.redis_running = Some(running);
        }
    }

    pub fn pod_dir(&self, pod: &str) -> PathBuf {
        self.dir.join("pods").join(pod)
    }

    /// One pass of the operator over every cluster, then the kubelet.
    pub async fn reconcile_all(&self) -> Vec<(String, Result<Outcome, String>)> {
        let clusters: Vec<(String, Value)> = self
            .clusters
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut results = Vec::new();
        for (k, v) in clusters {
            let rc: RedisCluster = serde_json::from_value(v).expect("stored clusters deserialize");
            let (ns, name) = k.split_once('/').unwrap();
            self.mount_secrets(ns, name, &rc);
            let now = Time(Timestamp::now());
            let env = self.env(ns, name);
            let result = reconcile(&rc, &self.platform, &Settings::default(), &env, now)
                .await
                .map_err(|e| e.to_string());
            if let Some(status) = self.platform.status_of(ns, name)
                && let Some(obj) = self.clusters.lock().unwrap().get_mut(&k)
            {
                obj["status"] = serde_json::to_value(status).unwrap();
            }
            for call in self.platform.take_calls() {
                if let Call::Event {
                    type_,
                    reason,
                    note,
                } = call
                {
                    self.events.lock().unwrap().push((
                        name.to_string(),
                        format!("{type_:?}"),
                        reason.to_string(),
                        note,
                    ));
                }
            }
            results.push((k, result));
        }
        self.kubelet();
        results
    }

    /// Secrets as files, where the pod template would mount them.
    fn mount_secrets(&self, ns: &str, name: &str, rc: &RedisCluster) {
        let env = self.env(ns, name);
        let mut mounts = Vec::new();
        if let Some(s) = &rc.spec.auth_secret {
            mounts.push((env.auth_password_file.clone(), s.name.clone()));
        }
        if let Some(s) = rc
            .spec
            .replica_mode
            .as_ref()
            .and_then(|r| r.source.as_ref())
            .and_then(|s| s.auth_secret_name.clone())
        {
            mounts.push((env.source_password_file.clone(), s));
        }
        for (path, secret) in mounts {
            if let Some(pw) = self.secret(ns, &secret) {
                write_if_changed(Path::new(&path), &pw);
            }
        }
    }

    /// The downward-API annotations file of every pod: `key="value"` lines, values escaped as
    /// Go's %q does, replaced atomically.
    pub fn kubelet(&self) {
        let pods: Vec<_> = self
            .platform
            .state
            .lock()
            .unwrap()
            .pods
            .values()
            .cloned()
            .collect();
        let mut written = self.written.lock().unwrap();
        for pod in pods {
            let body: String = pod
                .annotations
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"\n", go_quote(v)))
                .collect();
            if written.get(&pod.name) == Some(&body) {
                continue;
            }
            write_if_changed(&self.pod_dir(&pod.name).join("annotations"), &body);
            written.insert(pod.name.clone(), body);
        }
    }
}

fn write_if_changed(path: &Path, body: &str) {
    if std::fs::read_to_string(path).ok().as_deref() == Some(body) {
        return;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn go_quote(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}
