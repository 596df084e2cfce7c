//! The Sentinels' init script, run for real with /bin/sh, and real `redis-sentinel` processes on
//! what it writes, against real redis-servers protected by a password with spaces, quotes and
//! backslashes: the Sentinel authenticates to Redis and to its peers, the password is in no
//! process's arguments, and a restarted Sentinel monitors the primary its peers report rather
//! than the one it would otherwise start from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use redis_cluster_api::{RedisCluster, SentinelSpec};
mod common;

use common::*;
use redis_operator::config::{
    sentinel_auth_conf, sentinel_conf, sentinel_monitor_line, sentinel_quorum,
};
use redis_operator::scripts::SENTINEL_INIT_SCRIPT;
use redis_test_support::redis::{RedisOpts, RedisServer, fields};

/// A scratch directory holding the password file, removed when the test ends.
fn scratch(test: &str) -> ScratchDir {
    let dir = ScratchDir::new(test);
    std::fs::write(dir.path("password"), format!("{PASSWORD}\n")).unwrap();
    dir
}

/// A password-protected redis-server on `port`, optionally a replica of `upstream`. The password
/// comes from its config file (quoted as the scripts quote it), like in the pods.
fn redis(port: u16, upstream: Option<u16>) -> RedisServer {
    let mut conf = vec![
        format!("masterauth {}", quote(PASSWORD)),
        "replica-announce-ip 127.0.0.1".into(),
    ];
    if let Some(up) = upstream {
        conf.push(format!("replicaof 127.0.0.1 {up}"));
    }
    RedisServer::start(RedisOpts {
        port,
        password: Some(PASSWORD.into()),
        conf,
        ..Default::default()
    })
}

fn cluster() -> RedisCluster {
    let mut rc = prod_redis();
    rc.spec.sentinel = Some(SentinelSpec {
        replicas: 3,
        down_after_milliseconds: 3000,
        failover_timeout_milliseconds: 20000,
    });
    rc
}

/// Runs SENTINEL_INIT_SCRIPT for a Sentinel listening on `port` (the template is the operator's
/// `sentinel_conf` with only the port changed) and returns the path of the config it wrote.
fn run_script(
    scratch: &ScratchDir,
    rc: &RedisCluster,
    port: u16,
    peers: &[u16],
    recorded_primary: Option<u16>,
) -> PathBuf {
    let dir = scratch.path(&format!("sentinel-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("template.conf"),
        sentinel_conf(rc).replace("port 26379\n", &format!("port {port}\n")),
    )
    .unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", SENTINEL_INIT_SCRIPT])
        .env("SENTINEL_CONF", dir.join("sentinel.conf"))
        .env("SENTINEL_TEMPLATE", dir.join("template.conf"))
        .env("PRIMARY_FILE", dir.join("primary"))
        .env("PASSWORD_FILE", scratch.path("password"))
        .env("MASTER_NAME", "prod-redis")
        .env(
            "QUORUM",
            sentinel_quorum(rc.spec.sentinel_settings().replicas).to_string(),
        )
        .env("ANNOUNCE_HOST", "127.0.0.1")
        .env(
            "SENTINEL_PEERS",
            peers
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
        // Pod 0 in the pods; an address nothing listens on here, so the test sees which of
        // the three sources was used.
        .env("DEFAULT_PRIMARY", "127.0.0.2");
    if let Some(p) = recorded_primary {
        std::fs::write(dir.join("primary"), "127.0.0.1").unwrap();
        cmd.env("REDIS_PORT", p.to_string());
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("sentinel.conf")
}

fn sentinel(conf: &Path, port: u16) -> Proc {
    let log = conf.with_extension("log");
    let sentinel = spawn_on("redis-sentinel", "redis-sentinel", None, conf, &log).unwrap();
    wait_for(
        &format!("sentinel on {port}"),
        Duration::from_secs(10),
        || (redis_cli(port, PASSWORD, &["PING"]) == "PONG").then_some(()),
    );
    sentinel
}

/// `SENTINEL MASTER prod-redis` as a map.
fn sentinel_master(port: u16) -> BTreeMap<String, String> {
    fields(&redis_cli(
        port,
        PASSWORD,
        &["SENTINEL", "MASTER", "prod-redis"],
    ))
}

#[test]
fn a_sentinel_from_the_script_authenticates_and_counts_the_replica() {
    require("redis-server");
    require("redis-sentinel");
    let scratch = scratch("sentinel-script");
    let rc = cluster();
    let (primary_port, replica_port, sentinel_port) = (free_port(), free_port(), free_port());
    let _primary = redis(primary_port, None);
    let _replica = redis(replica_port, Some(primary_port));

    // No peer answers (nothing listens there): the operator's recorded primary is used.
    let conf = run_script(
        &scratch,
        &rc,
        sentinel_port,
        &[free_port()],
        Some(primary_port),
    );
    let written = std::fs::read_to_string(&conf).unwrap();
    let expected = format!(
        "{}sentinel announce-ip 127.0.0.1\n{}",
        sentinel_conf(&rc)
            .replace("port 26379\n", &format!("port {sentinel_port}\n"))
            .replace(
                redis_operator::config::SENTINEL_MONITOR_PLACEHOLDER,
                &sentinel_monitor_line(&rc, "127.0.0.1", primary_port)
            ),
        sentinel_auth_conf(&rc, PASSWORD)
    );
    assert_eq!(
        written, expected,
        "the script and the documented composition agree"
    );

    let _sentinel = sentinel(&conf, sentinel_port);
    let master = wait_for(
        "the Sentinel to see the primary and its replica",
        Duration::from_secs(20),
        || {
            let m = sentinel_master(sentinel_port);
            (m.get("num-slaves").map(String::as_str) == Some("1")
                && m.get("role-reported").map(String::as_str) == Some("master"))
            .then_some(m)
        },
    );
    assert_eq!(master["ip"], "127.0.0.1");
    assert_eq!(master["port"], primary_port.to_string());
    assert_eq!(master["flags"], "master", "not s_down/o_down: {master:?}");
    assert_eq!(master["quorum"], "2");
    assert_eq!(master["down-after-milliseconds"], "3000");
    assert_eq!(master["failover-timeout"], "20000");
    assert_eq!(master["parallel-syncs"], "1");
    // Authenticated to the replica too: its link is up and it answers INFO (NOAUTH replies
    // would leave it `disconnected` or without a master link status).
    let replicas = wait_for(
        "the Sentinel's link to the replica",
        Duration::from_secs(20),
        || {
            let view = redis_cli(
                sentinel_port,
                PASSWORD,
                &["SENTINEL", "REPLICAS", "prod-redis"],
            );
            let lines: Vec<&str> = view.lines().collect();
            let value = |key: &str| {
                let i = lines.iter().position(|l| *l == key)?;
                lines.get(i + 1).copied()
            };
            (value("flags") == Some("slave") && value("master-link-status") == Some("ok"))
                .then(|| view.clone())
        },
    );
    assert!(
        replicas.contains(&replica_port.to_string()),
        "replica listed: {replicas}"
    );
    // The Sentinel itself requires the password.
    assert!(!redis_cli(sentinel_port, "wrong", &["PING"]).contains("PONG"));
    assert!(ps().contains("redis-sentinel"), "ps shows the Sentinels");
    assert_password_in_no_process_arguments();
}

#[test]
fn a_restarted_sentinel_monitors_the_primary_its_peers_report() {
    require("redis-server");
    require("redis-sentinel");
    let scratch = scratch("sentinel-peers");
    let rc = cluster();
    let (old_port, elected_port) = (free_port(), free_port());
    let _old = redis(old_port, None);
    let _elected = redis(elected_port, None);

    // A peer that has followed a failover to `elected`.
    let peer_port = free_port();
    let peer_conf = run_script(&scratch, &rc, peer_port, &[], Some(elected_port));
    let _peer = sentinel(&peer_conf, peer_port);

    // The new Sentinel's recorded primary is stale (`old`), its first peer is down, the second
    // answers: it must join the peer's decision.
    let new_port = free_port();
    let conf = run_script(
        &scratch,
        &rc,
        new_port,
        &[free_port(), peer_port],
        Some(old_port),
    );
    let written = std::fs::read_to_string(&conf).unwrap();
    assert!(
        written.contains(&sentinel_monitor_line(&rc, "127.0.0.1", elected_port)),
        "monitors the peers' primary:\n{written}"
    );
    let _new = sentinel(&conf, new_port);
    let master = wait_for(
        "the Sentinels to find each other",
        Duration::from_secs(20),
        || {
            let m = sentinel_master(new_port);
            (m.get("num-other-sentinels").map(String::as_str) == Some("1")).then_some(m)
        },
    );
    assert_eq!(master["port"], elected_port.to_string());
    assert_eq!(master["flags"], "master", "{master:?}");
    // The peers authenticate to each other with sentinel-pass: once linked, the new Sentinel
    // gets PONGs from its peer (they would be NOAUTH errors otherwise, which do not count).
    let field = |view: &str, key: &str| -> Option<u64> {
        let lines: Vec<&str> = view.lines().collect();
        let i = lines.iter().position(|l| *l == key)?;
        lines.get(i + 1)?.parse().ok()
    };
    wait_for("the link to the peer", Duration::from_secs(10), || {
        let view = redis_cli(new_port, PASSWORD, &["SENTINEL", "SENTINELS", "prod-redis"]);
        (view.contains(&peer_port.to_string()) && !view.contains("disconnected")).then_some(())
    });
    std::thread::sleep(Duration::from_millis(2500));
    let peers = redis_cli(new_port, PASSWORD, &["SENTINEL", "SENTINELS", "prod-redis"]);
    assert!(!peers.contains("s_down"), "{peers}");
    let last_ok = field(&peers, "last-ok-ping-reply").expect("peer's last-ok-ping-reply");
    assert!(last_ok < 2000, "the peer does not answer PINGs:\n{peers}");
    assert!(ps().contains("redis-sentinel"), "ps shows the Sentinels");
    assert_password_in_no_process_arguments();
}
