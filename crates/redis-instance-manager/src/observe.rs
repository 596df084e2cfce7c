//! A tick's reads, and nothing else: whom to talk to (resolved from the topology, the flags and
//! the mounted password files), then the local Redis, the upstream probe and the Sentinels,
//! concurrently, each within its timeout. What the readings mean is decided by `assess`,
//! `commands` and `lag`, which do no I/O.

use std::time::{Duration, Instant};

use redis_cluster_api::topology::{DesiredTopology, SentinelTopology, Upstream};

use crate::assess::desired_upstream;
use crate::commands::{Credentials, NoTlsFiles, TlsFiles};
use crate::gate::{ClosedGate, OpenWith};
use crate::info::{Observed, RedisConfig, UpstreamInfo};
use crate::reconcile::ManagerConfig;
use crate::redis_io::{Cached, Endpoint, IoError, RedisError};
use crate::secret::{PasswordFileError, Secret};
use crate::sentinel::{self, MasterAnswer, Reply, View};

/// Timeout for commands to the local Redis (same pod: generous, it only bounds a wedged server).
const LOCAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the local redis-server could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    #[error("cannot read the local redis-server at {}: {} ({})", .0.addr, .0.cause, .0.step)]
    Redis(RedisError),
    #[error("cannot read the local redis-server at {addr}: {why}")]
    Unparsable { addr: String, why: String },
}

/// Why the upstream can be neither probed nor replicated this tick.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    PasswordFile(#[from] PasswordFileError),
    #[error(transparent)]
    NoTlsFiles(#[from] NoTlsFiles),
}

/// How to reach the upstream: where the probe connects, with the upstream's user, password and
/// TLS files (what the replication gate opens with).
#[derive(Clone, Debug)]
pub struct Reach {
    pub probe: Endpoint,
}

/// Where the replication gate reads the upstream's history, and what it opens with.
#[derive(Clone, Debug)]
pub struct GateTarget {
    pub endpoint: Endpoint,
    pub open: OpenWith,
}

/// Whom a tick talks to. Password files are re-read every tick, so a fixed or rotated Secret
/// is picked up without a restart.
#[derive(Clone, Debug)]
pub struct Targets {
    /// The local redis-server (without a password when its file cannot be read).
    pub local: Endpoint,
    /// Why the local password file cannot be used.
    pub local_password: Option<PasswordFileError>,
    /// The Secret's `previousPassword` (next to the local password file): accepted by the
    /// local Redis besides the password while it is there (`local.previous` may also be the
    /// password the instance manager last used, to reach Redis after a one-step change).
    pub local_previous: Option<Secret>,
    /// The upstream of a replica topology, and how to reach it or why it cannot be reached.
    pub upstream: Option<(Upstream, Result<Reach, UpstreamError>)>,
    /// The pod's TLS files (`--tls-*-file`).
    pub tls: Option<TlsFiles>,
}

impl Targets {
    pub fn resolve(config: &ManagerConfig, desired: Option<&DesiredTopology>) -> Targets {
        let (password, local_password) = match &config.redis_password_file {
            None => (None, None),
            Some(p) => match Secret::read_file(p) {
                Ok(s) => (Some(s), None),
                Err(reason) => (
                    None,
                    Some(PasswordFileError::Local {
                        path: p.display().to_string(),
                        reason,
                    }),
                ),
            },
        };
        let previous = config
            .redis_password_file
            .as_deref()
            .and_then(|p| Secret::read_previous(p, password.as_ref()));
        Targets {
            local: Endpoint {
                host: config.redis_host.clone(),
                port: config.redis_port,
                username: None,
                password,
                previous: previous.clone(),
                tls: config.tls.clone().filter(|_| config.redis_tls),
            },
            local_password,
            local_previous: previous,
            upstream: desired
                .and_then(desired_upstream)
                .map(|up| (up.clone(), reach(config, up))),
            tls: config.tls.clone(),
        }
    }

    /// The credentials `commands_for` needs; `None` when the upstream cannot be reached (then
    /// nothing is applied: a missing file or TLS configuration is reported, not acted on).
    pub fn credentials(&self, gate: &ClosedGate) -> Option<Credentials> {
        match &self.upstream {
            Some((_, Err(_))) => None,
            _ => Some(Credentials {
                gate: gate.clone(),
                tls: self.tls.clone(),
            }),
        }
    }

    /// Where the gate reads the history of `master` (the `host:port` Redis is pointed at) and
    /// what it opens with: the topology's upstream and its credentials when Redis is pointed
    /// there; in sentinel mode, a pod the Sentinels pointed Redis at, with the cluster's
    /// password (the Sentinels' password file: the cluster's own `requirepass`). None when the
    /// gate cannot judge this tick (what it needs is missing, or Redis is still pointed
    /// elsewhere and the topology is about to re-point it).
    pub fn gate(&self, desired: &DesiredTopology, master: &(String, u16)) -> Option<GateTarget> {
        if let Some((up, reach)) = &self.upstream
            && (up.host.as_str(), up.port) == (master.0.as_str(), master.1)
        {
            let r = reach.as_ref().ok()?;
            return Some(GateTarget {
                endpoint: r.probe.clone(),
                open: OpenWith {
                    user: up.username.clone(),
                    password: r.probe.password.clone(),
                },
            });
        }
        let st = desired.sentinel.as_ref()?;
        let password = match &st.password_file {
            None => None,
            Some(p) => Some(Secret::read_file(p.as_ref()).ok()?),
        };
        let previous = st
            .password_file
            .as_deref()
            .and_then(|p| Secret::read_previous(p.as_ref(), password.as_ref()));
        Some(GateTarget {
            endpoint: Endpoint {
                host: master.0.clone(),
                port: master.1,
                username: None,
                password: password.clone(),
                previous,
                tls: self.tls.clone(),
            },
            open: OpenWith {
                user: None,
                password,
            },
        })
    }
}

/// The upstream's password and TLS files, or why they cannot be had.
fn reach(config: &ManagerConfig, up: &Upstream) -> Result<Reach, UpstreamError> {
    let password = match &up.password_file {
        None => None,
        Some(p) => {
            Some(
                Secret::read_file(p.as_ref()).map_err(|reason| PasswordFileError::Source {
                    path: p.clone(),
                    reason,
                })?,
            )
        }
    };
    if up.tls && config.tls.is_none() {
        return Err(NoTlsFiles(crate::addr(&up.host, up.port)).into());
    }
    let previous = up
        .password_file
        .as_deref()
        .and_then(|p| Secret::read_previous(p.as_ref(), password.as_ref()));
    Ok(Reach {
        probe: Endpoint {
            host: up.host.clone(),
            port: up.port,
            username: up.username.clone(),
            password,
            previous,
            tls: if up.tls { config.tls.clone() } else { None },
        },
    })
}

/// What the upstream probe found (replica topologies only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Not sent: what it needs (password file, TLS files) is missing.
    NotSent(UpstreamError),
    /// No usable answer: unreachable, timeout, refused authentication, TLS failure, error reply.
    Failed(RedisError),
    /// It answered `INFO replication`.
    Answered(UpstreamInfo),
}

/// Everything one tick read.
#[derive(Clone, Debug)]
pub struct Observation {
    /// The local Redis (`INFO`, `CONFIG GET` of the owned parameters).
    pub local: Result<(Observed, RedisConfig), LocalError>,
    /// `None` when the topology names no upstream.
    pub probe: Option<Probe>,
    /// `None` outside sentinel mode.
    pub sentinels: Option<View>,
    /// How long the concurrent reads took.
    pub seconds: f64,
}

/// How long the upstream probe keeps a connection that does not answer, and how long its
/// background replacement may take to connect: four probe timeouts (3.2 s by default), the
/// queueing delay of a saturated link plus a retransmission or two, and still short enough
/// that after a silent cut the next probes start from fresh connections within seconds.
pub fn probe_patience(probe_timeout: Duration) -> Duration {
    probe_timeout * 4
}

/// The connections the loop keeps between ticks (see `redis_io` for why they are kept).
pub struct Connections {
    local: Cached,
    upstream: Cached,
    /// One per Sentinel address of the topology (sentinel mode only).
    sentinels: Vec<(String, Cached)>,
    probe_timeout: Duration,
    /// The local Redis's last `INFO` text, served raw at `GET /info` (support bundles).
    last_info: Option<String>,
}

impl Connections {
    /// `probe_max_age`: how long the upstream probe keeps one connection; it keeps it through
    /// a timeout for `probe_patience(probe_timeout)` (see [`Cached::for_probe`]).
    pub fn new(probe_timeout: Duration, probe_max_age: Duration) -> Connections {
        Connections {
            local: Cached::new(LOCAL_TIMEOUT),
            upstream: Cached::for_probe(
                probe_timeout,
                probe_max_age,
                probe_patience(probe_timeout),
            ),
            sentinels: Vec::new(),
            probe_timeout,
            last_info: None,
        }
    }

    /// The local Redis's last `INFO all` text, if one was read.
    pub fn last_info(&self) -> Option<&str> {
        self.last_info.as_deref()
    }

    /// The local Redis, for executing commands.
    pub fn local(&mut self) -> &mut Cached {
        &mut self.local
    }

    /// Read the local Redis, probe the upstream and ask the Sentinels, concurrently.
    pub async fn observe(
        &mut self,
        targets: &Targets,
        sentinels: Option<&SentinelTopology>,
    ) -> Observation {
        let started = Instant::now();
        let timeout = self.probe_timeout;
        let (local, upstream, conns, info) = (
            &mut self.local,
            &mut self.upstream,
            &mut self.sentinels,
            &mut self.last_info,
        );
        let (local, probe, replies) = tokio::join!(
            read_local(local, &targets.local, info),
            async {
                let (_, reach) = targets.upstream.as_ref()?;
                Some(match reach {
                    Err(e) => Probe::NotSent(e.clone()),
                    Ok(r) => match upstream.info_replication(&r.probe).await {
                        Ok(text) => Probe::Answered(UpstreamInfo::parse(&text)),
                        Err(e) => Probe::Failed(e),
                    },
                })
            },
            async { Some(ask_sentinels(conns, sentinels?, timeout).await) }
        );
        let seconds = started.elapsed().as_secs_f64();
        if sentinels.is_none() {
            self.sentinels.clear();
        }
        Observation {
            local,
            probe,
            sentinels: replies.as_deref().map(sentinel::view),
            seconds,
        }
    }

    /// Read the local Redis again (after commands changed it).
    pub async fn read_local(
        &mut self,
        ep: &Endpoint,
    ) -> Result<(Observed, RedisConfig), LocalError> {
        read_local(&mut self.local, ep, &mut self.last_info).await
    }
}

async fn read_local(
    local: &mut Cached,
    ep: &Endpoint,
    last_info: &mut Option<String>,
) -> Result<(Observed, RedisConfig), LocalError> {
    // `INFO all`: the default sections plus the command statistics the metrics export.
    let text = local.info_all(ep).await.map_err(LocalError::Redis)?;
    *last_info = Some(text.clone());
    let observed = Observed::parse(&text).map_err(|why| LocalError::Unparsable {
        addr: ep.addr(),
        why,
    })?;
    let config = local.owned_config(ep).await.map_err(LocalError::Redis)?;
    Ok((observed, config))
}

/// Ask every Sentinel of `st` for the master, concurrently, each within the probe timeout.
/// Connections are kept per address like the upstream probe's.
async fn ask_sentinels(
    conns: &mut Vec<(String, Cached)>,
    st: &SentinelTopology,
    timeout: Duration,
) -> Vec<Reply> {
    if conns.len() != st.addresses.len()
        || conns.iter().zip(&st.addresses).any(|((a, _), b)| a != b)
    {
        conns.clear();
        conns.extend(
            st.addresses
                .iter()
                .map(|a| (a.clone(), Cached::new(timeout))),
        );
    }
    let password =
        match &st.password_file {
            None => Ok(None),
            Some(p) => Secret::read_file(p.as_ref()).map(Some).map_err(|reason| {
                PasswordFileError::Sentinels {
                    path: p.clone(),
                    reason,
                }
            }),
        };
    let previous = match (&st.password_file, &password) {
        (Some(p), Ok(current)) => Secret::read_previous(p.as_ref(), current.as_ref()),
        _ => None,
    };
    let asks = conns.iter_mut().map(|(addr, cached)| {
        let password = password.clone();
        let previous = previous.clone();
        async move {
            let password = match password {
                Ok(p) => p,
                Err(e) => return Reply::Refused(e.to_string()),
            };
            let (host, port) = match sentinel::split_addr(addr) {
                Ok(hp) => hp,
                Err(e) => return Reply::Refused(e),
            };
            let ep = Endpoint {
                host,
                port,
                username: None,
                password,
                previous,
                tls: None,
            };
            match cached.sentinel_master(&ep, &st.master_name).await {
                Ok(None) => Reply::NotMonitored,
                Ok(Some(pairs)) => match MasterAnswer::from_pairs(&pairs) {
                    Ok(a) => Reply::Master(a),
                    Err(e) => Reply::Refused(format!("Sentinel {addr}: {e}")),
                },
                Err(RedisError {
                    cause: IoError::Unreachable(e),
                    ..
                }) => Reply::Unreachable(e),
                Err(e) => Reply::Refused(format!("Sentinel {addr}: {}", e.cause)),
            }
        }
    });
    futures::future::join_all(asks).await
}
