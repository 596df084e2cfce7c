//! `GET /metrics`, `/healthz`, `/readyz`, `/status`, `/info`.
//!
//! - `/info` is the local Redis's last `INFO` text as the reconcile loop read it (no secret is
//!   in it), for `kubectl redis report`: the plugin reads it through the API server's pod proxy
//!   instead of exec'ing `redis-cli` with the password.
//! - `/healthz` (liveness) fails only when the reconcile loop has not completed a tick for
//!   [`crate::reconcile::Shared::liveness_limit`]: a wedged process. A down cross-region link or
//!   a down local Redis never fails it (restarting the sidecar fixes neither).
//! - `/readyz` (readiness) is 200 iff the pod serves data as its role requires: a primary is
//!   reachable with role master; a replica has its link up (Redis and probe) and is not
//!   loading or syncing.

use std::sync::Arc;

use axum::Router;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::CONTENT_TYPE;
use crate::reconcile::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/info", get(info))
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], s.metrics.encode()).into_response()
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let age = s.since_heartbeat();
    if age <= s.liveness_limit {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("reconcile loop stalled for {:.0}s\n", age.as_secs_f64()),
        )
            .into_response()
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let r = s.report();
    if r.ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let why = r
            .error
            .or(r.link_error)
            .unwrap_or_else(|| "not serving yet".into());
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response()
    }
}

/// The longest `wait` of a long poll: shorter than any proxy's idle timeout.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// `GET /status?since=<digest>&wait=<seconds>`: the operator's long poll.
#[derive(serde::Deserialize, Default)]
struct Poll {
    since: Option<u64>,
    wait: Option<u64>,
}

/// The report, at once; or, with `since` and `wait`, as soon as its material digest
/// ([`InstanceReport::material_digest`]) differs from `since`, and at the latest after `wait`
/// seconds (then unchanged).
async fn status(State(s): State<Arc<Shared>>, Query(poll): Query<Poll>) -> Response {
    if let (Some(since), Some(wait)) = (poll.since, poll.wait) {
        let mut changes = s.changes.subscribe();
        let wait = Duration::from_secs(wait).min(MAX_WAIT);
        let _ = tokio::time::timeout(wait, changes.wait_for(|d| *d != since)).await;
    }
    axum::Json(s.report()).into_response()
}

async fn info(State(s): State<Arc<Shared>>) -> Response {
    match s.info.lock().expect("info lock").clone() {
        Some(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the local Redis has not been read yet\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::ManagerConfig;
    use axum::body::Body;
    use axum::http::Request;
    use redis_cluster_api::report::InstanceReport;
    use tower::ServiceExt;

    fn shared() -> Shared {
        Shared::new(&ManagerConfig {
            cluster: "dr".into(),
            namespace: "prod".into(),
            pod: "dr-0".into(),
            redis_host: "127.0.0.1".into(),
            redis_port: 6379,
            redis_password_file: None,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(800),
            probe_max_age: Duration::from_secs(10),
            tls: None,
            redis_tls: false,
            state_dir: None,
        })
    }

    async fn get(shared: Arc<Shared>, path: &str) -> (StatusCode, String, String) {
        let resp = router(shared)
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_and_status_is_the_report() {
        let s = Arc::new(shared());
        let (code, ct, body) = get(s.clone(), "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(ct, CONTENT_TYPE);
        assert!(body.ends_with("# EOF\n"));
        let (code, _, body) = get(s, "/status").await;
        assert_eq!(code, StatusCode::OK);
        let r: InstanceReport = serde_json::from_str(&body).unwrap();
        assert_eq!(r.pod, "dr-0");
    }

    #[tokio::test]
    async fn info_is_the_last_text_read_and_unavailable_before_the_first() {
        let s = Arc::new(shared());
        let (code, _, body) = get(s.clone(), "/info").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("not been read"), "{body}");
        *s.info.lock().unwrap() = Some("# Replication\r\nrole:master\r\n".into());
        let (code, ct, body) = get(s, "/info").await;
        assert_eq!(code, StatusCode::OK);
        assert!(ct.starts_with("text/plain"), "{ct}");
        assert_eq!(body, "# Replication\r\nrole:master\r\n");
    }

    #[tokio::test]
    async fn readiness_follows_the_report_and_liveness_only_the_loop() {
        let s = Arc::new(shared());
        {
            let mut r = s.report.lock().unwrap();
            r.link_error = Some("cannot reach the source src:6379: connection refused".into());
        }
        let (code, _, body) = get(s.clone(), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("connection refused"), "{body}");
        // A down link does not fail liveness.
        assert_eq!(get(s.clone(), "/healthz").await.0, StatusCode::OK);
        s.report.lock().unwrap().ready = true;
        assert_eq!(get(s.clone(), "/readyz").await.0, StatusCode::OK);

        // A loop that has not ticked for longer than the limit does.
        let mut stalled = shared();
        stalled.liveness_limit = Duration::ZERO;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (code, _, body) = get(Arc::new(stalled), "/healthz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("stalled"), "{body}");
    }

    /// The operator's long poll: an unchanged report is held until `wait`; a change (in what the
    /// digest covers) answers at once; offsets alone do not.
    #[tokio::test]
    async fn a_long_poll_answers_on_a_material_change_and_not_on_offsets() {
        let s = Arc::new(shared());
        let digest = s.report().material_digest();
        assert_eq!(*s.changes.borrow(), digest);
        // A stale digest: at once.
        let started = std::time::Instant::now();
        get(s.clone(), &format!("/status?since={}&wait=5", digest + 1)).await;
        assert!(started.elapsed() < Duration::from_millis(500));
        // Unchanged: held for `wait`.
        let started = std::time::Instant::now();
        get(s.clone(), &format!("/status?since={digest}&wait=1")).await;
        assert!(
            started.elapsed() >= Duration::from_millis(950),
            "{:?}",
            started.elapsed()
        );
        // A change published while the poll waits ends it with the new report; an offset does
        // not change the digest.
        let publish = |s: &Shared, change: &dyn Fn(&mut InstanceReport)| {
            let mut r = s.report();
            change(&mut r);
            let d = r.material_digest();
            *s.report.lock().unwrap() = r;
            s.changes
                .send_if_modified(|old| std::mem::replace(old, d) != d);
        };
        publish(&s, &|r| r.repl_offset = Some(12345));
        assert_eq!(*s.changes.borrow(), digest, "an offset is not material");
        let poll = tokio::spawn({
            let s = s.clone();
            async move { get(s, &format!("/status?since={digest}&wait=10")).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        publish(&s, &|r| r.master_link_up = true);
        let (code, _, body) = poll.await.unwrap();
        assert_eq!(code, StatusCode::OK);
        assert!(started.elapsed() < Duration::from_millis(500));
        let r: InstanceReport = serde_json::from_str(&body).unwrap();
        assert!(r.master_link_up);
        assert_eq!(r.repl_offset, Some(12345));
    }
}
