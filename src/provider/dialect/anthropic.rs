//! Anthropic's Messages stream: `message_start`, content blocks and their
//! deltas, `message_delta` with the stop reason and the output usage,
//! `message_stop`; `ping` to keep the connection alive; `error` inside it.

use super::openai::{in_band, malformed, parsed};
use super::report::{Dialect, StreamReport};
use super::scan::{Key, has_text, is_object, is_set, key, mentions};
use crate::framing::Event;
use crate::provider::usage::Usage;

static TOOL_USE: Key = key!("tool_use");
static TEXT: Key = key!("text");
static THINKING: Key = key!("thinking");
static PARTIAL_JSON: Key = key!("partial_json");
static STOP_REASON: Key = key!("stop_reason");

/// The Anthropic Messages stream (`POST /v1/messages` with `stream: true`);
/// see the [module documentation](super).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnthropicMessages;

impl Dialect for AnthropicMessages {
    fn name(&self) -> &str {
        "anthropic"
    }

    fn read(&self, event: &Event, report: &mut StreamReport) {
        let data = event.data();
        if !is_object(data) {
            report.error(if event.event() == "error" {
                in_band(data)
            } else {
                malformed(data)
            });
            return;
        }
        match event.event() {
            "content_block_delta"
                if has_text(data, &TEXT)
                    || has_text(data, &THINKING)
                    || has_text(data, &PARTIAL_JSON) =>
            {
                report.content();
            }
            // A tool call's start is the model's output, even before its input.
            "content_block_start" if mentions(data, &TOOL_USE) => report.content(),
            "message_start" => {
                if let Some(message) = parsed(data).as_ref().and_then(|v| v.get("message")) {
                    super::openai::the_model_and_usage(message, report);
                }
            }
            "message_delta" => {
                // The output's usage; the input's came with `message_start`,
                // unless this one says both.
                if let Some(later) = parsed(data).as_ref().and_then(Usage::of_parts) {
                    let usage = match report.usage() {
                        Some(mut usage) => {
                            usage.output_tokens = later.output_tokens;
                            if later.input_tokens > 0 {
                                usage.input_tokens = later.input_tokens;
                            }
                            if later.cached_tokens.is_some() {
                                usage.cached_tokens = later.cached_tokens;
                            }
                            usage
                        }
                        None => later,
                    };
                    report.set_usage(usage);
                }
                if is_set(data, &STOP_REASON) {
                    report.end();
                }
            }
            "message_stop" => report.end(),
            "error" => report.error(in_band(data)),
            _ => {}
        }
    }
}
