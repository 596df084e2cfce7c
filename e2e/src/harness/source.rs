//! An external production this operator does not manage: plain `redis-server`s (`src-<i>`) and
//! three `redis-sentinel`s in region A, behind one stable endpoint: a virtual IP the current
//! primary's redis-server listens on, moved with `CONFIG SET bind` after a failover (as
//! keepalived or a LoadBalancer would).

use std::path::PathBuf;
use std::time::Duration;

use redis_test_support::netns::in_ns;
use redis_test_support::redis::spawn_on;
use redis_test_support::resp::Conn;

use super::observe::{keyspace_digest, num};
use super::sentinel as sentinels;
use super::{DR, Drill, wait};

/// The stable endpoint of the source in region A. The source's addresses are in region A's
/// range but outside every node's podCIDR, so the DR region routes to them over the
/// inter-region link like to production's pods.
pub const SOURCE_VIP: &str = "10.78.250.100";

/// Region A's network namespace, where the source's processes run (outside Kubernetes).
pub(crate) const SOURCE_NETNS: &str = "kc-ra";

/// The source Sentinels' `down-after-milliseconds`. It must stay well above Sentinel's own
/// one-second cadence: a Sentinel that switches to a new master resets its link and counts the
/// new master down from that instant, but reconnects at most once a second (the throttle carried
/// over from its attempts to reach the dead old master) and only then sends its first PING. With
/// 1000 ms the new master is regularly "down" before it has even been asked; the other
/// Sentinels' fresh replies about the old master then make it ODOWN on the spot, and a second
/// failover starts at once and promotes any healthy replica, demoting the master just elected
/// (the honest exception's src-1 refused its burst with READONLY that way).
pub const SOURCE_DOWN_AFTER_MS: u64 = 2000;

/// The address of source server `i` (`src-<i>`).
pub fn src_ip(i: u32) -> String {
    format!("10.78.250.{}", i + 1)
}

/// The source: where its servers and Sentinels keep their files, and its password.
pub struct Source {
    pub dir: PathBuf,
    pub password: String,
}

impl Source {
    /// An empty source region under the drill's directory, its endpoint address assigned.
    pub fn create(d: &Drill, password: &str) -> Result<Source, String> {
        let dir = d.o.dir.join("source");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let addresses = (0..3).map(src_ip).chain([SOURCE_VIP.to_string()]);
        for a in addresses {
            in_ns(
                SOURCE_NETNS,
                &["ip", "addr", "add", &format!("{a}/32"), "dev", "lo"],
            )?;
        }
        Ok(Source {
            dir,
            password: password.to_string(),
        })
    }

    /// Starts source server `i` (optionally as a replica of another, optionally on the
    /// endpoint) and waits until it answers.
    pub fn start(
        &self,
        d: &mut Drill,
        i: u32,
        replica_of: Option<u32>,
        vip: bool,
    ) -> Result<(), String> {
        let ip = src_ip(i);
        let bind = if vip {
            format!("{ip} {SOURCE_VIP}")
        } else {
            ip.clone()
        };
        let data = self.dir.join(format!("src-{i}"));
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let password = &self.password;
        let mut conf = format!(
            "bind {bind}\nbind-source-addr {ip}\nport 6379\ndir {}\nappendonly yes\nrequirepass \"{password}\"\nmasterauth \"{password}\"\nrepl-diskless-sync yes\nrepl-diskless-sync-delay 0\nenable-debug-command yes\n",
            data.display()
        );
        if let Some(p) = replica_of {
            conf.push_str(&format!("replicaof {} 6379\n", src_ip(p)));
        }
        // Keep the replicaof line Sentinel may rewrite: write only on first start.
        let path = data.join("redis.conf");
        if !path.exists() {
            std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        } else {
            let old = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            let updated: String = old
                .lines()
                .map(|l| {
                    if l.starts_with("bind ") {
                        format!("bind {bind}")
                    } else {
                        l.to_string()
                    }
                })
                .map(|l| l + "\n")
                .collect();
            std::fs::write(&path, updated).map_err(|e| e.to_string())?;
        }
        let log = data.join("redis.log");
        let p = spawn_on(
            "redis-server",
            &format!("src-{i}"),
            Some(SOURCE_NETNS),
            &path,
            &log,
        )?;
        d.procs.insert(format!("src-{i}"), p);
        wait(&format!("src-{i} up"), Duration::from_secs(10), || {
            self.conn(i).ok()
        })?;
        Ok(())
    }

    /// Three Sentinels (quorum 2, down-after [`SOURCE_DOWN_AFTER_MS`], failover timeout 5 s)
    /// monitoring src-0, each on a source address; waits until they agree on src-0.
    pub fn start_sentinels(&self, d: &mut Drill) -> Result<(), String> {
        for i in 0..3u32 {
            let ip = src_ip(i);
            let conf = format!(
                "bind {ip}\nport 26379\nsentinel announce-ip {ip}\ndir {dir}\nsentinel monitor source {primary} 6379 2\nsentinel auth-pass source \"{password}\"\nsentinel down-after-milliseconds source {SOURCE_DOWN_AFTER_MS}\nsentinel failover-timeout source 5000\nsentinel parallel-syncs source 1\n",
                dir = self.dir.display(),
                primary = src_ip(0),
                password = self.password,
            );
            let path = self.dir.join(format!("sentinel-{i}.conf"));
            std::fs::write(&path, conf).map_err(|e| e.to_string())?;
            let log = self.dir.join(format!("sentinel-{i}.log"));
            let p = spawn_on(
                "redis-sentinel",
                &format!("sentinel-{i}"),
                Some(SOURCE_NETNS),
                &path,
                &log,
            )?;
            d.procs.insert(format!("sentinel-{i}"), p);
        }
        wait(
            "the sentinels to agree on the primary",
            Duration::from_secs(15),
            || {
                (0..3)
                    .all(|i| sentinel_master(i).as_deref() == Some(src_ip(0).as_str()))
                    .then_some(())
            },
        )?;
        Ok(())
    }

    /// A connection to source server `i`.
    pub fn conn(&self, i: u32) -> Result<Conn, String> {
        Conn::connect(
            &format!("{}:6379", src_ip(i)),
            Some(&self.password),
            Duration::from_secs(2),
        )
        .map_err(|e| format!("src-{i}: {e}"))
    }

    /// `INFO replication` of source server `i`.
    pub fn replication(&self, i: u32) -> Option<std::collections::BTreeMap<String, String>> {
        self.conn(i).ok()?.info("replication").ok()
    }

    /// A counter from source server `i`'s `INFO stats` (0 when absent).
    pub fn stat(&self, i: u32, field: &str) -> Result<u64, String> {
        let info = self.conn(i)?.info("stats").map_err(|e| e.to_string())?;
        Ok(num(&info, field))
    }

    /// Source server `i`'s current `master_repl_offset`.
    pub fn offset(&self, i: u32) -> Option<String> {
        self.replication(i)?.get("master_repl_offset").cloned()
    }

    /// Source server `i` is a replica with its link up.
    pub fn linked(&self, i: u32) -> bool {
        self.replication(i)
            .is_some_and(|r| r.get("master_link_status").is_some_and(|s| s == "up"))
    }

    /// Source server `i`'s keyspace digest.
    pub fn digest(&self, i: u32) -> Result<String, String> {
        keyspace_digest(&mut self.conn(i)?, &format!("src-{i}"))
    }

    /// Move the endpoint to source server `i` (it listens on the VIP too).
    pub fn move_endpoint(&self, i: u32) -> Result<(), String> {
        let bind = format!("{} {SOURCE_VIP}", src_ip(i));
        let r = self
            .conn(i)?
            .cmd(&["CONFIG", "SET", "bind", &bind])
            .map_err(|e| e.to_string())?;
        if r.is_error() {
            return Err(format!("moving the endpoint: {}", r.text()));
        }
        Ok(())
    }

    /// Every DR pod linked through the endpoint and at source server `i`'s current offset.
    pub fn dr_caught_up_with(&self, d: &Drill, i: u32) -> Option<()> {
        let target = self.offset(i)?;
        d.pods(DR)
            .iter()
            .all(|p| {
                d.linked_to(p, SOURCE_VIP)
                    && d.info(p, "replication")
                        .is_ok_and(|i| i.get("slave_repl_offset") == Some(&target))
            })
            .then_some(())
    }

    /// The DR pods' keyspaces equal source server `i`'s.
    pub fn dr_digests_equal(&self, d: &Drill, i: u32) -> Result<(), String> {
        let source = self.digest(i)?;
        let dr: Vec<String> = d
            .pods(DR)
            .iter()
            .map(|p| d.digest(p))
            .collect::<Result<_, _>>()?;
        if dr.iter().all(|x| *x == source) {
            Ok(())
        } else {
            Err(format!("{source} vs {dr:?}"))
        }
    }
}

/// Every source Sentinel monitors src-`i` as a healthy master with no failover in progress
/// (`SENTINEL MASTER`: its address, flags exactly `master`). A failover's leader keeps the old
/// master until its failover ends (here up to the 5 s failover timeout: it cannot reconfigure the
/// DR pods, whose REPLICAOF is renamed), while the others have switched already.
pub fn sentinels_agree_on(i: u32) -> bool {
    (0..3).all(|s| {
        sentinels::sentinel_view(&format!("{}:26379", src_ip(s)), "", "source").is_some_and(|v| {
            v.get("ip") == Some(&src_ip(i)) && v.get("flags").map(String::as_str) == Some("master")
        })
    })
}

/// The primary source Sentinel `i` names (the source's Sentinels have no password).
pub fn sentinel_master(i: u32) -> Option<String> {
    sentinels::sentinel_master(&format!("{}:26379", src_ip(i)), "", "source")
}

/// The replicas source Sentinel `i` lists, as (ip, healthy: not `s_down`).
pub fn sentinel_replicas(i: u32) -> Option<Vec<(String, bool)>> {
    let list = sentinels::sentinel_replicas(&format!("{}:26379", src_ip(i)), "", "source")?;
    Some(
        list.into_iter()
            .map(|r| {
                let healthy = !r.get("flags").is_some_and(|f| f.contains("s_down"));
                (r.get("ip").cloned().unwrap_or_default(), healthy)
            })
            .collect(),
    )
}
