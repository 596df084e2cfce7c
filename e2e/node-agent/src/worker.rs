//! One worker per pod (the kubelet's pod worker): sets up the sandbox (network namespace,
//! address) and the volumes, runs the containers as [`crate::model::plan`] decides, runs the
//! probes, writes the status when it changed, and on deletion stops the containers with the
//! grace period, reports them terminated, deletes the pod object (grace 0, UID
//! precondition) and only then tears the sandbox down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Patch, Preconditions};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::agent::{Agent, repository};
use crate::backoff::{Backoff, go_duration};
use crate::envvars::{self, EnvSources, FieldContext};
use crate::model::{self, ContainerView, Current, RestartPolicy, Step, Terminated, Waiting};
use crate::netns;
use crate::probe::{self, Gate, Kind, Tracker};
use crate::runtime::{self, ExecConfig, ExitRecord, Identity, Mount, PidRecord};
use crate::volumes::{self, Fetch, Sources, Tokens};

/// How often a pod is re-synced without an event, and its volumes re-written.
const TICK: Duration = Duration::from_secs(1);
const VOLUME_RESYNC: Duration = Duration::from_secs(10);
/// The kubelet never waits less than this for a container to stop.
const MIN_GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct ProbeState {
    trackers: BTreeMap<Kind, Tracker>,
    /// Set when a liveness or startup probe failed: the container is to be restarted.
    unhealthy: Option<String>,
}

struct Ctr {
    spec: Container,
    init: bool,
    view: ContainerView,
    backoff: Backoff,
    pull_backoff: Backoff,
    pull_failed_at: Option<DateTime<Utc>>,
    /// A failed create (config error, missing volume, ...) is retried after this, like the
    /// kubelet's pod worker re-queueing a failed sync after 10 s.
    retry_at: Option<Instant>,
    pid: Option<PidRecord>,
    attempt_dir: Option<PathBuf>,
    probes: Arc<Mutex<ProbeState>>,
    probe_tasks: Vec<JoinHandle<()>>,
    /// When a stop was asked (liveness kill or deletion), and its grace.
    stopping: Option<(Instant, Duration)>,
}

impl Ctr {
    fn stop_probes(&mut self) {
        for t in self.probe_tasks.drain(..) {
            t.abort();
        }
    }
}

struct Worker {
    agent: Arc<Agent>,
    uid: String,
    pod: Pod,
    dir: PathBuf,
    ip: Option<Ipv4Addr>,
    sandbox_ready: bool,
    volumes: Option<Sources>,
    tokens: Tokens,
    last_volume_sync: Instant,
    ctrs: Vec<Ctr>,
    last_status: Option<Value>,
    start_time: String,
    notify: Arc<Notify>,
    /// Last time an Event of a (reason, container) was sent: repeated ones are spaced out.
    event_times: HashMap<String, Instant>,
    /// The pod reached Succeeded/Failed: nothing is started any more.
    terminal: bool,
    /// It was already terminal on the server when this worker started (an agent restart):
    /// its final status is written; this worker has nothing to add.
    finished_before: bool,
}

fn ns_of(pod: &Pod) -> String {
    pod.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// `name_namespace(uid)`, the kubelet's way of naming a pod in messages.
fn pod_desc(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        name_of(pod),
        ns_of(pod),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64).max(MIN_GRACE)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PodRecord {
    namespace: String,
    name: String,
    uid: String,
}

fn attempt_dirs(dir: &Path) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    out.sort();
    out
}

fn terminated_from(_dir: &Path, exit: ExitRecord, pid: Option<&PidRecord>) -> Terminated {
    Terminated {
        container_id: pid
            .map(|p| format!("kcp://{}", p.pid))
            .unwrap_or_else(|| "kcp://0".into()),
        exit_code: exit.exit_code,
        signal: exit.signal,
        reason: if exit.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .into(),
        message: None,
        started_at: pid.map(|p| p.started_at).unwrap_or(exit.finished_at),
        finished_at: exit.finished_at,
    }
}

/// A container start that produced a pid record but lost its exit record (its shim was
/// killed): the kubelet's ContainerStatusUnknown.
fn lost(pid: &PidRecord) -> Terminated {
    Terminated {
        container_id: format!("kcp://{}", pid.pid),
        exit_code: 137,
        signal: None,
        reason: "ContainerStatusUnknown".into(),
        message: Some("The container could not be located when the pod was terminated".into()),
        started_at: pid.started_at,
        finished_at: Utc::now(),
    }
}

impl Worker {
    fn new(agent: Arc<Agent>, uid: String, pod: Pod) -> Worker {
        let dir = agent.pod_dir(&uid);
        let spec = pod.spec.clone().unwrap_or_default();
        let mut ctrs = Vec::new();
        for (init, c) in spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| (true, c))
            .chain(spec.containers.iter().map(|c| (false, c)))
        {
            let sidecar = init && c.restart_policy.as_deref() == Some("Always");
            ctrs.push(Ctr {
                view: ContainerView::new(&c.name, c.image.as_deref().unwrap_or_default(), sidecar),
                spec: c.clone(),
                init,
                backoff: Backoff::default(),
                pull_backoff: Backoff::default(),
                pull_failed_at: None,
                retry_at: None,
                pid: None,
                attempt_dir: None,
                probes: Arc::default(),
                probe_tasks: vec![],
                stopping: None,
            });
        }
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| model::time(Utc::now()));
        let terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        );
        Worker {
            agent,
            uid,
            pod,
            dir,
            ip: None,
            sandbox_ready: false,
            volumes: None,
            tokens: Tokens::default(),
            last_volume_sync: Instant::now(),
            ctrs,
            last_status: None,
            start_time,
            notify: Arc::new(Notify::new()),
            event_times: HashMap::new(),
            terminal,
            finished_before: terminal,
        }
    }

    fn event(
        &mut self,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        note: String,
        every: Option<Duration>,
    ) {
        if let Some(every) = every {
            let key = format!("{reason}/{}", container.unwrap_or_default());
            if self
                .event_times
                .get(&key)
                .is_some_and(|t| t.elapsed() < every)
            {
                return;
            }
            self.event_times.insert(key, Instant::now());
        }
        self.agent
            .events
            .pod(&self.pod, container, warning, reason, note);
    }

    fn ctr_dir(&self, name: &str) -> PathBuf {
        self.dir.join("containers").join(name)
    }

    /// What a previous agent left: the pod's address and network, and each container's
    /// attempts (running ones are adopted, not started again).
    fn recover(&mut self) {
        let _ = std::fs::create_dir_all(&self.dir);
        let record = PodRecord {
            namespace: ns_of(&self.pod),
            name: name_of(&self.pod),
            uid: self.uid.clone(),
        };
        let _ = runtime::write_json(&self.dir.join("pod.json"), &record);
        if self.dir.join("network-ready").exists()
            && netns::netns_exists(&netns::pod_netns(&self.uid))
        {
            self.ip = std::fs::read_to_string(self.dir.join("ip"))
                .ok()
                .and_then(|s| s.trim().parse().ok());
            self.sandbox_ready = self.ip.is_some();
        }
        let statuses: Vec<Value> = self
            .pod
            .status
            .as_ref()
            .map(|s| {
                s.container_statuses
                    .iter()
                    .flatten()
                    .chain(s.init_container_statuses.iter().flatten())
                    .filter_map(|c| serde_json::to_value(c).ok())
                    .collect()
            })
            .unwrap_or_default();
        let pod_ready = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        for i in 0..self.ctrs.len() {
            let dir = self.ctr_dir(&self.ctrs[i].spec.name);
            let mut attempts = attempt_dirs(&dir);
            // An attempt that never got a pid was never a container.
            while let Some(last) = attempts.last() {
                let d = dir.join(last.to_string());
                if d.join("pid").exists() || d.join("exit").exists() {
                    break;
                }
                let _ = std::fs::remove_dir_all(&d);
                attempts.pop();
            }
            let Some(&last) = attempts.last() else {
                continue;
            };
            let d = dir.join(last.to_string());
            let pid: Option<PidRecord> = runtime::read_json(&d.join("pid"));
            let exit: Option<ExitRecord> = runtime::read_json(&d.join("exit"));
            let c = &mut self.ctrs[i];
            c.view.attempts = last + 1;
            c.attempt_dir = Some(d.clone());
            if last > 0 {
                let pd = dir.join((last - 1).to_string());
                let ppid: Option<PidRecord> = runtime::read_json(&pd.join("pid"));
                c.view.last_termination = runtime::read_json::<ExitRecord>(&pd.join("exit"))
                    .map(|e| terminated_from(&pd, e, ppid.as_ref()));
            }
            match (exit, pid) {
                (Some(e), p) => {
                    c.view.current = Current::Exited(terminated_from(&d, e, p.as_ref()))
                }
                (None, Some(p)) if p.alive() => {
                    c.view.current = Current::Running {
                        container_id: format!("kcp://{}", p.pid),
                        started_at: p.started_at,
                    };
                    // As the 1.37 kubelet does after a restart: a container that was started
                    // and ready stays so until its probes say otherwise.
                    let api = statuses.iter().find(|s| s["name"] == c.spec.name.as_str());
                    let was_started = api.is_some_and(|s| s["started"] == true);
                    let was_ready = api.is_some_and(|s| s["ready"] == true) && pod_ready;
                    c.pid = Some(p);
                    self.start_probes(i, was_started, was_ready, true);
                }
                (None, Some(p)) => self.ctrs[i].view.current = Current::Exited(lost(&p)),
                (None, None) => {}
            }
            let c = &mut self.ctrs[i];
            if c.init
                && !c.view.sidecar
                && let Current::Exited(t) = &c.view.current
            {
                c.view.ready = t.exit_code == 0;
            }
        }
    }

    fn field_context(&self) -> FieldContext {
        FieldContext {
            pod_ip: self.ip.map(|i| i.to_string()),
            host_ip: "127.0.0.1".into(),
            allocatable: self.agent.allocatable.clone(),
        }
    }

    fn fs_group(&self) -> Option<u32> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|s| s.fs_group)
            .map(|g| g as u32)
    }

    async fn ensure_sandbox(&mut self) -> Result<(), String> {
        if self.sandbox_ready {
            return Ok(());
        }
        let ip = self
            .agent
            .ipam
            .lock()
            .map_err(|_| "ipam lock".to_string())?
            .allocate(&self.uid)?;
        let ns = netns::pod_netns(&self.uid);
        // A half-made sandbox (the agent died while creating it) is made again.
        netns::teardown(&self.agent.tools.ip, &self.uid);
        let dns = netns::Dns {
            server: self.agent.args.cluster_dns.clone(),
            domain: self.agent.args.cluster_domain.clone(),
        };
        let resolv = netns::resolv_conf(&self.pod, &dns);
        let hosts = netns::hosts_file(&self.pod, ip, &self.agent.args.cluster_domain);
        let tools_ip = self.agent.tools.ip.clone();
        let uid = self.uid.clone();
        let region = self.agent.args.region_netns.clone();
        tokio::task::spawn_blocking(move || {
            netns::setup(&tools_ip, &uid, &region, ip, resolv.as_deref(), &hosts)
        })
        .await
        .map_err(|e| e.to_string())??;
        std::fs::write(self.dir.join("ip"), ip.to_string()).map_err(|e| e.to_string())?;
        std::fs::write(self.dir.join("network-ready"), &ns).map_err(|e| e.to_string())?;
        self.ip = Some(ip);
        self.sandbox_ready = true;
        tracing::info!(pod = %pod_desc(&self.pod), %ip, netns = %ns, "sandbox ready");
        Ok(())
    }

    async fn ensure_volumes(&mut self) -> Result<(), String> {
        let fields = self.field_context();
        let fs_group = self.fs_group();
        let pod = self.pod.clone();
        let fetch = Fetch {
            client: &self.agent.client,
        };
        let cx = volumes::Context {
            pod: &pod,
            pod_dir: &self.dir,
            fields: &fields,
            fs_group,
            now: Utc::now(),
        };
        if self.volumes.is_none() {
            let sources = volumes::setup(
                &fetch,
                &cx,
                &mut self.tokens,
                self.agent.allocatable.get("memory").copied(),
            )
            .await?;
            self.volumes = Some(sources);
            self.last_volume_sync = Instant::now();
        } else if self.last_volume_sync.elapsed() >= VOLUME_RESYNC {
            self.last_volume_sync = Instant::now();
            for e in volumes::resync(&fetch, &cx, &mut self.tokens).await {
                tracing::warn!(pod = %pod_desc(&self.pod), error = %e, "volume re-sync");
            }
        }
        Ok(())
    }

    /// Read the shims' exit records for running containers.
    fn refresh(&mut self) {
        for c in &mut self.ctrs {
            if !c.view.running() {
                continue;
            }
            let Some(d) = c.attempt_dir.clone() else {
                continue;
            };
            let exit: Option<ExitRecord> = runtime::read_json(&d.join("exit"));
            let t = match (exit, &c.pid) {
                (Some(e), p) => terminated_from(&d, e, p.as_ref()),
                (None, Some(p)) if !p.alive() => {
                    // The shim writes the exit record right after the process ends; give it
                    // a moment before declaring the status lost.
                    if Utc::now() - p.started_at < chrono::Duration::seconds(3) {
                        continue;
                    }
                    if let Ok(Some(e)) = wait_exit(&d, Duration::from_millis(300)) {
                        terminated_from(&d, e, Some(p))
                    } else {
                        lost(p)
                    }
                }
                _ => continue,
            };
            tracing::info!(container = %c.spec.name, code = t.exit_code, "container exited");
            c.stop_probes();
            c.stopping = None;
            c.view.ready = c.init && !c.view.sidecar && t.exit_code == 0;
            c.view.started = false;
            c.view.unhealthy = None;
            c.view.current = Current::Exited(t);
        }
    }

    /// Fold the probe results into the views.
    fn apply_probes(&mut self) {
        for c in &mut self.ctrs {
            if !c.view.running() {
                continue;
            }
            let st = match c.probes.lock() {
                Ok(s) => s,
                Err(_) => continue,
            };
            let startup = st.trackers.get(&Kind::Startup);
            c.view.started = startup.is_none_or(|t| t.result == Some(true));
            c.view.ready = if c.init && !c.view.sidecar {
                false
            } else {
                c.view.started
                    && st
                        .trackers
                        .get(&Kind::Readiness)
                        .is_none_or(|t| t.result == Some(true))
            };
            c.view.unhealthy = st.unhealthy.clone();
        }
    }

    fn policy(&self) -> RestartPolicy {
        RestartPolicy::parse(
            self.pod
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.as_deref()),
        )
    }

    fn views(&self) -> (Vec<ContainerView>, Vec<ContainerView>) {
        let init = self
            .ctrs
            .iter()
            .filter(|c| c.init)
            .map(|c| c.view.clone())
            .collect();
        let main = self
            .ctrs
            .iter()
            .filter(|c| !c.init)
            .map(|c| c.view.clone())
            .collect();
        (init, main)
    }

    async fn sync(&mut self) {
        if let Err(e) = self.ensure_sandbox().await {
            tracing::warn!(pod = %pod_desc(&self.pod), error = %e, "sandbox");
            self.event(
                None,
                true,
                "FailedCreatePodSandBox",
                format!("Failed to create pod sandbox: {e}"),
                Some(Duration::from_secs(30)),
            );
            self.write_status(false).await;
            return;
        }
        if let Err(e) = self.ensure_volumes().await {
            tracing::warn!(pod = %pod_desc(&self.pod), error = %e, "volumes");
            self.event(
                None,
                true,
                "FailedMount",
                format!("MountVolume.SetUp failed: {e}"),
                Some(Duration::from_secs(30)),
            );
            self.write_status(false).await;
            return;
        }
        self.refresh();
        self.apply_probes();
        if !self.terminal {
            let (init, main) = self.views();
            for step in model::plan(self.policy(), &init, &main) {
                match step {
                    Step::Start(name) => self.start_or_back_off(&name).await,
                    Step::Kill(name, reason) => self.kill_unhealthy(&name, &reason),
                }
            }
            self.refresh();
            self.apply_probes();
        }
        let (init, main) = self.views();
        let phase = model::phase(self.policy(), &init, &main, false);
        if matches!(phase, "Succeeded" | "Failed") {
            self.terminal = true;
        }
        self.write_status(false).await;
    }

    fn kill_unhealthy(&mut self, name: &str, reason: &str) {
        let pod_grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let Some(i) = self.ctrs.iter().position(|c| c.spec.name == name) else {
            return;
        };
        if self.ctrs[i].stopping.is_some() {
            return;
        }
        let probe_grace = self.ctrs[i]
            .spec
            .liveness_probe
            .as_ref()
            .and_then(|p| p.termination_grace_period_seconds);
        let grace =
            Duration::from_secs(probe_grace.unwrap_or(pod_grace).max(0) as u64).max(MIN_GRACE);
        self.event(Some(name), false, "Killing", reason.to_string(), None);
        self.stop_container(i, grace);
    }

    /// SIGTERM the container's process group now, SIGKILL after `grace` if it still runs.
    fn stop_container(&mut self, i: usize, grace: Duration) {
        let c = &mut self.ctrs[i];
        let Some(p) = c.pid.clone() else { return };
        if !p.alive() {
            return;
        }
        c.stopping = Some((Instant::now(), grace));
        runtime::signal_group(p.pid, Signal::SIGTERM);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if p.alive() {
                runtime::signal_group(p.pid, Signal::SIGKILL);
            }
        });
    }

    async fn start_or_back_off(&mut self, name: &str) {
        let Some(i) = self.ctrs.iter().position(|c| c.spec.name == name) else {
            return;
        };
        let now = Utc::now();
        let finished = match &self.ctrs[i].view.current {
            Current::Exited(t) => Some(t.finished_at),
            _ => None,
        };
        if let Some(f) = finished
            && let Some(left) = self.ctrs[i].backoff.remaining(f, now)
        {
            let window = go_duration(self.ctrs[i].backoff.current());
            let msg = format!(
                "back-off {window} restarting failed container={name} pod={}",
                pod_desc(&self.pod)
            );
            self.ctrs[i].view.waiting = Some(Waiting::new("CrashLoopBackOff", Some(msg)));
            self.event(
                Some(name),
                true,
                "BackOff",
                format!(
                    "Back-off restarting failed container {name} in pod {}",
                    pod_desc(&self.pod)
                ),
                Some(Duration::from_secs(10)),
            );
            tracing::debug!(container = name, left = ?left, "in back-off");
            return;
        }
        if self.ctrs[i].retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if let Some(failed) = self.ctrs[i].pull_failed_at
            && self.ctrs[i].pull_backoff.remaining(failed, now).is_some()
        {
            let image = self.ctrs[i].spec.image.clone().unwrap_or_default();
            self.ctrs[i].view.waiting = Some(Waiting::new(
                "ImagePullBackOff",
                Some(format!("Back-off pulling image {image:?}")),
            ));
            return;
        }
        match self.start(i).await {
            Ok(()) => {
                if let Some(f) = finished {
                    self.ctrs[i].backoff.next(f, Utc::now());
                }
            }
            Err(w) => {
                tracing::warn!(pod = %pod_desc(&self.pod), container = name, reason = %w.reason, message = ?w.message, "container not started");
                let warn_msg = w.message.clone().unwrap_or_default();
                self.event(
                    Some(name),
                    true,
                    "Failed",
                    format!("Error: {}: {warn_msg}", w.reason),
                    Some(Duration::from_secs(10)),
                );
                if w.reason != "ErrImagePull" {
                    self.ctrs[i].retry_at = Some(Instant::now() + Duration::from_secs(10));
                }
                if w.reason == "ErrImagePull" {
                    let c = &mut self.ctrs[i];
                    let t = Utc::now();
                    if let Some(f) = c.pull_failed_at {
                        c.pull_backoff.next(f, t);
                    } else {
                        c.pull_backoff.next(t, t);
                    }
                    c.pull_failed_at = Some(t);
                }
                self.ctrs[i].view.waiting = Some(w);
            }
        }
    }

    /// The container's identity from the pod and container security contexts.
    fn identity(&self, c: &Container) -> Result<Identity, Waiting> {
        let psc = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let csc = c.security_context.clone().unwrap_or_default();
        let uid = csc.run_as_user.or(psc.run_as_user);
        let non_root = csc.run_as_non_root.or(psc.run_as_non_root) == Some(true);
        if non_root && uid.unwrap_or(0) == 0 {
            let msg = if uid.is_some() {
                format!(
                    "container's runAsUser breaks non-root policy (pod: {:?}, container: {})",
                    pod_desc(&self.pod),
                    c.name
                )
            } else {
                format!(
                    "container has runAsNonRoot and image will run as root (pod: {:?}, container: {})",
                    pod_desc(&self.pod),
                    c.name
                )
            };
            return Err(Waiting::new("CreateContainerConfigError", Some(msg)));
        }
        let mut groups: Vec<u32> = psc.fs_group.into_iter().map(|g| g as u32).collect();
        groups.extend(psc.supplemental_groups.iter().flatten().map(|g| *g as u32));
        groups.dedup();
        Ok(Identity {
            uid: uid.unwrap_or(0) as u32,
            gid: csc.run_as_group.or(psc.run_as_group).unwrap_or(0) as u32,
            groups,
            no_new_privs: csc.allow_privilege_escalation == Some(false),
        })
    }

    async fn environment(&self, c: &Container) -> Result<Vec<(String, String)>, Waiting> {
        let config_error = |m: String| Waiting::new("CreateContainerConfigError", Some(m));
        let ns = ns_of(&self.pod);
        let fetch = Fetch {
            client: &self.agent.client,
        };
        let (secrets, cms) = envvars::env_references(c);
        let mut sources = EnvSources::default();
        for s in secrets {
            let data = fetch.secret_strings(&ns, &s).await.map_err(config_error)?;
            sources.secrets.insert(s, data);
        }
        for m in cms {
            let data = fetch
                .config_map_strings(&ns, &m)
                .await
                .map_err(config_error)?;
            sources.config_maps.insert(m, data);
        }
        let services = self.agent.services.state();
        let all: Vec<_> = services.iter().map(|s| (**s).clone()).collect();
        let mut chosen = envvars::services_for_pod(&self.pod, &all);
        let fallback = kubernetes_service();
        if !chosen.iter().any(|s| {
            s.metadata.name.as_deref() == Some("kubernetes")
                && s.metadata.namespace.as_deref() == Some("default")
        }) {
            // The service cache has not caught up yet: the master service is well known.
            chosen.push(&fallback);
        }
        let service_vars = envvars::service_env(&chosen);
        let env = envvars::build_env(&self.pod, c, &self.field_context(), &sources, &service_vars)
            .map_err(config_error)?;
        // The image's PATH (its mapped directory, then the host's) and the runtime's
        // HOSTNAME come first; the container's own definitions win.
        let image_path = match self.agent.image_dir(c.image.as_deref().unwrap_or_default()) {
            Some(d) => format!("{}:{}", d.display(), self.agent.host_path),
            None => self.agent.host_path.clone(),
        };
        let mut out = vec![
            ("PATH".to_string(), image_path),
            (
                "HOSTNAME".to_string(),
                netns::uts_hostname(&self.pod, &self.agent.args.cluster_domain),
            ),
        ];
        for (k, v) in env {
            if let Some(slot) = out.iter_mut().find(|(n, _)| *n == k) {
                slot.1 = v;
            } else {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    fn mounts(&self, c: &Container, env: &[(String, String)]) -> Result<Vec<Mount>, Waiting> {
        let sources = self.volumes.clone().unwrap_or_default();
        let spec_volumes = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let mut out = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let Some(src) = sources.get(&m.name) else {
                return Err(Waiting::new(
                    "CreateContainerConfigError",
                    Some(format!(
                        "cannot find volume {:?} to mount into container {:?}",
                        m.name, c.name
                    )),
                ));
            };
            let sub = m
                .sub_path_expr
                .as_deref()
                .map(|e| envvars::expand(e, &lookup))
                .or_else(|| m.sub_path.clone())
                .filter(|s| !s.is_empty());
            let mut source = src.clone();
            if let Some(sub) = sub {
                if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                    return Err(Waiting::new(
                        "CreateContainerConfigError",
                        Some(format!("invalid subPath {sub:?}")),
                    ));
                }
                source = src.join(&sub);
                if !source.exists() {
                    let _ = std::fs::create_dir_all(&source);
                }
            }
            let vol = spec_volumes.iter().find(|v| v.name == m.name);
            // The kubelet mounts these read-only whatever the volumeMount says.
            let always_ro = vol.is_some_and(|v| {
                v.secret.is_some()
                    || v.config_map.is_some()
                    || v.downward_api.is_some()
                    || v.projected.is_some()
            });
            out.push(Mount {
                source,
                target: m.mount_path.clone(),
                read_only: m.read_only == Some(true) || always_ro,
            });
        }
        Ok(out)
    }

    /// Start a new attempt of container `i` (first start or restart).
    async fn start(&mut self, i: usize) -> Result<(), Waiting> {
        let c = self.ctrs[i].spec.clone();
        let image = c.image.clone().unwrap_or_default();
        let identity = self.identity(&c)?;
        let env = self.environment(&c).await?;
        let (command, args) = envvars::expand_command(&c, &env);
        let argv: Vec<String> = command.into_iter().chain(args).collect();
        if argv.is_empty() {
            return Err(Waiting::new(
                "CreateContainerError",
                Some(format!(
                    "container {:?} has no command: images are directories of binaries here and have no ENTRYPOINT",
                    c.name
                )),
            ));
        }
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let image_dir = self.agent.image_dir(&image);
        if runtime::which(&argv[0], &path).is_none() {
            let why = match &image_dir {
                Some(d) => format!(
                    "{:?} is neither in {} nor on the host PATH",
                    argv[0],
                    d.display()
                ),
                None => format!(
                    "no --image-map for {:?} and {:?} is not on the host PATH",
                    repository(&image),
                    argv[0]
                ),
            };
            return Err(Waiting::new(
                "ErrImagePull",
                Some(format!(
                    "failed to pull image {image:?}: redis-node-agent cannot run it: {why}"
                )),
            ));
        }
        self.ctrs[i].pull_failed_at = None;
        self.ctrs[i].pull_backoff = Backoff::default();
        let mounts = self.mounts(&c, &env)?;
        let hostname = netns::uts_hostname(&self.pod, &self.agent.args.cluster_domain);
        let attempt = self.ctrs[i].view.attempts;
        let dir = self.ctr_dir(&c.name).join(attempt.to_string());
        let log_dir = self.dir.join("logs").join(&c.name);
        let io_err = |e: std::io::Error| Waiting::new("CreateContainerError", Some(e.to_string()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        std::fs::create_dir_all(&log_dir).map_err(io_err)?;
        let log = log_dir.join(format!("{attempt}.log"));
        let tools = &self.agent.tools;
        let script = runtime::launcher_script(
            tools,
            &mounts,
            &hostname,
            c.working_dir.as_deref(),
            &identity,
            &|d: &Path| runtime::not_traversable(d, &identity),
        );
        let launch = dir.join("launch.sh");
        std::fs::write(&launch, script).map_err(io_err)?;
        let exec_cfg = ExecConfig {
            identity,
            env: env.clone(),
            working_dir: c.working_dir.clone(),
        };
        runtime::write_json(&dir.join("exec.json"), &exec_cfg).map_err(io_err)?;
        let netns_name = netns::pod_netns(&self.uid);
        let mut full = vec![
            tools.ip.clone(),
            "netns".into(),
            "exec".into(),
            netns_name,
            tools.unshare.clone(),
            "--mount".into(),
            "--uts".into(),
            "--propagation".into(),
            "private".into(),
            "--".into(),
            tools.sh.clone(),
            launch.display().to_string(),
        ];
        full.extend(argv);
        let exe = self.agent.exe.clone();
        let shim_err = std::fs::File::create(dir.join("shim.err")).map_err(io_err)?;
        let mut child = tokio::process::Command::new(exe)
            .arg("shim")
            .arg("--dir")
            .arg(&dir)
            .arg("--log")
            .arg(&log)
            .arg("--")
            .args(&full)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(shim_err)
            // Its own process group: a signal to the agent's group (SIGSTOP in the drill)
            // does not reach the shim or the container.
            .process_group(0)
            .spawn()
            .map_err(io_err)?;
        let notify = self.notify.clone();
        tokio::spawn(async move {
            let _ = child.wait().await;
            notify.notify_one();
        });
        // The shim records the pid as soon as the process exists.
        let deadline = Instant::now() + Duration::from_secs(5);
        let pid = loop {
            if let Some(p) = runtime::read_json::<PidRecord>(&dir.join("pid")) {
                break p;
            }
            if dir.join("exit").exists() || Instant::now() > deadline {
                let msg = std::fs::read_to_string(dir.join("shim.err")).unwrap_or_default();
                return Err(Waiting::new(
                    "RunContainerError",
                    Some(format!(
                        "the container process could not be started: {}",
                        msg.trim()
                    )),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let ctr = &mut self.ctrs[i];
        if let Current::Exited(t) = &ctr.view.current {
            ctr.view.last_termination = Some(t.clone());
        }
        ctr.view.attempts += 1;
        ctr.view.current = Current::Running {
            container_id: format!("kcp://{}", pid.pid),
            started_at: pid.started_at,
        };
        ctr.view.image_id = format!(
            "kcp-image://{}@{}",
            repository(&image),
            image_dir
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "host".into())
        );
        ctr.view.waiting = None;
        ctr.view.started = false;
        ctr.view.ready = false;
        ctr.view.unhealthy = None;
        ctr.pid = Some(pid.clone());
        ctr.attempt_dir = Some(dir);
        ctr.stopping = None;
        let name = c.name.clone();
        self.event(
            Some(&name),
            false,
            "Pulled",
            format!("Container image {image:?} already present on machine"),
            None,
        );
        self.event(
            Some(&name),
            false,
            "Created",
            format!("Created container: {name}"),
            None,
        );
        self.event(
            Some(&name),
            false,
            "Started",
            format!("Started container {name}"),
            None,
        );
        tracing::info!(pod = %pod_desc(&self.pod), container = %name, pid = pid.pid, attempt, "container started");
        self.start_probes(i, false, false, false);
        Ok(())
    }

    /// Start the probe workers of container `i`'s current attempt. `adopted`: the container
    /// was running before this agent started (results seeded from the API status, first probe
    /// after a random part of the period).
    fn start_probes(&mut self, i: usize, was_started: bool, was_ready: bool, adopted: bool) {
        let c = &mut self.ctrs[i];
        c.stop_probes();
        let specs = probe::container_probes(&c.spec);
        let mut st = ProbeState::default();
        for s in &specs {
            let mut t = Tracker::new(s);
            if adopted && s.kind == Kind::Startup && was_started {
                t.result = Some(true);
            }
            if adopted && s.kind == Kind::Readiness && was_ready {
                t.result = Some(true);
            }
            st.trackers.insert(s.kind, t);
        }
        c.probes = Arc::new(Mutex::new(st));
        let (Some(pid), Some(ip)) = (c.pid.clone(), self.ip) else {
            return;
        };
        let exec_cfg: Option<ExecConfig> = c
            .attempt_dir
            .as_ref()
            .and_then(|d| runtime::read_json(&d.join("exec.json")));
        for s in specs {
            let jitter = if adopted {
                Duration::from_millis(
                    (pid.pid as u64 * 7919) % (s.period.as_millis() as u64).max(1),
                )
            } else {
                Duration::ZERO
            };
            let ctx = ProbeCtx {
                agent: self.agent.clone(),
                pod: self.pod.clone(),
                container: c.spec.name.clone(),
                ip: IpAddr::V4(ip),
                pid: pid.clone(),
                exec_cfg: exec_cfg.clone(),
                notify: self.notify.clone(),
                state: c.probes.clone(),
            };
            c.probe_tasks
                .push(tokio::spawn(probe_worker(s, ctx, jitter)));
        }
    }

    async fn write_status(&mut self, terminal: bool) {
        if self.finished_before {
            return;
        }
        let (init, main) = self.views();
        let phase = model::phase(self.policy(), &init, &main, terminal);
        let gates: Vec<(String, Option<String>)> = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.readiness_gates.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|g| {
                let status = self
                    .pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == g.condition_type))
                    .map(|c| c.status.clone());
                (g.condition_type, status)
            })
            .collect();
        let conds = model::conditions(self.sandbox_ready, &init, &main, phase, &gates);
        // Transition times from what this agent wrote last (the watch may still deliver an
        // older copy), else from the server.
        let previous: Vec<Value> = match &self.last_status {
            Some(last) => last["conditions"].as_array().cloned().unwrap_or_default(),
            None => self
                .pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| serde_json::to_value(c).ok())
                        .collect()
                })
                .unwrap_or_default(),
        };
        let generation = self.pod.metadata.generation;
        let conditions = model::conditions_json(&conds, &previous, generation, Utc::now());
        let has_init = !init.is_empty();
        let default_main =
            if has_init && !main.iter().any(|c| c.attempts > 0) && init.iter().any(|c| !c.ready) {
                "PodInitializing"
            } else {
                "ContainerCreating"
            };
        let mut main_statuses: Vec<Value> = main
            .iter()
            .map(|c| model::container_status(c, default_main))
            .collect();
        // The kubelet lists container statuses by name.
        main_statuses.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "containerStatuses": main_statuses,
        });
        if let Some(g) = generation {
            status["observedGeneration"] = json!(g);
        }
        if has_init {
            status["initContainerStatuses"] = json!(
                init.iter()
                    .map(|c| model::container_status(c, "PodInitializing"))
                    .collect::<Vec<_>>()
            );
        }
        if let Some(ip) = self.ip.filter(|_| self.sandbox_ready) {
            status["podIP"] = json!(ip.to_string());
            status["podIPs"] = json!([{"ip": ip.to_string()}]);
        }
        // Timestamps of conditions are stable; compare without them being refreshed.
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let patch = json!({"metadata": {"uid": self.uid}, "status": status});
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &ns_of(&self.pod));
        match api
            .patch_status(
                &name_of(&self.pod),
                &crate::kubelet_patch(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(p) => {
                // Keep the server's view (conditions written by others, times).
                self.pod.status = p.status;
                self.last_status = Some(status);
            }
            Err(e) => tracing::warn!(pod = %pod_desc(&self.pod), error = %e, "status update"),
        }
    }

    /// Graceful termination, as the kubelet does it for a pod with a deletionTimestamp (or
    /// gone from the API): preStop hooks, SIGTERM, the grace period, SIGKILL; then the final
    /// status and the deletion of the pod object; then the sandbox.
    async fn terminate(&mut self, rx: &mut watch::Receiver<Option<Pod>>) {
        let mut grace = grace_of(&self.pod);
        let started = Instant::now();
        tracing::info!(pod = %pod_desc(&self.pod), grace = ?grace, "terminating");
        self.refresh();
        // Liveness and startup probes stop; readiness goes on while containers run.
        for c in &mut self.ctrs {
            if let Ok(mut st) = c.probes.lock() {
                st.unhealthy = None;
            }
        }
        self.run_pre_stop_hooks(grace).await;
        let running: Vec<usize> = (0..self.ctrs.len())
            .filter(|i| self.ctrs[*i].view.running())
            .collect();
        for &i in &running {
            let name = self.ctrs[i].spec.name.clone();
            self.event(
                Some(&name),
                false,
                "Killing",
                format!("Stopping container {name}"),
                None,
            );
            if let Some(p) = &self.ctrs[i].pid {
                runtime::signal_group(p.pid, Signal::SIGTERM);
            }
        }
        let mut killed = false;
        loop {
            self.refresh();
            self.apply_probes();
            if !self.ctrs.iter().any(|c| c.view.running()) {
                break;
            }
            if !killed && started.elapsed() >= grace {
                for c in &self.ctrs {
                    if let Some(p) = c.pid.as_ref().filter(|_| c.view.running()) {
                        runtime::signal_group(p.pid, Signal::SIGKILL);
                    }
                }
                killed = true;
            }
            if killed && started.elapsed() >= grace + Duration::from_secs(10) {
                tracing::error!(pod = %pod_desc(&self.pod), "containers survive SIGKILL");
                break;
            }
            self.write_status(false).await;
            tokio::select! {
                r = rx.changed() => {
                    if r.is_err() { break; }
                    let next = rx.borrow().clone();
                    match next {
                        Some(p) => {
                            let g = grace_of(&p);
                            if g < grace { grace = g; }
                            self.pod = p;
                        }
                        // Force-deleted meanwhile: the kubelet still gives containers its
                        // minimum of 2 s from then.
                        None => grace = grace.min(started.elapsed() + MIN_GRACE),
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = self.notify.notified() => {}
            }
        }
        for c in &mut self.ctrs {
            c.stop_probes();
            c.view.ready = c.init && !c.view.sidecar && c.view.exit_code() == Some(0);
            c.view.waiting = None;
        }
        self.write_status(true).await;
        let api: Api<Pod> = Api::namespaced(self.agent.client.clone(), &ns_of(&self.pod));
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name_of(&self.pod), &dp).await {
            Ok(_) => tracing::info!(pod = %pod_desc(&self.pod), "pod deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(pod = %pod_desc(&self.pod), error = %e, "deleting the pod"),
        }
        teardown(&self.agent, &self.uid, &self.dir);
    }

    async fn run_pre_stop_hooks(&mut self, grace: Duration) {
        let mut hooks = Vec::new();
        for c in &self.ctrs {
            let (Some(p), Some(hook)) = (
                c.pid.clone().filter(|_| c.view.running()),
                c.spec.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()),
            ) else {
                continue;
            };
            let cfg: Option<ExecConfig> = c
                .attempt_dir
                .as_ref()
                .and_then(|d| runtime::read_json(&d.join("exec.json")));
            let tools = self.agent.tools.clone();
            let ip = self.ip;
            let container = c.spec.clone();
            hooks.push(tokio::spawn(async move {
                if let (Some(e), Some(cfg)) = (&hook.exec, &cfg) {
                    let cmd = e.command.clone().unwrap_or_default();
                    let _ = exec_capture(&tools, p.pid, cfg, &cmd, grace).await;
                } else if let (Some(h), Some(ip)) = (&hook.http_get, ip) {
                    let probe = k8s_openapi::api::core::v1::Probe {
                        http_get: Some(h.clone()),
                        ..Default::default()
                    };
                    let s = probe::spec(Kind::Liveness, &probe, &container);
                    let _ = probe::run_network_probe(&s.action, IpAddr::V4(ip), grace).await;
                } else if let Some(s) = &hook.sleep {
                    tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(grace))
                        .await;
                }
            }));
        }
        let _ = tokio::time::timeout(grace, futures::future::join_all(hooks)).await;
    }
}

fn kubernetes_service() -> k8s_openapi::api::core::v1::Service {
    serde_json::from_value(json!({
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}
    }))
    .expect("static service")
}

fn wait_exit(dir: &Path, max: Duration) -> std::io::Result<Option<ExitRecord>> {
    let deadline = Instant::now() + max;
    loop {
        if let Some(e) = runtime::read_json(&dir.join("exit")) {
            return Ok(Some(e));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run `command` in the container (as an exec would), with a timeout; (exit code, output).
pub async fn exec_capture(
    tools: &runtime::Tools,
    pid: u32,
    cfg: &ExecConfig,
    command: &[String],
    timeout: Duration,
) -> Result<(i32, String), String> {
    let argv = runtime::exec_argv(tools, pid, cfg, command);
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let child_pid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let run = async {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (a, b) = tokio::join!(
            async {
                if let Some(s) = stdout.as_mut() {
                    let _ = s.read_to_end(&mut out).await;
                }
            },
            async {
                if let Some(s) = stderr.as_mut() {
                    let _ = s.read_to_end(&mut err).await;
                }
            }
        );
        let _ = (a, b);
        let status = child.wait().await;
        out.extend(err);
        (status, out)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok((Ok(status), out)) => {
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(9));
            let mut text = String::from_utf8_lossy(&out).into_owned();
            text.truncate(10 * 1024);
            Ok((code, text))
        }
        Ok((Err(e), _)) => Err(e.to_string()),
        Err(_) => {
            if let Some(p) = child_pid {
                runtime::signal_group(p, Signal::SIGKILL);
            }
            Err(format!("command timed out after {}s", timeout.as_secs()))
        }
    }
}

struct ProbeCtx {
    agent: Arc<Agent>,
    pod: Pod,
    container: String,
    ip: IpAddr,
    pid: PidRecord,
    exec_cfg: Option<ExecConfig>,
    notify: Arc<Notify>,
    state: Arc<Mutex<ProbeState>>,
}

async fn probe_worker(spec: probe::Spec, cx: ProbeCtx, jitter: Duration) {
    tokio::time::sleep(jitter).await;
    loop {
        let since = (Utc::now() - cx.pid.started_at)
            .to_std()
            .unwrap_or_default();
        let (pending, succeeded) = {
            let Ok(st) = cx.state.lock() else { return };
            match st.trackers.get(&Kind::Startup) {
                Some(t) => (t.result != Some(true), t.result == Some(true)),
                None => (false, true),
            }
        };
        match probe::gate(&spec, since, pending, succeeded) {
            Gate::Done => return,
            Gate::Wait => {}
            Gate::Probe => {
                let result = match &spec.action {
                    probe::Action::Exec(cmd) => match &cx.exec_cfg {
                        Some(cfg) => {
                            match exec_capture(&cx.agent.tools, cx.pid.pid, cfg, cmd, spec.timeout)
                                .await
                            {
                                Ok((0, _)) => Ok(()),
                                Ok((code, out)) => Err(if out.trim().is_empty() {
                                    format!("command {:?} exited with {code}", cmd.join(" "))
                                } else {
                                    out.trim().to_string()
                                }),
                                Err(e) => Err(e),
                            }
                        }
                        None => Err("no exec configuration for the container".into()),
                    },
                    action => probe::run_network_probe(action, cx.ip, spec.timeout).await,
                };
                let ok = result.is_ok();
                if let Err(msg) = &result {
                    cx.agent.events.pod(
                        &cx.pod,
                        Some(&cx.container),
                        true,
                        "Unhealthy",
                        format!("{} probe failed: {msg}", spec.kind.name()),
                    );
                }
                let mut hold = false;
                {
                    let Ok(mut st) = cx.state.lock() else { return };
                    let changed = st
                        .trackers
                        .get_mut(&spec.kind)
                        .is_some_and(|t| t.observe(ok));
                    let failed = st
                        .trackers
                        .get(&spec.kind)
                        .is_some_and(|t| t.result == Some(false));
                    if spec.kind != Kind::Readiness && failed {
                        st.unhealthy = Some(format!(
                            "Container {} failed {} probe, will be restarted",
                            cx.container,
                            spec.kind.name().to_lowercase()
                        ));
                        hold = true;
                    }
                    if changed || hold {
                        cx.notify.notify_one();
                    }
                }
                if hold {
                    // On hold until the container is replaced (a new worker is started then).
                    return;
                }
            }
        }
        tokio::time::sleep(spec.period).await;
    }
}

/// Remove what a pod left on this node: processes (still running ones get SIGKILL: the pod
/// object is gone), network, volumes, address. Logs are kept in `<state>/terminated/`.
fn teardown(agent: &Agent, uid: &str, dir: &Path) {
    for name in std::fs::read_dir(dir.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for attempt in attempt_dirs(&name.path()) {
            if let Some(p) =
                runtime::read_json::<PidRecord>(&name.path().join(attempt.to_string()).join("pid"))
                && p.alive()
            {
                runtime::signal_group(p.pid, Signal::SIGKILL);
            }
        }
    }
    netns::teardown(&agent.tools.ip, uid);
    volumes::teardown(dir);
    if let Ok(mut ipam) = agent.ipam.lock() {
        ipam.release(uid);
    }
    let record: Option<PodRecord> = runtime::read_json(&dir.join("pod.json"));
    if let Some(r) = record {
        let keep = agent
            .args
            .state_dir
            .join("terminated")
            .join(format!("{}_{}_{}", r.namespace, r.name, r.uid));
        let _ = std::fs::create_dir_all(keep.parent().unwrap_or(dir));
        let _ = std::fs::rename(dir.join("logs"), &keep);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Pods this agent ran that the API no longer has (deleted while the agent was down):
/// stop them (SIGTERM, a short grace, SIGKILL) and tear them down.
pub fn clean_orphans(agent: Arc<Agent>, seen: &HashSet<String>) {
    let known: HashSet<String> = agent
        .pods
        .lock()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for e in std::fs::read_dir(agent.pods_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let uid = e.file_name().to_string_lossy().into_owned();
        if seen.contains(&uid) || known.contains(&uid) {
            continue;
        }
        let agent = agent.clone();
        tokio::spawn(async move {
            let dir = agent.pod_dir(&uid);
            tracing::info!(%uid, "tearing down a pod deleted while the agent was away");
            let mut pids = Vec::new();
            for name in std::fs::read_dir(dir.join("containers"))
                .into_iter()
                .flatten()
                .flatten()
            {
                for attempt in attempt_dirs(&name.path()) {
                    if let Some(p) = runtime::read_json::<PidRecord>(
                        &name.path().join(attempt.to_string()).join("pid"),
                    ) && p.alive()
                    {
                        runtime::signal_group(p.pid, Signal::SIGTERM);
                        pids.push(p);
                    }
                }
            }
            let deadline = Instant::now() + MIN_GRACE;
            while pids.iter().any(|p| p.alive()) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = tokio::task::spawn_blocking(move || teardown(&agent, &uid, &dir)).await;
        });
    }
}

pub async fn run(agent: Arc<Agent>, uid: String, mut rx: watch::Receiver<Option<Pod>>) {
    let Some(pod) = rx.borrow_and_update().clone() else {
        return;
    };
    let mut w = Worker::new(agent, uid, pod);
    w.recover();
    loop {
        let current = rx.borrow_and_update().clone();
        match current {
            None => {
                // Gone from the API without us (force deletion, or missing from a re-list).
                w.terminate(&mut rx).await;
                return;
            }
            Some(p) => {
                let deleting = p.metadata.deletion_timestamp.is_some();
                // Keep the status the agent knows; take everything else from the server.
                w.pod = p;
                if deleting {
                    w.terminate(&mut rx).await;
                    return;
                }
                w.sync().await;
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = w.notify.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}
