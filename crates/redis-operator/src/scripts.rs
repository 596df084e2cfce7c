//! The shell scripts the operator's pods run, kept as real files under `scripts/` (so `sh -n` and
//! shellcheck check them, see the tests) and compiled in. They run with `/bin/sh -c` from the
//! official Redis image, so they are POSIX sh.

/// Prepares the pod's Redis configuration before redis-server starts (`scripts/data-init.sh`):
///
/// - `/data/redis.conf`, the file redis-server runs with, is written fresh at every start: it
///   includes the operator's template (the ConfigMap) and keeps only the `replicaof` line the
///   instance manager persisted there with `CONFIG REWRITE`. A restarted replica thus comes back
///   as a replica of the same upstream and resumes with a partial resync; everything else comes
///   from the current template (so a template change always takes effect) and from the instance
///   manager, which re-applies its topology.
/// - `/run/redis/auth.conf` (memory-backed) gets `requirepass`/`masterauth` from the mounted
///   Secret, without the password ever being a process argument (printf is a shell builtin; sed
///   reads the file).
///
/// In `mode: sentinel` the pod spec also sets these variables (unset otherwise, which keeps the
/// standalone behaviour above):
///
/// - `ANNOUNCE_HOST`: the pod's stable address, written as `replica-announce-ip` so Sentinels
///   know replicas by name, never by pod IP.
/// - `SENTINEL_HOST` (port `SENTINEL_PORT`, default 26379) and `MASTER_NAME`: when no
///   `replicaof` was persisted, the Sentinels are asked (`SENTINEL get-master-addr-by-name`,
///   3 s at most, password in `REDISCLI_AUTH` read from the file) who the primary is; if it is
///   another host the pod starts as its replica. If none answers, the pod starts as a replica of
///   the primary the operator recorded (`/etc/redis/conf/primary`), else of `DEFAULT_PRIMARY`
///   (pod 0), unless that is itself. `REDIS_PORT` (default 6379) is the port of every data pod.
///
/// A pod whose data volume holds a dataset (`/data/appendonlydir` or `/data/dump.rdb`), or
/// whose file kept a persisted `replicaof`, boots with its replication gate closed
/// (`masteruser`/`masterauth` set to `gate-closed-<random>`, after the template's lines, so they
/// win): a persisted `replicaof` then stops at `AUTH` instead of syncing from whatever that
/// address leads to now, which would flush the data if its history is unrelated, and instead
/// of authenticating with this cluster's own password (`masterauth` of `auth.conf`), which a DR
/// pod would otherwise send to the external source it persisted (a pod without data, e.g. a
/// diskless replica, did). The instance manager opens the gate once it has checked the
/// upstream's history, with the upstream's own credentials (docs/instance-manager.md, "The
/// replication gate"). A fresh pod (no data, nothing persisted) links at once in sentinel mode,
/// to the primary the Sentinels name, with the cluster's password.
///
/// It also creates `/data/instance-manager`, mounted into the instance manager (`--state-dir`):
/// created here, by the pod's own user, so that the sidecar can write its state file there.
///
/// Either way the pod boots fenced; its instance manager does the rest.
pub const INIT_SCRIPT: &str = include_str!("../scripts/data-init.sh");

/// Writes a Sentinel's `/data/sentinel.conf` (an emptyDir: the Sentinel rewrites it) at every
/// start (`scripts/sentinel-init.sh`): [`crate::config::sentinel_conf`] from the ConfigMap with
/// the monitor line in place, then `sentinel announce-ip $ANNOUNCE_HOST` and, if the password
/// file exists, the lines of [`crate::config::sentinel_auth_conf`] (printf and sed only: the
/// password is never an argument or in the Sentinel's environment).
///
/// The monitored primary: the first peer in `SENTINEL_PEERS` (`host:port ...`) that answers
/// `SENTINEL get-master-addr-by-name` within 2 s, so a restarted Sentinel joins the current
/// decision; else the primary the operator recorded (`PRIMARY_FILE`, host only, port
/// `REDIS_PORT`); else `DEFAULT_PRIMARY` (pod 0). `MASTER_NAME` and `QUORUM` are set by the pod
/// spec. Paths default to the pod's and can be overridden (`SENTINEL_CONF`, `SENTINEL_TEMPLATE`,
/// `PRIMARY_FILE`, `PASSWORD_FILE`), which the tests use.
pub const SENTINEL_INIT_SCRIPT: &str = include_str!("../scripts/sentinel-init.sh");

/// Readiness and liveness of a Sentinel (`scripts/sentinel-probe.sh`): it answers PING on its
/// port. The password comes from the mounted file through `REDISCLI_AUTH`, never an argument.
pub const SENTINEL_PROBE: &str = include_str!("../scripts/sentinel-probe.sh");

#[cfg(test)]
mod tests {
    use std::process::Command;

    use redis_cluster_api::names::{self, paths};

    use super::*;

    const SCRIPTS: [(&str, &str); 3] = [
        ("data-init.sh", INIT_SCRIPT),
        ("sentinel-init.sh", SENTINEL_INIT_SCRIPT),
        ("sentinel-probe.sh", SENTINEL_PROBE),
    ];

    fn path(file: &str) -> String {
        format!("{}/scripts/{file}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn scripts_parse_as_posix_sh() {
        for (file, _) in SCRIPTS {
            let out = Command::new("sh")
                .args(["-n", &path(file)])
                .output()
                .expect("sh");
            assert!(
                out.status.success(),
                "{file}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Fails (never skips) without shellcheck: `make deps` installs it.
    #[test]
    fn scripts_pass_shellcheck() {
        for (file, _) in SCRIPTS {
            // `--shell=sh`: the scripts have no shebang, they are run as `/bin/sh -c <script>`.
            let out = Command::new("shellcheck")
                .args(["--shell=sh", &path(file)])
                .output()
                .unwrap_or_else(|e| panic!("shellcheck is missing ({e}): run `make deps`"));
            assert!(
                out.status.success(),
                "{file}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    /// The scripts cannot read Rust constants: they name the pod's mount paths literally, so
    /// check that those are the ones the pod templates mount.
    #[test]
    fn scripts_use_the_mounted_paths() {
        let password = paths::auth_password_file();
        let config = |key| paths::file(paths::CONFIG_DIR, key);
        for needle in [
            password.clone(),
            config(names::REDIS_CONF_KEY),
            config(names::PRIMARY_KEY),
            paths::redis_conf_file(),
            paths::auth_conf_file(),
        ] {
            assert!(INIT_SCRIPT.contains(&needle), "data-init.sh: {needle}");
        }
        for needle in [
            format!("${{PASSWORD_FILE:-{password}}}"),
            format!(
                "${{SENTINEL_TEMPLATE:-{}}}",
                config(names::SENTINEL_CONF_KEY)
            ),
            format!("${{PRIMARY_FILE:-{}}}", config(names::PRIMARY_KEY)),
            format!("${{SENTINEL_CONF:-{}}}", paths::sentinel_conf_file()),
        ] {
            assert!(
                SENTINEL_INIT_SCRIPT.contains(&needle),
                "sentinel-init.sh: {needle}"
            );
        }
        assert!(SENTINEL_PROBE.contains(&password));
        assert!(SENTINEL_PROBE.contains(&format!("-p {} PING", names::SENTINEL_PORT)));
    }
}
