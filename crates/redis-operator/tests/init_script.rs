//! The data pods' init script, run for real with /bin/sh against a real redis-server: the
//! password (with spaces, quotes and backslashes) reaches Redis only through files, and a
//! persisted `replicaof` line survives a restart while everything else is regenerated. In
//! `mode: sentinel` a fresh pod starts as a replica of the primary a real redis-sentinel names,
//! and of the recorded primary or pod 0 when no Sentinel answers.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;

use common::*;
use redis_cluster_api::names;
use redis_cluster_api::topology::FENCE_MIN_REPLICAS;
use redis_operator::config::{sentinel_auth_conf, sentinel_conf_with_monitor};
use redis_operator::objects::{Settings, build};
use redis_operator::scripts::INIT_SCRIPT;

#[test]
fn the_init_script_gives_redis_its_password_and_keeps_replicaof() {
    require("redis-server");
    let pod = Pod::new("init-script");
    let root = pod.0.0.clone();
    let password = PASSWORD;
    let port = free_port();
    std::fs::write(
        root.join("conf/redis.conf"),
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\ninclude {}/run/auth.conf\n",
            root.join("data").display(),
            root.display()
        ),
    )
    .unwrap();
    // A previous life: the instance manager's CONFIG REWRITE left these in the main file.
    std::fs::write(
        root.join("data/redis.conf"),
        "include old\nreplicaof 10.0.0.9 6379\nmasterauth \"stale\"\nmin-replicas-to-write 0\n",
    )
    .unwrap();
    let script = INIT_SCRIPT
        .replace("/data/", &format!("{}/data/", root.display()))
        .replace("/etc/redis/conf/", &format!("{}/conf/", root.display()))
        .replace("/etc/redis/auth/", &format!("{}/auth/", root.display()))
        .replace("/run/redis/", &format!("{}/run/", root.display()));
    let status = Command::new("/bin/sh")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
    let main = std::fs::read_to_string(root.join("data/redis.conf")).unwrap();
    let lines: Vec<&str> = main.lines().collect();
    assert_eq!(
        (lines.len(), lines[0], lines[3]),
        (
            4,
            format!("include {}/conf/redis.conf", root.display()).as_str(),
            "replicaof 10.0.0.9 6379"
        ),
        "only the template include, the closed gate and the persisted replicaof survive: {main}"
    );
    // The persisted upstream gets a random token, not this cluster's password (it may be
    // another cluster's primary: the external source of a DR pod).
    assert!(
        lines[1].starts_with("masteruser gate-closed-")
            && lines[2].starts_with("masterauth gate-closed-"),
        "{main}"
    );

    let server = spawn("redis-server", &root.join("data/redis.conf"));
    let mut role = String::new();
    wait_until(Duration::from_secs(10), || {
        role = redis_cli(port, password, &["ROLE"]);
        !role.is_empty()
    });
    let wrong = redis_cli(port, "wrong", &["PING"]);
    let masterauth = redis_cli(port, password, &["CONFIG", "GET", "masterauth"]);
    drop(server);
    assert!(
        masterauth.starts_with("masterauth\ngate-closed-"),
        "boots with the gate's token as masterauth: {masterauth}"
    );
    drop(pod);
    assert!(
        role.starts_with("slave"),
        "restarted as a replica of its old upstream: {role:?}"
    );
    assert!(role.contains("10.0.0.9"), "{role:?}");
    assert!(!wrong.contains("PONG"), "a wrong password was accepted");
}

/// Issue 12: a redis container restarted alone (redis-server crashed or was OOM-killed; the
/// init container does not run again) boots from `/data/redis.conf` as the instance manager's
/// last `CONFIG REWRITE` left it, which for a primary with `minSyncReplicas` holds its real
/// `min-replicas-to-write` after the template's include, i.e. unfenced. The container's command
/// line carries the fence, which wins over the file: the restarted Redis takes no write until
/// its instance manager has looked at it. On the pod spec before (`redis-server
/// /data/redis.conf`) it booted with `min-replicas-to-write 2` and took writes as soon as two
/// replicas reconnected, a primary the Sentinels may already have replaced.
#[test]
fn a_redis_container_restarted_alone_boots_fenced_whatever_the_rewrite_left() {
    require("redis-server");
    let mut rc = prod_redis();
    rc.metadata.uid = Some("uid-restart".into());
    let pod = Pod::new("restart-fenced");
    let port = free_port();
    let root = pod.0.0.display().to_string();
    // The operator's own template, on this test's paths and port.
    let template = redis_operator::config::redis_conf(&rc)
        .replace("bind * -::*", "bind 127.0.0.1")
        .replace(
            &format!("port {}", names::REDIS_PORT),
            &format!("port {port}"),
        )
        .replace("dir /data", &format!("dir {root}/data"))
        .replace("/run/redis/", &format!("{root}/run/"));
    assert!(template.contains(&format!("port {port}\n")), "{template}");
    std::fs::write(pod.path("conf/redis.conf"), template).unwrap();
    pod.init(&[]);
    // The redis container's command, exactly as the StatefulSet has it.
    let owned = build(&rc, &Settings::default());
    let spec = owned.statefulset.spec.unwrap().template.spec.unwrap();
    let redis = spec
        .containers
        .iter()
        .find(|c| c.name == names::REDIS_CONTAINER)
        .unwrap();
    let command: Vec<String> = redis
        .command
        .clone()
        .unwrap()
        .into_iter()
        .map(|a| a.replace("/data/", &format!("{root}/data/")))
        .collect();
    assert!(redis.args.is_none(), "{:?}", redis.args);
    let log = pod.path("redis.log");
    let start = || Proc::spawn("redis-server", None, &command, &log).unwrap();
    let cli = |args: &[&str]| redis_cli(port, PASSWORD, args);
    let up = |what: &str| {
        wait_for(what, Duration::from_secs(20), || {
            (cli(&["PING"]) == "PONG").then_some(())
        })
    };

    let first = start();
    up("the pod's Redis");
    assert!(
        cli(&["SET", "k", "v"]).contains("NOREPLICAS"),
        "boots fenced"
    );
    // Its instance manager made it a primary of a cluster with `minSyncReplicas: 2` and
    // persisted that, as it does after every change.
    assert_eq!(cli(&["CONFIG", "SET", "min-replicas-to-write", "2"]), "OK");
    assert_eq!(cli(&["CONFIG", "REWRITE"]), "OK");
    let main = std::fs::read_to_string(pod.path("data/redis.conf")).unwrap();
    assert!(main.contains("min-replicas-to-write 2"), "{main}");
    // The rewrite put the password in the file (Redis writes every non-default setting back):
    // the file must be the Redis user's alone, and so must the snapshot next to it.
    assert!(
        main.contains(&quote(PASSWORD)),
        "the rewrite inlines requirepass"
    );
    assert_eq!(cli(&["SAVE"]), "OK");
    for file in ["data/redis.conf", "data/dump.rdb"] {
        let mode = std::fs::metadata(pod.path(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file} has mode {mode:o}");
    }
    drop(first);

    // The container restarts; the init container does not run again.
    let _second = start();
    up("the restarted Redis");
    let fence = FENCE_MIN_REPLICAS.to_string();
    assert_eq!(
        cli(&["CONFIG", "GET", "min-replicas-to-write"]),
        format!("min-replicas-to-write\n{fence}"),
        "the restarted container boots fenced; its file says:\n{main}"
    );
    assert!(cli(&["SET", "k", "v"]).contains("NOREPLICAS"));
    assert_password_in_no_process_arguments();
}

/// Issue 12: a pod whose volume holds a dataset boots with its replication gate closed, so a
/// persisted `replicaof` cannot full-sync (and flush it) from whatever the address leads to
/// now before the instance manager has checked that history. A pod without data links at once
/// (the other tests). On the script before, the restarted replica synced at boot and its keys
/// were replaced by the unrelated upstream's.
#[test]
fn a_pod_with_data_boots_with_its_replication_gate_closed() {
    require("redis-server");
    // An unrelated upstream holding one key, behind the address the replica persisted.
    let upstream = Pod::new("init-gate-upstream");
    let up_port = free_port();
    std::fs::write(
        upstream.path("data/redis.conf"),
        format!(
            "port {up_port}\nbind 127.0.0.1\ndir {}\nrequirepass {}\n",
            upstream.path("data").display(),
            quote(PASSWORD)
        ),
    )
    .unwrap();
    let _up = spawn("redis-server", &upstream.path("data/redis.conf"));
    wait_for("the upstream", Duration::from_secs(20), || {
        (redis_cli(up_port, PASSWORD, &["SET", "theirs", "1"]) == "OK").then_some(())
    });

    let pod = Pod::new("init-gate-replica");
    let port = free_port();
    std::fs::write(
        pod.path("conf/redis.conf"),
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nappendonly yes\ninclude {}\n",
            pod.path("data").display(),
            pod.path("run/auth.conf").display()
        ),
    )
    .unwrap();
    // First life: a primary that takes a write (its AOF directory appears).
    let first = pod.init(&[]);
    assert!(!first.contains("gate-closed-"), "no data yet: {first}");
    let mut redis = spawn("redis-server", &pod.path("data/redis.conf"));
    wait_for("the pod's Redis", Duration::from_secs(20), || {
        (redis_cli(port, PASSWORD, &["SET", "ours", "1"]) == "OK").then_some(())
    });
    redis_cli(port, PASSWORD, &["BGREWRITEAOF"]);
    std::thread::sleep(Duration::from_millis(500));
    drop(redis);
    assert!(pod.path("data/appendonlydir").is_dir());
    // Its instance manager had persisted a replicaof to the address that now leads elsewhere.
    let persisted = std::fs::read_to_string(pod.path("data/redis.conf")).unwrap();
    std::fs::write(
        pod.path("data/redis.conf"),
        format!("{persisted}replicaof 127.0.0.1 {up_port}\n"),
    )
    .unwrap();
    let main = pod.init(&[]);
    assert!(
        main.contains("masteruser gate-closed-") && main.contains("masterauth gate-closed-"),
        "{main}"
    );
    assert!(
        main.ends_with(&format!("replicaof 127.0.0.1 {up_port}\n")),
        "{main}"
    );
    redis = spawn("redis-server", &pod.path("data/redis.conf"));
    wait_for("the restarted Redis", Duration::from_secs(20), || {
        redis_cli(port, PASSWORD, &["ROLE"])
            .starts_with("slave")
            .then_some(())
    });
    // Redis retries the handshake every second; give it three.
    std::thread::sleep(Duration::from_secs(3));
    let info = redis_cli(port, PASSWORD, &["INFO", "replication"]);
    let kept = redis_cli(port, PASSWORD, &["GET", "ours"]);
    let theirs = redis_cli(port, PASSWORD, &["GET", "theirs"]);
    let full = redis_cli(up_port, PASSWORD, &["INFO", "stats"]);
    drop(redis);
    assert!(info.contains("master_link_status:down"), "{info}");
    assert_eq!(kept, "1", "the pod's data is kept");
    assert_eq!(theirs, "", "nothing synced from the unrelated upstream");
    assert!(full.contains("sync_full:0"), "{full}");
    assert_password_in_no_process_arguments();
}

/// Issue 13: a DR pod never sends its own cluster's password to the external source. The init
/// script gives Redis `masterauth` = the cluster's password (what its peers expect); a DR pod
/// that persisted `replicaof <source>` (its instance manager's `CONFIG REWRITE`) and holds no
/// data (a diskless replica writes no RDB) used to restart straight into `AUTH <own password>`
/// to the source. A fake source records every byte it receives: only the gate's random token
/// reaches it now. On the script before, the password was in the recording.
#[test]
fn a_restarted_dr_pod_never_sends_its_own_password_to_the_source() {
    for tool in ["redis-server", "python3"] {
        require(tool);
    }
    let source_port = free_port();
    let pod = Pod::new("init-dr-password");
    let recording = pod.path("source-received");
    let _source = Proc::adopt(
        "fake-source",
        Command::new("python3")
            .args(["-c", RECORDING_SOURCE, &source_port.to_string()])
            .arg(&recording)
            .spawn()
            .unwrap(),
    );
    let port = free_port();
    std::fs::write(
        pod.path("conf/redis.conf"),
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\ninclude {}\n",
            pod.path("data").display(),
            pod.path("run/auth.conf").display()
        ),
    )
    .unwrap();
    // No data files; the instance manager had persisted the source as its upstream.
    std::fs::write(
        pod.path("data/redis.conf"),
        format!("include old\nreplicaof 127.0.0.1 {source_port}\n"),
    )
    .unwrap();
    pod.init(&[]);
    let redis = spawn("redis-server", &pod.path("data/redis.conf"));
    // Redis reaches the source, is answered PONG, and authenticates: wait for the AUTH.
    wait_for(
        "the replica's AUTH at the source",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(&recording)
                .ok()
                .filter(|r| r.contains("AUTH"))
                .map(|_| ())
        },
    );
    drop(redis);
    let received = std::fs::read_to_string(&recording).unwrap();
    assert!(
        !received.contains(PASSWORD),
        "the source received this cluster's password:\n{received}"
    );
    assert!(received.contains("gate-closed-"), "{received}");
}

/// A Redis-speaking listener (argv: port, file) that appends every byte it receives to the
/// file and answers `PING` with `+PONG` and anything else with an error.
const RECORDING_SOURCE: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(4)
while True:
    c, _ = s.accept()
    c.settimeout(2)
    try:
        while True:
            data = c.recv(4096)
            if not data: break
            with open(sys.argv[2], "ab") as f: f.write(data)
            c.sendall(b"+PONG\r\n" if b"PING" in data.upper() else b"-ERR recorded\r\n")
    except Exception: pass
    c.close()
"#;

/// A pod's directories (data, run, auth, conf) under a scratch root, removed at the end.
struct Pod(ScratchDir);

impl Pod {
    fn new(test: &str) -> Pod {
        let root = ScratchDir::new(test);
        for d in ["data", "run", "auth", "conf"] {
            std::fs::create_dir_all(root.path(d)).unwrap();
        }
        std::fs::write(root.path("auth/password"), format!("{PASSWORD}\n")).unwrap();
        Pod(root)
    }

    fn path(&self, file: &str) -> std::path::PathBuf {
        self.0.path(file)
    }

    /// Runs INIT_SCRIPT with the pod's paths and `env`; returns the main file it wrote.
    fn init(&self, env: &[(&str, String)]) -> String {
        let root = self.0.0.display();
        let script = INIT_SCRIPT
            .replace("/data/", &format!("{root}/data/"))
            .replace("/etc/redis/conf/", &format!("{root}/conf/"))
            .replace("/etc/redis/auth/", &format!("{root}/auth/"))
            .replace("/run/redis/", &format!("{root}/run/"));
        let out = Command::new("/bin/sh")
            .args(["-c", &script])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(self.path("data/redis.conf")).unwrap()
    }
}

/// `binary` (redis-server or redis-sentinel) on `conf`, logging next to it, killed at the end.
fn spawn(binary: &str, conf: &Path) -> Proc {
    spawn_on(binary, binary, None, conf, &conf.with_extension("log"))
        .unwrap_or_else(|e| panic!("{e}: run `make deps`"))
}

/// The variables the pod spec sets in `mode: sentinel`, for a pod listening on `port` and
/// Sentinels behind `sentinel_port`.
fn sentinel_env(
    port: u16,
    sentinel_port: u16,
    default_primary: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("ANNOUNCE_HOST", "127.0.0.1".into()),
        ("SENTINEL_HOST", "127.0.0.1".into()),
        ("SENTINEL_PORT", sentinel_port.to_string()),
        ("MASTER_NAME", "prod-redis".into()),
        ("DEFAULT_PRIMARY", default_primary.into()),
        ("REDIS_PORT", port.to_string()),
    ]
}

#[test]
fn in_sentinel_mode_a_fresh_pod_replicates_the_primary_the_sentinels_name() {
    for binary in ["redis-server", "redis-sentinel"] {
        require(binary);
    }
    let primary = Pod::new("init-sentinel-primary");
    let (primary_port, sentinel_port, port) = (free_port(), free_port(), free_port());
    let quoted = quote(PASSWORD);
    std::fs::write(
        primary.path("data/redis.conf"),
        format!(
            "port {primary_port}\nbind 127.0.0.1\ndir {}\nrequirepass {quoted}\nrepl-diskless-sync-delay 0\n",
            primary.path("data").display()
        ),
    )
    .unwrap();
    let _primary = spawn("redis-server", &primary.path("data/redis.conf"));
    wait_for("the primary", Duration::from_secs(20), || {
        (redis_cli(primary_port, PASSWORD, &["PING"]) == "PONG").then_some(())
    });
    let rc = prod_redis();
    std::fs::write(
        primary.path("sentinel.conf"),
        format!(
            "{}port {sentinel_port}\nsentinel announce-ip 127.0.0.1\n{}",
            sentinel_conf_with_monitor(&rc, "127.0.0.1", primary_port),
            sentinel_auth_conf(&rc, PASSWORD)
        ),
    )
    .unwrap();
    // The Sentinel container's command, exactly as the Sentinel StatefulSet has it.
    let mut in_sentinel_mode = rc.clone();
    in_sentinel_mode.spec.mode = redis_cluster_api::ClusterMode::Sentinel;
    in_sentinel_mode.metadata.uid = Some("uid-sentinel".into());
    let sentinel_sts = build(&in_sentinel_mode, &Settings::default())
        .sentinel
        .expect("sentinel objects")
        .statefulset;
    let command: Vec<String> = sentinel_sts
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .iter()
        .find(|c| c.name == "sentinel")
        .and_then(|c| c.command.clone())
        .expect("the sentinel container's command")
        .into_iter()
        .map(|a| {
            a.replace(
                "/data/sentinel.conf",
                &primary.path("sentinel.conf").display().to_string(),
            )
        })
        .collect();
    let _sentinel = Proc::spawn(
        "redis-sentinel",
        None,
        &command,
        &primary.path("sentinel.log"),
    )
    .unwrap();
    wait_for("the Sentinel", Duration::from_secs(20), || {
        redis_cli(
            sentinel_port,
            PASSWORD,
            &["SENTINEL", "get-master-addr-by-name", "prod-redis"],
        )
        .contains(&primary_port.to_string())
        .then_some(())
    });
    // The Sentinel rewrote its file at start (its id, the epoch): `auth-pass` in clear, so the
    // file is the Redis user's alone.
    let conf = primary.path("sentinel.conf");
    assert!(
        std::fs::read_to_string(&conf).unwrap().contains("myid"),
        "rewritten"
    );
    let mode = std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "sentinel.conf has mode {mode:o}");

    // A fresh pod whose recorded primary and pod 0 are both elsewhere: the Sentinels win.
    let pod = Pod::new("init-sentinel-replica");
    std::fs::write(pod.path("conf/primary"), "10.9.9.9\n").unwrap();
    std::fs::write(
        pod.path("conf/redis.conf"),
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\ninclude {}\n",
            pod.path("data").display(),
            pod.path("run/auth.conf").display()
        ),
    )
    .unwrap();
    let main = pod.init(&sentinel_env(port, sentinel_port, "10.8.8.8"));
    assert_eq!(
        main,
        format!(
            "include {}\nreplica-announce-ip 127.0.0.1\nreplicaof 127.0.0.1 {primary_port}\n",
            pod.path("conf/redis.conf").display()
        )
    );
    let _redis = spawn("redis-server", &pod.path("data/redis.conf"));
    wait_for(
        "the replica's link to the primary",
        Duration::from_secs(20),
        || {
            redis_cli(port, PASSWORD, &["INFO", "replication"])
                .contains("master_link_status:up")
                .then_some(())
        },
    );

    // The primary itself restarting (nothing persisted) stays a primary.
    let again = Pod::new("init-sentinel-itself");
    let main = again.init(&sentinel_env(primary_port, sentinel_port, "10.8.8.8"));
    assert!(!main.contains("replicaof"), "{main}");
    assert_password_in_no_process_arguments();
}

#[test]
fn in_sentinel_mode_without_an_answer_a_pod_follows_the_recorded_primary_or_pod_0() {
    let nobody = free_port();
    let pod = Pod::new("init-sentinel-fallback");
    let include = format!("include {}\n", pod.path("conf/redis.conf").display());
    let announce = "replica-announce-ip 127.0.0.1\n";

    // No Sentinel, nothing recorded: pod 0.
    let main = pod.init(&sentinel_env(6379, nobody, "pod-0.example"));
    assert_eq!(
        main,
        format!("{include}{announce}replicaof pod-0.example 6379\n")
    );

    // Pod 0 itself starts without replicaof.
    std::fs::remove_file(pod.path("data/redis.conf")).unwrap();
    let main = pod.init(&sentinel_env(6379, nobody, "127.0.0.1"));
    assert_eq!(main, format!("{include}{announce}"));

    // The operator recorded another primary: that one, pod 0 or not.
    std::fs::write(pod.path("conf/primary"), "pod-2.example\n").unwrap();
    let main = pod.init(&sentinel_env(6379, nobody, "127.0.0.1"));
    assert_eq!(
        main,
        format!("{include}{announce}replicaof pod-2.example 6379\n")
    );

    // A persisted replicaof is kept as it is, behind the closed gate; nobody is asked.
    std::fs::write(pod.path("data/redis.conf"), "replicaof 10.0.0.9 6379\n").unwrap();
    let main = pod.init(&sentinel_env(6379, nobody, "pod-0.example"));
    assert!(
        main.starts_with(&format!("{include}{announce}masteruser gate-closed-"))
            && main.ends_with("\nreplicaof 10.0.0.9 6379\n"),
        "{main}"
    );
}
