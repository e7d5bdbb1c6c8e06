//! OpenAI's two streaming protocols: Chat Completions (unnamed events of
//! `chat.completion.chunk`, then `[DONE]`) and Responses (named events,
//! `response.created` to `response.completed`).

use serde_json::Value;

use super::report::{Dialect, StreamReport};
use super::scan::{has_items, has_object, has_text, is_object, is_set, starts_with_key, string};
use crate::framing::Event;
use crate::provider::error::{ProviderError, ProviderErrorKind};
use crate::provider::usage::Usage;

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
        if data.trim_end() == "[DONE]" {
            report.end();
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
            || has_items(data, r#""tool_calls""#)
            || has_text(data, r#""reasoning_content""#)
            || has_text(data, r#""reasoning""#)
            || has_text(data, r#""refusal""#)
            || has_object(data, r#""function_call""#)
        {
            report.content();
        }
        if is_set(data, r#""finish_reason""#) {
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
            if let Some(model) = string(data, r#""model""#) {
                report.set_model(&model);
            }
        }
        if has_object(data, r#""usage""#) {
            if let Some(usage) = parsed(data).as_ref().and_then(Usage::of) {
                report.set_usage(usage);
            }
        }
    }
}

/// Whether a chunk's `finish_reason` is `content_filter`.
fn is_content_filter(data: &str) -> bool {
    string(data, r#""finish_reason""#).as_deref() == Some("content_filter")
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
                if let Some(model) = string(data, r#""model""#) {
                    report.set_model(&model);
                }
            }
            name if name.ends_with(".delta") && has_text(data, r#""delta""#) => report.content(),
            "response.output_item.added" if has_text(data, r#""function_call""#) => {
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
