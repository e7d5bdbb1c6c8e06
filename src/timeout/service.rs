//! [`TimeoutService`] and the per-request [`RequestTimeout`].

use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use super::future::ResponseFuture;
use crate::deadline::{Attempts, RequestDeadline};
use crate::error::BoxError;

/// The header by which a gRPC client tells the server its deadline.
const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// Whether a request is gRPC (`content-type: application/grpc`, `+proto`, …).
fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A `grpc-timeout` value for `limit`: at most 8 digits and a unit, rounded up
/// so that the server never gives up before the client.
pub(crate) fn grpc_timeout(limit: Duration) -> http::HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = limit.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    for (size, unit) in units {
        let value = nanos.div_ceil(size);
        if value <= MAX {
            return http::HeaderValue::from_str(&format!("{value}{unit}"))
                .unwrap_or(http::HeaderValue::from_static("99999999H"));
        }
    }
    http::HeaderValue::from_static("99999999H")
}

/// A per-request limit that overrides the layer's default; put it in the
/// request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeout(pub Duration);

/// A service with a deadline on each call; made by [`TimeoutLayer`](super::TimeoutLayer).
///
/// # Errors
///
/// Inner errors are converted into [`BoxError`]; the layer adds [`Elapsed`](super::Elapsed).
#[derive(Debug, Clone)]
pub struct TimeoutService<S> {
    pub(crate) inner: S,
    pub(crate) default: Duration,
}

impl<S> TimeoutService<S> {
    /// Wraps `inner` with a default limit.
    pub const fn new(inner: S, default: Duration) -> Self {
        TimeoutService { inner, default }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the wrapper, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> TimeoutService<S> {
    /// A gRPC call: the same limit, also sent to the server as `grpc-timeout`
    /// (unless the request has one), so that the server stops working on a call
    /// the client has given up on.
    #[cold]
    fn call_grpc<B>(&mut self, mut req: http::Request<B>) -> ResponseFuture<S::Future>
    where
        S: Service<http::Request<B>>,
    {
        let extensions = req.extensions();
        let limit = extensions
            .get::<RequestTimeout>()
            .map_or(self.default, |t| t.0);
        let deadline = extensions.get::<RequestDeadline>().map(|d| d.0);
        if let Some(attempts) = extensions.get::<Attempts>() {
            attempts.count();
        }
        let left = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        let sent = left.map_or(limit, |left| left.min(limit));
        if !req.headers().contains_key(GRPC_TIMEOUT) {
            req.headers_mut().insert(GRPC_TIMEOUT, grpc_timeout(sent));
        }
        match (deadline, left) {
            (Some(deadline), Some(left)) if left <= limit => {
                ResponseFuture::until(self.inner.call(req), deadline, left)
            }
            _ => ResponseFuture::new(self.inner.call(req), limit),
        }
    }
}

impl<S, B> Service<http::Request<B>> for TimeoutService<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if is_grpc(req.headers()) {
            return self.call_grpc(req);
        }
        let extensions = req.extensions();
        let limit = extensions
            .get::<RequestTimeout>()
            .map_or(self.default, |t| t.0);
        // The clock is read only for a request that has a deadline.
        if let Some(&RequestDeadline(deadline)) = extensions.get::<RequestDeadline>() {
            if let Some(attempts) = extensions.get::<Attempts>() {
                attempts.count();
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left <= limit {
                return ResponseFuture::until(self.inner.call(req), deadline, left);
            }
        }
        ResponseFuture::new(self.inner.call(req), limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_use_at_most_eight_digits_and_round_up() {
        let t = |d: Duration| grpc_timeout(d).to_str().unwrap().to_owned();
        assert_eq!(t(Duration::from_nanos(1)), "1n");
        assert_eq!(t(Duration::from_millis(250)), "250000u");
        assert_eq!(t(Duration::from_secs(5)), "5000000u");
        assert_eq!(t(Duration::from_secs(150)), "150000m");
        assert_eq!(t(Duration::from_nanos(150_000_000_001)), "150001m");
        assert_eq!(t(Duration::from_secs(365 * 86_400)), "31536000S");
        assert_eq!(t(Duration::MAX), "99999999H");
        for d in [Duration::ZERO, Duration::from_secs(1 << 40)] {
            let text = t(d);
            assert!(text.len() <= 9, "{text}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_grpc_request_tells_the_server_its_limit_and_others_do_not() {
        use tower::{Layer, ServiceExt};
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let svc = super::super::TimeoutLayer::new(Duration::from_secs(2)).layer(tower::service_fn(
            move |req: http::Request<()>| {
                record
                    .lock()
                    .unwrap()
                    .push(req.headers().get(GRPC_TIMEOUT).cloned());
                async { Ok::<_, std::convert::Infallible>(()) }
            },
        ));
        let grpc = http::Request::post("/pkg.Svc/Call")
            .header("content-type", "application/grpc+proto")
            .body(())
            .unwrap();
        svc.clone().oneshot(grpc).await.unwrap();
        let mut late = http::Request::post("/pkg.Svc/Call")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        late.extensions_mut().insert(RequestDeadline(
            tokio::time::Instant::now() + Duration::from_millis(300),
        ));
        svc.clone().oneshot(late).await.unwrap();
        svc.oneshot(http::Request::new(())).await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].as_ref().unwrap(), "2000000u");
        assert_eq!(
            seen[1].as_ref().unwrap(),
            "300000u",
            "the deadline's time left"
        );
        assert!(seen[2].is_none(), "not gRPC: no header");
    }
}
