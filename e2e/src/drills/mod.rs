//! The drills: each a story told as a short list of steps, each step a function whose doc comment
//! is the banner it prints.
//!
//! - [`replica_mode`]: the spec's DR drill (`redis-drill`, `make demo`);
//! - [`source_failover`]: replica mode against a Sentinel-managed external source
//!   (`redis-drill --source-failover`);
//! - [`cluster_faults`]: the faults only a real cluster has (`redis-drill --cluster-faults`);
//! - [`tls`]: the spec's TLS sample against a TLS-only source (the last step of
//!   `redis-drill --source-failover`).

pub mod cluster_faults;
pub mod replica_mode;
pub mod source_failover;
pub mod tls;
