//! `RequestIdLayer` on a server: the incoming ID kept (or made), echoed on the
//! response, and carried by the `HttpClient` calls the handler makes.

mod support;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use stache_resilience::{HttpClient, HttpClientConfig, RequestIdLayer};
use support::{Reply, Server, capture_logs};

async fn handler(State(upstream): State<HttpClient>) -> String {
    // No `.request_id()`: the call inherits the request's.
    let response = upstream
        .get("/v1/models")
        .await
        .expect("the upstream answers");
    response.request_id().to_string()
}

async fn gateway(upstream: &Server) -> String {
    let client = HttpClient::new(HttpClientConfig::new(upstream.url())).unwrap();
    let router = Router::new()
        .route("/models", get(handler))
        .with_state(client)
        .layer(RequestIdLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    url
}

/// GETs `url` with a hyper client, optionally with an `x-request-id`; returns
/// the response's `x-request-id` and body.
async fn fetch(url: &str, id: Option<&'static str>) -> (String, String) {
    use http_body_util::BodyExt;
    let client = support::hyper_client::<http_body_util::Full<bytes::Bytes>>();
    let mut req = http::Request::get(format!("{url}/models"));
    if let Some(id) = id {
        req = req.header("x-request-id", id);
    }
    let res = client
        .request(req.body(http_body_util::Full::default()).unwrap())
        .await
        .unwrap();
    let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (echoed, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_incoming_id_is_echoed_and_sent_upstream_by_the_handler_s_calls() {
    let upstream = Server::replies(vec![Reply::json(200, "{}")]).await;
    let url = gateway(&upstream).await;

    let logs = capture_logs();
    let _guard = logs.install();
    let (echoed, used) = fetch(&url, Some("trace-77")).await;
    assert_eq!(echoed, "trace-77");
    assert_eq!(used, "trace-77");
    assert_eq!(upstream.seen()[0].request_id(), "trace-77");
    // The client's log lines carry the ID once, from the server's span.
    let sending: Vec<_> = logs
        .events()
        .into_iter()
        .filter(|e| e.message == "sending attempt")
        .collect();
    assert_eq!(sending.len(), 1, "{:?}", logs.text());
    assert_eq!(
        sending[0].spans.matches("request_id=").count(),
        1,
        "{}",
        sending[0].spans
    );

    // Without one, the server makes an ID, echoes it, and the call uses it.
    let (echoed, used) = fetch(&url, None).await;
    assert_eq!(echoed.len(), 8);
    assert_eq!(used, echoed);
    assert_eq!(upstream.seen()[1].request_id(), echoed);
    // An invalid one is replaced, never forwarded.
    let (echoed, _) = fetch(&url, Some("has space")).await;
    assert_ne!(echoed, "has space");
    assert_eq!(upstream.seen()[2].request_id(), echoed);
}

#[tokio::test]
async fn outside_a_handled_request_each_call_gets_its_own_id() {
    let upstream = Server::replies(vec![Reply::json(200, "{}")]).await;
    let client = HttpClient::new(HttpClientConfig::new(upstream.url())).unwrap();
    assert_eq!(stache_resilience::request_id::current(), None);
    let a = client.get("/").await.unwrap();
    let b = client.get("/").await.unwrap();
    assert_ne!(a.request_id(), b.request_id());
}

#[tokio::test(start_paused = true)]
async fn on_a_router_an_open_circuit_is_a_503_with_retry_after_and_a_timeout_a_504() {
    use stache_resilience::classify::HttpClassifier;
    use stache_resilience::server::ErrorResponseLayer;
    use stache_resilience::{
        CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, TimeoutLayer,
    };
    use std::time::Duration;
    use tower::{Service, ServiceBuilder, ServiceExt};

    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        failure_threshold: 2,
        ..Default::default()
    });
    let guarded = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new().retry_after(Duration::from_millis(2500)))
        .layer(CircuitBreakerLayer::new(breaker.clone()).classifier(HttpClassifier))
        .layer(TimeoutLayer::new(Duration::from_secs(1)));
    let mut app = Router::new()
        .route(
            "/down",
            get(|| async { (http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .layer(guarded);
    let get_path = |path: &str| -> http::Request<axum::body::Body> {
        http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let status = ServiceExt::<http::Request<axum::body::Body>>::ready(&mut app)
        .await
        .unwrap()
        .call(get_path("/slow"))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 504);
    let status = ServiceExt::<http::Request<axum::body::Body>>::ready(&mut app)
        .await
        .unwrap()
        .call(get_path("/down"))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 500, "the handler's own answer passes through");
    // Two failures (the timeout, the 500): the circuit is open.
    let res = ServiceExt::<http::Request<axum::body::Body>>::ready(&mut app)
        .await
        .unwrap()
        .call(get_path("/down"))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "3");
    assert_eq!(
        breaker.state(),
        stache_resilience::circuit_breaker::CircuitState::Open
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_s_rate_limit_refusal_becomes_a_429_with_the_wait_it_named() {
    use stache_resilience::rate_limit::RateLimit;
    use stache_resilience::server::error_response;
    use std::time::Duration;

    let upstream = Server::replies(vec![Reply::json(200, "{}")]).await;
    let mut config = HttpClientConfig::new(upstream.url());
    // One call a minute, and a call may wait at most 2 s for its turn.
    config.rate_limit = Some(RateLimit::per_minute(1));
    config.retry_max_delay = Duration::from_secs(2);
    let client = HttpClient::new(config).unwrap();
    client
        .get("/v1/models")
        .await
        .expect("the first call has its turn");
    let refused = client
        .get("/v1/models")
        .await
        .expect_err("the second would wait a minute");
    assert!(refused.is_rate_limited(), "{refused:?}");

    let answer: http::Response<String> = error_response(&refused, Duration::from_secs(5));
    assert_eq!(answer.status(), 429, "a rate limit's refusal is 'not now'");
    let retry_after: u64 = answer.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (55..=61).contains(&retry_after),
        "the wait the limiter named, not the default 5 s: {retry_after}"
    );
    assert_eq!(upstream.hits(), 1, "the refused call sent nothing");
}

#[test]
fn every_kind_of_error_maps_to_one_answer() {
    use stache_resilience::circuit_breaker::CircuitOpen;
    use stache_resilience::server::error_response;
    use stache_resilience::{BoxError, ErrorKind};
    use std::time::Duration;

    let answer = |error: BoxError| -> u16 {
        error_response::<String>(&*error, Duration::from_secs(1))
            .status()
            .as_u16()
    };
    let open: BoxError = Box::new(CircuitOpen::new());
    assert_eq!(ErrorKind::of(&*open), Some(ErrorKind::CircuitOpen));
    assert_eq!(answer(open), 503);
    let io: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    assert_eq!(
        ErrorKind::of(&*io),
        None,
        "an I/O error alone may be the handler's own"
    );
    assert_eq!(answer(io), 500);
    let own: BoxError = "the handler's own failure".into();
    assert_eq!(ErrorKind::of(&*own), None);
    assert_eq!(answer(own), 500);
}

#[tokio::test]
async fn the_layer_over_hyper_util_in_a_handler_sends_the_handler_s_id_as_the_client_does() {
    use http_body_util::Full;
    use tower::{Service, ServiceBuilder, ServiceExt};

    let upstream = Server::replies(vec![Reply::json(200, "{}")]).await;
    let url = format!("{}/v1/models", upstream.url());
    let router = Router::new()
        .route(
            "/models",
            get(move || {
                let url = url.clone();
                async move {
                    let mut stack = ServiceBuilder::new()
                        .layer(RequestIdLayer::new().provider("upstream"))
                        .service(support::hyper_client::<Full<bytes::Bytes>>());
                    let req = http::Request::get(url).body(Full::default()).unwrap();
                    let res = stack.ready().await.unwrap().call(req).await.unwrap();
                    res.headers()["x-request-id"].to_str().unwrap().to_owned()
                }
            }),
        )
        .layer(RequestIdLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    let (echoed, _) = fetch(&gateway, Some("trace-91")).await;
    assert_eq!(echoed, "trace-91");
    assert_eq!(
        upstream.seen()[0].request_id(),
        "trace-91",
        "the handler's ID goes upstream, not a new one"
    );
}

#[tokio::test]
async fn a_provider_s_own_429_is_passed_on_with_the_wait_it_asked_for() {
    use stache_resilience::server::error_response;
    use std::time::Duration;

    let upstream = Server::replies(vec![Reply::Full {
        status: 429,
        headers: vec![("retry-after", "7".into())],
        body: bytes::Bytes::new(),
    }])
    .await;
    let mut config = HttpClientConfig::new(upstream.url());
    config.max_retries = 0;
    let client = HttpClient::new(config).unwrap();
    let err = client.get("/v1/models").await.unwrap_err();
    let answer: http::Response<String> = error_response(&err, Duration::from_secs(1));
    assert_eq!(answer.status(), 429, "{err:?}");
    assert_eq!(answer.headers()["retry-after"], "7");

    // A provider's 500 is the gateway's 502.
    let upstream = Server::replies(vec![Reply::Status(500)]).await;
    let mut config = HttpClientConfig::new(upstream.url());
    config.max_retries = 0;
    let client = HttpClient::new(config).unwrap();
    let err = client.get("/v1/models").await.unwrap_err();
    let answer: http::Response<String> = error_response(&err, Duration::from_secs(1));
    assert_eq!(answer.status(), 502);
}
