//! Who may call a route: the bearer token against the volume's metadata
//! (`fsx_meta::MetaTokens`), its scope, the volume's public-read setting,
//! and the rate per token.
//!
//! The answers, in order:
//!
//! 1. the route is [`Access::Public`]: served;
//! 2. the path names a volume this server does not serve: 404;
//! 3. no `Authorization` header: a read of a public-read volume is
//!    served, anything else is 401;
//! 4. a header that is not `Bearer <token>`, a token of no served volume,
//!    a wrong secret or a revoked token: 401 (the message does not say
//!    which, so a guesser learns nothing);
//! 5. a valid token of another served volume: 403;
//! 6. a valid token whose scope is below the route's: 403;
//! 7. the token's (or the public volume's) rate is used up: 429.
//!
//! Tokens are looked up at every request, so a revocation by any server
//! or `fsx token revoke` holds from the next request on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fsx_protocol::{Access, ErrorCode, Route, Scope, Token};

use crate::AppState;
use crate::handlers::ServedVolume;
use crate::reply::Fail;

/// What a request was allowed as, for handlers and logs.
#[derive(Debug, Clone)]
pub(crate) struct Allowed {
    /// The token's id, or `None` for a public read.
    pub token: Option<String>,
}

/// The access check in front of every route's handler.
pub(crate) async fn check(
    State((state, route)): State<(Arc<AppState>, Route)>,
    req: Request,
    next: Next,
) -> Response {
    let Access::Token(needed) = route.access else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    let vol = match Path::<HashMap<String, String>>::from_request_parts(&mut parts, &()).await {
        Ok(Path(params)) => params.get("vol").cloned().unwrap_or_default(),
        Err(_) => String::new(),
    };
    let req = Request::from_parts(parts, body);
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    match allow(&state, &vol, needed, authorization).await {
        Ok((volume, allowed)) => {
            let key = match &allowed.token {
                Some(id) => format!("token:{id}"),
                None => format!("public:{vol}"),
            };
            if !state.rate.take(&key) {
                return Fail::new(
                    ErrorCode::RateLimited,
                    "too many requests for this token: slow down and retry",
                )
                .into_response();
            }
            if let Some(id) = &allowed.token {
                tracing::Span::current().record("token", id.as_str());
            }
            let mut req = req;
            req.extensions_mut().insert(volume);
            req.extensions_mut().insert(allowed);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

fn unauthorized() -> Fail {
    Fail::new(
        ErrorCode::Unauthorized,
        "a valid token is needed: send Authorization: Bearer TOKEN (see `fsx token create`)",
    )
}

/// Whether `token` is a valid (matching, unrevoked) token of `v`, and
/// its scope.
async fn scope_in(v: &ServedVolume, token: &Token) -> Result<Option<Scope>, Fail> {
    let Some(record) = v.volume.meta().token(token.id()).await? else {
        return Ok(None);
    };
    if record.revoked_ms.is_some() {
        return Ok(None);
    }
    let Ok(hash) = fsx_protocol::TokenHash::from_hex(&record.secret_hash) else {
        tracing::warn!(volume = %v.name, id = token.id(), "a stored token hash is malformed");
        return Ok(None);
    };
    if !token.matches(&hash) {
        return Ok(None);
    }
    match record.scope.parse::<Scope>() {
        Ok(s) => Ok(Some(s)),
        Err(_) => {
            tracing::warn!(volume = %v.name, id = token.id(), scope = %record.scope, "a stored token has an unknown scope");
            Ok(None)
        }
    }
}

async fn allow(
    state: &AppState,
    vol: &str,
    needed: Scope,
    authorization: Option<header::HeaderValue>,
) -> Result<(Arc<ServedVolume>, Allowed), Fail> {
    fsx_protocol::validate::check_volume_name(vol)?;
    let Some(volume) = state.volumes.get(vol).cloned() else {
        return Err(Fail::new(
            ErrorCode::NotFound,
            format!("this server serves no volume {vol:?}"),
        ));
    };
    let Some(value) = authorization else {
        if needed == Scope::Read && volume.public_read {
            return Ok((volume, Allowed { token: None }));
        }
        return Err(unauthorized());
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| Token::from_bearer(v).ok())
        .ok_or_else(unauthorized)?;
    match scope_in(&volume, &token).await? {
        Some(scope) if scope.allows(needed) => Ok((
            volume,
            Allowed {
                token: Some(token.id().to_string()),
            },
        )),
        Some(scope) => Err(Fail::new(
            ErrorCode::Forbidden,
            format!("this token's scope is {scope}; this request needs {needed}"),
        )),
        None => {
            for other in state.volumes.values() {
                if other.name != volume.name && scope_in(other, &token).await?.is_some() {
                    return Err(Fail::new(
                        ErrorCode::Forbidden,
                        format!("this token is not a token of volume {vol:?}"),
                    ));
                }
            }
            Err(unauthorized())
        }
    }
}

/// Token buckets by key (a token id, or a public volume).
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets kept before full ones are forgotten (a full bucket is what a
/// new one would be, so forgetting it changes nothing).
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    pub fn new(per_sec: f64, burst: f64) -> Self {
        Self {
            per_sec: per_sec.max(0.0),
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket; false when it is empty.
    pub fn take(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets.retain(|_, (level, at)| {
                *level + now.duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let (level, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses() {
        // No refill: a rate of zero per second.
        let r = RateLimiter::new(0.0, 3.0);
        assert!(r.take("a") && r.take("a") && r.take("a"));
        assert!(!r.take("a"));
        assert!(r.take("b"), "buckets are per key");
    }
}
