//! What the Sentinels say, pure: parse `SENTINEL MASTER <name>` replies, choose among the answers
//! of several Sentinels, and say what that means for this pod.
//!
//! In sentinel mode the Sentinels decide which Redis is primary; the instance manager only reads
//! their view (to report it, and to point a Redis that booted fenced at the primary they elected).

use redis_cluster_api::topology::SentinelTopology;

/// One Sentinel's answer to `SENTINEL MASTER <name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterAnswer {
    pub host: String,
    pub port: u16,
    /// `config-epoch`: grows with every failover; the highest one is the most recent decision.
    pub config_epoch: u64,
    /// `flags`, e.g. `master`, `s_down,o_down,master,failover_in_progress`.
    pub flags: Vec<String>,
}

impl MasterAnswer {
    /// From the flat field/value pairs of the reply.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<MasterAnswer, String> {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let host = get("ip").ok_or("SENTINEL MASTER reply has no ip")?;
        let port = get("port")
            .and_then(|p| p.parse().ok())
            .ok_or("SENTINEL MASTER reply has no valid port")?;
        let config_epoch = get("config-epoch")
            .and_then(|e| e.parse().ok())
            .ok_or("SENTINEL MASTER reply has no valid config-epoch")?;
        let flags = get("flags")
            .unwrap_or_default()
            .split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect();
        Ok(MasterAnswer {
            host: host.to_string(),
            port,
            config_epoch,
            flags,
        })
    }

    /// The Sentinel considers the master down or is failing it over: its address is about to
    /// change (or the failover fails and it stays).
    fn unsettled(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f == "o_down" || f.starts_with("failover_"))
    }
}

/// What one Sentinel did when asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Master(MasterAnswer),
    /// It answered but does not monitor this master (yet).
    NotMonitored,
    /// Not reachable (refused, timeout, name does not resolve): not an error.
    Unreachable(String),
    /// Reachable, but it refused us (wrong password, error reply, garbage).
    Refused(String),
}

/// The master the Sentinels elected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elected {
    pub host: String,
    pub port: u16,
    pub config_epoch: u64,
    /// No Sentinel giving this answer flags the master `o_down` or a failover in progress.
    pub settled: bool,
}

impl Elected {
    pub fn addr(&self) -> String {
        crate::addr(&self.host, self.port)
    }
}

/// The Sentinels' view as this instance manager could collect it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub elected: Option<Elected>,
    /// Sentinels that answered at all (also "not monitored").
    pub reachable: u32,
    /// Why a reachable Sentinel refused us, if one did.
    pub refused: Option<String>,
}

/// Choose among the answers: the highest `config-epoch` wins (it is the latest failover); among
/// answers with that epoch the most common address; on a tie the smallest address, so that every
/// instance manager asking the same Sentinels chooses the same.
pub fn view(replies: &[Reply]) -> View {
    let answers: Vec<&MasterAnswer> = replies
        .iter()
        .filter_map(|r| match r {
            Reply::Master(a) => Some(a),
            _ => None,
        })
        .collect();
    let reachable = replies
        .iter()
        .filter(|r| matches!(r, Reply::Master(_) | Reply::NotMonitored))
        .count() as u32;
    let refused = replies.iter().find_map(|r| match r {
        Reply::Refused(why) => Some(why.clone()),
        _ => None,
    });
    let elected = answers
        .iter()
        .map(|a| a.config_epoch)
        .max()
        .and_then(|top| {
            let latest: Vec<&&MasterAnswer> =
                answers.iter().filter(|a| a.config_epoch == top).collect();
            let same = |a: &MasterAnswer, b: &MasterAnswer| a.host == b.host && a.port == b.port;
            latest
                .iter()
                .max_by(|a, b| {
                    let count = |x: &MasterAnswer| latest.iter().filter(|y| same(x, y)).count();
                    count(a).cmp(&count(b)).then_with(|| {
                        // Reverse address order so that max picks the smallest address.
                        (&b.host, b.port).cmp(&(&a.host, a.port))
                    })
                })
                .map(|winner| Elected {
                    host: winner.host.clone(),
                    port: winner.port,
                    config_epoch: top,
                    settled: !latest
                        .iter()
                        .filter(|a| same(a, winner))
                        .any(|a| a.unsettled()),
                })
        });
    View {
        elected,
        reachable,
        refused,
    }
}

/// What to log (once) while no Sentinel names a master: which Sentinels were asked, for which
/// master, and why one refused us. `None` once a master is known.
pub fn unknown_master_note(topology: &SentinelTopology, view: &View) -> Option<String> {
    if view.elected.is_some() {
        return None;
    }
    Some(format!(
        "no Sentinel of {} knows a master {:?}{}",
        topology.addresses.join(","),
        topology.master_name,
        view.refused
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    ))
}

/// What the Sentinels' view means for this pod (known to them as `announce_host:own_port`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The Sentinels elected this pod.
    Us { settled: bool },
    /// The Sentinels elected another Redis.
    Other {
        host: String,
        port: u16,
        settled: bool,
    },
    /// No Sentinel knows a master: either none is reachable or none monitors it yet (first boot).
    NobodyKnows,
    /// No Sentinel named a master, and at least one refused us: we cannot tell (misconfigured
    /// password, ...). Not the same as "nobody knows": acting on the topology then could make a
    /// second primary.
    CannotTell(String),
}

impl Verdict {
    pub fn of(view: &View, announce_host: &str, own_port: u16) -> Verdict {
        match (&view.elected, &view.refused) {
            (Some(e), _) if same_host(&e.host, announce_host) && e.port == own_port => {
                Verdict::Us { settled: e.settled }
            }
            (Some(e), _) => Verdict::Other {
                host: e.host.clone(),
                port: e.port,
                settled: e.settled,
            },
            (None, Some(why)) => Verdict::CannotTell(why.clone()),
            (None, None) => Verdict::NobodyKnows,
        }
    }
}

/// Host names compare case-insensitively and without a trailing dot (DNS).
pub(crate) fn same_host(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// `host:port` (or `[v6]:port`) of a Sentinel address from the topology.
pub fn split_addr(addr: &str) -> Result<(String, u16), String> {
    let (h, p) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("sentinel address {addr:?} is not host:port"))?;
    let port = p
        .parse()
        .map_err(|_| format!("sentinel address {addr:?} has no valid port"))?;
    Ok((h.trim_matches(['[', ']']).to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(host: &str, port: u16, epoch: u64, flags: &str) -> Reply {
        Reply::Master(MasterAnswer {
            host: host.into(),
            port,
            config_epoch: epoch,
            flags: flags.split(',').map(str::to_string).collect(),
        })
    }

    #[test]
    fn parses_a_sentinel_master_reply() {
        let pairs: Vec<(String, String)> = [
            ("name", "mymaster"),
            ("ip", "10.0.0.5"),
            ("port", "6379"),
            ("runid", "abc"),
            ("flags", "s_down,o_down,master"),
            ("config-epoch", "7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let a = MasterAnswer::from_pairs(&pairs).unwrap();
        assert_eq!(a.host, "10.0.0.5");
        assert_eq!(a.port, 6379);
        assert_eq!(a.config_epoch, 7);
        assert_eq!(a.flags, ["s_down", "o_down", "master"]);
        assert!(a.unsettled());
        assert!(MasterAnswer::from_pairs(&pairs[..2]).is_err());
    }

    #[test]
    fn the_highest_config_epoch_wins_even_in_a_minority() {
        let v = view(&[
            answer("a", 6379, 3, "master"),
            answer("a", 6379, 3, "master"),
            answer("b", 6379, 4, "master"),
        ]);
        let e = v.elected.unwrap();
        assert_eq!((e.host.as_str(), e.port, e.config_epoch), ("b", 6379, 4));
        assert!(e.settled);
        assert_eq!(v.reachable, 3);
    }

    #[test]
    fn ties_go_to_the_most_common_answer_then_the_smallest_address() {
        let v = view(&[
            answer("b", 6379, 4, "master"),
            answer("c", 6379, 4, "master"),
            answer("c", 6379, 4, "master"),
        ]);
        assert_eq!(v.elected.unwrap().host, "c");
        for order in [["b", "a"], ["a", "b"]] {
            let v = view(&[
                answer(order[0], 6379, 4, "master"),
                answer(order[1], 6379, 4, "master"),
            ]);
            assert_eq!(v.elected.unwrap().host, "a");
        }
        // Same host, different port: different answers.
        let v = view(&[
            answer("a", 6380, 1, "master"),
            answer("a", 6380, 1, "master"),
            answer("a", 6379, 1, "master"),
        ]);
        assert_eq!(v.elected.unwrap().port, 6380);
    }

    #[test]
    fn unreachable_sentinels_are_not_errors_refusals_are_kept() {
        let v = view(&[
            Reply::Unreachable("connection refused".into()),
            answer("a", 6379, 2, "master"),
            Reply::NotMonitored,
        ]);
        assert_eq!(v.reachable, 2);
        assert_eq!(v.refused, None);
        assert_eq!(v.elected.unwrap().host, "a");
        let v = view(&[Reply::Unreachable("timeout".into()), Reply::NotMonitored]);
        assert_eq!(v.elected, None);
        assert_eq!(v.reachable, 1);
        assert_eq!(Verdict::of(&v, "a", 6379), Verdict::NobodyKnows);
        let v = view(&[
            Reply::Refused("WRONGPASS".into()),
            Reply::Unreachable("x".into()),
        ]);
        assert_eq!(v.reachable, 0);
        assert_eq!(
            Verdict::of(&v, "a", 6379),
            Verdict::CannotTell("WRONGPASS".into())
        );
        assert_eq!(view(&[]), View::default());
    }

    #[test]
    fn a_failover_in_progress_is_unsettled() {
        let v = view(&[
            answer("a", 6379, 2, "master"),
            answer("a", 6379, 2, "s_down,o_down,master,failover_in_progress"),
        ]);
        assert!(!v.elected.unwrap().settled);
        // A subjective s_down of one Sentinel alone does not hold anything up.
        let v = view(&[answer("a", 6379, 2, "s_down,master")]);
        assert!(v.elected.unwrap().settled);
    }

    #[test]
    fn verdict_recognises_this_pod() {
        let v = view(&[answer("Redis-0.redis.ns.svc.", 6379, 2, "master")]);
        assert_eq!(
            Verdict::of(&v, "redis-0.redis.ns.svc", 6379),
            Verdict::Us { settled: true }
        );
        assert_eq!(
            Verdict::of(&v, "redis-0.redis.ns.svc", 6380),
            Verdict::Other {
                host: "Redis-0.redis.ns.svc.".into(),
                port: 6379,
                settled: true
            }
        );
    }

    #[test]
    fn the_note_names_the_sentinels_the_master_and_a_refusal() {
        let st = SentinelTopology {
            master_name: "mymaster".into(),
            addresses: vec!["s-0:26379".into(), "s-1:26379".into()],
            announce_host: "me".into(),
            password_file: None,
        };
        // (view, expected note)
        let rows: [(View, Option<&str>); 4] = [
            (view(&[answer("a", 6379, 2, "master")]), None),
            (
                view(&[Reply::NotMonitored, Reply::Unreachable("timeout".into())]),
                Some("no Sentinel of s-0:26379,s-1:26379 knows a master \"mymaster\""),
            ),
            (
                view(&[Reply::Refused("Sentinel s-0:26379: WRONGPASS".into())]),
                Some(
                    "no Sentinel of s-0:26379,s-1:26379 knows a master \"mymaster\" (Sentinel s-0:26379: WRONGPASS)",
                ),
            ),
            // A refusal does not matter once another Sentinel names the master.
            (
                view(&[
                    Reply::Refused("WRONGPASS".into()),
                    answer("a", 6379, 2, "master"),
                ]),
                None,
            ),
        ];
        for (v, expected) in rows {
            assert_eq!(unknown_master_note(&st, &v).as_deref(), expected, "{v:?}");
        }
    }

    #[test]
    fn sentinel_addresses() {
        assert_eq!(split_addr("s-0.s:26379").unwrap(), ("s-0.s".into(), 26379));
        assert_eq!(split_addr("[::1]:26379").unwrap(), ("::1".into(), 26379));
        assert!(split_addr("s-0").is_err());
        assert!(split_addr("s-0:x").is_err());
    }
}
