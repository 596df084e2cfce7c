//! Writes: bulk load, writes acknowledged by replicas (`WAIT`), the check that acknowledged keys
//! survived, and a sampler that keeps trying to write to one pod to prove it takes none.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use redis_test_support::resp::{Conn, Reply};

use super::{Drill, try_ip};

/// `SET <prefix>:<i>` with an `size`-byte value for i in 0..n, pipelined 500 at a time; any
/// refused write is an error.
pub fn pipeline_sets(c: &mut Conn, prefix: &str, n: usize, size: usize) -> Result<(), String> {
    let value = "x".repeat(size);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        for i in chunk {
            c.send(&["SET", &format!("{prefix}:{i}"), &value])
                .map_err(|e| e.to_string())?;
        }
        for _ in chunk {
            let r = c.read().map_err(|e| e.to_string())?;
            if r.is_error() {
                return Err(format!("a write was refused: {}", r.text()));
            }
        }
    }
    Ok(())
}

/// Write `n` keys through `addr`, each acknowledged with `WAIT acks`: the keys whose WAIT
/// reached `acks` replicas.
pub fn acked_writes(
    addr: &str,
    password: &str,
    prefix: &str,
    n: usize,
    acks: usize,
) -> Result<Vec<String>, String> {
    let mut c = Conn::connect(addr, Some(password), Duration::from_secs(2))
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut acked = Vec::new();
    for i in 0..n {
        let key = format!("{prefix}:{i}");
        if c.cmd(&["SET", &key, "v"]).is_ok_and(|r| !r.is_error())
            && let Ok(Reply::Int(got)) = c.cmd(&["WAIT", &acks.to_string(), "2000"])
            && got as usize >= acks
        {
            acked.push(key);
        }
    }
    if acked.len() < n {
        return Err(format!(
            "only {} of {n} writes were acknowledged by {acks} replicas",
            acked.len()
        ));
    }
    Ok(acked)
}

impl Drill<'_> {
    /// [`pipeline_sets`] on a pod.
    pub fn write_keys(&self, pod: &str, prefix: &str, n: usize, size: usize) -> Result<(), String> {
        pipeline_sets(&mut self.conn(pod)?, prefix, n, size).map_err(|e| format!("{pod}: {e}"))
    }

    /// Every key of `keys` exists on `pod`; the error says how many are missing, with examples.
    pub fn keys_present(&self, pod: &str, keys: &[String]) -> Result<(), String> {
        let mut c = self.conn(pod)?;
        let mut missing = Vec::new();
        for k in keys {
            match c.cmd(&["EXISTS", k]) {
                Ok(Reply::Int(1)) => {}
                _ => missing.push(k.clone()),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} missing, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(3)]
            ))
        }
    }
}

/// Tries a write on one pod every 50 ms and records every one that was accepted.
pub struct NoWriteSampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(u64, Vec<String>)>>,
}

impl NoWriteSampler {
    pub fn start(pod: &str, password: &str) -> NoWriteSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (password, pod) = (password.to_string(), pod.to_string());
        let handle = std::thread::spawn(move || {
            let mut attempts = 0;
            let mut accepted = Vec::new();
            let mut conn: Option<Conn> = None;
            while !s.load(Ordering::Relaxed) {
                // Looked up at every connection: a recreated pod has a new address.
                if conn.is_none()
                    && let Some(ip) = try_ip(&pod)
                {
                    let addr = format!("{ip}:6379");
                    conn = Conn::connect(&addr, Some(&password), Duration::from_millis(200)).ok();
                }
                if let Some(c) = conn.as_mut() {
                    attempts += 1;
                    match c.cmd(&["SET", "drill:fence-probe", &attempts.to_string()]) {
                        Ok(r) if !r.is_error() => {
                            accepted.push(format!("{pod} accepted write #{attempts}"))
                        }
                        Ok(_) => {}
                        Err(_) => conn = None,
                    }
                } else {
                    attempts += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (attempts, accepted)
        });
        NoWriteSampler {
            stop,
            handle: Some(handle),
        }
    }

    /// Stop sampling: how many writes were attempted, and the ones accepted.
    pub fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

/// A client during a planned switchover: one `SET` at a time (1 ms apart) to the first of
/// `targets` (name, `host:port`, password) that accepts it, recording every acknowledged key
/// with the name of the server that acknowledged it, and the longest time between two
/// acknowledged writes (the write pause clients see).
pub struct SwitchoverWriter {
    stop: Arc<AtomicBool>,
    log: Arc<std::sync::Mutex<SwitchoverLog>>,
    handle: Option<JoinHandle<()>>,
}

/// What a [`SwitchoverWriter`] saw.
#[derive(Default, Clone)]
pub struct SwitchoverLog {
    /// `(key, server)` of every acknowledged write, in order.
    pub acked: Vec<(String, String)>,
    /// The longest gap between two acknowledged writes.
    pub longest_pause: Duration,
    /// Writes refused or failed (each target counted).
    pub refused: u64,
}

impl SwitchoverWriter {
    pub fn start(prefix: &str, targets: Vec<(String, String, String)>) -> SwitchoverWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(std::sync::Mutex::new(SwitchoverLog::default()));
        let (s, l, prefix) = (stop.clone(), log.clone(), prefix.to_string());
        let handle = std::thread::spawn(move || {
            let mut conns: Vec<Option<Conn>> = targets.iter().map(|_| None).collect();
            let mut last = std::time::Instant::now();
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let key = format!("{prefix}:{n}");
                for (i, (name, addr, password)) in targets.iter().enumerate() {
                    if conns[i].is_none() {
                        conns[i] =
                            Conn::connect(addr, Some(password), Duration::from_millis(200)).ok();
                    }
                    let Some(c) = conns[i].as_mut() else { continue };
                    match c.cmd(&["SET", &key, "v"]) {
                        Ok(r) if !r.is_error() => {
                            let mut log = l.lock().expect("writer log");
                            log.acked.push((key.clone(), name.clone()));
                            log.longest_pause = log.longest_pause.max(last.elapsed());
                            last = std::time::Instant::now();
                            n += 1;
                            break;
                        }
                        Ok(_) => l.lock().expect("writer log").refused += 1,
                        Err(_) => conns[i] = None,
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        SwitchoverWriter {
            stop,
            log,
            handle: Some(handle),
        }
    }

    /// [`start`](Self::start), once its first 200 writes were acknowledged.
    fn started(prefix: &str, targets: Vec<(String, String, String)>) -> Result<Self, String> {
        let writer = SwitchoverWriter::start(prefix, targets);
        super::wait(
            "the writer's first 200 writes",
            Duration::from_secs(10),
            || (writer.log().acked.len() >= 200).then_some(()),
        )?;
        Ok(writer)
    }

    /// What it saw so far.
    pub fn log(&self) -> SwitchoverLog {
        self.log.lock().expect("writer log").clone()
    }

    /// Stop writing: what it saw.
    pub fn finish(mut self) -> SwitchoverLog {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.log()
    }
}

impl Drill<'_> {
    /// A [`SwitchoverWriter`] for a switchover from `from` (its primary `primary`) to `to`
    /// (any of its pods), once it has had its first 200 writes acknowledged.
    pub fn start_switchover_writer(
        &self,
        prefix: &str,
        from: &str,
        primary: &str,
        to: &str,
    ) -> Result<SwitchoverWriter, String> {
        let target = |pod: String, cluster: &str| {
            let addr = super::addr(&pod);
            (pod, addr, self.passwords[cluster].clone())
        };
        let mut targets = vec![target(primary.to_string(), from)];
        targets.extend(self.pods(to).into_iter().map(|p| target(p, to)));
        SwitchoverWriter::started(prefix, targets)
    }
}

impl Drill<'_> {
    /// A [`SwitchoverWriter`] on one pod only (`cluster`'s `pod`), once it has had its first
    /// 200 writes acknowledged: every write it records was acknowledged by that pod.
    pub fn start_writer(
        &self,
        prefix: &str,
        cluster: &str,
        pod: &str,
    ) -> Result<SwitchoverWriter, String> {
        let target = (
            pod.to_string(),
            super::addr(pod),
            self.passwords[cluster].clone(),
        );
        SwitchoverWriter::started(prefix, vec![target])
    }
}

impl Drop for SwitchoverWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
