//! Fleet mode (feature `redis`) without a Redis server: the budget's keys,
//! the settings and their checks, and a Redis that refuses every connection
//! from the start (calls go at the process's share of the limit, none waits on
//! Redis). The tests against a real redis-server are in
//! `server-tests/tests/fleet.rs`.
#![cfg(feature = "redis")]

use std::time::{Duration, Instant};

use stache_resilience::http::{HeaderValue, header};
use stache_resilience::rate_limit::{Fleet, RateLimit, RateLimiter};
use stache_resilience::{HttpClient, HttpClientConfig};
use test_support::server::{ClosedPort, Reply, Server};

#[test]
fn the_budget_is_keyed_by_provider_and_a_hash_of_the_key_never_the_key() {
    let limit = RateLimit::per_minute(60);
    let fleet = Fleet::new("redis://127.0.0.1:1");
    let keys = |provider: &str, key: &str| {
        RateLimiter::with_fleet(limit, fleet.clone(), provider, key)
            .unwrap()
            .fleet_keys()
            .cloned()
            .unwrap()
    };
    let [requests, tokens] = keys("openai", "sk-live-abc123");
    assert!(requests.starts_with("stache:rl:{openai:"), "{requests}");
    assert!(requests.ends_with("}:requests") && tokens.ends_with("}:tokens"));
    let hash = &requests["stache:rl:{openai:".len()..requests.len() - "}:requests".len()];
    assert_eq!(hash.len(), 16, "{requests}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{requests}");
    assert!(!requests.contains("abc123"));
    // The same provider and key: the same budget, in any process.
    assert_eq!(keys("openai", "sk-live-abc123")[0], requests);
    assert_ne!(keys("openai", "sk-live-other")[0], requests);
    assert_ne!(keys("anthropic", "sk-live-abc123")[0], requests);
    // A namespace of the fleet's own replaces the provider's name.
    let named = RateLimiter::with_fleet(limit, fleet.namespace("team-a"), "openai", "k").unwrap();
    assert!(named.fleet_keys().unwrap()[0].starts_with("stache:rl:{team-a:"));
}

#[test]
fn a_client_keys_its_budget_by_its_credential_headers() {
    let keys = |bearer: &'static str| {
        let mut config = HttpClientConfig::new("http://127.0.0.1:1");
        let mut value = HeaderValue::from_static(bearer);
        value.set_sensitive(true);
        config.headers.insert(header::AUTHORIZATION, value);
        config
            .headers
            .insert("x-tenant", HeaderValue::from_static("acme"));
        config.rate_limit = Some(RateLimit::per_minute(60));
        config.fleet = Some(Fleet::new("redis://127.0.0.1:1"));
        let client = HttpClient::for_provider("mixedbread", config).unwrap();
        client.rate_limiter().fleet_keys().cloned().unwrap()
    };
    assert_eq!(keys("Bearer one")[0], keys("Bearer one")[0]);
    assert_ne!(keys("Bearer one")[0], keys("Bearer two")[0]);
    assert!(keys("Bearer one")[0].starts_with("stache:rl:{mixedbread:"));
}

#[test]
fn fleet_settings_are_checked_and_their_secrets_kept_out_of_debug_output() {
    let mut config = HttpClientConfig::new("http://127.0.0.1:1");
    config.fleet = Some(Fleet::new("redis://127.0.0.1:6379"));
    assert_eq!(config.validate().unwrap_err().field(), "fleet");
    config.rate_limit = Some(RateLimit::per_minute(60));
    assert!(config.validate().is_ok());
    config.fleet = Some(Fleet::new("redis://127.0.0.1:6379").fleet_size(0));
    assert_eq!(config.validate().unwrap_err().field(), "fleet.fleet_size");
    let err = HttpClient::new(config.clone()).unwrap_err();
    assert!(err.to_string().contains("fleet.fleet_size"), "{err}");

    config.fleet = Some(Fleet::new("redis://:hunter2@127.0.0.1:6379/0"));
    let client = HttpClient::new(config.clone()).unwrap();
    for text in [
        format!("{config:?}"),
        format!("{client:?}"),
        format!("{:?}", client.rate_limiter()),
    ] {
        assert!(!text.contains("hunter2"), "{text}");
    }
    assert!(format!("{config:?}").contains("redis://[redacted]@127.0.0.1:6379/0"));
}

#[cfg(feature = "serde")]
#[test]
fn a_fleet_from_a_settings_file() {
    let config: HttpClientConfig = toml::from_str(
        r#"
        base_url = "http://127.0.0.1:1"
        rate_limit = { requests_per_minute = 3000, burst = 20 }
        [fleet]
        redis_url = "redis://10.0.0.5:6379/0"
        fleet_size = 8
        acquire_timeout = 0.02
        "#,
    )
    .unwrap();
    let fleet = config.fleet.clone().unwrap();
    assert_eq!(fleet.fleet_size, 8);
    assert_eq!(fleet.acquire_timeout, Duration::from_millis(20));
    assert_eq!(fleet.probe_interval, Duration::from_secs(1));
    assert!(config.validate().is_ok());
    let unknown = toml::from_str::<HttpClientConfig>(
        "base_url = \"http://h\"\n[fleet]\nredis_url = \"redis://h\"\nsize = 2\n",
    );
    assert!(unknown.unwrap_err().to_string().contains("size"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_calls_go_at_the_processs_share_and_none_waits_on_redis() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let redis = ClosedPort::new();
    let mut config = HttpClientConfig::new(server.url());
    // 10 a second over a fleet of 2: 5 a second in this process.
    config.rate_limit = Some(RateLimit::per_minute(600));
    config.fleet = Some(Fleet::new(format!("redis://127.0.0.1:{}", redis.port)).fleet_size(2));
    let client = HttpClient::new(config).unwrap();

    let started = Instant::now();
    for _ in 0..6 {
        let call = Instant::now();
        client.get("/v1/x").send().await.unwrap();
        assert!(
            call.elapsed() < Duration::from_secs(1),
            "a call waited on Redis"
        );
    }
    let took = started.elapsed();
    let stats = client.rate_limiter().stats().fleet.unwrap();
    // Five gaps of 200 ms.
    assert!(
        took >= Duration::from_millis(950),
        "{took:?}: faster than 5 a second"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(stats.shared, 0, "{stats:?}");
    assert_eq!(stats.local, 6, "{stats:?}");
    assert_eq!(
        stats.outages, 1,
        "one outage, from the first call: {stats:?}"
    );
    assert!(stats.on_fallback);
    assert_eq!(server.hits(), 6);
}
