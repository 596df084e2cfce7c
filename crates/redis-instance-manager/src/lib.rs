//! `redis-instance-manager`: the sidecar next to every redis-server of a `RedisCluster`.
//!
//! It reads the pod's desired topology (annotation `redis.io/topology`, see
//! [`redis_cluster_api::topology`]), applies it to the local Redis, probes the upstream itself
//! (true lag, fast detection of silent cuts) and serves metrics, health and a JSON status.
//!
//! Each tick of the [`reconcile`] loop is observe -> decide -> act -> report:
//! - observe (I/O): [`observe`] reads the local Redis, probes the upstream and asks the
//!   Sentinels, concurrently; [`source`] delivers the topology annotation.
//! - decide (pure): [`intake`] (which topology is in force), [`commands`] (which commands bring
//!   Redis there), [`assess`] (link state, readiness, the error to show, the `/status` report),
//!   [`lag`], [`divergence`] (writes a new upstream never received), [`sentinel`] (what the
//!   Sentinels elected); [`info`] and [`downward`] parse.
//! - act (I/O): [`redis_io`] executes the commands.
//! - report: [`metrics`] and [`http`] serve what the tick published.

pub mod assess;
pub mod commands;
pub mod divergence;
pub mod downward;
pub mod http;
pub mod info;
pub mod intake;
pub mod lag;
pub mod metrics;
pub mod observe;
pub mod reconcile;
pub mod redis_io;
pub mod secret;
pub mod sentinel;
pub mod source;
#[cfg(test)]
mod testing;

/// `host:port` as Redis and users write it (an IPv6 host in brackets).
pub fn addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
