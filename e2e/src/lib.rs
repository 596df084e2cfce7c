//! The multi-region DR drill: the spec's story on one machine, with real `redis-server`s, the
//! real `redis-instance-manager`, a real Prometheus, and the operator's real reconcile code
//! driving a simulated Kubernetes API (see [`harness::sim`]). `make demo` narrates it; `make test`
//! runs it.
//!
//! - [`harness`]: what every drill and bench stands on (regions, the simulated Kubernetes, pods,
//!   observation, writers, checks);
//! - [`drills`]: the stories, each a short list of named steps;
//! - [`bench`], [`bench_failover`]: the measurements `make bench` and `make bench-failover` print.

pub mod bench;
pub mod bench_failover;
pub mod bench_reconcile;
pub mod bench_scale;
pub mod bench_switchover;
pub mod drills;
pub mod harness;
