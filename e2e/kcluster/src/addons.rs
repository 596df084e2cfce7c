//! The cluster's add-ons, as a cluster admin would install them (manifests in `manifests/`).

pub const STORAGE: &str = include_str!("../manifests/storage.yaml");
/// `@DNS_IP@`: the kube-dns ClusterIP.
pub const COREDNS: &str = include_str!("../manifests/coredns.yaml");
/// `@PLACEMENT@`: the ConfigMap's data lines (`  "<instance>": "region-<r>"`).
pub const PLACEMENT: &str = include_str!("../manifests/placement.yaml");
/// `@USER@`: the provisioner's user name.
pub const PROVISIONER_RBAC: &str = include_str!("../manifests/provisioner-rbac.yaml");
