//! Salvage: what a pod held that a resync is about to discard, saved first (issue 14,
//! docs/salvage.md).
//!
//! After an unplanned promotion the old primary (and any of its replicas that were ahead) holds
//! writes the promoted side never received: the bytes of its replication stream after the
//! offset at which the other side was promoted. When it is told to follow the promoted side,
//! the replication gate finds exactly that ([`history::Safe::Failover`] with `diverged`) and a
//! full resync would drop them. Before the gate opens, the instance manager asks its own Redis
//! for that tail the way a replica would: `PSYNC <old id> <promotion offset + 1>` returns
//! `+CONTINUE` and the commands from its backlog. When the backlog no longer holds them (or the
//! process restarted since), Redis answers `+FULLRESYNC` and an RDB of the whole dataset
//! follows: kept as the snapshot. A pod that led a history whose data the user chose to
//! replace (`acceptHistory`, or a sibling history) saves a snapshot too.
//!
//! Redis refuses `PSYNC` on a replica whose link is down (`-NOMASTERLINK`), and the gate keeps
//! the link down: the capture makes the local Redis a master for its duration, with writes
//! paused (`CLIENT PAUSE <ms> WRITE`) so that no client writes into it, then points it back at
//! the upstream before the pause ends. Its replication id shifts (the old one becomes its
//! `master_replid2`), which changes nothing for what follows: the resync was a full one anyway.
//!
//! The pure parts: [`want`] (what to save, from the gate's decision), [`Tail`] (reading the
//! commands of a replication stream: the keys they touch, a listing, the replayable file). The
//! I/O: [`capture`] (the `PSYNC` on a raw connection, plain or TLS) and [`Store`] (the files).
//! Nothing is ever replayed automatically.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redis_cluster_api::report::Salvage;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::history::{Local, Record, Safe, UpstreamState};
use crate::redis_io::Endpoint;

/// The directory under `--state-dir`.
pub const DIR: &str = "salvage";

/// The manifest's `kind` of a tail that wrote no key (only pings, Sentinel hellos): remembered
/// so it is not captured again, never reported.
pub const NOTHING: &str = "none";

/// What to save before the gate opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// The bytes `from..=to` of history `replid`, which the upstream never received.
    /// `local_id`: the id the local Redis holds them under now (`replid` itself, or the id
    /// an earlier capture's `REPLICAOF NO ONE` shifted it to: the same bytes, the same offsets).
    Tail {
        replid: String,
        from: i64,
        to: i64,
        local_id: String,
    },
    /// The whole dataset, at `replid`/`to` (what this pod led).
    Snapshot { replid: String, to: i64 },
}

impl Want {
    pub fn replid(&self) -> &str {
        match self {
            Want::Tail { replid, .. } | Want::Snapshot { replid, .. } => replid,
        }
    }
}

/// What the gate's decision `why` to sync from `up` would discard, if anything is worth saving.
///
/// - A failover in our history with bytes beyond the upstream's share (`diverged`): the tail
///   from the upstream's `second_repl_offset` to where this Redis is in that history. Any pod
///   (the old primary, or a replica that was ahead), since only it may hold those writes.
/// - Our data replaced by another history (`acceptHistory`, the same data under a new id, or a
///   sibling history): a snapshot, but only on a pod recorded as the primary of its history
///   (its writes exist nowhere else; a replica's data is a copy of some primary's).
///
/// None for an empty Redis, a partial resync, or a replica whose data is a copy.
pub fn want(
    local: &Local,
    record: Option<&Record>,
    up: &UpstreamState,
    why: &Safe,
) -> Option<Want> {
    if local.keys == 0 {
        return None;
    }
    match why {
        Safe::Failover {
            diverged: Some(bytes),
        } if *bytes > 0 => {
            let from = up.second_offset;
            // Where this Redis is in the upstream's former history: its own id, or (a capture
            // already shifted its id) the one it continued from with nothing beyond it.
            let held = (local.replid == up.replid2
                || (local.replid2 == up.replid2 && local.offset == local.second_offset - 1))
                .then_some(local.offset);
            match held {
                Some(to) if to >= from => Some(Want::Tail {
                    replid: up.replid2.clone(),
                    from,
                    to,
                    local_id: local.replid.clone(),
                }),
                // The process restarted since (a new id): its backlog is gone, only a snapshot
                // of what it holds is left, and only worth it where the writes were taken.
                _ => led(record).map(|r| Want::Snapshot {
                    replid: r.replid.clone(),
                    to: local.offset,
                }),
            }
        }
        Safe::Failover { diverged: Some(_) } | Safe::Accepted | Safe::SameData(_) => led(record)
            .map(|r| Want::Snapshot {
                replid: r.replid.clone(),
                to: r.offset.max(local.offset),
            }),
        _ => None,
    }
}

fn led(record: Option<&Record>) -> Option<&Record> {
    record.filter(|r| r.role == "primary")
}

/// How long a capture may take (writes stay paused 5 s longer, and it is abandoned after it):
/// 30 s plus the tail at 4 MiB/s (a debug build on a loaded machine reads 10-20 MB/s), or 10
/// minutes for a snapshot, whose size is not known before Redis has written it.
pub fn deadline(want: &Want) -> Duration {
    match want {
        Want::Tail { from, to, .. } => {
            Duration::from_secs(30)
                + Duration::from_secs_f64((to - from + 1).max(0) as f64 / (4.0 * 1024.0 * 1024.0))
        }
        Want::Snapshot { .. } => Duration::from_secs(600),
    }
}

/// One command of a replication stream: its arguments.
pub type Cmd = Vec<Vec<u8>>;

/// Read one RESP array of bulk strings (a command as Redis propagates it) from `r`; None at the
/// end of the input. Inline commands do not occur in a replication stream: refused.
pub fn read_command(r: &mut impl BufRead) -> std::io::Result<Option<Cmd>> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut line = Vec::new();
    // A master writes bare newlines as keepalives before some replies: skipped.
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        if line != b"\n" && line != b"\r\n" {
            break;
        }
    }
    let header = strip_crlf(&line);
    let n: usize = header
        .strip_prefix(b"*")
        .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())
        .ok_or_else(|| bad(format!("not a RESP array: {:?}", lossy(header))))?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_until(b'\n', &mut line)?;
        let len: usize = strip_crlf(&line)
            .strip_prefix(b"$")
            .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())
            .ok_or_else(|| bad(format!("not a bulk string: {:?}", lossy(&line))))?;
        let mut arg = vec![0; len + 2];
        r.read_exact(&mut arg)?;
        arg.truncate(len);
        args.push(arg);
    }
    Ok(Some(args))
}

fn strip_crlf(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r\n")
        .or_else(|| l.strip_suffix(b"\n"))
        .unwrap_or(l)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned()
}

/// A command as RESP.
pub fn encode(cmd: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", cmd.len()).into_bytes();
    for a in cmd {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn name(cmd: &[Vec<u8>]) -> String {
    cmd.first()
        .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
        .unwrap_or_default()
}

/// Commands of the stream that are replication's own, not the data's: left out of the
/// replayable file and of the count. (`SELECT`, `MULTI` and `EXEC` stay: they give the
/// commands around them their database and atomicity.)
fn is_replication_noise(cmd: &[Vec<u8>]) -> bool {
    matches!(name(cmd).as_str(), "PING" | "REPLCONF")
}

/// The keys a propagated command writes, by Redis's key specs for the commands a master
/// propagates (write commands, rewritten by Redis into their effects: `EXPIRE` into
/// `PEXPIREAT`, scripts into the commands they ran). Commands not listed name their key first.
pub fn keys_of(cmd: &[Vec<u8>]) -> Vec<&[u8]> {
    let args = &cmd[1.min(cmd.len())..];
    let all = || args.iter().map(Vec::as_slice).collect();
    let first = |n: usize| args.iter().take(n).map(Vec::as_slice).collect();
    match name(cmd).as_str() {
        "PING" | "REPLCONF" | "SELECT" | "MULTI" | "EXEC" | "FLUSHALL" | "FLUSHDB" | "SWAPDB"
        | "SCRIPT" | "FUNCTION" | "PUBLISH" | "SPUBLISH" => Vec::new(),
        "DEL" | "UNLINK" | "TOUCH" => all(),
        "MSET" | "MSETNX" => args.iter().step_by(2).map(Vec::as_slice).collect(),
        "RENAME" | "RENAMENX" | "SMOVE" | "LMOVE" | "RPOPLPUSH" | "BLMOVE" | "BRPOPLPUSH"
        | "COPY" | "GEOSEARCHSTORE" => first(2),
        // destination, then numkeys/keys or the source keys.
        "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE" | "PFMERGE" => first(1),
        "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" | "ZRANGESTORE" | "BITOP" => {
            // BITOP op dest ...: the destination is the second argument.
            if name(cmd) == "BITOP" {
                args.get(1).map(|k| vec![k.as_slice()]).unwrap_or_default()
            } else {
                first(1)
            }
        }
        _ => first(1),
    }
}

/// What a tail holds, read from its stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Commands, replication noise left out.
    pub commands: u64,
    /// Distinct (database, key) pairs written.
    pub keys: u64,
}

/// Read the stream `r`; write the replayable commands to `replay` (RESP) and a listing to
/// `listing` (one command per line, arguments quoted as `redis-cli` prints them, with the
/// database when it changes).
pub fn summarise(
    r: impl Read,
    mut replay: impl Write,
    mut listing: impl Write,
) -> std::io::Result<Summary> {
    let mut r = BufReader::new(r);
    let mut keys: BTreeSet<(i64, Vec<u8>)> = BTreeSet::new();
    let mut db = 0i64;
    let mut s = Summary::default();
    while let Some(cmd) = read_command(&mut r)? {
        if is_replication_noise(&cmd) {
            continue;
        }
        if name(&cmd) == "SELECT"
            && let Some(n) = cmd
                .get(1)
                .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())
        {
            db = n;
        }
        for k in keys_of(&cmd) {
            keys.insert((db, k.to_vec()));
        }
        s.commands += 1;
        replay.write_all(&encode(&cmd))?;
        let line: Vec<String> = cmd.iter().map(|a| quote(a)).collect();
        writeln!(listing, "{}", line.join(" "))?;
    }
    s.keys = keys.len() as u64;
    Ok(s)
}

/// An argument as `redis-cli` shows it: quoted, with escapes for what is not printable.
pub fn quote(a: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in a {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    s
}

/// What [`capture`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    /// `+CONTINUE`: the tail's bytes were written to the file.
    Tail { bytes: u64 },
    /// `+FULLRESYNC`: an RDB of the dataset was written to the file.
    Snapshot { bytes: u64 },
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(ep: &Endpoint) -> Result<Box<dyn Stream>, String> {
    let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", ep.addr()))?;
    tcp.set_nodelay(true).ok();
    let Some(files) = &ep.tls else {
        return Ok(Box::new(tcp));
    };
    let config = crate::redis_io::rustls_config(files, !crate::redis_io::is_loopback(&ep.host))
        .map_err(|e| e.to_string())?;
    let name = fred::rustls::pki_types::ServerName::try_from(ep.host.clone())
        .map_err(|e| format!("{} is not a valid TLS name: {e}", ep.host))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {} failed: {e}", ep.addr()))?;
    Ok(Box::new(tls))
}

async fn line(r: &mut (impl AsyncBufReadExt + Unpin)) -> Result<String, String> {
    let mut l = Vec::new();
    loop {
        l.clear();
        let n = r
            .read_until(b'\n', &mut l)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed".into());
        }
        // Keepalive newlines while the master prepares an RDB.
        if l != b"\n" && l != b"\r\n" {
            return Ok(String::from_utf8_lossy(strip_crlf(&l)).into_owned());
        }
    }
}

/// Ask the local Redis (a master for the duration, see the module) for `want` as a replica
/// would, and write what it sends to `out`: the tail's exact bytes on `+CONTINUE`, the RDB on
/// `+FULLRESYNC`. All within `timeout`.
pub async fn capture(
    ep: &Endpoint,
    want: &Want,
    out: &mut std::fs::File,
    timeout: Duration,
) -> Result<Got, String> {
    tokio::time::timeout(timeout, capture_inner(ep, want, out))
        .await
        .map_err(|_| format!("no complete answer within {timeout:?}"))?
}

async fn capture_inner(ep: &Endpoint, want: &Want, out: &mut std::fs::File) -> Result<Got, String> {
    let stream = connect(ep).await?;
    let mut s = tokio::io::BufReader::new(stream);
    let send = async |args: &[&[u8]], s: &mut tokio::io::BufReader<Box<dyn Stream>>| {
        let cmd: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
        s.get_mut()
            .write_all(&encode(&cmd))
            .await
            .map_err(|e| e.to_string())
    };
    if let Some(pw) = &ep.password {
        match &ep.username {
            Some(u) => send(&[b"AUTH", u.as_bytes(), pw.expose().as_bytes()], &mut s).await?,
            None => send(&[b"AUTH", pw.expose().as_bytes()], &mut s).await?,
        }
        let reply = line(&mut s).await?;
        if !reply.starts_with("+OK") {
            // The reply never holds the password.
            return Err(format!("AUTH refused: {reply}"));
        }
    }
    let (replid, from) = match want {
        // The id the local Redis knows the bytes under: after our `REPLICAOF NO ONE` it is its
        // `master_replid2`, which `PSYNC` accepts up to `second_repl_offset`.
        Want::Tail { local_id, from, .. } => (local_id.clone(), from.to_string()),
        // An id nobody has: Redis answers with a full resync (the dataset's RDB).
        Want::Snapshot { .. } => ("?".to_string(), "-1".to_string()),
    };
    send(&[b"PSYNC", replid.as_bytes(), from.as_bytes()], &mut s).await?;
    let reply = line(&mut s).await?;
    if reply.starts_with("+CONTINUE") {
        let Want::Tail { from, to, .. } = want else {
            return Err(format!("unexpected {reply} to a full sync request"));
        };
        let len = (to - from + 1) as u64;
        let copied = tokio::io::copy(&mut (&mut s).take(len), &mut AsyncFile(out))
            .await
            .map_err(|e| format!("reading the tail: {e}"))?;
        if copied != len {
            return Err(format!(
                "the stream ended after {copied} of the tail's {len} bytes"
            ));
        }
        return Ok(Got::Tail { bytes: len });
    }
    if !reply.starts_with("+FULLRESYNC") {
        return Err(format!("PSYNC answered {reply}"));
    }
    let header = line(&mut s).await?;
    let len: u64 = header
        .strip_prefix('$')
        .filter(|h| !h.starts_with("EOF:"))
        .and_then(|h| h.parse().ok())
        .ok_or_else(|| format!("unexpected RDB header {header:?}"))?;
    let copied = tokio::io::copy(&mut (&mut s).take(len), &mut AsyncFile(out))
        .await
        .map_err(|e| format!("reading the snapshot: {e}"))?;
    if copied != len {
        return Err(format!(
            "the stream ended after {copied} of the snapshot's {len} bytes"
        ));
    }
    Ok(Got::Snapshot { bytes: len })
}

/// A blocking file as an `AsyncWrite` (the writes are local and small enough per call).
struct AsyncFile<'a>(&'a mut std::fs::File);

impl AsyncWrite for AsyncFile<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(self.get_mut().0.write(buf))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(self.get_mut().0.flush())
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// The salvage directory: one manifest per upstream history (`<upstream replid>.json`, the
/// [`Salvage`] report), so a pod salvages once per history it is made to follow, whatever
/// restarts in between; the data files next to it. Created private (0700, files 0600): they
/// hold the data.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join(DIR),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn manifest(&self, upstream_replid: &str) -> PathBuf {
        self.dir.join(format!("{upstream_replid}.json"))
    }

    /// The salvage done for this upstream history, if any.
    pub fn done(&self, upstream_replid: &str) -> Option<Salvage> {
        let text = std::fs::read_to_string(self.manifest(upstream_replid)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The newest salvage on the volume (for the report after a restart).
    pub fn latest(&self) -> Option<Salvage> {
        std::fs::read_dir(&self.dir)
            .ok()?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| {
                serde_json::from_str::<Salvage>(&std::fs::read_to_string(e.path()).ok()?).ok()
            })
            .filter(|s| s.kind != NOTHING)
            .max_by(|a, b| a.at.cmp(&b.at))
    }

    /// A new private file in the directory (created if needed).
    pub fn create(&self, name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let path = self.dir.join(name);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        Ok((path, f))
    }

    /// Record `s` as done for `upstream_replid` (atomically: written, synced, renamed).
    pub fn finish(&self, upstream_replid: &str, s: &Salvage) -> std::io::Result<()> {
        let tmp = format!("{upstream_replid}.json.tmp");
        let (path, mut f) = self.create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(s).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&path, self.manifest(upstream_replid))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            d.sync_all().ok();
        }
        Ok(())
    }
}

/// The file names of one salvage: `<at>-<history id prefix>.{resp,rdb}` (+ `.txt`, `.stream`).
pub fn stem(at: &str, replid: &str) -> String {
    let at: String = at.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("{at}-{}", &replid[..replid.len().min(12)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Local, Record, Safe, UpstreamState};

    const H: &str = "1111111111111111111111111111111111111111";
    const N: &str = "2222222222222222222222222222222222222222";
    const NO: &str = "0000000000000000000000000000000000000000";

    fn local(replid: &str, offset: i64, replid2: &str, second: i64, keys: u64) -> Local {
        Local {
            replid: replid.into(),
            offset,
            replid2: replid2.into(),
            second_offset: second,
            keys,
        }
    }

    fn up(replid2: &str, second: i64) -> UpstreamState {
        UpstreamState {
            address: "dr:6379".into(),
            replid: N.into(),
            replid2: replid2.into(),
            second_offset: second,
            master: true,
            keys: 10,
            ..Default::default()
        }
    }

    fn record(role: &str) -> Record {
        Record {
            replid: H.into(),
            offset: 900,
            keys: 10,
            role: role.into(),
            run_id: None,
        }
    }

    #[test]
    fn what_is_saved_before_the_gate_opens() {
        let diverged = Safe::Failover {
            diverged: Some(400),
        };
        let tail_under = |local_id: &str| {
            Some(Want::Tail {
                replid: H.into(),
                from: 501,
                to: 900,
                local_id: local_id.into(),
            })
        };
        let tail = tail_under(H);
        let snapshot = Some(Want::Snapshot {
            replid: H.into(),
            to: 900,
        });
        let primary = record("primary");
        let replica = record("replica");
        type Row<'a> = (&'a str, Local, Option<&'a Record>, Safe, Option<Want>);
        let rows: Vec<Row> = vec![
            (
                "the old primary, its tail in its own history",
                local(H, 900, NO, -1, 10),
                Some(&primary),
                diverged.clone(),
                tail.clone(),
            ),
            (
                "a replica that was ahead: its tail too",
                local(H, 900, NO, -1, 10),
                Some(&replica),
                diverged.clone(),
                tail.clone(),
            ),
            (
                "after a capture shifted its id (nothing beyond): the same tail",
                local("3333333333333333333333333333333333333333", 900, H, 901, 10),
                Some(&primary),
                diverged.clone(),
                tail_under("3333333333333333333333333333333333333333"),
            ),
            (
                "restarted under a new id, the primary: only a snapshot is left",
                local("4444444444444444444444444444444444444444", 0, NO, -1, 10),
                Some(&primary),
                diverged.clone(),
                Some(Want::Snapshot {
                    replid: H.into(),
                    to: 0,
                }),
            ),
            (
                "restarted under a new id, a replica: its data is a copy",
                local("4444444444444444444444444444444444444444", 0, NO, -1, 10),
                Some(&replica),
                diverged.clone(),
                None,
            ),
            (
                "empty: nothing to save",
                local(H, 900, NO, -1, 0),
                Some(&primary),
                diverged.clone(),
                None,
            ),
            (
                "a partial resync loses nothing",
                local(H, 900, NO, -1, 10),
                Some(&primary),
                Safe::Failover { diverged: None },
                None,
            ),
            (
                "the same history",
                local(H, 900, NO, -1, 10),
                Some(&primary),
                Safe::SameHistory { behind: None },
                None,
            ),
            (
                "the primary's data replaced by an accepted history: a snapshot",
                local(H, 900, NO, -1, 10),
                Some(&primary),
                Safe::Accepted,
                snapshot.clone(),
            ),
            (
                "a replica's data replaced: a copy of some primary's",
                local(H, 900, NO, -1, 10),
                Some(&replica),
                Safe::Accepted,
                None,
            ),
            (
                "no record: not known to have led anything",
                local(H, 900, NO, -1, 10),
                None,
                Safe::Accepted,
                None,
            ),
        ];
        for (what, l, r, why, expected) in rows {
            assert_eq!(want(&l, r, &up(H, 501), &why), expected, "{what}");
        }
    }

    fn cmd(args: &[&str]) -> Vec<u8> {
        let c: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        encode(&c)
    }

    #[test]
    fn a_tail_is_read_into_commands_keys_and_a_listing() {
        let mut stream = Vec::new();
        for c in [
            &["SELECT", "0"][..],
            &["SET", "a", "1"],
            &["PING"],
            &["MSET", "b", "2", "c", "3"],
            &["SET", "a", "4"],
            &["REPLCONF", "GETACK", "*"],
            &["SELECT", "1"],
            &["SET", "a", "x\ny"],
            &["MULTI"],
            &["DEL", "d", "e"],
            &["EXEC"],
            &["PEXPIREAT", "b", "1"],
        ] {
            stream.extend(cmd(c));
        }
        stream.extend(b"\n");
        let (mut replay, mut listing) = (Vec::new(), Vec::new());
        let s = summarise(&stream[..], &mut replay, &mut listing).unwrap();
        // a, b, c in db 0; a, d, e and b (the PEXPIREAT) in db 1.
        assert_eq!(
            s,
            Summary {
                commands: 10,
                keys: 7
            }
        );
        let listing = String::from_utf8(listing).unwrap();
        assert_eq!(listing.lines().count(), 10);
        assert!(listing.contains("\"SET\" \"a\" \"x\\ny\"\n"), "{listing}");
        assert!(!listing.contains("PING") && !listing.contains("REPLCONF"));
        // The replayable file holds the same commands, pings left out, and reads back.
        let mut again = (Vec::new(), Vec::new());
        let s2 = summarise(&replay[..], &mut again.0, &mut again.1).unwrap();
        assert_eq!(s2, s);
        assert_eq!(again.0, replay);
    }

    #[test]
    fn a_stream_that_is_not_resp_is_an_error() {
        let err = summarise(&b"SET a 1\r\n"[..], Vec::new(), Vec::new()).unwrap_err();
        assert!(err.to_string().contains("not a RESP array"), "{err}");
        // Cut in the middle of an argument.
        let mut cut = cmd(&["SET", "key", "value"]);
        cut.truncate(cut.len() - 4);
        assert!(summarise(&cut[..], Vec::new(), Vec::new()).is_err());
    }

    #[test]
    fn a_capture_has_time_for_its_size() {
        let tail = |bytes: i64| Want::Tail {
            replid: H.into(),
            from: 1,
            to: bytes,
            local_id: H.into(),
        };
        assert_eq!(deadline(&tail(1)).as_secs(), 30);
        assert_eq!(deadline(&tail(400 * 1024 * 1024)).as_secs(), 130);
        assert_eq!(
            deadline(&Want::Snapshot {
                replid: H.into(),
                to: 1
            }),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn keys_by_command() {
        let k = |args: &[&str]| -> Vec<String> {
            let c: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
            keys_of(&c)
                .into_iter()
                .map(|k| String::from_utf8(k.to_vec()).unwrap())
                .collect()
        };
        assert_eq!(k(&["SET", "a", "1"]), ["a"]);
        assert_eq!(k(&["set", "a", "1"]), ["a"]);
        assert_eq!(k(&["MSET", "a", "1", "b", "2"]), ["a", "b"]);
        assert_eq!(k(&["DEL", "a", "b"]), ["a", "b"]);
        assert_eq!(k(&["RENAME", "a", "b"]), ["a", "b"]);
        assert_eq!(k(&["LMOVE", "a", "b", "LEFT", "RIGHT"]), ["a", "b"]);
        assert_eq!(k(&["BITOP", "AND", "dest", "a", "b"]), ["dest"]);
        assert_eq!(k(&["ZUNIONSTORE", "dest", "2", "a", "b"]), ["dest"]);
        assert!(k(&["SELECT", "1"]).is_empty());
        assert!(k(&["FLUSHALL"]).is_empty());
        assert!(k(&["EXEC"]).is_empty());
        assert!(k(&["PING"]).is_empty());
    }

    #[test]
    fn the_store_is_private_and_remembers_each_history_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("salvage-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::new(&dir);
        assert_eq!(store.done(N), None);
        assert_eq!(store.latest(), None);
        let (path, mut f) = store.create("x.resp").unwrap();
        f.write_all(b"data").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(store.dir()), 0o700);
        let s = Salvage {
            kind: "tail".into(),
            file: path.display().to_string(),
            bytes: 4,
            at: "2026-11-28T12:00:00Z".into(),
            ..Default::default()
        };
        store.finish(N, &s).unwrap();
        assert_eq!(store.done(N), Some(s.clone()));
        let later = Salvage {
            at: "2026-11-28T13:00:00Z".into(),
            ..s.clone()
        };
        store.finish(H, &later).unwrap();
        assert_eq!(store.latest(), Some(later.clone()));
        // A tail that wrote no key is remembered (done) but never the one reported.
        let nothing = Salvage {
            kind: NOTHING.into(),
            file: String::new(),
            at: "2026-11-28T14:00:00Z".into(),
            ..s.clone()
        };
        store
            .finish("5555555555555555555555555555555555555555", &nothing)
            .unwrap();
        assert!(
            store
                .done("5555555555555555555555555555555555555555")
                .is_some()
        );
        assert_eq!(store.latest(), Some(later));
        assert_eq!(
            stem("2026-11-28T12:00:00Z", H),
            "20261128T120000Z-111111111111"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
