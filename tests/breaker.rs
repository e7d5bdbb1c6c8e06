//! The breaker by hand and under an operator: permits that cannot be forgotten,
//! stranded `can_attempt` slots reclaimed, `force_open`/`reset`, and a refusal
//! log that does not flood.

mod support;

use std::time::Duration;

use stache_resilience::circuit_breaker::CircuitState;
use stache_resilience::{CircuitBreaker, CircuitBreakerConfig};
use support::{capture_logs, transitions};

fn breaker(threshold: u32, timeout: Duration, half_open: u32) -> CircuitBreaker {
    CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: threshold,
        timeout,
        half_open_max_calls: half_open,
    })
}

#[tokio::test(start_paused = true)]
async fn a_dropped_permit_gives_its_half_open_slot_back() {
    let cb = breaker(1, Duration::from_secs(10), 1);
    cb.try_acquire().expect("closed").failure();
    assert!(cb.try_acquire().is_none(), "open");
    tokio::time::advance(Duration::from_secs(10)).await;
    let probe = cb.try_acquire().expect("half-open admits one probe");
    assert!(probe.is_half_open());
    assert!(cb.try_acquire().is_none(), "the one slot is taken");
    // The caller panics, or is cancelled: the permit is dropped unreported.
    drop(probe);
    let probe = cb.try_acquire().expect("the slot came back");
    probe.success();
    assert_eq!(cb.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_permit_from_an_earlier_period_changes_nothing() {
    let cb = breaker(1, Duration::from_secs(10), 1);
    let early = cb.try_acquire().expect("closed");
    cb.try_acquire().expect("closed").failure();
    assert_eq!(cb.state(), CircuitState::Open);
    // A success admitted while closed, reported after the circuit opened.
    early.success();
    assert_eq!(cb.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_can_attempt_slot_that_never_reports_is_reclaimed_after_the_timeout() {
    let timeout = Duration::from_secs(30);
    let cb = breaker(1, timeout, 1);
    cb.record_failure();
    tokio::time::advance(timeout).await;
    // A caller of the original API takes the only probe slot and never reports.
    assert!(cb.can_attempt());
    assert!(!cb.can_attempt());
    tokio::time::advance(timeout - Duration::from_millis(1)).await;
    assert!(!cb.can_attempt(), "not reclaimed before the timeout");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(cb.can_attempt(), "reclaimed once it is `timeout` old");
    cb.record_success();
    assert_eq!(cb.state(), CircuitState::Closed);
    // And in a day of virtual time nothing strands it again.
    cb.record_failure();
    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    assert!(cb.can_attempt());
}

#[tokio::test(start_paused = true)]
async fn a_reported_can_attempt_slot_is_not_reclaimed_twice() {
    let timeout = Duration::from_secs(5);
    let cb = breaker(1, timeout, 2);
    cb.record_failure();
    tokio::time::advance(timeout).await;
    assert!(cb.can_attempt());
    cb.record_success();
    assert!(cb.can_attempt());
    tokio::time::advance(timeout).await;
    // The second slot is reclaimed; the first was reported and is not freed again.
    assert!(cb.can_attempt());
    assert!(!cb.can_attempt());
}

#[tokio::test(start_paused = true)]
async fn force_open_refuses_until_reset_and_each_is_one_event() {
    let logs = capture_logs();
    let _guard = logs.install();
    let cb = breaker(3, Duration::from_secs(1), 1);
    let mut states = cb.subscribe();
    cb.record_failure();
    cb.force_open();
    assert_eq!(*states.borrow_and_update(), CircuitState::Open);
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(
        cb.state(),
        CircuitState::Open,
        "a forced open never times out"
    );
    assert!(cb.try_acquire().is_none());
    assert!(!cb.can_attempt());
    cb.reset();
    assert!(states.has_changed().unwrap());
    assert_eq!(*states.borrow_and_update(), CircuitState::Closed);
    let stats = cb.stats();
    assert_eq!(
        (stats.state, stats.failure_count),
        (CircuitState::Closed, 0)
    );
    assert!(cb.try_acquire().is_some());
    // Reset from closed zeroes the count too.
    cb.record_failure();
    cb.record_failure();
    cb.reset();
    cb.record_failure();
    assert_eq!(
        cb.state(),
        CircuitState::Closed,
        "the count started again from zero"
    );

    let events = logs.events();
    let lines: Vec<String> = events.iter().map(|e| e.message.clone()).collect();
    assert_eq!(
        lines
            .iter()
            .filter(|m| *m == "circuit breaker forced open")
            .count(),
        1,
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|m| *m == "circuit breaker reset")
            .count(),
        2,
        "{lines:?}"
    );
    let moves: Vec<(String, String)> = transitions(&events)
        .into_iter()
        .map(|(_, from, to)| (from, to))
        .collect();
    assert_eq!(
        moves[..2],
        [
            ("closed".to_owned(), "open".to_owned()),
            ("open".to_owned(), "closed".to_owned())
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn refusals_are_logged_once_per_period_then_once_a_second() {
    let logs = capture_logs();
    let _guard = logs.install();
    let cb = breaker(1, Duration::from_secs(60), 1);
    cb.record_failure();
    for _ in 0..1000 {
        assert!(cb.try_acquire().is_none());
    }
    let refusals = |logs: &support::Capture| -> Vec<String> {
        logs.events()
            .iter()
            .filter(|e| {
                e.message
                    .starts_with("Circuit breaker OPEN - rejecting request")
            })
            .map(|e| e.field("refused").unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(refusals(&logs), ["1"], "the first refusal alone, at once");
    tokio::time::advance(Duration::from_millis(1000)).await;
    assert!(!cb.can_attempt());
    assert_eq!(
        refusals(&logs),
        ["1", "1000"],
        "then the count since, once a second"
    );
    // A new open period logs its first refusal at once.
    cb.reset();
    cb.record_failure();
    assert!(cb.try_acquire().is_none());
    assert_eq!(refusals(&logs), ["1", "1000", "1"]);
    let warn = logs
        .events()
        .iter()
        .filter(|e| e.message.starts_with("Circuit breaker OPEN"))
        .all(|e| e.level == tracing::Level::WARN);
    assert!(warn);
}

mod keyed {
    use stache_resilience::circuit_breaker::{CircuitOpen, CircuitState};
    use stache_resilience::{CircuitBreakerConfig, CircuitBreakerLayer};
    use tower::{Layer, Service, ServiceExt};

    /// A request for a model; the fake provider fails every call to "bad".
    #[derive(Clone, Debug)]
    struct Embed {
        model: &'static str,
    }

    fn provider() -> impl Service<
        Embed,
        Response = &'static str,
        Error = std::io::Error,
        Future = impl std::future::Future<Output = Result<&'static str, std::io::Error>> + Send,
    > + Clone {
        tower::service_fn(|req: Embed| async move {
            if req.model == "bad" {
                Err(std::io::Error::other("model overloaded"))
            } else {
                Ok(req.model)
            }
        })
    }

    fn config() -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            failure_threshold: 2,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_failing_model_opens_only_its_own_circuit() {
        let layer = CircuitBreakerLayer::keyed(config(), |req: &Embed| ("openai", req.model));
        let mut svc = layer.layer(provider());
        for _ in 0..2 {
            assert!(
                svc.ready()
                    .await
                    .unwrap()
                    .call(Embed { model: "bad" })
                    .await
                    .is_err()
            );
        }
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(Embed { model: "bad" })
            .await
            .unwrap_err();
        assert!(err.is::<CircuitOpen>(), "{err}");
        // The other model keeps working, through this service and a clone.
        assert_eq!(
            svc.ready()
                .await
                .unwrap()
                .call(Embed { model: "good" })
                .await
                .unwrap(),
            "good"
        );
        let mut other = layer.layer(provider());
        assert!(
            other
                .ready()
                .await
                .unwrap()
                .call(Embed { model: "good" })
                .await
                .is_ok()
        );
        assert!(
            other
                .ready()
                .await
                .unwrap()
                .call(Embed { model: "bad" })
                .await
                .unwrap_err()
                .is::<CircuitOpen>()
        );
        let mut states: Vec<_> = layer
            .breakers()
            .into_iter()
            .map(|((_, model), stats)| (model, stats.state))
            .collect();
        states.sort_by_key(|(model, _)| *model);
        assert_eq!(
            states,
            [("bad", CircuitState::Open), ("good", CircuitState::Closed)]
        );
    }

    #[tokio::test]
    async fn past_max_keys_the_least_recently_used_closed_breaker_goes_and_an_open_one_never() {
        let layer = CircuitBreakerLayer::keyed(config(), |req: &Embed| req.model).max_keys(2);
        let mut svc = layer.layer(provider());
        for model in ["bad", "bad", "a"] {
            let _ = svc.ready().await.unwrap().call(Embed { model }).await;
        }
        assert_eq!(layer.breaker(&"bad").unwrap().state(), CircuitState::Open);
        // A third key: "a" (closed) goes, "bad" (open, and older) stays.
        let _ = svc.ready().await.unwrap().call(Embed { model: "b" }).await;
        assert!(layer.breaker(&"a").is_none());
        assert_eq!(layer.breaker(&"bad").unwrap().state(), CircuitState::Open);
        assert!(layer.breaker(&"b").is_some());
        // The next new key pushes out the only closed breaker, "b", never the open one.
        let _ = svc.ready().await.unwrap().call(Embed { model: "c" }).await;
        assert!(layer.breaker(&"b").is_none());
        assert_eq!(layer.breakers().len(), 2);
        assert_eq!(layer.breaker(&"bad").unwrap().state(), CircuitState::Open);
    }
}

/// gRPC answers whose status comes in the trailers: the breaker records the
/// call at the body's end, and a body dropped before it records nothing.
mod grpc_trailers {
    use super::*;
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::BodyExt;
    use http_body_util::combinators::BoxBody;
    use stache_resilience::CircuitBreakerLayer;
    use stache_resilience::classify::GrpcClassifier;
    use std::convert::Infallible;
    use tower::{Layer, Service, ServiceExt};

    type Body = BoxBody<Bytes, Infallible>;

    /// A gRPC answer: headers without a status, one message, then trailers
    /// with `code`.
    fn answer(code: u32) -> http::Response<Body> {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", code.to_string().parse().unwrap());
        let body = http_body_util::StreamBody::new(Frames(
            vec![
                Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                Ok(Frame::trailers(trailers)),
            ]
            .into_iter(),
        ));
        http::Response::builder()
            .header("content-type", "application/grpc")
            .body(body.boxed())
            .unwrap()
    }

    struct Frames(std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>);

    impl futures_core::Stream for Frames {
        type Item = Result<Frame<Bytes>, Infallible>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }

    async fn call(cb: &CircuitBreaker, code: u32) -> http::Response<Body> {
        let inner = tower::service_fn(move |_: http::Request<()>| async move {
            Ok::<_, Infallible>(answer(code))
        });
        let mut svc = CircuitBreakerLayer::new(cb.clone())
            .classifier(GrpcClassifier::default())
            .layer(inner);
        svc.ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_trailers_settle_the_call_when_they_arrive() {
        let cb = breaker(2, Duration::from_secs(10), 1);
        for before in 0..2 {
            let res = call(&cb, 14).await;
            assert_eq!(
                cb.stats().failure_count,
                before,
                "nothing known before the trailers"
            );
            let collected = res.into_body().collect().await.unwrap();
            assert!(collected.trailers().is_some());
        }
        assert_eq!(cb.state(), CircuitState::Open);
        // OK in the trailers closes a half-open circuit.
        tokio::time::advance(Duration::from_secs(10)).await;
        let res = call(&cb, 0).await;
        assert_eq!(cb.state(), CircuitState::HalfOpen);
        res.into_body().collect().await.unwrap();
        assert_eq!(cb.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_dropped_before_its_trailers_frees_the_half_open_slot() {
        let cb = breaker(1, Duration::from_secs(10), 1);
        call(&cb, 13).await.into_body().collect().await.unwrap();
        assert_eq!(cb.state(), CircuitState::Open);
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = call(&cb, 14).await;
        assert!(cb.try_acquire().is_none(), "the probe holds the one slot");
        drop(probe);
        assert_eq!(cb.state(), CircuitState::HalfOpen, "nothing recorded");
        let again = cb.try_acquire().expect("the slot came back");
        again.success();
        assert_eq!(cb.state(), CircuitState::Closed);
    }
}
