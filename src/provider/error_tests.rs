//! The tests of `error.rs`: each API's error bodies, named.

use super::{ProviderError, ProviderErrorKind as K};
use http::StatusCode;

fn kind(status: u16, body: &str) -> Option<K> {
    let status = StatusCode::from_u16(status).unwrap();
    ProviderError::parse(status, body.as_bytes()).map(|e| e.kind())
}

#[test]
fn each_apis_errors_are_named() {
    let cases: &[(u16, &str, K)] = &[
        // OpenAI.
        (
            429,
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
            K::QuotaExhausted,
        ),
        (
            429,
            r#"{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            K::RateLimited,
        ),
        (
            400,
            r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
            K::ContextLengthExceeded,
        ),
        (
            401,
            r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            K::Authentication,
        ),
        (
            404,
            r#"{"error":{"message":"The model `gpt-9` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
            K::ModelNotFound,
        ),
        (
            400,
            r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#,
            K::ContentFiltered,
        ),
        (
            500,
            r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#,
            K::ServerError,
        ),
        (
            400,
            r#"{"error":{"message":"'messages' is a required property","type":"invalid_request_error","param":null,"code":null}}"#,
            K::InvalidRequest,
        ),
        // Azure OpenAI.
        (
            400,
            r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation"}}}"#,
            K::ContentFiltered,
        ),
        (
            404,
            r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#,
            K::ModelNotFound,
        ),
        // Anthropic.
        (
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            K::Overloaded,
        ),
        (
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208477 tokens > 200000 maximum"}}"#,
            K::ContextLengthExceeded,
        ),
        (
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}"#,
            K::QuotaExhausted,
        ),
        (
            402,
            r#"{"type":"error","error":{"type":"billing_error","message":"Payment required"}}"#,
            K::QuotaExhausted,
        ),
        (
            401,
            r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
            K::Authentication,
        ),
        (
            403,
            r#"{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission"}}"#,
            K::Permission,
        ),
        (
            404,
            r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-9"}}"#,
            K::ModelNotFound,
        ),
        (
            429,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
            K::RateLimited,
        ),
        (
            500,
            r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
            K::ServerError,
        ),
        // Gemini, and its OpenAI-compatible API's array.
        (
            429,
            r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#,
            K::RateLimited,
        ),
        (
            503,
            r#"[{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}]"#,
            K::Overloaded,
        ),
        (
            400,
            r#"[{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}]"#,
            K::ContextLengthExceeded,
        ),
        (
            403,
            r#"{"error":{"code":403,"message":"Method doesn't allow unregistered callers.","status":"PERMISSION_DENIED"}}"#,
            K::Permission,
        ),
        // Mistral.
        (
            400,
            r#"{"object":"error","message":"Prompt contains 40000 tokens, too large for model with 32768 maximum context length","type":"invalid_request_error","param":null,"code":null}"#,
            K::ContextLengthExceeded,
        ),
        (
            401,
            r#"{"object":"error","message":"Unauthorized","type":"invalid_request_error","param":null,"code":"1000"}"#,
            K::Authentication,
        ),
        (
            400,
            r#"{"object":"error","message":"Invalid model: mistral-huge","type":"invalid_model","param":null,"code":"1500"}"#,
            K::ModelNotFound,
        ),
        (
            422,
            r#"{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","max_completion_tokens"],"msg":"Extra inputs are not permitted","input":32000}]},"type":"invalid_request_error","param":null,"code":null}"#,
            K::InvalidRequest,
        ),
        // Ollama.
        (
            404,
            r#"{"error":"model \"llama9\" not found, try pulling it first"}"#,
            K::ModelNotFound,
        ),
        (500, r#"{"error":"something went wrong"}"#, K::ServerError),
    ];
    for (status, body, expected) in cases {
        assert_eq!(kind(*status, body), Some(*expected), "{status} {body}");
    }
}

#[test]
fn bodies_that_are_no_known_error_are_not_named() {
    for (status, body) in [
        (503, "<html>Service Unavailable</html>"),
        (502, ""),
        (429, "{}"),
        (400, r#"{"detail":"bad"}"#),
        (400, r#"{"error":42}"#),
        (400, "[]"),
        (200, r#"{"error":{"type":"overloaded_error"}}"#),
    ] {
        assert_eq!(kind(status, body), None, "{status} {body}");
    }
    let padded = format!(
        r#"{{"error":{{"type":"overloaded_error","message":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    assert_eq!(kind(529, &padded), None, "a body over 64 KB is not read");
}

#[test]
fn code_and_message_are_kept_and_the_message_is_bounded() {
    let long = "é".repeat(2_000);
    let body = format!(
        r#"{{"error":{{"message":"{long}","type":"invalid_request_error","code":"context_length_exceeded"}}}}"#
    );
    let error = ProviderError::parse(StatusCode::BAD_REQUEST, body.as_bytes()).unwrap();
    assert_eq!(error.code(), Some("context_length_exceeded"));
    let message = error.message().unwrap();
    assert!(
        message.len() <= 1_024 && message.starts_with('é'),
        "{}",
        message.len()
    );
    assert!(
        error
            .to_string()
            .starts_with("context_length_exceeded (context_length_exceeded): é")
    );
    assert!(K::QuotaExhausted.is_final_for_provider() && K::Authentication.is_final_for_provider());
    assert!(
        !K::RateLimited.is_final_for_provider()
            && !K::ContextLengthExceeded.is_final_for_provider()
    );
}
