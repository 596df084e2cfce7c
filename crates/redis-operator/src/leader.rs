//! Leader election on a `coordination.k8s.io` Lease, so two operator replicas never act at once.
//!
//! The rules are client-go's `leaderelection` (the `RenewDeadline` semantics of Kubernetes'
//! own controllers):
//!
//! - The holder renews every `retry_period`. It may act only until `renew_deadline` after the
//!   start of its last successful renewal; `renew_deadline < lease_duration`, so it has stopped
//!   acting before anyone may take the Lease over. Every request carries a timeout (a renewal
//!   that hangs counts as failed once the deadline passes), and [`Leadership::is_leader`] turns
//!   false the moment the deadline passes, whatever the loop is doing: the Kubernetes adapter
//!   refuses every write from then on, and the process exits.
//! - A candidate takes the Lease over only when it has expired twice over: by the holder's own
//!   `renewTime` ([`decide`]) and by the candidate's clock, `lease_duration` after it last saw
//!   the Lease change ([`Observed`]). The second rule is what makes clock skew between nodes
//!   harmless.
//! - Writes use optimistic concurrency (`resourceVersion`): two candidates racing for an
//!   expired Lease cannot both win.
//!
//! [`decide`] and [`Observed`] are pure; [`run`] is the loop, generic over the Lease API
//! ([`LeaseApi`]) so that tests drive it with a fake API and tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No lease exists: create it holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Someone else held it but it expired (or was released): take it over.
    TakeOver,
    /// Someone else holds a live lease.
    Wait,
}

/// What to do with `lease`, by its own timestamps (the holder's clock) only. [`Observed`] adds
/// the candidate's own clock.
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
        Some(MicroTime(renewed)) if renewed.checked_add(duration).is_ok_and(|end| end > now) => {
            Decision::Wait
        }
        _ => Decision::TakeOver,
    }
}

/// The timings of the election (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a Lease is valid after its last renewal, for the others.
    pub lease_duration: Duration,
    /// How long the holder may act after the start of its last successful renewal.
    pub renew_deadline: Duration,
    /// How often the holder renews and a candidate tries.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// The holder must stop before the others may start, with room for a retry in between.
    pub fn check(&self) -> Result<(), String> {
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?}): the leader must stop acting before another replica may take the Lease",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period >= self.renew_deadline {
            return Err(format!(
                "the retry period ({:?}) must be shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// A candidate's own record of the Lease: when (on its monotonic clock) it last saw the Lease
/// change. The Lease is only expired for it once it has not changed for `lease_duration`.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    last: Option<(String, Instant)>,
}

impl Observed {
    /// Note the Lease as read at `now`; returns since when it has been unchanged.
    pub fn note(&mut self, lease: Option<&LeaseSpec>, now: Instant) -> Instant {
        let key = lease
            .map(|s| {
                format!(
                    "{:?}/{:?}/{:?}/{:?}",
                    s.holder_identity, s.renew_time, s.acquire_time, s.lease_transitions
                )
            })
            .unwrap_or_default();
        match &self.last {
            Some((k, since)) if *k == key => *since,
            _ => {
                self.last = Some((key, now));
                now
            }
        }
    }
}

/// Whether this replica may act, shared with whoever writes: valid until a deadline on the
/// monotonic clock.
#[derive(Clone, Debug, Default)]
pub struct Leadership {
    until: Arc<Mutex<Option<Instant>>>,
}

impl Leadership {
    /// A leadership that is always valid (`--no-leader-election`: a single replica).
    pub fn always() -> Leadership {
        let l = Leadership::default();
        *l.until.lock().expect("leadership lock") = Some(Instant::now() + FOREVER);
        l
    }

    /// This replica holds the Lease and its renew deadline has not passed.
    pub fn is_leader(&self) -> bool {
        self.until
            .lock()
            .expect("leadership lock")
            .is_some_and(|d| Instant::now() < d)
    }

    /// The moment leadership ends unless renewed.
    pub fn deadline(&self) -> Option<Instant> {
        *self.until.lock().expect("leadership lock")
    }

    fn extend_to(&self, until: Instant) {
        *self.until.lock().expect("leadership lock") = Some(until);
    }

    fn end(&self) {
        *self.until.lock().expect("leadership lock") = None;
    }
}

/// About 30 years: "no deadline" without overflowing `Instant` arithmetic.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// Why a Lease request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseError {
    /// Somebody else wrote the Lease first (HTTP 409).
    Conflict,
    Other(String),
}

/// The three Lease requests the election makes.
pub trait LeaseApi: Send + Sync {
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, LeaseError>> + Send;
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<(), LeaseError>> + Send;
    /// Replace with the `resourceVersion` the Lease was read with.
    fn replace(&self, lease: &Lease) -> impl Future<Output = Result<(), LeaseError>> + Send;
}

/// One candidate in the election.
pub struct Elector<A> {
    api: A,
    identity: String,
    timing: Timing,
    /// The wall clock written into the Lease (`acquireTime`, `renewTime`).
    wall: Box<dyn Fn() -> Timestamp + Send + Sync>,
    observed: Observed,
}

impl<A: LeaseApi> Elector<A> {
    pub fn new(api: A, identity: &str, timing: Timing) -> Self {
        Self::with_wall_clock(api, identity, timing, Box::new(Timestamp::now))
    }

    pub fn with_wall_clock(
        api: A,
        identity: &str,
        timing: Timing,
        wall: Box<dyn Fn() -> Timestamp + Send + Sync>,
    ) -> Self {
        Elector {
            api,
            identity: identity.into(),
            timing,
            wall,
            observed: Observed::default(),
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// One round: one GET and at most one write, all within `budget`. Ok(true): we hold the
    /// Lease, renewed or acquired in this round.
    pub async fn try_lead(&mut self, budget: Duration) -> Result<bool, String> {
        match tokio::time::timeout(budget, self.round()).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "the Lease request did not complete within {budget:?}"
            )),
        }
    }

    async fn round(&mut self) -> Result<bool, String> {
        let existing = self.api.get().await.map_err(|e| format!("{e:?}"))?;
        let spec_now = existing.as_ref().and_then(|l| l.spec.as_ref());
        let unchanged_since = self.observed.note(spec_now, Instant::now());
        let now = (self.wall)();
        let mut decision = decide(spec_now, &self.identity, now);
        if decision == Decision::TakeOver
            && spec_now.is_some_and(|s| !s.holder_identity.as_deref().unwrap_or("").is_empty())
            && unchanged_since.elapsed() < self.timing.lease_duration
        {
            // Expired by the holder's clock, not yet by ours: clocks may be skewed.
            decision = Decision::Wait;
        }
        let mut spec = spec_now.cloned().unwrap_or_default();
        match decision {
            Decision::Wait => return Ok(false),
            Decision::Renew => spec.renew_time = Some(MicroTime(now)),
            Decision::Create | Decision::TakeOver => {
                spec.holder_identity = Some(self.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.renew_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        spec.lease_duration_seconds = Some(self.timing.lease_duration.as_secs() as i32);
        let result = match existing {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta::default(),
                    spec: Some(spec),
                };
                self.api.create(&lease).await
            }
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.api.replace(&lease).await
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(LeaseError::Conflict) => Ok(false),
            Err(LeaseError::Other(e)) => Err(e),
        }
    }

    /// Give the Lease up (on shutdown) so a standby takes over at once instead of after expiry.
    pub async fn release(&mut self) {
        let release = async {
            if let Ok(Some(mut lease)) = self.api.get().await
                && let Some(spec) = lease.spec.as_mut()
                && spec.holder_identity.as_deref() == Some(self.identity.as_str())
            {
                spec.holder_identity = None;
                let _ = self.api.replace(&lease).await;
            }
        };
        let _ = tokio::time::timeout(self.timing.retry_period, release).await;
    }
}

/// What [`run`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The Lease could be read and another replica holds it: this one is a ready standby.
    Standby,
    /// This replica now holds the Lease.
    Acquired,
    /// It lost it: its renew deadline passed (or another replica holds it). It has already
    /// stopped acting ([`Leadership::is_leader`] is false).
    Lost,
}

/// The election loop: try to acquire every `retry_period`; once leading, renew every
/// `retry_period`, each renewal bounded by what is left until the deadline. `leadership` is
/// extended by every successful renewal (to its start + `renew_deadline`) and ends when the
/// deadline passes. `on_event` hears of every change; the loop returns after the first loss
/// (a replica that lost the Lease restarts as a standby, as client-go's users do).
pub async fn run<A: LeaseApi>(
    elector: &mut Elector<A>,
    leadership: &Leadership,
    mut on_event: impl FnMut(Event),
) {
    let t = elector.timing;
    // Standby.
    loop {
        let started = Instant::now();
        match elector.try_lead(t.renew_deadline).await {
            Ok(true) => {
                leadership.extend_to(started + t.renew_deadline);
                on_event(Event::Acquired);
                break;
            }
            Ok(false) => on_event(Event::Standby),
            Err(e) => tracing::warn!(error = %e, "leader election"),
        }
        tokio::time::sleep_until(started + t.retry_period).await;
    }
    // Leading.
    loop {
        let deadline = leadership.deadline().expect("leading");
        let next = (Instant::now() + t.retry_period).min(deadline);
        tokio::time::sleep_until(next).await;
        let started = Instant::now();
        if started >= deadline {
            break;
        }
        match elector.try_lead(deadline - started).await {
            Ok(true) => leadership.extend_to(started + t.renew_deadline),
            Ok(false) => {
                tracing::error!("another replica holds the leader Lease");
                break;
            }
            // Retry until the deadline: a single failed request is no reason to stop.
            Err(e) => tracing::warn!(error = %e, "renewing the leader Lease failed"),
        }
    }
    leadership.end();
    on_event(Event::Lost);
}

/// The Lease API of a real cluster.
pub struct KubeLease {
    api: Api<Lease>,
    name: String,
}

impl KubeLease {
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        KubeLease {
            api: Api::namespaced(client, namespace),
            name: name.into(),
        }
    }
}

fn lease_error(e: kube::Error) -> LeaseError {
    match e {
        kube::Error::Api(s) if s.code == 409 => LeaseError::Conflict,
        e => LeaseError::Other(e.to_string()),
    }
}

impl LeaseApi for KubeLease {
    async fn get(&self) -> Result<Option<Lease>, LeaseError> {
        self.api.get_opt(&self.name).await.map_err(lease_error)
    }

    async fn create(&self, lease: &Lease) -> Result<(), LeaseError> {
        let mut lease = lease.clone();
        lease.metadata.name = Some(self.name.clone());
        self.api
            .create(&PostParams::default(), &lease)
            .await
            .map(|_| ())
            .map_err(lease_error)
    }

    async fn replace(&self, lease: &Lease) -> Result<(), LeaseError> {
        // Replace carries resourceVersion: a concurrent writer makes this a 409.
        self.api
            .replace(&self.name, &PostParams::default(), lease)
            .await
            .map(|_| ())
            .map_err(lease_error)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;

    fn lease(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        let now = Timestamp::from_second(1000).unwrap();
        assert_eq!(decide(None, "a", now), Decision::Create);
        assert_eq!(decide(Some(&lease("a", 990)), "a", now), Decision::Renew);
        assert_eq!(decide(Some(&lease("b", 990)), "a", now), Decision::Wait);
        assert_eq!(decide(Some(&lease("b", 985)), "a", now), Decision::TakeOver);
        assert_eq!(decide(Some(&lease("b", 984)), "a", now), Decision::TakeOver);
        assert_eq!(decide(Some(&lease("", 999)), "a", now), Decision::TakeOver);
        let no_times = LeaseSpec {
            holder_identity: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(decide(Some(&no_times), "a", now), Decision::TakeOver);
    }

    #[test]
    fn the_leader_stops_before_the_lease_can_expire_for_others() {
        let t = Timing::default();
        assert_eq!(t.check(), Ok(()));
        assert!(t.renew_deadline < t.lease_duration);
        let bad = Timing {
            renew_deadline: t.lease_duration,
            ..t
        };
        assert!(bad.check().unwrap_err().contains("must be shorter"));
    }

    /// One Lease object as an API server stores it: a resourceVersion that changes with every
    /// write, 409 on a stale replace or a create of an existing object.
    #[derive(Default)]
    struct Store {
        lease: Mutex<Option<Lease>>,
        version: AtomicU64,
    }

    /// One replica's connection to the store; its requests can be made to hang or fail.
    struct FakeApi {
        store: Arc<Store>,
        hang: Arc<AtomicBool>,
        fail: Arc<AtomicBool>,
    }

    impl FakeApi {
        async fn gate(&self) -> Result<(), LeaseError> {
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(LeaseError::Other("connection refused".into()));
            }
            Ok(())
        }
    }

    impl LeaseApi for FakeApi {
        async fn get(&self) -> Result<Option<Lease>, LeaseError> {
            self.gate().await?;
            Ok(self.store.lease.lock().unwrap().clone())
        }

        async fn create(&self, lease: &Lease) -> Result<(), LeaseError> {
            self.gate().await?;
            let mut stored = self.store.lease.lock().unwrap();
            if stored.is_some() {
                return Err(LeaseError::Conflict);
            }
            let mut lease = lease.clone();
            let v = self.store.version.fetch_add(1, Ordering::SeqCst) + 1;
            lease.metadata.resource_version = Some(v.to_string());
            *stored = Some(lease);
            Ok(())
        }

        async fn replace(&self, lease: &Lease) -> Result<(), LeaseError> {
            self.gate().await?;
            let mut stored = self.store.lease.lock().unwrap();
            let current = stored
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone());
            if current != lease.metadata.resource_version {
                return Err(LeaseError::Conflict);
            }
            let mut lease = lease.clone();
            let v = self.store.version.fetch_add(1, Ordering::SeqCst) + 1;
            lease.metadata.resource_version = Some(v.to_string());
            *stored = Some(lease);
            Ok(())
        }
    }

    struct Replica {
        leadership: Leadership,
        hang: Arc<AtomicBool>,
        fail: Arc<AtomicBool>,
        events: Arc<Mutex<Vec<(Duration, Event)>>>,
    }

    /// A replica running the election loop over `store`, its wall clock `skew` ahead of the
    /// shared (paused) tokio clock.
    fn replica(store: &Arc<Store>, name: &str, skew: i64, start: Instant) -> Replica {
        let hang = Arc::new(AtomicBool::new(false));
        let fail = Arc::new(AtomicBool::new(false));
        let api = FakeApi {
            store: store.clone(),
            hang: hang.clone(),
            fail: fail.clone(),
        };
        let base = Timestamp::from_second(1_000_000 + skew).unwrap();
        let wall = Box::new(move || {
            base.checked_add(SignedDuration::try_from(start.elapsed()).unwrap())
                .unwrap()
        });
        let mut elector = Elector::with_wall_clock(api, name, Timing::default(), wall);
        let leadership = Leadership::default();
        let events = Arc::new(Mutex::new(Vec::new()));
        let (l, e) = (leadership.clone(), events.clone());
        tokio::spawn(async move {
            loop {
                let e2 = e.clone();
                run(&mut elector, &l, |ev| {
                    e2.lock().unwrap().push((start.elapsed(), ev))
                })
                .await;
            }
        });
        Replica {
            leadership,
            hang,
            fail,
            events,
        }
    }

    /// Sample both replicas every 50 ms for `secs` seconds of (paused, simulated) time: never
    /// both leading. Returns who led at the end.
    async fn watch(a: &Replica, b: &Replica, secs: u64) -> (bool, bool) {
        for _ in 0..secs * 20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (la, lb) = (a.leadership.is_leader(), b.leadership.is_leader());
            assert!(!(la && lb), "two leaders at once");
        }
        (a.leadership.is_leader(), b.leadership.is_leader())
    }

    async fn failure_hands_over_without_overlap(make_fail: impl Fn(&Replica), skew: i64) {
        let start = Instant::now();
        let store = Arc::new(Store::default());
        let a = replica(&store, "a", 0, start);
        assert_eq!(watch(&a, &a_dummy(), 1).await, (true, false));
        let b = replica(&store, "b", skew, start);
        assert_eq!(watch(&a, &b, 30).await, (true, false), "a keeps leading");
        // a's renewals hang (or fail) from now on.
        let broke = start.elapsed();
        make_fail(&a);
        let (la, lb) = watch(&a, &b, 40).await;
        assert!(!la && lb, "b took over: a {la}, b {lb}");
        let lost = a
            .events
            .lock()
            .unwrap()
            .iter()
            .find(|(_, e)| *e == Event::Lost)
            .map(|(t, _)| *t)
            .expect("a reported the loss");
        let acquired = b
            .events
            .lock()
            .unwrap()
            .iter()
            .find(|(_, e)| *e == Event::Acquired)
            .map(|(t, _)| *t)
            .unwrap();
        // a stopped within its renew deadline of its last renewal, b started only after the
        // Lease duration had passed on its own clock: at least 5 s apart.
        assert!(
            lost <= broke + Duration::from_secs(10),
            "{lost:?} {broke:?}"
        );
        assert!(
            acquired >= lost + Duration::from_secs(4),
            "{acquired:?} {lost:?}"
        );
    }

    /// A replica that never runs: a placeholder for "nobody else".
    fn a_dummy() -> Replica {
        Replica {
            leadership: Leadership::default(),
            hang: Arc::new(AtomicBool::new(false)),
            fail: Arc::new(AtomicBool::new(false)),
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_renewal_hangs_stops_before_another_takes_over() {
        failure_hands_over_without_overlap(|a| a.hang.store(true, Ordering::SeqCst), 0).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_renewal_fails_stops_before_another_takes_over() {
        failure_hands_over_without_overlap(|a| a.fail.store(true, Ordering::SeqCst), 0).await;
    }

    /// The standby's wall clock runs 12 s ahead: by the Lease's own timestamps it looks expired
    /// 12 s early, but the standby also counts on its own clock from when it saw the Lease
    /// change, so it still waits the full duration.
    #[tokio::test(start_paused = true)]
    async fn a_standby_with_a_clock_ahead_still_waits_the_full_lease() {
        failure_hands_over_without_overlap(|a| a.hang.store(true, Ordering::SeqCst), 12).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_leader_keeps_the_lease_and_a_standby_waits() {
        let start = Instant::now();
        let store = Arc::new(Store::default());
        let a = replica(&store, "a", 0, start);
        let b = replica(&store, "b", 0, start);
        let (la, lb) = watch(&a, &b, 120).await;
        assert!(la ^ lb, "exactly one leads");
        let changes = |r: &Replica| {
            r.events
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, e)| *e != Event::Standby)
                .count()
        };
        assert_eq!(changes(&a) + changes(&b), 1, "one acquisition, no loss");
        // The leader's API comes back after a short failure (shorter than the deadline): it
        // keeps leading.
        let leader = if la { &a } else { &b };
        leader.fail.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
        leader.fail.store(false, Ordering::SeqCst);
        assert_eq!(watch(&a, &b, 30).await, (la, lb));
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_ends_at_the_deadline_even_while_the_loop_is_stuck() {
        let l = Leadership::default();
        assert!(!l.is_leader());
        l.extend_to(Instant::now() + Duration::from_secs(10));
        assert!(l.is_leader());
        tokio::time::sleep(Duration::from_millis(9_999)).await;
        assert!(l.is_leader());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!l.is_leader(), "no renewal: not leader at the deadline");
        assert!(Leadership::always().is_leader());
    }
}
