//! The "container runtime": a container is a process tree started in the pod's network
//! namespace and in its own mount and UTS namespaces, through a small `sh` launcher that
//! bind-mounts the volumes, sets the hostname and `exec`s `setpriv` into the container's user.
//!
//! Each container has a shim (`redis-node-agent shim`, like containerd's shim or conmon) as
//! its parent: it writes the CRI log file, waits for the container and records its exit code,
//! so the container neither depends on the agent's pipes nor dies with it, and a restarted
//! agent reads what happened while it was away. Records live in
//! `<pod dir>/containers/<name>/<attempt>/`: `launch.sh`, `exec.json` (how to exec into it),
//! `pid` (pid and kernel start time: a reused pid is not mistaken for the container) and
//! `exit`.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::crilog::{LineSplitter, Stream, encode};

/// Absolute paths of the host tools the launcher and exec use (resolved once at start, so a
/// container's own PATH cannot change them).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Tools {
    pub ip: String,
    pub unshare: String,
    pub nsenter: String,
    pub setpriv: String,
    pub mount: String,
    pub umount: String,
    pub mkdir: String,
    pub env: String,
    pub sh: String,
}

impl Tools {
    pub fn find() -> Result<Tools, String> {
        let find = |name: &str| -> Result<String, String> {
            which(name, &std::env::var("PATH").unwrap_or_default())
                .map(|p| p.display().to_string())
                .ok_or_else(|| {
                    format!("{name} is not on PATH (util-linux, iproute2 and coreutils are needed)")
                })
        };
        Ok(Tools {
            ip: find("ip")?,
            unshare: find("unshare")?,
            nsenter: find("nsenter")?,
            setpriv: find("setpriv")?,
            mount: find("mount")?,
            umount: find("umount")?,
            mkdir: find("mkdir")?,
            env: find("env")?,
            sh: "/bin/sh".into(),
        })
    }
}

/// `name` resolved in `path` (colon-separated) the way execvp does.
pub fn which(name: &str, path: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The user a container runs as.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (fsGroup, supplementalGroups).
    pub groups: Vec<u32>,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privs: bool,
}

impl Identity {
    pub fn setpriv_args(&self, setpriv: &str) -> Vec<String> {
        let mut args = vec![
            setpriv.to_string(),
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
        ];
        if self.groups.is_empty() {
            args.push("--clear-groups".into());
        } else {
            let g: Vec<String> = self.groups.iter().map(u32::to_string).collect();
            args.push(format!("--groups={}", g.join(",")));
        }
        if self.no_new_privs {
            args.push("--no-new-privs".into());
        }
        args.push("--".into());
        args
    }
}

/// A volume mount as the launcher performs it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

/// POSIX shell single quoting.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Candidate staging directories for the launcher (see [`launcher_script`]).
const STAGES: [&str; 3] = [
    "/run/redis-node-agent-stage",
    "/dev/redis-node-agent-stage",
    "/mnt/redis-node-agent-stage",
];

/// A staging directory no mount target or cover touches (neither above nor below it).
fn stage_dir(targets: &[PathBuf]) -> &'static str {
    STAGES
        .iter()
        .find(|st| {
            let st = Path::new(st);
            !targets
                .iter()
                .any(|t| st.starts_with(t) || t.starts_with(st))
        })
        .copied()
        .unwrap_or(STAGES[0])
}

/// The launcher: runs as root inside the container's fresh mount and UTS namespaces, then
/// `exec`s the command (its arguments) as the container's user.
///
/// Every volume is first bind-mounted onto a private staging tmpfs, and mounted at its
/// target from there: a volume at `/tmp` must not hide the sources of the others when the
/// state directory is under `/tmp`. Mount points missing on the host are created there (a
/// directory, or an empty file for a file's subPath): there is no container root filesystem
/// to create them in.
pub fn launcher_script(
    tools: &Tools,
    mounts: &[Mount],
    hostname: &str,
    working_dir: Option<&str>,
    id: &Identity,
    blocked: &dyn Fn(&Path) -> bool,
) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# Written by redis-node-agent: the container's volumes, hostname and user.\nset -e\n",
    );
    let mut mounts = mounts.to_vec();
    // Parents before children (/etc/redis before /etc/redis/conf).
    mounts.sort_by(|a, b| a.target.cmp(&b.target));
    let covered = covers(&mounts, blocked);
    if !mounts.is_empty() {
        let mut avoid: Vec<PathBuf> = mounts.iter().map(|m| PathBuf::from(&m.target)).collect();
        avoid.extend(covered.iter().cloned());
        let stage = sh_quote(stage_dir(&avoid));
        s.push_str(&format!(
            "{mkdir} -p {stage}\n{mount} -t tmpfs -o mode=0700,size=1m tmpfs {stage}\n",
            mkdir = tools.mkdir,
            mount = tools.mount
        ));
        for (i, m) in mounts.iter().enumerate() {
            let staged = format!("{}/{i}", stage.trim_end_matches('\''));
            let staged = format!("{staged}'");
            let source = sh_quote(&m.source.display().to_string());
            if m.source.is_dir() || !m.source.exists() {
                s.push_str(&format!("{} {staged}\n", tools.mkdir));
            } else {
                s.push_str(&format!(": > {staged}\n"));
            }
            s.push_str(&format!("{} --bind {source} {staged}\n", tools.mount));
        }
        for cover in &covered {
            s.push_str(&format!(
                "{} -t tmpfs -o mode=0755,size=1m tmpfs {}\n",
                tools.mount,
                sh_quote(&cover.display().to_string())
            ));
        }
        for (i, m) in mounts.iter().enumerate() {
            let staged = format!("{}/{i}'", stage.trim_end_matches('\''));
            let target = sh_quote(&m.target);
            if m.source.is_dir() || !m.source.exists() {
                s.push_str(&format!("{} -p {target}\n", tools.mkdir));
            } else {
                let parent = Path::new(&m.target)
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "/".into());
                s.push_str(&format!(
                    "{} -p {}\n[ -e {target} ] || : > {target}\n",
                    tools.mkdir,
                    sh_quote(&parent)
                ));
            }
            s.push_str(&format!("{} --bind {staged} {target}\n", tools.mount));
            if m.read_only {
                s.push_str(&format!("{} -o remount,bind,ro {target}\n", tools.mount));
            }
        }
        // The staging tmpfs (with its binds) goes; the targets' mounts stay.
        s.push_str(&format!("{} -l {stage}\n", tools.umount));
    }
    s.push_str(&format!(
        "printf '%s' {} > /proc/sys/kernel/hostname\n",
        sh_quote(hostname)
    ));
    if let Some(dir) = working_dir {
        s.push_str(&format!(
            "{} -p {d}\ncd {d}\n",
            tools.mkdir,
            d = sh_quote(dir)
        ));
    }
    let setpriv: Vec<String> = id
        .setpriv_args(&tools.setpriv)
        .iter()
        .map(|a| sh_quote(a))
        .collect();
    s.push_str(&format!("exec {} \"$@\"\n", setpriv.join(" ")));
    s
}

/// Host directories above mount points that the container's user could not traverse (e.g.
/// Debian's `/etc/redis`, 0770 redis:redis, above a volume at `/etc/redis/conf`): each is
/// covered, in the container's mount namespace only, by an empty tmpfs in which the mount
/// points are made. An image would not have the host's files there either. Directories that
/// are themselves mount targets (or under one) are not judged: the volume replaces them.
pub fn covers(mounts: &[Mount], blocked: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let targets: Vec<&Path> = mounts
        .iter()
        .map(|m| Path::new(m.target.as_str()))
        .collect();
    let mut out: Vec<PathBuf> = Vec::new();
    for t in &targets {
        let mut ancestors: Vec<&Path> = t.ancestors().skip(1).collect();
        ancestors.reverse();
        for a in ancestors {
            if a == Path::new("/") {
                continue;
            }
            if out.iter().any(|c| a.starts_with(c)) || targets.iter().any(|m| a.starts_with(m)) {
                break;
            }
            if blocked(a) {
                out.push(a.to_path_buf());
                break;
            }
        }
    }
    out
}

/// Whether `dir` exists on the host and `id` may not search it.
pub fn not_traversable(dir: &Path, id: &Identity) -> bool {
    use std::os::unix::fs::MetadataExt;
    if id.uid == 0 {
        return false;
    }
    let Ok(m) = fs::metadata(dir) else {
        return false;
    };
    let mode = m.mode();
    let bit = if m.uid() == id.uid {
        0o100
    } else if m.gid() == id.gid || id.groups.contains(&m.gid()) {
        0o010
    } else {
        0o001
    };
    mode & bit == 0
}

/// Everything needed to exec into a running container (kept on disk for a restarted agent).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExecConfig {
    pub identity: Identity,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
}

/// The command line that runs `command` inside the container whose main process is `pid`.
pub fn exec_argv(tools: &Tools, pid: u32, cfg: &ExecConfig, command: &[String]) -> Vec<String> {
    let mut argv = vec![
        tools.nsenter.clone(),
        format!("--target={pid}"),
        "--mount".into(),
        "--uts".into(),
        "--net".into(),
        "--".into(),
    ];
    argv.extend(cfg.identity.setpriv_args(&tools.setpriv));
    argv.push(tools.env.clone());
    argv.push("-i".into());
    argv.push(format!(
        "--chdir={}",
        cfg.working_dir.as_deref().unwrap_or("/")
    ));
    // Options end here; then the variables, then the command (a command word looking like
    // NAME=VALUE would be read as a variable; exec commands never start so here).
    argv.push("--".into());
    for (k, v) in &cfg.env {
        argv.push(format!("{k}={v}"));
    }
    argv.extend(command.iter().cloned());
    argv
}

/// The pid record the shim writes once the container process exists.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PidRecord {
    pub pid: u32,
    /// Kernel start time (clock ticks since boot, /proc/<pid>/stat field 22).
    pub start_ticks: u64,
    pub started_at: DateTime<Utc>,
}

/// The exit record the shim writes when the container's main process ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub finished_at: DateTime<Utc>,
}

/// Kernel start time of `pid`, if it is alive (zombies do not count).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// (state, starttime) from a /proc/<pid>/stat line; None for zombies.
pub fn parse_stat(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); starttime is field 22 -> fields[19].
    if matches!(fields.first(), Some(&"Z") | Some(&"X") | None) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

impl PidRecord {
    pub fn alive(&self) -> bool {
        start_ticks(self.pid) == Some(self.start_ticks)
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

pub fn write_json<T: Serialize>(path: &Path, v: &T) -> std::io::Result<()> {
    write_atomic(
        path,
        &serde_json::to_vec_pretty(v).map_err(std::io::Error::other)?,
    )
}

/// Send `sig` to the container's process group (its pid is the group's id).
pub fn signal_group(pid: u32, sig: Signal) {
    let _ = killpg(Pid::from_raw(pid as i32), sig);
}

/// The shim's main: start `argv` (already with the container's environment) in its own
/// process group, copy its output into `log` in the CRI format, record pid and exit in
/// `dir`. Never returns an error to a caller that could act on it: it is its own process.
pub fn shim_main(dir: &Path, log: &Path, argv: &[String]) -> i32 {
    // The shim lives as long as its container, whatever happens to the agent: hang-ups and
    // terminal signals are not for it. Blocked rather than ignored (which needs unsafe code);
    // the container starts with an empty mask (std resets it in the child).
    let mut blocked = nix::sys::signal::SigSet::empty();
    for sig in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM] {
        blocked.add(sig);
    }
    let _ = blocked.thread_block();
    let exit_path = dir.join("exit");
    let record_exit = |code: i32, signal: Option<i32>| {
        let rec = ExitRecord {
            exit_code: code,
            signal,
            finished_at: Utc::now(),
        };
        let _ = write_json(&exit_path, &rec);
    };
    let log_file = match fs::OpenOptions::new().create(true).append(true).open(log) {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => {
            eprintln!("shim: {}: {e}", log.display());
            record_exit(128, None);
            return 1;
        }
    };
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let line = encode(
                Utc::now(),
                Stream::Stderr,
                false,
                format!("cannot start container: {e}").as_bytes(),
            );
            let _ = log_file.lock().map(|mut f| f.write_all(&line));
            record_exit(128, None);
            return 1;
        }
    };
    let pid = child.id();
    let started_at = Utc::now();
    let rec = PidRecord {
        pid,
        start_ticks: start_ticks(pid).unwrap_or(0),
        started_at,
    };
    let _ = write_json(&dir.join("pid"), &rec);
    let mut readers = Vec::new();
    for (stream, pipe) in [
        (
            Stream::Stdout,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            Stream::Stderr,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        let Some(mut pipe) = pipe else { continue };
        let log = log_file.clone();
        readers.push(std::thread::spawn(move || {
            let mut splitter = LineSplitter::default();
            let mut buf = [0u8; 8192];
            let write = |entries: Vec<(bool, Vec<u8>)>| {
                if let Ok(mut f) = log.lock() {
                    for (partial, content) in entries {
                        let _ = f.write_all(&encode(Utc::now(), stream, partial, &content));
                    }
                }
            };
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => write(splitter.push(&buf[..n])),
                }
            }
            write(splitter.finish().into_iter().collect());
        }));
    }
    let status = child.wait();
    // Like a container whose init died: nothing of it stays behind.
    signal_group(pid, Signal::SIGKILL);
    // Output still buffered in the pipes is logged; a leftover holding them open is not
    // waited for long.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    for r in readers {
        while !r.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if r.is_finished() {
            let _ = r.join();
        }
    }
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => record_exit(code, None),
            (None, Some(sig)) => record_exit(128 + sig, Some(sig)),
            _ => record_exit(255, None),
        },
        Err(_) => record_exit(255, None),
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Tools {
        Tools {
            ip: "/usr/sbin/ip".into(),
            unshare: "/usr/bin/unshare".into(),
            nsenter: "/usr/bin/nsenter".into(),
            setpriv: "/usr/bin/setpriv".into(),
            mount: "/usr/bin/mount".into(),
            umount: "/usr/bin/umount".into(),
            mkdir: "/usr/bin/mkdir".into(),
            env: "/usr/bin/env".into(),
            sh: "/bin/sh".into(),
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn launcher_mounts_parents_first_and_drops_privileges() {
        let id = Identity {
            uid: 10001,
            gid: 10001,
            groups: vec![10001],
            no_new_privs: true,
        };
        let mounts = vec![
            Mount {
                source: "/nonexistent/conf".into(),
                target: "/etc/redis/conf".into(),
                read_only: true,
            },
            Mount {
                source: "/nonexistent/data".into(),
                target: "/data".into(),
                read_only: false,
            },
        ];
        let blocked = |p: &Path| p == Path::new("/etc/redis");
        let s = launcher_script(
            &tools(),
            &mounts,
            "dr-redis-0",
            Some("/data"),
            &id,
            &blocked,
        );
        assert!(s.contains("/usr/bin/mount -t tmpfs -o mode=0755,size=1m tmpfs '/etc/redis'\n"));
        // Staged first (sources resolved before any target hides them), in target order.
        let stage = "'/run/redis-node-agent-stage";
        let find = |needle: String| s.find(&needle).unwrap_or_else(|| panic!("{needle} in {s}"));
        let data_staged = find(format!("--bind '/nonexistent/data' {stage}/0'"));
        let conf_staged = find(format!("--bind '/nonexistent/conf' {stage}/1'"));
        let data = find(format!("--bind {stage}/0' '/data'"));
        let conf = find(format!("--bind {stage}/1' '/etc/redis/conf'"));
        assert!(data_staged < conf_staged && conf_staged < data && data < conf);
        assert!(find("tmpfs '/etc/redis'".into()) < conf);
        assert!(s.contains(&format!("/usr/bin/umount -l {stage}'\n")));
        assert!(s.contains("/usr/bin/mount -o remount,bind,ro '/etc/redis/conf'\n"));
        assert!(!s.contains("remount,bind,ro '/data'"));
        assert!(s.contains("printf '%s' 'dr-redis-0' > /proc/sys/kernel/hostname\n"));
        assert!(s.contains("cd '/data'\n"));
        assert!(s.ends_with(
            "exec '/usr/bin/setpriv' '--reuid=10001' '--regid=10001' '--groups=10001' '--no-new-privs' '--' \"$@\"\n"
        ));
        let root = launcher_script(&tools(), &[], "h", None, &Identity::default(), &|_| false);
        assert!(!root.contains("tmpfs"), "no volumes, no staging");
        assert_eq!(
            stage_dir(&[PathBuf::from("/run")]),
            "/dev/redis-node-agent-stage"
        );
        assert!(root.contains("'--reuid=0' '--regid=0' '--clear-groups' '--'"));
    }

    #[test]
    fn covers_only_blocking_ancestors_outside_other_mounts() {
        let m = |t: &str| Mount {
            source: "/x".into(),
            target: t.into(),
            read_only: false,
        };
        let blocked = |p: &Path| p == Path::new("/etc/redis") || p == Path::new("/secret");
        let mounts = vec![m("/etc/redis/conf"), m("/etc/redis/auth"), m("/data")];
        assert_eq!(covers(&mounts, &blocked), vec![PathBuf::from("/etc/redis")]);
        // /secret is itself a mount target: the volume replaces it, nothing to cover.
        let mounts = vec![m("/secret"), m("/secret/inner")];
        assert!(covers(&mounts, &blocked).is_empty());
        let dir = std::env::temp_dir().join(format!("trav-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let user = Identity {
            uid: 54321,
            gid: 54321,
            groups: vec![],
            no_new_privs: false,
        };
        assert!(not_traversable(&dir, &user));
        assert!(
            !not_traversable(&dir, &Identity::default()),
            "root goes anywhere"
        );
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o701)).unwrap();
        assert!(!not_traversable(&dir, &user));
        assert!(!not_traversable(Path::new("/nonexistent-dir"), &user));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn exec_enters_the_container() {
        let cfg = ExecConfig {
            identity: Identity {
                uid: 1,
                gid: 2,
                groups: vec![],
                no_new_privs: false,
            },
            env: vec![("PATH".into(), "/opt/bin:/usr/bin".into())],
            working_dir: None,
        };
        let argv = exec_argv(&tools(), 42, &cfg, &["redis-cli".into(), "INFO".into()]);
        assert_eq!(
            argv.join(" "),
            "/usr/bin/nsenter --target=42 --mount --uts --net -- /usr/bin/setpriv --reuid=1 --regid=2 \
             --clear-groups -- /usr/bin/env -i --chdir=/ -- PATH=/opt/bin:/usr/bin redis-cli INFO"
        );
    }

    #[test]
    fn stat_parsing() {
        let line = "1234 (redis server) S 1 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 4 0 987654 1000 200";
        assert_eq!(parse_stat(line), Some(987654));
        let zombie = "1234 (x) Z 1 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 4 0 987654 0 0";
        assert_eq!(parse_stat(zombie), None);
        assert!(start_ticks(std::process::id()).is_some());
    }

    #[test]
    fn which_resolves_like_execvp() {
        assert!(which("sh", "/nonexistent:/bin:/usr/bin").is_some());
        assert!(which("definitely-not-a-command", "/bin:/usr/bin").is_none());
        assert_eq!(which("/bin/sh", ""), Some(PathBuf::from("/bin/sh")));
    }
}
