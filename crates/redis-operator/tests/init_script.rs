//! The data pods' init script, run for real with /bin/sh against a real redis-server: the
//! password (with spaces, quotes and backslashes) reaches Redis only through files, and a
//! persisted `replicaof` line survives a restart while everything else is regenerated.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis_operator::builders::INIT_SCRIPT;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_cli(port: u16, password: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .env("REDISCLI_AUTH", password)
        .output()
        .expect("redis-cli is missing: run `make deps`");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_init_script_gives_redis_its_password_and_keeps_replicaof() {
    assert!(
        Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok(),
        "redis-server is missing: run `make deps`"
    );
    let root = std::env::temp_dir().join(format!("init-script-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for d in ["data", "run", "auth", "conf"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let password = r#"p a"s\s w'rd"#;
    std::fs::write(root.join("auth/password"), format!("{password}\n")).unwrap();
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
    assert_eq!(
        main,
        format!(
            "include {}/conf/redis.conf\nreplicaof 10.0.0.9 6379\n",
            root.display()
        ),
        "only the template include and the persisted replicaof survive"
    );

    let mut server = Command::new("redis-server")
        .arg(root.join("data/redis.conf"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut role = String::new();
    while Instant::now() < deadline {
        role = redis_cli(port, password, &["ROLE"]);
        if !role.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let wrong = redis_cli(port, "wrong", &["PING"]);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&root);
    assert!(
        role.starts_with("slave"),
        "restarted as a replica of its old upstream: {role:?}"
    );
    assert!(role.contains("10.0.0.9"), "{role:?}");
    assert!(!wrong.contains("PONG"), "a wrong password was accepted");
}
