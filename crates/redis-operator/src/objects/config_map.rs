//! The ConfigMap every pod of the cluster mounts: the rendered configuration ([`crate::config`])
//! and, in `mode: sentinel`, the primary the operator last recorded.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use redis_cluster_api::ClusterMode;
use redis_cluster_api::names;

use super::Cluster;
use crate::config::{redis_conf, sentinel_conf};

pub(super) fn config_map(c: &Cluster) -> ConfigMap {
    let mut data = BTreeMap::from([(names::REDIS_CONF_KEY.to_string(), redis_conf(c.rc))]);
    if c.rc.spec.mode == ClusterMode::Sentinel {
        data.insert(names::SENTINEL_CONF_KEY.into(), sentinel_conf(c.rc));
        // Read by the init scripts of both kinds of pod when no Sentinel answers: the primary
        // the operator last recorded (empty when none).
        data.insert(
            names::PRIMARY_KEY.into(),
            recorded_primary(c).unwrap_or_default(),
        );
    }
    ConfigMap {
        metadata: c.meta(names::config_map(&c.name)),
        data: Some(data),
        ..Default::default()
    }
}

/// `status.currentPrimary` as a stable address, if it names a pod of this cluster.
fn recorded_primary(c: &Cluster) -> Option<String> {
    let pod = c.rc.status.as_ref()?.current_primary.as_ref()?;
    names::ordinal_of(&c.name, pod)?;
    Some(names::pod_fqdn(&c.name, &c.ns, pod))
}
