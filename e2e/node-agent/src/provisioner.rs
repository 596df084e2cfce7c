//! The `provisioner` subcommand: dynamic provisioning for StorageClasses whose provisioner is
//! `redis-e2e.io/local`, as an external provisioner does it. For a claim of such a class that
//! the scheduler has placed (`volume.kubernetes.io/selected-node`, WaitForFirstConsumer), it
//! creates a directory and a hostPath PV for it, with node affinity on the selected node's
//! region (so a pod can move within its region). Kubernetes' PV controller binds them. A
//! Released PV with reclaim policy Delete loses its directory and is deleted. The directory
//! lives as long as the claim, whatever happens to the pods.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

pub const PROVISIONER: &str = "redis-e2e.io/local";
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

#[derive(clap::Args, Clone, Debug)]
pub struct ProvisionerArgs {
    /// Kubeconfig of the provisioner's own identity.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Where the volumes' directories are created.
    #[arg(long)]
    pub state_dir: PathBuf,
}

/// The PV for `claim` (of a class with this provisioner), placed in `region`, or None when the
/// claim is not ours to provision (yet).
pub fn pv_for_claim(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    region: &str,
    state_dir: &std::path::Path,
) -> Option<Value> {
    if class.provisioner != PROVISIONER {
        return None;
    }
    let spec = claim.spec.as_ref()?;
    if spec.volume_name.as_deref().is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let uid = claim.metadata.uid.as_deref()?;
    let name = format!("pvc-{uid}");
    let storage = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "1Gi".into());
    let path = state_dir.join(&name);
    Some(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": {PROVISIONED_BY: PROVISIONER},
            "labels": {REGION_LABEL: region},
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "storageClassName": class.metadata.name,
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
            "hostPath": {"path": path.display().to_string(), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": claim.metadata.namespace,
                "name": claim.metadata.name,
                "uid": uid,
            },
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": REGION_LABEL, "operator": "In", "values": [region]}
            ]}]}},
        },
    }))
}

/// Whether `pv` is one of ours, released, and to be deleted (with its directory).
pub fn to_delete(pv: &PersistentVolume) -> Option<PathBuf> {
    let ours = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY))
        .is_some_and(|p| p == PROVISIONER);
    let spec = pv.spec.as_ref()?;
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let delete = spec
        .persistent_volume_reclaim_policy
        .as_deref()
        .unwrap_or("Delete")
        == "Delete";
    (ours && released && delete && pv.metadata.deletion_timestamp.is_none())
        .then(|| spec.host_path.as_ref().map(|h| PathBuf::from(&h.path)))
        .flatten()
}

struct Provisioner {
    client: kube::Client,
    state_dir: PathBuf,
}

impl Provisioner {
    async fn claim(&self, claim: &PersistentVolumeClaim) -> Result<()> {
        let Some(node) = claim
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SELECTED_NODE))
            .cloned()
        else {
            return Ok(());
        };
        let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase != Some("Pending") || claim.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(class_name) = claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
        else {
            return Ok(());
        };
        let class: StorageClass = Api::all(self.client.clone()).get(&class_name).await?;
        if class.provisioner != PROVISIONER {
            return Ok(());
        }
        let node: Node = Api::all(self.client.clone()).get(&node).await?;
        let region = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REGION_LABEL))
            .cloned()
            .context("the selected node has no region label")?;
        let Some(pv) = pv_for_claim(claim, &class, &region, &self.state_dir) else {
            return Ok(());
        };
        let dir = PathBuf::from(pv["spec"]["hostPath"]["path"].as_str().unwrap_or_default());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // Any pod user may write; the kubelet's fsGroup handling narrows it to the pod's group.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        let pv: PersistentVolume = serde_json::from_value(pv)?;
        let name = pv.metadata.name.clone().unwrap_or_default();
        match Api::<PersistentVolume>::all(self.client.clone())
            .create(&PostParams::default(), &pv)
            .await
        {
            Ok(_) => {
                tracing::info!(pv = %name, claim = ?claim.metadata.name, %region, "provisioned")
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    async fn volume(&self, pv: &PersistentVolume) -> Result<()> {
        let Some(dir) = to_delete(pv) else {
            return Ok(());
        };
        if dir.starts_with(&self.state_dir) {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", dir.display())),
            }
        }
        let name = pv.metadata.name.clone().unwrap_or_default();
        match Api::<PersistentVolume>::all(self.client.clone())
            .delete(&name, &DeleteParams::default())
            .await
        {
            Ok(_) => tracing::info!(pv = %name, "deleted with its directory"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

/// Claims provisioned at once.
const CONCURRENT_CLAIMS: usize = 16;

pub async fn run(args: ProvisionerArgs) -> Result<()> {
    std::fs::create_dir_all(&args.state_dir)?;
    let state_dir = std::fs::canonicalize(&args.state_dir)?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let p = Arc::new(Provisioner {
        client: client.clone(),
        state_dir,
    });
    let claims = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects();
    let volumes = watcher(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .applied_objects();
    let p1 = p.clone();
    // Claims are provisioned concurrently: each costs three requests, which take seconds on an
    // API server busy with hundreds of new pods (`--bench-scale 300`), and one at a time the
    // last pods waited for their volumes past the scheduler's binding timeout.
    let claims_task = claims.for_each_concurrent(CONCURRENT_CLAIMS, |c| {
        let p1 = p1.clone();
        async move {
            match c {
                Ok(c) => {
                    if let Err(e) = p1.claim(&c).await {
                        tracing::warn!(claim = ?c.metadata.name, error = %e, "provisioning");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "claim watch"),
            }
        }
    });
    let volumes_task = async move {
        futures::pin_mut!(volumes);
        while let Some(v) = volumes.next().await {
            match v {
                Ok(v) => {
                    if let Err(e) = p.volume(&v).await {
                        tracing::warn!(pv = ?v.metadata.name, error = %e, "deleting");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "volume watch"),
            }
        }
    };
    // Claims whose provisioning failed once are retried by a periodic re-list.
    let resync = {
        let client = client.clone();
        let state_dir = std::fs::canonicalize(&args.state_dir)?;
        async move {
            let p = Provisioner {
                client: client.clone(),
                state_dir,
            };
            loop {
                tokio::time::sleep(Duration::from_secs(15)).await;
                if let Ok(list) = Api::<PersistentVolumeClaim>::all(client.clone())
                    .list(&Default::default())
                    .await
                {
                    for c in list {
                        let _ = p.claim(&c).await;
                    }
                }
                if let Ok(list) = Api::<PersistentVolume>::all(client.clone())
                    .list(&Default::default())
                    .await
                {
                    for v in list {
                        let _ = p.volume(&v).await;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = claims_task => {}
        _ = volumes_task => {}
        _ = resync => {}
    }
    anyhow::bail!("watches ended")
}

/// For tests and logs: the labels a provisioned PV carries.
pub fn pv_labels(pv: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(pv["metadata"]["labels"].clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(volume_name: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data-dr-redis-0", "namespace": "dr", "uid": "1234-abcd",
                "annotations": {SELECTED_NODE: "region-b-1"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-region",
                "resources": {"requests": {"storage": "1Gi"}}, "volumeName": volume_name},
            "status": {"phase": "Pending"}
        }))
        .unwrap()
    }

    fn class(provisioner: &str) -> StorageClass {
        serde_json::from_value(json!({
            "metadata": {"name": "local-region"},
            "provisioner": provisioner,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"
        }))
        .unwrap()
    }

    #[test]
    fn a_pv_per_claim_in_the_nodes_region() {
        let dir = std::path::Path::new("/state/volumes");
        let pv = pv_for_claim(&claim(None), &class(PROVISIONER), "region-b", dir).unwrap();
        assert_eq!(pv["metadata"]["name"], "pvc-1234-abcd");
        assert_eq!(pv["metadata"]["annotations"][PROVISIONED_BY], PROVISIONER);
        assert_eq!(pv["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(pv["spec"]["accessModes"], json!(["ReadWriteOnce"]));
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(
            pv["spec"]["hostPath"]["path"],
            "/state/volumes/pvc-1234-abcd"
        );
        assert_eq!(pv["spec"]["claimRef"]["uid"], "1234-abcd");
        assert_eq!(
            pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
            json!({"key": REGION_LABEL, "operator": "In", "values": ["region-b"]})
        );
        assert_eq!(pv_labels(&pv)[REGION_LABEL], "region-b");
        assert!(serde_json::from_value::<PersistentVolume>(pv).is_ok());
        assert!(
            pv_for_claim(&claim(Some("pvc-x")), &class(PROVISIONER), "region-b", dir).is_none()
        );
        assert!(pv_for_claim(&claim(None), &class("other.io/x"), "region-b", dir).is_none());
    }

    #[test]
    fn released_volumes_with_delete_policy_go() {
        let mut pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pvc-1", "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {"persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": "/state/volumes/pvc-1"}},
            "status": {"phase": "Released"}
        }))
        .unwrap();
        assert_eq!(to_delete(&pv), Some(PathBuf::from("/state/volumes/pvc-1")));
        pv.status.as_mut().unwrap().phase = Some("Bound".into());
        assert_eq!(to_delete(&pv), None);
        pv.status.as_mut().unwrap().phase = Some("Released".into());
        pv.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Retain".into());
        assert_eq!(to_delete(&pv), None);
        pv.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Delete".into());
        pv.metadata.annotations = None;
        assert_eq!(to_delete(&pv), None, "not provisioned here");
    }
}
