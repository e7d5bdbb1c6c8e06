//! The client used the way a reqwest user writes code: string headers, a query,
//! bearer and basic auth, every method, a spawned send future, the crate's own
//! `http`, encoded endpoints, and decode errors that say what came back
//! (compressed bodies: tests/compression.rs).

mod support;

use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use stache_resilience::http::{HeaderMap, Method, StatusCode};
use stache_resilience::{ErrorKind, HttpClient, HttpClientConfig};
use support::{Reply, Server};

fn client(url: &str) -> HttpClient {
    let mut config = HttpClientConfig::new(url);
    config.retry_base_delay = Duration::from_millis(1);
    config.retry_max_delay = Duration::from_millis(2);
    HttpClient::new(config).unwrap()
}

fn header(seen: &support::Seen, name: &str) -> Vec<String> {
    seen.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn string_headers_query_and_bearer_auth_reach_the_server() {
    let server = Server::replies(vec![Reply::json(200, r#"{"ok":true}"#)]).await;
    let client = client(&server.url());

    #[derive(Serialize)]
    struct Page {
        limit: u32,
        cursor: Option<String>,
    }
    let response = client
        .get("/v1/models")
        .header("x-tenant", "acme")
        .header("x-tag", "one")
        .header("x-tag", String::from("two"))
        .header(
            stache_resilience::http::header::ACCEPT_LANGUAGE,
            stache_resilience::http::HeaderValue::from_static("fr"),
        )
        .query(&[("q", "café au lait")])
        .query(&Page {
            limit: 10,
            cursor: None,
        })
        .bearer_auth("sk-secret-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let value: serde_json::Value = response.json().unwrap();
    assert_eq!(value["ok"], true);

    let seen = &server.seen()[0];
    assert_eq!(seen.path, "/v1/models");
    assert_eq!(seen.query, "q=caf%C3%A9+au+lait&limit=10");
    assert_eq!(header(seen, "x-tenant"), ["acme"]);
    assert_eq!(header(seen, "x-tag"), ["one", "two"]);
    assert_eq!(header(seen, "accept-language"), ["fr"]);
    assert_eq!(header(seen, "authorization"), ["Bearer sk-secret-123"]);
}

#[tokio::test]
async fn every_method_goes_out_as_named_with_its_body() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let client = client(&server.url());

    client.get("/items").await.unwrap();
    client.post("/items", &json!({"name": "a"})).await.unwrap();
    client
        .put("/items/1")
        .json(&json!({"name": "b"}))
        .await
        .unwrap();
    client
        .patch("/items/1")
        .body("raw=1")
        .header("content-type", "application/x-www-form-urlencoded")
        .await
        .unwrap();
    client.delete("/items/1").await.unwrap();
    client.head("/items").await.unwrap();
    client.request(Method::POST, "/ping").await.unwrap();

    let seen = server.seen();
    let methods: Vec<_> = seen.iter().map(|s| s.method.as_str().to_owned()).collect();
    assert_eq!(
        methods,
        ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "POST"]
    );
    assert_eq!(seen[1].body, r#"{"name":"a"}"#);
    assert_eq!(header(&seen[1], "content-type"), ["application/json"]);
    assert_eq!(seen[2].body, r#"{"name":"b"}"#);
    assert_eq!(seen[3].body, "raw=1");
    assert_eq!(
        header(&seen[3], "content-type"),
        ["application/x-www-form-urlencoded"]
    );
    assert!(seen[6].body.is_empty());
    assert!(header(&seen[6], "content-type").is_empty());
}

#[tokio::test]
async fn a_send_future_can_be_spawned_without_borrowing_client_or_path() {
    let server = Server::replies(vec![Reply::json(200, r#"{"n":1}"#)]).await;
    let client = client(&server.url());
    let mut tasks = Vec::new();
    for i in 0..4 {
        // The path and the body are dropped before the task runs.
        let path = format!("/embeddings/{i}");
        let body = json!({"input": [i]});
        tasks.push(tokio::spawn(client.post(&path, &body).send()));
    }
    let handle = {
        let client = client.clone();
        let path = String::from("/models");
        tokio::spawn(client.get(&path).send())
    };
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().status(), 200);
    }
    handle.await.unwrap().unwrap();
    let mut paths: Vec<_> = server.seen().iter().map(|s| s.path.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/embeddings/0",
            "/embeddings/1",
            "/embeddings/2",
            "/embeddings/3",
            "/models"
        ]
    );
}

#[tokio::test]
async fn endpoints_are_percent_encoded_where_they_must_be_and_escapes_kept() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let client = client(&server.url());
    client.get("/search?q=café crème").await.unwrap();
    client.get("/files/a%20b").await.unwrap();
    client.get("/files/naïve file.txt").await.unwrap();
    // A request carries no fragment: `#` is a character of the path, and the
    // query goes after it. A `%` that starts no escape is escaped itself.
    client
        .get("/tags/c#")
        .query(&[("page", "2")])
        .await
        .unwrap();
    client.get("/deals/50%off").await.unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].path, "/search");
    assert_eq!(seen[0].query, "q=caf%C3%A9%20cr%C3%A8me");
    assert_eq!(seen[1].path, "/files/a%20b");
    assert_eq!(seen[2].path, "/files/na%C3%AFve%20file.txt");
    assert_eq!(
        (seen[3].path.as_str(), seen[3].query.as_str()),
        ("/tags/c%23", "page=2")
    );
    assert_eq!(seen[4].path, "/deals/50%25off");
}

#[tokio::test]
async fn basic_auth_and_a_header_map() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let client = client(&server.url());
    let mut headers = HeaderMap::new();
    headers.insert("x-one", "1".parse().unwrap());
    headers.append("x-two", "2a".parse().unwrap());
    headers.append("x-two", "2b".parse().unwrap());
    client
        .get("/")
        .header("x-one", "replaced")
        .headers(headers)
        .basic_auth("aladdin", Some("opensesame"))
        .await
        .unwrap();
    client
        .get("/")
        .basic_auth("user", None::<&str>)
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(header(&seen[0], "x-one"), ["1"]);
    assert_eq!(header(&seen[0], "x-two"), ["2a", "2b"]);
    assert_eq!(
        header(&seen[0], "authorization"),
        ["Basic YWxhZGRpbjpvcGVuc2VzYW1l"]
    );
    assert_eq!(header(&seen[1], "authorization"), ["Basic dXNlcjo="]);
}

#[tokio::test]
async fn a_bad_header_or_query_is_a_request_error_at_send_naming_it() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let client = client(&server.url());

    let error = client.get("/").header("bad name", "v").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Request);
    assert!(error.to_string().contains("header name"), "{error}");

    let error = client
        .get("/")
        .header("x-api-key", "line\nbreak-secret")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Request);
    let text = format!("{error} {error:?}");
    assert!(text.contains("x-api-key"), "{text}");
    assert!(!text.contains("break-secret"), "{text}");

    let error = client
        .get("/")
        .query(&json!({"nested": {"a": 1}}))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Request);
    assert!(error.to_string().contains("query"), "{error}");

    // None of them reached the server.
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn secrets_set_on_a_request_stay_out_of_its_debug_output() {
    let server = Server::replies(vec![Reply::json(200, "{}")]).await;
    let client = client(&server.url());
    let mut marked = stache_resilience::http::HeaderValue::from_static("sk-marked-secret");
    marked.set_sensitive(true);
    let builder = client
        .get("/models?api_key=sk-query-secret")
        .header("x-api-key", "sk-header-secret")
        .header("x-credential", marked)
        .bearer_auth("sk-bearer-secret");
    let debug = format!("{builder:?}");
    assert!(debug.contains("/models?api_key=[redacted]"), "{debug}");
    let secrets = [
        "sk-query-secret",
        "sk-header-secret",
        "sk-marked-secret",
        "sk-bearer-secret",
    ];
    for secret in secrets {
        assert!(!debug.contains(secret), "{debug}");
    }
    // Nor in the error of an endpoint that is not a path.
    let error = client
        .get("v1/x?api_key=sk-endpoint-secret")
        .await
        .unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(!text.contains("sk-endpoint-secret"), "{text}");
    assert!(text.contains("must be a path"), "{text}");
}

#[tokio::test]
async fn a_decode_error_names_the_content_type_and_the_first_bytes() {
    let page = format!("<html><body>{}</body></html>", "x".repeat(200));
    let server = Server::replies(vec![
        Reply::Full {
            status: 200,
            headers: vec![("content-type", "text/html; charset=utf-8".into())],
            body: page.into(),
        },
        Reply::json(200, r#"{"data": [1, 2,"#),
    ])
    .await;
    let client = client(&server.url());

    let html = client.get("/").await.unwrap();
    let error = html.json::<serde_json::Value>().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Decode);
    let message = error.to_string();
    assert!(
        message.contains(r#"expected JSON, got text/html; charset=utf-8: "<html><body>xxx"#),
        "{message}"
    );
    assert!(message.contains("…\""), "{message}");

    let cut = client.get("/").await.unwrap();
    let error = cut.json::<serde_json::Value>().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Decode);
    assert!(
        error.to_string().contains(r#"{\"data\": [1, 2,"#),
        "{error}"
    );
}
