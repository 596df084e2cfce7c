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
use std::time::{Duration, Instant};

use redis_cluster_api::report::InstanceReport;
use redis_cluster_api::topology::{DesiredTopology, SentinelTopology, Upstream};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::assess::{self, Facts, desired_upstream};
use crate::commands::{Blocked, Credentials, TlsFiles, commands_for};
use crate::divergence::{self, Divergence, Finding, UpstreamIds};
use crate::info::{Observed, RedisConfig};
use crate::intake::{Admission, Delivered, Intake};
use crate::lag::{Lag, LagNow};
use crate::metrics::{Exported, Metrics};
use crate::observe::{Connections, Observation, Probe, Targets};
use crate::redis_io::{Endpoint, RedisError};
use crate::sentinel::{self, Verdict, View};

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
    log_sentinels: LogOnChange,
    log_waiting: LogOnChange,
    clock0: Instant,
}

impl Manager {
    pub fn new(config: ManagerConfig, shared: Arc<Shared>) -> Manager {
        Manager {
            connections: Connections::new(config.probe_timeout),
            config,
            shared,
            intake: Intake::default(),
            lag: Lag::default(),
            divergence: Divergence::default(),
            applied_epoch: None,
            last_run_id: None,
            exported: Exported::default(),
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
        let mut ticker = tokio::time::interval(self.config.probe_interval);
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

    /// One pass: admit, observe, decide and act, track, report.
    pub async fn tick(&mut self, delivered: &Delivered) {
        let desired = self.admit(delivered);
        let targets = Targets::resolve(&self.config, desired.as_ref());
        let sentinels = desired.as_ref().and_then(|d| d.sentinel.as_ref());
        let mut seen = self.connections.observe(&targets, sentinels).await;
        let verdict = self.sentinel_verdict(sentinels, seen.sentinels.as_ref());
        let apply_error = match &desired {
            Some(d) => self.act(d, &targets, verdict.as_ref(), &mut seen).await,
            None => None,
        };
        let upstream = desired.as_ref().and_then(desired_upstream);
        let lag = self.track(upstream, &seen);
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
            sentinels: seen.sentinels.as_ref(),
            diverged_bytes: self.divergence.diverged_bytes,
        });
        self.log_link.update("replication link", &report.link_error);
        self.log_error.update("error", &report.error);
        self.publish(report, &seen, upstream);
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
        let creds = targets.credentials()?;
        match self
            .apply(d, observed, config, &creds, verdict, &targets.local)
            .await
        {
            Ok(false) => None,
            Ok(true) => {
                seen.local = self.connections.read_local(&targets.local).await;
                None
            }
            Err(e) => Some(e.to_string()),
        }
    }

    /// Execute what `commands_for` decides, in order, then persist it; `Ok(true)` when commands
    /// were issued (Redis must be re-read).
    async fn apply(
        &mut self,
        d: &DesiredTopology,
        observed: &Observed,
        config: &RedisConfig,
        creds: &Credentials,
        verdict: Option<&Verdict>,
        local_ep: &Endpoint,
    ) -> Result<bool, ApplyError> {
        let decided = commands_for(d, observed, config, creds, verdict);
        let waiting = matches!(decided, Err(Blocked::SentinelsFailingOver))
            .then(|| Blocked::SentinelsFailingOver.to_string());
        self.log_waiting.update("sentinel mode", &waiting);
        let cmds = match decided {
            Ok(cmds) => cmds,
            Err(b) if b.is_wait() => return Ok(false),
            Err(b) => return Err(b.into()),
        };
        let local = self.connections.local();
        for c in &cmds {
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
        Ok(!cmds.is_empty())
    }

    /// The bookkeeping that spans ticks: the upstream's offset history (lag) and the replication
    /// history the local Redis followed (divergence at an upstream failover).
    fn track(&mut self, upstream: Option<&Upstream>, seen: &Observation) -> LagNow {
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
        lag
    }

    /// Compare the remembered replication position with the upstream's ids; log each finding once.
    fn note_divergence(&mut self, up: &Upstream, ids: &UpstreamIds) {
        let a = crate::addr(&up.host, up.port);
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
        *self.shared.report.lock().expect("report lock") = report;
        *self.shared.heartbeat.lock().expect("heartbeat lock") = Instant::now();
    }
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
