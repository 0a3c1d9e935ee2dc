//! `/metrics`: what the server did, and what each served volume holds,
//! in the Prometheus text format.
//!
//! Invariants: request metrics are labelled by route template (never by
//! a path or a name a client chose), so their number is bounded by the
//! route table; volume metrics are read from each volume's metadata at
//! every scrape into a registry of that scrape, so they are never stale
//! and never double-counted; a volume whose metadata cannot be read is
//! left out of that scrape, with a warning, rather than failing it.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fsx_protocol::{ErrorCode, Route};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::AppState;
use crate::reply::Fail;

/// The server's own metrics, kept for its lifetime.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    bytes_in: IntCounterVec,
    bytes_out: IntCounterVec,
    in_flight: IntGauge,
    websockets: IntGauge,
    gc_runs: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("fsx_http_requests_total", "HTTP requests answered"),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "fsx_http_request_duration_seconds",
                "Time from a request's arrival to its answer's headers",
            )
            .buckets(vec![
                0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route", "method"],
        )?;
        let bytes_in = IntCounterVec::new(
            Opts::new(
                "fsx_http_request_bytes_total",
                "Request body bytes, as Content-Length announced them",
            ),
            &["route"],
        )?;
        let bytes_out = IntCounterVec::new(
            Opts::new(
                "fsx_http_response_bytes_total",
                "Response body bytes, as Content-Length announced them",
            ),
            &["route"],
        )?;
        let in_flight =
            IntGauge::new("fsx_http_requests_in_flight", "Requests being answered now")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(bytes_in.clone()))?;
        registry.register(Box::new(bytes_out.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        let websockets = IntGauge::new(
            "fsx_websockets_open",
            "WebSockets following a change feed now",
        )?;
        registry.register(Box::new(websockets.clone()))?;
        let gc_runs = IntCounterVec::new(
            Opts::new(
                "fsx_gc_runs_total",
                "Scheduled GC runs (`fsx serve --gc-every`)",
            ),
            &["volume"],
        )?;
        registry.register(Box::new(gc_runs.clone()))?;
        Ok(Self {
            registry,
            requests,
            duration,
            bytes_in,
            bytes_out,
            in_flight,
            websockets,
            gc_runs,
        })
    }

    /// Counts one scheduled GC run of `volume`.
    pub fn gc_run(&self, volume: &str) {
        self.gc_runs.with_label_values(&[volume]).inc();
    }

    /// Counts WebSockets opened (`+1`) and closed (`-1`).
    pub fn websockets(&self, delta: i64) {
        self.websockets.add(delta);
    }
}

fn content_length(h: &HeaderMap) -> u64 {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Counts and times one request of `route` (outside its access check, so
/// refusals count too).
pub(crate) async fn track(
    State((state, route)): State<(Arc<AppState>, Route)>,
    req: Request,
    next: Next,
) -> Response {
    let m = &state.metrics;
    let method = req.method().as_str().to_owned();
    m.bytes_in
        .with_label_values(&[route.path])
        .inc_by(content_length(req.headers()));
    m.in_flight.inc();
    let start = Instant::now();
    let resp = next.run(req).await;
    m.in_flight.dec();
    m.duration
        .with_label_values(&[route.path, &method])
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[route.path, &method, resp.status().as_str()])
        .inc();
    m.bytes_out
        .with_label_values(&[route.path])
        .inc_by(content_length(resp.headers()));
    resp
}

/// The volumes' own metrics, read now.
#[derive(Debug)]
struct VolumeMetrics {
    extents: IntGaugeVec,
    extent_bytes: IntGaugeVec,
    copies: IntGaugeVec,
    queued: IntGaugeVec,
    ops: IntCounterVec,
    op_bytes: IntCounterVec,
}

impl VolumeMetrics {
    fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let gauge = |name: &str, help: &str, labels: &[&str]| -> Result<_, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<_, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), &["volume", "tier", "op"])?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(Self {
            extents: gauge("fsx_extents", "Extent records of the volume", &["volume"])?,
            extent_bytes: gauge("fsx_extent_bytes", "Bytes of those extents", &["volume"])?,
            copies: gauge(
                "fsx_tier_copies",
                "Extent copies present in each tier",
                &["volume", "tier"],
            )?,
            queued: gauge(
                "fsx_replication_queue",
                "Copies owed to each tier (the replication queue)",
                &["volume", "tier"],
            )?,
            ops: counter(
                "fsx_tier_operations_total",
                "Store operations by tier and operation, since the volume was made",
            )?,
            op_bytes: counter(
                "fsx_tier_bytes_total",
                "Payload bytes moved by those operations",
            )?,
        })
    }
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(state): State<Arc<AppState>>) -> Response {
    match render(&state).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding the metrics failed");
            Fail::new(ErrorCode::Internal, "encoding the metrics failed").into_response()
        }
    }
}

async fn render(state: &AppState) -> Result<String, prometheus::Error> {
    let now = Registry::new();
    let v = VolumeMetrics::register(&now)?;
    for (name, served) in &state.volumes {
        let meta = served.volume.meta();
        let read = async {
            let totals = meta.extent_totals().await?;
            let tiers = meta.tier_totals().await?;
            let counters = meta.counters().await?;
            Ok::<_, fsx_meta::MetaError>((totals, tiers, counters))
        };
        let (totals, tiers, counters) = match read.await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(volume = %name, error = %e, "a volume's metrics could not be read; left out of this scrape");
                continue;
            }
        };
        v.extents
            .with_label_values(&[name.as_str()])
            .set(i64::try_from(totals.count).unwrap_or(i64::MAX));
        v.extent_bytes
            .with_label_values(&[name.as_str()])
            .set(i64::try_from(totals.bytes).unwrap_or(i64::MAX));
        for t in &tiers {
            let labels = [name.as_str(), t.tier.as_str()];
            v.copies
                .with_label_values(&labels)
                .set(i64::try_from(t.count).unwrap_or(i64::MAX));
            v.queued
                .with_label_values(&labels)
                .set(i64::try_from(t.queued).unwrap_or(i64::MAX));
        }
        for c in &counters {
            let labels = [name.as_str(), c.tier.as_str(), c.op.as_str()];
            v.ops.with_label_values(&labels).inc_by(c.calls);
            v.op_bytes.with_label_values(&labels).inc_by(c.bytes);
        }
    }
    let mut families = state.metrics.registry.gather();
    families.extend(now.gather());
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
}
