//! The reconcile loop: one task, one tick per probe interval (and at once when the topology
//! changes). A tick is a short pipeline (see [`Manager::tick`]): admit the delivered topology,
//! observe (the local Redis, the upstream probe and the Sentinels, concurrently), decide and act
//! (the commands `commands_for` chooses), track lag and divergence, and report (`assess`: the
//! `/status` report, published with the metrics). The decisions are pure functions in their own
//! modules; this one only sequences them and does the I/O.
//!
//! Both topology sources (downward-API file, Kubernetes watch) feed this loop through one
//! `watch` channel, so the loop does not know or care where the topology came from.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use redis_cluster_api::report::{
    DataSample, HistoryBlock, InstanceReport, Salvage, SameDataResync,
};
use redis_cluster_api::topology::{
    DesiredTopology, FENCE_MIN_REPLICAS, SentinelTopology, Upstream,
};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::assess::{self, Facts, desired_upstream};
use crate::commands::{
    self, Blocked, Command, ConfigValue, Credentials, TlsFiles, commands_for, passwords_command,
};
use crate::divergence::{self, Divergence, Finding, UpstreamIds};
use crate::gate::{self, ClosedGate};
use crate::history::{
    self, Block, Decision, Incarnation, Local, Record, Safe, UpstreamState, Wait,
};
use crate::info::{Observed, RedisConfig};
use crate::intake::{Admission, Delivered, Intake};
use crate::lag::{Lag, LagNow};
use crate::metrics::{Exported, Metrics};
use crate::observe::{Connections, GateTarget, Observation, Probe, Targets};
use crate::redis_io::{self, Endpoint, RedisError};
use crate::salvage;
use crate::secret::Secret;
use crate::sentinel::{self, Verdict, View};
use crate::similarity;
use crate::state::StateFile;

/// How often a failed salvage is tried again (see `salvage`).
const SALVAGE_RETRY: Duration = Duration::from_secs(10);

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
    /// The upstream probe opens a fresh connection at least this often, to see what the address
    /// leads to now.
    pub probe_max_age: Duration,
    pub tls: Option<TlsFiles>,
    /// The local redis-server is reached over TLS with [`Self::tls`] (`--redis-tls`).
    pub redis_tls: bool,
    /// Where the state file lives (`--state-dir`), if anywhere.
    pub state_dir: Option<PathBuf>,
}

/// State shared with the HTTP server.
pub struct Shared {
    pub metrics: Metrics,
    pub report: Mutex<InstanceReport>,
    /// The report's [`InstanceReport::material_digest`], for `GET /status?since=&wait=` (the
    /// operator's long poll: it learns of a change the tick it is published).
    pub changes: watch::Sender<u64>,
    /// The local Redis's last `INFO` text (`GET /info`): never holds a secret (Redis does not
    /// print `requirepass`/`masterauth` in INFO).
    pub info: Mutex<Option<String>>,
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
            changes: watch::Sender::new(
                InstanceReport {
                    pod: config.pod.clone(),
                    ..Default::default()
                }
                .material_digest(),
            ),
            info: Mutex::new(None),
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

/// Logs a message once when it appears or changes, and once when it clears: a condition that
/// lasts (a down link, a missing file) is logged once, not at every tick.
#[derive(Default)]
struct LogOnChange {
    last: Option<String>,
}

impl LogOnChange {
    fn update(&mut self, what: &str, now: &Option<String>) {
        if !self.changed(now) {
            return;
        }
        match now {
            Some(m) => warn!("{what}: {m}"),
            None => info!("{what}: resolved"),
        }
    }

    /// Whether `now` differs from what was logged last (and remember it).
    fn changed(&mut self, now: &Option<String>) -> bool {
        if *now == self.last {
            return false;
        }
        self.last = now.clone();
        true
    }
}

/// Why applying the topology failed.
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Blocked(#[from] Blocked),
    #[error("applying `{command}` failed: {error}")]
    Command { command: String, error: RedisError },
}

/// A replication history the gate refuses, since when, and what the user is told.
struct BlockSeen {
    block: Block,
    message: String,
    report: HistoryBlock,
}

/// The last comparison of this replica's data with a blocked upstream's, per histories: taken
/// once per (upstream address, upstream id and process, our id), again after
/// [`SAMPLE_AGAIN`] when too few keys matched and after [`SAMPLE_RETRY`] when it failed.
struct SampleMemo {
    key: (String, String, String, String),
    sample: DataSample,
    at: Instant,
}

/// A comparison that showed different data is taken again this often (the upstream's data
/// may be restored meanwhile).
const SAMPLE_AGAIN: Duration = Duration::from_secs(60);
/// A comparison that failed (timeout, connection, permissions) is tried again this often.
const SAMPLE_RETRY: Duration = Duration::from_secs(10);

/// Whether the redis-server process now running has stayed fenced since it booted.
struct BootWatch {
    run_id: String,
    /// This instance manager has watched it since (about) its boot.
    since_boot: bool,
    fenced_throughout: bool,
}

pub struct Manager {
    config: ManagerConfig,
    shared: Arc<Shared>,
    intake: Intake,
    connections: Connections,
    lag: Lag,
    divergence: Divergence,
    applied_epoch: Option<u64>,
    last_run_id: Option<String>,
    exported: Exported,
    log_link: LogOnChange,
    log_error: LogOnChange,
    log_rewrite: LogOnChange,
    log_tls: LogOnChange,
    log_sentinel_auth: LogOnChange,
    log_sentinels: LogOnChange,
    log_waiting: LogOnChange,
    log_state: LogOnChange,
    clock0: Instant,
    /// The closed replication gate's values (see `gate`).
    gate: ClosedGate,
    /// What this pod's data followed last (see `history::Record`).
    record: Option<Record>,
    state: Option<StateFile>,
    blocked: Option<BlockSeen>,
    /// The gate waits for the upstream to move on (`history::Wait`), with its message.
    waiting: Option<(String, Wait)>,
    /// The ids the upstream's current process has shown (see `history::Incarnation`).
    upstream_incarnation: Incarnation,
    boot: Option<BootWatch>,
    /// The last comparison of our data with a blocked upstream's (see `similarity`).
    sampled: Option<SampleMemo>,
    /// The last full resync the gate let through because the upstream holds the same data.
    same_data: Option<SameDataResync>,
    /// The last salvage (see `salvage`), read back from the volume at start.
    salvage: Option<Salvage>,
    /// Why the salvage before the gate's opening failed: the gate stays closed, retried.
    salvage_error: Option<String>,
    /// The upstream history of the last failed salvage, and when (see `SALVAGE_RETRY`).
    salvage_failed: Option<(String, Instant)>,
    /// `--redis-tls`: the fingerprint of the TLS files redis-server last loaded (None until the
    /// first reload: the files may have changed while this process was not running).
    tls_loaded: Option<u64>,
    /// Why the certificates could not be reloaded into redis-server, reported until they are.
    tls_error: Option<String>,
    /// Why the local Redis could not be made to accept the password file's passwords.
    password_error: Option<String>,
    /// The password the local Redis was last seen or made to accept (held in memory only).
    local_password_applied: Option<Secret>,
    /// The `previousPassword` it was last made to accept besides it: kept in sentinel mode
    /// until the Sentinels use the new password.
    local_previous_applied: Option<Secret>,
    /// Sentinel mode: the passwords (SHA-256) the Sentinels were last checked for, when, and
    /// whether they all used them (checked again after `SENTINEL_AUTH_RECHECK`, or
    /// `SENTINEL_AUTH_RETRY` when not).
    sentinel_auth_checked: Option<(String, Instant, bool)>,
    log_passwords: LogOnChange,
}

impl Manager {
    pub fn new(config: ManagerConfig, shared: Arc<Shared>) -> Manager {
        let mut state = config.state_dir.as_deref().map(StateFile::new);
        let mut log_state = LogOnChange::default();
        let record = match state.as_mut().map(StateFile::load) {
            None => None,
            Some(Ok(r)) => {
                match &r {
                    Some(r) => info!(
                        path = %state.as_ref().expect("loaded").path().display(),
                        replid = %r.replid,
                        offset = r.offset,
                        keys = r.keys,
                        "this pod's data followed replication history {} (state file)",
                        r.replid
                    ),
                    None => info!("no state file yet: nothing recorded about this pod's data"),
                }
                r
            }
            Some(Err(e)) => {
                log_state.update("state file", &Some(e.to_string()));
                None
            }
        };
        let salvage_store = config.state_dir.as_deref().map(salvage::Store::new);
        let mut divergence = Divergence::default();
        if let Some(r) = record.as_ref().filter(|r| r.role == "replica") {
            divergence.remember(&r.replid, r.offset);
        }
        Manager {
            connections: Connections::new(config.probe_timeout, config.probe_max_age),
            config,
            shared,
            intake: Intake::default(),
            lag: Lag::default(),
            divergence,
            applied_epoch: None,
            last_run_id: None,
            exported: Exported::default(),
            log_link: LogOnChange::default(),
            log_error: LogOnChange::default(),
            log_rewrite: LogOnChange::default(),
            log_tls: LogOnChange::default(),
            log_sentinel_auth: LogOnChange::default(),
            log_sentinels: LogOnChange::default(),
            log_waiting: LogOnChange::default(),
            log_state,
            clock0: Instant::now(),
            gate: ClosedGate::random(),
            record,
            state,
            blocked: None,
            waiting: None,
            upstream_incarnation: Incarnation::default(),
            boot: None,
            sampled: None,
            same_data: None,
            salvage: salvage_store.as_ref().and_then(salvage::Store::latest),
            salvage_error: None,
            salvage_failed: None,
            tls_loaded: None,
            tls_error: None,
            password_error: None,
            local_password_applied: None,
            local_previous_applied: None,
            sentinel_auth_checked: None,
            log_passwords: LogOnChange::default(),
        }
    }

    /// Run forever: a tick every probe interval, and at once when the topology changes.
    pub async fn run(mut self, mut rx: watch::Receiver<Delivered>) {
        let mut ticker = tokio::time::interval(self.config.probe_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut source_open = true;
        // A pass cut short by a newer topology: the next one starts at once.
        let mut again = false;
        loop {
            if again {
                again = false;
            } else if source_open {
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
            if source_open {
                again = !self
                    .tick_unless(&delivered, newer_topology(&mut rx, &delivered))
                    .await;
            } else {
                self.tick(&delivered).await;
            }
        }
    }

    /// One pass: admit, observe, decide and act, open the replication gate if that is safe,
    /// track, report.
    pub async fn tick(&mut self, delivered: &Delivered) {
        self.tick_unless(delivered, std::future::pending()).await;
    }

    /// [`tick`](Self::tick), cut short when `newer` resolves (a newer topology arrived) while
    /// the pass is still observing: an unreachable upstream holds the observation for the whole
    /// probe timeout, and a promotion must not wait for a probe of the source it leaves. Only
    /// observation is interrupted (dropping a read is harmless: the next pass reads again);
    /// once it acts, the pass completes. Returns whether it completed.
    async fn tick_unless(
        &mut self,
        delivered: &Delivered,
        newer: impl Future<Output = ()>,
    ) -> bool {
        let desired = self.admit(delivered);
        let mut targets = Targets::resolve(&self.config, desired.as_ref());
        // A Secret changed in one step (no previousPassword): Redis still requires the
        // password this process last made it accept, which is how it is reached to take the
        // new one.
        if targets.local.previous.is_none() {
            targets.local.previous = self
                .local_password_applied
                .clone()
                .filter(|p| Some(p) != targets.local.password.as_ref());
        }
        let sentinels = desired.as_ref().and_then(|d| d.sentinel.as_ref());
        let mut seen = tokio::select! {
            biased;
            seen = self.connections.observe(&targets, sentinels) => seen,
            () = newer => {
                debug!("a newer topology arrived while observing: starting over with it");
                return false;
            }
        };
        let verdict = self.sentinel_verdict(sentinels, seen.sentinels.as_ref());
        let apply_error = match &desired {
            Some(d) => self.act(d, &targets, verdict.as_ref(), &mut seen).await,
            None => None,
        };
        match &desired {
            Some(d) => self.gate(d, &targets, &mut seen).await,
            None => {
                self.blocked = None;
                self.waiting = None;
            }
        }
        let upstream = desired.as_ref().and_then(desired_upstream);
        let accept = desired.as_ref().and_then(|d| d.accept_history.as_deref());
        let restarted = seen.local.as_ref().ok().and_then(|(o, _)| {
            history::restarted_primary(o, self.record.as_ref(), accept).map(|r| r.report())
        });
        let lag = self.track(upstream, &seen, restarted.is_some());
        let booted_fenced = self.watch_boot(&seen);
        let last_seen = self.lag.last_seen(self.clock0.elapsed().as_secs_f64());
        let report = assess::report(&Facts {
            pod: &self.config.pod,
            desired: desired.as_ref(),
            applied_epoch: self.applied_epoch,
            local: seen.local.as_ref(),
            local_password: targets.local_password.as_ref(),
            probe: seen.probe.as_ref(),
            intake_error: self.intake.error.as_deref(),
            apply_error: apply_error.as_deref(),
            lag,
            upstream_last_seen: last_seen.as_ref(),
            sentinels: seen.sentinels.as_ref(),
            diverged_bytes: self.divergence.diverged_bytes,
            blocked: self
                .blocked
                .as_ref()
                .map(|b| (b.message.as_str(), &b.report)),
            waiting: self.waiting.as_ref().map(|(m, w)| (m.as_str(), w.token())),
            record: self.record.as_ref(),
            booted_fenced,
            restarted_primary: restarted.as_ref(),
            same_data_resync: self.same_data.as_ref(),
            salvage: self.salvage.as_ref(),
            salvage_error: self.salvage_error.as_deref(),
            passwords: self.passwords_accepted(),
        });
        self.log_link.update("replication link", &report.link_error);
        self.log_error.update("error", &report.error);
        self.publish(report, &seen, upstream);
        true
    }

    /// Offer the delivered annotation to the intake; returns the topology in force.
    fn admit(&mut self, delivered: &Delivered) -> Option<DesiredTopology> {
        match self.intake.offer(delivered) {
            Admission::Accepted(epoch) => info!(epoch, "topology accepted"),
            Admission::SameEpoch => {
                info!("topology re-published with the same epoch; nothing to do")
            }
            Admission::Stale { .. } | Admission::Refused(_) | Admission::Unchanged => {}
        }
        self.intake.desired().cloned()
    }

    /// What the Sentinels' answers mean for this pod (sentinel mode only); logged once while no
    /// Sentinel names a master.
    fn sentinel_verdict(
        &mut self,
        topology: Option<&SentinelTopology>,
        view: Option<&View>,
    ) -> Option<Verdict> {
        let asked = topology.zip(view);
        let note = asked.and_then(|(st, v)| sentinel::unknown_master_note(st, v));
        self.log_sentinels.update("sentinels", &note);
        asked.map(|(st, v)| Verdict::of(v, &st.announce_host, self.config.redis_port))
    }

    /// Bring the local Redis to `d` and read it again if anything was issued; returns the error
    /// to report. Nothing is done while Redis cannot be read or the upstream cannot be reached.
    async fn act(
        &mut self,
        d: &DesiredTopology,
        targets: &Targets,
        verdict: Option<&Verdict>,
        seen: &mut Observation,
    ) -> Option<String> {
        let Ok((observed, config)) = &seen.local else {
            return None;
        };
        if let Some(prev) = &self.last_run_id
            && *prev != observed.run_id
        {
            info!("redis-server restarted (run_id changed); re-checking the topology");
        }
        self.last_run_id = Some(observed.run_id.clone());
        self.reload_certificates(d, &targets.local).await;
        // Sentinel mode: the Sentinels first (they must use the new password before a data
        // pod stops accepting the old one).
        let sentinels_use_current = match (&d.sentinel, &targets.local.password) {
            (Some(st), Some(current)) => {
                self.converge_sentinels(
                    st,
                    current,
                    targets.local_previous.as_ref(),
                    &targets.local,
                )
                .await
            }
            _ => true,
        };
        let previous = match &targets.local_previous {
            Some(p) => Some(p.clone()),
            None if !sentinels_use_current => self.local_previous_applied.clone(),
            None => None,
        };
        self.converge_passwords(&targets.local, previous.as_ref())
            .await;
        let creds = targets
            .credentials(&self.gate)
            .ok_or_else(|| self.tls_error.clone());
        let creds = match creds {
            Ok(c) => c,
            Err(tls_error) => return tls_error,
        };
        let (issued, error) = self
            .apply(d, observed, config, &creds, verdict, &targets.local)
            .await;
        if issued {
            seen.local = self.connections.read_local(&targets.local).await;
        }
        error
            .map(|e| e.to_string())
            .or_else(|| self.tls_error.clone())
            .or_else(|| self.password_error.clone())
    }

    /// Password rotation in sentinel mode (docs/password-rotation.md): every Sentinel's own
    /// default user accepts exactly `password` (and `previousPassword` while the Secret has
    /// it), and once the rotation is over, each uses `password` towards the data pods and the
    /// other Sentinels; only when the primary they name accepts it. Returns whether every
    /// Sentinel uses the current password (or nothing is to be done). Checked when the Secret
    /// changes, and every `SENTINEL_AUTH_RECHECK` (a Sentinel restarted mid-rotation boots
    /// with `password` alone).
    async fn converge_sentinels(
        &mut self,
        st: &SentinelTopology,
        current: &Secret,
        previous: Option<&Secret>,
        local_ep: &Endpoint,
    ) -> bool {
        let key = format!(
            "{}:{}",
            current.sha256_hex(),
            previous.map(Secret::sha256_hex).unwrap_or_default()
        );
        // Not at every tick: a Sentinel that does not answer would hold each tick for the
        // probe timeout (and the ticks are what reacts to a failover).
        if let Some((k, at, done)) = &self.sentinel_auth_checked
            && *k == key
            && at.elapsed()
                < if *done {
                    SENTINEL_AUTH_RECHECK
                } else {
                    SENTINEL_AUTH_RETRY
                }
        {
            return *done;
        }
        let timeout = self.config.probe_timeout;
        let fallback = previous.cloned().or_else(|| local_ep.previous.clone());
        let results = futures::future::join_all(st.addresses.iter().map(|addr| {
            let fallback = fallback.clone();
            async move {
                let (host, port) = sentinel::split_addr(addr)?;
                let ep = Endpoint {
                    host,
                    port,
                    username: None,
                    password: Some(current.clone()),
                    // A Sentinel not converged yet accepts the old password only.
                    previous: fallback,
                    tls: None,
                };
                converge_sentinel(&ep, &st.master_name, current, previous, timeout)
                    .await
                    .map_err(|e| format!("Sentinel {addr}: {e}"))
            }
        }))
        .await;
        let done = results.iter().all(|r| matches!(r, Ok(true)));
        let problems: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        self.sentinel_auth_checked = Some((key, Instant::now(), done));
        let problem = (!problems.is_empty()).then(|| problems.join("; "));
        self.log_sentinel_auth
            .update("password rotation on the Sentinels", &problem);
        done
    }

    /// Which of the Secret's passwords the local Redis was last found or made to accept, by
    /// key name (never a value).
    fn passwords_accepted(&self) -> Option<&'static str> {
        if self.password_error.is_some() {
            return None;
        }
        self.local_password_applied
            .as_ref()
            .map(|_| match self.local_previous_applied {
                Some(_) => "password+previousPassword",
                None => "password",
            })
    }

    /// Password rotation (docs/password-rotation.md): the local Redis's default user accepts
    /// exactly the password file's password and, while the Secret also holds
    /// `previousPassword`, that one too. Read every tick (`ACL GETUSER default` lists them as
    /// SHA-256), changed in one transaction when they differ: a changed Secret is applied live,
    /// no restart, and connections already authenticated stay so.
    async fn converge_passwords(&mut self, local_ep: &Endpoint, previous: Option<&Secret>) {
        let Some(current) = &local_ep.password else {
            self.password_error = None;
            return;
        };
        let local = self.connections.local();
        let listed = match local.default_user_passwords(local_ep).await {
            Ok(l) => l,
            Err(e) => {
                self.password_error = Some(format!(
                    "cannot read which passwords the local Redis accepts: {e}"
                ));
                self.log_passwords
                    .update("password rotation", &self.password_error);
                return;
            }
        };
        let Some(cmd) = passwords_command(&listed, current, previous) else {
            self.password_error = None;
            self.local_password_applied = Some(current.clone());
            self.local_previous_applied = previous.cloned();
            self.log_passwords
                .update("password rotation", &self.password_error);
            return;
        };
        match local.execute(local_ep, &cmd, "").await {
            Ok(()) => {
                info!(
                    command = %cmd.describe(),
                    previous = previous.is_some(),
                    "the local Redis now accepts the password Secret's password{}",
                    if previous.is_some() {
                        " and its previousPassword"
                    } else {
                        " only"
                    }
                );
                self.password_error = None;
                self.local_password_applied = Some(current.clone());
                self.local_previous_applied = previous.cloned();
            }
            Err(e) => {
                self.password_error = Some(format!(
                    "the local Redis did not take the password Secret's passwords: {e}"
                ));
            }
        }
        self.log_passwords
            .update("password rotation", &self.password_error);
    }

    /// `--redis-tls`: redis-server reads its certificate files at start only; a renewed Secret
    /// (the kubelet swaps the mounted files) reaches it through `CONFIG SET tls-*` of the same
    /// paths, which makes Redis load them again (Redis 7.0: also for an unchanged value). Done
    /// once at start (they may have changed while this process was down) and whenever the
    /// files' contents change. Connections already open keep their session; new ones, including
    /// replication links, get the new certificate. A refused reload (a key that does not match
    /// its certificate, half-way through a rotation) keeps the old certificates in Redis and is
    /// retried every tick, reported meanwhile.
    async fn reload_certificates(&mut self, d: &DesiredTopology, local_ep: &Endpoint) {
        let Some(files) = self.config.tls.as_ref().filter(|_| self.config.redis_tls) else {
            return;
        };
        let now = match tls_fingerprint(files) {
            Ok(f) => f,
            Err(e) => {
                self.tls_error = Some(format!("cannot read the TLS files to reload them: {e}"));
                return;
            }
        };
        if self.tls_loaded == Some(now) {
            return;
        }
        let cmd = Command::ConfigSet(vec![
            ("tls-ca-cert-file", ConfigValue::Plain(files.ca.clone())),
            ("tls-cert-file", ConfigValue::Plain(files.cert.clone())),
            ("tls-key-file", ConfigValue::Plain(files.key.clone())),
        ]);
        let res = self
            .connections
            .local()
            .execute(local_ep, &cmd, d.replicaof_name())
            .await;
        match res {
            Ok(()) => {
                if self.tls_loaded.is_some() {
                    info!("TLS certificates changed on disk: reloaded into redis-server");
                }
                self.tls_loaded = Some(now);
                self.tls_error = None;
            }
            Err(e) => {
                self.tls_error = Some(format!(
                    "redis-server refused the TLS files ({}); it keeps serving the certificates it loaded before",
                    e.cause
                ))
            }
        }
        self.log_tls
            .update("reloading TLS certificates", &self.tls_error);
    }

    /// Execute what `commands_for` decides, in order, then persist it. Returns whether
    /// commands were issued (Redis must be re-read), and why the topology is not (fully)
    /// applied.
    async fn apply(
        &mut self,
        d: &DesiredTopology,
        observed: &Observed,
        config: &RedisConfig,
        creds: &Credentials,
        verdict: Option<&Verdict>,
        local_ep: &Endpoint,
    ) -> (bool, Option<ApplyError>) {
        let decided = commands_for(d, observed, config, creds, verdict, self.record.as_ref());
        let waiting = matches!(decided, Err(Blocked::SentinelsFailingOver))
            .then(|| Blocked::SentinelsFailingOver.to_string());
        self.log_waiting.update("sentinel mode", &waiting);
        let cmds = match decided {
            Ok(cmds) => cmds,
            Err(b) if b.is_wait() => return (false, None),
            Err(b) => {
                // A restarted primary that booted unfenced is fenced even so.
                let Some(c) = b.first() else {
                    return (false, Some(b.into()));
                };
                warn!(epoch = d.epoch, command = %c.describe(), "{b}");
                let issued = self
                    .connections
                    .local()
                    .execute(local_ep, &c, d.replicaof_name())
                    .await;
                return match issued {
                    Ok(()) => (true, Some(b.into())),
                    Err(error) => (
                        false,
                        Some(ApplyError::Command {
                            command: c.describe(),
                            error,
                        }),
                    ),
                };
            }
        };
        match self.execute_all(d, &cmds, local_ep).await {
            Ok(()) => (!cmds.is_empty(), None),
            Err(e) => (false, Some(e)),
        }
    }

    /// Issue `cmds` in order, persist them (`CONFIG REWRITE`) and note the applied epoch.
    async fn execute_all(
        &mut self,
        d: &DesiredTopology,
        cmds: &[Command],
        local_ep: &Endpoint,
    ) -> Result<(), ApplyError> {
        let local = self.connections.local();
        for c in cmds {
            info!(epoch = d.epoch, command = %c.describe(), "applying");
            local
                .execute(local_ep, c, d.replicaof_name())
                .await
                .map_err(|error| ApplyError::Command {
                    command: c.describe(),
                    error,
                })?;
        }
        if !cmds.is_empty() {
            // Persist REPLICAOF/masterauth in redis.conf so that a restarted redis-server comes
            // back as a replica of the same upstream and resumes with a partial resync (a server
            // that starts as a master gets a new replication id and would need a full one).
            let rewrite = local.config_rewrite(local_ep).await.err().map(|e| {
                format!("CONFIG REWRITE failed ({}): after a redis-server restart the topology is re-applied, but the replica will need a full resync; start redis-server with a writable config file", e.cause)
            });
            self.log_rewrite.update("persisting the topology", &rewrite);
        }
        if self.applied_epoch != Some(d.epoch) {
            info!(epoch = d.epoch, "topology applied");
        }
        self.applied_epoch = Some(d.epoch);
        Ok(())
    }

    /// The replication gate (see `gate`): when the local Redis is a replica that is not linked,
    /// read what its upstream address leads to now, on a fresh connection, and let
    /// `history::decide` judge; open the gate only if a sync keeps our data, and close it again
    /// as soon as the handshake got through.
    async fn gate(&mut self, d: &DesiredTopology, targets: &Targets, seen: &mut Observation) {
        let Ok((o, _)) = &seen.local else {
            return;
        };
        if !gate::wants_check(o) {
            // Linked, syncing, a master, or loading: nothing is refused now.
            if !o.loading {
                self.blocked = None;
                self.waiting = None;
            }
            return;
        }
        let master = o
            .master
            .clone()
            .expect("wants_check: pointed at an upstream");
        let address = crate::addr(&master.0, master.1);
        // When the gate cannot judge this tick (what it needs is missing, the upstream does not
        // answer or is not a Redis with replication ids), it stays closed and the link error
        // says why (the probe's), not an older block.
        let Some(target) = targets.gate(d, &master) else {
            self.blocked = None;
            return;
        };
        let Ok((info, checked_at, accepted)) =
            redis_io::read_history(&target.endpoint, self.config.probe_timeout).await
        else {
            self.blocked = None;
            return;
        };
        // Opened with the password the upstream accepted just now (mid-rotation, the previous
        // one may be the only one it takes yet).
        let target = match target.open.password {
            Some(_) => GateTarget {
                open: gate::OpenWith {
                    password: accepted,
                    ..target.open
                },
                ..target
            },
            None => target,
        };
        let Some(up) = UpstreamState::parse(&address, &info) else {
            self.blocked = None;
            return;
        };
        let aliases = self.upstream_incarnation.observe(&up);
        let local = Local::of(o);
        let accept = d.accept_history.as_deref();
        let mut checked_at = checked_at;
        let decision = match history::decide(&local, self.record.as_ref(), &up, accept, &aliases) {
            // While the cluster replicates an external source (the topology names no primary),
            // an unrelated history is judged once more on the data itself: a source that
            // restarted with its data comes back under a new replication id.
            Decision::Blocked(block) if block.worth_sampling(d.primary.is_none()) => {
                let sample = self.sample(&block, &targets.local, &target).await;
                history::with_sample(block, sample)
            }
            other => other,
        };
        let why = match decision {
            Decision::Blocked(block) => {
                self.waiting = None;
                return self.note_block(d, block);
            }
            Decision::Wait(wait) => {
                self.blocked = None;
                if self.waiting.as_ref().is_none_or(|(_, w)| *w != wait) {
                    info!(upstream = %address, "{}", wait.message(&address));
                }
                self.waiting = Some((wait.message(&address), wait));
                return;
            }
            Decision::Safe(why) => why,
        };
        self.waiting = None;
        // What the resync would discard is saved first (issue 14, item 3); while that fails,
        // the gate stays closed.
        if let Some(want) = salvage::want(&local, self.record.as_ref(), &up, &why)
            && !self.salvage(d, targets, &master, &up, &want).await
        {
            return;
        }
        let ours = match self.blocked.take() {
            Some(b) => b.block.ours,
            None => redis_cluster_api::report::HistoryPosition {
                replid: self
                    .record
                    .as_ref()
                    .map_or(local.replid.clone(), |r| r.replid.clone()),
                offset: self.record.as_ref().map_or(local.offset, |r| r.offset),
                keys: local.keys,
            },
        };
        match &why {
            Safe::Accepted => warn!(
                upstream = %address,
                replid = %up.replid,
                "accepting the replication history {} of {address} (acceptHistory): this replica's {} keys (history {}) are replaced by the upstream's {} keys",
                up.replid,
                local.keys,
                ours.replid,
                up.keys
            ),
            Safe::SameData(sample) => {
                // The comparison took a while: the upstream must still be the one compared.
                match redis_io::read_history(&target.endpoint, self.config.probe_timeout).await {
                    Ok((info, at, _))
                        if UpstreamState::parse(&address, &info).is_some_and(|now| {
                            now.replid == up.replid && now.run_id == up.run_id
                        }) =>
                    {
                        checked_at = at;
                    }
                    _ => return,
                }
                warn!(
                    upstream = %address,
                    replid = %up.replid,
                    ours = %ours.replid,
                    matched = sample.matched,
                    compared = sample.compared,
                    "the upstream {address} came back under another replication history ({}@{}, {} keys; this replica holds {}@{}, {} keys), but it holds the same data: {}. Taking it for the same data restarted under a new replication id: this replica resynchronises in full, and what the upstream lost in its restart is lost here too",
                    up.replid,
                    up.offset,
                    up.keys,
                    ours.replid,
                    ours.offset,
                    ours.keys,
                    sample.describe()
                );
            }
            _ => {}
        }
        let opened = self
            .open_gate(d, targets, &target, &master, &why, checked_at, seen)
            .await;
        // Reported as divergedBytes (the operator's FullResyncAfterFailover Event): the gate's
        // count also covers siblings promoted out of one history, which the link tracker's
        // lineage check does not see.
        if let (
            true,
            Safe::Failover {
                diverged: Some(bytes),
            },
        ) = (opened, &why)
        {
            self.divergence.diverged_bytes = Some(*bytes);
        }
        if let (true, Safe::SameData(sample)) = (opened, &why) {
            self.same_data = Some(SameDataResync {
                ours,
                upstream: up.history(),
                sample: sample.clone(),
                at: crate::rfc3339(SystemTime::now()),
            });
        }
    }

    /// Save `want` before the gate opens for `up` (see `salvage`): once per upstream history
    /// (the manifest on the volume says whether it was done). Returns whether the gate may
    /// open: done now or before, or nowhere to keep it (no `--state-dir`: said once).
    async fn salvage(
        &mut self,
        d: &DesiredTopology,
        targets: &Targets,
        master: &(String, u16),
        up: &UpstreamState,
        want: &salvage::Want,
    ) -> bool {
        let Some(store) = self.config.state_dir.as_deref().map(salvage::Store::new) else {
            if self.salvage_error.is_none() {
                warn!(
                    upstream = %up.address,
                    "the resync from {} discards data this pod holds ({want:?}), and without --state-dir there is nowhere to salvage it",
                    up.address
                );
            }
            self.salvage_error = None;
            return true;
        };
        if let Some(done) = store.done(&up.replid) {
            if done.kind != salvage::NOTHING {
                self.salvage = Some(done);
            }
            self.salvage_error = None;
            return true;
        }
        // A failed capture is retried every SALVAGE_RETRY, not every tick: each attempt pauses
        // writes and makes the local Redis a master for a moment.
        if let Some((replid, at)) = &self.salvage_failed
            && *replid == up.replid
            && at.elapsed() < SALVAGE_RETRY
        {
            return false;
        }
        let started = Instant::now();
        match self.capture(d, targets, master, up, want, &store).await {
            Ok(s) if s.kind == salvage::NOTHING => {
                info!(
                    upstream = %up.address,
                    bytes = s.bytes,
                    "this pod held {} bytes beyond what {} received of replication history {}, but they write no key (pings, Sentinel hellos): nothing to salvage",
                    s.bytes,
                    up.address,
                    s.replid
                );
                self.salvage_error = None;
                true
            }
            Ok(s) => {
                warn!(
                    upstream = %up.address,
                    kind = %s.kind,
                    file = %s.file,
                    bytes = s.bytes,
                    keys = s.keys,
                    ms = started.elapsed().as_millis() as u64,
                    "salvaged before the resync from {}: {} ({} bytes, {} keys) in {}; nothing is replayed (docs/salvage.md)",
                    up.address,
                    s.kind,
                    s.bytes,
                    s.keys,
                    s.file
                );
                self.salvage = Some(s);
                self.salvage_error = None;
                true
            }
            Err(e) => {
                let msg = format!(
                    "a resync from {} would discard data this pod holds, and saving it first failed: {e}; this replica keeps its data and does not replicate until it is saved (retried every {} s)",
                    up.address,
                    SALVAGE_RETRY.as_secs()
                );
                if self.salvage_error.as_ref() != Some(&msg) {
                    warn!(upstream = %up.address, "{msg}");
                }
                self.salvage_error = Some(msg);
                self.salvage_failed = Some((up.replid.clone(), Instant::now()));
                false
            }
        }
    }

    /// The capture itself: writes paused, the local Redis a master for the duration (a replica
    /// whose link is down refuses `PSYNC`), asked for `want` as a replica would, pointed back at
    /// `master` before the pause ends, whatever happened.
    async fn capture(
        &mut self,
        d: &DesiredTopology,
        targets: &Targets,
        master: &(String, u16),
        up: &UpstreamState,
        want: &salvage::Want,
        store: &salvage::Store,
    ) -> Result<Salvage, String> {
        let timeout = salvage::deadline(want);
        let conn = redis_io::Conn::connect(&targets.local, Duration::from_secs(2))
            .await
            .map_err(|e| format!("cannot connect to the local Redis: {e}"))?;
        let pause_ms = (timeout + Duration::from_secs(5)).as_millis().to_string();
        conn.command(
            "CLIENT",
            vec!["PAUSE".into(), pause_ms.into(), "WRITE".into()],
        )
        .await
        .map_err(|e| format!("CLIENT PAUSE: {e}"))?;
        let at = crate::rfc3339(SystemTime::now());
        let stem = salvage::stem(&at, want.replid());
        // Fenced before it becomes a master: the pause delays writes only for clients of this
        // Redis, and expires on its own; the fence refuses them (`-NOREPLICAS`) for everybody,
        // whatever happens to this process, until a tick sets the topology's value again. No
        // moment exists in which this pod is a second writable primary of its cluster (several
        // diverged pods capture at once after an unplanned promotion).
        let fence = Command::ConfigSet(vec![(
            "min-replicas-to-write",
            ConfigValue::Plain(FENCE_MIN_REPLICAS.to_string()),
        )]);
        if let Err(e) = conn.execute(&fence, d.replicaof_name()).await {
            let _ = conn.command("CLIENT", vec!["UNPAUSE".into()]).await;
            conn.close();
            return Err(format!("fencing the local Redis before the salvage: {e}"));
        }
        let result = async {
            conn.execute(&Command::ReplicaOfNoOne, d.replicaof_name())
                .await
                .map_err(|e| format!("REPLICAOF NO ONE: {e}"))?;
            let (raw_path, mut raw) = store
                .create(&format!("{stem}.partial"))
                .map_err(|e| format!("cannot create a file in {}: {e}", store.dir().display()))?;
            let got = salvage::capture(&targets.local, want, &mut raw, timeout).await;
            Ok::<_, String>((raw_path, raw, got))
        }
        .await;
        // Back to following the upstream (the gate still closed) before writes resume.
        let back = conn
            .execute(
                &Command::ReplicaOf(master.0.clone(), master.1),
                d.replicaof_name(),
            )
            .await;
        // The fence is lifted only once Redis is a read-only replica again (as a tick does).
        let unfenced = match &back {
            Ok(()) => {
                let value = d.min_replicas_to_write.to_string();
                let lift =
                    Command::ConfigSet(vec![("min-replicas-to-write", ConfigValue::Plain(value))]);
                conn.execute(&lift, d.replicaof_name()).await
            }
            Err(_) => Ok(()),
        };
        let unpaused = conn.command("CLIENT", vec!["UNPAUSE".into()]).await;
        conn.close();
        if let Err(e) = back {
            return Err(format!(
                "pointing the local Redis back at {} failed ({e}); writes stay paused until the pause expires and the next tick re-points it",
                up.address
            ));
        }
        if let Err(e) = unfenced {
            warn!(
                "lifting the salvage's fence failed ({e}); the next tick sets min-replicas-to-write again"
            );
        }
        if let Err(e) = unpaused {
            warn!("CLIENT UNPAUSE after the salvage failed ({e}); the pause expires on its own");
        }
        let (raw_path, raw, got) = result?;
        let kept = self
            .keep(targets, up, want, store, &stem, &at, raw_path, raw, got)
            .await;
        if kept.is_err() {
            // Nothing half-written stays behind to fill the volume at every retry.
            for ext in ["partial", "resp", "txt", "rdb"] {
                let _ = std::fs::remove_file(store.dir().join(format!("{stem}.{ext}")));
            }
        }
        kept
    }

    /// What a capture got, kept: the tail read into its replayable file and listing, or the
    /// snapshot renamed, and the manifest written last (it makes the salvage done).
    #[allow(clippy::too_many_arguments)]
    async fn keep(
        &mut self,
        targets: &Targets,
        up: &UpstreamState,
        want: &salvage::Want,
        store: &salvage::Store,
        stem: &str,
        at: &str,
        raw_path: std::path::PathBuf,
        mut raw: std::fs::File,
        got: Result<salvage::Got, String>,
    ) -> Result<Salvage, String> {
        let got = got?;
        let finished =
            |file: &std::path::Path, bytes: u64, keys: u64, commands: Option<u64>| Salvage {
                kind: match want {
                    salvage::Want::Tail { .. } if matches!(got, salvage::Got::Tail { .. }) => {
                        "tail"
                    }
                    _ => "snapshot",
                }
                .into(),
                file: file.display().to_string(),
                bytes,
                keys,
                commands,
                replid: want.replid().to_string(),
                from_offset: match (want, &got) {
                    (salvage::Want::Tail { from, .. }, salvage::Got::Tail { .. }) => Some(*from),
                    _ => None,
                },
                to_offset: match want {
                    salvage::Want::Tail { to, .. } | salvage::Want::Snapshot { to, .. } => *to,
                },
                upstream: up.address.clone(),
                upstream_replid: up.replid.clone(),
                at: at.to_string(),
            };
        let io = |e: std::io::Error| format!("writing the salvage files: {e}");
        let report = match got {
            salvage::Got::Tail { bytes } => {
                use std::io::Seek;
                raw.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
                let (resp_path, resp) = store.create(&format!("{stem}.resp")).map_err(io)?;
                let (_, txt) = store.create(&format!("{stem}.txt")).map_err(io)?;
                let mut resp = std::io::BufWriter::new(resp);
                let mut txt = std::io::BufWriter::new(txt);
                let summary = salvage::summarise(&mut raw, &mut resp, &mut txt)
                    .map_err(|e| format!("reading the captured tail: {e}"))?;
                resp.into_inner()
                    .map_err(|e| io(e.into_error()))?
                    .sync_all()
                    .map_err(io)?;
                txt.into_inner()
                    .map_err(|e| io(e.into_error()))?
                    .sync_all()
                    .map_err(io)?;
                std::fs::remove_file(&raw_path).map_err(io)?;
                if summary.keys == 0 {
                    // Only pings, Sentinel hellos and the like (what a master appends to its
                    // stream on its own): nothing of the data. Remembered, not reported.
                    std::fs::remove_file(&resp_path).map_err(io)?;
                    std::fs::remove_file(resp_path.with_extension("txt")).map_err(io)?;
                    Salvage {
                        kind: salvage::NOTHING.into(),
                        file: String::new(),
                        ..finished(&resp_path, bytes, 0, Some(summary.commands))
                    }
                } else {
                    finished(&resp_path, bytes, summary.keys, Some(summary.commands))
                }
            }
            salvage::Got::Snapshot { bytes } => {
                raw.sync_all().map_err(io)?;
                let rdb = raw_path.with_extension("rdb");
                std::fs::rename(&raw_path, &rdb).map_err(io)?;
                let keys = Local::of(
                    &self
                        .connections
                        .read_local(&targets.local)
                        .await
                        .map_err(|e| e.to_string())?
                        .0,
                )
                .keys;
                finished(&rdb, bytes, keys, None)
            }
        };
        store.finish(&up.replid, &report).map_err(io)?;
        Ok(report)
    }

    /// Compare our data with the blocked upstream's (see `similarity`), or reuse the last
    /// comparison of the same histories.
    async fn sample(&mut self, block: &Block, local: &Endpoint, target: &GateTarget) -> DataSample {
        let key = (
            block.upstream.address.clone(),
            block.upstream.replid.clone(),
            block.upstream.run_id.clone(),
            block.ours.replid.clone(),
        );
        if let Some(m) = &self.sampled
            && m.key == key
        {
            let again = if m.sample.error.is_some() {
                SAMPLE_RETRY
            } else {
                SAMPLE_AGAIN
            };
            if m.at.elapsed() < again {
                return m.sample.clone();
            }
        }
        let started = Instant::now();
        let sample = similarity::sample(
            local,
            &target.endpoint,
            similarity::budget(self.config.probe_timeout),
        )
        .await;
        info!(
            upstream = %block.upstream.address,
            replid = %block.upstream.replid,
            compared = sample.compared,
            matched = sample.matched,
            ms = started.elapsed().as_millis() as u64,
            "replication gate: compared this replica's data with {}'s (another replication history): {}",
            block.upstream.address,
            sample.describe()
        );
        self.sampled = Some(SampleMemo {
            key,
            sample: sample.clone(),
            at: Instant::now(),
        });
        sample
    }

    /// Remember a block; a new one (other ids or address) starts its own `since`, a new
    /// comparison of the data keeps it.
    fn note_block(&mut self, d: &DesiredTopology, block: Block) {
        if self
            .blocked
            .as_ref()
            .is_some_and(|b| b.block.same_ids(&block))
        {
            return;
        }
        let since = match &self.blocked {
            Some(b)
                if b.block.ours.replid == block.ours.replid
                    && b.block.upstream.replid == block.upstream.replid
                    && b.block.upstream.address == block.upstream.address =>
            {
                b.report.since.clone()
            }
            _ => crate::rfc3339(SystemTime::now()),
        };
        self.blocked = Some(BlockSeen {
            message: block.message(&d.cluster, &self.config.namespace),
            report: block.report(&since),
            block,
        });
    }

    /// Set the real credentials, make Redis connect at once, wait until the handshake got
    /// through (link up, or a full sync's transfer started) or a deadline, close the gate.
    #[allow(clippy::too_many_arguments)]
    async fn open_gate(
        &mut self,
        d: &DesiredTopology,
        targets: &Targets,
        target: &GateTarget,
        master: &(String, u16),
        why: &Safe,
        checked_at: Instant,
        seen: &mut Observation,
    ) -> bool {
        let address = crate::addr(&master.0, master.1);
        let local_ep = &targets.local;
        let steps = [
            target.open.command(),
            Command::Reconnect(master.0.clone(), master.1),
        ];
        let mut failed = None;
        for c in &steps {
            if let Err(e) = self
                .connections
                .local()
                .execute(local_ep, c, d.replicaof_name())
                .await
            {
                failed = Some(e);
                break;
            }
        }
        let reconnected = Instant::now();
        let deadline = reconnected + (self.config.probe_timeout * 2).max(Duration::from_secs(1));
        let mut linked = None;
        while failed.is_none() && Instant::now() < deadline {
            match self.connections.read_local(local_ep).await {
                Ok((o, _)) if gate::passed(&o) => {
                    linked = Some(Instant::now());
                    break;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(2)).await,
                Err(_) => break,
            }
        }
        // Closed again whatever happened: the next tick's commands close it too, if this fails.
        let close = Command::ConfigSet(self.gate.settings());
        let closed = self
            .connections
            .local()
            .execute(local_ep, &close, d.replicaof_name())
            .await;
        let got_through = failed.is_none() && linked.is_some();
        match (failed, linked) {
            (Some(e), _) => warn!(
                upstream = %address,
                "replication gate: opening it for {address} failed: {e}; closed again"
            ),
            (None, Some(at)) => info!(
                upstream = %address,
                window_ms = format!("{:.1}", (at - checked_at).as_secs_f64() * 1000.0),
                exec_to_link_ms = format!("{:.1}", (at - reconnected).as_secs_f64() * 1000.0),
                "replication gate: {address} checked ({}), opened, linked {:.1} ms after the check; closed again",
                why.describe(),
                (at - checked_at).as_secs_f64() * 1000.0
            ),
            (None, None) => warn!(
                upstream = %address,
                "replication gate: opened for {address} ({}), but redis-server did not get through the handshake within {:?}; closed again (retried next tick)",
                why.describe(),
                deadline - reconnected
            ),
        }
        if let Err(e) = closed {
            warn!("replication gate: closing it failed ({e}); the next tick closes it");
        }
        seen.local = self.connections.read_local(local_ep).await;
        got_through
    }

    /// Whether the running redis-server has stayed fenced since it booted (None: this instance
    /// manager has not watched it since its boot, or cannot read it).
    fn watch_boot(&mut self, seen: &Observation) -> Option<bool> {
        let (o, c) = seen.local.as_ref().ok()?;
        let fenced = c.fenced();
        match &mut self.boot {
            Some(b) if b.run_id == o.run_id => b.fenced_throughout &= fenced,
            _ => {
                // Watched since its boot: it started after (or within moments of) us.
                let since_boot = o.uptime_seconds <= self.clock0.elapsed().as_secs() + 5;
                self.boot = Some(BootWatch {
                    run_id: o.run_id.clone(),
                    since_boot,
                    fenced_throughout: fenced,
                });
            }
        }
        let b = self.boot.as_ref()?;
        b.since_boot.then_some(b.fenced_throughout)
    }

    /// Keep the record of this pod's data (and write the state file when it moved on). A
    /// primary that restarted under a new id is not recorded while it is held: the record of
    /// what it held before is the evidence.
    fn note_record(&mut self, seen: &Observation, restarted_primary: bool) {
        let Ok((o, c)) = &seen.local else {
            return;
        };
        if restarted_primary {
            return;
        }
        let Some(r) = history::record_of(o, c.fenced()) else {
            return;
        };
        if let Some(state) = &mut self.state {
            let problem = state.save(&r).err().map(|e| e.to_string());
            self.log_state.update("state file", &problem);
        }
        self.record = Some(r);
    }

    /// The bookkeeping that spans ticks: the upstream's offset history (lag) and the replication
    /// history the local Redis followed (divergence at an upstream failover).
    fn track(
        &mut self,
        upstream: Option<&Upstream>,
        seen: &Observation,
        restarted_primary: bool,
    ) -> LagNow {
        let observed = seen.local.as_ref().ok().map(|(o, _)| o);
        let answered = match &seen.probe {
            Some(Probe::Answered(info)) => Some(info),
            _ => None,
        };
        let now = self.clock0.elapsed().as_secs_f64();
        let lag = self.lag.update(
            now,
            upstream,
            observed,
            answered.and_then(|i| i.master_repl_offset),
        );
        // Compare what the local Redis followed (remembered from earlier ticks: it may already
        // have resynchronised in full by now) with the upstream's replication ids.
        if let (Some(up), Some(ids)) = (upstream, answered.and_then(|i| i.ids.as_ref())) {
            self.note_divergence(up, ids);
        }
        if let Some((replid, offset)) = observed.and_then(divergence::followed)
            && self.divergence.remember(replid, offset)
        {
            info!(
                replid = %replid,
                offset,
                "following replication history {replid}"
            );
        }
        self.note_record(seen, restarted_primary);
        lag
    }

    /// Compare the remembered replication position with the upstream's ids; log a divergence
    /// once. (An unrelated history is the replication gate's to refuse, or to let through when
    /// the user accepted it: the gate says so.)
    fn note_divergence(&mut self, up: &Upstream, ids: &UpstreamIds) {
        let a = crate::addr(&up.host, up.port);
        if let Finding::Diverged { bytes, first: true } = self.divergence.check(ids) {
            warn!(
                upstream = %a,
                diverged_bytes = bytes,
                "the upstream {a} is a new primary that took over from the one this replica followed, but this replica had {bytes} bytes of writes the new upstream primary never received: it resynchronises in full and those writes are not on the new upstream (the ones that write keys are salvaged first, docs/salvage.md)"
            );
        }
    }

    /// Make the report and the metrics visible to the HTTP server, and mark the tick done.
    fn publish(&mut self, report: InstanceReport, seen: &Observation, upstream: Option<&Upstream>) {
        let observed = seen.local.as_ref().ok().map(|(o, _)| o);
        self.shared.metrics.publish(
            &mut self.exported,
            &report,
            observed,
            upstream,
            seen.seconds,
        );
        // This tick's INFO, or nothing: numbers of a Redis that cannot be read are not current.
        let stats = match (observed, self.connections.last_info()) {
            (Some(_), Some(text)) => crate::stats::series(text),
            _ => Vec::new(),
        };
        self.shared.metrics.stats.set(stats);
        let digest = report.material_digest();
        *self.shared.report.lock().expect("report lock") = report;
        // After the report is in place: a woken long poll reads this report or a newer one.
        self.shared.changes.send_if_modified(|d| {
            let changed = *d != digest;
            *d = digest;
            changed
        });
        *self.shared.info.lock().expect("info lock") =
            self.connections.last_info().map(str::to_string);
        *self.shared.heartbeat.lock().expect("heartbeat lock") = Instant::now();
    }
}

/// Resolves once the pod's watch delivers an annotation other than `current` (a re-delivery of
/// the same value, on any other change to the pod, does not count); never, once the watch ended.
/// How often the Sentinels' passwords are checked again when the Secret did not change.
const SENTINEL_AUTH_RECHECK: Duration = Duration::from_secs(30);
/// How soon a Sentinel that could not be brought to the Secret's passwords is tried again.
const SENTINEL_AUTH_RETRY: Duration = Duration::from_secs(3);

/// One Sentinel's part of a password rotation (see `Manager::converge_sentinels`): whether it
/// uses the current password now.
async fn converge_sentinel(
    ep: &Endpoint,
    master: &str,
    current: &Secret,
    previous: Option<&Secret>,
    timeout: Duration,
) -> Result<bool, String> {
    let conn = redis_io::Conn::connect(ep, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        let listed = conn
            .default_user_passwords()
            .await
            .map_err(|e| format!("ACL GETUSER: {e}"))?;
        let pass = conn
            .sentinel_pass()
            .await
            .map_err(|e| format!("SENTINEL CONFIG GET sentinel-pass: {e}"))?;
        let todo = commands::SentinelAuth::decide(&listed, &pass, current, previous);
        let mut uses_current = !todo.use_current;
        if todo.use_current {
            // Only towards a primary that accepts it: a Sentinel refused by the primary would
            // take it for down.
            let primary = conn
                .sentinel_master_addr(master)
                .await
                .map_err(|e| format!("SENTINEL GET-MASTER-ADDR-BY-NAME: {e}"))?;
            let accepted = match &primary {
                Some((host, port)) => {
                    let probe = Endpoint {
                        host: host.clone(),
                        port: *port,
                        username: None,
                        password: Some(current.clone()),
                        previous: None,
                        tls: ep.tls.clone(),
                    };
                    redis_io::Conn::connect(&probe, timeout)
                        .await
                        .map(redis_io::Conn::close)
                        .is_ok()
                }
                None => false,
            };
            if accepted {
                conn.sentinel_use_password(master, current)
                    .await
                    .map_err(|e| format!("SENTINEL SET auth-pass / sentinel-pass: {e}"))?;
                info!(sentinel = %ep.addr(), "the Sentinel now uses the password Secret's password");
                uses_current = true;
            }
        }
        if todo.acl {
            conn.set_default_user_passwords(current, previous)
                .await
                .map_err(|e| format!("ACL SETUSER: {e}"))?;
            info!(
                sentinel = %ep.addr(),
                previous = previous.is_some(),
                "the Sentinel now accepts the password Secret's password{}",
                if previous.is_some() { " and its previousPassword" } else { " only" }
            );
        }
        Ok(uses_current)
    }
    .await;
    conn.close();
    result
}

async fn newer_topology(rx: &mut watch::Receiver<Delivered>, current: &Delivered) {
    loop {
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
        if *rx.borrow() != *current {
            return;
        }
    }
}

/// A fingerprint of the TLS files' contents, to notice a renewal (in this process only).
fn tls_fingerprint(files: &TlsFiles) -> std::io::Result<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for path in [&files.ca, &files.cert, &files.key] {
        std::fs::read(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{path}: {e}")))?
            .hash(&mut h);
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A condition is logged when it appears, changes or clears, never again while it lasts: a
    /// flapping link logs each flap, a lasting one once.
    #[test]
    fn log_on_change_logs_transitions_only() {
        let down = || Some("cannot reach the source src:6379: connection refused".to_string());
        let timeout =
            || Some("cannot reach the source src:6379: no answer within the probe timeout".into());
        // (this tick's message, logged?)
        let rows: [(Option<String>, bool); 9] = [
            (None, false),
            (down(), true),
            (down(), false),
            (down(), false),
            (None, true),
            (down(), true),
            (timeout(), true),
            (None, true),
            (None, false),
        ];
        let mut log = LogOnChange::default();
        for (i, (now, logged)) in rows.into_iter().enumerate() {
            assert_eq!(log.changed(&now), logged, "row {i}: {now:?}");
        }
    }
}
