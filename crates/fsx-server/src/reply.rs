//! Errors of every layer as the protocol's JSON error body, with the
//! status of its code. Messages of server-side failures (500) are logged
//! in full and answered with a short text: they may name paths and URLs
//! of the server's own storage.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fsx_protocol::{ApiError, ErrorCode};
use fsx_store::ErrorKind as StoreKind;

/// A failed request's answer.
#[derive(Debug)]
pub(crate) struct Fail(pub ApiError);

pub(crate) type Result<T> = std::result::Result<T, Fail>;

impl Fail {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ApiError::new(code, message))
    }
}

impl From<ApiError> for Fail {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<fsx_protocol::InvalidInput> for Fail {
    fn from(e: fsx_protocol::InvalidInput) -> Self {
        Self(e.into())
    }
}

/// A server-side failure: logged whole, answered briefly.
fn internal(what: &(dyn std::error::Error + 'static)) -> Fail {
    tracing::error!(error = %fsx_volume::error_chain(what), "request failed");
    Fail::new(
        ErrorCode::Internal,
        "the server failed to complete the request; see its log",
    )
}

impl From<fsx_engine::Error> for Fail {
    fn from(e: fsx_engine::Error) -> Self {
        use fsx_engine::ErrorKind as K;
        let code = match e.kind() {
            K::NotFound => ErrorCode::NotFound,
            K::AlreadyExists | K::Busy | K::Conflict => ErrorCode::Conflict,
            K::InvalidInput => ErrorCode::BadRequest,
            K::Unavailable => ErrorCode::Unavailable,
            K::Gone => ErrorCode::Gone,
            _ => return internal(&e),
        };
        Fail::new(code, e.to_string())
    }
}

impl From<fsx_meta::MetaError> for Fail {
    fn from(e: fsx_meta::MetaError) -> Self {
        Fail::from(fsx_engine::Error::from(e))
    }
}

impl From<fsx_posix::FsError> for Fail {
    fn from(e: fsx_posix::FsError) -> Self {
        use fsx_posix::errno as E;
        let code = match e.errno() {
            E::ENOENT => ErrorCode::NotFound,
            E::EEXIST | E::ENOTEMPTY | E::EBUSY | E::EISDIR | E::ENOTDIR => ErrorCode::Conflict,
            E::EROFS => ErrorCode::ReadOnly,
            E::EINVAL | E::ENAMETOOLONG => ErrorCode::BadRequest,
            E::EACCES | E::EPERM => ErrorCode::Forbidden,
            _ => return internal(&e),
        };
        Fail::new(code, e.message().to_string())
    }
}

impl From<fsx_store::StoreError> for Fail {
    fn from(e: fsx_store::StoreError) -> Self {
        let code = match e.kind() {
            StoreKind::NotFound => ErrorCode::NotFound,
            StoreKind::InvalidInput => ErrorCode::BadRequest,
            StoreKind::Unavailable => ErrorCode::Unavailable,
            _ => return internal(&e),
        };
        Fail::new(code, e.to_string())
    }
}

/// The JSON error response of `e`.
pub(crate) fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&e.body()).unwrap_or_default();
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

/// A JSON body with status 200.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut r = body.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => internal(&e).into_response(),
    }
}

/// The answer to a path no route has.
pub(crate) async fn not_found(uri: axum::http::Uri) -> Fail {
    Fail::new(
        ErrorCode::NotFound,
        format!(
            "no endpoint {}",
            uri.path().chars().take(200).collect::<String>()
        ),
    )
}
