//! Each dialect read through streams as its API sends them.

use super::report::StreamReport;
use super::{
    AnthropicMessages, Dialect, Ollama, OpenAi, OpenAiChat, OpenAiResponses, StreamDialect,
};
use crate::framing::Event;
use crate::provider::ProviderErrorKind;

/// What each event was: `c` content, `e` end, `x` an error, `.` neither.
fn read(
    dialect: impl Dialect,
    events: &[(&str, &str)],
) -> (String, StreamReport, Option<ProviderErrorKind>) {
    let dialect = StreamDialect::new(dialect);
    let mut report = StreamReport::default();
    let mut said = String::new();
    let mut error = None;
    for (name, data) in events {
        let s = dialect.read(&Event::new(*name, *data), &mut report);
        said.push(match (s.content, s.end, &s.error) {
            (_, _, Some(e)) => {
                error = Some(e.kind());
                'x'
            }
            (true, true, _) => 'C',
            (true, false, _) => 'c',
            (false, true, _) => 'e',
            (false, false, _) => '.',
        });
    }
    (said, report, error)
}

#[test]
fn openai_chat_tells_tokens_from_role_chunks_and_reads_model_and_usage() {
    let events = [
        (
            "",
            r#"{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}],"usage":null}"#,
        ),
        (
            "",
            r#"{"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}"#,
        ),
        (
            "",
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\""}}]},"finish_reason":null}]}"#,
        ),
        (
            "",
            r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
        ),
        (
            "",
            r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
        ),
        ("", "[DONE]"),
    ];
    let (said, report, error) = read(OpenAiChat, &events);
    assert_eq!(said, ".cce.e");
    assert_eq!(error, None);
    assert_eq!(report.model(), Some("gpt-4o-mini-2024-07-18"));
    let usage = report.usage().unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (9, 12));
    assert_eq!(report.content_events(), 2);
    assert!(report.is_complete());
    // Python servers put spaces after colons; reasoning models stream their
    // thinking first.
    let spaced = [(
        "",
        r#"{"choices": [{"delta": {"reasoning_content": "Let me"}, "finish_reason": null}]}"#,
    )];
    assert_eq!(read(OpenAiChat, &spaced).0, "c");
}

#[test]
fn openai_chat_errors_in_the_stream_are_named() {
    let events = [
        ("", r#"{"choices":[{"delta":{"content":"Hi"}}]}"#),
        (
            "",
            r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","code":null}}"#,
        ),
    ];
    assert_eq!(
        read(OpenAiChat, &events).2,
        Some(ProviderErrorKind::ServerError)
    );
    let filtered = [(
        "",
        r#"{"choices":[{"delta":{},"finish_reason":"content_filter"}]}"#,
    )];
    let (said, report, error) = read(OpenAiChat, &filtered);
    assert_eq!(
        (said.as_str(), error),
        ("x", Some(ProviderErrorKind::ContentFiltered))
    );
    assert!(!report.is_complete());
}

#[test]
fn openai_responses_reads_named_events() {
    let events = [
        (
            "response.created",
            r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","model":"gpt-4.1-2025-04-14","status":"in_progress","usage":null}}"#,
        ),
        (
            "response.output_item.added",
            r#"{"type":"response.output_item.added","item":{"type":"message","role":"assistant","content":[]}}"#,
        ),
        (
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","item_id":"msg_1","delta":"Hi"}"#,
        ),
        (
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","item_id":"msg_1","delta":""}"#,
        ),
        (
            "response.completed",
            r#"{"type":"response.completed","response":{"id":"resp_1","model":"gpt-4.1-2025-04-14","status":"completed","usage":{"input_tokens":11,"output_tokens":2,"input_tokens_details":{"cached_tokens":0},"output_tokens_details":{"reasoning_tokens":0},"total_tokens":13}}}"#,
        ),
    ];
    let (said, report, _) = read(OpenAiResponses, &events);
    assert_eq!(said, "..c.e");
    assert_eq!(report.model(), Some("gpt-4.1-2025-04-14"));
    assert_eq!(report.usage().map(|u| u.total()), Some(13));
    let failed = [(
        "response.failed",
        r#"{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"The model failed"}}}"#,
    )];
    assert_eq!(
        read(OpenAiResponses, &failed).2,
        Some(ProviderErrorKind::ServerError)
    );
    let error = [(
        "error",
        r#"{"type":"error","code":"rate_limit_exceeded","message":"Slow down","param":null,"sequence_number":3}"#,
    )];
    assert_eq!(
        read(OpenAiResponses, &error).2,
        Some(ProviderErrorKind::RateLimited)
    );
    // The preset's dialect reads both protocols.
    assert_eq!(read(OpenAi, &events).0, "..c.e");
    assert_eq!(
        read(
            OpenAi,
            &[
                ("", r#"{"choices":[{"delta":{"content":"x"}}]}"#),
                ("", "[DONE]")
            ]
        )
        .0,
        "ce"
    );
}

#[test]
fn anthropic_tells_pings_and_empty_blocks_from_text_and_reads_its_errors() {
    let events = [
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"usage":{"input_tokens":25,"cache_read_input_tokens":10,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        ("ping", r#"{"type": "ping"}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ];
    let (said, report, _) = read(AnthropicMessages, &events);
    assert_eq!(said, "...c.ee");
    assert_eq!(report.model(), Some("claude-sonnet-4-5-20250929"));
    let usage = report.usage().unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.cached_tokens),
        (25, 15, Some(10))
    );
    let overloaded = [(
        "error",
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    )];
    assert_eq!(
        read(AnthropicMessages, &overloaded).2,
        Some(ProviderErrorKind::Overloaded)
    );
    let tool = [(
        "content_block_start",
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"get_weather","input":{}}}"#,
    )];
    assert_eq!(read(AnthropicMessages, &tool).0, "c");
}

#[test]
fn ollama_reads_its_lines_and_its_openai_endpoint() {
    let lines = [
        (
            "",
            r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"The"},"done":false}"#,
        ),
        (
            "",
            r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:01Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":26,"eval_count":290}"#,
        ),
    ];
    let (said, report, _) = read(Ollama, &lines);
    assert_eq!(said, "ce");
    assert_eq!(report.model(), Some("llama3.2"));
    assert_eq!(
        report.usage().map(|u| (u.input_tokens, u.output_tokens)),
        Some((26, 290))
    );
    let generate = [("", r#"{"model":"llama3.2","response":"Hi","done":false}"#)];
    assert_eq!(read(Ollama, &generate).0, "c");
    let error = [(
        "",
        r#"{"error":"model \"llama9\" not found, try pulling it first"}"#,
    )];
    assert_eq!(
        read(Ollama, &error).2,
        Some(ProviderErrorKind::ModelNotFound)
    );
    let v1 = [
        (
            "",
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"llama3.2","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}"#,
        ),
        ("", "[DONE]"),
    ];
    assert_eq!(read(Ollama, &v1).0, "ce");
}

#[test]
fn a_cut_or_garbled_event_is_an_error_in_every_dialect() {
    let cut = r#"{"choices":[{"delta":{"content":"t3"#;
    for dialect in [
        StreamDialect::new(OpenAiChat),
        StreamDialect::new(OpenAi),
        StreamDialect::new(Ollama),
        StreamDialect::new(AnthropicMessages),
    ] {
        let mut report = StreamReport::default();
        let said = dialect.read(&Event::new("content_block_delta", cut), &mut report);
        let error = said
            .error
            .unwrap_or_else(|| panic!("{dialect:?} took a cut event"));
        assert_eq!(error.code(), Some("malformed_event"), "{dialect:?}");
        assert!(!said.content, "{dialect:?}");
    }
    let mut report = StreamReport::default();
    let said = StreamDialect::new(OpenAiResponses).read(
        &Event::new("response.output_text.delta", "garbled"),
        &mut report,
    );
    assert!(said.error.is_some());
}

#[test]
fn an_unreadable_error_event_is_a_server_error_and_dialects_are_named() {
    let (_, _, error) = read(AnthropicMessages, &[("error", "not json")]);
    assert_eq!(error, Some(ProviderErrorKind::ServerError));
    for name in [
        "openai",
        "openai-chat",
        "openai-responses",
        "anthropic",
        "ollama",
    ] {
        let dialect = StreamDialect::named(name).unwrap();
        assert_eq!(format!("{dialect:?}"), name);
        assert_eq!(dialect, StreamDialect::named(name).unwrap());
    }
    assert!(StreamDialect::named("gemini").is_none());
    assert_ne!(StreamDialect::new(OpenAi), StreamDialect::new(OpenAiChat));
}

#[test]
fn openai_chat_reads_each_chunk_alike_whether_it_fits_the_last_ones_layout_or_not() {
    let chunk = |id: &str, content: &str, finish: &str| {
        format!(
            r#"{{"id":"{id}","object":"chat.completion.chunk","model":"gpt-4o","choices":[{{"index":0,"delta":{{"content":{content}}},"logprobs":null,"finish_reason":{finish}}}],"usage":null}}"#
        )
    };
    let events = [
        chunk("c1", r#""Hel""#, "null"),
        chunk("c1", r#""lo, \"quoted\" \\ world""#, "null"),
        chunk("c1", r#""""#, "null"),
        // Another layout: a longer id moves every key.
        chunk("chatcmpl-much-longer", r#""x""#, "null"),
        chunk("chatcmpl-much-longer", r#""!""#, r#""length""#),
    ];
    let events: Vec<(&str, &str)> = events.iter().map(|e| ("", e.as_str())).collect();
    let (said, report, error) = read(OpenAiChat, &events);
    assert_eq!((said.as_str(), error), ("cc.cC", None));
    assert_eq!(report.content_events(), 4);
    assert!(report.is_complete());
}
