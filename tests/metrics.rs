//! The metrics a provider client reports, read back from metrics-util's
//! debugging recorder.
#![cfg(feature = "metrics")]

mod support;

use std::time::Duration;

use metrics_util::CompositeKey;
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::json;
use stache_resilience::{HttpClientConfig, ServiceRegistry, telemetry};
use support::{Reply, Server};

type Snapshot = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// The value of the metric `name` with exactly these labels. (The recorder's
/// snapshot drains what it reports, so the test takes one and reads it.)
fn value<'a>(
    snapshot: &'a Snapshot,
    kind: MetricKind,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    let mut want: Vec<(String, String)> = labels
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    want.sort();
    snapshot.iter().find_map(|(key, _, _, value)| {
        let mut got: Vec<(String, String)> = key
            .key()
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        got.sort();
        (key.kind() == kind && key.key().name() == name && got == want).then_some(value)
    })
}

fn counter(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    match value(s, MetricKind::Counter, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        _ => 0,
    }
}

#[test]
fn a_provider_client_reports_requests_attempts_retries_failures_rejections_and_state() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = Server::replies(vec![
                Reply::Status(503),
                Reply::json(200, "{}"),
                Reply::Status(500),
            ])
            .await;
            let mut config = HttpClientConfig::new(server.url());
            config.max_retries = 1;
            config.retry_base_delay = Duration::from_millis(1);
            config.retry_max_delay = Duration::from_millis(2);
            config.circuit_breaker_threshold = 2;
            let registry = ServiceRegistry::new();
            let client = registry.get_client("ollama", config).unwrap();

            client.post("/embed", &json!({})).await.unwrap(); // 503, then 200
            for _ in 0..2 {
                client.post("/embed", &json!({})).await.unwrap_err(); // 500 twice each
            }
            client.post("/embed", &json!({})).await.unwrap_err(); // refused: open
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let p = [("provider", "ollama")];
    let s = &snapshot;
    assert_eq!(counter(s, telemetry::REQUESTS, &p), 4);
    assert_eq!(counter(s, telemetry::ATTEMPTS, &p), 6);
    assert_eq!(counter(s, telemetry::RETRIES, &p), 3);
    assert_eq!(counter(s, telemetry::BREAKER_REJECTIONS, &p), 1);
    assert_eq!(
        counter(
            s,
            telemetry::FAILURES,
            &[("provider", "ollama"), ("outcome", "status")]
        ),
        2
    );
    match value(s, MetricKind::Gauge, telemetry::BREAKER_STATE, &p) {
        Some(DebugValue::Gauge(v)) => assert_eq!(v.into_inner(), 1.0, "open"),
        other => panic!("no breaker state gauge: {other:?}"),
    }
    let durations = |outcome: &str| match value(
        s,
        MetricKind::Histogram,
        telemetry::ATTEMPT_DURATION,
        &[("provider", "ollama"), ("outcome", outcome)],
    ) {
        Some(DebugValue::Histogram(v)) => v.len(),
        _ => 0,
    };
    assert_eq!(durations("success"), 1);
    assert_eq!(durations("failure"), 5);
}

#[test]
fn a_named_layer_alone_reports_its_series_with_unit_and_help_and_an_unnamed_one_nothing() {
    use bytes::Bytes;
    use http_body_util::Full;
    use stache_resilience::BoxError;
    use stache_resilience::retry::{RetryConfig, RetryLayer};
    use tower::{Service, ServiceBuilder, ServiceExt};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let config = RetryConfig {
                max_retries: 2,
                ..RetryConfig::default()
            };
            // Fails the first attempt of every call.
            let inner = || {
                let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                tower::service_fn(move |_: http::Request<Full<Bytes>>| {
                    let fail = !failed.swap(true, std::sync::atomic::Ordering::SeqCst);
                    async move {
                        if fail {
                            Err::<u32, BoxError>("refused".into())
                        } else {
                            Ok(7)
                        }
                    }
                })
            };
            let get = || {
                http::Request::get("/")
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            };
            let mut named = ServiceBuilder::new()
                .layer(RetryLayer::new(config).provider("alone"))
                .service(inner());
            assert_eq!(named.ready().await.unwrap().call(get()).await.unwrap(), 7);
            let mut unnamed = ServiceBuilder::new()
                .layer(RetryLayer::new(config))
                .service(inner());
            assert_eq!(unnamed.ready().await.unwrap().call(get()).await.unwrap(), 7);
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let p = [("provider", "alone")];
    assert_eq!(counter(&snapshot, telemetry::ATTEMPTS, &p), 2);
    assert_eq!(counter(&snapshot, telemetry::RETRIES, &p), 1);
    assert_eq!(
        snapshot.len(),
        2,
        "the unnamed layer reported nothing: {snapshot:?}"
    );
    for (key, unit, help, _) in &snapshot {
        assert_eq!(*unit, Some(metrics::Unit::Count), "{key:?}");
        assert!(help.as_ref().is_some_and(|h| !h.is_empty()), "{key:?}");
    }
}
