//! Where the topology comes from: a downward-API annotations file (polled), or the pod itself
//! through the Kubernetes API. Both only deliver the raw annotation into the loop's channel.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use redis_cluster_api::labels::TOPOLOGY_ANNOTATION;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::downward;
use crate::intake::Delivered;

/// How often the annotations file is re-read.
pub const FILE_POLL: Duration = Duration::from_millis(500);

/// Read the annotation from a downward-API file. `None`: nothing to deliver (file or annotation
/// absent; the last delivery stays in force).
pub fn read_file(path: &std::path::Path) -> Result<Delivered, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(downward::annotation(&text, TOPOLOGY_ANNOTATION)
            .transpose()
            .map(|r| r.map_err(|e| format!("{TOPOLOGY_ANNOTATION} in {}: {e}", path.display())))),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Poll the file and deliver changes. Runs until the receiver is gone.
pub async fn poll_file(path: PathBuf, tx: watch::Sender<Delivered>) {
    let mut last_problem: Option<String> = None;
    loop {
        let problem = match read_file(&path) {
            Ok(Some(d)) => {
                tx.send_if_modified(|cur| {
                    if cur.as_ref() == Some(&d) {
                        false
                    } else {
                        *cur = Some(d);
                        true
                    }
                });
                None
            }
            Ok(None) => Some(format!(
                "{} has no {TOPOLOGY_ANNOTATION} annotation yet",
                path.display()
            )),
            Err(e) => Some(e),
        };
        if problem != last_problem {
            match &problem {
                Some(p) => warn!("topology file: {p}"),
                None => info!(path = %path.display(), "topology file readable"),
            }
            last_problem = problem;
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(FILE_POLL).await;
    }
}

/// Watch the own pod (in-cluster config, field selector `metadata.name=<pod>`) and deliver its
/// annotation. Reconnects with kube's default backoff.
pub async fn watch_pod(namespace: String, pod: String, tx: watch::Sender<Delivered>) {
    let client = loop {
        match kube::Client::try_default().await {
            Ok(c) => break c,
            Err(e) => {
                warn!("cannot build a Kubernetes client ({e}); retrying in 5s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    watch_pod_with(client, namespace, pod, tx).await
}

/// [`watch_pod`] with a given client (tests pass a mock API server).
pub async fn watch_pod_with(
    client: kube::Client,
    namespace: String,
    pod: String,
    tx: watch::Sender<Delivered>,
) {
    // Metadata only (`PartialObjectMetadata`): the annotation is all this needs, so neither the
    // API server's answers nor this binary carry the pod's spec and status (less traffic, and
    // no Pod deserializer in the sidecar's code).
    let api: kube::Api<PartialObjectMeta<Pod>> = kube::Api::namespaced(client, &namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={pod}"));
    let mut stream = watcher(api, cfg)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(p) => {
                let value = p
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(TOPOLOGY_ANNOTATION))
                    .cloned();
                if let Some(v) = value {
                    tx.send_if_modified(|cur| {
                        let d = Some(Ok(v));
                        if *cur == d {
                            false
                        } else {
                            *cur = d;
                            true
                        }
                    });
                }
            }
            Err(e) => warn!("watching pod {namespace}/{pod}: {e}"),
        }
        if tx.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the API server answers a metadata-only request with.
    fn pod_json(rv: &str, topology: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "dr-0", "namespace": "prod", "resourceVersion": rv,
                         "annotations": {TOPOLOGY_ANNOTATION: topology, "other": "x"}}
        })
    }

    /// The kube adapter against a mock API server: it lists and watches only its own pod (field
    /// selector), metadata only, and delivers the annotation of the listed and then of the
    /// modified pod.
    #[tokio::test]
    async fn the_pod_watch_delivers_the_annotation() {
        use http::{Request, Response};
        use kube::client::Body;
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let (first_seen, mut first_seen_rx) = tokio::sync::mpsc::channel::<()>(1);
        let server = tokio::spawn(async move {
            let mut handle = std::pin::pin!(handle);
            let mut uris = Vec::new();
            for i in 0..2 {
                let (req, send) = handle.next_request().await.expect("no request");
                let uri = req.uri().to_string();
                assert!(uri.starts_with("/api/v1/namespaces/prod/pods?"), "{uri}");
                assert!(uri.contains("fieldSelector=metadata.name%3Ddr-0"), "{uri}");
                let accept = req
                    .headers()
                    .get("accept")
                    .map(|v| v.to_str().unwrap().to_string());
                assert!(
                    accept
                        .as_deref()
                        .is_some_and(|a| a.contains("as=PartialObjectMetadata")),
                    "metadata only: {accept:?}"
                );
                let body = if i == 0 {
                    serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                        "metadata": {"resourceVersion": "10"}, "items": [pod_json("10", "first")]})
                    .to_string()
                } else {
                    assert!(uri.contains("watch=true"), "{uri}");
                    // The channel keeps only the latest value: modify after the first is seen.
                    first_seen_rx.recv().await;
                    format!(
                        "{}\n",
                        serde_json::json!({"type": "MODIFIED", "object": pod_json("11", "second")})
                    )
                };
                send.send_response(Response::new(Body::from(body.into_bytes())));
                uris.push(uri);
            }
            uris
        });
        let (tx, mut rx) = watch::channel::<Delivered>(None);
        let client = kube::Client::new(svc, "prod");
        let task = tokio::spawn(watch_pod_with(client, "prod".into(), "dr-0".into(), tx));
        let mut seen = Vec::new();
        while seen.len() < 2 {
            if tokio::time::timeout(Duration::from_secs(10), rx.changed())
                .await
                .is_err()
            {
                task.abort();
                panic!("no delivery; mock server: {:?}", server.await);
            }
            if let Some(Ok(v)) = rx.borrow_and_update().clone() {
                seen.push(v);
                let _ = first_seen.try_send(());
            }
        }
        assert_eq!(seen, vec!["first".to_string(), "second".to_string()]);
        server.await.unwrap();
        task.abort();
    }

    #[test]
    fn reads_the_annotation_from_a_downward_api_file() {
        let dir = std::env::temp_dir().join(format!("im-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("annotations");
        assert!(read_file(&p).is_err());
        std::fs::write(&p, "other=\"x\"\n").unwrap();
        assert_eq!(read_file(&p).unwrap(), None);
        std::fs::write(
            &p,
            "other=\"x\"\nredis.io/topology=\"{\\\"version\\\":1}\"\n",
        )
        .unwrap();
        assert_eq!(read_file(&p).unwrap(), Some(Ok("{\"version\":1}".into())));
        std::fs::write(&p, "redis.io/topology=\"\\q\"\n").unwrap();
        assert!(matches!(read_file(&p).unwrap(), Some(Err(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
