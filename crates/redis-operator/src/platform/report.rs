//! `GET /status` of an instance manager: the only request the operator makes to its pods.
//!
//! Two uses: the reconcile reads every pod's report ([`ReportClient::get`]); and [`Watches`]
//! keeps one long poll per pod (`/status?since=<digest>&wait=<s>`), which answers as soon as
//! the report changes in what the planner acts on, and triggers a reconcile of the pod's
//! cluster. So a change (a link that drops, a role that changes, a pod that stops answering)
//! reaches the planner at once, while a converged cluster is reconciled only once a minute
//! (issue 16).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use kube::runtime::reflector::ObjectRef;
use redis_cluster_api::RedisCluster;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use redis_cluster_api::report::InstanceReport;

/// How long one report may take, connecting included: a pod that does not answer within it is
/// observed as unreachable, and the reconcile goes on.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// The largest body accepted. A report is a few hundred bytes.
pub const MAX_BODY: usize = 1 << 20;

/// An HTTP/1.1 client for the instance managers' reports.
#[derive(Clone)]
pub struct ReportClient {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for ReportClient {
    fn default() -> Self {
        ReportClient {
            client: Client::builder(TokioExecutor::new())
                // A fresh connection per report: a pooled one to a pod that restarted would fail
                // once and read as an unreachable pod (which may start a failover clock).
                .pool_max_idle_per_host(0)
                .build_http(),
        }
    }
}

impl ReportClient {
    /// The report of the instance manager at `endpoint` (`host:port`); None when it cannot be
    /// reached within [`TIMEOUT`], answers anything but 200, or sends more than [`MAX_BODY`] or
    /// something that is not a report.
    pub async fn get(&self, endpoint: &str) -> Option<InstanceReport> {
        self.poll(endpoint, None, Duration::ZERO).await
    }

    /// The report once its material digest differs from `since`, or after `wait` (the
    /// instance manager holds the request); without `since`, at once.
    pub async fn poll(
        &self,
        endpoint: &str,
        since: Option<u64>,
        wait: Duration,
    ) -> Option<InstanceReport> {
        let path = match since {
            Some(d) => format!("/status?since={d}&wait={}", wait.as_secs()),
            None => "/status".to_string(),
        };
        let wait = if since.is_some() {
            wait
        } else {
            Duration::ZERO
        };
        let uri = format!("http://{endpoint}{path}").parse().ok()?;
        let fetch = async {
            let response = self.client.get(uri).await.ok()?;
            if response.status() != StatusCode::OK {
                return None;
            }
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .ok()?
                .to_bytes();
            serde_json::from_slice(&body).ok()
        };
        tokio::time::timeout(TIMEOUT + wait, fetch)
            .await
            .ok()
            .flatten()
    }
}

/// How long one long poll is held by the instance manager.
pub const POLL_WAIT: Duration = Duration::from_secs(30);
/// After a pod did not answer, the next try.
const RETRY: Duration = Duration::from_secs(2);
/// A pod no reconcile has listed for this long is no longer watched (its cluster is gone).
const FORGET: Duration = Duration::from_secs(600);

/// What was last seen of one instance manager.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Seen {
    /// Nothing yet: the first answer is the baseline.
    Unset,
    Unreachable,
    Digest(u64),
}

struct Watched {
    cluster: ObjectRef<RedisCluster>,
    seen: Seen,
    wanted: Instant,
    task: tokio::task::AbortHandle,
}

/// One long poll per data pod, each triggering a reconcile of its cluster when the pod's report
/// changes materially or the pod stops or starts answering.
#[derive(Clone)]
pub struct Watches {
    client: ReportClient,
    trigger: mpsc::UnboundedSender<ObjectRef<RedisCluster>>,
    pods: Arc<Mutex<HashMap<String, Watched>>>,
}

impl Watches {
    /// The watches, and the stream of clusters to reconcile (for `Controller::reconcile_on`).
    pub fn new() -> (Watches, mpsc::UnboundedReceiver<ObjectRef<RedisCluster>>) {
        let (trigger, triggered) = mpsc::unbounded();
        let watches = Watches {
            client: ReportClient::default(),
            trigger,
            pods: Arc::default(),
        };
        (watches, triggered)
    }

    /// Watch exactly `endpoints` for `cluster`: start a long poll for a new one, stop those of
    /// the cluster's pods no longer listed (a pod that was recreated has a new IP).
    pub fn ensure(&self, cluster: ObjectRef<RedisCluster>, endpoints: &[String]) {
        let mut pods = self.pods.lock().expect("watches");
        pods.retain(|endpoint, w| {
            let keep = w.cluster != cluster || endpoints.contains(endpoint);
            if !keep {
                w.task.abort();
            }
            keep
        });
        for endpoint in endpoints {
            if let Some(w) = pods.get_mut(endpoint) {
                w.wanted = Instant::now();
                continue;
            }
            let task = tokio::spawn(self.clone().watch(endpoint.clone())).abort_handle();
            pods.insert(
                endpoint.clone(),
                Watched {
                    cluster: cluster.clone(),
                    seen: Seen::Unset,
                    wanted: Instant::now(),
                    task,
                },
            );
        }
    }

    /// What a reconcile just read from `endpoint`: the long poll's baseline.
    pub fn saw(&self, endpoint: &str, report: Option<&InstanceReport>) {
        if let Some(w) = self.pods.lock().expect("watches").get_mut(endpoint) {
            w.seen = match report {
                Some(r) => Seen::Digest(r.material_digest()),
                None => Seen::Unreachable,
            };
        }
    }

    async fn watch(self, endpoint: String) {
        loop {
            let since = {
                let mut pods = self.pods.lock().expect("watches");
                let Some(w) = pods.get(&endpoint) else {
                    return;
                };
                if w.wanted.elapsed() > FORGET {
                    pods.remove(&endpoint);
                    return;
                }
                match w.seen {
                    Seen::Digest(d) => Some(d),
                    _ => None,
                }
            };
            let asked = Instant::now();
            let report = self.client.poll(&endpoint, since, POLL_WAIT).await;
            let now = match &report {
                Some(r) => Seen::Digest(r.material_digest()),
                None => Seen::Unreachable,
            };
            let trigger = {
                let mut pods = self.pods.lock().expect("watches");
                let Some(w) = pods.get_mut(&endpoint) else {
                    return;
                };
                let changed = w.seen != Seen::Unset && w.seen != now;
                w.seen = now;
                changed.then(|| w.cluster.clone())
            };
            if let Some(cluster) = trigger {
                tracing::debug!(%endpoint, cluster = %cluster.name, "instance report changed");
                let _ = self.trigger.unbounded_send(cluster);
            }
            if report.is_none() {
                tokio::time::sleep(RETRY).await;
            } else if since.is_some()
                && now == Seen::Digest(since.unwrap_or_default())
                && asked.elapsed() < POLL_WAIT / 2
            {
                // An instance manager that does not hold the request (an older version):
                // poll it every few seconds instead of spinning.
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Instant;

    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;

    use super::*;

    fn report() -> InstanceReport {
        InstanceReport {
            pod: "dr-redis-0".into(),
            applied_epoch: Some(7),
            ..Default::default()
        }
    }

    /// An instance manager stand-in on a free port, serving `router`.
    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        tokio::spawn(axum::serve(listener, router).into_future());
        endpoint
    }

    #[tokio::test]
    async fn reads_chunked_and_sized_bodies() {
        let json = serde_json::to_string(&report()).unwrap();
        let (head, tail) = json.split_at(json.len() / 2);
        let chunks = vec![head.to_string(), tail.to_string()];
        let chunked = serve(Router::new().route(
            "/status",
            get(move || {
                let chunks = chunks.clone();
                // A streamed body without a length goes out with Transfer-Encoding: chunked.
                async move {
                    Body::from_stream(futures::stream::iter(
                        chunks.into_iter().map(Ok::<_, Infallible>),
                    ))
                }
            }),
        ))
        .await;
        let client = ReportClient::default();
        assert_eq!(client.get(&chunked).await, Some(report()));
        let sized = serve(Router::new().route("/status", get(move || async move { json }))).await;
        assert_eq!(client.get(&sized).await, Some(report()));
    }

    #[tokio::test]
    async fn anything_but_a_small_200_report_is_no_report() {
        let json = serde_json::to_string(&report()).unwrap();
        let failing = serve(Router::new().route(
            "/status",
            get(move || async move { (StatusCode::SERVICE_UNAVAILABLE, json) }),
        ))
        .await;
        let client = ReportClient::default();
        assert_eq!(client.get(&failing).await, None);
        let huge = serve(Router::new().route(
            "/status",
            get(|| async { format!("\"{}\"", "x".repeat(MAX_BODY)) }),
        ))
        .await;
        assert_eq!(client.get(&huge).await, None);
        let garbage = serve(Router::new().route("/status", get(|| async { "{not json" }))).await;
        assert_eq!(client.get(&garbage).await, None);
    }

    #[tokio::test]
    async fn a_malformed_chunked_body_is_no_report() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
            socket.write_all(response.as_bytes()).await.unwrap();
        });
        assert_eq!(ReportClient::default().get(&endpoint).await, None);
    }

    #[tokio::test]
    async fn a_silent_pod_is_given_up_after_the_timeout() {
        // Accepts the connection, never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let _held = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await
        });
        let started = Instant::now();
        assert_eq!(ReportClient::default().get(&endpoint).await, None);
        let took = started.elapsed();
        assert!(took >= TIMEOUT && took < TIMEOUT * 2, "{took:?}");
    }
}
