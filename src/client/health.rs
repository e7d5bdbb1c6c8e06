//! The client's health check: a cheap request sent straight to the transport
//! while the provider's circuit is open, so that its recovery is noticed
//! without a caller's request.

use http::Method;
use tower::{Service, ServiceExt};

use super::config::HealthCheck;
use super::headers::Templates;
use super::transport::{Outgoing, Transport};
use crate::circuit_breaker::HealthProbe;
use crate::classify::{Outcome, classify_response};
use crate::error::ConfigError;
use crate::request_id::RequestId;

/// The breaker's probe for `check`: its request sent through `transport`.
pub(super) fn probe(
    check: &HealthCheck,
    base: &str,
    templates: &Templates,
    transport: Transport,
) -> Result<HealthProbe, ConfigError> {
    let uri = http::Uri::try_from(format!("{base}{}", check.path)).map_err(|e| {
        ConfigError::new(
            "health_check.path",
            format!("does not form a valid URL with base_url: {e}"),
        )
    })?;
    let headers = templates.pick(false, false).clone();
    let probe = HealthProbe::new(check.interval, move || {
        let mut transport = transport.clone();
        let outgoing = Outgoing {
            body: bytes::Bytes::new(),
            headers: headers.clone(),
            extra: None,
            id: RequestId::generate().header_value().clone(),
            idempotent: Some(true),
            post_is_idempotent: false,
        };
        let mut request = http::Request::new(outgoing);
        *request.method_mut() = Method::GET;
        *request.uri_mut() = uri.clone();
        Box::pin(async move {
            let Ok(ready) = transport.ready().await else {
                return false;
            };
            let alive = match ready.call(request).await {
                Ok(res) => matches!(
                    classify_response(res.status(), res.headers()),
                    Outcome::Success | Outcome::ClientError
                ),
                Err(_) => false,
            };
            tracing::debug!(alive, "health check of an open circuit");
            alive
        })
    });
    Ok(probe.timeout(check.timeout))
}
