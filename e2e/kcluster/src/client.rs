//! A blocking client for harness code (the drill's threads are synchronous): the admin's
//! kube-rs client on a private runtime, plus what only the machine knows about a pod (its
//! processes, found through its network namespace).
//!
//! User-facing steps go through `kubectl` ([`crate::cluster::Cluster::kubectl`]) so that the
//! commands a person would type are the ones exercised; this client is for the polling and the
//! reads in between.

use std::fs;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use kube::{Client, Config};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::net;

pub struct Kube {
    rt: tokio::runtime::Runtime,
    client: Client,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `redis.io/v1` `RedisCluster`, read as JSON (the harness checks what a user would read).
fn redis_clusters() -> ApiResource {
    ApiResource {
        group: "redis.io".into(),
        version: "v1".into(),
        api_version: "redis.io/v1".into(),
        kind: "RedisCluster".into(),
        plural: "redisclusters".into(),
    }
}

impl Kube {
    pub fn new(cluster: &Cluster) -> Result<Kube, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(err)?;
        let client = rt.block_on(async {
            let kubeconfig = Kubeconfig::read_from(&cluster.kubeconfig).map_err(err)?;
            let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(err)?;
            Client::try_from(config).map_err(err)
        })?;
        Ok(Kube { rt, client })
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        self.rt.block_on(api.get_opt(name)).ok().flatten()
    }

    pub fn pods(&self, ns: &str, selector: &str) -> Result<Vec<Pod>, String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        Ok(self
            .rt
            .block_on(api.list(&ListParams::default().labels(selector)))
            .map_err(err)?
            .items)
    }

    pub fn statefulset(&self, ns: &str, name: &str) -> Option<StatefulSet> {
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        self.rt.block_on(api.get_opt(name)).ok().flatten()
    }

    /// The ready addresses behind Service `service` (its EndpointSlices), as kube-proxy would
    /// route to them.
    pub fn service_endpoints(&self, ns: &str, service: &str) -> Vec<String> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let selector = format!("kubernetes.io/service-name={service}");
        let slices = self
            .rt
            .block_on(api.list(&ListParams::default().labels(&selector)))
            .map(|l| l.items)
            .unwrap_or_default();
        slices
            .into_iter()
            .flat_map(|s| s.endpoints)
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            .flat_map(|e| e.addresses)
            .collect()
    }

    /// The directory on this machine holding a claim's volume (the provisioner's hostPath).
    pub fn claim_dir(&self, ns: &str, claim: &str) -> Option<std::path::PathBuf> {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let volume = self
            .rt
            .block_on(claims.get_opt(claim))
            .ok()??
            .spec?
            .volume_name?;
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let spec = self.rt.block_on(volumes.get_opt(&volume)).ok()??.spec?;
        spec.host_path
            .map(|h| h.path)
            .or(spec.local.map(|l| l.path))
            .map(std::path::PathBuf::from)
    }

    /// A pod's IP, once it has one.
    pub fn pod_ip(&self, ns: &str, name: &str) -> Option<String> {
        self.pod(ns, name)?.status?.pod_ip
    }

    /// A `RedisCluster` as the API server returns it.
    pub fn redis_cluster(&self, ns: &str, name: &str) -> Option<Value> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), ns, &redis_clusters());
        let obj = self.rt.block_on(api.get_opt(name)).ok().flatten()?;
        serde_json::to_value(obj).ok()
    }

    /// `(status, reason, message)` of a `RedisCluster`'s condition.
    pub fn condition(&self, ns: &str, name: &str, type_: &str) -> Option<(String, String, String)> {
        let rc = self.redis_cluster(ns, name)?;
        let c = rc["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)?
            .clone();
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        Some((s("status"), s("reason"), s("message")))
    }

    /// The Events about an object, oldest first: `(type, reason, note)`.
    pub fn events(
        &self,
        ns: &str,
        kind: &str,
        name: &str,
    ) -> Result<Vec<(String, String, String)>, String> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let selector = format!("involvedObject.kind={kind},involvedObject.name={name}");
        let mut events = self
            .rt
            .block_on(api.list(&ListParams::default().fields(&selector)))
            .map_err(err)?
            .items;
        events.sort_by_key(|e| {
            e.last_timestamp
                .clone()
                .or(e.first_timestamp.clone())
                .map(|t| t.0)
        });
        Ok(events
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect())
    }
}

/// The network namespace the node agent made for a pod (see the contract in
/// `e2e/node-agent/README.md`).
pub fn pod_netns(pod: &Pod) -> Option<String> {
    let uid = pod.metadata.uid.as_deref()?;
    let hex: String = uid.chars().filter(|c| *c != '-').take(8).collect();
    Some(format!("kcp-{hex}"))
}

/// The processes running in a pod (all its containers): `(pid, command name)`. This is the
/// machine's view, not the API's: a Terminating pod's processes are listed until they exit.
pub fn pod_processes(pod: &Pod) -> Vec<(u32, String)> {
    let Some(ns) = pod_netns(pod) else {
        return vec![];
    };
    net::sh(&["ip", "netns", "pids", &ns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter_map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            Some((pid, comm.trim().to_string()))
        })
        .collect()
}
