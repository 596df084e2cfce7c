//! `GET /status` of an instance manager: the only request the operator makes to its pods.

use std::time::Duration;

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
        let uri = format!("http://{endpoint}/status").parse().ok()?;
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
        tokio::time::timeout(TIMEOUT, fetch).await.ok().flatten()
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
