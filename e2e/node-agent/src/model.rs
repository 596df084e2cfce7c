//! What the agent knows about a pod's containers, and the pure decisions made from it: which
//! container to start, restart or kill next (the kubelet's `computePodActions`), the pod
//! phase (`getPhase`), the conditions (pkg/kubelet/status/generate.go) and the status object
//! written through the status subresource.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(s: Option<&str>) -> RestartPolicy {
        match s {
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            _ => RestartPolicy::Always,
        }
    }

    /// `ContainerShouldRestart` with the pod's policy.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Terminated {
    pub container_id: String,
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Current {
    NotStarted,
    Running {
        container_id: String,
        started_at: DateTime<Utc>,
    },
    Exited(Terminated),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    pub reason: String,
    pub message: Option<String>,
}

impl Waiting {
    pub fn new(reason: &str, message: Option<String>) -> Waiting {
        Waiting {
            reason: reason.into(),
            message,
        }
    }
}

/// One container of the pod as the agent sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// Restartable init container (a native sidecar).
    pub sidecar: bool,
    /// Containers created so far for this name (restartCount is one less once it ran).
    pub attempts: u32,
    pub current: Current,
    pub last_termination: Option<Terminated>,
    /// Why it is not running when it should (back-off, image, config errors); None: the
    /// default for its situation.
    pub waiting: Option<Waiting>,
    /// Startup probe passed (or none).
    pub started: bool,
    /// Readiness (init containers: completed successfully).
    pub ready: bool,
    /// A liveness/startup probe failed: the container is to be killed and restarted.
    pub unhealthy: Option<String>,
}

impl ContainerView {
    pub fn new(name: &str, image: &str, sidecar: bool) -> ContainerView {
        ContainerView {
            name: name.into(),
            image: image.into(),
            image_id: String::new(),
            sidecar,
            attempts: 0,
            current: Current::NotStarted,
            last_termination: None,
            waiting: None,
            started: false,
            ready: false,
            unhealthy: None,
        }
    }

    pub fn restart_count(&self) -> u32 {
        self.attempts.saturating_sub(1)
    }

    pub fn running(&self) -> bool {
        matches!(self.current, Current::Running { .. })
    }

    pub fn exit_code(&self) -> Option<i32> {
        match &self.current {
            Current::Exited(t) => Some(t.exit_code),
            _ => None,
        }
    }
}

/// What the agent does next for a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Create (or re-create after an exit) this container; for a re-creation the caller
    /// applies the restart back-off first.
    Start(String),
    /// Stop a running container (a failed liveness/startup probe); it is restarted by a later
    /// plan according to the restart policy.
    Kill(String, String),
}

/// The kubelet's `computePodActions` for a pod that is not being deleted: init containers in
/// order, each to completion (sidecars only until started), then every container, restarting
/// what exited according to `restartPolicy`.
pub fn plan(policy: RestartPolicy, init: &[ContainerView], main: &[ContainerView]) -> Vec<Step> {
    let mut steps = Vec::new();
    let restart_unhealthy = |c: &ContainerView, steps: &mut Vec<Step>| {
        if let Some(reason) = &c.unhealthy {
            steps.push(Step::Kill(c.name.clone(), reason.clone()));
        }
    };
    let main_started = main.iter().any(|c| c.attempts > 0);
    for c in init {
        match (&c.current, c.sidecar) {
            (Current::NotStarted, _) => {
                steps.push(Step::Start(c.name.clone()));
                return steps;
            }
            (Current::Running { .. }, true) => {
                restart_unhealthy(c, &mut steps);
                if !c.started && !main_started {
                    return steps;
                }
            }
            (Current::Running { .. }, false) => return steps,
            (Current::Exited(_), true) => {
                steps.push(Step::Start(c.name.clone()));
                if !main_started {
                    return steps;
                }
            }
            (Current::Exited(t), false) => {
                if t.exit_code == 0 || main_started {
                    continue;
                }
                if policy != RestartPolicy::Never {
                    steps.push(Step::Start(c.name.clone()));
                }
                return steps;
            }
        }
    }
    for c in main {
        match &c.current {
            Current::NotStarted => steps.push(Step::Start(c.name.clone())),
            Current::Running { .. } => restart_unhealthy(c, &mut steps),
            Current::Exited(t) => {
                if policy.restarts(t.exit_code) {
                    steps.push(Step::Start(c.name.clone()));
                }
            }
        }
    }
    steps
}

/// How a container shows in the status: running, terminated, or waiting (possibly after a
/// termination, e.g. in back-off).
enum Shown<'a> {
    Running,
    Terminated(&'a Terminated),
    Waiting(Option<&'a Terminated>),
}

fn shown(c: &ContainerView) -> Shown<'_> {
    match &c.current {
        Current::Running { .. } => Shown::Running,
        Current::Exited(t) if c.waiting.is_some() => Shown::Waiting(Some(t)),
        Current::Exited(t) => Shown::Terminated(t),
        Current::NotStarted => Shown::Waiting(c.last_termination.as_ref()),
    }
}

/// The kubelet's `getPhase` (container restart rules reduced to the pod's policy).
pub fn phase(
    policy: RestartPolicy,
    init: &[ContainerView],
    main: &[ContainerView],
    terminal: bool,
) -> &'static str {
    let mut pending_init = 0;
    let mut failed_init_final = 0;
    let mut pending_sidecars = 0;
    let (mut running, mut waiting, mut stopped, mut stopped_final, mut succeeded) = (0, 0, 0, 0, 0);
    let initialized = main.iter().any(|c| c.attempts > 0);
    for c in init.iter().filter(|c| !c.sidecar) {
        match shown(c) {
            Shown::Running | Shown::Waiting(None) => pending_init += 1,
            Shown::Terminated(t) | Shown::Waiting(Some(t)) => {
                if t.exit_code != 0 && !policy.restarts(t.exit_code) {
                    failed_init_final += 1;
                }
            }
        }
    }
    for c in init.iter().filter(|c| c.sidecar) {
        match shown(c) {
            Shown::Running => {
                if !c.started {
                    pending_sidecars += 1;
                }
                running += 1;
            }
            Shown::Terminated(_) | Shown::Waiting(Some(_)) => {}
            Shown::Waiting(None) => {
                pending_sidecars += 1;
                waiting += 1;
            }
        }
    }
    for c in main {
        match shown(c) {
            Shown::Running => running += 1,
            Shown::Terminated(t) => {
                stopped += 1;
                if !policy.restarts(t.exit_code) {
                    stopped_final += 1;
                }
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            Shown::Waiting(Some(t)) => {
                stopped += 1;
                if !policy.restarts(t.exit_code) {
                    stopped_final += 1;
                }
            }
            Shown::Waiting(None) => waiting += 1,
        }
    }
    if failed_init_final > 0 {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecars > 0 && !initialized) || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if terminal || stopped == stopped_final {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        return "Running";
    }
    "Pending"
}

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn terminated_json(t: &Terminated) -> Value {
    let mut v = json!({
        "exitCode": t.exit_code,
        "reason": t.reason,
        "startedAt": time(t.started_at),
        "finishedAt": time(t.finished_at),
        "containerID": t.container_id,
    });
    if let Some(s) = t.signal {
        v["signal"] = json!(s);
    }
    if let Some(m) = &t.message {
        v["message"] = json!(m);
    }
    v
}

/// The container's `state` (with explicit nulls, so a strategic merge patch replaces the
/// previous state instead of adding to it) and `lastState`.
pub fn container_status(c: &ContainerView, default_waiting: &str) -> Value {
    let waiting = |w: &Waiting| {
        let mut v = json!({"reason": w.reason});
        if let Some(m) = &w.message {
            v["message"] = json!(m);
        }
        json!({"waiting": v, "running": null, "terminated": null})
    };
    let mut container_id = None;
    let (state, last) = match &c.current {
        Current::Running {
            container_id: id,
            started_at,
        } => {
            container_id = Some(id.clone());
            (
                json!({"running": {"startedAt": time(*started_at)}, "waiting": null, "terminated": null}),
                c.last_termination.as_ref(),
            )
        }
        Current::Exited(t) => {
            container_id = Some(t.container_id.clone());
            match &c.waiting {
                Some(w) => (waiting(w), Some(t)),
                None => (
                    json!({"terminated": terminated_json(t), "waiting": null, "running": null}),
                    c.last_termination.as_ref(),
                ),
            }
        }
        Current::NotStarted => (
            waiting(
                c.waiting
                    .as_ref()
                    .unwrap_or(&Waiting::new(default_waiting, None)),
            ),
            c.last_termination.as_ref(),
        ),
    };
    let last_state = match last {
        Some(t) => json!({"terminated": terminated_json(t), "waiting": null, "running": null}),
        None => json!({"terminated": null, "waiting": null, "running": null}),
    };
    json!({
        "name": c.name,
        "image": c.image,
        "imageID": c.image_id,
        "containerID": container_id,
        "started": c.running() && c.started,
        "ready": c.ready,
        "restartCount": c.restart_count(),
        "state": state,
        "lastState": last_state,
    })
}

/// A condition this agent owns.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: Option<String>,
    pub message: Option<String>,
}

fn cond(
    type_: &'static str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> Condition {
    Condition {
        type_,
        status,
        reason: reason.map(String::from),
        message,
    }
}

fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// PodReadyToStartContainers, Initialized, ContainersReady, Ready.
pub fn conditions(
    sandbox_ready: bool,
    init: &[ContainerView],
    main: &[ContainerView],
    phase: &str,
    readiness_gates: &[(String, Option<String>)],
) -> Vec<Condition> {
    let mut out = vec![if sandbox_ready {
        cond("PodReadyToStartContainers", true, None, None)
    } else {
        cond("PodReadyToStartContainers", false, None, None)
    }];
    let incomplete: Vec<&str> = init
        .iter()
        .filter(|c| {
            if c.sidecar {
                !(c.running() && c.started)
            } else {
                !c.ready
            }
        })
        .map(|c| c.name.as_str())
        .collect();
    let initialized = if phase == "Succeeded" {
        cond("Initialized", true, Some("PodCompleted"), None)
    } else if main.iter().any(|c| c.attempts > 0) || incomplete.is_empty() {
        cond("Initialized", true, None, None)
    } else {
        cond(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: {}",
                go_list(&incomplete)
            )),
        )
    };
    out.push(initialized);
    let unready: Vec<&str> = init
        .iter()
        .filter(|c| c.sidecar)
        .chain(main)
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let containers_ready = match phase {
        "Succeeded" => cond("ContainersReady", false, Some("PodCompleted"), None),
        "Failed" => cond("ContainersReady", false, Some("PodFailed"), None),
        _ if !unready.is_empty() => cond(
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: {}",
                go_list(&unready)
            )),
        ),
        _ => cond("ContainersReady", true, None, None),
    };
    let ready = if !containers_ready.status {
        Condition {
            type_: "Ready",
            ..containers_ready.clone()
        }
    } else {
        let gates: Vec<String> = readiness_gates
            .iter()
            .filter_map(|(t, status)| match status.as_deref() {
                None => Some(format!(
                    "corresponding condition of pod readiness gate {t:?} does not exist."
                )),
                Some("True") => None,
                Some(s) => Some(format!(
                    "the status of pod readiness gate {t:?} is not \"True\", but {s}"
                )),
            })
            .collect();
        if gates.is_empty() {
            cond("Ready", true, None, None)
        } else {
            cond(
                "Ready",
                false,
                Some("ReadinessGatesNotReady"),
                Some(gates.join(", ")),
            )
        }
    };
    out.push(containers_ready);
    out.push(ready);
    out
}

/// Conditions as JSON, keeping the previous `lastTransitionTime` of an unchanged status.
pub fn conditions_json(
    conds: &[Condition],
    previous: &[Value],
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<Value> {
    conds
        .iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" };
            let prev = previous
                .iter()
                .find(|p| p["type"] == c.type_ && p["status"] == status);
            let since = prev
                .and_then(|p| p["lastTransitionTime"].as_str().map(String::from))
                .unwrap_or_else(|| time(now));
            let mut v = json!({
                "type": c.type_,
                "status": status,
                "lastProbeTime": null,
                "lastTransitionTime": since,
                "reason": c.reason,
                "message": c.message,
            });
            if let Some(g) = generation {
                v["observedGeneration"] = json!(g);
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn exited(code: i32) -> Current {
        Current::Exited(Terminated {
            container_id: "kcp://42".into(),
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: t(0),
            finished_at: t(1),
        })
    }

    fn running() -> Current {
        Current::Running {
            container_id: "kcp://7".into(),
            started_at: t(2),
        }
    }

    fn view(name: &str, current: Current) -> ContainerView {
        let mut v = ContainerView::new(name, "redis:7.2", false);
        if current != Current::NotStarted {
            v.attempts = 1;
        }
        v.current = current;
        v
    }

    #[test]
    fn init_containers_run_first_in_order() {
        use RestartPolicy::*;
        let main = [
            view("redis", Current::NotStarted),
            view("im", Current::NotStarted),
        ];
        let init = [
            view("a", Current::NotStarted),
            view("b", Current::NotStarted),
        ];
        assert_eq!(plan(Always, &init, &main), [Step::Start("a".into())]);
        let init = [view("a", running()), view("b", Current::NotStarted)];
        assert_eq!(plan(Always, &init, &main), []);
        let init = [view("a", exited(0)), view("b", Current::NotStarted)];
        assert_eq!(plan(Always, &init, &main), [Step::Start("b".into())]);
        let init = [view("a", exited(0)), view("b", exited(0))];
        assert_eq!(
            plan(Always, &init, &main),
            [Step::Start("redis".into()), Step::Start("im".into())]
        );
        // A failed init container is retried, except with restartPolicy Never.
        let init = [view("a", exited(1)), view("b", Current::NotStarted)];
        assert_eq!(plan(OnFailure, &init, &main), [Step::Start("a".into())]);
        assert_eq!(plan(Never, &init, &main), []);
        assert_eq!(phase(Never, &init, &main, false), "Failed");
        assert_eq!(phase(Always, &init, &main, false), "Pending");
    }

    #[test]
    fn restarts_follow_the_policy() {
        use RestartPolicy::*;
        let main = [
            view("ok", exited(0)),
            view("bad", exited(2)),
            view("up", running()),
        ];
        assert_eq!(
            plan(Always, &[], &main),
            [Step::Start("ok".into()), Step::Start("bad".into())]
        );
        assert_eq!(plan(OnFailure, &[], &main), [Step::Start("bad".into())]);
        assert_eq!(plan(Never, &[], &main), []);
        let mut sick = view("up", running());
        sick.unhealthy = Some("Liveness probe failed".into());
        assert_eq!(
            plan(Never, &[], &[sick]),
            [Step::Kill("up".into(), "Liveness probe failed".into())]
        );
    }

    #[test]
    fn sidecars_need_only_to_have_started() {
        use RestartPolicy::*;
        let main = [view("redis", Current::NotStarted)];
        let mut side = view("proxy", running());
        side.sidecar = true;
        assert_eq!(plan(Always, &[side.clone()], &main), [], "not started yet");
        side.started = true;
        assert_eq!(
            plan(Always, &[side.clone()], &main),
            [Step::Start("redis".into())]
        );
    }

    #[test]
    fn phases() {
        use RestartPolicy::*;
        assert_eq!(
            phase(Always, &[], &[view("a", Current::NotStarted)], false),
            "Pending"
        );
        assert_eq!(
            phase(Always, &[], &[view("a", running())], false),
            "Running"
        );
        assert_eq!(
            phase(Always, &[], &[view("a", exited(0))], false),
            "Running"
        );
        assert_eq!(
            phase(OnFailure, &[], &[view("a", exited(0))], false),
            "Succeeded"
        );
        assert_eq!(
            phase(OnFailure, &[], &[view("a", exited(1))], false),
            "Running"
        );
        assert_eq!(phase(Never, &[], &[view("a", exited(1))], false), "Failed");
        assert_eq!(
            phase(
                Never,
                &[],
                &[view("a", exited(0)), view("b", exited(1))],
                false
            ),
            "Failed"
        );
        // Deleted pods end terminal whatever the policy.
        assert_eq!(
            phase(Always, &[], &[view("a", exited(0))], true),
            "Succeeded"
        );
        assert_eq!(
            phase(Always, &[], &[view("a", exited(143))], true),
            "Failed"
        );
        // In CrashLoopBackOff: Running (it will be restarted).
        let mut looping = view("a", exited(1));
        looping.waiting = Some(Waiting::new("CrashLoopBackOff", None));
        assert_eq!(phase(Always, &[], &[looping], false), "Running");
        // Init still running: Pending.
        assert_eq!(
            phase(
                Always,
                &[view("i", running())],
                &[view("a", Current::NotStarted)],
                false
            ),
            "Pending"
        );
    }

    #[test]
    fn conditions_from_views() {
        let mut a = view("redis", running());
        a.ready = true;
        let b = view("im", running());
        let mut init = view("config", exited(0));
        init.ready = true;
        let c = conditions(
            true,
            &[init.clone()],
            &[a.clone(), b.clone()],
            "Running",
            &[],
        );
        let by = |t: &str| c.iter().find(|x| x.type_ == t).unwrap().clone();
        assert!(by("PodReadyToStartContainers").status);
        assert!(by("Initialized").status);
        assert!(!by("ContainersReady").status);
        assert_eq!(
            by("Ready").message.as_deref(),
            Some("containers with unready status: [im]")
        );
        assert_eq!(by("Ready").reason.as_deref(), Some("ContainersNotReady"));

        let mut b2 = b.clone();
        b2.ready = true;
        let c = conditions(
            true,
            &[init.clone()],
            &[a.clone(), b2.clone()],
            "Running",
            &[],
        );
        assert!(c.iter().all(|x| x.status));
        let gates = [("example.com/gate".to_string(), None)];
        let c = conditions(true, &[init.clone()], &[a.clone(), b2], "Running", &gates);
        assert_eq!(c[3].reason.as_deref(), Some("ReadinessGatesNotReady"));

        let pending = view("config", running());
        let c = conditions(
            true,
            &[pending],
            &[view("redis", Current::NotStarted)],
            "Pending",
            &[],
        );
        assert_eq!(
            c[1].message.as_deref(),
            Some("containers with incomplete status: [config]")
        );
        let c = conditions(true, &[init], &[a], "Failed", &[]);
        assert_eq!(c[3].reason.as_deref(), Some("PodFailed"));
    }

    #[test]
    fn transition_times_survive_unchanged_conditions() {
        let conds = conditions(true, &[], &[view("a", running())], "Running", &[]);
        let first = conditions_json(&conds, &[], Some(3), t(10));
        let again = conditions_json(&conds, &first, Some(3), t(99));
        assert_eq!(first, again);
        assert_eq!(first[0]["lastTransitionTime"], "2023-11-14T22:13:30Z");
        assert_eq!(first[0]["observedGeneration"], 3);
    }

    #[test]
    fn container_status_json() {
        let mut v = view("redis", exited(1));
        v.waiting = Some(Waiting::new(
            "CrashLoopBackOff",
            Some("back-off 10s".into()),
        ));
        let s = container_status(&v, "ContainerCreating");
        assert_eq!(s["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(s["state"]["running"], Value::Null);
        assert_eq!(s["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(s["restartCount"], 0);
        assert_eq!(s["containerID"], "kcp://42");
        v.attempts = 2;
        v.last_termination = match v.current.clone() {
            Current::Exited(t) => Some(t),
            _ => None,
        };
        v.current = running();
        v.waiting = None;
        v.started = true;
        let s = container_status(&v, "ContainerCreating");
        assert_eq!(s["restartCount"], 1);
        assert_eq!(s["started"], true);
        assert_eq!(s["state"]["running"]["startedAt"], "2023-11-14T22:13:22Z");
        assert_eq!(s["lastState"]["terminated"]["reason"], "Error");
        let fresh = container_status(&ContainerView::new("x", "img", false), "PodInitializing");
        assert_eq!(fresh["state"]["waiting"]["reason"], "PodInitializing");
        assert_eq!(fresh["containerID"], Value::Null);
        assert_eq!(fresh["started"], false);
    }
}
