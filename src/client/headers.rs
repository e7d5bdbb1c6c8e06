//! The headers every attempt of a client starts from.

use std::sync::Arc;

use http::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderValue};

use super::config::HttpClientConfig;
use crate::error::ConfigError;
use crate::redact::is_sensitive;
use crate::request_id::X_REQUEST_ID;

/// The header templates of a client: the defaults, the user agent, JSON content
/// negotiation, and a placeholder `x-request-id` that each attempt overwrites in
/// place (so the copy never grows).
pub(super) struct Templates {
    plain: Arc<HeaderMap>,
    json: Arc<HeaderMap>,
    stream: Arc<HeaderMap>,
    stream_json: Arc<HeaderMap>,
}

impl Templates {
    /// The templates of a client built with `config`.
    pub(super) fn new(config: &HttpClientConfig) -> Result<Self, ConfigError> {
        let mut base = HeaderMap::new();
        base.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let user_agent = HeaderValue::try_from(config.user_agent.as_str())
            .map_err(|_| ConfigError::new("user_agent", "must be a valid header value"))?;
        base.insert(USER_AGENT, user_agent);
        // The config's headers replace the defaults of their names, and keep
        // every value they were given (`HttpClientConfig::header` appends).
        for name in config.headers.keys() {
            base.remove(name);
        }
        for (name, value) in &config.headers {
            let mut value = value.clone();
            if is_sensitive(name) {
                value.set_sensitive(true);
            }
            base.append(name.clone(), value);
        }
        base.insert(X_REQUEST_ID, HeaderValue::from_static("00000000"));
        let with = |base: &HeaderMap, name, value| {
            let mut headers = base.clone();
            headers.insert(name, HeaderValue::from_static(value));
            headers
        };
        let json = with(&base, CONTENT_TYPE, "application/json");
        let stream = with(&base, ACCEPT, "application/x-ndjson");
        let stream_json = with(&json, ACCEPT, "application/x-ndjson");
        Ok(Templates {
            plain: Arc::new(base),
            json: Arc::new(json),
            stream: Arc::new(stream),
            stream_json: Arc::new(stream_json),
        })
    }

    /// The template for a request with or without a JSON body, streamed or not.
    pub(super) fn pick(&self, json: bool, streaming: bool) -> &Arc<HeaderMap> {
        match (json, streaming) {
            (false, false) => &self.plain,
            (true, false) => &self.json,
            (false, true) => &self.stream,
            (true, true) => &self.stream_json,
        }
    }
}
