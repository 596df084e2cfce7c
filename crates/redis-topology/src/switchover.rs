//! The planned switchover's token (issue 14, docs/switchover.md), pure.
//!
//! A planned switchover moves the primary role between two clusters that replicate each
//! other's history, with no acknowledged write lost:
//! 1. the cluster that is primary is pointed at the other (`replicaMode.enabled: true` with the
//!    other as `source`, or `promote: false` on a promoted cluster): its primary becomes a
//!    read-only replica whose data no longer moves, and whose instance manager waits (it does
//!    not replicate one of its own replicas); the operator publishes that pod's position,
//!    `<replid>:<offset>`, as `status.demotionToken`;
//! 2. the other cluster gets `promote: true` with that token as `promotionToken`: it is
//!    promoted only once one of its pods holds that history up to that offset ([`check`]);
//! 3. Redis keeps the old history as the promoted pod's second replication id, so the demoted
//!    side continues from it with a partial resync.

use redis_cluster_api::SwitchoverToken;
use redis_cluster_api::report::InstanceReport;

/// Where the pods stand against a promotion token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenState {
    /// `pod` holds the token's history up to (at least) its offset: promote it.
    Reached { pod: String },
    /// The best pod in the token's history is `behind` bytes short of it.
    Short {
        pod: String,
        behind: i64,
        link_up: bool,
    },
    /// No pod follows the token's history. `continued`: the first reporting pod follows a
    /// history that continued the token's after its offset (the demoted cluster took writes
    /// again, e.g. its demotion was undone).
    OtherHistory {
        pod: String,
        replid: String,
        offset: i64,
        continued: bool,
    },
    /// No pod reports a replication history.
    Unknown,
}

/// The pods (in order of preference: the designated leader first) against `token`.
pub fn check(token: &SwitchoverToken, pods: &[(&str, Option<&InstanceReport>)]) -> TokenState {
    let history = |r: &InstanceReport| Some((r.master_replid.clone()?, r.master_repl_offset?));
    if let Some((pod, _)) = pods.iter().find(|(_, r)| {
        r.and_then(history)
            .is_some_and(|(id, off)| id == token.replid && off >= token.offset)
    }) {
        return TokenState::Reached {
            pod: pod.to_string(),
        };
    }
    let best = pods
        .iter()
        .filter_map(|(pod, r)| {
            let r = (*r)?;
            let (id, off) = history(r)?;
            (id == token.replid).then_some((*pod, off, r.master_link_up))
        })
        .max_by_key(|(_, off, _)| *off);
    if let Some((pod, off, link_up)) = best {
        return TokenState::Short {
            pod: pod.to_string(),
            behind: token.offset - off,
            link_up,
        };
    }
    match pods
        .iter()
        .find_map(|(pod, r)| Some((*pod, (*r)?, history((*r)?)?)))
    {
        Some((pod, r, (replid, offset))) => TokenState::OtherHistory {
            pod: pod.to_string(),
            continued: r.master_replid2.as_deref() == Some(token.replid.as_str())
                && r.second_repl_offset.is_some_and(|s| s > token.offset),
            replid,
            offset,
        },
        None => TokenState::Unknown,
    }
}

/// Whether the promoted `report` (after the promotion) holds the token: its second history is
/// the token's, kept up to at least its offset (or it still follows the token's history).
pub fn promoted_with(token: &SwitchoverToken, report: &InstanceReport) -> bool {
    let first = report.master_replid.as_deref() == Some(token.replid.as_str())
        && report.master_repl_offset.is_some_and(|o| o >= token.offset);
    let second = report.master_replid2.as_deref() == Some(token.replid.as_str())
        && report.second_repl_offset.is_some_and(|s| s > token.offset);
    first || second
}

/// The demotion token a cluster's reports carry: the position of the pod that waits, demoted
/// (`InstanceReport::demoted`). The first such pod by name (there is one: only the primary of a
/// history waits for a replica of it).
pub fn demotion_token<'r>(
    reports: impl IntoIterator<Item = (&'r str, &'r InstanceReport)>,
) -> Option<(String, SwitchoverToken)> {
    reports.into_iter().find_map(|(pod, r)| {
        let d = r.demoted.as_ref()?;
        Some((
            pod.to_string(),
            SwitchoverToken {
                replid: d.replid.clone(),
                offset: d.offset,
            },
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_cluster_api::report::HistoryPosition;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn at(replid: &str, offset: i64, link_up: bool) -> InstanceReport {
        InstanceReport {
            master_replid: Some(replid.into()),
            master_repl_offset: Some(offset),
            master_link_up: link_up,
            ..Default::default()
        }
    }

    fn token(offset: i64) -> SwitchoverToken {
        SwitchoverToken {
            replid: A.into(),
            offset,
        }
    }

    #[test]
    fn the_token_is_reached_only_in_its_own_history() {
        let (r0, r1) = (at(A, 900, true), at(A, 1000, true));
        let pods = [("dr-0", Some(&r0)), ("dr-1", Some(&r1))];
        assert_eq!(
            check(&token(1000), &pods),
            TokenState::Reached { pod: "dr-1".into() },
            "the pod that holds it, even when it is not the leader"
        );
        assert_eq!(
            check(&token(900), &pods),
            TokenState::Reached { pod: "dr-0".into() },
            "the leader first when both hold it"
        );
        let (s0, s1) = (at(A, 900, false), at(A, 950, false));
        assert_eq!(
            check(
                &token(1000),
                &[("dr-0", Some(&s0)), ("dr-1", Some(&s1)), ("dr-2", None)]
            ),
            TokenState::Short {
                pod: "dr-1".into(),
                behind: 50,
                link_up: false
            }
        );
        // The demoted side took writes again: its new history continued A after the token.
        let moved_on = InstanceReport {
            master_replid2: Some(A.into()),
            second_repl_offset: Some(1001),
            ..at(B, 1200, true)
        };
        assert_eq!(
            check(&token(1000), &[("dr-0", Some(&moved_on))]),
            TokenState::OtherHistory {
                pod: "dr-0".into(),
                replid: B.into(),
                offset: 1200,
                continued: true
            },
            "a history that merely continues the token's is refused: the other side is writable again"
        );
        assert_eq!(
            check(&token(1000), &[("dr-0", Some(&at(B, 5, true)))]),
            TokenState::OtherHistory {
                pod: "dr-0".into(),
                replid: B.into(),
                offset: 5,
                continued: false
            }
        );
        assert_eq!(check(&token(1), &[("dr-0", None)]), TokenState::Unknown);
        assert_eq!(
            check(&token(1), &[("dr-0", Some(&InstanceReport::default()))]),
            TokenState::Unknown
        );
    }

    #[test]
    fn a_promoted_pod_holds_the_token_as_its_second_history() {
        let promoted = |second: i64| InstanceReport {
            master_replid2: Some(A.into()),
            second_repl_offset: Some(second),
            ..at(B, 5000, false)
        };
        assert!(promoted_with(&token(1000), &promoted(1001)));
        assert!(promoted_with(&token(1000), &promoted(1500)));
        assert!(!promoted_with(&token(1000), &promoted(1000)));
        assert!(promoted_with(&token(1000), &at(A, 1000, true)));
        assert!(!promoted_with(&token(1000), &at(A, 999, true)));
    }

    #[test]
    fn the_demoted_pod_gives_the_token() {
        let d = InstanceReport {
            demoted: Some(HistoryPosition {
                replid: A.into(),
                offset: 77,
                keys: 3,
            }),
            ..Default::default()
        };
        let other = InstanceReport::default();
        assert_eq!(
            demotion_token([("p-0", &other), ("p-1", &d)]),
            Some(("p-1".to_string(), token(77)))
        );
        assert_eq!(demotion_token([("p-0", &other)]), None);
        assert_eq!(token(77).to_string(), format!("{A}:77"));
        assert_eq!(SwitchoverToken::parse(&format!("{A}:77")), Some(token(77)));
        for bad in [
            "",
            "x:1",
            A,
            &format!("{A}:-1"),
            &format!("{}:1", A.to_uppercase()),
        ] {
            assert_eq!(SwitchoverToken::parse(bad), None, "{bad}");
        }
    }
}
