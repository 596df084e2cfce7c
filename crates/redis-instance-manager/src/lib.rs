//! `redis-instance-manager`: the sidecar next to every redis-server of a `RedisCluster`.
//!
//! It reads the pod's desired topology (annotation `redis.io/topology`, see
//! [`redis_cluster_api::topology`]), applies it to the local Redis, probes the upstream itself
//! (true lag, fast detection of silent cuts) and serves metrics, health and a JSON status.
//!
//! - [`commands`]: which commands, pure: desired topology + observed INFO/CONFIG -> commands.
//! - [`intake`]: which topology is in force (versions, epochs), pure.
//! - [`lag`]: lag in bytes and seconds from upstream offsets, pure.
//! - [`divergence`]: writes a replica held that its new upstream never received, pure.
//! - [`sentinel`]: what the Sentinels elected (choice among their answers), pure.
//! - [`info`], [`downward`]: parsers, pure.
//! - [`redis_io`]: the fred adapter; [`reconcile`]: the loop; [`source`]: file/kube sources;
//!   [`metrics`], [`http`]: what is served.

pub mod commands;
pub mod divergence;
pub mod downward;
pub mod http;
pub mod info;
pub mod intake;
pub mod lag;
pub mod metrics;
pub mod reconcile;
pub mod redis_io;
pub mod secret;
pub mod sentinel;
pub mod source;
