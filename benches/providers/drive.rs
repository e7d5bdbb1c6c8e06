//! This crate as a client in the side-by-side harness: the calls of a plan,
//! sent with `HttpClient` as a user with a call budget would send them.
//!
//! The file builds against older versions of the crate too (the baseline is
//! b4ed1ed): lines marked `// today` are cut from the baseline's copy.

use std::time::{Duration, Instant};

use stache_resilience::{HttpClient, HttpClientConfig};

/// The configurations compared.
pub fn config(kind: &str, base_url: &str, max_retries: u32) -> Option<HttpClientConfig> {
    match kind {
        // A new user's client: the original design's values, `max_retries` set.
        "stache-new" | "stache-base" => {
            let mut config = HttpClientConfig::new(base_url);
            config.max_retries = max_retries;
            Some(config)
        }
        // The preset a user of OpenAI's API would pick, pointed at the simulator;
        // every client in the harness is given the same number of retries.
        "stache-openai" => {
            let mut config = openai(base_url);
            config.max_retries = max_retries;
            Some(config)
        }
        // The preset, with hedging: a copy of a call slower than 90% of the
        // recent ones, for at most 10% more attempts.
        "stache-openai-hedged" => {
            let mut config = openai(base_url);
            config.max_retries = max_retries;
            hedge(&mut config);
            Some(config)
        }
        _ => None,
    }
}

#[allow(unused_variables)]
#[rustfmt::skip]
fn hedge(config: &mut HttpClientConfig) {
    config.hedge = Some(stache_resilience::hedge::Hedge::percentile(0.9, Duration::from_secs(2))); // today
}

#[allow(unused_mut, unused_assignments)]
#[rustfmt::skip]
fn openai(base_url: &str) -> HttpClientConfig {
    let mut config = HttpClientConfig::new(base_url);
    config = HttpClientConfig::openai("sk-test"); // today
    config.base_url = base_url.to_owned();
    config
}

/// Runs the plan's calls (open loop, each at its start time) and returns one
/// JSON object per call.
pub async fn run(
    config: HttpClientConfig,
    start_url: &str,
    calls: &[serde_json::Value],
) -> Vec<serde_json::Value> {
    let client = HttpClient::new(config).expect("a valid config");
    let plain = HttpClient::new(HttpClientConfig::new(start_url)).expect("a valid config");
    plain
        .post("/_start", &serde_json::json!({}))
        .send()
        .await
        .expect("the simulator starts");
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(calls.len());
    for call in calls {
        let id = call["id"].as_u64().unwrap_or(0);
        let start = Duration::from_millis(call["start_ms"].as_u64().unwrap_or(0));
        let budget = Duration::from_millis(call["budget_ms"].as_u64().unwrap_or(10_000));
        let model = call["model"].as_str().unwrap_or("gpt-sim").to_owned();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until((t0 + start).into()).await;
            let began = t0.elapsed();
            let body = serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": format!("call {id}")}],
            });
            let outcome = client
                .post("/chat/completions", &body)
                .header("x-call-id", id.to_string())
                .deadline(budget)
                .send()
                .await;
            let ended = t0.elapsed();
            let (ok, error) = match outcome {
                Ok(res) if res.status().is_success() => (true, None),
                Ok(res) => (false, Some(format!("status {}", res.status().as_u16()))),
                Err(e) => (false, Some(format!("{:?}: {e}", e.kind()))),
            };
            serde_json::json!({
                "id": id,
                "start_ms": began.as_secs_f64() * 1e3,
                "end_ms": ended.as_secs_f64() * 1e3,
                "ok": ok,
                "error": error,
            })
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(call) = task.await {
            out.push(call);
        }
    }
    out
}
