//! The Events the operator records: every step a user cares about, so `kubectl describe` tells
//! the story. Their reasons are user-visible (and matched by tools), so they are one enum whose
//! strings are fixed by a test.

/// `Normal` or `Warning`, as Kubernetes Events have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Why an Event was recorded. [`EventReason::as_str`] is the Event's `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventReason {
    /// The leader is told to become a standalone primary (`promote: true`).
    Promoting,
    /// The leader confirmed it is primary: the promotion is complete.
    Promoted,
    /// The cluster returns to replicating its source; local writes since the promotion are lost.
    Demoting,
    /// A pod's topology annotation was written.
    TopologyPublished,
    /// The operator fences the unavailable primary and promotes the best replica.
    FailingOver,
    /// The primary is unavailable but the operator cannot fail over yet.
    FailoverBlocked,
    /// `status.currentPrimary` moved to another pod.
    Failover,
    /// A replica held writes its upstream's new primary never got, and resynchronises in full.
    FullResyncAfterFailover,
    /// The link to the external source went down.
    SourceLinkDown,
    /// The link to the external source is back.
    SourceLinkUp,
    /// The spec and the Secrets it names are usable again.
    ConfigurationValid,
    /// A Secret the spec names does not exist.
    SecretMissing,
    /// A Secret the spec names has no usable key.
    SecretKeyMissing,
    /// Conflicting fields that slipped past the schema.
    InvalidSpec,
    /// A combination the operator does not support yet.
    Unsupported,
    /// A primary came back without the data it (or its replicas) held: it is kept fenced and
    /// out of the `-leader` Service.
    PrimaryDataLost,
    /// A pod refuses its upstream's unrelated replication history (a sync would replace its
    /// data) until the user accepts it.
    UnrelatedHistory,
    /// No pod holds every other pod's data: a promotion waits for the user's choice.
    PromotionBlocked,
    /// After a promotion, the former source still accepts writes.
    FormerSourceWritable,
    /// The former source stopped accepting writes.
    FormerSourceNotWritable,
    /// An annotation the operator reads cannot be used (a topology epoch no later epoch can
    /// follow, `redis.io/promote-pod` naming no pod).
    InvalidAnnotation,
    /// The operator asked the Sentinels to fail over a primary that lost its data (or that
    /// restarted while a replica holds more of its former history).
    SentinelFailover,
    /// A primary restarted with its data under a new replication history: it is kept fenced
    /// and the best replica of its former history takes over, or, when no replica holds that
    /// history, its restart is accepted.
    PrimaryRestarted,
    /// A planned switchover's demotion: the primary stopped taking writes; the Event carries
    /// the promotion token.
    Demoted,
    /// A planned switchover's promotion cannot proceed: the token names another history, or no
    /// pod reached it in time.
    SwitchoverBlocked,
    /// A replica followed its upstream although it came back under another replication
    /// history, because the upstream holds the same data (a source that restarted with its
    /// data): it resynchronised in full.
    SourceRestarted,
    /// A pod saved what a resync was about to discard (the writes its new upstream never
    /// received, or a snapshot of its dataset): docs/salvage.md.
    Salvaged,
    /// A password rotation reached every pod: all accept the auth Secret's `password` and
    /// `previousPassword`, or all the new `password` alone (docs/password-rotation.md).
    PasswordRotation,
}

impl EventReason {
    /// The Event's `reason`, as `kubectl describe` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::Promoting => "Promoting",
            EventReason::Promoted => "Promoted",
            EventReason::Demoting => "Demoting",
            EventReason::TopologyPublished => "TopologyPublished",
            EventReason::FailingOver => "FailingOver",
            EventReason::FailoverBlocked => "FailoverBlocked",
            EventReason::Failover => "Failover",
            EventReason::FullResyncAfterFailover => "FullResyncAfterFailover",
            EventReason::SourceLinkDown => "SourceLinkDown",
            EventReason::SourceLinkUp => "SourceLinkUp",
            EventReason::ConfigurationValid => "ConfigurationValid",
            EventReason::SecretMissing => "SecretMissing",
            EventReason::SecretKeyMissing => "SecretKeyMissing",
            EventReason::InvalidSpec => "InvalidSpec",
            EventReason::Unsupported => "Unsupported",
            EventReason::PrimaryDataLost => "PrimaryDataLost",
            EventReason::UnrelatedHistory => "UnrelatedHistory",
            EventReason::PromotionBlocked => "PromotionBlocked",
            EventReason::FormerSourceWritable => "FormerSourceWritable",
            EventReason::FormerSourceNotWritable => "FormerSourceNotWritable",
            EventReason::InvalidAnnotation => "InvalidAnnotation",
            EventReason::SentinelFailover => "SentinelFailover",
            EventReason::PrimaryRestarted => "PrimaryRestarted",
            EventReason::SourceRestarted => "SourceRestarted",
            EventReason::Demoted => "Demoted",
            EventReason::SwitchoverBlocked => "SwitchoverBlocked",
            EventReason::Salvaged => "Salvaged",
            EventReason::PasswordRotation => "PasswordRotation",
        }
    }
}

impl std::fmt::Display for EventReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub type_: EventType,
    pub reason: EventReason,
    pub note: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_keep_their_user_visible_strings() {
        for (reason, text) in [
            (EventReason::Promoting, "Promoting"),
            (EventReason::Promoted, "Promoted"),
            (EventReason::Demoting, "Demoting"),
            (EventReason::TopologyPublished, "TopologyPublished"),
            (EventReason::FailingOver, "FailingOver"),
            (EventReason::FailoverBlocked, "FailoverBlocked"),
            (EventReason::Failover, "Failover"),
            (
                EventReason::FullResyncAfterFailover,
                "FullResyncAfterFailover",
            ),
            (EventReason::SourceLinkDown, "SourceLinkDown"),
            (EventReason::SourceLinkUp, "SourceLinkUp"),
            (EventReason::ConfigurationValid, "ConfigurationValid"),
            (EventReason::SecretMissing, "SecretMissing"),
            (EventReason::SecretKeyMissing, "SecretKeyMissing"),
            (EventReason::InvalidSpec, "InvalidSpec"),
            (EventReason::Unsupported, "Unsupported"),
            (EventReason::PrimaryDataLost, "PrimaryDataLost"),
            (EventReason::UnrelatedHistory, "UnrelatedHistory"),
            (EventReason::PromotionBlocked, "PromotionBlocked"),
            (EventReason::FormerSourceWritable, "FormerSourceWritable"),
            (
                EventReason::FormerSourceNotWritable,
                "FormerSourceNotWritable",
            ),
            (EventReason::InvalidAnnotation, "InvalidAnnotation"),
            (EventReason::SentinelFailover, "SentinelFailover"),
            (EventReason::PrimaryRestarted, "PrimaryRestarted"),
            (EventReason::SourceRestarted, "SourceRestarted"),
            (EventReason::Demoted, "Demoted"),
            (EventReason::SwitchoverBlocked, "SwitchoverBlocked"),
            (EventReason::Salvaged, "Salvaged"),
            (EventReason::PasswordRotation, "PasswordRotation"),
        ] {
            assert_eq!(reason.as_str(), text);
            assert_eq!(reason.to_string(), text);
        }
    }
}
