//! Processes for tests and the drill: tools that must be installed, commands run inside a network
//! namespace or not, processes killed when dropped (also when a test panics), free ports and
//! scratch directories.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Whether `tool` is on the PATH.
pub fn installed(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A tool the test needs must be installed: otherwise the test fails with how to get it (never
/// skips).
pub fn require(tool: &str) {
    assert!(
        installed(tool),
        "{tool} is not installed: these tests run real processes. Install it (`make deps`, or apt-get install redis-server redis-sentinel redis-tools curl iproute2 openssl)."
    );
}

/// The test creates network namespaces: it must run as root, with iproute2.
pub fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|r| r.split_whitespace().next().unwrap().to_string())
        })
        .unwrap();
    assert_eq!(
        uid, "0",
        "this test creates network namespaces and veth pairs and must run as root (uid 0); run `cargo test` as root"
    );
    require("ip");
}

/// `program`, inside network namespace `ns` (`ip netns exec`) when there is one.
pub fn command(ns: Option<&str>, program: &str) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// Run a command to completion: its standard output, or an error with the command line and
/// everything it printed.
pub fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A process killed (and reaped) when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    /// Start `args` inside network namespace `ns` (or here when None), both output streams to
    /// `log`.
    pub fn spawn(
        name: &str,
        ns: Option<&str>,
        args: &[String],
        log: &Path,
    ) -> Result<Proc, String> {
        let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = command(ns, &args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", args[0]))?;
        Ok(Proc::adopt(name, child))
    }

    /// Take charge of a child started elsewhere.
    pub fn adopt(name: &str, child: Child) -> Proc {
        Proc {
            name: name.into(),
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a redis-server saves its RDB, with its replication id and offset) and reap it;
    /// SIGKILL when it is still running after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on right now (bound, then freed).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding an ephemeral port on 127.0.0.1")
        .port()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `prefix` plus something no other test of any running process uses: the process id and a
/// counter (`<prefix><pid>x<n>`).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A scratch directory under the system's temporary directory, removed when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    /// A fresh directory whose name starts with `name` and is unique to this call.
    pub fn new(name: &str) -> ScratchDir {
        let p = std::env::temp_dir().join(unique(&format!("{name}-")));
        std::fs::create_dir_all(&p).unwrap();
        ScratchDir(p)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_fail_loudly_and_processes_die_with_their_handle() {
        assert_eq!(run(&["echo", "hi"]).unwrap(), "hi\n");
        let e = run(&["sh", "-c", "echo out; echo err >&2; exit 3"]).unwrap_err();
        assert_eq!(
            e,
            "`sh -c echo out; echo err >&2; exit 3` failed: out\nerr\n"
        );
        assert!(installed("sh") && !installed("no-such-tool-here"));
        let dir = ScratchDir::new("test-support");
        let mut p = Proc::spawn(
            "sleeper",
            None,
            &["sleep".into(), "30".into()],
            &dir.path("log"),
        )
        .unwrap();
        assert!(p.alive());
        let pid = p.pid();
        drop(p);
        assert!(
            !Path::new(&format!("/proc/{pid}/cmdline")).exists() || {
                // Reaped: a recycled pid would not be our sleeper.
                !std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .starts_with("sleep")
            }
        );
        let root = dir.0.clone();
        drop(dir);
        assert!(!root.exists());
        assert_ne!(unique("a"), unique("a"));
        assert_ne!(free_port(), 0);
    }
}
