//! [`HttpClient`] itself: the provider's stack, built once from a validated
//! configuration and shared by every clone.

use std::fmt;
use std::sync::Arc;

use tower::ServiceBuilder;

use super::config::HttpClientConfig;
use super::headers::Templates;
use super::models::ModelStacks;
use super::stats::{ClientStats, Counters};
use super::transport::{self, Outgoing, Transport};
use crate::chaos::{ChaosLayer, ChaosService};
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, CircuitBreakerService};
use crate::classify::HttpClassifier;
use crate::error::Error;
use crate::hedge::{HedgeLayer, HedgeService};
use crate::pool::{PoolLimitLayer, PoolLimitService};
use crate::rate_limit::{RateLimitLayer, RateLimitService, RateLimiter};
use crate::read_ahead::{FirstToken, ReadAhead, ReadAheadLayer};
use crate::retry::{RetryLayer, RetryService, RetryStats, SharedBudget};
use crate::timeout::{TimeoutLayer, TimeoutService};

/// The provider's stack, the crate's public layers composed: breaker, retry,
/// hedge, rate limit, a stream read ahead to its first line, per-attempt
/// timeout, slot limit, injected faults (off unless configured), transport.
pub(super) type Stack = CircuitBreakerService<
    RetryService<
        HedgeService<
            RateLimitService<
                ReadAhead<TimeoutService<PoolLimitService<ChaosService<Transport>>>, FirstToken>,
            >,
        >,
        HttpClassifier,
    >,
    HttpClassifier,
>;

pub(super) type StackRequest = http::Request<Outgoing>;

/// The body of the stack's answers: a buffered body as it is, a stream with its
/// first line read ahead.
pub(super) type StackBody = crate::read_ahead::ReadAheadBody<transport::ClientBody>;

/// A resilient HTTP client for one provider; see the [module documentation](super).
///
/// # Clone
///
/// Cheap: clones share one connection pool, one circuit breaker, one retry
/// budget and one set of stats. Use [`ServiceRegistry`](crate::ServiceRegistry) to
/// share one client per provider across an application.
#[derive(Clone)]
pub struct HttpClient {
    pub(super) inner: Arc<ClientInner>,
}

pub(super) struct ClientInner {
    pub(super) config: HttpClientConfig,
    /// `base_url` without a trailing slash.
    pub(super) base: String,
    /// The path of `base_url` without a trailing slash (`/v1`), or empty.
    pub(super) base_path: String,
    /// The headers of every attempt, chosen by whether the request has a JSON
    /// body and whether its answer is streamed; see [`Templates`].
    pub(super) templates: Templates,
    pub(super) stack: Stack,
    pub(super) breaker: CircuitBreaker,
    pub(super) counters: Arc<Counters>,
    pub(super) retry_stats: Arc<RetryStats>,
    pub(super) hedge: HedgeLayer,
    pub(super) pool: PoolLimitLayer,
    pub(super) limiter: RateLimiter,
    pub(super) provider: Option<Arc<str>>,
    /// A breaker per model, for a config with `breaker_per_model`.
    pub(super) models: Option<ModelStacks<Stack>>,
    /// Whether a limit counts tokens: a buffered answer's usage then settles
    /// its call's reservation.
    pub(super) settles_tokens: bool,
}

impl HttpClient {
    /// Builds a client, checking `config` first.
    ///
    /// # Errors
    ///
    /// A configuration error ([`ErrorKind::Config`](crate::ErrorKind::Config)) naming the field and rule.
    pub fn new(config: HttpClientConfig) -> Result<Self, Error> {
        Self::build(None, config)
    }

    /// Builds a client whose request spans carry `provider` (as
    /// [`ServiceRegistry`](crate::ServiceRegistry) does).
    pub fn for_provider(provider: &str, config: HttpClientConfig) -> Result<Self, Error> {
        Self::build(Some(Arc::from(provider)), config)
    }

    fn build(provider: Option<Arc<str>>, config: HttpClientConfig) -> Result<Self, Error> {
        config.validate()?;
        let base = config.base_url.trim_end_matches('/').to_owned();
        let base_path = config.base_uri()?.path().trim_end_matches('/').to_owned();
        let templates = Templates::new(&config)?;
        let label: Arc<str> = provider.clone().unwrap_or_else(|| Arc::from("default"));
        let counters = Arc::new(Counters::new(label.clone()));
        let transport = Transport::new(&config, label.clone())?;
        // Every layer is named: each reports its own metrics.
        let mut breaker = config.breaker_builder();
        if let Some(check) = &config.health_check {
            let probe = super::health::probe(check, &base, &templates, transport.clone())?;
            breaker = breaker.health_probe(probe);
        }
        // Each model's breaker, if kept, is this one made again, named
        // after its model.
        let models = config
            .breaker_per_model
            .then(|| ModelStacks::new(breaker.clone(), label.clone()));
        let breaker = breaker.provider(label.clone()).build()?;
        let mut retry = RetryLayer::new(config.retry_config())
            .provider(label.clone())
            .classifier(HttpClassifier);
        // One budget for retries and hedged copies alike.
        let budget = config.retry.budget.then(crate::retry::default_budget);
        retry = match &budget {
            Some(budget) => retry.budget(budget.clone()),
            None => retry.without_budget(),
        };
        let hedge = hedge_layer(&config, budget.as_ref())?.provider(label.clone());
        let retry_stats = retry.stats();
        let pool = PoolLimitLayer::new(config.max_connections, config.pool_timeout);
        // Below the retry layer, so that every attempt takes its turn; above
        // the timeout, so that waiting does not eat an attempt's time. A call
        // without a deadline waits as long as its retries would have lasted:
        // the limiter never fails a call that plain retries would have saved.
        let mut limiter = limiter(&config, &label)?
            .with_max_wait(retry_schedule(&config))
            .provider(label.clone());
        if let Some(cold) = config.cold_start {
            limiter = limiter.with_cold_start(cold);
        }
        if config.rate_limit_per_model {
            limiter = limiter.per_model();
        }
        // Just above the transport, so that an injected fault meets every
        // layer a real one would.
        let chaos = match &config.chaos {
            Some(chaos) => ChaosLayer::new(chaos.clone())?,
            None => ChaosLayer::off(),
        };
        let settles_tokens = config
            .rate_limit
            .as_ref()
            .is_some_and(|limit| limit.tokens_per_minute.is_some());
        let stack = ServiceBuilder::new()
            .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(HttpClassifier))
            .layer(retry)
            .layer(hedge.clone())
            .layer(RateLimitLayer::new(limiter.clone()))
            // A streamed answer is the attempt's until its first line: a break
            // or a stall before it is retried like any failed attempt. Above
            // the timeout, which bounds the wait for the head alone; a line
            // longer than the limit is handed on for the reader to refuse.
            .layer(
                ReadAheadLayer::new(config.stream_idle_timeout)
                    .max_bytes(config.max_line_bytes.saturating_add(1))
                    .only_marked()
                    .until(FirstToken::default()),
            )
            .layer(TimeoutLayer::new(config.default_timeout))
            .layer(pool.clone())
            .layer(chaos)
            .service(transport);
        Ok(HttpClient {
            inner: Arc::new(ClientInner {
                config,
                base,
                base_path,
                templates,
                stack,
                breaker,
                counters,
                retry_stats,
                hedge,
                pool,
                limiter,
                provider,
                models,
                settles_tokens,
            }),
        })
    }

    /// The provider's circuit breaker: every call's, or, with
    /// [`breaker_per_model`](HttpClientConfig::breaker_per_model), the calls'
    /// that name no model (see [`model_circuit_breaker`](Self::model_circuit_breaker)).
    pub fn circuit_breaker(&self) -> &CircuitBreaker {
        &self.inner.breaker
    }

    /// The circuit breaker of `model`, for a client with
    /// [`breaker_per_model`](HttpClientConfig::breaker_per_model), once a
    /// call has named the model. The calls that name no model (and any past
    /// the 1,024th model) go through [`circuit_breaker`](Self::circuit_breaker).
    pub fn model_circuit_breaker(&self, model: &str) -> Option<CircuitBreaker> {
        self.inner.models.as_ref()?.breaker(model)
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &HttpClientConfig {
        &self.inner.config
    }

    /// The provider's rate limiter: its stats, or a handle to share with
    /// another stack calling the same provider with the same key.
    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.inner.limiter
    }

    /// The provider name given to [`for_provider`](Self::for_provider), if any.
    pub fn provider(&self) -> Option<&str> {
        self.inner.provider.as_deref()
    }

    /// Settings and live counters.
    pub fn stats(&self) -> ClientStats {
        let inner = &*self.inner;
        inner.counters.snapshot(
            &inner.config,
            &inner.breaker,
            &inner.retry_stats,
            &inner.pool,
            &inner.limiter,
            inner.hedge.stats(),
        )
    }
}

/// The client's hedging (off unless configured), drawing on its retry budget.
fn hedge_layer(
    config: &HttpClientConfig,
    budget: Option<&SharedBudget>,
) -> Result<HedgeLayer, Error> {
    let Some(hedge) = config.hedge else {
        return Ok(HedgeLayer::off());
    };
    let layer = HedgeLayer::new(hedge)?;
    Ok(match budget {
        Some(budget) => layer.budget(budget.clone()),
        None => layer,
    })
}

/// How long a call's retries would last without a deadline: the backoff
/// delays of all its retries, before jitter, and at least `retry_max_delay`.
fn retry_schedule(config: &HttpClientConfig) -> std::time::Duration {
    let retry = config.retry_config();
    let total = (0..config.max_retries)
        .map(|attempt| retry.exponential(attempt))
        .fold(std::time::Duration::ZERO, |sum, d| sum.saturating_add(d));
    total.max(config.retry_max_delay)
}

/// The provider's rate limiter: in the process, or (feature `redis`) in Redis
/// under the provider's name and a hash of the headers that carry its key.
fn limiter(config: &HttpClientConfig, label: &str) -> Result<RateLimiter, Error> {
    #[cfg(feature = "redis")]
    if let (Some(limit), Some(fleet)) = (config.rate_limit, &config.fleet) {
        return Ok(RateLimiter::fleet_keyed(
            limit,
            fleet.clone(),
            label,
            &credentials(&config.headers),
        )?);
    }
    let _ = label;
    Ok(match config.rate_limit {
        Some(limit) => RateLimiter::with_limit(limit)?,
        None => RateLimiter::new(),
    })
}

/// The values of the headers that carry credentials (`authorization`,
/// `x-api-key`, …), name by name in order: what a fleet's budget is keyed by,
/// hashed.
#[cfg(feature = "redis")]
fn credentials(headers: &http::HeaderMap) -> Vec<u8> {
    let mut found: Vec<(&str, &[u8])> = headers
        .iter()
        .filter(|(name, _)| crate::redact::is_sensitive(name))
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    found.sort_unstable();
    let mut secret = Vec::new();
    for (name, value) in found {
        secret.extend_from_slice(name.as_bytes());
        secret.push(b':');
        secret.extend_from_slice(value);
        secret.push(b'\n');
    }
    secret
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("provider", &self.inner.provider)
            .field("config", &self.inner.config)
            .field("breaker", &self.inner.breaker)
            .finish()
    }
}
