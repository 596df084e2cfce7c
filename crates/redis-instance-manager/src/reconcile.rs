//! The reconcile loop: one task, one tick per probe interval (and at once when the topology
//! changes). Each tick reads the local Redis, probes the upstream and (in sentinel mode) asks the
//! Sentinels concurrently, asks `commands_for` what to do, does it, and publishes the result as
//! metrics and `/status`.
//!
//! Both topology sources (downward-API file, Kubernetes watch) feed this loop through one
//! `watch` channel, so the loop does not know or care where the topology came from.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_cluster_api::report::{InstanceReport, ObservedRole};
use redis_cluster_api::topology::{DesiredTopology, Role, SentinelTopology, Upstream};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::commands::{Blocked, Credentials, TlsFiles, commands_for};
use crate::divergence::{Divergence, Finding, UpstreamIds};
use crate::info::{Observed, RedisConfig, RedisRole, info_fields};
use crate::intake::{Admission, Delivered, Intake};
use crate::lag::{OffsetHistory, lag_bytes};
use crate::metrics::{InfoLabels, MasterLabels, Metrics};
use crate::redis_io::{Cached, Endpoint, IoError};
use crate::secret::Secret;
use crate::sentinel::{self, MasterAnswer, Reply, Verdict, View};

/// Timeout for commands to the local Redis (same pod: generous, it only bounds a wedged server).
const LOCAL_TIMEOUT: Duration = Duration::from_secs(2);

/// What the loop needs to know, from the command line.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    pub cluster: String,
    pub namespace: String,
    pub pod: String,
    pub redis_host: String,
    pub redis_port: u16,
    pub redis_password_file: Option<PathBuf>,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub tls: Option<TlsFiles>,
}

/// State shared with the HTTP server.
pub struct Shared {
    pub metrics: Metrics,
    pub report: Mutex<InstanceReport>,
    heartbeat: Mutex<Instant>,
    /// `/healthz` fails when the loop has not completed a tick for this long.
    pub liveness_limit: Duration,
}

impl Shared {
    pub fn new(config: &ManagerConfig) -> Shared {
        Shared {
            metrics: Metrics::new(&config.cluster, &config.namespace, &config.pod),
            report: Mutex::new(InstanceReport {
                pod: config.pod.clone(),
                ..Default::default()
            }),
            heartbeat: Mutex::new(Instant::now()),
            // A tick is bounded by the local and probe timeouts (a few seconds); only a wedged
            // process misses this many.
            liveness_limit: (config.probe_interval * 10).max(Duration::from_secs(30)),
        }
    }

    /// Time since the loop last completed a tick.
    pub fn since_heartbeat(&self) -> Duration {
        self.heartbeat.lock().expect("heartbeat lock").elapsed()
    }

    pub fn report(&self) -> InstanceReport {
        self.report.lock().expect("report lock").clone()
    }
}

/// Logs a message once when it appears or changes, and once when it clears.
#[derive(Default)]
struct LogOnChange {
    last: Option<String>,
}

impl LogOnChange {
    fn update(&mut self, what: &str, now: &Option<String>) {
        if *now == self.last {
            return;
        }
        match now {
            Some(m) => warn!("{what}: {m}"),
            None => info!("{what}: resolved"),
        }
        self.last = now.clone();
    }
}

pub struct Manager {
    s: ManagerConfig,
    shared: Arc<Shared>,
    intake: Intake,
    local: Cached,
    upstream: Cached,
    /// One connection per Sentinel address of the topology (sentinel mode only).
    sentinels: Vec<(String, Cached)>,
    history: OffsetHistory,
    history_target: Option<(String, u16)>,
    divergence: Divergence,
    applied_epoch: Option<u64>,
    last_run_id: Option<String>,
    master_labels: Option<MasterLabels>,
    info_labels: Option<InfoLabels>,
    log_link: LogOnChange,
    log_error: LogOnChange,
    log_rewrite: LogOnChange,
    log_sentinels: LogOnChange,
    log_waiting: LogOnChange,
    clock0: Instant,
}

fn addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The user-facing message for a failed upstream probe.
fn link_message(up: &Upstream, e: &IoError) -> String {
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

impl Manager {
    pub fn new(s: ManagerConfig, shared: Arc<Shared>) -> Manager {
        Manager {
            local: Cached::new(LOCAL_TIMEOUT),
            upstream: Cached::new(s.probe_timeout),
            sentinels: Vec::new(),
            s,
            shared,
            intake: Intake::default(),
            history: OffsetHistory::default(),
            history_target: None,
            divergence: Divergence::default(),
            applied_epoch: None,
            last_run_id: None,
            master_labels: None,
            info_labels: None,
            log_link: LogOnChange::default(),
            log_error: LogOnChange::default(),
            log_rewrite: LogOnChange::default(),
            log_sentinels: LogOnChange::default(),
            log_waiting: LogOnChange::default(),
            clock0: Instant::now(),
        }
    }

    /// Run forever: a tick every probe interval, and at once when the topology changes.
    pub async fn run(mut self, mut rx: watch::Receiver<Delivered>) {
        let mut ticker = tokio::time::interval(self.s.probe_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut source_open = true;
        loop {
            if source_open {
                tokio::select! {
                    _ = ticker.tick() => {}
                    changed = rx.changed() => {
                        if changed.is_err() {
                            warn!("topology source stopped; keeping the last topology");
                            source_open = false;
                        }
                    }
                }
            } else {
                ticker.tick().await;
            }
            let delivered = rx.borrow_and_update().clone();
            self.tick(&delivered).await;
        }
    }

    fn local_endpoint(&self) -> (Endpoint, Option<String>) {
        let (password, err) = match &self.s.redis_password_file {
            None => (None, None),
            Some(p) => match Secret::read_file(p) {
                Ok(s) => (Some(s), None),
                Err(e) => (
                    None,
                    Some(format!("the local Redis password file {} {e}", p.display())),
                ),
            },
        };
        (
            Endpoint {
                host: self.s.redis_host.clone(),
                port: self.s.redis_port,
                username: None,
                password,
                tls: None,
            },
            err,
        )
    }

    /// Credentials and probe endpoint for the desired upstream, or why they cannot be had.
    fn resolve_upstream(&self, up: &Upstream) -> Result<(Credentials, Endpoint), String> {
        let password = match &up.password_file {
            None => None,
            Some(p) => Some(Secret::read_file(p.as_ref()).map_err(|e| {
                format!(
                    "the source password file {p} {e}: mount the source's auth Secret (key \"password\") at that path"
                )
            })?),
        };
        if up.tls && self.s.tls.is_none() {
            return Err(Blocked::TlsFilesMissing(addr(&up.host, up.port)).to_string());
        }
        let ep = Endpoint {
            host: up.host.clone(),
            port: up.port,
            username: up.username.clone(),
            password: password.clone(),
            tls: if up.tls { self.s.tls.clone() } else { None },
        };
        Ok((
            Credentials {
                password,
                tls: self.s.tls.clone(),
            },
            ep,
        ))
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
        let password = match &st.password_file {
            None => Ok(None),
            Some(p) => Secret::read_file(p.as_ref())
                .map(Some)
                .map_err(|e| format!("the Sentinels' password file {p} {e}")),
        };
        let asks = conns.iter_mut().map(|(addr, cached)| {
            let password = password.clone();
            async move {
                let password = match password {
                    Ok(p) => p,
                    Err(e) => return Reply::Refused(e),
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
                    tls: None,
                };
                match cached.sentinel_master(&ep, &st.master_name).await {
                    Ok(None) => Reply::NotMonitored,
                    Ok(Some(pairs)) => match MasterAnswer::from_pairs(&pairs) {
                        Ok(a) => Reply::Master(a),
                        Err(e) => Reply::Refused(format!("Sentinel {addr}: {e}")),
                    },
                    Err(IoError::Unreachable(e)) => Reply::Unreachable(e),
                    Err(e) => Reply::Refused(format!("Sentinel {addr}: {e}")),
                }
            }
        });
        futures::future::join_all(asks).await
    }

    async fn read_local(
        local: &mut Cached,
        ep: &Endpoint,
    ) -> Result<(Observed, RedisConfig), String> {
        let text = local.info(ep).await.map_err(|e| e.to_string())?;
        let observed = Observed::parse(&text)?;
        let config = local.owned_config(ep).await.map_err(|e| e.to_string())?;
        Ok((observed, config))
    }

    /// One pass: read, decide, act, report.
    pub async fn tick(&mut self, delivered: &Delivered) {
        match self.intake.offer(delivered) {
            Admission::Accepted(epoch) => info!(epoch, "topology accepted"),
            Admission::SameEpoch => {
                info!("topology re-published with the same epoch; nothing to do")
            }
            Admission::Stale { .. } | Admission::Refused(_) | Admission::Unchanged => {}
        }
        let desired: Option<DesiredTopology> = self.intake.desired().cloned();
        let desired_up: Option<Upstream> = desired
            .as_ref()
            .filter(|d| d.role == Role::Replica)
            .and_then(|d| d.upstream.clone());
        let resolved = desired_up.as_ref().map(|up| self.resolve_upstream(up));

        let (local_ep, local_pw_err) = self.local_endpoint();
        let probe_ep = match &resolved {
            Some(Ok((_, ep))) => Some(ep.clone()),
            _ => None,
        };
        let started = Instant::now();
        let sentinel_topology = desired.as_ref().and_then(|d| d.sentinel.clone());
        let (local, upstream, sentinels) =
            (&mut self.local, &mut self.upstream, &mut self.sentinels);
        let (mut local_res, probe_res, sentinel_replies) = tokio::join!(
            Self::read_local(local, &local_ep),
            async {
                match &probe_ep {
                    Some(ep) => Some(upstream.info_replication(ep).await),
                    None => None,
                }
            },
            async {
                match &sentinel_topology {
                    Some(st) => {
                        Some(Self::ask_sentinels(sentinels, st, self.s.probe_timeout).await)
                    }
                    None => None,
                }
            }
        );
        let probe_seconds = started.elapsed().as_secs_f64();
        if sentinel_topology.is_none() {
            self.sentinels.clear();
        }
        let sentinel_view: Option<View> = sentinel_replies.as_deref().map(sentinel::view);
        let verdict: Option<Verdict> = match (&sentinel_view, &sentinel_topology) {
            (Some(v), Some(st)) => Some(Verdict::of(v, &st.announce_host, self.s.redis_port)),
            _ => None,
        };
        let sentinel_note = match (&sentinel_view, &sentinel_topology) {
            (Some(v), Some(st)) if v.elected.is_none() => Some(format!(
                "no Sentinel of {} knows a master {:?}{}",
                st.addresses.join(","),
                st.master_name,
                v.refused
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )),
            _ => None,
        };
        self.log_sentinels.update("sentinels", &sentinel_note);

        let mut error: Option<String> = self.intake.error.clone();
        if let Some(Err(e)) = &resolved {
            error = Some(e.clone());
        }

        // Act on the local Redis.
        if let (Ok((observed, config)), Some(d)) = (&local_res, &desired) {
            if let Some(prev) = &self.last_run_id
                && *prev != observed.run_id
            {
                info!("redis-server restarted (run_id changed); re-checking the topology");
            }
            self.last_run_id = Some(observed.run_id.clone());
            let creds = match &resolved {
                None => Some(Credentials::default()),
                Some(Ok((c, _))) => Some(c.clone()),
                Some(Err(_)) => None,
            };
            if let Some(creds) = creds {
                match self
                    .apply(d, observed, config, &creds, verdict.as_ref(), &local_ep)
                    .await
                {
                    Ok(false) => {}
                    Ok(true) => local_res = Self::read_local(&mut self.local, &local_ep).await,
                    Err(e) => error = Some(e),
                }
            }
        }

        let local_error = match &local_res {
            Ok(_) => None,
            Err(e) => Some(format!(
                "cannot read the local redis-server at {}: {e}",
                addr(&self.s.redis_host, self.s.redis_port)
            )),
        }
        .or(local_pw_err);
        let error = error.or(local_error);

        // The link, as Redis sees it and as the probe sees it.
        let observed = local_res.as_ref().ok().map(|(o, _)| o);
        let mut upstream_offset = None;
        let (link_up, link_error) = match (&desired_up, &resolved, &probe_res) {
            (None, _, _) => (false, None),
            (Some(_), Some(Err(e)), _) => (false, Some(e.clone())),
            (Some(up), _, Some(Err(e))) => (false, Some(link_message(up, e))),
            (Some(up), _, Some(Ok(text))) => {
                upstream_offset = info_fields(text)
                    .get("master_repl_offset")
                    .and_then(|v| v.parse::<i64>().ok());
                let a = addr(&up.host, up.port);
                match observed {
                    None => (
                        false,
                        Some("the local redis-server cannot be read".to_string()),
                    ),
                    Some(o) if o.master != Some((up.host.clone(), up.port)) => (
                        false,
                        Some(format!("redis-server is not replicating {a} yet")),
                    ),
                    Some(o) if o.master_sync_in_progress => {
                        (false, Some(format!("sync from {a} in progress")))
                    }
                    Some(o) if !o.master_link_status_up => (
                        false,
                        Some(format!(
                            "redis-server's replication link to {a} is down (master_link_status:down) although the source answers the instance manager's probe; if this persists, see the redis-server log"
                        )),
                    ),
                    Some(_) => (true, None),
                }
            }
            (Some(_), _, None) => (false, None),
        };
        self.log_link.update("replication link", &link_error);
        self.log_error.update("error", &error);

        // Lag.
        let now = self.clock0.elapsed().as_secs_f64();
        let target = desired_up.as_ref().map(|u| (u.host.clone(), u.port));
        if target != self.history_target {
            self.history.clear();
            self.history_target = target;
        }
        let (lag, lag_seconds) = match (&desired_up, observed, upstream_offset) {
            (None, Some(_), _) => (Some(0), Some(0.0)),
            (Some(up), Some(o), Some(uo)) if o.master == Some((up.host.clone(), up.port)) => {
                self.history.record(now, uo);
                (
                    Some(lag_bytes(uo, o.processed_offset())),
                    self.history.lag_seconds(now, o.processed_offset()),
                )
            }
            _ => (None, None),
        };

        // Divergence: compare what the local Redis followed (remembered from earlier ticks: it
        // may already have resynchronised in full by now) with the upstream's replication ids.
        if let (Some(up), Some(Ok(text))) = (&desired_up, &probe_res)
            && let Some(ids) = UpstreamIds::from_fields(&info_fields(text))
        {
            self.note_divergence(up, &ids);
        }
        if let Some(o) = observed
            && o.role == RedisRole::Slave
            && o.master_link_status_up
            && !o.master_sync_in_progress
            && self
                .divergence
                .remember(&o.master_replid, o.master_repl_offset)
        {
            info!(
                replid = %o.master_replid,
                offset = o.master_repl_offset,
                "following replication history {}",
                o.master_replid
            );
        }

        let fenced = local_res.as_ref().is_ok_and(|(_, c)| c.fenced());
        let ready = match (observed, &desired) {
            (Some(o), Some(d)) if !o.loading && !fenced => match (d.role, &d.sentinel) {
                (Role::Fenced, _) => false,
                (Role::Primary, None) => o.role == RedisRole::Master,
                (Role::Replica, None) => link_up && !o.master_sync_in_progress,
                // The Sentinels own the role: ready as what Redis is. A replica of the upstream
                // the topology names needs the probe too; one of another primary (the topology
                // lags a Sentinel failover) needs Redis's own link.
                (_, Some(_)) => match o.role {
                    RedisRole::Master => true,
                    RedisRole::Slave => {
                        let probed = desired_up
                            .as_ref()
                            .is_some_and(|u| o.master == Some((u.host.clone(), u.port)));
                        (if probed {
                            link_up
                        } else {
                            o.master_link_status_up
                        }) && !o.master_sync_in_progress
                    }
                },
            },
            _ => false,
        };
        let elected = sentinel_view.as_ref().and_then(|v| v.elected.as_ref());

        let report = InstanceReport {
            pod: self.s.pod.clone(),
            applied_epoch: self.applied_epoch,
            role: observed.map(|o| match o.role {
                RedisRole::Master => ObservedRole::Primary,
                RedisRole::Slave => ObservedRole::Replica,
            }),
            upstream: observed.and_then(|o| o.master.as_ref().map(|(h, p)| addr(h, *p))),
            master_link_up: link_up,
            link_error,
            repl_offset: observed.map(|o| o.processed_offset()),
            upstream_offset,
            lag_bytes: lag,
            lag_seconds,
            sync_in_progress: observed.is_some_and(|o| o.master_sync_in_progress),
            sync_full: observed.map_or(0, |o| o.sync_full),
            sync_partial_ok: observed.map_or(0, |o| o.sync_partial_ok),
            connected_replicas: observed.map_or(0, |o| o.connected_slaves),
            ready,
            error,
            fenced,
            sentinel_primary: elected.map(|e| e.addr()),
            sentinel_epoch: elected.map(|e| e.config_epoch),
            sentinels_reachable: sentinel_view.as_ref().map(|v| v.reachable),
            diverged_bytes: self.divergence.diverged_bytes,
        };
        self.publish_metrics(observed, &desired_up, &report, probe_seconds);
        *self.shared.report.lock().expect("report lock") = report;
        *self.shared.heartbeat.lock().expect("heartbeat lock") = Instant::now();
    }

    /// Compare the remembered replication position with the upstream's ids; log each finding once.
    fn note_divergence(&mut self, up: &Upstream, ids: &UpstreamIds) {
        let a = addr(&up.host, up.port);
        match self.divergence.check(ids) {
            Finding::Diverged { bytes, first: true } => warn!(
                upstream = %a,
                diverged_bytes = bytes,
                "the upstream {a} is a new primary that took over from the one this replica followed, but this replica had {bytes} bytes of writes the new upstream primary never received: it resynchronises in full and those writes are lost"
            ),
            Finding::Unrelated {
                remembered,
                upstream,
                first: true,
            } => info!(
                upstream = %a,
                "the dataset of the upstream {a} (replication id {upstream}) does not descend from the one this replica followed ({remembered}): it resynchronises in full"
            ),
            _ => {}
        }
    }

    /// Plan and execute; `Ok(true)` when commands were issued (Redis must be re-read).
    async fn apply(
        &mut self,
        d: &DesiredTopology,
        observed: &Observed,
        config: &RedisConfig,
        creds: &Credentials,
        verdict: Option<&Verdict>,
        local_ep: &Endpoint,
    ) -> Result<bool, String> {
        let planned = commands_for(d, observed, config, creds, verdict);
        let waiting = matches!(planned, Err(Blocked::SentinelsFailingOver))
            .then(|| Blocked::SentinelsFailingOver.to_string());
        self.log_waiting.update("sentinel mode", &waiting);
        let cmds = match planned {
            Ok(cmds) => cmds,
            Err(b) if b.is_wait() => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        for c in &cmds {
            info!(epoch = d.epoch, command = %c.describe(), "applying");
            if let Err(e) = self.local.execute(local_ep, c, d.replicaof_name()).await {
                return Err(format!("applying `{}` failed: {e}", c.describe()));
            }
        }
        if !cmds.is_empty() {
            // Persist REPLICAOF/masterauth in redis.conf so that a restarted redis-server comes
            // back as a replica of the same upstream and resumes with a partial resync (a server
            // that starts as a master gets a new replication id and would need a full one).
            let rewrite = self.local.config_rewrite(local_ep).await.err().map(|e| {
                format!("CONFIG REWRITE failed ({e}): after a redis-server restart the topology is re-applied, but the replica will need a full resync; start redis-server with a writable config file")
            });
            self.log_rewrite.update("persisting the topology", &rewrite);
        }
        if self.applied_epoch != Some(d.epoch) {
            info!(epoch = d.epoch, "topology applied");
        }
        self.applied_epoch = Some(d.epoch);
        Ok(!cmds.is_empty())
    }

    fn publish_metrics(
        &mut self,
        observed: Option<&Observed>,
        desired_up: &Option<Upstream>,
        report: &InstanceReport,
        probe_seconds: f64,
    ) {
        let m = &self.shared.metrics;
        m.up.set(i64::from(observed.is_some()));
        m.applied_epoch
            .set(report.applied_epoch.map_or(-1, |e| e as i64));
        m.topology_errors.set(i64::from(report.error.is_some()));
        m.fenced.set(i64::from(report.fenced));
        if desired_up.is_some() {
            m.upstream_probe_seconds.set(probe_seconds);
        }
        let info_labels = observed.map(|o| InfoLabels {
            role: match o.role {
                RedisRole::Master => "master".into(),
                RedisRole::Slave => "slave".into(),
            },
            redis_version: o.redis_version.clone(),
            redis_mode: o.redis_mode.clone(),
            run_id: o.run_id.clone(),
        });
        if info_labels != self.info_labels {
            m.instance_info.clear();
            if let Some(l) = &info_labels {
                m.instance_info.get_or_create(l).set(1);
            }
            self.info_labels = info_labels;
        }
        // Replica series are labelled with the desired upstream (or the one Redis reports).
        let master_labels = desired_up
            .as_ref()
            .map(|u| (u.host.clone(), u.port))
            .or_else(|| observed.and_then(|o| o.master.clone()))
            .map(|(h, p)| MasterLabels {
                master_host: h,
                master_port: p.to_string(),
            });
        if master_labels != self.master_labels {
            m.master_link_up.clear();
            m.master_last_io_seconds_ago.clear();
            m.master_sync_in_progress.clear();
            m.slave_repl_offset.clear();
            m.upstream_repl_offset.clear();
            self.master_labels = master_labels.clone();
        }
        if let Some(l) = &master_labels {
            m.master_link_up
                .get_or_create(l)
                .set(i64::from(report.master_link_up));
            if let Some(o) = observed {
                m.master_last_io_seconds_ago
                    .get_or_create(l)
                    .set(o.master_last_io_seconds_ago.unwrap_or(-1));
                m.master_sync_in_progress
                    .get_or_create(l)
                    .set(i64::from(o.master_sync_in_progress));
                m.slave_repl_offset
                    .get_or_create(l)
                    .set(o.processed_offset());
            }
            if let Some(uo) = report.upstream_offset {
                m.upstream_repl_offset.get_or_create(l).set(uo);
            }
        }
        if let Some(o) = observed {
            m.master_repl_offset.set(o.master_repl_offset);
            m.connected_slaves.set(i64::from(o.connected_slaves));
            m.resyncs_full.set(o.sync_full as i64);
            m.partial_resync_accepted.set(o.sync_partial_ok as i64);
            m.partial_resync_denied.set(o.sync_partial_err as i64);
        }
        if let Some(l) = report.lag_bytes {
            m.replication_lag_bytes.set(l);
        }
        if let Some(s) = report.lag_seconds {
            m.replication_lag_seconds.set(s);
        }
        m.replication_diverged_bytes
            .set(report.diverged_bytes.unwrap_or(0));
    }
}
