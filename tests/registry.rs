//! ServiceRegistry sharing, configs from settings files, stats serialization,
//! and the blocking client.

mod support;

use std::sync::{Arc, Barrier};
#[cfg(any(feature = "serde", feature = "blocking"))]
use std::time::Duration;

use stache_resilience::circuit_breaker::CircuitState;
use stache_resilience::{HttpClientConfig, ServiceRegistry};

#[test]
fn sixteen_threads_asking_at_once_share_one_client() {
    let registry = Arc::new(ServiceRegistry::new());
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (registry, barrier) = (registry.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                registry
                    .get_client("ollama", HttpClientConfig::ollama("http://127.0.0.1:9"))
                    .unwrap()
            })
        })
        .collect();
    let clients: Vec<_> = handles.into_iter().map(|t| t.join().unwrap()).collect();
    for client in &clients {
        assert!(
            client
                .circuit_breaker()
                .same_as(clients[0].circuit_breaker())
        );
    }
    assert_eq!(registry.providers(), ["ollama"]);
    assert_eq!(clients[0].provider(), Some("ollama"));
}

#[test]
fn different_providers_never_share_state() {
    let registry = ServiceRegistry::new();
    let ollama = registry
        .get_client("ollama", HttpClientConfig::ollama("http://127.0.0.1:9"))
        .unwrap();
    let mixedbread = registry
        .get_client("mixedbread", HttpClientConfig::mixedbread("key"))
        .unwrap();
    for _ in 0..15 {
        ollama.circuit_breaker().record_failure();
    }
    assert_eq!(ollama.circuit_breaker().state(), CircuitState::Open);
    assert_eq!(mixedbread.circuit_breaker().state(), CircuitState::Closed);
    assert!(
        !ollama
            .circuit_breaker()
            .same_as(mixedbread.circuit_breaker())
    );
    assert_eq!(registry.providers(), ["mixedbread", "ollama"]);
    assert!(
        registry
            .get("ollama")
            .unwrap()
            .circuit_breaker()
            .same_as(ollama.circuit_breaker())
    );
    assert!(registry.get("openai").is_none());
}

#[test]
fn a_differing_config_is_warned_about_and_the_first_client_kept() {
    let registry = ServiceRegistry::new();
    let logs = support::capture_logs();
    let _guard = logs.install();
    let first = registry
        .get_client("p", HttpClientConfig::new("http://127.0.0.1:9"))
        .unwrap();
    let mut other = HttpClientConfig::new("http://127.0.0.1:9");
    other.max_retries = 7;
    let second = registry.get_client("p", other).unwrap();
    assert!(first.circuit_breaker().same_as(second.circuit_breaker()));
    assert_eq!(second.config().max_retries, 3);
    assert!(logs.text().contains("differs"), "{}", logs.text());
    // The same config again: no new warning.
    let before = logs.text().matches("differs").count();
    registry
        .get_client("p", HttpClientConfig::new("http://127.0.0.1:9"))
        .unwrap();
    assert_eq!(logs.text().matches("differs").count(), before);
}

#[test]
fn an_invalid_config_stores_nothing_and_reset_starts_afresh() {
    let registry = ServiceRegistry::new();
    let mut bad = HttpClientConfig::new("http://127.0.0.1:9");
    bad.max_connections = 0;
    assert!(registry.get_client("p", bad).is_err());
    assert!(registry.providers().is_empty());

    let old = registry
        .get_client("p", HttpClientConfig::new("http://127.0.0.1:9"))
        .unwrap();
    old.circuit_breaker().record_failure();
    registry.reset();
    assert!(registry.providers().is_empty());
    let new = registry
        .get_client("p", HttpClientConfig::new("http://127.0.0.1:9"))
        .unwrap();
    assert!(!new.circuit_breaker().same_as(old.circuit_breaker()));
    assert_eq!(new.circuit_breaker().stats().failure_count, 0);
    assert!(std::ptr::eq(
        ServiceRegistry::global(),
        ServiceRegistry::global()
    ));
}

#[test]
fn get_client_checks_every_config_and_replace_rebuilds_on_purpose() {
    let registry = ServiceRegistry::new();
    let old = registry
        .get_client("p", HttpClientConfig::new("http://127.0.0.1:9"))
        .unwrap();
    // A client exists, but an invalid config is still an error.
    let mut bad = HttpClientConfig::new("http://127.0.0.1:9");
    bad.max_connections = 0;
    let err = registry.get_client("p", bad).unwrap_err();
    assert_eq!(err.kind(), stache_resilience::ErrorKind::Config);

    let mut changed = HttpClientConfig::new("http://127.0.0.1:9");
    changed.max_retries = 1;
    let new = registry.replace("p", changed.clone()).unwrap();
    assert!(!new.circuit_breaker().same_as(old.circuit_breaker()));
    assert_eq!(registry.get("p").unwrap().config().max_retries, 1);
    // An invalid replacement leaves the client in place.
    assert!(
        registry
            .replace("p", HttpClientConfig::new("ftp://x"))
            .is_err()
    );
    assert!(
        registry
            .get("p")
            .unwrap()
            .circuit_breaker()
            .same_as(new.circuit_breaker())
    );
    assert!(registry.remove("p").is_some());
    assert!(registry.providers().is_empty());
}

mod keyed {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier, mpsc};
    use std::time::Duration;

    use stache_resilience::registry::Registry;
    use stache_resilience::{CircuitBreaker, CircuitBreakerConfig};

    #[test]
    fn concurrent_first_calls_build_a_key_once() {
        let registry: Arc<Registry<String, CircuitBreaker>> = Arc::new(Registry::new());
        let builds = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (registry, builds, barrier) =
                    (registry.clone(), builds.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    registry
                        .get_or_try_init("openai/gpt-4o".to_owned(), || {
                            builds.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            Ok::<_, ()>(CircuitBreaker::new(CircuitBreakerConfig::default()))
                        })
                        .unwrap()
                })
            })
            .collect();
        let breakers: Vec<CircuitBreaker> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        assert!(breakers.iter().all(|b| b.same_as(&breakers[0])));
        assert_eq!(registry.keys(), ["openai/gpt-4o"]);
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn a_failed_build_stores_nothing_and_a_slow_one_holds_up_no_other_key() {
        let registry: Arc<Registry<&'static str, u32>> = Arc::new(Registry::new());
        assert_eq!(
            registry.get_or_try_init("a", || Err::<u32, &str>("down")),
            Err("down")
        );
        assert!(registry.is_empty() && registry.get("a").is_none());
        assert_eq!(registry.get_or_try_init("a", || Ok::<_, ()>(1)), Ok(1));

        // Key "slow" builds until key "fast" has been built by another thread.
        let (done, wait) = mpsc::channel::<()>();
        let (started, building) = mpsc::channel::<()>();
        let slow = {
            let registry = registry.clone();
            std::thread::spawn(move || {
                registry.get_or_try_init("slow", || {
                    started.send(()).map_err(|_| "the test went away")?;
                    wait.recv_timeout(Duration::from_secs(10))
                        .map(|()| 2)
                        .map_err(|_| "the other key was held up")
                })
            })
        };
        // "slow" is mid-build (its slot locked) before "fast" is asked for.
        building.recv().unwrap();
        assert_eq!(registry.get_or_try_init("fast", || Ok::<_, ()>(3)), Ok(3));
        done.send(()).unwrap();
        assert_eq!(slow.join().unwrap(), Ok(2));
        let mut keys = registry.keys();
        keys.sort();
        assert_eq!(keys, ["a", "fast", "slow"]);
        assert_eq!(registry.insert("a", 10), Some(1));
        assert_eq!(registry.remove("a"), Some(10));
        registry.reset();
        assert!(registry.is_empty());
    }
}

#[cfg(feature = "serde")]
mod settings {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Settings {
        providers: std::collections::BTreeMap<String, HttpClientConfig>,
    }

    #[test]
    fn a_config_reads_from_a_toml_table_with_durations_in_seconds() {
        let settings: Settings = toml::from_str(
            r#"
            [providers.ollama]
            base_url = "http://localhost:11434"
            default_timeout = 90.0
            retry_base_delay = 0.5
            circuit_breaker_threshold = 20
            headers = { "x-tenant" = "acme", "x-api-key" = "k" }
            "#,
        )
        .unwrap();
        let ollama = &settings.providers["ollama"];
        assert_eq!(ollama.default_timeout, Duration::from_secs(90));
        assert_eq!(ollama.retry_base_delay, Duration::from_millis(500));
        assert_eq!(ollama.circuit_breaker_threshold, 20);
        assert_eq!(ollama.max_retries, 3, "unset fields keep their defaults");
        assert_eq!(ollama.headers["x-tenant"], "acme");
        assert!(ollama.headers["x-api-key"].is_sensitive());
        ollama.validate().unwrap();
    }

    #[test]
    fn http2_settings_read_from_toml() {
        let config: HttpClientConfig = toml::from_str(
            r#"
            base_url = "https://api.example.com"
            http_version = "http2_prior_knowledge"
            http2_keep_alive_interval = 15.0
            http2_keep_alive_timeout = 5.0
            "#,
        )
        .unwrap();
        assert_eq!(
            config.http_version,
            stache_resilience::client::HttpVersion::Http2PriorKnowledge
        );
        assert_eq!(
            config.http2_keep_alive_interval,
            Some(Duration::from_secs(15))
        );
        assert_eq!(config.http2_keep_alive_timeout, Duration::from_secs(5));
        let err =
            toml::from_str::<HttpClientConfig>("base_url = \"http://h\"\nhttp_version = \"http3\"")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
        assert!(
            err.contains("http_version") || err.contains("http3"),
            "{err}"
        );
        let mut zero = HttpClientConfig::new("http://h");
        zero.http2_keep_alive_interval = Some(Duration::ZERO);
        assert_eq!(
            zero.validate().unwrap_err().field(),
            "http2_keep_alive_interval"
        );
    }

    #[test]
    fn bad_settings_are_rejected_with_the_field_named() {
        let parse = |body: &str| {
            toml::from_str::<HttpClientConfig>(&format!("base_url = \"http://h\"\n{body}"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let err = parse("default_timeout = \"ninety\"");
        assert!(err.contains("default_timeout"), "{err}");
        let err = parse("connect_timeout = -1.0");
        assert!(
            err.contains("connect_timeout") && err.contains("non-negative"),
            "{err}"
        );
        let err = parse("write_timeout = nan");
        assert!(err.contains("write_timeout"), "{err}");
        let err = parse("max_conections = 5");
        assert!(err.contains("max_conections"), "{err}");
        let err = parse("max_connections = -5");
        assert!(err.contains("max_connections"), "{err}");
        let err = toml::from_str::<HttpClientConfig>("default_timeout = 1.0")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("base_url"), "{err}");
        let json: HttpClientConfig =
            serde_json::from_str(r#"{"base_url":"http://h","pool_timeout":2.5}"#).unwrap();
        assert_eq!(json.pool_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn stats_serialize_with_durations_in_seconds() {
        let client =
            stache_resilience::HttpClient::new(HttpClientConfig::ollama("http://127.0.0.1:9"))
                .unwrap();
        let value = serde_json::to_value(client.stats()).unwrap();
        assert_eq!(value["default_timeout"], 90.0);
        assert_eq!(value["circuit_breaker_state"], "closed");
        assert_eq!(value["max_connections"], 50);
        assert_eq!(value["requests"], 0);
    }
}

#[cfg(feature = "blocking")]
mod blocking {
    use super::*;
    use serde_json::json;
    use stache_resilience::blocking::HttpClient;
    use support::{Reply, Server};

    #[test]
    fn the_blocking_client_works_from_many_threads() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime.block_on(Server::replies(vec![
            Reply::Status(503),
            Reply::json(200, r#"{"ok":true}"#),
        ]));
        let mut config = HttpClientConfig::new(server.url());
        config.retry_base_delay = Duration::from_millis(1);
        config.retry_max_delay = Duration::from_millis(2);
        let client = HttpClient::new(config).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let client = client.clone();
                std::thread::spawn(move || {
                    let res = client.post("/embeddings", &json!({ "i": i })).unwrap();
                    res.json::<serde_json::Value>().unwrap()["ok"].as_bool()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), Some(true));
        }
        assert_eq!(server.hits(), 9, "one 503 retried, then eight answers");
        assert_eq!(client.stats().requests, 8);
        let res = client
            .get_with_timeout("/", Duration::from_secs(1))
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    #[test]
    fn the_blocking_client_streams_lines() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime.block_on(Server::replies(vec![Reply::Chunks {
            status: 200,
            chunks: vec![bytes::Bytes::from_static(b"a\nb\n")],
            gap: Duration::ZERO,
        }]));
        let client = HttpClient::new(HttpClientConfig::new(server.url())).unwrap();
        let lines: Result<Vec<String>, _> = client.stream_post("/x", &json!({})).unwrap().collect();
        assert_eq!(lines.unwrap(), ["a", "b"]);
    }

    #[tokio::test]
    async fn the_blocking_client_refuses_async_code_and_works_from_spawn_blocking() {
        let server = Server::replies(vec![Reply::json(200, r#"{"ok":true}"#)]).await;
        let client = HttpClient::new(HttpClientConfig::new(server.url())).unwrap();

        // In the test's own `block_on`, and in a task: a clear error, nothing sent.
        let err = client.get("/").unwrap_err();
        assert_eq!(err.kind(), stache_resilience::ErrorKind::Request);
        assert!(err.to_string().contains("spawn_blocking"), "{err}");
        let in_task = client.clone();
        let err = tokio::spawn(async move { in_task.get("/").unwrap_err() })
            .await
            .unwrap();
        assert!(err.to_string().contains("async code"), "{err}");
        assert_eq!(server.hits(), 0);

        // From spawn_blocking it works.
        let blocking = client.clone();
        let status = tokio::task::spawn_blocking(move || blocking.get("/").map(|r| r.status()))
            .await
            .unwrap();
        assert_eq!(status.unwrap(), 200);
        assert_eq!(server.hits(), 1);

        // Dropping the last clone in async code does not panic.
        drop(client);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_blocking_client_can_be_made_and_dropped_on_a_worker() {
        let made = tokio::spawn(async {
            let client = HttpClient::new(HttpClientConfig::new("http://127.0.0.1:9")).unwrap();
            let clone = client.clone();
            drop(client);
            drop(clone);
        });
        made.await.expect("no panic on a worker thread");
    }

    #[test]
    fn the_blocking_stream_is_read_from_spawn_blocking() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime.block_on(Server::replies(vec![Reply::Chunks {
            status: 200,
            chunks: vec![bytes::Bytes::from_static(b"a\nb\n")],
            gap: Duration::ZERO,
        }]));
        let client = HttpClient::new(HttpClientConfig::new(server.url())).unwrap();
        let lines = runtime.block_on(async move {
            tokio::task::spawn_blocking(move || {
                client
                    .stream_post("/x", &json!({}))
                    .unwrap()
                    .collect::<Result<Vec<String>, _>>()
            })
            .await
            .unwrap()
        });
        assert_eq!(lines.unwrap(), ["a", "b"]);
    }
}
