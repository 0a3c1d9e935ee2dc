//! The server-wide layers around every route, outermost first:
//!
//! 1. **request id and log**: every request gets an id (`x-request-id` in
//!    the answer), a tracing span with it, its method, path and token id,
//!    and one log line with the status and time when it ends;
//! 2. **header size**: headers (names and values) over
//!    [`Limits::max_header_bytes`] are 431;
//! 3. **body size**: a `Content-Length` over [`Limits::max_body`] is 413
//!    before any byte of the body is read (handlers also stop reading a
//!    body without a length at the limit);
//! 4. **concurrency**: beyond [`Limits::max_concurrent`] requests at once,
//!    503 at once (a queue would only turn load into timeouts);
//! 5. **time**: the route runs in a task of its own; after
//!    [`Limits::request_timeout`] the answer is 408 while the task runs to
//!    its end, so a change is never cut in half;
//! 6. a panicking handler is a 500, not a dropped connection.
//!
//! [`Limits::max_header_bytes`]: crate::Limits::max_header_bytes
//! [`Limits::max_body`]: crate::Limits::max_body
//! [`Limits::max_concurrent`]: crate::Limits::max_concurrent
//! [`Limits::request_timeout`]: crate::Limits::request_timeout

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use fsx_protocol::ErrorCode;
use tracing::Instrument;

use crate::AppState;
use crate::reply::Fail;

pub(crate) fn layers(app: Router, state: Arc<AppState>) -> Router {
    app.layer(tower_http::catch_panic::CatchPanicLayer::custom(
        |_panic: Box<dyn std::any::Any + Send>| {
            tracing::error!("a request handler panicked");
            Fail::new(
                ErrorCode::Internal,
                "the server failed to complete the request",
            )
            .into_response()
        },
    ))
    .layer(middleware::from_fn_with_state(state.clone(), bounded))
    .layer(middleware::from_fn_with_state(state, sized))
    .layer(middleware::from_fn(logged))
}

/// A process-unique request id: the process's start time and a counter.
fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    format!("{start:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn logged(req: Request, next: Next) -> Response {
    let id = request_id();
    let span = tracing::info_span!(
        "request",
        id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        token = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, ms, "answered");
        } else {
            tracing::info!(status, ms, "answered");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

async fn sized(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > state.limits.max_header_bytes {
        return Fail::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "the request's headers are {header_bytes} bytes; this server accepts at most {}",
                state.limits.max_header_bytes
            ),
        )
        .into_response();
    }
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = length
        && n > state.limits.max_body as u64
    {
        return too_large(state.limits.max_body).into_response();
    }
    next.run(req).await
}

/// The refusal of a body over `max` bytes.
pub(crate) fn too_large(max: usize) -> Fail {
    Fail::new(
        ErrorCode::PayloadTooLarge,
        format!("the request body is larger than this server accepts ({max} bytes)"),
    )
}

async fn bounded(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Ok(permit) = state.inflight.clone().try_acquire_owned() else {
        return Fail::new(
            ErrorCode::Unavailable,
            "the server is handling as many requests as it allows: retry later",
        )
        .into_response();
    };
    let span = tracing::Span::current();
    let task = tokio::spawn(
        async move {
            let response = next.run(req).await;
            drop(permit);
            response
        }
        .instrument(span),
    );
    match tokio::time::timeout(state.limits.request_timeout, task).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "a request task failed");
            Fail::new(
                ErrorCode::Internal,
                "the server failed to complete the request",
            )
            .into_response()
        }
        Err(_) => Fail::new(
            ErrorCode::Timeout,
            format!(
                "the request took longer than {} s; a change it asked for may still complete",
                state.limits.request_timeout.as_secs()
            ),
        )
        .into_response(),
    }
}
