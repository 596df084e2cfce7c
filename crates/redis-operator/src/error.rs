//! Every way a reconcile can fail, with the object and the step it failed at, so the log line and
//! the controller's retry say what to look at.

use std::fmt;

/// One reconcile failure. `metric_label` is stable: it is a Prometheus label value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{step} {object}: Kubernetes API: {source}")]
    Kube {
        step: Step,
        object: ObjectId,
        #[source]
        source: kube::Error,
    },
    #[error("{step} {object}: not found")]
    NotFound { step: Step, object: ObjectId },
    #[error("RedisCluster {0} has no namespace")]
    Unnamespaced(String),
    /// This replica's leader Lease is not (or no longer) valid: it must not write.
    #[error("{step} {object}: not written, this replica does not hold the leader Lease")]
    NotLeader { step: Step, object: ObjectId },
    /// A request that did not complete within the operator's own bound.
    #[error("{step} {object}: no answer within {after:?}")]
    Timeout {
        step: Step,
        object: ObjectId,
        after: std::time::Duration,
    },
    #[error("{step} {object}: serializing: {source}")]
    Serialize {
        step: Step,
        object: ObjectId,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(_),
                ..
            } => "api",
            Error::Kube { .. } => "client",
            Error::NotFound { .. } => "not_found",
            Error::Unnamespaced(_) => "unnamespaced",
            Error::NotLeader { .. } => "not_leader",
            Error::Timeout { .. } => "timeout",
            Error::Serialize { .. } => "serialize",
        }
    }

    /// A failed Kubernetes request: `step` on `object`.
    pub fn kube(step: Step, object: ObjectId) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Kube {
            step,
            object,
            source,
        }
    }

    /// `object` could not be turned into JSON at `step`.
    pub fn serialize(step: Step, object: ObjectId) -> impl FnOnce(serde_json::Error) -> Error {
        move |source| Error::Serialize {
            step,
            object,
            source,
        }
    }
}

/// The step of the reconcile a request belongs to. Displayed as a verb for the object that
/// follows it ("patch Pod production/dr-redis-0", "list pods of RedisCluster ...").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    ReadSecret,
    Apply,
    ListPods,
    PatchPod,
    PatchStatus,
    PublishEvent,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::ReadSecret => "read",
            Step::Apply => "apply",
            Step::ListPods => "list pods of",
            Step::PatchPod => "patch",
            Step::PatchStatus => "patch status of",
            Step::PublishEvent => "publish event on",
        })
    }
}

/// Which object: `Kind namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectId {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectId {
    pub fn new(kind: impl Into<String>, namespace: &str, name: &str) -> Self {
        ObjectId {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_which_object_and_which_step() {
        let e = Error::NotFound {
            step: Step::PatchPod,
            object: ObjectId::new("Pod", "production", "dr-redis-0"),
        };
        assert_eq!(e.to_string(), "patch Pod production/dr-redis-0: not found");
        assert_eq!(e.metric_label(), "not_found");
        let e = Error::kube(
            Step::ListPods,
            ObjectId::new("RedisCluster", "production", "dr-redis"),
        )(kube::Error::LinesCodecMaxLineLengthExceeded);
        assert!(
            e.to_string()
                .starts_with("list pods of RedisCluster production/dr-redis: Kubernetes API: "),
            "{e}"
        );
        assert_eq!(e.metric_label(), "client");
        assert_eq!(
            Error::Unnamespaced("dr-redis".into()).metric_label(),
            "unnamespaced"
        );
    }
}
