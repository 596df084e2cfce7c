//! What the script tests share: real processes, a password that quoting must survive, and the
//! checks that it never shows up where it must not.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use redis_cluster_api::RedisCluster;

/// Spaces, both quote kinds and a backslash: every quoting mistake breaks it.
pub const PASSWORD: &str = r#"p a"s\s w'rd"#;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails the test with the way to get `binary` when it is missing (never skips).
pub fn require(binary: &str) {
    assert!(
        Command::new(binary).arg("--version").output().is_ok(),
        "{binary} is missing: run `make deps`"
    );
}

/// `redis-cli -p <port> <args>`, the password passed in the environment (never an argument).
pub fn redis_cli(port: u16, password: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .env("REDISCLI_AUTH", password)
        .output()
        .expect("redis-cli is missing: run `make deps`");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Poll `check` every 100 ms until it returns Some, or fail the test after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process killed when the test ends, however it ends.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The prod-redis sample (mode: sentinel).
pub fn prod_redis() -> RedisCluster {
    let text = std::fs::read_to_string(format!(
        "{}/../../config/samples/prod-redis.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_yaml::from_str(&text).unwrap()
}

/// No fragment of [`PASSWORD`] in any process's command line.
pub fn assert_password_in_no_process_arguments() {
    let ps = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let ps = String::from_utf8_lossy(&ps.stdout);
    for fragment in [PASSWORD, "w'rd", r#"a"s\s"#] {
        assert!(!ps.contains(fragment), "password in ps output:\n{ps}");
    }
}
