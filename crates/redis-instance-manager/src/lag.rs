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
//!
//! [`Lag`] keeps that history for the upstream the topology names and starts it over when the
//! upstream changes; [`reading`] says what a tick's observations allow to measure.

use std::collections::VecDeque;

use redis_cluster_api::report::UpstreamContact;
use redis_cluster_api::topology::Upstream;

use crate::info::Observed;

/// Recent upstream offsets with their timestamps (seconds on a monotonic clock).
#[derive(Debug, Default)]
pub struct OffsetHistory {
    samples: VecDeque<(f64, i64)>,
}

/// Samples kept: ten minutes at the default 1 s interval.
const CAPACITY: usize = 600;

/// The window the upstream's write rate is measured over: long enough to smooth bursts, short
/// enough to follow a change of load within a minute.
pub const RATE_WINDOW: f64 = 60.0;
/// The shortest span of samples a rate is computed from.
pub const RATE_MIN_SPAN: f64 = 5.0;
/// What [`outage_seconds`] reports when the upstream writes nothing: a day, "as long as you
/// like" (a gauge cannot say infinity portably).
pub const OUTAGE_CAP_SECONDS: f64 = 86_400.0;

/// How long the link to the upstream can be down, at the upstream's current write rate, before
/// this replica can no longer resume with a partial resync: the upstream keeps the last
/// `backlog` bytes of its stream; the replica is `lag` bytes behind already, so `backlog - lag`
/// more bytes may be written while it is away (Redis 7.0 serves a `PSYNC` only from an offset
/// still in the backlog). 0 when the replica is already beyond what the backlog holds; capped
/// at [`OUTAGE_CAP_SECONDS`] when nothing is written.
pub fn outage_seconds(backlog: i64, lag: i64, rate: f64) -> f64 {
    let room = (backlog - lag.max(0)).max(0) as f64;
    if rate <= 0.0 {
        return if room > 0.0 { OUTAGE_CAP_SECONDS } else { 0.0 };
    }
    (room / rate).min(OUTAGE_CAP_SECONDS)
}

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

    /// How fast the upstream writes, in bytes per second, over the samples of the last
    /// [`RATE_WINDOW`] seconds before `now`. None until they span at least [`RATE_MIN_SPAN`].
    pub fn write_rate(&self, now: f64) -> Option<f64> {
        let &(t1, o1) = self.samples.back()?;
        let &(t0, o0) = self
            .samples
            .iter()
            .find(|&&(t, _)| t >= now - RATE_WINDOW)?;
        let span = t1 - t0;
        (span >= RATE_MIN_SPAN).then(|| (o1 - o0).max(0) as f64 / span)
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

/// What one tick can measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Nothing to lag behind: the local Redis answered and the topology names no upstream
    /// (primary, fenced, or no topology yet). The lag is 0.
    NoUpstream,
    /// The local Redis replicates the topology's upstream and both offsets were read this tick.
    Offsets { upstream: i64, replica: i64 },
    /// Not measurable: the local Redis or the probe did not answer, or Redis does not replicate
    /// the topology's upstream (yet). `/status` then says `null`; the gauges keep their value.
    Unknown,
}

/// What this tick's observations allow to measure. `upstream` is the topology's upstream
/// (replicas only), `upstream_offset` what the probe read from it.
pub fn reading(
    upstream: Option<&Upstream>,
    observed: Option<&Observed>,
    upstream_offset: Option<i64>,
) -> Reading {
    match (upstream, observed, upstream_offset) {
        (None, Some(_), _) => Reading::NoUpstream,
        (Some(up), Some(o), Some(uo)) if o.master == Some((up.host.clone(), up.port)) => {
            Reading::Offsets {
                upstream: uo,
                replica: o.processed_offset(),
            }
        }
        _ => Reading::Unknown,
    }
}

/// The lag reported for one tick (`None`: not measurable, see [`Reading::Unknown`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LagNow {
    pub bytes: Option<i64>,
    pub seconds: Option<f64>,
    /// The upstream's write rate, bytes per second ([`OffsetHistory::write_rate`]).
    pub write_rate: Option<f64>,
}

/// The offset history of the upstream the topology names.
#[derive(Debug, Default)]
pub struct Lag {
    history: OffsetHistory,
    upstream: Option<(String, u16)>,
    /// The last reading (monotonic seconds, the contact without `seconds_ago`; its `at` is
    /// the wall clock of that moment).
    last_seen: Option<(f64, UpstreamContact)>,
}

impl Lag {
    /// Record this tick's reading at `now` (seconds, monotonic) and say the lag. A different
    /// upstream than last tick (or none) starts the history over: the samples of another server
    /// say nothing about this one.
    pub fn update(
        &mut self,
        now: f64,
        upstream: Option<&Upstream>,
        observed: Option<&Observed>,
        upstream_offset: Option<i64>,
    ) -> LagNow {
        let target = upstream.map(|u| (u.host.clone(), u.port));
        if target != self.upstream {
            self.history.clear();
            self.upstream = target;
            self.last_seen = None;
        }
        let now_lag = match reading(upstream, observed, upstream_offset) {
            Reading::NoUpstream => LagNow {
                bytes: Some(0),
                seconds: Some(0.0),
                write_rate: None,
            },
            Reading::Offsets { upstream, replica } => {
                self.history.record(now, upstream);
                let lag = LagNow {
                    bytes: Some(lag_bytes(upstream, replica)),
                    seconds: self.history.lag_seconds(now, replica),
                    write_rate: self.history.write_rate(now),
                };
                if let Some(o) = observed {
                    self.last_seen = Some((
                        now,
                        UpstreamContact {
                            offset: upstream,
                            replid: o.master_replid.clone(),
                            lag_bytes: lag.bytes,
                            lag_seconds: lag.seconds,
                            seconds_ago: 0.0,
                            at: Some(crate::rfc3339(std::time::SystemTime::now())),
                        },
                    ));
                }
                return lag;
            }
            Reading::Unknown => LagNow::default(),
        };
        // The upstream answered although no lag can be measured (the local Redis cannot be
        // read, or does not replicate it yet): its offset is still the freshest record of how
        // far it is; this replica's lag is unknown now.
        if let (Some(offset), Some((at, contact))) = (upstream_offset, self.last_seen.as_mut())
            && upstream.is_some()
        {
            *at = now;
            contact.offset = offset;
            contact.lag_bytes = None;
            contact.lag_seconds = None;
            contact.at = Some(crate::rfc3339(std::time::SystemTime::now()));
        }
        now_lag
    }
}

impl Lag {
    /// The last reading of the upstream, as of `now` (monotonic seconds).
    pub fn last_seen(&self, now: f64) -> Option<UpstreamContact> {
        let (at, contact) = self.last_seen.as_ref()?;
        Some(UpstreamContact {
            seconds_ago: (now - at).max(0.0),
            ..contact.clone()
        })
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
    use crate::info::RedisRole;
    use crate::testing::{observed, upstream};

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

    fn replica_at(host: &str, port: u16, offset: i64) -> Observed {
        let mut o = observed(RedisRole::Slave, Some((host, port)));
        o.slave_repl_offset = Some(offset);
        o
    }

    /// What a tick can measure, every branch of [`reading`].
    #[test]
    fn what_a_tick_can_measure() {
        let src = upstream("src", 6379, false, None);
        let src = Some(&src);
        let at = |host, port, offset| Some(replica_at(host, port, offset));
        let master = || Some(observed(RedisRole::Master, None));
        let offsets = |upstream, replica| Reading::Offsets { upstream, replica };
        // (the topology's upstream, the local Redis, the upstream's offset probed, reading)
        let rows = [
            // No upstream (primary, fenced, no topology): 0 while Redis answers.
            (None, master(), None, Reading::NoUpstream),
            (None, at("src", 6379, 5), Some(10), Reading::NoUpstream),
            (None, None, None, Reading::Unknown),
            // A replica of the upstream, caught up and behind.
            (src, at("src", 6379, 1500), Some(1500), offsets(1500, 1500)),
            (src, at("src", 6379, 1500), Some(2000), offsets(2000, 1500)),
            // The probe timed out; the local Redis cannot be read.
            (src, at("src", 6379, 1500), None, Reading::Unknown),
            (src, None, Some(2000), Reading::Unknown),
            // The upstream changed and Redis still replicates the old one (same host, another
            // port is another upstream); not re-pointed yet.
            (src, at("old-src", 6379, 1500), Some(2000), Reading::Unknown),
            (src, at("src", 6380, 1500), Some(2000), Reading::Unknown),
            (src, master(), Some(2000), Reading::Unknown),
        ];
        for (i, (up, o, uo, expected)) in rows.iter().enumerate() {
            assert_eq!(reading(*up, o.as_ref(), *uo), *expected, "row {i}");
        }
    }

    /// The last reading of the upstream outlives the link (a probe that times out, a local
    /// Redis that cannot be read), ages, and is forgotten when the upstream changes.
    #[test]
    fn the_last_reading_of_the_upstream_is_kept_while_it_does_not_answer() {
        let a = upstream("a", 6379, false, None);
        let b = upstream("b", 6379, false, None);
        let mut lag = Lag::default();
        assert_eq!(lag.last_seen(0.0), None);
        let mut replica = replica_at("a", 6379, 1000);
        replica.master_replid = "history-a".into();
        lag.update(1.0, Some(&a), Some(&replica), Some(1500));
        // The link is cut: the probe does not answer, then Redis itself cannot be read.
        lag.update(2.0, Some(&a), Some(&replica), None);
        lag.update(3.0, Some(&a), None, None);
        // `at` is the wall clock of the reading: set, and the same at every later look.
        let at = lag.last_seen(4.5).unwrap().at;
        assert!(at.as_deref().is_some_and(|a| a.ends_with('Z')), "{at:?}");
        assert_eq!(lag.last_seen(9.0).unwrap().at, at);
        let without_at = |c: Option<UpstreamContact>| c.map(|c| UpstreamContact { at: None, ..c });
        assert_eq!(
            without_at(lag.last_seen(4.5)),
            Some(UpstreamContact {
                offset: 1500,
                replid: "history-a".into(),
                lag_bytes: Some(500),
                lag_seconds: Some(0.0),
                seconds_ago: 3.5,
                at: None,
            })
        );
        // The local Redis stalls while the upstream still answers: the upstream's offset is
        // recorded, this replica's lag is unknown.
        lag.update(6.0, Some(&a), None, Some(4000));
        assert_eq!(
            without_at(lag.last_seen(6.0)),
            Some(UpstreamContact {
                offset: 4000,
                replid: "history-a".into(),
                lag_bytes: None,
                lag_seconds: None,
                seconds_ago: 0.0,
                at: None,
            })
        );
        lag.update(7.0, Some(&b), Some(&replica), None);
        assert_eq!(lag.last_seen(7.0), None, "another upstream: forgotten");
    }

    /// Lag over ticks: the history belongs to one upstream and starts over when it changes.
    #[test]
    fn the_history_starts_over_when_the_upstream_changes() {
        let a = upstream("a", 6379, false, None);
        let b = upstream("b", 6379, false, None);
        let mut lag = Lag::default();
        let tick = |lag: &mut Lag, now: f64, up: &Upstream, replica: i64, upstream: i64| {
            lag.update(
                now,
                Some(up),
                Some(&replica_at(&up.host, 6379, replica)),
                Some(upstream),
            )
        };
        // (time, upstream, replica offset, upstream offset, lag bytes, lag seconds)
        let rows: [(f64, &Upstream, i64, i64, i64, f64); 6] = [
            (0.0, &a, 100, 100, 0, 0.0),
            (1.0, &a, 100, 300, 200, 0.0),
            (3.0, &a, 100, 500, 400, 2.0),
            (4.0, &a, 500, 500, 0, 0.0),
            // Re-pointed at b, far ahead: b's first sample is the oldest known.
            (5.0, &b, 500, 9000, 8500, 0.0),
            (7.0, &b, 500, 9100, 8600, 2.0),
        ];
        for (now, up, replica, upstream, bytes, seconds) in rows {
            assert_eq!(
                tick(&mut lag, now, up, replica, upstream),
                LagNow {
                    bytes: Some(bytes),
                    seconds: Some(seconds),
                    write_rate: None,
                },
                "t={now}"
            );
        }
        // A tick that cannot measure says nothing and forgets nothing.
        assert_eq!(lag.update(8.0, Some(&b), None, None), LagNow::default());
        assert_eq!(
            tick(&mut lag, 9.0, &b, 500, 9100),
            LagNow {
                bytes: Some(8600),
                seconds: Some(4.0),
                write_rate: None,
            }
        );
        // A primary: 0, and the history of b is gone.
        let primary = observed(RedisRole::Master, None);
        assert_eq!(
            lag.update(10.0, None, Some(&primary), None),
            LagNow {
                bytes: Some(0),
                seconds: Some(0.0),
                write_rate: None,
            }
        );
        assert_eq!(
            tick(&mut lag, 11.0, &b, 500, 9100),
            LagNow {
                bytes: Some(8600),
                seconds: Some(0.0),
                write_rate: None,
            }
        );
    }

    /// The upstream's write rate over the last minute, and the outage its backlog absorbs.
    #[test]
    fn write_rate_and_the_outage_the_backlog_absorbs() {
        let mut h = OffsetHistory::default();
        assert_eq!(h.write_rate(0.0), None);
        for t in 0..=4 {
            h.record(t as f64, 1000 * t);
        }
        assert_eq!(h.write_rate(4.0), None, "4 s of samples are not enough");
        h.record(5.0, 5000);
        assert_eq!(h.write_rate(5.0), Some(1000.0));
        // Only the last minute counts: 100 s of 1000 B/s, then a minute of 10 B/s.
        let mut h = OffsetHistory::default();
        for t in 0..=100 {
            h.record(t as f64, 1000 * t);
        }
        for t in 101..=160 {
            h.record(t as f64, 100_000 + 10 * (t - 100));
        }
        assert_eq!(h.write_rate(160.0), Some(10.0));

        // (backlog, lag, rate, seconds)
        let rows = [
            (1_048_576, 0, 1024.0, 1024.0),
            (1_048_576, 524_288, 1024.0, 512.0),
            // Already beyond the backlog: any outage is a full resync.
            (1_048_576, 2_000_000, 1024.0, 0.0),
            // Nothing written: capped.
            (1_048_576, 0, 0.0, OUTAGE_CAP_SECONDS),
            (1_048_576, 2_000_000, 0.0, 0.0),
            (134_217_728, 0, 1.0, OUTAGE_CAP_SECONDS),
            (134_217_728, 0, 2_097_152.0, 64.0),
        ];
        for (backlog, lag, rate, seconds) in rows {
            assert_eq!(
                outage_seconds(backlog, lag, rate),
                seconds,
                "{backlog} {lag} {rate}"
            );
        }
    }
}
