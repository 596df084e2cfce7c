//! Replication lag from the upstream's own offsets.
//!
//! Bytes: the upstream's current `master_repl_offset` (read from the upstream by the probe) minus
//! this replica's `slave_repl_offset`. Never from the replica's INFO alone: a replica's own
//! `master_repl_offset` equals what it has received, so a local computation reports ~0 forever.
//!
//! Seconds: the probe records `(time, upstream offset)` every interval. The replica has not yet
//! processed anything the upstream wrote after it reached the replica's offset, so the lag in
//! seconds is `now - t`, where `t` is the time of the first recorded sample whose upstream offset
//! is beyond the replica's offset. It is 0 when caught up, has the resolution of one probe
//! interval, and is a lower bound when the replica is behind the oldest sample kept.

use std::collections::VecDeque;

/// Recent upstream offsets with their timestamps (seconds on a monotonic clock).
#[derive(Debug, Default)]
pub struct OffsetHistory {
    samples: VecDeque<(f64, i64)>,
}

/// Samples kept: ten minutes at the default 1 s interval.
const CAPACITY: usize = 600;

impl OffsetHistory {
    /// Record the upstream offset read at `t`. An offset going backwards means another upstream
    /// (or a restarted one): the history no longer describes it, so it starts over.
    pub fn record(&mut self, t: f64, offset: i64) {
        if self.samples.back().is_some_and(|&(_, o)| offset < o) {
            self.samples.clear();
        }
        self.samples.push_back((t, offset));
        while self.samples.len() > CAPACITY {
            self.samples.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// Lag in seconds of a replica at `replica_offset`, at time `now`. None without samples.
    pub fn lag_seconds(&self, now: f64, replica_offset: i64) -> Option<f64> {
        let &(_, latest) = self.samples.back()?;
        if replica_offset >= latest {
            return Some(0.0);
        }
        let (t, _) = self
            .samples
            .iter()
            .find(|&&(_, o)| o > replica_offset)
            .copied()?;
        Some((now - t).max(0.0))
    }
}

/// `upstream - replica`, never negative (the two reads are not atomic: the replica may have
/// moved past the offset the probe read a moment earlier).
pub fn lag_bytes(upstream_offset: i64, replica_offset: i64) -> i64 {
    (upstream_offset - replica_offset).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_upstream_minus_replica_never_negative() {
        assert_eq!(lag_bytes(1000, 400), 600);
        assert_eq!(lag_bytes(1000, 1000), 0);
        assert_eq!(lag_bytes(1000, 1014), 0);
    }

    #[test]
    fn seconds_since_the_upstream_passed_the_replica() {
        let mut h = OffsetHistory::default();
        assert_eq!(h.lag_seconds(0.0, 0), None);
        for (t, o) in [(0.0, 100), (1.0, 100), (2.0, 200), (3.0, 300), (4.0, 300)] {
            h.record(t, o);
        }
        assert_eq!(h.lag_seconds(4.0, 300), Some(0.0));
        // Replica at 100: the upstream went beyond 100 at t=2.
        assert_eq!(h.lag_seconds(4.0, 100), Some(2.0));
        assert_eq!(h.lag_seconds(4.5, 250), Some(1.5));
        // Behind the oldest sample: a lower bound, age of the oldest sample.
        assert_eq!(h.lag_seconds(4.0, 50), Some(4.0));
    }

    #[test]
    fn an_offset_going_back_restarts_the_history_and_capacity_is_bounded() {
        let mut h = OffsetHistory::default();
        h.record(0.0, 500);
        h.record(1.0, 10);
        assert_eq!(h.lag_seconds(1.0, 5), Some(0.0));
        for i in 0..(CAPACITY as i64 + 50) {
            h.record(2.0 + i as f64, 10 + i);
        }
        assert_eq!(h.samples.len(), CAPACITY);
    }
}
