//! OpenAI's two streaming protocols: Chat Completions (unnamed events of
//! `chat.completion.chunk`, then `[DONE]`) and Responses (named events,
//! `response.created` to `response.completed`).

use serde_json::Value;

use super::report::{Dialect, StreamReport};
use super::scan::{
    Key, find_key, has_items, has_object, has_text, is_object, is_set, is_text_at, key,
    starts_with_key, string, string_end, value_at,
};
use crate::framing::Event;
use crate::provider::error::{ProviderError, ProviderErrorKind};
use crate::provider::usage::Usage;

static CONTENT: Key = key!("content");
static TOOL_CALLS: Key = key!("tool_calls");
static REASONING_CONTENT: Key = key!("reasoning_content");
static REASONING: Key = key!("reasoning");
static REFUSAL: Key = key!("refusal");
static FUNCTION_CALL: Key = key!("function_call");
static FINISH_REASON: Key = key!("finish_reason");
static MODEL: Key = key!("model");
static USAGE: Key = key!("usage");
static ERROR: Key = key!("error");
static DELTA: Key = key!("delta");

/// The OpenAI Chat Completions stream, as OpenAI and the servers that copy
/// its API send it; see the [module documentation](super).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAiChat;

impl Dialect for OpenAiChat {
    fn name(&self) -> &str {
        "openai-chat"
    }

    fn read(&self, event: &Event, report: &mut StreamReport) {
        let data = event.data();
        if !is_object(data) {
            if data.trim_end() == "[DONE]" {
                report.end();
            } else {
                report.error(malformed(data));
            }
            return;
        }
        if starts_with_key(data, &ERROR) {
            report.error(in_band(data));
            return;
        }
        let (content, finished) = match by_layout(data.as_bytes(), report.layout) {
            Some(said) => said,
            None => {
                let content = has_text(data, &CONTENT)
                    || has_items(data, &TOOL_CALLS)
                    || has_text(data, &REASONING_CONTENT)
                    || has_text(data, &REASONING)
                    || has_text(data, &REFUSAL)
                    || has_object(data, &FUNCTION_CALL);
                if content {
                    report.layout = layout(data.as_bytes()).unwrap_or_default();
                }
                (content, is_set(data, &FINISH_REASON))
            }
        };
        if content {
            report.content();
        }
        if finished {
            if is_content_filter(data) {
                report.error(ProviderError::new(
                    ProviderErrorKind::ContentFiltered,
                    Some("content_filter"),
                    Some("the provider's content filter stopped the answer"),
                ));
                return;
            }
            report.end();
        }
        if report.model().is_none() {
            if let Some(model) = string(data, &MODEL) {
                report.set_model(&model);
            }
        }
        // The usage comes in the last chunks: the one with the finish
        // reason, or a chunk of its own (no content, no choices). A chunk
        // of content is not searched for it (one search less per token).
        if (finished || !content) && has_object(data, &USAGE) {
            if let Some(usage) = parsed(data).as_ref().and_then(Usage::of) {
                report.set_usage(usage);
            }
        }
    }
}

/// A chunk of text read where the last one had its text and its finish
/// reason (the chunks of one stream share their prefix: id, model, …):
/// whether it has content (always, when it fits) and a finish reason. `None`
/// when it does not fit that layout: it is then searched.
fn by_layout(bytes: &[u8], [content_at, finish_gap]: [usize; 2]) -> Option<(bool, bool)> {
    if content_at == 0 {
        return None;
    }
    let value = value_at(bytes, content_at, &CONTENT)?;
    if !is_text_at(bytes, value) {
        return None;
    }
    let end = string_end(bytes, value)?;
    let finish = value_at(bytes, end + finish_gap, &FINISH_REASON)?;
    Some((true, bytes.get(finish) == Some(&b'"')))
}

/// The layout of a chunk of text: where its `"content"` key is, and how far
/// past the text its `"finish_reason"` is.
fn layout(bytes: &[u8]) -> Option<[usize; 2]> {
    let content_at = find_key(bytes, &CONTENT, 0)?;
    let value = value_at(bytes, content_at, &CONTENT)?;
    let end = string_end(bytes, value)?;
    let finish_at = find_key(bytes, &FINISH_REASON, end)?;
    Some([content_at, finish_at - end])
}

/// Whether a chunk's `finish_reason` is `content_filter`.
fn is_content_filter(data: &str) -> bool {
    string(data, &FINISH_REASON).as_deref() == Some("content_filter")
}

/// The OpenAI Responses stream (`POST /responses` with `stream: true`); see
/// the [module documentation](super).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAiResponses;

impl Dialect for OpenAiResponses {
    fn name(&self) -> &str {
        "openai-responses"
    }

    fn read(&self, event: &Event, report: &mut StreamReport) {
        let data = event.data();
        if !is_object(data) {
            report.error(malformed(data));
            return;
        }
        match event.event() {
            "error" | "response.failed" => report.error(in_band(data)),
            "response.completed" | "response.incomplete" => {
                let value = parsed(data);
                let response = value.as_ref().and_then(|v| v.get("response"));
                if let Some(response) = response {
                    the_model_and_usage(response, report);
                }
                let reason = response
                    .and_then(|r| r.get("incomplete_details"))
                    .and_then(|d| d.get("reason"))
                    .and_then(Value::as_str);
                if reason == Some("content_filter") {
                    report.error(ProviderError::new(
                        ProviderErrorKind::ContentFiltered,
                        Some("content_filter"),
                        Some("the provider's content filter stopped the answer"),
                    ));
                } else {
                    report.end();
                }
            }
            "response.created" | "response.in_progress" if report.model().is_none() => {
                if let Some(model) = string(data, &MODEL) {
                    report.set_model(&model);
                }
            }
            name if name.ends_with(".delta") && has_text(data, &DELTA) => report.content(),
            "response.output_item.added" if has_text(data, &FUNCTION_CALL) => {
                report.content();
            }
            _ => {}
        }
    }
}

/// Both of OpenAI's streaming protocols, told apart by the events' names
/// (the Responses API names them, Chat Completions does not): the `openai`
/// preset's dialect, right whichever endpoint a call streams from.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAi;

impl Dialect for OpenAi {
    fn name(&self) -> &str {
        "openai"
    }

    fn read(&self, event: &Event, report: &mut StreamReport) {
        if event.event() == "message" {
            OpenAiChat.read(event, report);
        } else {
            OpenAiResponses.read(event, report);
        }
    }
}

/// An event's data as JSON, for the rare events that need more than a look.
pub(super) fn parsed(data: &str) -> Option<Value> {
    serde_json::from_str(data).ok()
}

/// The model and usage of a whole response object.
pub(super) fn the_model_and_usage(response: &Value, report: &mut StreamReport) {
    if let Some(model) = crate::provider::usage::answering_model(response) {
        report.set_model(model);
    }
    if let Some(usage) = Usage::of(response) {
        report.set_usage(usage);
    }
}

/// The error of an event that is not the JSON object the API sends: cut
/// short, or garbled on the way.
pub(super) fn malformed(data: &str) -> ProviderError {
    let mut start = data.len().min(120);
    while !data.is_char_boundary(start) {
        start -= 1;
    }
    ProviderError::new(
        ProviderErrorKind::ServerError,
        Some("malformed_event"),
        Some(&format!(
            "an event that is not a JSON object: {}",
            &data[..start]
        )),
    )
}

/// The error an event carries; one that cannot be read is a server error
/// whose message is the start of the event.
pub(super) fn in_band(data: &str) -> ProviderError {
    ProviderError::parse_event(data.as_bytes()).unwrap_or_else(|| {
        ProviderError::new(
            ProviderErrorKind::ServerError,
            None,
            Some(&format!("an error event the client cannot read: {data}")),
        )
    })
}
