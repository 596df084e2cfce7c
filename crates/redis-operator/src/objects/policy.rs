//! Who may do what: the instance managers' ServiceAccount, Role and RoleBinding; how many pods
//! may be disrupted at once (PodDisruptionBudgets); which ports are reachable (NetworkPolicies).

use std::collections::BTreeMap;

use k8s_openapi::Resource;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use redis_cluster_api::names;

use super::pod::selector;
use super::{Cluster, data_selector, sentinel_selector};

pub(super) fn service_account(c: &Cluster) -> ServiceAccount {
    ServiceAccount {
        metadata: c.meta(names::instance_manager_account(&c.name)),
        // The pods mount the token into the instance manager only (pod::api_access_volume).
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// The instance managers watch their own pod (its topology annotation) and nothing else: the
/// rule names the cluster's data pods (a list or watch is allowed by `resourceNames` when it
/// selects `metadata.name=<one of them>`, which the instance manager's watch does), so an
/// instance manager cannot read the other pods of its namespace. It follows `instances`.
pub(super) fn role(c: &Cluster) -> Role {
    let pods = (0..c.rc.spec.instances.max(0) as u32)
        .map(|i| names::pod_name(&c.name, i))
        .collect();
    Role {
        metadata: c.meta(names::instance_manager_account(&c.name)),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".into()]),
            resource_names: Some(pods),
            // Its watch lists then watches; it never reads a pod by name.
            verbs: vec!["list".into(), "watch".into()],
            ..Default::default()
        }]),
    }
}

pub(super) fn role_binding(c: &Cluster) -> RoleBinding {
    let account = names::instance_manager_account(&c.name);
    RoleBinding {
        metadata: c.meta(account.clone()),
        role_ref: RoleRef {
            api_group: Role::GROUP.into(),
            kind: Role::KIND.into(),
            name: account.clone(),
        },
        subjects: Some(vec![Subject {
            kind: ServiceAccount::KIND.into(),
            name: account,
            namespace: Some(c.ns.clone()),
            ..Default::default()
        }]),
    }
}

pub(super) fn data_pdb(c: &Cluster) -> PodDisruptionBudget {
    pdb(
        c.meta(names::pod_disruption_budget(&c.name)),
        data_selector(&c.name),
    )
}

pub(super) fn sentinel_pdb(c: &Cluster) -> PodDisruptionBudget {
    pdb(
        c.sentinel_meta(names::sentinel_pod_disruption_budget(&c.name)),
        sentinel_selector(&c.name),
    )
}

/// One pod at a time: a drain never takes the quorum (or a replica and the primary) at once.
fn pdb(metadata: ObjectMeta, pods: BTreeMap<String, String>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector(pods)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Only Redis and the instance manager's HTTP port are reachable; clients, peers, the other
/// region and Prometheus may come from anywhere, so no source restriction.
pub(super) fn data_network_policy(c: &Cluster) -> NetworkPolicy {
    network_policy(
        c.meta(names::network_policy(&c.name)),
        data_selector(&c.name),
        &[names::REDIS_PORT, names::METRICS_PORT],
    )
}

/// Clients and peer Sentinels may come from anywhere, as for Redis itself (the data pods'
/// policy already admits the Sentinels on 6379: it restricts ports, not sources).
pub(super) fn sentinel_network_policy(c: &Cluster) -> NetworkPolicy {
    network_policy(
        c.sentinel_meta(names::sentinel_service(&c.name)),
        sentinel_selector(&c.name),
        &[names::SENTINEL_PORT],
    )
}

/// Ingress to `pods` on `ports` (TCP) only.
fn network_policy(
    metadata: ObjectMeta,
    pods: BTreeMap<String, String>,
    ports: &[u16],
) -> NetworkPolicy {
    NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(pods)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                ports: Some(
                    ports
                        .iter()
                        .map(|port| NetworkPolicyPort {
                            port: Some(IntOrString::Int((*port).into())),
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}
