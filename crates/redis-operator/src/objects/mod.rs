//! What a `RedisCluster` becomes: pure functions from the resource to the Kubernetes objects it
//! owns. No client here; the reconciler applies what these return with server-side apply.
//!
//! Every object is a typed k8s-openapi struct literal, so a misspelled field does not compile
//! (a `json!` blob deserialised into these types would drop it silently). One module per object
//! family: `data` (the data StatefulSet), `sentinel` (the Sentinels' StatefulSet), `services`,
//! `policy` (RBAC, PodDisruptionBudgets, NetworkPolicies), `config_map`; `pod` holds what every
//! pod template shares. Names come from
//! [`redis_cluster_api::names`]; configuration files from [`crate::config`]; scripts from
//! [`crate::scripts`].
//!
//! Why a StatefulSet and not operator-managed pods: it gives stable pod names (`<name>-N`, which
//! the designated leader "ordinal 0" relies on, README.md "Safety rules"), a PVC per pod that
//! survives pod deletion, stable DNS through the headless Service (peers replicate from
//! `<pod>.<name>-headless`, never a pod IP), and a rolling update that goes from the highest
//! ordinal down, so the designated leader (pod 0) restarts last. Its limits are accepted
//! knowingly: scale-down and rolling updates always go from the highest ordinal down, which after
//! a failover may be the primary (the restart is then a failover; README "Known limitations"),
//! and per-pod labels (`redis.io/role`, `redis.io/instance`) and the topology annotation are
//! patched onto the pods by the operator.

mod config_map;
mod data;
mod pod;
mod policy;
mod sentinel;
mod services;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use redis_cluster_api::labels as l;
use redis_cluster_api::{ClusterMode, RedisCluster};
use serde_json::Value;

pub use pod::REDIS_CONTAINER;

/// Container images and knobs the operator is started with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub redis_image: String,
    pub instance_manager_image: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            redis_image: "redis:7.2".into(),
            instance_manager_image: "ghcr.io/example/redis-operator:0.1.0".into(),
        }
    }
}

/// Everything the cluster owns except the pods' per-pod metadata. [`Owned::objects`] is the
/// one apply order.
#[derive(Clone, Debug)]
pub struct Owned {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub config: ConfigMap,
    pub services: Vec<Service>,
    pub pdb: PodDisruptionBudget,
    pub network_policy: NetworkPolicy,
    pub statefulset: StatefulSet,
    /// The Sentinel quorum, present exactly in `mode: sentinel`. Its StatefulSet is scaled to 0
    /// (not removed) while the cluster replicates an external source, so promotion only changes
    /// `replicas`.
    pub sentinel: Option<SentinelObjects>,
}

/// The objects of a `mode: sentinel` cluster's Sentinels.
#[derive(Clone, Debug)]
pub struct SentinelObjects {
    /// `<name>-sentinel-headless` (peer DNS), then `<name>-sentinel` (clients).
    pub services: Vec<Service>,
    pub pdb: PodDisruptionBudget,
    pub network_policy: NetworkPolicy,
    pub statefulset: StatefulSet,
}

/// Declares [`Object`], one variant per kind the operator owns, each named after its
/// k8s-openapi type, which supplies its apiVersion and kind.
macro_rules! owned_kinds {
    ($($kind:ident),* $(,)?) => {
        /// One object a cluster owns, borrowed from [`Owned`]. A new kind is a new variant, and
        /// every consumer that must handle it stops compiling until it does.
        #[derive(Clone, Copy, Debug)]
        pub enum Object<'a> {
            $($kind(&'a $kind),)*
        }

        impl Object<'_> {
            pub fn api_version(&self) -> &'static str {
                match self {
                    $(Object::$kind(_) => <$kind as k8s_openapi::Resource>::API_VERSION,)*
                }
            }

            pub fn kind(&self) -> &'static str {
                match self {
                    $(Object::$kind(_) => <$kind as k8s_openapi::Resource>::KIND,)*
                }
            }

            pub fn meta(&self) -> &ObjectMeta {
                match self {
                    $(Object::$kind(o) => &o.metadata,)*
                }
            }

            /// The object as JSON with its apiVersion and kind: what `render` prints and what
            /// server-side apply sends.
            pub fn to_value(&self) -> Value {
                let mut v = match self {
                    $(Object::$kind(o) => serde_json::to_value(o),)*
                }
                .expect("k8s objects serialize");
                v["apiVersion"] = self.api_version().into();
                v["kind"] = self.kind().into();
                v
            }
        }
    };
}

owned_kinds!(
    ServiceAccount,
    Role,
    RoleBinding,
    ConfigMap,
    Service,
    PodDisruptionBudget,
    NetworkPolicy,
    StatefulSet,
);

impl Owned {
    /// Every object, in apply order: what the pods need before they exist (their account, its
    /// permissions, their configuration), the Services, the PDB and NetworkPolicy, the data
    /// StatefulSet, then the Sentinels (which watch the data pods). `render`, the in-memory
    /// platform and the Kubernetes platform all iterate this list.
    pub fn objects(&self) -> Vec<Object<'_>> {
        let mut out = vec![
            Object::ServiceAccount(&self.service_account),
            Object::Role(&self.role),
            Object::RoleBinding(&self.role_binding),
            Object::ConfigMap(&self.config),
        ];
        out.extend(self.services.iter().map(Object::Service));
        out.push(Object::PodDisruptionBudget(&self.pdb));
        out.push(Object::NetworkPolicy(&self.network_policy));
        out.push(Object::StatefulSet(&self.statefulset));
        if let Some(sentinel) = &self.sentinel {
            out.extend(sentinel.services.iter().map(Object::Service));
            out.push(Object::PodDisruptionBudget(&sentinel.pdb));
            out.push(Object::NetworkPolicy(&sentinel.network_policy));
            out.push(Object::StatefulSet(&sentinel.statefulset));
        }
        out
    }

    /// Every object as JSON, for `redis-operator render` and offline validation.
    pub fn to_values(&self) -> Vec<Value> {
        self.objects().iter().map(Object::to_value).collect()
    }
}

/// Value of [`l::APP_NAME`] on everything the operator creates.
const APP: &str = "redis";
/// Values of [`l::APP_COMPONENT`]: data pods and their objects, Sentinels and theirs.
const COMPONENT_REDIS: &str = "redis";
const COMPONENT_SENTINEL: &str = "sentinel";

/// Labels on every object of cluster `name`.
pub fn common_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (l::CLUSTER.into(), name.into()),
        (l::APP_NAME.into(), APP.into()),
        (l::APP_INSTANCE.into(), name.into()),
        (l::APP_COMPONENT.into(), COMPONENT_REDIS.into()),
        (l::APP_MANAGED_BY.into(), l::MANAGER.into()),
    ])
}

/// Labels on the Sentinel pods and on every object that exists only for them (no
/// [`l::CLUSTER`]: see [`l::SENTINEL`]).
pub fn sentinel_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (l::SENTINEL.into(), name.into()),
        (l::APP_NAME.into(), APP.into()),
        (l::APP_INSTANCE.into(), name.into()),
        (l::APP_COMPONENT.into(), COMPONENT_SENTINEL.into()),
        (l::APP_MANAGED_BY.into(), l::MANAGER.into()),
    ])
}

/// The selector of the data pods of cluster `name`.
fn data_selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(l::CLUSTER.into(), name.into())])
}

/// The selector of the Sentinel pods of cluster `name`.
fn sentinel_selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(l::SENTINEL.into(), name.into())])
}

/// What every builder needs to know about the cluster.
struct Cluster<'a> {
    rc: &'a RedisCluster,
    settings: &'a Settings,
    name: String,
    ns: String,
    owner: OwnerReference,
}

impl<'a> Cluster<'a> {
    fn new(rc: &'a RedisCluster, settings: &'a Settings) -> Self {
        Cluster {
            rc,
            settings,
            name: rc.name_any(),
            ns: rc.namespace().unwrap_or_else(|| "default".into()),
            owner: rc
                .controller_owner_ref(&())
                .expect("a stored RedisCluster has a uid"),
        }
    }

    /// Metadata of an object of the data pods: namespace, [`common_labels`], owned by the
    /// cluster (garbage-collected with it).
    fn meta(&self, name: String) -> ObjectMeta {
        self.meta_with(name, common_labels(&self.name))
    }

    /// Metadata of an object that exists only for the Sentinels.
    fn sentinel_meta(&self, name: String) -> ObjectMeta {
        self.meta_with(name, sentinel_labels(&self.name))
    }

    fn meta_with(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.ns.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.owner.clone()]),
            ..Default::default()
        }
    }
}

/// Build everything a cluster owns.
pub fn build(rc: &RedisCluster, settings: &Settings) -> Owned {
    let c = Cluster::new(rc, settings);
    Owned {
        service_account: policy::service_account(&c),
        role: policy::role(&c),
        role_binding: policy::role_binding(&c),
        config: config_map::config_map(&c),
        services: services::data_services(&c),
        pdb: policy::data_pdb(&c),
        network_policy: policy::data_network_policy(&c),
        statefulset: data::statefulset(&c),
        sentinel: (rc.spec.mode == ClusterMode::Sentinel).then(|| SentinelObjects {
            services: services::sentinel_services(&c),
            pdb: policy::sentinel_pdb(&c),
            network_policy: policy::sentinel_network_policy(&c),
            statefulset: sentinel::statefulset(&c),
        }),
    }
}
