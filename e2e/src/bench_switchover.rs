//! `make bench-switchover`: a planned switchover's write pause and total duration (issue 14),
//! the operator's next to the raw Redis steps done by hand, measured in one run on the same
//! machine and across the same inter-region link.
//!
//! - operator: the drill's production (region A, the spec's `prod-redis` sample, sentinel mode)
//!   and DR (region B) clusters; each switchover is the documented two steps
//!   (docs/switchover.md): the primary cluster demoted by a spec patch, its
//!   `status.demotionToken` read, the other cluster patched with `promote: true` and that
//!   `promotionToken`, through `kubectl` as a user (or a script) does it; checked like the
//!   drill's step 7 (every acknowledged write on the new primary and on the old side, no full
//!   resync). Alternately production -> DR and DR -> production.
//! - raw: two plain `redis-server`s with the operator's redis.conf, one in region A and one in
//!   region B (addresses outside every podCIDR), the second a replica of the first; the steps
//!   an expert types, over one connection each, with no pause in between: fence the primary
//!   (`CONFIG SET min-replicas-to-write 1000000`), read its offset, poll the replica until it
//!   holds it, `REPLICAOF NO ONE` on the replica, `REPLICAOF` on the old primary and unfence it.
//!   No Kubernetes, no operator, no instance manager.
//!
//! In both, one client writes one key at a time (1 ms apart) to whichever side accepts it; the
//! write pause is its longest gap between two acknowledged writes; the total duration runs from
//! the first step until the old primary streams from the new one.

use std::time::{Duration, Instant};

use redis_test_support::resp::{Conn, Reply};
use serde_json::json;

use crate::bench::{info_at, plain_redis_conf, sample_cluster, start_plain_in};
use crate::drills::replica_mode::{dr_replicates_production, setup, switchover};
use crate::harness::writers::SwitchoverWriter;
use crate::harness::{DR, Drill, Options, PROD, wait};

/// Switchovers per direction.
pub const ROUNDS: usize = 2;

const PROD_LEADER: &str = "prod-redis-leader.production.svc.cluster.local";
const DR_LEADER: &str = "dr-redis-leader.production.svc.cluster.local";

/// One way of switching over, one direction: its rounds.
pub struct Series {
    pub what: String,
    pub pauses: Vec<Duration>,
    pub totals: Vec<Duration>,
    pub full_syncs: u64,
}

pub fn run(o: &Options) -> Result<Vec<Series>, String> {
    let mut d = Drill::prepare(o)?;
    setup(&mut d)?;
    dr_replicates_production(&mut d)?;
    let mut out = operator(&mut d)?;
    out.extend(raw(&mut d)?);
    Ok(out)
}

fn operator(d: &mut Drill) -> Result<Vec<Series>, String> {
    println!(
        "==> operator: production (region A) <-> DR (region B), {ROUNDS} switchovers each way"
    );
    let series = |what: &str| Series {
        what: what.to_string(),
        pauses: Vec::new(),
        totals: Vec::new(),
        full_syncs: 0,
    };
    let mut to_dr = series("operator, production -> DR (kubectl patch, token, kubectl patch)");
    let mut to_prod = series("operator, DR -> production");
    // Production replicates nothing yet, but the setup named DR as its source (enabled: false,
    // docs/switchover.md's preparation, before the pods held data): its first demotion is
    // `enabled: true`, later ones `promote: false`.
    let mut demote_prod = json!({"spec": {"replicaMode": {"enabled": true}}});
    let demote = json!({"spec": {"replicaMode": {"promote": false}}});
    for _ in 0..ROUNDS {
        let (pause, total) = switchover(d, PROD, DR, DR_LEADER, &demote_prod)?;
        to_dr.pauses.push(pause);
        to_dr.totals.push(total);
        demote_prod = demote.clone();
        let (pause, total) = switchover(d, DR, PROD, PROD_LEADER, &demote)?;
        to_prod.pauses.push(pause);
        to_prod.totals.push(total);
    }
    Ok(vec![to_dr, to_prod])
}

/// A plain server's address in region A, and in region B.
const RAW_A: &str = "10.78.250.1";
const RAW_B: &str = "10.79.250.31";

fn cmd(c: &mut Conn, args: &[&str]) -> Result<Reply, String> {
    let r = c.cmd(args).map_err(|e| format!("{args:?}: {e}"))?;
    if r.is_error() {
        return Err(format!("{args:?}: {}", r.text()));
    }
    Ok(r)
}

fn field(c: &mut Conn, f: &str) -> Result<String, String> {
    let info = c.info("replication").map_err(|e| e.to_string())?;
    info.get(f).cloned().ok_or_else(|| format!("no {f}"))
}

fn raw(d: &mut Drill) -> Result<Vec<Series>, String> {
    println!(
        "==> raw: plain redis-servers {RAW_A} (region A) and {RAW_B} (region B), the steps by hand over one connection each"
    );
    let pw = d.passwords[PROD].clone();
    let rc = sample_cluster(d, "prod-redis.yaml")?;
    let base = d.o.dir.join("raw-switchover");
    for (name, netns, ip) in [("raw-a", "kc-ra", RAW_A), ("raw-b", "kc-rb", RAW_B)] {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let conf = dir.join("redis.conf");
        std::fs::write(&conf, plain_redis_conf(&rc, ip, &dir, &pw, true))
            .map_err(|e| e.to_string())?;
        start_plain_in(d, netns, name, "redis-server", ip, &conf)?;
        wait(
            &format!("{name} to answer"),
            Duration::from_secs(10),
            || info_at(&format!("{ip}:6379"), &pw, "server"),
        )?;
    }
    let connect = |ip: &str| {
        Conn::connect(&format!("{ip}:6379"), Some(&pw), Duration::from_secs(2))
            .map_err(|e| format!("{ip}: {e}"))
    };
    let (mut a, mut b) = (connect(RAW_A)?, connect(RAW_B)?);
    cmd(&mut b, &["REPLICAOF", RAW_A, "6379"])?;
    let linked = |c: &mut Conn| field(c, "master_link_status").is_ok_and(|s| s == "up");
    wait("raw-b to link", Duration::from_secs(30), || {
        linked(&mut b).then_some(())
    })?;
    let series = |what: &str| Series {
        what: what.to_string(),
        pauses: Vec::new(),
        totals: Vec::new(),
        full_syncs: 0,
    };
    let mut a_to_b = series("raw steps, region A -> region B");
    let mut b_to_a = series("raw steps, region B -> region A");
    let full = |a: &mut Conn, b: &mut Conn| -> Result<u64, String> {
        let n = |c: &mut Conn| {
            c.info("stats")
                .map_err(|e| e.to_string())
                .map(|i| i.get("sync_full").and_then(|v| v.parse::<u64>().ok()))
        };
        Ok(n(a)?.unwrap_or(0) + n(b)?.unwrap_or(0))
    };
    for round in 0..ROUNDS * 2 {
        let (from, to, from_ip, to_ip, s) = if round % 2 == 0 {
            (&mut a, &mut b, RAW_A, RAW_B, &mut a_to_b)
        } else {
            (&mut b, &mut a, RAW_B, RAW_A, &mut b_to_a)
        };
        let full_before = full(from, to)?;
        let writer = SwitchoverWriter::start(
            &format!("raw:switchover:{round}"),
            vec![
                (from_ip.into(), format!("{from_ip}:6379"), pw.clone()),
                (to_ip.into(), format!("{to_ip}:6379"), pw.clone()),
            ],
        );
        wait(
            "the writer's first 200 writes",
            Duration::from_secs(10),
            || (writer.log().acked.len() >= 200).then_some(()),
        )?;
        let t0 = Instant::now();
        cmd(from, &["CONFIG", "SET", "min-replicas-to-write", "1000000"])?;
        let target: i64 = field(from, "master_repl_offset")?
            .parse()
            .map_err(|e| format!("{e}"))?;
        loop {
            let at: i64 = field(to, "master_repl_offset")?.parse().unwrap_or(0);
            if at >= target {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                return Err("the replica did not catch up".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        cmd(to, &["REPLICAOF", "NO", "ONE"])?;
        cmd(from, &["REPLICAOF", to_ip, "6379"])?;
        cmd(from, &["CONFIG", "SET", "min-replicas-to-write", "0"])?;
        while !linked(from) {
            if t0.elapsed() > Duration::from_secs(30) {
                return Err("the old primary did not link".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let total = t0.elapsed();
        std::thread::sleep(Duration::from_millis(300));
        let log = writer.finish();
        s.pauses.push(log.longest_pause);
        s.totals.push(total);
        s.full_syncs += full(from, to)? - full_before;
        println!(
            "    raw {from_ip} -> {to_ip}: write pause {:.1} ms, total {:.1} ms",
            log.longest_pause.as_secs_f64() * 1000.0,
            total.as_secs_f64() * 1000.0
        );
    }
    Ok(vec![a_to_b, b_to_a])
}

/// Median, min and max, in milliseconds.
pub fn summary(times: &[Duration]) -> String {
    let mut v: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.as_slice() {
        [] => "-".into(),
        _ => format!(
            "{:.0} ms ({:.0}-{:.0})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        ),
    }
}

/// The table `--bench-switchover` prints.
pub fn table(series: &[Series]) -> String {
    let mut out = format!(
        "{:<66} {:>20}  {:>20}  {}\n",
        "switchover", "write pause", "total", "full syncs"
    );
    for s in series {
        out.push_str(&format!(
            "{:<66} {:>20}  {:>20}  {}\n",
            s.what,
            summary(&s.pauses),
            summary(&s.totals),
            s.full_syncs
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_the_median_and_the_range_in_ms() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        assert_eq!(summary(&[]), "-");
        assert_eq!(summary(&ms(&[850, 12, 400])), "400 ms (12-850)");
    }
}
