//! Which topology to act on: the contract's rules (refuse unknown versions, ignore stale epochs,
//! keep the last good topology), as a small pure state machine.

use redis_cluster_api::topology::DesiredTopology;

/// What a topology source last delivered: the annotation's raw value, or why it could not be read.
pub type Delivered = Option<Result<String, String>>;

/// What happened to the last delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Nothing new (same raw value as before, or nothing delivered yet).
    Unchanged,
    /// A newer epoch: act on it.
    Accepted(u64),
    /// Same epoch as the one in force (the operator re-published it): nothing to do.
    SameEpoch,
    /// Lower epoch than the one in force: ignored.
    Stale { epoch: u64, current: u64 },
    /// Not usable (unknown version, malformed, unreadable): the last good topology stays.
    Refused(String),
}

#[derive(Debug, Default)]
pub struct Intake {
    last_raw: Option<Result<String, String>>,
    desired: Option<DesiredTopology>,
    /// The message of the last refused/stale delivery, while it is the current delivery.
    pub error: Option<String>,
}

impl Intake {
    /// The topology in force (highest epoch accepted).
    pub fn desired(&self) -> Option<&DesiredTopology> {
        self.desired.as_ref()
    }

    pub fn offer(&mut self, delivered: &Delivered) -> Admission {
        let Some(d) = delivered else {
            return Admission::Unchanged;
        };
        if self.last_raw.as_ref() == Some(d) {
            return Admission::Unchanged;
        }
        self.last_raw = Some(d.clone());
        let outcome = match d {
            Err(why) => Admission::Refused(format!("topology annotation cannot be read: {why}")),
            Ok(raw) => match DesiredTopology::parse(raw) {
                Err(e) => Admission::Refused(e.to_string()),
                Ok(t) if t.supersedes(self.desired.as_ref()) => {
                    let epoch = t.epoch;
                    self.desired = Some(t);
                    Admission::Accepted(epoch)
                }
                Ok(t) => {
                    let current = self.desired.as_ref().map_or(0, |d| d.epoch);
                    if t.epoch == current {
                        Admission::SameEpoch
                    } else {
                        Admission::Stale {
                            epoch: t.epoch,
                            current,
                        }
                    }
                }
            },
        };
        self.error = match &outcome {
            Admission::Refused(m) => Some(match &self.desired {
                Some(d) => format!("{m} (keeping the topology of epoch {})", d.epoch),
                None => m.clone(),
            }),
            Admission::Stale { epoch, current } => Some(format!(
                "ignoring topology epoch {epoch}: epoch {current} is already in force (epochs never go back)"
            )),
            _ => None,
        };
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_cluster_api::topology::{FORMAT_VERSION, Role};

    fn raw(epoch: u64, version: u32, role: Role) -> Delivered {
        let t = DesiredTopology {
            version,
            cluster: "c".into(),
            epoch,
            role,
            upstream: None,
            replica_priority: 0,
            replica_announced: false,
            min_replicas_to_write: 0,
            min_replicas_max_lag: 10,
            primary: None,
            sentinel: None,
            replicaof_command: None,
            accept_history: None,
        };
        Some(Ok(t.to_annotation()))
    }

    #[test]
    fn newer_wins_stale_and_unknown_are_refused_and_the_last_good_stays() {
        let mut i = Intake::default();
        assert_eq!(i.offer(&None), Admission::Unchanged);
        assert_eq!(
            i.offer(&raw(5, FORMAT_VERSION, Role::Primary)),
            Admission::Accepted(5)
        );
        assert_eq!(
            i.offer(&raw(5, FORMAT_VERSION, Role::Primary)),
            Admission::Unchanged
        );
        assert_eq!(
            i.offer(&raw(4, FORMAT_VERSION, Role::Primary)),
            Admission::Stale {
                epoch: 4,
                current: 5
            }
        );
        assert!(i.error.as_deref().unwrap().contains("epoch 4"));
        assert_eq!(i.desired().unwrap().epoch, 5);
        match i.offer(&raw(9, 2, Role::Primary)) {
            Admission::Refused(m) => assert!(m.contains("format version 2"), "{m}"),
            o => panic!("{o:?}"),
        }
        assert!(
            i.error
                .as_deref()
                .unwrap()
                .contains("keeping the topology of epoch 5")
        );
        assert_eq!(i.desired().unwrap().epoch, 5);
        assert!(matches!(
            i.offer(&Some(Err("bad quoting".into()))),
            Admission::Refused(_)
        ));
        assert!(matches!(
            i.offer(&Some(Ok("{".into()))),
            Admission::Refused(_)
        ));
        assert_eq!(
            i.offer(&raw(6, FORMAT_VERSION, Role::Primary)),
            Admission::Accepted(6)
        );
        assert_eq!(i.error, None);
        // Same epoch, different content (re-published): not applied twice.
        let mut t =
            DesiredTopology::parse(&raw(6, FORMAT_VERSION, Role::Primary).unwrap().unwrap())
                .unwrap();
        t.replica_priority = 7;
        assert_eq!(i.offer(&Some(Ok(t.to_annotation()))), Admission::SameEpoch);
        assert_eq!(i.desired().unwrap().replica_priority, 0);
    }
}
