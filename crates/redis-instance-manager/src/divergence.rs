//! Writes a replica held that its new upstream never received (pure state).
//!
//! When a primary fails over, the promoted replica keeps the old replication id as
//! `master_replid2` and records `second_repl_offset` = its offset at promotion + 1. A replica
//! that replicated the old primary (replication id `R`, offset `O`) asks the new primary to
//! `PSYNC R O+1`; Redis accepts a partial resync only if `R` is its `master_replid2` and
//! `O + 1 <= second_repl_offset`. Otherwise the replica resynchronises in full and the bytes it
//! had beyond `second_repl_offset - 1` (what the new primary has of the old history) are gone.
//!
//! The local Redis may reconnect and full-sync within milliseconds of the failover, changing its
//! own replication id before the next probe. So the replica's id and offset are remembered from
//! the last probe in which it was a replica with its link up, and compared with the new
//! upstream's `master_replid2` / `second_repl_offset`, which do not change after the promotion.
//! The remembered offset can be up to one probe interval old: the count is a lower bound.

use std::collections::BTreeMap;

use crate::info::{Observed, RedisRole};

/// A replication history position: replication id and offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub replid: String,
    pub offset: i64,
}

/// What the upstream's `INFO replication` says about its replication ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamIds {
    pub replid: String,
    pub replid2: String,
    pub second_repl_offset: i64,
}

impl UpstreamIds {
    /// From the fields of an `INFO replication` reply; None if one is missing.
    pub fn from_fields(f: &BTreeMap<&str, &str>) -> Option<UpstreamIds> {
        Some(UpstreamIds {
            replid: f.get("master_replid")?.to_string(),
            replid2: f.get("master_replid2")?.to_string(),
            second_repl_offset: f.get("second_repl_offset")?.parse().ok()?,
        })
    }
}

/// The position to remember from the local Redis's `INFO`: only while it is a replica with its
/// link up and no sync in progress are its `master_replid`/`master_repl_offset` the history of
/// its upstream (during a sync they are about to be replaced).
pub fn followed(o: &Observed) -> Option<(&str, i64)> {
    (o.role == RedisRole::Slave && o.master_link_status_up && !o.master_sync_in_progress)
        .then_some((o.master_replid.as_str(), o.master_repl_offset))
}

/// What a comparison with the upstream found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Nothing to say: nothing remembered, same history, or a partial resync is possible.
    None,
    /// The upstream took over the history this replica followed, but this replica had `bytes`
    /// beyond what the upstream received: a full resync, those writes are lost. `first` is true
    /// the first time this divergence is found (log it once).
    Diverged { bytes: i64, first: bool },
    /// The upstream's dataset does not descend from the one this replica followed (neither of
    /// its replication ids is the remembered one): a full resync. `first` as above.
    Unrelated {
        remembered: String,
        upstream: String,
        first: bool,
    },
}

/// The remembered position and the last divergence found (kept until the process restarts).
#[derive(Debug, Default)]
pub struct Divergence {
    remembered: Option<Position>,
    /// Bytes of the last divergence found.
    pub diverged_bytes: Option<i64>,
    /// (remembered position, upstream replid) of the last finding, to report each only once.
    last_finding: Option<(Position, String)>,
}

impl Divergence {
    pub fn remembered(&self) -> Option<&Position> {
        self.remembered.as_ref()
    }

    /// Remember the local Redis's position; call only while it is a replica with its link up
    /// (then its `master_replid`/`master_repl_offset` are its upstream's history).
    /// Returns true when the replication id changed (a new history is followed).
    pub fn remember(&mut self, replid: &str, offset: i64) -> bool {
        if replid.is_empty() {
            return false;
        }
        let changed = self.remembered.as_ref().is_none_or(|p| p.replid != replid);
        self.remembered = Some(Position {
            replid: replid.to_string(),
            offset,
        });
        changed
    }

    /// Compare the remembered position with the upstream's ids (call before [`remember`] with
    /// the same tick's local reading, which may already be past a full resync).
    ///
    /// [`remember`]: Divergence::remember
    pub fn check(&mut self, up: &UpstreamIds) -> Finding {
        let Some(mine) = &self.remembered else {
            return Finding::None;
        };
        if mine.replid == up.replid {
            return Finding::None;
        }
        let key = (mine.clone(), up.replid.clone());
        let first = self.last_finding.as_ref() != Some(&key);
        let finding = if mine.replid == up.replid2 {
            // The replica asks for offset + 1; the upstream serves up to second_repl_offset.
            let bytes = mine.offset + 1 - up.second_repl_offset;
            if bytes <= 0 {
                return Finding::None;
            }
            self.diverged_bytes = Some(bytes);
            Finding::Diverged { bytes, first }
        } else {
            Finding::Unrelated {
                remembered: mine.replid.clone(),
                upstream: up.replid.clone(),
                first,
            }
        };
        self.last_finding = Some(key);
        finding
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::observed;

    fn up(replid: &str, replid2: &str, second: i64) -> UpstreamIds {
        UpstreamIds {
            replid: replid.into(),
            replid2: replid2.into(),
            second_repl_offset: second,
        }
    }

    #[test]
    fn parses_the_upstream_ids() {
        let text = "# Replication\r\nrole:master\r\nmaster_replid:bbb\r\nmaster_replid2:aaa\r\nmaster_repl_offset:900\r\nsecond_repl_offset:501\r\n";
        let f = crate::info::info_fields(text);
        assert_eq!(UpstreamIds::from_fields(&f), Some(up("bbb", "aaa", 501)));
        let f = crate::info::info_fields("role:master\r\nmaster_replid:bbb\r\n");
        assert_eq!(UpstreamIds::from_fields(&f), None);
    }

    /// What is remembered from the local Redis: only a linked replica's position, not one
    /// that is syncing (its ids are about to change) or whose link is down.
    #[test]
    fn only_a_linked_replica_tells_what_it_follows() {
        let replica = || {
            let mut o = observed(RedisRole::Slave, Some(("src", 6379)));
            o.master_replid = "aaa".into();
            o.master_repl_offset = 620;
            o
        };
        let rows = [
            ("a linked replica", replica(), Some(("aaa", 620))),
            ("a master", observed(RedisRole::Master, None), None),
            (
                "link down",
                Observed {
                    master_link_status_up: false,
                    ..replica()
                },
                None,
            ),
            (
                "syncing",
                Observed {
                    master_sync_in_progress: true,
                    ..replica()
                },
                None,
            ),
        ];
        for (name, o, expected) in &rows {
            assert_eq!(followed(o), *expected, "{name}");
        }
    }

    #[test]
    fn nothing_remembered_or_same_history_finds_nothing() {
        let mut d = Divergence::default();
        assert_eq!(d.check(&up("aaa", "000", -1)), Finding::None);
        d.remember("", 10);
        assert_eq!(d.remembered(), None);
        d.remember("aaa", 1000);
        assert_eq!(d.check(&up("aaa", "000", -1)), Finding::None);
        assert_eq!(d.diverged_bytes, None);
    }

    #[test]
    fn a_replica_not_ahead_of_the_promoted_one_resumes_partially() {
        let mut d = Divergence::default();
        // The new primary was at 500 when promoted: second_repl_offset 501.
        d.remember("aaa", 500);
        assert_eq!(d.check(&up("bbb", "aaa", 501)), Finding::None);
        d.remember("aaa", 300);
        assert_eq!(d.check(&up("bbb", "aaa", 501)), Finding::None);
        assert_eq!(d.diverged_bytes, None);
    }

    #[test]
    fn a_replica_ahead_of_the_promoted_one_diverged_by_the_bytes_beyond() {
        let mut d = Divergence::default();
        d.remember("aaa", 500);
        d.remember("aaa", 620);
        let u = up("bbb", "aaa", 501);
        assert_eq!(
            d.check(&u),
            Finding::Diverged {
                bytes: 120,
                first: true
            }
        );
        // Seen again (the link is still down): same bytes, not first.
        assert_eq!(
            d.check(&u),
            Finding::Diverged {
                bytes: 120,
                first: false
            }
        );
        // One byte ahead is already a full resync.
        d.remember("aaa", 501);
        assert_eq!(
            d.check(&u),
            Finding::Diverged {
                bytes: 1,
                first: true
            }
        );
        // After the full resync the replica follows the new history: nothing more, but the
        // last divergence stays reported.
        d.remember("bbb", 700);
        assert_eq!(d.check(&u), Finding::None);
        assert_eq!(d.diverged_bytes, Some(1));
    }

    #[test]
    fn an_unrelated_dataset_is_not_a_divergence() {
        let mut d = Divergence::default();
        d.remember("aaa", 620);
        let u = up("ccc", "000", -1);
        assert_eq!(
            d.check(&u),
            Finding::Unrelated {
                remembered: "aaa".into(),
                upstream: "ccc".into(),
                first: true
            }
        );
        assert!(matches!(
            d.check(&u),
            Finding::Unrelated { first: false, .. }
        ));
        assert_eq!(d.diverged_bytes, None);
    }
}
