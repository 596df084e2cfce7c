//! The multi-region DR drill: the spec's story on one machine, with real `redis-server`s, the
//! real `redis-instance-manager`, a real Prometheus, and the operator's real reconcile code
//! driving a simulated Kubernetes API (see [`sim`]). `make demo` narrates it; `make test` runs it.

pub mod bench;
pub mod bench_failover;
pub mod controllers;
pub mod net;
pub mod procs;
pub mod prom;
pub mod resp;
pub mod scenario;
pub mod sim;
pub mod source_failover;
