//! The kubelet's restart back-off (client-go `flowcontrol.Backoff` as used by kuberuntime
//! `doBackOff`): the first restart of a container is immediate, then each restart waits 10 s,
//! 20 s, 40 s, ... up to 300 s after the container finished; an entry not updated for twice
//! the maximum (10 min: the container ran that long) starts over. Also used for image
//! "pulls" (`ImagePullBackOff`).

use std::time::Duration;

use chrono::{DateTime, Utc};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Backoff {
    entry: Option<Entry>,
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    backoff: Duration,
    last_update: DateTime<Utc>,
}

fn expired(event: DateTime<Utc>, last_update: DateTime<Utc>) -> bool {
    (event - last_update).to_std().unwrap_or_default() > MAX * 2
}

impl Backoff {
    /// How long a restart must still wait, given when the container last finished
    /// (`IsInBackOffSince`); None: restart now.
    pub fn remaining(&self, finished: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
        let e = self.entry.as_ref()?;
        if expired(finished, e.last_update) {
            return None;
        }
        let since = (now - finished).to_std().unwrap_or_default();
        (since < e.backoff).then(|| e.backoff - since)
    }

    /// The current window (for the CrashLoopBackOff message).
    pub fn current(&self) -> Duration {
        self.entry.as_ref().map(|e| e.backoff).unwrap_or_default()
    }

    /// Record a restart (`Next`).
    pub fn next(&mut self, finished: DateTime<Utc>, now: DateTime<Utc>) {
        let backoff = match &self.entry {
            Some(e) if !expired(finished, e.last_update) => (e.backoff * 2).min(MAX),
            _ => INITIAL,
        };
        self.entry = Some(Entry {
            backoff,
            last_update: now,
        });
    }
}

/// Go's `time.Duration.String()` for whole seconds and minutes: `10s`, `5m0s`, `2m40s`.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    /// A container that crashes right after every start: the waits before each restart.
    #[test]
    fn schedule_doubles_from_immediate_to_five_minutes() {
        let mut b = Backoff::default();
        let mut now = 0i64;
        let mut waits = vec![];
        for _ in 0..9 {
            // Crashes one second after its start.
            now += 1;
            let finished = t(now);
            let wait = b
                .remaining(finished, t(now))
                .map(|d| d.as_secs())
                .unwrap_or(0);
            waits.push(wait);
            now += wait as i64;
            assert_eq!(
                b.remaining(finished, t(now)),
                None,
                "restartable after the wait"
            );
            b.next(finished, t(now));
        }
        assert_eq!(waits, [0, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(go_duration(b.current()), "5m0s");
    }

    #[test]
    fn resets_after_ten_minutes_of_running() {
        let mut b = Backoff::default();
        b.next(t(0), t(0));
        b.next(t(11), t(11));
        assert_eq!(b.current(), Duration::from_secs(20));
        // Ran 10 min and 1 s after its last restart: immediate restart, window back to 10 s.
        let finished = t(11 + 601);
        assert_eq!(b.remaining(finished, finished), None);
        b.next(finished, finished);
        assert_eq!(b.current(), INITIAL);
        assert_eq!(
            b.remaining(t(11 + 602), t(11 + 605)),
            Some(Duration::from_secs(7))
        );
    }
}
