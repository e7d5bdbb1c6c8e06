//! Failover across providers: [`ProviderGroup`] calls [`HttpClient`]s in
//! priority order with one request API, and moves a call on to the next
//! provider when the one before fails in a way the next may not — as LLM
//! gateways (LiteLLM's router, Portkey, OpenRouter) fail over between
//! deployments.
//!
//! # When a call moves on
//!
//! Each provider first applies its own breaker, rate limit and retries, but
//! while a next provider could take the call, it stays only as long as
//! staying can help:
//!
//! | the provider's failure | while a next provider waits | the last provider |
//! | --- | --- | --- |
//! | no answer in time, the connection refused or broken | not tried again: moves on | its retries |
//! | a failed answer (a 5xx) | retried once, then moves on | its retries |
//! | a throttled answer (`429`, or a `503` asking for a wait) | waited out if it asks for 1 s or less, else moves on | its retries, within `retry_max_delay` |
//! | a half-open probe (see [`circuit_breaker`](crate::circuit_breaker)) | one attempt | one attempt |
//! | the account's error: a spent quota (OpenAI's `insufficient_quota`, Anthropic's `billing_error`) or a refused key (see [`ProviderError`](crate::provider::ProviderError)) | not retried: moves on, and the provider cools down for 5 minutes (its next calls move on at once, sending nothing) | not retried |
//!
//! After them, a call moves on:
//!
//! | the provider's failure | any call | only a call safe to repeat |
//! | --- | :---: | :---: |
//! | circuit open, connection refused or not made, no pool slot, a rate-limit wait past the deadline, a final `429`, the account refused (nothing was processed) | ✓ | |
//! | a 5xx after its retries, a timeout, a connection or body broken after sending | | ✓ |
//! | anything [`move_on_when`](ProviderGroup::move_on_when) accepts | | ✓ |
//!
//! Two of the provider's errors, read by name
//! ([`Error::provider_error`](crate::Error::provider_error)), decide alone:
//!
//! | the provider's error | the call |
//! | --- | --- |
//! | a prompt too long ([`ContextLengthExceeded`](crate::provider::ProviderErrorKind::ContextLengthExceeded)) | moves on, whatever its method, to the next provider that declares a larger [`context_window`](ProviderGroup::context_window), skipping the others; ends with the error if there is none |
//! | content filtered ([`ContentFiltered`](crate::provider::ProviderErrorKind::ContentFiltered)) | ends with the error, which carries the provider's reason, even if `move_on_when` accepts it |
//!
//! and never once the group's deadline has passed, nor, for a stream, once
//! its first line has arrived (the [`StreamResponse`](crate::client::StreamResponse)
//! is then the caller's). "Safe to repeat" is the client's own rule: the call's
//! [`idempotent`](GroupRequest::idempotent) flag, else its method, and `POST`
//! as each provider's
//! [`post_is_idempotent`](crate::HttpClientConfig::post_is_idempotent) says.
//!
//! One deadline ([`ProviderGroup::deadline`], [`GroupRequest::deadline`])
//! spans every provider tried: each is given what is left. The answer says
//! who gave it ([`Response::provider`](crate::client::Response::provider));
//! an error says who failed last ([`Error::provider`]) and keeps every
//! provider's failure ([`Error::attempts`]).
//!
//! # Example
//!
//! A local Ollama first, a cloud API when it is down, each asked in its own
//! API's terms:
//!
//! ```
//! # async fn run() -> Result<(), stache_resilience::Error> {
//! use stache_resilience::failover::{LogicalRequest, ProviderGroup};
//! use stache_resilience::{HttpClient, HttpClientConfig};
//!
//! let local = HttpClient::for_provider("ollama", HttpClientConfig::ollama("http://127.0.0.1:11434"))?;
//! let cloud = HttpClient::for_provider("mixedbread", HttpClientConfig::mixedbread("key"))?;
//! let group = ProviderGroup::new(vec![local]).shaped(cloud, |call: &LogicalRequest| {
//!     let mut call = call.clone();
//!     call.endpoint = "/embeddings".into();
//!     if let Some(json) = call.json.as_mut() {
//!         json["model"] = "mixedbread-ai/mxbai-embed-large-v1".into();
//!     }
//!     call
//! });
//! let call = group.post("/api/embed", &serde_json::json!({"model": "nomic-embed-text", "input": ["hi"]}));
//! # drop(call);
//! # Ok(()) }
//! ```
//!
//! [`HttpClient`]: crate::HttpClient
//! [`Error::provider`]: crate::Error::provider
//! [`Error::attempts`]: crate::Error::attempts

mod decide;
mod group;
mod logical;
mod member;
mod request;

pub use self::group::ProviderGroup;
pub use self::logical::LogicalRequest;
pub use self::request::{GroupRequest, GroupStreamRequest};
pub use crate::error::ProviderFailure;
