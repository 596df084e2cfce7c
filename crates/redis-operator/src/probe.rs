//! The two requests the operator itself sends to Redis servers: whether the former source of a
//! promoted cluster still accepts writes, and asking a cluster's Sentinels to fail over a
//! primary that came back without its data. A minimal RESP2 client over one TCP connection,
//! every step within a deadline; no pooling (a request every few seconds at most).
//!
//! Whether a primary accepts writes is read without writing anything: `INFO replication` says
//! the role and, when `min-replicas-to-write` is in force, how many good replicas it has
//! (`min_slaves_good_slaves`, present only then); `CONFIG GET min-replicas-to-write` gives the
//! number it needs. A master without that line takes writes; one with fewer good replicas than
//! it needs (the operator's fence, 1000000, is such a number) refuses them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_topology::{FailoverFrom, FormerSource};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one probe may take in all.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

impl Reply {
    fn text(&self) -> Option<&str> {
        match self {
            Reply::Status(s) | Reply::Bulk(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// One connection to a Redis (or Sentinel).
pub struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    pub async fn connect(host: &str, port: u16) -> Result<Conn, String> {
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        Ok(Conn {
            stream: BufReader::new(stream),
        })
    }

    /// Send `args` as one command and read its reply.
    pub async fn call(&mut self, args: &[&str]) -> Result<Reply, String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend(format!("${}\r\n", a.len()).as_bytes());
            out.extend(a.as_bytes());
            out.extend(b"\r\n");
        }
        let io = |e: std::io::Error| format!("connection lost: {e}");
        self.stream.get_mut().write_all(&out).await.map_err(io)?;
        read_reply(&mut self.stream).await
    }

    /// `AUTH <password>` when there is one; an error reply is an error.
    pub async fn auth(&mut self, password: Option<&str>) -> Result<(), String> {
        if let Some(pw) = password {
            match self.call(&["AUTH", pw]).await? {
                Reply::Error(e) => return Err(format!("authentication refused: {e}")),
                _ => return Ok(()),
            }
        }
        Ok(())
    }
}

fn read_reply<'a>(
    r: &'a mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn Future<Output = Result<Reply, String>> + Send + 'a>> {
    Box::pin(async move {
        let mut line = String::new();
        let n = r
            .read_line(&mut line)
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        if n == 0 {
            return Err("connection closed".into());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (kind, rest) = line.split_at(line.len().min(1));
        let number = || {
            rest.parse::<i64>()
                .map_err(|_| format!("not a RESP reply: {line:?}"))
        };
        match kind {
            "+" => Ok(Reply::Status(rest.into())),
            "-" => Ok(Reply::Error(rest.into())),
            ":" => Ok(Reply::Integer(number()?)),
            "$" => {
                let len = number()?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                if len > 1 << 20 {
                    return Err("reply too large".into());
                }
                let mut buf = vec![0u8; len as usize + 2];
                tokio::io::AsyncReadExt::read_exact(r, &mut buf)
                    .await
                    .map_err(|e| format!("connection lost: {e}"))?;
                buf.truncate(len as usize);
                Ok(Reply::Bulk(Some(String::from_utf8_lossy(&buf).into())))
            }
            "*" => {
                let len = number()?;
                let mut items = Vec::new();
                for _ in 0..len.clamp(0, 1024) {
                    items.push(read_reply(r).await?);
                }
                Ok(Reply::Array(items))
            }
            _ => Err(format!("not a RESP reply: {line:?}")),
        }
    })
}

/// The value of `field` in an `INFO` section.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

/// What `INFO replication` (and `min-replicas-to-write`, when it had to be read) say about
/// whether this Redis accepts writes. Pure, for the table test.
pub fn judge(info: &str, min_replicas: Option<Result<u64, String>>) -> FormerSource {
    match info_field(info, "role") {
        Some("slave") => {
            let upstream = match (
                info_field(info, "master_host"),
                info_field(info, "master_port"),
            ) {
                (Some(h), Some(p)) => format!(" of {h}:{p}"),
                _ => String::new(),
            };
            FormerSource::NotWritable(format!("it is a replica{upstream}"))
        }
        Some("master") => match info_field(info, "min_slaves_good_slaves") {
            None => FormerSource::Writable("it is a primary without min-replicas-to-write".into()),
            Some(good) => {
                let good: u64 = good.parse().unwrap_or(0);
                match min_replicas {
                    Some(Ok(need)) if need > good => FormerSource::NotWritable(format!(
                        "it is a primary that refuses writes: min-replicas-to-write {need}, {good} replicas in sync"
                    )),
                    Some(Ok(need)) => FormerSource::Writable(format!(
                        "it is a primary with min-replicas-to-write {need} and {good} replicas in sync"
                    )),
                    Some(Err(e)) => FormerSource::Writable(format!(
                        "it is a primary with {good} replicas in sync; its min-replicas-to-write cannot be read ({e}), so it may accept writes"
                    )),
                    None => FormerSource::Writable(format!(
                        "it is a primary with {good} replicas in sync"
                    )),
                }
            }
        },
        other => FormerSource::Unreachable(format!(
            "INFO replication has no usable role ({})",
            other.unwrap_or("none")
        )),
    }
}

/// Whether the Redis at `host:port` (authenticating with `password`) accepts writes.
pub async fn former_source(
    host: &str,
    port: u16,
    password: Option<&str>,
    tls: bool,
) -> FormerSource {
    if tls {
        return FormerSource::Unreachable(
            "it serves TLS, which the operator's own probe does not speak yet".into(),
        );
    }
    let probe = async {
        let mut c = Conn::connect(host, port).await?;
        c.auth(password).await?;
        let info = match c.call(&["INFO", "replication"]).await? {
            Reply::Bulk(Some(text)) => text,
            Reply::Error(e) => return Err(format!("INFO refused: {e}")),
            other => return Err(format!("unexpected reply to INFO: {other:?}")),
        };
        let min_replicas = if info_field(&info, "min_slaves_good_slaves").is_some() {
            Some(
                match c.call(&["CONFIG", "GET", "min-replicas-to-write"]).await? {
                    Reply::Array(items) if items.len() == 2 => items[1]
                        .text()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| "unexpected CONFIG GET reply".to_string()),
                    Reply::Error(e) => Err(e),
                    other => Err(format!("unexpected CONFIG GET reply: {other:?}")),
                },
            )
        } else {
            None
        };
        Ok(judge(&info, min_replicas))
    };
    match tokio::time::timeout(TIMEOUT, probe).await {
        Ok(Ok(seen)) => seen,
        Ok(Err(e)) => FormerSource::Unreachable(e),
        Err(_) => FormerSource::Unreachable(format!(
            "no answer from {host}:{port} within {}s",
            TIMEOUT.as_secs()
        )),
    }
}

/// The former sources' last answers, refreshed in the background: a reconcile never waits for a
/// former source that does not answer (a region that is gone may take the whole timeout).
#[derive(Clone, Default)]
pub struct FormerSources {
    cache: Arc<Mutex<HashMap<String, Entry>>>,
}

#[derive(Default)]
struct Entry {
    last: Option<FormerSource>,
    asked: Option<tokio::time::Instant>,
    in_flight: bool,
}

/// How often a former source is asked again.
pub const REFRESH: Duration = Duration::from_secs(5);

impl FormerSources {
    /// The last answer of the Redis at `host:port` (None before the first one), and a new
    /// question in the background when the last one is older than [`REFRESH`].
    pub fn latest(
        &self,
        host: &str,
        port: u16,
        password: Option<String>,
        tls: bool,
    ) -> Option<FormerSource> {
        let key = format!("{host}:{port}");
        let mut cache = self.cache.lock().expect("former sources");
        let entry = cache.entry(key.clone()).or_default();
        let due = entry.asked.is_none_or(|t| t.elapsed() >= REFRESH);
        if due && !entry.in_flight {
            entry.in_flight = true;
            entry.asked = Some(tokio::time::Instant::now());
            let (cache, host) = (self.cache.clone(), host.to_string());
            tokio::spawn(async move {
                let seen = former_source(&host, port, password.as_deref(), tls).await;
                if let Some(e) = cache.lock().expect("former sources").get_mut(&key) {
                    e.last = Some(seen);
                    e.in_flight = false;
                }
            });
        }
        entry.last.clone()
    }
}

/// Ask the Sentinels at `addresses` (`host:port`), one after the other, to fail over `master`
/// (`SENTINEL FAILOVER`): Ok with the Sentinel that accepted, else every refusal. With `from`,
/// only while the Sentinel asked still names that pod as the primary: a request that reaches
/// the Sentinels after their failover (the operator asks at every reconcile until the pods
/// report the new primary) would otherwise replace its successor.
pub async fn sentinel_failover(
    addresses: &[String],
    master: &str,
    password: Option<&str>,
    from: Option<&FailoverFrom>,
) -> Result<String, String> {
    let mut refused = Vec::new();
    for address in addresses {
        let Some((host, port)) = address
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        else {
            refused.push(format!("{address}: not host:port"));
            continue;
        };
        let ask = async {
            let mut c = Conn::connect(host, port).await?;
            c.auth(password).await?;
            if let Some(from) = from {
                let named = match c
                    .call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", master])
                    .await?
                {
                    Reply::Array(a) => match (a.first().and_then(Reply::text), a.get(1)) {
                        (Some(h), Some(p)) => p
                            .text()
                            .and_then(|p| p.parse::<u16>().ok())
                            .map(|p| (h.to_string(), p)),
                        _ => None,
                    },
                    Reply::Error(e) => return Err(e),
                    _ => None,
                };
                if let Some((h, p)) = named
                    && !from.is(&h, p)
                {
                    return Ok(Err(format!(
                        "not asked: the Sentinels name {h}:{p} as the primary of {master} now, not {} (they failed over already)",
                        from.pod
                    )));
                }
            }
            match c.call(&["SENTINEL", "FAILOVER", master]).await? {
                Reply::Error(e) => Err(e),
                _ => Ok(Ok(())),
            }
        };
        match tokio::time::timeout(TIMEOUT, ask).await {
            Ok(Ok(Ok(()))) => return Ok(address.clone()),
            Ok(Ok(Err(done))) => return Err(done),
            Ok(Err(e)) => refused.push(format!("{address}: {e}")),
            Err(_) => refused.push(format!("{address}: no answer")),
        }
    }
    Err(refused.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: &str = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n";
    const FENCED: &str =
        "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nmin_slaves_good_slaves:1\r\n";
    const REPLICA: &str =
        "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.7\r\nmaster_port:6379\r\n";

    #[test]
    fn what_info_says_about_writes() {
        assert!(matches!(judge(MASTER, None), FormerSource::Writable(_)));
        assert_eq!(
            judge(REPLICA, None),
            FormerSource::NotWritable("it is a replica of 10.0.0.7:6379".into())
        );
        assert_eq!(
            judge(FENCED, Some(Ok(1_000_000))),
            FormerSource::NotWritable(
                "it is a primary that refuses writes: min-replicas-to-write 1000000, 1 replicas in sync"
                    .into()
            )
        );
        assert!(matches!(
            judge(FENCED, Some(Ok(1))),
            FormerSource::Writable(_)
        ));
        // CONFIG refused by an ACL: it may take writes, and the message says why we think so.
        match judge(FENCED, Some(Err("NOPERM".into()))) {
            FormerSource::Writable(m) => assert!(m.contains("NOPERM"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            judge("# Replication\r\n", None),
            FormerSource::Unreachable(_)
        ));
    }

    /// A request that reaches the Sentinels after they failed over is not sent: it would
    /// replace the successor. (A real redis-sentinel monitoring a primary nobody runs.)
    #[tokio::test]
    async fn the_sentinels_are_asked_only_while_they_name_the_pod_to_replace() {
        use redis_test_support::process::{ScratchDir, free_port, require};
        require("redis-sentinel");
        let dir = ScratchDir::new("probe-sentinel");
        let (port, master_port) = (free_port(), free_port());
        let conf = dir.path("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor cache 127.0.0.1 {master_port} 1\n"
            ),
        )
        .unwrap();
        let _sentinel = redis_test_support::redis::spawn_on(
            "redis-sentinel",
            "sentinel",
            None,
            &conf,
            &dir.path("sentinel.log"),
        )
        .unwrap();
        let sentinels = [format!("127.0.0.1:{port}")];
        let mut answered = false;
        for _ in 0..50 {
            if Conn::connect("127.0.0.1", port).await.is_ok() {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(answered, "the Sentinel did not start");
        let other = FailoverFrom {
            pod: "cache-1".into(),
            address: "127.0.0.2".into(),
            port: master_port,
        };
        let e = sentinel_failover(&sentinels, "cache", None, Some(&other))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            format!(
                "not asked: the Sentinels name 127.0.0.1:{master_port} as the primary of cache now, not cache-1 (they failed over already)"
            )
        );
        // The pod they name: asked (this Sentinel has no replica to promote, and says so).
        let this = FailoverFrom {
            address: "127.0.0.1".into(),
            ..other
        };
        let e = sentinel_failover(&sentinels, "cache", None, Some(&this))
            .await
            .unwrap_err();
        assert!(e.contains("NOGOODSLAVE"), "{e}");
    }

    #[test]
    fn the_pod_a_sentinel_names() {
        let from = FailoverFrom {
            pod: "cache-0".into(),
            address: "cache-0.cache-headless.production.svc.cluster.local".into(),
            port: 6379,
        };
        assert!(from.is("cache-0.cache-headless.production.svc.cluster.local", 6379));
        assert!(from.is("cache-0.cache-headless", 6379));
        assert!(from.is("cache-0", 6379));
        assert!(!from.is("cache-0", 6380));
        assert!(!from.is("cache-01.cache-headless", 6379));
        assert!(!from.is("cache-1.cache-headless.production.svc.cluster.local", 6379));
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_not_an_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(matches!(
            former_source("127.0.0.1", port, None, false).await,
            FormerSource::Unreachable(_)
        ));
        assert!(matches!(
            former_source("127.0.0.1", port, None, true).await,
            FormerSource::Unreachable(m) if m.contains("TLS")
        ));
        assert!(
            sentinel_failover(&[format!("127.0.0.1:{port}")], "x", None, None)
                .await
                .is_err()
        );
    }
}
