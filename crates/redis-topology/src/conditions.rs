//! Building the status conditions list so that it only changes when something really changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition without bookkeeping: what the planner decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: Status,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// Turn desired conditions into the status list. `lastTransitionTime` is kept from `previous`
/// unless the condition's status flipped (Kubernetes API conventions), so an unchanged cluster
/// produces a byte-identical status and the operator writes nothing.
pub fn merge(
    previous: &[Condition],
    desired: Vec<Desired>,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    desired
        .into_iter()
        .map(|d| {
            let old = previous.iter().find(|c| c.type_ == d.type_);
            let last_transition_time = match old {
                Some(c) if c.status == d.status.as_str() => c.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: d.type_.to_string(),
                status: d.status.as_str().to_string(),
                reason: d.reason.to_string(),
                message: d.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The condition of type `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn ready(status: Status, message: &str) -> Desired {
        Desired {
            type_: "Ready",
            status,
            reason: "R",
            message: message.into(),
        }
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = merge(&[], vec![ready(Status::False, "0/3")], Some(1), &t(100));
        assert_eq!(first[0].last_transition_time, t(100));
        // Same status, new message and generation: time kept.
        let second = merge(&first, vec![ready(Status::False, "1/3")], Some(2), &t(200));
        assert_eq!(second[0].last_transition_time, t(100));
        assert_eq!(second[0].message, "1/3");
        assert_eq!(second[0].observed_generation, Some(2));
        // Flip: time moves.
        let third = merge(&second, vec![ready(Status::True, "3/3")], Some(2), &t(300));
        assert_eq!(third[0].last_transition_time, t(300));
        // Nothing changed: identical output.
        assert_eq!(
            merge(&third, vec![ready(Status::True, "3/3")], Some(2), &t(400)),
            third
        );
    }
}
