//! [`Usage`], and the model that answered: what an LLM API's answer reports
//! about itself.
//!
//! | API | model | input | output | cached | reasoning |
//! | --- | --- | --- | --- | --- | --- |
//! | OpenAI Chat Completions, embeddings (and compatible servers) | `model` | `usage.prompt_tokens` | `usage.completion_tokens` | `usage.prompt_tokens_details.cached_tokens` | `usage.completion_tokens_details.reasoning_tokens` |
//! | OpenAI Responses | `model` | `usage.input_tokens` | `usage.output_tokens` | `usage.input_tokens_details.cached_tokens` | `usage.output_tokens_details.reasoning_tokens` |
//! | Anthropic Messages | `model` | `usage.input_tokens` | `usage.output_tokens` | `usage.cache_read_input_tokens` | – |
//! | Gemini | `modelVersion` | `usageMetadata.promptTokenCount` | `usageMetadata.candidatesTokenCount` | `usageMetadata.cachedContentTokenCount` | `usageMetadata.thoughtsTokenCount` |
//! | Ollama | `model` | `prompt_eval_count` | `eval_count` | – | – |

use serde_json::Value;

/// The tokens one answer used, as its provider reports them; from
/// [`Usage::from_json`], or
/// [`Response::usage`](crate::client::Response::usage).
///
/// ```
/// use stache_resilience::provider::Usage;
///
/// let body = br#"{"model":"gpt-4o-mini","usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,"prompt_tokens_details":{"cached_tokens":8}}}"#;
/// let usage = Usage::from_json(body).unwrap();
/// assert_eq!((usage.input_tokens, usage.output_tokens, usage.cached_tokens), (12, 30, Some(8)));
/// assert_eq!(usage.total(), 42);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Usage {
    /// Tokens of the prompt (cached ones included).
    pub input_tokens: u64,
    /// Tokens generated (reasoning ones included).
    pub output_tokens: u64,
    /// Of the input, the tokens read from the provider's prompt cache, when
    /// it says.
    pub cached_tokens: Option<u64>,
    /// Of the output, the tokens a reasoning model spent thinking, when it
    /// says.
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    /// The usage a JSON answer reports (see the table above); `None` for a
    /// body that is not JSON or reports none.
    pub fn from_json(body: &[u8]) -> Option<Usage> {
        Usage::of(&serde_json::from_slice(body).ok()?)
    }

    /// Input and output together.
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// The usage in an answer already parsed.
    pub(crate) fn of(value: &Value) -> Option<Usage> {
        let count = |v: &Value, path: &[&str]| -> Option<u64> {
            path.iter().try_fold(v, |v, key| v.get(key))?.as_u64()
        };
        if let Some(usage) = value.get("usage").filter(|u| u.is_object()) {
            // Chat Completions and embeddings, else Responses and Anthropic.
            let (input, output) = match count(usage, &["prompt_tokens"]) {
                Some(prompt) => (prompt, count(usage, &["completion_tokens"]).unwrap_or(0)),
                None => (
                    count(usage, &["input_tokens"])?,
                    count(usage, &["output_tokens"]).unwrap_or(0),
                ),
            };
            let cached = count(usage, &["prompt_tokens_details", "cached_tokens"])
                .or_else(|| count(usage, &["input_tokens_details", "cached_tokens"]))
                .or_else(|| count(usage, &["cache_read_input_tokens"]));
            let reasoning = count(usage, &["completion_tokens_details", "reasoning_tokens"])
                .or_else(|| count(usage, &["output_tokens_details", "reasoning_tokens"]));
            return Some(Usage {
                input_tokens: input,
                output_tokens: output,
                cached_tokens: cached,
                reasoning_tokens: reasoning,
            });
        }
        if let Some(meta) = value.get("usageMetadata") {
            return Some(Usage {
                input_tokens: count(meta, &["promptTokenCount"])?,
                output_tokens: count(meta, &["candidatesTokenCount"]).unwrap_or(0),
                cached_tokens: count(meta, &["cachedContentTokenCount"]),
                reasoning_tokens: count(meta, &["thoughtsTokenCount"]),
            });
        }
        // Ollama.
        let output = count(value, &["eval_count"]);
        let input = count(value, &["prompt_eval_count"]);
        (input.is_some() || output.is_some()).then(|| Usage {
            input_tokens: input.unwrap_or(0),
            output_tokens: output.unwrap_or(0),
            cached_tokens: None,
            reasoning_tokens: None,
        })
    }
}

impl Usage {
    /// The usage in a part of an answer that may report the output alone
    /// (Anthropic's `message_delta`): the counts it has, zero for the others.
    pub(crate) fn of_parts(value: &Value) -> Option<Usage> {
        let usage = value.get("usage")?;
        let count = |key: &str| usage.get(key).and_then(Value::as_u64);
        let (input, output) = (count("input_tokens"), count("output_tokens"));
        if input.is_none() && output.is_none() {
            return None;
        }
        Some(Usage {
            input_tokens: input.unwrap_or(0),
            output_tokens: output.unwrap_or(0),
            cached_tokens: count("cache_read_input_tokens"),
            reasoning_tokens: None,
        })
    }
}

/// The model a JSON answer says answered it (`model`, or Gemini's
/// `modelVersion`), in an answer already parsed.
pub(crate) fn answering_model(value: &Value) -> Option<&str> {
    value
        .get("model")
        .or_else(|| value.get("modelVersion"))
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::{Usage, answering_model};

    fn usage(body: &str) -> Option<Usage> {
        Usage::from_json(body.as_bytes())
    }

    #[test]
    fn each_apis_usage_is_read() {
        let u = usage(r#"{"model":"o3","usage":{"prompt_tokens":100,"completion_tokens":50,"prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":40}}}"#).unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cached_tokens,
                u.reasoning_tokens
            ),
            (100, 50, Some(64), Some(40))
        );
        let u = usage(r#"{"object":"list","data":[],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#).unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (8, 0));
        let u = usage(r#"{"object":"response","usage":{"input_tokens":20,"output_tokens":7,"input_tokens_details":{"cached_tokens":0},"output_tokens_details":{"reasoning_tokens":3}}}"#).unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cached_tokens,
                u.reasoning_tokens
            ),
            (20, 7, Some(0), Some(3))
        );
        let u = usage(r#"{"type":"message","model":"claude-sonnet-4-5","usage":{"input_tokens":30,"output_tokens":9,"cache_read_input_tokens":12,"cache_creation_input_tokens":0}}"#).unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cached_tokens,
                u.reasoning_tokens
            ),
            (30, 9, Some(12), None)
        );
        let u = usage(r#"{"modelVersion":"gemini-2.5-flash","usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":6,"thoughtsTokenCount":2}}"#).unwrap();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.reasoning_tokens),
            (5, 6, Some(2))
        );
        let u =
            usage(r#"{"model":"llama3.2","done":true,"prompt_eval_count":26,"eval_count":290}"#)
                .unwrap();
        assert_eq!((u.input_tokens, u.output_tokens, u.total()), (26, 290, 316));
        for none in [
            r#"{"model":"x"}"#,
            r#"{"usage":null}"#,
            r#"{"usage":{"foo":1}}"#,
            "[]",
            "not json",
            "",
        ] {
            assert_eq!(usage(none), None, "{none}");
        }
    }

    #[test]
    fn the_answering_model_is_read() {
        let value = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(
            answering_model(&value(r#"{"model":"gpt-4o-2024-08-06"}"#)),
            Some("gpt-4o-2024-08-06")
        );
        assert_eq!(
            answering_model(&value(r#"{"modelVersion":"gemini-2.5-flash"}"#)),
            Some("gemini-2.5-flash")
        );
        assert_eq!(answering_model(&value(r#"{"model":7}"#)), None);
    }
}
