//! Issue 12, path 6: after a promotion the operator asks the former source whether it still
//! accepts writes, without writing anything (`INFO replication`, `CONFIG GET
//! min-replicas-to-write`): against real redis-servers, a writable primary, a fenced one and a
//! replica.

use redis_operator::probe::former_source;
use redis_test_support::process::require;
use redis_test_support::redis::{RedisOpts, RedisServer};
use redis_topology::FormerSource;

/// Path 6: the operator's write-free probe of a former source, against real Redis.
#[tokio::test]
async fn the_former_source_probe_tells_a_writable_primary_from_a_fenced_one_and_a_replica() {
    require("redis-server");
    let a = RedisServer::start(RedisOpts::default());
    let b = RedisServer::start(RedisOpts::default());
    let probe = |port| async move { former_source("127.0.0.1", port, None, false).await };
    assert!(
        matches!(probe(a.port()).await, FormerSource::Writable(_)),
        "a plain primary"
    );
    a.cli(&["CONFIG", "SET", "min-replicas-max-lag", "10"]);
    a.cli(&["CONFIG", "SET", "min-replicas-to-write", "1000000"]);
    assert_eq!(
        probe(a.port()).await,
        FormerSource::NotWritable(
            "it is a primary that refuses writes: min-replicas-to-write 1000000, 0 replicas in sync"
                .into()
        )
    );
    assert!(
        a.cli(&["SET", "k", "v"]).contains("NOREPLICAS"),
        "the probe was right"
    );
    b.cli(&["REPLICAOF", "127.0.0.1", &a.port().to_string()]);
    assert_eq!(
        probe(b.port()).await,
        FormerSource::NotWritable(format!("it is a replica of 127.0.0.1:{}", a.port()))
    );
    // Nothing was written by the probes.
    assert_eq!(a.cli(&["DBSIZE"]).trim(), "0");
}
