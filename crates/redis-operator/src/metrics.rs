//! The operator's own metrics (prometheus-client, OpenMetrics) and its HTTP endpoints:
//! `/metrics`, `/healthz` (the process answers), `/readyz` (the leader's watches have started,
//! or a standby reads the leader Lease and can take over).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
    pub namespace: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciliations: Counter,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub promotions: Family<ClusterLabels, Counter>,
    /// After a promotion: 1 while the former source accepts writes (both regions writable), 0
    /// when it refuses them; absent when not promoted or the former source does not answer.
    pub former_source_writable: Family<ClusterLabels, Gauge>,
    pub leader: Gauge,
    pub ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("redis_operator");
        let reconciliations = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        let promotions = Family::<ClusterLabels, Counter>::default();
        let former_source_writable = Family::<ClusterLabels, Gauge>::default();
        let leader = Gauge::default();
        registry.register("reconciliations", "Reconciles run", reconciliations.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        registry.register(
            "promotions",
            "Replica-mode promotions completed",
            promotions.clone(),
        );
        registry.register(
            "former_source_writable",
            "After a promotion: 1 while the former source (replicaMode.source) still accepts writes, so both regions take writes; 0 when it refuses them",
            former_source_writable.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciliations,
            errors,
            duration,
            promotions,
            former_source_writable,
            leader,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Export what the last reconcile of a cluster saw of its former source.
    pub fn set_former_source(&self, labels: &ClusterLabels, writable: Option<bool>) {
        match writable {
            Some(w) => {
                self.former_source_writable
                    .get_or_create(labels)
                    .set(i64::from(w));
            }
            None => {
                self.former_source_writable.remove(labels);
            }
        }
    }

    pub fn observe(&self, took: Duration, error: Option<&crate::Error>) {
        self.reconciliations.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(e) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    error: e.metric_label().into(),
                })
                .inc();
        }
    }
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(metrics)
}

async fn render(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &m.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            String::new(),
        ),
    }
}

async fn ready(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}
