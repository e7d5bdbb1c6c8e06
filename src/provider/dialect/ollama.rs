//! Ollama's own streams: NDJSON lines from `/api/chat` and `/api/generate`,
//! the last with `"done": true` and the token counts.

use super::openai::{OpenAiChat, in_band, malformed, parsed};
use super::report::{Dialect, StreamReport};
use super::scan::{
    Key, has_items, has_text, is_object, is_true, key, mentions, starts_with_key, string,
};
use crate::framing::Event;
use crate::provider::usage::Usage;

static CHOICES: Key = key!("choices");
static CONTENT: Key = key!("content");
static TOOL_CALLS: Key = key!("tool_calls");
static MODEL: Key = key!("model");
static ERROR: Key = key!("error");
static THINKING: Key = key!("thinking");
static RESPONSE: Key = key!("response");
static DONE: Key = key!("done");

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
        if data.trim_end() == "[DONE]" || mentions(data, &CHOICES) {
            OpenAiChat.read(event, report);
            return;
        }
        if !is_object(data) {
            report.error(malformed(data));
            return;
        }
        if starts_with_key(data, &ERROR) {
            report.error(in_band(data));
            return;
        }
        if has_text(data, &CONTENT)
            || has_text(data, &RESPONSE)
            || has_text(data, &THINKING)
            || has_items(data, &TOOL_CALLS)
        {
            report.content();
        }
        if report.model().is_none() {
            if let Some(model) = string(data, &MODEL) {
                report.set_model(&model);
            }
        }
        if is_true(data, &DONE) {
            if let Some(usage) = parsed(data).as_ref().and_then(Usage::of) {
                report.set_usage(usage);
            }
            report.end();
        }
    }
}
