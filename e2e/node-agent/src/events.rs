//! The kubelet's Events about pods (Pulled, Created, Started, Killing, BackOff, Unhealthy,
//! FailedMount, ...), so `kubectl describe pod` tells what happened. Published in the
//! background: an Event that cannot be written never holds up a pod.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: kube::Client, node: &str) -> Events {
        Events {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "kubelet".into(),
                    instance: Some(node.into()),
                },
            ),
        }
    }

    /// An Event about `pod`, or one of its containers (`container`).
    pub fn pod(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let field_path = container.map(|c| {
            let init = pod
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|i| i.iter().any(|x| x.name == c));
            if init {
                format!("spec.initContainers{{{c}}}")
            } else {
                format!("spec.containers{{{c}}}")
            }
        });
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            field_path,
            ..Default::default()
        };
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.into(),
            secondary: None,
        };
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::debug!(error = %e, "event not written");
            }
        });
    }
}
