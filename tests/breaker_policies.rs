//! The breaker's trip policies, slow calls and open backoff as
//! `HttpClientConfig` sets them, against loopback servers on the paused clock:
//! a partial outage the default never sees, answers that come too slowly, and
//! an open time that grows while the provider stays down.

use std::time::Duration;

use bytes::Bytes;
use stache_resilience::circuit_breaker::{CircuitState, OpenBackoff, SlowCalls, TripPolicy};
use stache_resilience::{ErrorKind, HttpClient, HttpClientConfig};
use test_support::server::{Reply, Server};

fn config(url: &str) -> HttpClientConfig {
    let mut config = HttpClientConfig::new(url);
    config.max_retries = 0;
    config.default_timeout = Duration::from_secs(10);
    // A connection per call: on the paused clock, a keep-alive connection
    // reused after a trickled body stalls the test server.
    config.max_keepalive_connections = 0;
    config
}

/// A server that fails every third call with a 503.
async fn partial_outage() -> Server {
    Server::start(|n, _| {
        if n % 3 == 0 {
            Reply::Status(503)
        } else {
            Reply::json(200, "{}")
        }
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_failure_rate_policy_opens_on_a_partial_outage_the_default_rides_through() {
    let server = partial_outage().await;
    let default = HttpClient::new(config(&server.url())).unwrap();
    for _ in 0..30 {
        let _ = default.get("/").await;
    }
    assert_eq!(default.circuit_breaker().state(), CircuitState::Closed);
    assert_eq!(server.hits(), 30);

    let server = partial_outage().await;
    let mut rated = config(&server.url());
    rated.breaker.policy = TripPolicy::FailureRate {
        threshold: 0.3,
        minimum_calls: 9,
        window: Duration::from_secs(30),
    };
    let client = HttpClient::new(rated).unwrap();
    for _ in 0..9 {
        let _ = client.get("/").await;
    }
    // Three of nine failed: 33%.
    assert_eq!(client.circuit_breaker().state(), CircuitState::Open);
    let err = client.get("/").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{err:?}");
    assert_eq!(server.hits(), 9, "the refused call was never sent");
}

#[tokio::test(start_paused = true)]
async fn answers_slower_than_the_threshold_open_the_circuit() {
    // Four answers at once, then only late ones (the body trickled in 3 s).
    let server = Server::start(|n, _| {
        if n < 4 {
            Reply::json(200, "{}")
        } else {
            Reply::Chunks {
                status: 200,
                chunks: vec![Bytes::from_static(b"{}")],
                gap: Duration::from_secs(3),
            }
        }
    })
    .await;
    let mut slow = config(&server.url());
    slow.breaker.policy = TripPolicy::FailureRate {
        threshold: 0.5,
        minimum_calls: 4,
        window: Duration::from_secs(60),
    };
    slow.breaker.slow_calls = Some(SlowCalls {
        threshold: Duration::from_secs(2),
        rate: 0.5,
    });
    let client = HttpClient::new(slow).unwrap();
    for i in 0..8 {
        let answer = client.get("/").await.expect("answered");
        assert_eq!(answer.status(), 200);
        let state = client.circuit_breaker().state();
        if i < 7 {
            assert_eq!(
                state,
                CircuitState::Closed,
                "call {i}: fewer than half slow"
            );
        }
    }
    // Four slow calls of eight: 50%.
    assert_eq!(client.circuit_breaker().state(), CircuitState::Open);
    assert_eq!(client.stats().failures, 0, "no call failed");
    let err = client.get("/").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn the_open_time_doubles_while_the_provider_stays_down() {
    let server = Server::start(|_, _| Reply::Status(503)).await;
    let mut down = config(&server.url());
    down.circuit_breaker_threshold = 1;
    down.circuit_breaker_half_open_max_calls = 1;
    down.circuit_breaker_timeout = Duration::from_secs(1);
    down.breaker.open_backoff = OpenBackoff::Exponential {
        max: Duration::from_secs(4),
        jitter: 0.0,
    };
    let client = HttpClient::new(down).unwrap();
    let mut open_times = Vec::new();
    for _ in 0..4 {
        let _ = client.get("/").await; // opens, or a failed probe reopens
        let stats = client.circuit_breaker().stats();
        assert_eq!(stats.state, CircuitState::Open);
        open_times.push(stats.open_time.as_secs());
        tokio::time::advance(stats.open_time).await;
    }
    assert_eq!(open_times, [1, 2, 4, 4]);
    assert_eq!(server.hits(), 4, "one probe per open period");
}

#[test]
fn bad_policy_settings_are_refused_naming_the_field() {
    let check = |edit: fn(&mut HttpClientConfig)| {
        let mut config = HttpClientConfig::new("http://127.0.0.1:9");
        edit(&mut config);
        config.validate().unwrap_err()
    };
    let err = check(|c| {
        c.breaker.policy = TripPolicy::FailureRate {
            threshold: 0.5,
            minimum_calls: 0,
            window: Duration::from_secs(30),
        }
    });
    assert_eq!(err.field(), "breaker.policy");
    assert!(err.rule().contains("minimum_calls"), "{err}");
    let err = check(|c| {
        c.breaker.slow_calls = Some(SlowCalls {
            threshold: Duration::from_secs(1),
            rate: f64::NAN,
        })
    });
    assert_eq!(err.field(), "breaker.slow_calls");
    let err = check(|c| {
        c.breaker.open_backoff = OpenBackoff::Exponential {
            max: Duration::from_secs(1),
            jitter: 0.1,
        }
    });
    assert_eq!(err.field(), "breaker.open_backoff");
    assert!(err.rule().contains("timeout"), "{err}");
    // HttpClient::new reports the same.
    let mut config = HttpClientConfig::new("http://127.0.0.1:9");
    config.breaker.policy = TripPolicy::either(
        TripPolicy::Consecutive,
        TripPolicy::FailureRate {
            threshold: 2.0,
            minimum_calls: 10,
            window: Duration::from_secs(30),
        },
    );
    let err = HttpClient::new(config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("breaker.policy"), "{err}");
}

#[test]
fn policies_show_in_debug() {
    let mut config = HttpClientConfig::new("http://127.0.0.1:9");
    config.breaker.policy = TripPolicy::FailureRate {
        threshold: 0.5,
        minimum_calls: 100,
        window: Duration::from_secs(30),
    };
    let debug = format!("{config:?}");
    assert!(debug.contains("policy: FailureRate"), "{debug}");
    assert!(debug.contains("open_backoff: Fixed"), "{debug}");
}

#[cfg(feature = "serde")]
mod settings {
    use super::*;

    fn parse(body: &str) -> Result<HttpClientConfig, String> {
        toml::from_str::<HttpClientConfig>(&format!("base_url = \"http://h\"\n[breaker]\n{body}"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_policy_reads_from_toml() {
        let config = parse("policy = \"consecutive\"").unwrap();
        assert_eq!(config.breaker.policy, TripPolicy::Consecutive);
        let config = parse(
            r#"
            policy = { failure_rate = { threshold = 0.1, minimum_calls = 100, window = 30 } }
            slow_calls = { threshold = 20.5, rate = 0.5 }
            open_backoff = { exponential = { max = 600, jitter = 0.2 } }
            "#,
        )
        .unwrap();
        assert_eq!(
            config.breaker.policy,
            TripPolicy::FailureRate {
                threshold: 0.1,
                minimum_calls: 100,
                window: Duration::from_secs(30)
            }
        );
        assert_eq!(
            config.breaker.slow_calls,
            Some(SlowCalls {
                threshold: Duration::from_millis(20_500),
                rate: 0.5
            })
        );
        assert_eq!(
            config.breaker.open_backoff,
            OpenBackoff::Exponential {
                max: Duration::from_secs(600),
                jitter: 0.2
            }
        );
        config.validate().unwrap();
        let config = parse(
            r#"policy = { either = ["consecutive", { failure_rate = { threshold = 0.5, minimum_calls = 20, window = 10 } }] }"#,
        )
        .unwrap();
        assert_eq!(
            config.breaker.policy,
            TripPolicy::either(
                TripPolicy::Consecutive,
                TripPolicy::FailureRate {
                    threshold: 0.5,
                    minimum_calls: 20,
                    window: Duration::from_secs(10)
                }
            )
        );
        // JSON too.
        let json: HttpClientConfig = serde_json::from_str(
            r#"{"base_url":"http://h","breaker":{"open_backoff":{"exponential":{"max":60,"jitter":0}}}}"#,
        )
        .unwrap();
        assert_eq!(
            json.breaker.open_backoff,
            OpenBackoff::Exponential {
                max: Duration::from_secs(60),
                jitter: 0.0
            }
        );
    }

    #[test]
    fn retry_options_read_from_their_own_table() {
        use stache_resilience::retry::Jitter;
        let config = toml::from_str::<HttpClientConfig>(
            "base_url = \"http://h\"\nmax_retries = 5\n[retry]\njitter = \"decorrelated\"\ntotal_timeout = 2.5\nbudget = false\n",
        )
        .unwrap();
        assert_eq!(config.max_retries, 5);
        assert_eq!(config.retry.jitter, Jitter::Decorrelated);
        assert_eq!(
            config.retry.total_timeout,
            Some(Duration::from_millis(2_500))
        );
        assert!(!config.retry.budget);
        let err =
            toml::from_str::<HttpClientConfig>("base_url = \"h\"\n[retry]\njiter = \"full\"\n")
                .map(|_| ())
                .unwrap_err()
                .to_string();
        assert!(err.contains("jiter"), "{err}");
    }

    #[test]
    fn bad_policy_settings_name_the_field() {
        for (body, needle) in [
            ("policy = \"rate\"", "rate"),
            (
                "policy = { failure_rate = { threshold = 0.5, minimum_calls = 10 } }",
                "window",
            ),
            (
                "policy = { failure_rate = { threshold = 0.5, minimum_calls = 10, window = -1 } }",
                "non-negative",
            ),
            (
                "slow_calls = { threshold = 1, rate = 0.5, extra = 1 }",
                "extra",
            ),
            ("open_backoff = \"exponential\"", "exponential"),
            (
                "policy = { failure_rate = { threshold = 0.5, minimum_calls = 10, window = 30, extra = 1 } }",
                "extra",
            ),
            (
                "open_backoff = { exponential = { max = 60, jitter = 0.1, cap = 1 } }",
                "cap",
            ),
        ] {
            let err = parse(body).map(|_| ()).unwrap_err();
            assert!(err.contains(needle), "{body}: {err}");
        }
        // Parsed, then refused by validate with the field named.
        let config = parse(
            "policy = { failure_rate = { threshold = 1.5, minimum_calls = 10, window = 30 } }",
        )
        .unwrap();
        assert_eq!(config.validate().unwrap_err().field(), "breaker.policy");
    }

    #[test]
    fn stats_serialize_the_open_time_in_seconds() {
        let breaker = stache_resilience::CircuitBreaker::default();
        let json = serde_json::to_value(breaker.stats()).unwrap();
        assert_eq!(json["open_time"], 60.0);
    }
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_take_a_policy_each() {
    use stache_resilience::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
    use tower::{Layer, Service, ServiceExt};

    let per_model =
        CircuitBreaker::builder(CircuitBreakerConfig::default()).policy(TripPolicy::FailureRate {
            threshold: 0.5,
            minimum_calls: 4,
            window: Duration::from_secs(30),
        });
    let layer =
        CircuitBreakerLayer::keyed(CircuitBreakerConfig::default(), |call: &(&str, u32)| {
            call.0.to_owned()
        })
        .breakers_from(per_model)
        .unwrap();
    // Model "a" fails every other call, model "b" never.
    let mut svc = layer.layer(tower::service_fn(
        |(model, n): (&'static str, u32)| async move {
            if model == "a" && n % 2 == 0 {
                Err(std::io::Error::other("model a failed"))
            } else {
                Ok(())
            }
        },
    ));
    for n in 0..4 {
        let _ = svc.ready().await.unwrap().call(("a", n)).await;
        let _ = svc.ready().await.unwrap().call(("b", n)).await;
    }
    // Never two failures in a row, but half of four calls: only a rate opens.
    let a = layer.breaker(&"a".to_owned()).unwrap();
    assert_eq!(a.state(), CircuitState::Open);
    assert_eq!(
        layer.breaker(&"b".to_owned()).unwrap().state(),
        CircuitState::Closed
    );
    let bad =
        CircuitBreaker::builder(CircuitBreakerConfig::default()).policy(TripPolicy::FailureRate {
            threshold: 0.0,
            minimum_calls: 4,
            window: Duration::from_secs(30),
        });
    let err = CircuitBreakerLayer::keyed(CircuitBreakerConfig::default(), |s: &String| s.clone())
        .breakers_from(bad)
        .err()
        .unwrap();
    assert_eq!(err.field(), "policy");
}
