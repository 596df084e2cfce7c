//! redis-node-agent: plays the kubelet (and an external PVC provisioner) for the real local
//! control plane of the e2e tests. See README.md for what is and is not simulated.

pub mod agent;
pub mod atomic_writer;
pub mod backoff;
pub mod channel;
pub mod crilog;
pub mod envvars;
pub mod events;
pub mod ipam;
pub mod model;
pub mod netns;
pub mod probe;
pub mod provisioner;
pub mod quantity;
pub mod runtime;
pub mod selftest;
pub mod server;
pub mod volumes;
pub mod worker;

/// Patch parameters of every write the agent makes, with the kubelet's field manager, so that
/// `managedFields` tells the kubelet's writes from the operator's.
pub fn kubelet_patch() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some("kubelet".into()),
        ..Default::default()
    }
}
