//! The cluster's long-running processes (etcd, the control plane, kube-proxies, node agents):
//! started in their own process group with their output in `<dir>/logs/<name>.log`, and
//! recorded in `<dir>/daemons/<name>.json` (pid and command line) so that another `kcluster`
//! invocation can stop or restart them, and nothing is left behind by `down`.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// How a daemon was started: enough to start it again the same way.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Daemon {
    pub name: String,
    /// Network namespace it runs in (None: the host's).
    pub netns: Option<String>,
    pub args: Vec<String>,
    pub pid: u32,
}

fn record_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("daemons").join(format!("{name}.json"))
}

pub fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("logs").join(format!("{name}.log"))
}

/// Start `args` as daemon `name` (replacing the record of an earlier one of that name).
pub fn start(
    dir: &Path,
    name: &str,
    netns: Option<&str>,
    args: &[String],
) -> Result<Daemon, String> {
    fs::create_dir_all(dir.join("daemons")).map_err(|e| e.to_string())?;
    fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
    let log_file = log_path(dir, name);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_file)
        .map_err(|e| format!("{}: {e}", log_file.display()))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(args);
            c
        }
        None => {
            let mut c = Command::new(&args[0]);
            c.args(&args[1..]);
            c
        }
    };
    // Its own process group: stopping it stops whatever it started, and a Ctrl-C at the
    // terminal that ran `kcluster up` does not reach it.
    let child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {name} ({}): {e}", args[0]))?;
    let daemon = Daemon {
        name: name.into(),
        netns: netns.map(String::from),
        args: args.to_vec(),
        pid: child.id(),
    };
    // Not waited for here: a daemon outlives this process when `kcluster up` returns (dropping
    // the handle does not stop it); `reap` collects the ones that exit while this one runs.
    drop(child);
    fs::write(
        record_path(dir, name),
        serde_json::to_vec_pretty(&daemon).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    Ok(daemon)
}

/// Every recorded daemon, by name.
pub fn list(dir: &Path) -> Vec<Daemon> {
    let mut out: Vec<Daemon> = fs::read_dir(dir.join("daemons"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| serde_json::from_slice(&fs::read(e.path()).ok()?).ok())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub fn get(dir: &Path, name: &str) -> Option<Daemon> {
    serde_json::from_slice(&fs::read(record_path(dir, name)).ok()?).ok()
}

/// Whether the process still runs (a zombie, exited but not reaped, does not count).
pub fn alive(pid: u32) -> bool {
    if kill(Pid::from_raw(pid as i32), None).is_err() {
        return false;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Field 3 is the state; it follows the command name, which is in parentheses.
    !matches!(
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next()),
        Some("Z") | Some("X") | None
    )
}

/// Stop daemon `d`'s process group: SIGTERM, then SIGKILL after `grace`.
pub fn stop(d: &Daemon, grace: Duration) {
    let group = Pid::from_raw(d.pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while alive(d.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = killpg(group, Signal::SIGKILL);
    reap();
}

/// Freeze (`SIGSTOP`) or thaw (`SIGCONT`) a daemon, e.g. a node agent that stops heartbeating.
pub fn signal(d: &Daemon, sig: Signal) -> Result<(), String> {
    killpg(Pid::from_raw(d.pid as i32), sig).map_err(|e| format!("{}: {e}", d.name))
}

/// Freeze a daemon (`SIGSTOP`): a node agent frozen is a node whose kubelet stopped while its
/// pods' processes go on.
pub fn freeze(d: &Daemon) -> Result<(), String> {
    signal(d, Signal::SIGSTOP)
}

/// Resume a frozen daemon (`SIGCONT`).
pub fn thaw(d: &Daemon) -> Result<(), String> {
    signal(d, Signal::SIGCONT)
}

/// Restart daemon `name` with the same command line (e.g. the apiserver, as a fault).
pub fn restart(dir: &Path, name: &str, grace: Duration) -> Result<Daemon, String> {
    let d = get(dir, name).ok_or_else(|| format!("no daemon {name} in {}", dir.display()))?;
    stop(&d, grace);
    start(dir, name, d.netns.as_deref(), &d.args)
}

/// Collect exited children of this process (daemons started by it that died), so they do not
/// linger as zombies.
pub fn reap() {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if matches!(status, nix::sys::wait::WaitStatus::StillAlive) {
            break;
        }
    }
}

/// Stop every recorded daemon (reverse order of names is irrelevant: each is independent) and
/// forget them.
pub fn stop_all(dir: &Path) {
    for d in list(dir) {
        stop(&d, Duration::from_secs(5));
        let _ = fs::remove_file(record_path(dir, &d.name));
    }
}
