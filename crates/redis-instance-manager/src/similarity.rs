//! Whether an upstream under another replication history holds the same data as this replica:
//! the replication gate's second look at a block while the cluster replicates an external
//! source (docs/instance-manager.md, "The replication gate").
//!
//! Redis 7.0 with `appendonly yes` restarts under a new replication id (the AOF does not carry
//! it), so a source that restarts with its data looks exactly like a source recreated empty, or
//! like another Redis behind the same address: an unrelated history. The ids cannot tell them
//! apart; the data can. Keys are sampled from the local Redis (all of them when it holds at most
//! [`SAMPLE_KEYS`], else [`SAMPLE_KEYS`] `RANDOMKEY`s, database 0), and each is read on both
//! sides, pipelined: its type, and a bounded, type-aware fingerprint of its value:
//!
//! | type | read on both sides | the same when |
//! |---|---|---|
//! | string | `STRLEN`, `GETRANGE 0 4095`, `GETRANGE -4096 -1` | all equal (the whole value up to 8 KiB) |
//! | list | `LLEN`, `LRANGE 0 63`, `LRANGE -64 -1` | all equal (the whole list up to 128 elements) |
//! | zset | `ZCARD`, `ZRANGE 0 63 WITHSCORES`, `ZRANGE -64 -1 WITHSCORES` | all equal |
//! | hash | `HLEN`; here `HRANDFIELD 64 WITHVALUES`, there `HMGET` of those fields | same length, same values (every field up to 64) |
//! | set | `SCARD`; here `SRANDMEMBER 64`, there `SMISMEMBER` of those members | same size, every member there (all up to 64) |
//! | stream, module types | `TYPE` only | the key exists there with the same type |
//!
//! The upstream is the same data when at least [`NEEDED_PERCENT`] of the compared keys match
//! ([`DataSample::same_data`]). Three round trips to the local Redis, one to the upstream, all
//! within [`budget`]; the planning and the comparison are pure and table-tested.

use std::collections::HashSet;
use std::time::Duration;

use fred::prelude::Value;
use redis_cluster_api::report::DataSample;

use crate::redis_io::{Conn, Endpoint};

/// Keys sampled from the local Redis (all of them when it holds fewer).
pub const SAMPLE_KEYS: usize = 200;

/// The share of sampled keys (percent) that must match for the upstream to hold the same data.
///
/// A source that restarted with its data matches on (nearly) every key: only what it lost in
/// the restart (its last second of writes with `appendfsync everysec`) and what it changed since
/// it came back differ. Another dataset matches on almost none, a source restored from an older
/// backup on the keys that did not change since. With 200 keys the measured share is within
/// about 2 points of the true one (binomial standard error at 90%), so 90% takes a source that
/// changed up to about a tenth of its keys since its restart for the same data, and refuses a
/// backup in which more than about a tenth of the keys differ.
pub const NEEDED_PERCENT: u32 = 90;

/// Elements read from each end of a list or sorted set, and fields or members of a hash or set.
const ELEMENTS: i64 = 64;
/// Bytes read from each end of a string.
const STRING_BYTES: i64 = 4096;

/// How long a comparison may take: connecting to both sides, collecting the keys and reading
/// them. Past it, nothing is concluded (the block stands, saying why).
pub fn budget(probe_timeout: Duration) -> Duration {
    (probe_timeout * 4).max(Duration::from_secs(2))
}

/// One command: its name and arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Cmd {
    pub name: &'static str,
    pub args: Vec<Value>,
}

fn cmd(name: &'static str, key: &Value, rest: &[&str]) -> Cmd {
    let mut args = vec![key.clone()];
    args.extend(rest.iter().map(|a| Value::from(*a)));
    Cmd { name, args }
}

/// A key's type, as `TYPE` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    String,
    List,
    Hash,
    Set,
    ZSet,
    /// A stream or a module type: compared by type only.
    Other(String),
}

impl Kind {
    /// From a `TYPE` reply; None for `none` (the key is gone: expired since it was sampled).
    pub fn of(type_name: &str) -> Option<Kind> {
        Some(match type_name {
            "none" | "" => return None,
            "string" => Kind::String,
            "list" => Kind::List,
            "hash" => Kind::Hash,
            "set" => Kind::Set,
            "zset" => Kind::ZSet,
            other => Kind::Other(other.to_string()),
        })
    }

    fn name(&self) -> &str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::Other(n) => n,
        }
    }
}

/// What is read of `key` on the local Redis.
pub fn local_reads(key: &Value, kind: &Kind) -> Vec<Cmd> {
    let e = ELEMENTS.to_string();
    let (head, last_e, tail) = ((ELEMENTS - 1).to_string(), (-ELEMENTS).to_string(), "-1");
    let (first_b, last_b) = ((STRING_BYTES - 1).to_string(), (-STRING_BYTES).to_string());
    match kind {
        Kind::String => vec![
            cmd("STRLEN", key, &[]),
            cmd("GETRANGE", key, &["0", &first_b]),
            cmd("GETRANGE", key, &[&last_b, tail]),
        ],
        Kind::List => vec![
            cmd("LLEN", key, &[]),
            cmd("LRANGE", key, &["0", &head]),
            cmd("LRANGE", key, &[&last_e, tail]),
        ],
        Kind::ZSet => vec![
            cmd("ZCARD", key, &[]),
            cmd("ZRANGE", key, &["0", &head, "WITHSCORES"]),
            cmd("ZRANGE", key, &[&last_e, tail, "WITHSCORES"]),
        ],
        Kind::Hash => vec![
            cmd("HLEN", key, &[]),
            cmd("HRANDFIELD", key, &[&e, "WITHVALUES"]),
        ],
        Kind::Set => vec![cmd("SCARD", key, &[]), cmd("SRANDMEMBER", key, &[&e])],
        Kind::Other(_) => vec![],
    }
}

/// The elements of an array reply (none for anything else).
fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        _ => &[],
    }
}

/// What is read of `key` on the upstream: `TYPE`, then what compares with the local replies
/// (`local`, in the order of [`local_reads`]).
pub fn upstream_reads(key: &Value, kind: &Kind, local: &[Value]) -> Vec<Cmd> {
    let mut out = vec![cmd("TYPE", key, &[])];
    match kind {
        Kind::Hash => {
            out.push(cmd("HLEN", key, &[]));
            let fields: Vec<Value> = local
                .get(1)
                .map(items)
                .unwrap_or_default()
                .iter()
                .step_by(2)
                .cloned()
                .collect();
            if !fields.is_empty() {
                let mut args = vec![key.clone()];
                args.extend(fields);
                out.push(Cmd {
                    name: "HMGET",
                    args,
                });
            }
        }
        Kind::Set => {
            out.push(cmd("SCARD", key, &[]));
            let members = local.get(1).map(items).unwrap_or_default();
            if !members.is_empty() {
                let mut args = vec![key.clone()];
                args.extend(members.iter().cloned());
                out.push(Cmd {
                    name: "SMISMEMBER",
                    args,
                });
            }
        }
        other => out.extend(local_reads(key, other)),
    }
    out
}

/// The same bytes whether fred read them as text or as binary.
fn norm(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::Bytes(s.inner().clone()),
        Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
        Value::Double(d) => Value::Bytes(d.to_string().into_bytes().into()),
        other => other.clone(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

/// Whether the upstream's replies (`TYPE` first, in the order of [`upstream_reads`]) show the
/// same value as the local ones.
pub fn same(kind: &Kind, local: &[Value], upstream: &[Value]) -> bool {
    let Some((type_reply, rest)) = upstream.split_first() else {
        return false;
    };
    if text(type_reply) != kind.name() {
        return false;
    }
    let eq = |a: &Value, b: &Value| norm(a) == norm(b);
    match kind {
        Kind::Other(_) => true,
        Kind::Hash => {
            let values: Vec<&Value> = local
                .get(1)
                .map(items)
                .unwrap_or_default()
                .iter()
                .skip(1)
                .step_by(2)
                .collect();
            let len_ok = matches!((local.first(), rest.first()), (Some(a), Some(b)) if eq(a, b));
            let there = rest.get(1).map(items).unwrap_or_default();
            len_ok && there.len() == values.len() && values.iter().zip(there).all(|(a, b)| eq(a, b))
        }
        Kind::Set => {
            let members = local.get(1).map(items).unwrap_or_default();
            let len_ok = matches!((local.first(), rest.first()), (Some(a), Some(b)) if eq(a, b));
            let there = rest.get(1).map(items).unwrap_or_default();
            len_ok
                && there.len() == members.len()
                && there.iter().all(|v| matches!(v, Value::Integer(1)))
        }
        _ => local.len() == rest.len() && local.iter().zip(rest).all(|(a, b)| eq(a, b)),
    }
}

/// Split a pipeline's flat replies into one group per key, by the number of commands each key
/// had; a reply that is an error (other than `WRONGTYPE`, a key of another type there) stops
/// the comparison with its text.
pub fn split(
    replies: Vec<Result<Value, String>>,
    sizes: &[usize],
    side: &str,
) -> Result<Vec<Vec<Value>>, String> {
    let mut it = replies.into_iter();
    let mut out = Vec::with_capacity(sizes.len());
    for n in sizes {
        let mut group = Vec::with_capacity(*n);
        for _ in 0..*n {
            match it.next() {
                Some(Ok(v)) => group.push(v),
                Some(Err(e)) if e.starts_with("WRONGTYPE") => group.push(Value::Null),
                Some(Err(e)) => return Err(format!("{side}: {e}")),
                None => return Err(format!("{side}: fewer replies than commands")),
            }
        }
        out.push(group);
    }
    Ok(out)
}

/// The keys to compare: `SCAN` (all of them) when the local Redis holds at most
/// [`SAMPLE_KEYS`], else that many different keys drawn with `RANDOMKEY`.
async fn collect_keys(local: &Conn, dbsize: i64) -> Result<Vec<Value>, String> {
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut keys = Vec::new();
    let keep = |k: Value, keys: &mut Vec<Value>, seen: &mut HashSet<Vec<u8>>| {
        let bytes = match norm(&k) {
            Value::Bytes(b) => b.to_vec(),
            _ => return,
        };
        if seen.insert(bytes) {
            keys.push(k);
        }
    };
    if dbsize as usize <= SAMPLE_KEYS {
        let mut cursor = Value::from("0");
        loop {
            let reply = local
                .command(
                    "SCAN",
                    vec![cursor, Value::from("COUNT"), Value::from("1000")],
                )
                .await
                .map_err(|e| format!("this replica: SCAN: {e}"))?;
            let parts = items(&reply);
            let (Some(next), Some(batch)) = (parts.first(), parts.get(1)) else {
                return Err("this replica: SCAN: unexpected reply".into());
            };
            for k in items(batch) {
                keep(k.clone(), &mut keys, &mut seen);
            }
            if text(next) == "0" {
                break;
            }
            cursor = next.clone();
        }
    } else {
        // Random keys repeat: draw again (a few rounds at most) until there are enough.
        for _ in 0..RANDOM_ROUNDS {
            let missing = SAMPLE_KEYS.saturating_sub(keys.len());
            if missing == 0 {
                break;
            }
            let cmds = vec![
                Cmd {
                    name: "RANDOMKEY",
                    args: vec![]
                };
                (missing * 3).max(50)
            ];
            for r in local.pipeline(&cmds).await.map_err(|e| e.to_string())? {
                match r {
                    Ok(Value::Null) => {}
                    Ok(k) => keep(k, &mut keys, &mut seen),
                    Err(e) => return Err(format!("this replica: RANDOMKEY: {e}")),
                }
            }
        }
        keys.truncate(SAMPLE_KEYS);
    }
    Ok(keys)
}

/// Pipelines of `RANDOMKEY` at most, to collect [`SAMPLE_KEYS`] different keys.
const RANDOM_ROUNDS: usize = 6;

/// Compare this replica's data (`local`) with the upstream's, within `budget`.
pub async fn sample(local: &Endpoint, upstream: &Endpoint, budget: Duration) -> DataSample {
    let failed = |error: String| DataSample {
        compared: 0,
        matched: 0,
        needed_percent: NEEDED_PERCENT,
        error: Some(error),
    };
    match tokio::time::timeout(budget, compare(local, upstream, budget)).await {
        Ok(Ok((compared, matched))) => DataSample {
            compared,
            matched,
            needed_percent: NEEDED_PERCENT,
            error: None,
        },
        Ok(Err(e)) => failed(e),
        Err(_) => failed(format!("no result within {budget:?}")),
    }
}

async fn compare(
    local_ep: &Endpoint,
    upstream_ep: &Endpoint,
    timeout: Duration,
) -> Result<(u32, u32), String> {
    let (local, upstream) = tokio::join!(
        Conn::connect(local_ep, timeout),
        Conn::connect(upstream_ep, timeout)
    );
    let local = local.map_err(|e| format!("this replica: {e}"))?;
    let upstream = match upstream {
        Ok(u) => u,
        Err(e) => {
            local.close();
            return Err(format!("the upstream: {e}"));
        }
    };
    let res = compare_on(&local, &upstream).await;
    local.close();
    upstream.close();
    res
}

async fn compare_on(local: &Conn, upstream: &Conn) -> Result<(u32, u32), String> {
    let dbsize = match local.command("DBSIZE", vec![]).await {
        Ok(Value::Integer(n)) => n,
        Ok(other) => return Err(format!("this replica: DBSIZE: {other:?}")),
        Err(e) => return Err(format!("this replica: DBSIZE: {e}")),
    };
    if dbsize == 0 {
        return Err("this replica holds no key in database 0".into());
    }
    let keys = collect_keys(local, dbsize).await?;
    // Their types here.
    let types: Vec<Cmd> = keys.iter().map(|k| cmd("TYPE", k, &[])).collect();
    let types = local.pipeline(&types).await.map_err(|e| e.to_string())?;
    let types = split(types, &vec![1; keys.len()], "this replica")?;
    let kinds: Vec<(Value, Kind)> = keys
        .into_iter()
        .zip(types)
        .filter_map(|(k, t)| Some((k, Kind::of(&text(t.first()?))?)))
        .collect();
    // Their values here.
    let reads: Vec<Vec<Cmd>> = kinds.iter().map(|(k, kind)| local_reads(k, kind)).collect();
    let flat: Vec<Cmd> = reads.iter().flatten().cloned().collect();
    let sizes: Vec<usize> = reads.iter().map(Vec::len).collect();
    let here = local.pipeline(&flat).await.map_err(|e| e.to_string())?;
    let here = split(here, &sizes, "this replica")?;
    // The same keys there.
    let there: Vec<Vec<Cmd>> = kinds
        .iter()
        .zip(&here)
        .map(|((k, kind), values)| upstream_reads(k, kind, values))
        .collect();
    let flat: Vec<Cmd> = there.iter().flatten().cloned().collect();
    let sizes: Vec<usize> = there.iter().map(Vec::len).collect();
    let replies = upstream.pipeline(&flat).await.map_err(|e| e.to_string())?;
    let there = split(replies, &sizes, "the upstream")?;
    let compared = kinds.len() as u32;
    let matched = kinds
        .iter()
        .zip(here.iter().zip(&there))
        .filter(|((_, kind), (l, u))| same(kind, l, u))
        .count() as u32;
    Ok((compared, matched))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Value {
        Value::from(s)
    }

    fn arr(xs: &[&str]) -> Value {
        Value::Array(xs.iter().map(|x| v(x)).collect())
    }

    fn names(cmds: &[Cmd]) -> Vec<String> {
        cmds.iter()
            .map(|c| {
                let mut s = c.name.to_string();
                for a in &c.args {
                    s.push(' ');
                    s.push_str(&text(a));
                }
                s
            })
            .collect()
    }

    #[test]
    fn what_is_read_of_each_type() {
        let k = v("k");
        assert_eq!(
            names(&local_reads(&k, &Kind::String)),
            ["STRLEN k", "GETRANGE k 0 4095", "GETRANGE k -4096 -1"]
        );
        assert_eq!(
            names(&local_reads(&k, &Kind::List)),
            ["LLEN k", "LRANGE k 0 63", "LRANGE k -64 -1"]
        );
        assert_eq!(
            names(&local_reads(&k, &Kind::ZSet)),
            [
                "ZCARD k",
                "ZRANGE k 0 63 WITHSCORES",
                "ZRANGE k -64 -1 WITHSCORES"
            ]
        );
        assert_eq!(
            names(&local_reads(&k, &Kind::Hash)),
            ["HLEN k", "HRANDFIELD k 64 WITHVALUES"]
        );
        assert_eq!(
            names(&local_reads(&k, &Kind::Set)),
            ["SCARD k", "SRANDMEMBER k 64"]
        );
        assert!(local_reads(&k, &Kind::Other("stream".into())).is_empty());
        // There: the type first, then the same reads, or the fields/members read here.
        assert_eq!(
            names(&upstream_reads(&k, &Kind::String, &[])),
            [
                "TYPE k",
                "STRLEN k",
                "GETRANGE k 0 4095",
                "GETRANGE k -4096 -1"
            ]
        );
        let hash_here = [Value::Integer(2), arr(&["f1", "a", "f2", "b"])];
        assert_eq!(
            names(&upstream_reads(&k, &Kind::Hash, &hash_here)),
            ["TYPE k", "HLEN k", "HMGET k f1 f2"]
        );
        let set_here = [Value::Integer(2), arr(&["m1", "m2"])];
        assert_eq!(
            names(&upstream_reads(&k, &Kind::Set, &set_here)),
            ["TYPE k", "SCARD k", "SMISMEMBER k m1 m2"]
        );
        assert_eq!(
            names(&upstream_reads(&k, &Kind::Other("stream".into()), &[])),
            ["TYPE k"]
        );
        assert_eq!(Kind::of("none"), None);
        assert_eq!(Kind::of("stream"), Some(Kind::Other("stream".into())));
    }

    /// (what, kind, here, there, same?)
    #[test]
    fn values_are_compared_by_type() {
        let i = Value::Integer;
        let s = |x: &str| vec![i(x.len() as i64), v(x), v(x)];
        let with_type = |t: &str, mut rest: Vec<Value>| {
            rest.insert(0, v(t));
            rest
        };
        let hash_here = vec![i(2), arr(&["f1", "a", "f2", "b"])];
        let set_here = vec![i(3), arr(&["m1", "m2"])];
        type Row<'a> = (&'a str, Kind, Vec<Value>, Vec<Value>, bool);
        let rows: Vec<Row> = vec![
            (
                "same string",
                Kind::String,
                s("v1"),
                with_type("string", s("v1")),
                true,
            ),
            (
                "same string read as binary there",
                Kind::String,
                s("v1"),
                with_type(
                    "string",
                    vec![i(2), Value::Bytes("v1".into()), Value::Bytes("v1".into())],
                ),
                true,
            ),
            (
                "another value",
                Kind::String,
                s("v1"),
                with_type("string", s("v2")),
                false,
            ),
            (
                "missing there",
                Kind::String,
                s("v1"),
                with_type("none", vec![Value::Null; 3]),
                false,
            ),
            (
                "another type there",
                Kind::String,
                s("v1"),
                with_type("list", vec![Value::Null; 3]),
                false,
            ),
            (
                "same list",
                Kind::List,
                vec![i(2), arr(&["a", "b"]), arr(&["a", "b"])],
                with_type("list", vec![i(2), arr(&["a", "b"]), arr(&["a", "b"])]),
                true,
            ),
            (
                "a list with one more element there",
                Kind::List,
                vec![i(2), arr(&["a", "b"]), arr(&["a", "b"])],
                with_type(
                    "list",
                    vec![i(3), arr(&["a", "b", "c"]), arr(&["a", "b", "c"])],
                ),
                false,
            ),
            (
                "same hash",
                Kind::Hash,
                hash_here.clone(),
                with_type("hash", vec![i(2), arr(&["a", "b"])]),
                true,
            ),
            (
                "a hash field changed",
                Kind::Hash,
                hash_here.clone(),
                with_type("hash", vec![i(2), arr(&["a", "x"])]),
                false,
            ),
            (
                "a hash with another field there",
                Kind::Hash,
                hash_here.clone(),
                with_type("hash", vec![i(3), arr(&["a", "b"])]),
                false,
            ),
            (
                "same set",
                Kind::Set,
                set_here.clone(),
                with_type("set", vec![i(3), Value::Array(vec![i(1), i(1)])]),
                true,
            ),
            (
                "a member missing there",
                Kind::Set,
                set_here.clone(),
                with_type("set", vec![i(3), Value::Array(vec![i(1), i(0)])]),
                false,
            ),
            (
                "same zset",
                Kind::ZSet,
                vec![i(1), arr(&["m", "1.5"]), arr(&["m", "1.5"])],
                with_type("zset", vec![i(1), arr(&["m", "1.5"]), arr(&["m", "1.5"])]),
                true,
            ),
            (
                "a score changed",
                Kind::ZSet,
                vec![i(1), arr(&["m", "1.5"]), arr(&["m", "1.5"])],
                with_type("zset", vec![i(1), arr(&["m", "2"]), arr(&["m", "2"])]),
                false,
            ),
            (
                "a stream: existing with the same type is enough",
                Kind::Other("stream".into()),
                vec![],
                vec![v("stream")],
                true,
            ),
            (
                "a stream missing there",
                Kind::Other("stream".into()),
                vec![],
                vec![v("none")],
                false,
            ),
        ];
        for (what, kind, here, there, expected) in rows {
            assert_eq!(same(&kind, &here, &there), expected, "{what}");
        }
    }

    #[test]
    fn replies_are_grouped_per_key_and_errors_stop_the_comparison() {
        let ok = |x: &str| Ok(v(x));
        assert_eq!(
            split(vec![ok("a"), ok("b"), ok("c")], &[1, 2], "the upstream").unwrap(),
            vec![vec![v("a")], vec![v("b"), v("c")]]
        );
        // A key of another type there: its reads fail, it does not match.
        assert_eq!(
            split(
                vec![ok("list"), Err("WRONGTYPE Operation against a key".into())],
                &[2],
                "the upstream"
            )
            .unwrap(),
            vec![vec![v("list"), Value::Null]]
        );
        // Not allowed to read there: nothing is concluded.
        assert_eq!(
            split(
                vec![Err("NOPERM this user has no permissions".into())],
                &[1],
                "the upstream"
            )
            .unwrap_err(),
            "the upstream: NOPERM this user has no permissions"
        );
    }

    #[test]
    fn the_threshold_and_what_a_sample_says() {
        let s = |compared, matched| DataSample {
            compared,
            matched,
            needed_percent: NEEDED_PERCENT,
            error: None,
        };
        assert!(s(200, 180).same_data());
        assert!(!s(200, 179).same_data());
        assert!(s(3, 3).same_data());
        assert!(!s(3, 2).same_data());
        assert!(!s(0, 0).same_data());
        assert_eq!(
            s(200, 196).describe(),
            "196 of 200 keys sampled on both sides match (98%, 90% needed)"
        );
        let failed = DataSample {
            error: Some("the upstream: NOPERM".into()),
            ..s(0, 0)
        };
        assert!(!failed.same_data());
        assert_eq!(
            failed.describe(),
            "its data could not be compared with the upstream's (the upstream: NOPERM)"
        );
        assert_eq!(
            budget(Duration::from_millis(800)),
            Duration::from_millis(3200)
        );
        assert_eq!(budget(Duration::from_millis(200)), Duration::from_secs(2));
    }
}
