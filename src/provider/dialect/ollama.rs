//! Ollama's own streams: NDJSON lines from `/api/chat` and `/api/generate`,
//! the last with `"done": true` and the token counts.

use super::openai::{OpenAiChat, in_band, malformed, parsed};
use super::report::{Dialect, StreamReport};
use super::scan::{has_items, has_text, is_object, is_true, starts_with_key, string};
use crate::framing::Event;
use crate::provider::usage::Usage;

/// Ollama's NDJSON stream (`/api/chat`, `/api/generate`); an event stream
/// from its OpenAI-compatible `/v1` endpoints is read as [`OpenAiChat`]. See
/// the [module documentation](super).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ollama;

impl Dialect for Ollama {
    fn name(&self) -> &str {
        "ollama"
    }

    fn read(&self, event: &Event, report: &mut StreamReport) {
        let data = event.data();
        if data.trim_end() == "[DONE]" || data.contains(r#""choices""#) {
            OpenAiChat.read(event, report);
            return;
        }
        if !is_object(data) {
            report.error(malformed(data));
            return;
        }
        if starts_with_key(data, r#""error""#) {
            report.error(in_band(data));
            return;
        }
        if has_text(data, r#""content""#)
            || has_text(data, r#""response""#)
            || has_text(data, r#""thinking""#)
            || has_items(data, r#""tool_calls""#)
        {
            report.content();
        }
        if report.model().is_none() {
            if let Some(model) = string(data, r#""model""#) {
                report.set_model(&model);
            }
        }
        if is_true(data, r#""done""#) {
            if let Some(usage) = parsed(data).as_ref().and_then(Usage::of) {
                report.set_usage(usage);
            }
            report.end();
        }
    }
}
