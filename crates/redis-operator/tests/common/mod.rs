//! What the script tests share: a password that quoting must survive, and the check that it
//! never shows up where it must not. Processes, waits and `redis-cli` come from
//! `redis-test-support`.
#![allow(dead_code, unused_imports)] // each test binary uses its own subset

use std::process::Command;

pub use redis_test_support::process::{Proc, ScratchDir, free_port, require};
pub use redis_test_support::redis::{quote, redis_cli, spawn_on};
pub use redis_test_support::wait::{wait_for, wait_until};

use redis_cluster_api::RedisCluster;

/// Spaces, both quote kinds and a backslash: every quoting mistake breaks it.
pub const PASSWORD: &str = r#"p a"s\s w'rd"#;

/// The prod-redis sample (mode: sentinel).
pub fn prod_redis() -> RedisCluster {
    redis_test_support::samples::load("prod-redis.yaml")
}

/// Every process's command line (`ps -eo args`).
pub fn ps() -> String {
    let ps = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&ps.stdout).into_owned()
}

/// No fragment of [`PASSWORD`] in any process's command line.
pub fn assert_password_in_no_process_arguments() {
    let ps = ps();
    for fragment in [PASSWORD, "w'rd", r#"a"s\s"#] {
        assert!(!ps.contains(fragment), "password in ps output:\n{ps}");
    }
}
