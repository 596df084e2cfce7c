//! Waiting until something holds: every helper polls, gives up after a timeout, and says what it
//! was waiting for.

use std::time::{Duration, Instant};

/// How often [`poll`], [`wait_for`] and [`wait_until`] look.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Call `f` every `interval` until it returns `Some`: the value and how long it took. After
/// `timeout` (`f` is always called at least once, and once more after the deadline), an error
/// naming `what`.
pub fn poll_every<T>(
    interval: Duration,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<(T, Duration), String> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok((v, start.elapsed()));
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(interval);
    }
}

/// [`poll_every`] at [`INTERVAL`].
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    f: impl FnMut() -> Option<T>,
) -> Result<(T, Duration), String> {
    poll_every(INTERVAL, what, timeout, f)
}

/// [`poll`], failing the test on timeout: the value.
pub fn wait_for<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll(what, timeout, f).unwrap_or_else(|e| panic!("{e}")).0
}

/// Poll a condition: how long it took to hold, or `None` when it did not within `timeout` (for
/// tests that explain a timeout themselves).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    poll("", timeout, || f().then_some(()))
        .ok()
        .map(|(_, took)| took)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_returns_the_value_or_names_what_it_waited_for() {
        let mut n = 0;
        let (v, _) = poll("three calls", Duration::from_secs(5), || {
            n += 1;
            (n == 3).then_some(n)
        })
        .unwrap();
        assert_eq!(v, 3);
        let e = poll_every(Duration::from_millis(1), "never", Duration::ZERO, || {
            None::<()>
        });
        assert_eq!(e.unwrap_err(), "timed out after 0ns waiting for never");
        assert!(wait_until(Duration::ZERO, || true).is_some());
        assert!(wait_until(Duration::ZERO, || false).is_none());
    }
}
