//! What a tick's observations mean for this pod, pure: the state of the replication link,
//! whether the pod is ready, which error to show, and the `/status` report that carries them.
//!
//! The loop (`reconcile`) observes, lets `commands_for` decide and acts; what it then reports is
//! decided here from plain values, so every branch is covered by the table tests below without
//! a Redis (the real-Redis tests in `tests/` check the same behaviour end to end).

use redis_cluster_api::report::{
    HistoryBlock, HistoryPosition, InstanceReport, ObservedRole, PrimaryRestart, SameDataResync,
};
use redis_cluster_api::topology::{DesiredTopology, Role, Upstream, UpstreamKind};

use crate::addr;
use crate::history::Record;
use crate::info::{Observed, RedisConfig, RedisRole, UpstreamInfo};
use crate::lag::LagNow;
use crate::observe::{LocalError, Probe};
use crate::redis_io::IoError;
use crate::secret::PasswordFileError;
use crate::sentinel::View;

/// The upstream a topology asks this pod to replicate (replica role only).
pub fn desired_upstream(d: &DesiredTopology) -> Option<&Upstream> {
    match d.role {
        Role::Replica => d.upstream.as_ref(),
        Role::Primary | Role::Fenced => None,
    }
}

/// The replication link as reported (`masterLinkUp`, `linkError`, `redis_master_link_up`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    /// Why it is down, for a user; `None` when up or when there is no upstream.
    pub error: Option<String>,
}

/// The link is up only if Redis says `master_link_status:up` for the topology's upstream AND
/// the instance manager's own probe of that upstream answered this tick AND what the probe
/// reached is what Redis streams from: Redis alone keeps saying `up` through a silent cut until
/// `repl-timeout` (60 s), and keeps streaming from an old primary after the address moved to
/// another one (a failover behind a Service or a virtual IP while the old primary is still
/// reachable, or has vanished silently); the probe notices within one interval plus its
/// timeout (plus its connection's maximum age for a moved address). Each tick is judged on its
/// own, so a flapping link is reported as it is at each tick.
///
/// `blocked` is the replication gate's message while it refuses the upstream's history: the
/// link is down for that reason first.
pub fn link(
    upstream: Option<(&Upstream, &Probe)>,
    observed: Option<&Observed>,
    blocked: Option<&str>,
) -> Link {
    let down = |why: String| Link {
        up: false,
        error: Some(why),
    };
    if let Some(b) = blocked {
        return down(b.to_string());
    }
    let Some((up, probe)) = upstream else {
        return Link {
            up: false,
            error: None,
        };
    };
    let a = addr(&up.host, up.port);
    match (probe, observed) {
        (Probe::NotSent(e), _) => down(e.to_string()),
        (Probe::Failed(e), _) => down(link_message(up, &e.cause)),
        (Probe::Answered(_), None) => down("the local redis-server cannot be read".into()),
        (Probe::Answered(_), Some(o)) if o.master != Some((up.host.clone(), up.port)) => {
            down(format!("redis-server is not replicating {a} yet"))
        }
        (Probe::Answered(_), Some(o)) if o.master_sync_in_progress => {
            down(format!("sync from {a} in progress"))
        }
        (Probe::Answered(_), Some(o)) if !o.master_link_status_up => down(format!(
            "redis-server's replication link to {a} is down (master_link_status:down) although the source answers the instance manager's probe; if this persists, see the redis-server log"
        )),
        (Probe::Answered(info), Some(o)) => {
            match streams_from_what_the_address_leads_to(up, info, o) {
                Some(why) => down(why),
                None => Link {
                    up: true,
                    error: None,
                },
            }
        }
    }
}

/// Why a replica whose own link is up does not stream from what the upstream address leads to
/// now (None: it does). For the external source: the probe must reach a primary (a Service
/// that may also lead to a replica is said so), and the replica must follow that primary's
/// replication id. For a peer (a cascading replica may replicate another replica): the ids
/// only. Unknown ids (a Redis without them) are not judged.
fn streams_from_what_the_address_leads_to(
    up: &Upstream,
    info: &UpstreamInfo,
    o: &Observed,
) -> Option<String> {
    let a = addr(&up.host, up.port);
    let external = up.kind == UpstreamKind::External;
    let theirs = info.ids.as_ref().map(|i| i.replid.as_str());
    // A planned switchover's demoted primary: a replica in our own history whose link is down
    // (it waits for us to be promoted) takes no write and holds nothing we do not stream.
    let demoted_source = info.master_link_up == Some(false)
        && theirs.is_some_and(|t| !t.is_empty() && t == o.master_replid);
    if external && info.role == Some(RedisRole::Slave) && !demoted_source {
        let of = info
            .master
            .as_ref()
            .map(|(h, p)| format!(" of {}", addr(h, *p)))
            .unwrap_or_default();
        return Some(format!(
            "source.host {a} leads to a replica{of}, not to a primary: point source.host at the source's primary endpoint (its -leader Service); a Service that also leads to replicas is not a replication source"
        ));
    }
    let theirs = theirs?;
    let ours = o.master_replid.as_str();
    if ours.is_empty() || theirs.is_empty() || ours == theirs {
        return None;
    }
    Some(if external {
        format!(
            "source.host {a} now leads to a different primary (replication id {theirs}); this replica still streams from replication id {ours} (the primary it reached before the address moved, which may be partitioned away or gone): it follows the address again when that stream breaks"
        )
    } else {
        format!(
            "the upstream {a} now has replication id {theirs}; this replica still streams from replication id {ours}"
        )
    })
}

/// The user-facing message for a failed upstream probe (docs/instance-manager.md, "Errors a
/// user can act on", lists them).
pub fn link_message(up: &Upstream, e: &IoError) -> String {
    let a = addr(&up.host, up.port);
    match e {
        IoError::Auth(d) => format!(
            "the source {a} refused authentication: {d}; check that the Secret mounted at {} holds the source's password",
            up.password_file.as_deref().unwrap_or("(no passwordFile)")
        ),
        IoError::Unreachable(d) => format!("cannot reach the source {a}: {d}"),
        IoError::Tls(d) => format!(
            "TLS to the source {a} failed: {d}; check the CA and certificates of the cluster's tlsSecret"
        ),
        IoError::Redis(d) => format!("the source {a} answered with an error: {d}"),
    }
}

/// Whether the pod serves data as its role requires (`/readyz`, `ready` in `/status`).
///
/// Never without a topology, while Redis cannot be read, is loading, or is fenced. Role fenced:
/// never. Primary: Redis is a master. Replica: the link is up (Redis and probe) and no sync is
/// in progress. In sentinel mode the Sentinels own the role, so the pod is ready as what Redis
/// is: a master is; a replica of the topology's upstream needs the probed link, a replica of
/// another primary (the topology lags a Sentinel failover) Redis's own link.
pub fn ready(
    desired: Option<&DesiredTopology>,
    observed: Option<&Observed>,
    fenced: bool,
    link_up: bool,
) -> bool {
    let (Some(d), Some(o)) = (desired, observed) else {
        return false;
    };
    if o.loading || fenced {
        return false;
    }
    match (d.role, &d.sentinel) {
        (Role::Fenced, _) => false,
        (Role::Primary, None) => o.role == RedisRole::Master,
        (Role::Replica, None) => link_up && !o.master_sync_in_progress,
        (_, Some(_)) => match o.role {
            RedisRole::Master => true,
            RedisRole::Slave => {
                let probed =
                    desired_upstream(d).is_some_and(|u| o.master == Some((u.host.clone(), u.port)));
                (if probed {
                    link_up
                } else {
                    o.master_link_status_up
                }) && !o.master_sync_in_progress
            }
        },
    }
}

/// Everything a tick knows when it reports.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub pod: &'a str,
    /// The topology in force.
    pub desired: Option<&'a DesiredTopology>,
    pub applied_epoch: Option<u64>,
    /// The local Redis as read after acting.
    pub local: Result<&'a (Observed, RedisConfig), &'a LocalError>,
    pub local_password: Option<&'a PasswordFileError>,
    /// `Some` exactly when the topology names an upstream.
    pub probe: Option<&'a Probe>,
    /// Why the last delivered topology was refused or ignored.
    pub intake_error: Option<&'a str>,
    /// Why applying the topology failed this tick.
    pub apply_error: Option<&'a str>,
    pub lag: LagNow,
    /// The last reading of the upstream ([`crate::lag::Lag::last_seen`]).
    pub upstream_last_seen: Option<&'a redis_cluster_api::report::UpstreamContact>,
    pub sentinels: Option<&'a View>,
    pub diverged_bytes: Option<i64>,
    /// The replication gate refuses the upstream's history: the message and the report.
    pub blocked: Option<(&'a str, &'a HistoryBlock)>,
    /// The replication gate waits for the upstream (`history::Wait`): the message, and the
    /// frozen position of a primary demoted for a planned switchover.
    pub waiting: Option<(&'a str, Option<&'a HistoryPosition>)>,
    /// What the instance manager last recorded of this pod's data.
    pub record: Option<&'a Record>,
    /// Redis has been fenced since it booted, as far as this instance manager has seen (None:
    /// it has not watched this redis-server since its boot).
    pub booted_fenced: Option<bool>,
    /// Redis is a primary that restarted under a new replication id and is kept fenced.
    pub restarted_primary: Option<&'a PrimaryRestart>,
    /// The last full resync the gate let through for an upstream with the same data.
    pub same_data_resync: Option<&'a SameDataResync>,
    /// The last salvage of this pod's data before a resync (`salvage`).
    pub salvage: Option<&'a redis_cluster_api::report::Salvage>,
    /// Why saving what a resync would discard failed (the gate stays closed).
    pub salvage_error: Option<&'a str>,
    /// Which of the Secret's passwords the local Redis accepts (see `Manager::converge_passwords`).
    pub passwords: Option<&'a str>,
}

/// The `/status` report (`InstanceReport`), from which the metrics and `/readyz` are derived.
///
/// `error` shows one problem, the first of: applying the topology failed; the upstream cannot
/// be probed (its password or TLS files); the delivered topology was refused or is stale; the
/// local redis-server cannot be read; its password file cannot be read.
pub fn report(f: &Facts) -> InstanceReport {
    let local = f.local.ok();
    let observed = local.map(|(o, _)| o);
    let fenced = local.is_some_and(|(_, c)| c.fenced());
    let upstream = f.desired.and_then(desired_upstream).zip(f.probe);
    let link = link(
        upstream,
        observed,
        f.blocked
            .map(|(m, _)| m)
            .or(f.waiting.map(|(m, _)| m))
            .or(f.salvage_error),
    );
    let not_sent = match f.probe {
        Some(Probe::NotSent(e)) => Some(e.to_string()),
        _ => None,
    };
    let error = [
        f.apply_error.map(str::to_string),
        not_sent,
        f.intake_error.map(str::to_string),
        f.local.err().map(ToString::to_string),
        f.local_password.map(ToString::to_string),
    ]
    .into_iter()
    .flatten()
    .next();
    let elected = f.sentinels.and_then(|v| v.elected.as_ref());
    // A demoted primary waiting for its source's promotion (planned switchover) serves reads of
    // everything written, as nothing is written anywhere: it stays Ready, so that the Service
    // the source reaches it by keeps leading to it.
    let demoted = f.waiting.and_then(|(_, t)| t.cloned());
    let upstream_backlog_bytes = match f.probe {
        Some(Probe::Answered(info)) => info.repl_backlog_size,
        _ => None,
    };
    InstanceReport {
        pod: f.pod.to_string(),
        applied_epoch: f.applied_epoch,
        role: observed.map(|o| match o.role {
            RedisRole::Master => ObservedRole::Primary,
            RedisRole::Slave => ObservedRole::Replica,
        }),
        upstream: observed.and_then(|o| o.master.as_ref().map(|(h, p)| addr(h, *p))),
        ready: ready(f.desired, observed, fenced, link.up || demoted.is_some()),
        master_link_up: link.up,
        link_error: link.error,
        repl_offset: observed.map(|o| o.processed_offset()),
        upstream_offset: match f.probe {
            Some(Probe::Answered(info)) => info.master_repl_offset,
            _ => None,
        },
        lag_bytes: f.lag.bytes,
        lag_seconds: f.lag.seconds,
        upstream_last_seen: f.upstream_last_seen.cloned(),
        upstream_backlog_bytes,
        upstream_write_rate: f.lag.write_rate,
        backlog_outage_seconds: match (upstream_backlog_bytes, f.lag.bytes, f.lag.write_rate) {
            (Some(backlog), Some(lag), Some(rate)) => {
                Some(crate::lag::outage_seconds(backlog, lag, rate))
            }
            _ => None,
        },
        sync_in_progress: observed.is_some_and(|o| o.master_sync_in_progress),
        sync_full: observed.map_or(0, |o| o.sync_full),
        sync_partial_ok: observed.map_or(0, |o| o.sync_partial_ok),
        connected_replicas: observed.map_or(0, |o| o.connected_slaves),
        error,
        fenced,
        sentinel_primary: elected.map(|e| e.addr()),
        sentinel_epoch: elected.map(|e| e.config_epoch),
        sentinels_reachable: f.sentinels.map(|v| v.reachable),
        sentinel_failing_over: elected.map(|e| !e.settled),
        diverged_bytes: f.diverged_bytes,
        history_blocked: f.blocked.map(|(_, b)| b.clone()),
        demoted,
        master_replid: observed.map(|o| o.master_replid.clone()),
        master_replid2: observed.map(|o| o.master_replid2.clone()),
        second_repl_offset: observed.map(|o| o.second_repl_offset),
        master_repl_offset: observed.map(|o| o.master_repl_offset),
        keys: observed.map(|o| o.keys),
        loading: observed.map(|o| o.loading),
        booted_fenced: observed.and(f.booted_fenced),
        uptime_seconds: observed.map(|o| o.uptime_seconds),
        recorded_history: f.record.map(Record::position),
        restarted_primary: f.restarted_primary.cloned(),
        same_data_resync: f.same_data_resync.cloned(),
        salvage: f.salvage.cloned(),
        passwords: f.passwords.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::NoTlsFiles;
    use crate::info::UpstreamInfo;
    use crate::observe::UpstreamError;
    use crate::redis_io::{RedisError, Step};
    use crate::secret::SecretFileError;
    use crate::sentinel::{Elected, View};
    use crate::testing::*;

    const SRC: &str = "src";

    fn src() -> Upstream {
        upstream(SRC, 6379, false, None)
    }

    fn answered(offset: i64) -> Probe {
        Probe::Answered(UpstreamInfo {
            master_repl_offset: Some(offset),
            repl_backlog_size: Some(1_048_576),
            ..Default::default()
        })
    }

    /// The replication id every local replica of the rows follows.
    const OURS: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const THEIRS: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    /// The probe reached a Redis with `role` and replication id `replid`.
    fn reached(role: RedisRole, replid: &str) -> Probe {
        Probe::Answered(UpstreamInfo {
            master_repl_offset: Some(100),
            ids: Some(crate::divergence::UpstreamIds {
                replid: replid.into(),
                replid2: "0000000000000000000000000000000000000000".into(),
                second_repl_offset: -1,
            }),
            role: Some(role),
            master: (role == RedisRole::Slave).then(|| ("src-0".to_string(), 6379)),
            repl_backlog_size: None,
            master_link_up: (role == RedisRole::Slave).then_some(true),
        })
    }

    fn failed(step: Step, cause: IoError) -> Probe {
        Probe::Failed(RedisError {
            addr: "src:6379".into(),
            step,
            cause,
        })
    }

    fn timeout() -> Probe {
        failed(
            Step::InfoReplication,
            IoError::Unreachable("no answer within the probe timeout".into()),
        )
    }

    fn missing_password_file() -> Probe {
        Probe::NotSent(UpstreamError::PasswordFile(PasswordFileError::Source {
            path: "/etc/redis-source/password".into(),
            reason: SecretFileError::Missing,
        }))
    }

    fn master() -> Observed {
        observed(RedisRole::Master, None)
    }

    /// A replica of `host:6379` with its link up, no sync.
    fn replica_of(host: &str) -> Observed {
        observed(RedisRole::Slave, Some((host, 6379)))
    }

    fn link_down(mut o: Observed) -> Observed {
        o.master_link_status_up = false;
        o
    }

    fn syncing(mut o: Observed) -> Observed {
        o.master_sync_in_progress = true;
        o
    }

    fn loading(mut o: Observed) -> Observed {
        o.loading = true;
        o
    }

    /// The upstream probe, as a row says it.
    #[derive(Clone, Copy, Debug)]
    enum P {
        /// The topology names no upstream (primary, fenced, no topology yet).
        NoUpstream,
        Answered,
        Timeout,
        ConnectTimeout,
        Refused,
        WrongPass,
        NoPasswordFile,
        BadCertificate,
        ErrorReply,
        PasswordFileMissing,
        TlsFilesMissing,
        /// Answered, the upstream being `[fd00::1]:6379`.
        AnsweredV6,
        /// The source's address leads to the primary this replica follows.
        SamePrimary,
        /// ... to another primary (a failover behind the address).
        OtherPrimary,
        /// ... to a replica (a Service that also leads to replicas).
        SourceIsAReplica,
        /// The source is a replica in our history with its own link down: a planned
        /// switchover's demoted primary, waiting for this pod's promotion.
        DemotedSource,
        /// A peer upstream that is itself a replica of the same history (cascading).
        PeerReplica,
        /// A peer upstream with another replication id.
        PeerOtherId,
    }

    /// The local Redis, as a row says it.
    #[derive(Clone, Copy, Debug)]
    enum L {
        Unreadable,
        Master,
        MasterLoading,
        /// Replica of `src:6379`, link up, no sync.
        Src,
        SrcLinkDown,
        SrcSyncing,
        SrcSyncingLinkDown,
        SrcLoading,
        /// Replica of `src:6380`.
        SrcOtherPort,
        /// Replica of the former upstream, link up.
        OldSrc,
        /// Replica of the primary the Sentinels elected, which the topology does not name yet.
        Elected,
        ElectedLinkDown,
        ElectedSyncing,
    }

    impl L {
        fn observed(self) -> Option<Observed> {
            let replica = |host, port| {
                let mut o = observed(RedisRole::Slave, Some((host, port)));
                o.master_replid = OURS.into();
                o
            };
            Some(match self {
                L::Unreadable => return None,
                L::Master => master(),
                L::MasterLoading => loading(master()),
                L::Src => replica(SRC, 6379),
                L::SrcLinkDown => link_down(replica(SRC, 6379)),
                L::SrcSyncing => syncing(replica(SRC, 6379)),
                L::SrcSyncingLinkDown => link_down(syncing(replica(SRC, 6379))),
                L::SrcLoading => loading(replica(SRC, 6379)),
                L::SrcOtherPort => replica(SRC, 6380),
                L::OldSrc => replica("old-src", 6379),
                L::Elected => replica("elected", 6379),
                L::ElectedLinkDown => link_down(replica("elected", 6379)),
                L::ElectedSyncing => syncing(replica("elected", 6379)),
            })
        }
    }

    impl P {
        /// The upstream the topology names and what its probe found.
        fn probe(self) -> Option<(Upstream, Probe)> {
            let unreachable = |why: &str| failed(Step::Connect, IoError::Unreachable(why.into()));
            let probe = match self {
                P::NoUpstream => return None,
                P::Answered => answered(100),
                P::AnsweredV6 => {
                    return Some((upstream("fd00::1", 6379, false, None), answered(1)));
                }
                P::SamePrimary => reached(RedisRole::Master, OURS),
                P::OtherPrimary => reached(RedisRole::Master, THEIRS),
                P::SourceIsAReplica => reached(RedisRole::Slave, OURS),
                P::DemotedSource => match reached(RedisRole::Slave, OURS) {
                    Probe::Answered(info) => Probe::Answered(UpstreamInfo {
                        master_link_up: Some(false),
                        ..info
                    }),
                    other => other,
                },
                P::PeerReplica | P::PeerOtherId => {
                    let up = Upstream {
                        kind: redis_cluster_api::topology::UpstreamKind::Peer,
                        ..src()
                    };
                    let id = if matches!(self, P::PeerReplica) {
                        OURS
                    } else {
                        THEIRS
                    };
                    return Some((up, reached(RedisRole::Slave, id)));
                }
                P::Timeout => timeout(),
                P::ConnectTimeout => unreachable("no answer within the probe timeout"),
                P::Refused => unreachable("connection refused"),
                P::WrongPass => failed(Step::Connect, IoError::Auth(WRONGPASS.into())),
                P::NoPasswordFile => {
                    let e = IoError::Auth(NOAUTH.into());
                    let up = Upstream {
                        password_file: None,
                        ..src()
                    };
                    return Some((up, failed(Step::Connect, e)));
                }
                P::BadCertificate => failed(Step::Connect, IoError::Tls(BAD_CERTIFICATE.into())),
                P::ErrorReply => failed(Step::InfoReplication, IoError::Redis("ERR x".into())),
                P::PasswordFileMissing => missing_password_file(),
                P::TlsFilesMissing => {
                    Probe::NotSent(UpstreamError::NoTlsFiles(NoTlsFiles("src:6379".into())))
                }
            };
            Some((src(), probe))
        }
    }

    const WRONGPASS: &str = "the server rejected the password (WRONGPASS)";
    const NOAUTH: &str = "the server requires a password but none is configured (set passwordFile)";
    const BAD_CERTIFICATE: &str = "the source's certificate was rejected: InvalidCertificate(BadSignature) (not signed by the CA in --tls-ca-file)";

    // The messages a user sees (docs/instance-manager.md, "Errors a user can act on").
    const TIMED_OUT: &str = "cannot reach the source src:6379: no answer within the probe timeout";
    const REFUSED: &str = "cannot reach the source src:6379: connection refused";
    const AUTH_FAILED: &str = "the source src:6379 refused authentication: the server rejected the password (WRONGPASS); check that the Secret mounted at /etc/redis-source/password holds the source's password";
    const AUTH_NO_FILE: &str = "the source src:6379 refused authentication: the server requires a password but none is configured (set passwordFile); check that the Secret mounted at (no passwordFile) holds the source's password";
    const TLS_FAILED: &str = "TLS to the source src:6379 failed: the source's certificate was rejected: InvalidCertificate(BadSignature) (not signed by the CA in --tls-ca-file); check the CA and certificates of the cluster's tlsSecret";
    const ERROR_REPLY: &str = "the source src:6379 answered with an error: ERR x";
    const FILE_MISSING: &str = "the source password file /etc/redis-source/password does not exist: mount the source's auth Secret (key \"password\") at that path";
    const NO_TLS_FILES: &str = "the upstream src:6379 requires TLS but this instance manager has no --tls-ca-file/--tls-cert-file/--tls-key-file: mount the cluster's tlsSecret";
    const LOCAL_UNREADABLE: &str = "the local redis-server cannot be read";
    const NOT_YET: &str = "redis-server is not replicating src:6379 yet";
    const NOT_YET_V6: &str = "redis-server is not replicating [fd00::1]:6379 yet";
    const SYNCING: &str = "sync from src:6379 in progress";
    const REDIS_LINK_DOWN: &str = "redis-server's replication link to src:6379 is down (master_link_status:down) although the source answers the instance manager's probe; if this persists, see the redis-server log";
    const MOVED: &str = "source.host src:6379 now leads to a different primary (replication id bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb); this replica still streams from replication id aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa (the primary it reached before the address moved, which may be partitioned away or gone): it follows the address again when that stream breaks";
    const A_REPLICA: &str = "source.host src:6379 leads to a replica of src-0:6379, not to a primary: point source.host at the source's primary endpoint (its -leader Service); a Service that also leads to replicas is not a replication source";
    const PEER_OTHER_ID: &str = "the upstream src:6379 now has replication id bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb; this replica still streams from replication id aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn link_state() {
        // (probe, local Redis, link up, link error)
        let rows = [
            // No upstream: down, and nothing to say about it.
            (P::NoUpstream, L::Master, false, None),
            (P::NoUpstream, L::Src, false, None),
            (P::NoUpstream, L::Unreadable, false, None),
            // Linked: Redis says up and the probe answered.
            (P::Answered, L::Src, true, None),
            // A silent cut: Redis still says up, the probe timed out (while reading or while
            // connecting afresh).
            (P::Timeout, L::Src, false, Some(TIMED_OUT)),
            (P::ConnectTimeout, L::Src, false, Some(TIMED_OUT)),
            // The source killed.
            (P::Refused, L::SrcLinkDown, false, Some(REFUSED)),
            (P::WrongPass, L::SrcLinkDown, false, Some(AUTH_FAILED)),
            (P::NoPasswordFile, L::Master, false, Some(AUTH_NO_FILE)),
            (P::BadCertificate, L::SrcLinkDown, false, Some(TLS_FAILED)),
            (P::ErrorReply, L::Src, false, Some(ERROR_REPLY)),
            // Not probed: what the probe needs is missing.
            (P::PasswordFileMissing, L::Master, false, Some(FILE_MISSING)),
            (P::PasswordFileMissing, L::Src, false, Some(FILE_MISSING)),
            (P::TlsFilesMissing, L::Master, false, Some(NO_TLS_FILES)),
            // The probe answered, but Redis does not replicate it (yet).
            (P::Answered, L::Unreadable, false, Some(LOCAL_UNREADABLE)),
            (P::Answered, L::Master, false, Some(NOT_YET)),
            (P::Answered, L::MasterLoading, false, Some(NOT_YET)),
            // The upstream changed: Redis still replicates the old one, with its link up.
            (P::Answered, L::OldSrc, false, Some(NOT_YET)),
            (P::Answered, L::SrcOtherPort, false, Some(NOT_YET)),
            (P::Answered, L::Elected, false, Some(NOT_YET)),
            (P::AnsweredV6, L::Master, false, Some(NOT_YET_V6)),
            // Redis's own link: a sync is said before a down link.
            (P::Answered, L::SrcSyncing, false, Some(SYNCING)),
            (P::Answered, L::SrcSyncingLinkDown, false, Some(SYNCING)),
            // Flapping: Redis's link is down while the probe answers.
            (P::Answered, L::SrcLinkDown, false, Some(REDIS_LINK_DOWN)),
            // Loading is for readiness to judge, not the link.
            (P::Answered, L::SrcLoading, true, None),
            // "Up" means streaming from what source.host leads to now: the same primary.
            (P::SamePrimary, L::Src, true, None),
            (P::OtherPrimary, L::Src, false, Some(MOVED)),
            (P::SourceIsAReplica, L::Src, false, Some(A_REPLICA)),
            // ... unless it is a demoted primary of our own history: it takes no write and we
            // stream all it has (a planned switchover, before our promotion).
            (P::DemotedSource, L::Src, true, None),
            // A peer may be a replica (cascading); its id must still be ours.
            (P::PeerReplica, L::Src, true, None),
            (P::PeerOtherId, L::Src, false, Some(PEER_OTHER_ID)),
            // Those are judged on a flowing link only: a sync or a down link is said first.
            (P::OtherPrimary, L::SrcSyncing, false, Some(SYNCING)),
            (
                P::OtherPrimary,
                L::SrcLinkDown,
                false,
                Some(REDIS_LINK_DOWN),
            ),
        ];
        for row @ (p, l, up, error) in rows {
            let probe = p.probe();
            let got = link(
                probe.as_ref().map(|(u, p)| (u, p)),
                l.observed().as_ref(),
                None,
            );
            let error = error.map(str::to_string);
            assert_eq!(got, Link { up, error }, "{row:?}");
        }
        // Flapping across ticks: each tick is judged on its own.
        let o = L::Src.observed();
        let ticks = [answered(1), timeout(), answered(2), timeout(), answered(3)];
        let ups: Vec<bool> = ticks
            .iter()
            .map(|p| link(Some((&src(), p)), o.as_ref(), None).up)
            .collect();
        assert_eq!(ups, [true, false, true, false, true]);
        // The replication gate's block is the reason first, whatever else is seen.
        const BLOCKED: &str = "upstream src:6379 has an unrelated replication history (...)";
        for (p, l) in [
            (P::Answered, L::SrcLinkDown),
            (P::Refused, L::SrcLinkDown),
            (P::NoUpstream, L::Elected),
        ] {
            let probe = p.probe();
            let got = link(
                probe.as_ref().map(|(u, p)| (u, p)),
                l.observed().as_ref(),
                Some(BLOCKED),
            );
            assert_eq!(
                got,
                Link {
                    up: false,
                    error: Some(BLOCKED.into())
                },
                "{p:?} {l:?}"
            );
        }
    }

    /// The topology, as a row says it (`S*`: sentinel mode).
    #[derive(Clone, Copy, Debug)]
    enum T {
        NoTopology,
        Primary,
        Replica,
        Fenced,
        SPrimary,
        SReplica,
        SFenced,
    }

    impl T {
        fn desired(self) -> Option<DesiredTopology> {
            let (role, up) = match self {
                T::NoTopology => return None,
                T::Primary | T::SPrimary => (Role::Primary, None),
                T::Replica | T::SReplica => (Role::Replica, Some(src())),
                T::Fenced | T::SFenced => (Role::Fenced, None),
            };
            let d = topo(role, up, 0, false, 0);
            Some(match self {
                T::SPrimary | T::SReplica | T::SFenced => with_sentinels(d),
                _ => d,
            })
        }
    }

    fn primary() -> DesiredTopology {
        T::Primary.desired().unwrap()
    }

    fn replica() -> DesiredTopology {
        T::Replica.desired().unwrap()
    }

    const FENCED: bool = true;
    const OPEN: bool = false;
    const LINK_UP: bool = true;
    const LINK_DOWN: bool = false;

    #[test]
    fn readiness() {
        // (topology, local Redis, fenced config, link (Redis and probe), ready)
        let rows = [
            (T::NoTopology, L::Master, OPEN, LINK_DOWN, false),
            (T::NoTopology, L::Src, OPEN, LINK_UP, false),
            (T::Primary, L::Unreadable, OPEN, LINK_DOWN, false),
            // Primary: a master that is not fenced.
            (T::Primary, L::Master, OPEN, LINK_DOWN, true),
            (T::Primary, L::Master, FENCED, LINK_DOWN, false),
            (T::Primary, L::Src, OPEN, LINK_UP, false),
            (T::Primary, L::MasterLoading, OPEN, LINK_DOWN, false),
            // Role fenced: never, whatever Redis is.
            (T::Fenced, L::Master, OPEN, LINK_DOWN, false),
            (T::Fenced, L::Master, FENCED, LINK_DOWN, false),
            (T::Fenced, L::Src, OPEN, LINK_UP, false),
            // Replica: the link up (Redis and probe), no sync, not loading, not fenced.
            (T::Replica, L::Src, OPEN, LINK_UP, true),
            (T::Replica, L::Src, OPEN, LINK_DOWN, false),
            (T::Replica, L::SrcSyncing, OPEN, LINK_UP, false),
            (T::Replica, L::SrcLoading, OPEN, LINK_UP, false),
            (T::Replica, L::Src, FENCED, LINK_UP, false),
            (T::Replica, L::Master, OPEN, LINK_DOWN, false),
            (T::Replica, L::Unreadable, OPEN, LINK_DOWN, false),
            // Sentinel mode: ready as what Redis is. A master is, whatever the topology says.
            (T::SReplica, L::Master, OPEN, LINK_DOWN, true),
            (T::SPrimary, L::Master, OPEN, LINK_DOWN, true),
            (T::SPrimary, L::Master, FENCED, LINK_DOWN, false),
            (T::SPrimary, L::MasterLoading, OPEN, LINK_DOWN, false),
            // A replica of the topology's upstream needs the probed link.
            (T::SReplica, L::Src, OPEN, LINK_UP, true),
            (T::SReplica, L::Src, OPEN, LINK_DOWN, false),
            (T::SReplica, L::SrcSyncing, OPEN, LINK_UP, false),
            // A replica of the elected primary the topology does not name yet: Redis's link.
            (T::SReplica, L::Elected, OPEN, LINK_DOWN, true),
            (T::SReplica, L::ElectedLinkDown, OPEN, LINK_UP, false),
            (T::SReplica, L::ElectedSyncing, OPEN, LINK_DOWN, false),
            (T::SPrimary, L::Elected, OPEN, LINK_DOWN, true),
            (T::SPrimary, L::Elected, FENCED, LINK_DOWN, false),
            (T::SFenced, L::Master, OPEN, LINK_DOWN, false),
            (T::SFenced, L::Elected, OPEN, LINK_DOWN, false),
        ];
        for row @ (t, l, fenced, link_up, expected) in rows {
            let got = ready(t.desired().as_ref(), l.observed().as_ref(), fenced, link_up);
            assert_eq!(got, expected, "{row:?}");
        }
    }

    /// What `report` needs beyond the builders: owned values the facts borrow.
    struct Tick {
        desired: Option<DesiredTopology>,
        local: Result<(Observed, RedisConfig), LocalError>,
        local_password: Option<PasswordFileError>,
        probe: Option<Probe>,
        intake_error: Option<&'static str>,
        apply_error: Option<&'static str>,
        sentinels: Option<View>,
        blocked: Option<(String, HistoryBlock)>,
        record: Option<Record>,
        booted_fenced: Option<bool>,
        restarted_primary: Option<PrimaryRestart>,
        same_data_resync: Option<SameDataResync>,
    }

    impl Tick {
        /// A linked replica of `src`, nothing wrong.
        fn linked() -> Tick {
            let mut o = replica_of(SRC);
            o.slave_repl_offset = Some(900);
            o.sync_full = 1;
            o.sync_partial_ok = 2;
            Tick {
                desired: Some(replica()),
                local: Ok((o, default_config())),
                local_password: None,
                probe: Some(answered(1000)),
                intake_error: None,
                apply_error: None,
                sentinels: None,
                blocked: None,
                record: None,
                booted_fenced: None,
                restarted_primary: None,
                same_data_resync: None,
            }
        }

        fn report(&self) -> InstanceReport {
            report(&Facts {
                pod: "dr-1",
                desired: self.desired.as_ref(),
                applied_epoch: Some(3),
                local: self.local.as_ref(),
                local_password: self.local_password.as_ref(),
                probe: self.probe.as_ref(),
                intake_error: self.intake_error,
                apply_error: self.apply_error,
                lag: LagNow {
                    bytes: Some(100),
                    seconds: Some(0.5),
                    write_rate: Some(1024.0),
                },
                upstream_last_seen: None,
                sentinels: self.sentinels.as_ref(),
                diverged_bytes: Some(7),
                blocked: self.blocked.as_ref().map(|(m, b)| (m.as_str(), b)),
                waiting: None,
                record: self.record.as_ref(),
                booted_fenced: self.booted_fenced,
                restarted_primary: self.restarted_primary.as_ref(),
                same_data_resync: self.same_data_resync.as_ref(),
                salvage: None,
                salvage_error: None,
                passwords: None,
            })
        }
    }

    fn unreadable() -> LocalError {
        LocalError::Redis(RedisError {
            addr: "127.0.0.1:6379".into(),
            step: Step::Connect,
            cause: IoError::Unreachable("connection refused".into()),
        })
    }

    fn local_password_missing() -> PasswordFileError {
        PasswordFileError::Local {
            path: "/etc/redis/auth/password".into(),
            reason: SecretFileError::Missing,
        }
    }

    #[test]
    fn the_report_of_a_linked_replica() {
        let r = Tick::linked().report();
        assert_eq!(
            r,
            InstanceReport {
                pod: "dr-1".into(),
                applied_epoch: Some(3),
                role: Some(ObservedRole::Replica),
                upstream: Some("src:6379".into()),
                master_link_up: true,
                link_error: None,
                repl_offset: Some(900),
                upstream_offset: Some(1000),
                lag_bytes: Some(100),
                lag_seconds: Some(0.5),
                upstream_backlog_bytes: Some(1_048_576),
                upstream_write_rate: Some(1024.0),
                // (1 MiB of backlog - 100 bytes behind) / 1 KiB per second.
                backlog_outage_seconds: Some(1023.90234375),
                upstream_last_seen: None,
                sync_in_progress: false,
                sync_full: 1,
                sync_partial_ok: 2,
                connected_replicas: 0,
                ready: true,
                error: None,
                fenced: false,
                sentinel_primary: None,
                sentinel_epoch: None,
                sentinels_reachable: None,
                sentinel_failing_over: None,
                diverged_bytes: Some(7),
                demoted: None,
                history_blocked: None,
                master_replid: Some(String::new()),
                master_replid2: Some("0000000000000000000000000000000000000000".into()),
                second_repl_offset: Some(-1),
                master_repl_offset: Some(0),
                keys: Some(0),
                loading: Some(false),
                booted_fenced: None,
                uptime_seconds: Some(100),
                recorded_history: None,
                restarted_primary: None,
                same_data_resync: None,
                salvage: None,
                passwords: None,
            }
        );
    }

    /// One error is shown: rows of (what is wrong, the error shown).
    #[test]
    fn the_error_shown_is_the_first_of_its_causes() {
        const APPLY: &str =
            "applying `REPLICAOF src 6379` failed: ERR x (REPLICAOF 127.0.0.1:6379)";
        const INTAKE: &str =
            "ignoring topology epoch 4: epoch 5 is already in force (epochs never go back)";
        const NOT_SENT: &str = "the source password file /etc/redis-source/password does not exist: mount the source's auth Secret (key \"password\") at that path";
        const LOCAL: &str =
            "cannot read the local redis-server at 127.0.0.1:6379: connection refused (connect)";
        const LOCAL_PW: &str =
            "the local Redis password file /etc/redis/auth/password does not exist";
        type Change = fn(&mut Tick);
        let rows: [(&str, Change, Option<&str>); 9] = [
            ("nothing wrong", |_| {}, None),
            ("intake", |t| t.intake_error = Some(INTAKE), Some(INTAKE)),
            (
                "apply over intake",
                |t| {
                    t.intake_error = Some(INTAKE);
                    t.apply_error = Some(APPLY);
                },
                Some(APPLY),
            ),
            (
                "upstream over intake",
                |t| {
                    t.intake_error = Some(INTAKE);
                    t.probe = Some(missing_password_file());
                },
                Some(NOT_SENT),
            ),
            (
                "apply over upstream",
                |t| {
                    t.apply_error = Some(APPLY);
                    t.probe = Some(missing_password_file());
                },
                Some(APPLY),
            ),
            (
                "intake over the local Redis",
                |t| {
                    t.intake_error = Some(INTAKE);
                    t.local = Err(unreadable());
                },
                Some(INTAKE),
            ),
            (
                "the local Redis over its password file",
                |t| {
                    t.local = Err(unreadable());
                    t.local_password = Some(local_password_missing());
                },
                Some(LOCAL),
            ),
            (
                "the local password file alone (Redis answered without one)",
                |t| t.local_password = Some(local_password_missing()),
                Some(LOCAL_PW),
            ),
            (
                "a failed probe is a link error, not an error",
                |t| t.probe = Some(timeout()),
                None,
            ),
        ];
        for (name, change, shown) in rows {
            let mut t = Tick::linked();
            change(&mut t);
            assert_eq!(t.report().error.as_deref(), shown, "{name}");
        }
    }

    /// The fields that depend on what was observed, one row per situation.
    #[test]
    fn the_report_follows_the_observations() {
        type Change = fn(&mut Tick);
        type Check = fn(&InstanceReport);
        let rows: [(&str, Change, Check); 11] = [
            (
                "blocked by the replication gate: link down with its message, not ready",
                |t| {
                    let (o, c) = t.local.as_ref().unwrap();
                    t.local = Ok((link_down(o.clone()), c.clone()));
                    t.blocked = Some((
                        "upstream src:6379 has an unrelated replication history (...)".into(),
                        HistoryBlock {
                            since: "2026-01-01T00:00:00Z".into(),
                            ..Default::default()
                        },
                    ));
                },
                |r| {
                    assert!(!r.master_link_up && !r.ready);
                    assert!(
                        r.link_error
                            .as_deref()
                            .unwrap()
                            .contains("unrelated replication history")
                    );
                    assert_eq!(
                        r.history_blocked.as_ref().unwrap().since,
                        "2026-01-01T00:00:00Z"
                    );
                    assert_eq!(r.error, None);
                },
            ),
            (
                "the record and the boot fence are reported",
                |t| {
                    t.record = Some(Record {
                        replid: OURS.into(),
                        offset: 900,
                        keys: 5,
                        role: "replica".into(),
                        run_id: None,
                    });
                    t.booted_fenced = Some(true);
                },
                |r| {
                    let h = r.recorded_history.as_ref().unwrap();
                    assert_eq!((h.replid.as_str(), h.offset, h.keys), (OURS, 900, 5));
                    assert_eq!(r.booted_fenced, Some(true));
                },
            ),
            (
                "Redis unreadable: nothing about its data",
                |t| {
                    t.local = Err(unreadable());
                    t.booted_fenced = Some(true);
                },
                |r| {
                    assert_eq!(r.keys, None);
                    assert_eq!(r.master_replid, None);
                    assert_eq!(r.loading, None);
                    assert_eq!(r.booted_fenced, None);
                },
            ),
            (
                "the local Redis cannot be read: no role, offsets or readiness",
                |t| t.local = Err(unreadable()),
                |r| {
                    assert_eq!(r.role, None);
                    assert_eq!(r.upstream, None);
                    assert_eq!(r.repl_offset, None);
                    assert!(!r.ready && !r.master_link_up && !r.fenced);
                    assert_eq!(
                        r.link_error.as_deref(),
                        Some("the local redis-server cannot be read")
                    );
                },
            ),
            (
                "probe timeout: link down, no upstream offset",
                |t| t.probe = Some(timeout()),
                |r| {
                    assert!(!r.master_link_up && !r.ready);
                    assert_eq!(r.upstream_offset, None);
                    assert!(r.link_error.as_deref().unwrap().contains("probe timeout"));
                },
            ),
            (
                "fenced: reported, not ready",
                |t| {
                    let (o, _) = t.local.as_ref().unwrap();
                    t.local = Ok((o.clone(), fenced_config()));
                },
                |r| {
                    assert!(r.fenced && !r.ready);
                    assert!(r.master_link_up);
                },
            ),
            (
                "syncing",
                |t| {
                    let (o, c) = t.local.as_ref().unwrap();
                    t.local = Ok((syncing(o.clone()), c.clone()));
                },
                |r| {
                    assert!(r.sync_in_progress && !r.ready && !r.master_link_up);
                },
            ),
            (
                "a primary: no link, no link error, ready",
                |t| {
                    t.desired = Some(primary());
                    t.probe = None;
                    t.local = Ok((master(), default_config()));
                },
                |r| {
                    assert_eq!(r.role, Some(ObservedRole::Primary));
                    assert!(r.ready && !r.master_link_up);
                    assert_eq!(r.link_error, None);
                    assert_eq!(r.upstream, None);
                },
            ),
            (
                "no topology: nothing is ready",
                |t| {
                    t.desired = None;
                    t.probe = None;
                },
                |r| {
                    assert!(!r.ready && !r.master_link_up);
                    assert_eq!(r.role, Some(ObservedRole::Replica));
                },
            ),
            (
                "sentinel mode: the Sentinels' choice is reported",
                |t| {
                    t.desired = Some(with_sentinels(replica()));
                    t.sentinels = Some(View {
                        elected: Some(Elected {
                            host: "10.0.0.5".into(),
                            port: 6379,
                            config_epoch: 4,
                            settled: true,
                        }),
                        reachable: 3,
                        refused: None,
                    });
                },
                |r| {
                    assert_eq!(r.sentinel_primary.as_deref(), Some("10.0.0.5:6379"));
                    assert_eq!(r.sentinel_epoch, Some(4));
                    assert_eq!(r.sentinels_reachable, Some(3));
                    assert_eq!(r.sentinel_failing_over, Some(false));
                    assert!(r.ready);
                },
            ),
            (
                "sentinel mode: a failover in progress is reported",
                |t| {
                    t.desired = Some(with_sentinels(replica()));
                    t.sentinels = Some(View {
                        elected: Some(Elected {
                            host: "10.0.0.5".into(),
                            port: 6379,
                            config_epoch: 4,
                            settled: false,
                        }),
                        reachable: 3,
                        refused: None,
                    });
                },
                |r| assert_eq!(r.sentinel_failing_over, Some(true)),
            ),
        ];
        for (name, change, check) in rows {
            let mut t = Tick::linked();
            change(&mut t);
            eprintln!("row: {name}");
            check(&t.report());
        }
    }
}
