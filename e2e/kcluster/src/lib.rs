//! A real Kubernetes on one machine, in regions: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, kube-proxy and CoreDNS, all real (built from their Go modules by
//! `hack/build-controlplane.sh`), with `redis-node-agent` playing the kubelet. The e2e drill
//! runs on it, and `kcluster up` leaves one running for trying the operator by hand
//! (`docs/real-cluster.md`).

pub mod addons;
pub mod client;
pub mod cluster;
pub mod daemon;
pub mod net;
pub mod pki;
