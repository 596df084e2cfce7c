//! What a pod's data is, in replication terms, and which copy holds another: the comparisons
//! behind every choice of a primary (promotion, failover) and behind "this primary came back
//! without its data".
//!
//! Redis names a dataset's history by its replication id (`master_replid`) and a position in it
//! (the offset): a replica shares its primary's id, so two pods with the same id are two copies
//! of one stream, and the one at the higher offset holds everything the other does. After a
//! promotion or a failover Redis keeps the id it continued from as `master_replid2`, shared up to
//! `second_repl_offset`. A redis-server restarted from its append-only file gets a new id; the
//! instance manager's record (`recordedHistory`) then says which history its keys belong to.
//!
//! Nothing here decides; `plan` does, with these answers.

use redis_cluster_api::report::InstanceReport;

/// Redis's "no id" (`master_replid2` before any failover).
const NO_ID: &str = "0000000000000000000000000000000000000000";

/// One pod's data (a copy of a replication history) as its instance manager reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// `master_replid`.
    pub replid: String,
    /// `master_replid2` (None when it is Redis's all-zero "no id").
    pub replid2: Option<String>,
    /// `second_repl_offset`: `replid2` is shared up to (not including) this offset.
    pub second_offset: i64,
    /// How far this Redis is in `replid`.
    pub offset: i64,
    /// Keys it holds (None: not reported).
    pub keys: Option<u64>,
    /// The history the instance manager recorded for this pod's data, when it differs from
    /// `replid` (a restart from the append-only file, or a pod that lost its data).
    pub recorded: Option<(String, i64, u64)>,
}

impl Dataset {
    /// The copy a report describes; None when the instance manager predates the history fields
    /// or cannot read its Redis, or while Redis is loading its dataset (its keys still grow).
    pub fn of(report: &InstanceReport) -> Option<Dataset> {
        if report.loading == Some(true) {
            return None;
        }
        let replid = report.master_replid.clone()?;
        let offset = report.master_repl_offset.or(report.repl_offset)?;
        Some(Dataset {
            replid2: report
                .master_replid2
                .clone()
                .filter(|id| id != NO_ID && !id.is_empty()),
            second_offset: report.second_repl_offset.unwrap_or(-1),
            offset,
            keys: report.keys,
            recorded: report
                .recorded_history
                .as_ref()
                .filter(|h| h.replid != replid)
                .map(|h| (h.replid.clone(), h.offset, h.keys)),
            replid,
        })
    }

    /// Holds no key, and nothing says it ever held one.
    pub fn empty(&self) -> bool {
        self.keys == Some(0) && self.recorded.as_ref().is_none_or(|r| r.2 == 0)
    }

    /// How far this copy's data reaches into history `id`: the offset up to which it holds
    /// that stream, or None when its data is not of that history.
    pub fn position_in(&self, id: &str) -> Option<i64> {
        if self.replid == id {
            return Some(self.offset);
        }
        if self.replid2.as_deref() == Some(id) && self.second_offset > 0 {
            // Redis accepts a PSYNC from replid2 up to second_repl_offset: the bytes before it.
            return Some(self.offset.min(self.second_offset - 1));
        }
        match &self.recorded {
            // Restarted from its append-only file under a new id, with the keys it recorded.
            Some((rid, offset, _)) if rid == id && self.keys.is_some_and(|k| k > 0) => {
                Some(*offset)
            }
            _ => None,
        }
    }

    /// The histories this copy's data is at: its own, and the recorded one when its keys came
    /// back under a new id.
    fn at(&self) -> Vec<(&str, i64)> {
        let mut out = vec![(self.replid.as_str(), self.offset)];
        if let Some((rid, offset, keys)) = &self.recorded
            && *keys > 0
            && self.keys.is_some_and(|k| k > 0)
        {
            out.push((rid.as_str(), *offset));
        }
        out
    }

    /// Whether this copy holds everything `other` holds (so making it the primary, and
    /// resynchronising `other` from it, loses nothing of `other`'s).
    pub fn holds(&self, other: &Dataset) -> bool {
        other.empty()
            || other
                .at()
                .iter()
                .any(|(id, offset)| self.position_in(id).is_some_and(|p| p >= *offset))
    }

    /// `<id>@<offset>, <n> keys`, as the messages show a copy.
    pub fn describe(&self) -> String {
        let keys = self.keys.map(|k| format!(", {k} keys")).unwrap_or_default();
        format!("{}@{}{keys}", short(&self.replid), self.offset)
    }
}

/// The first 12 characters of a replication id: enough to tell histories apart in a message
/// (the full ids are in the pods' `/status`).
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_cluster_api::report::HistoryPosition;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

    fn copy(replid: &str, offset: i64, keys: u64) -> Dataset {
        Dataset {
            replid: replid.into(),
            replid2: None,
            second_offset: -1,
            offset,
            keys: Some(keys),
            recorded: None,
        }
    }

    #[test]
    fn same_history_higher_offset_holds_the_lower() {
        let ahead = copy(A, 2000, 10);
        let behind = copy(A, 1500, 9);
        assert!(ahead.holds(&behind));
        assert!(!behind.holds(&ahead));
        assert!(ahead.holds(&ahead.clone()));
    }

    #[test]
    fn unrelated_histories_hold_nothing_of_each_other_but_empty_copies_are_held_by_all() {
        let a = copy(A, 2000, 10);
        let b = copy(B, 9000, 50);
        assert!(!a.holds(&b) && !b.holds(&a));
        let fresh = copy(C, 14, 0);
        assert!(a.holds(&fresh) && b.holds(&fresh));
        // An empty copy holds nobody's data.
        assert!(!fresh.holds(&a));
    }

    #[test]
    fn a_failover_continues_the_old_history_up_to_second_offset() {
        // Promoted at offset 1000 of A: replid2 A, second_repl_offset 1001.
        let promoted = Dataset {
            replid2: Some(A.into()),
            second_offset: 1001,
            ..copy(B, 1500, 12)
        };
        assert!(promoted.holds(&copy(A, 1000, 10)));
        // A replica that got bytes the promoted one never had.
        assert!(!promoted.holds(&copy(A, 1200, 11)));
        assert_eq!(promoted.position_in(A), Some(1000));
        assert_eq!(promoted.position_in(C), None);
    }

    #[test]
    fn keys_restored_from_the_append_only_file_count_in_their_recorded_history() {
        let restarted = Dataset {
            recorded: Some((A.into(), 5000, 40)),
            ..copy(C, 0, 40)
        };
        assert!(restarted.holds(&copy(A, 4000, 30)));
        assert!(!restarted.holds(&copy(A, 6000, 45)));
        assert!(copy(A, 6000, 45).holds(&restarted));
        assert!(!copy(A, 4000, 30).holds(&restarted));
    }

    #[test]
    fn a_report_becomes_a_copy_only_with_the_history_fields_and_not_while_loading() {
        let mut r = InstanceReport {
            pod: "p".into(),
            master_replid: Some(A.into()),
            master_replid2: Some(NO_ID.into()),
            master_repl_offset: Some(77),
            keys: Some(3),
            recorded_history: Some(HistoryPosition {
                replid: A.into(),
                offset: 70,
                keys: 3,
            }),
            ..Default::default()
        };
        let c = Dataset::of(&r).unwrap();
        assert_eq!(c.replid2, None);
        assert_eq!(c.recorded, None, "the same history is not a second one");
        assert_eq!(c.describe(), "aaaaaaaaaaaa@77, 3 keys");
        r.loading = Some(true);
        assert_eq!(Dataset::of(&r), None);
        r.loading = None;
        r.master_replid = None;
        assert_eq!(Dataset::of(&r), None);
    }
}
