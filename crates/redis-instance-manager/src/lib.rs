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
//!   Sentinels elected), [`history`] (whether a sync from the upstream keeps our data: the
//!   replication gate's decision); [`info`] and [`downward`] parse.
//! - the replication gate ([`gate`]): closed by default, opened by the loop only when
//!   [`history`] says a sync is safe; [`state`] keeps what the data followed across restarts.
//! - act (I/O): [`redis_io`] executes the commands; [`salvage`] saves what a resync would
//!   discard before the gate opens.
//! - report: [`metrics`] and [`http`] serve what the tick published.

pub mod assess;
pub mod commands;
pub mod divergence;
pub mod downward;
pub mod gate;
pub mod history;
pub mod http;
pub mod info;
pub mod intake;
pub mod lag;
pub mod metrics;
pub mod observe;
pub mod reconcile;
pub mod redis_io;
pub mod salvage;
pub mod secret;
pub mod sentinel;
pub mod similarity;
pub mod source;
pub mod state;
pub mod stats;
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

/// `t` as RFC 3339 in UTC, to the second (`2026-01-01T00:00:00Z`).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_in_utc() {
        let at = |s| super::rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_767_225_599), "2025-12-31T23:59:59Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
    }
}
