//! Compressed response bodies: decoded with the `compression` feature (buffered
//! and streamed, the limits applied to what they decode to, so a gzip bomb is
//! refused), and a clear error without it. `.ci/run` runs this file with and
//! without the feature.

mod support;

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use stache_resilience::{HttpClient, HttpClientConfig};
use support::{Reply, Server};

fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    Bytes::from(encoder.finish().unwrap())
}

fn gzipped(content_type: &str, data: &[u8]) -> Reply {
    Reply::Full {
        status: 200,
        headers: vec![
            ("content-type", content_type.to_owned()),
            ("content-encoding", "gzip".into()),
        ],
        body: gzip(data),
    }
}

fn config(url: &str) -> HttpClientConfig {
    let mut config = HttpClientConfig::new(url);
    config.retry_base_delay = Duration::from_millis(1);
    config.retry_max_delay = Duration::from_millis(2);
    config
}

#[cfg(feature = "compression")]
mod decoded {
    use super::*;

    #[tokio::test]
    async fn a_gzip_body_is_decoded_and_gzip_br_zstd_are_asked_for() {
        let json = br#"{"embedding":[0.25,0.5]}"#;
        let server = Server::replies(vec![gzipped("application/json", json)]).await;
        let client = HttpClient::new(config(&server.url())).unwrap();
        let response = client.get("/embed").await.unwrap();
        let value: serde_json::Value = response.json().unwrap();
        assert_eq!(value["embedding"][1], 0.5);
        assert!(response.headers().get("content-encoding").is_none());
        let accept = server.seen()[0].headers["accept-encoding"]
            .to_str()
            .unwrap()
            .to_owned();
        for coding in ["gzip", "br", "zstd"] {
            assert!(accept.contains(coding), "{accept}");
        }
        assert!(!accept.contains("deflate"), "{accept}");
    }

    #[tokio::test]
    async fn a_streamed_gzip_body_is_decoded_line_by_line() {
        let lines = b"{\"response\":\"a\"}\n{\"response\":\"b\"}\n";
        let server = Server::replies(vec![gzipped("application/x-ndjson", lines)]).await;
        let client = HttpClient::new(config(&server.url())).unwrap();
        let mut stream = client.get("/generate").stream().await.unwrap();
        assert_eq!(
            stream.next_line().await.unwrap().as_deref(),
            Some(r#"{"response":"a"}"#)
        );
        assert_eq!(
            stream.next_line().await.unwrap().as_deref(),
            Some(r#"{"response":"b"}"#)
        );
        assert_eq!(stream.next_line().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_gzip_bomb_is_refused_by_its_decoded_size() {
        // 16 MiB of zeros, some 16 KiB on the wire.
        let bomb = gzipped("application/json", &vec![0u8; 16 << 20]);
        let Reply::Full { body, .. } = &bomb else {
            unreachable!()
        };
        assert!(body.len() < 64 * 1024, "{}", body.len());
        let server = Server::replies(vec![bomb]).await;
        let mut config = config(&server.url());
        config.max_response_bytes = 1 << 20;
        config.max_stream_bytes = 1 << 20;
        config.max_retries = 0;
        let client = HttpClient::new(config).unwrap();

        let error = client.get("/bomb").await.unwrap_err();
        assert!(error.is_body(), "{error:?}");
        assert!(error.to_string().contains("max_response_bytes"), "{error}");

        // Streamed, the limit is met before the first line (the zeros hold no
        // newline), or by a later read.
        let error = match client.get("/bomb").stream().await {
            Err(error) => error,
            Ok(mut stream) => loop {
                match stream.next_line().await {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("the bomb was read to its end"),
                    Err(error) => break error,
                }
            },
        };
        assert!(error.is_body(), "{error:?}");
        assert!(error.to_string().contains("max_"), "{error}");
    }

    #[tokio::test]
    async fn an_encoding_not_decoded_is_named() {
        let server = Server::replies(vec![Reply::Full {
            status: 200,
            headers: vec![("content-encoding", "compress".into())],
            body: Bytes::from_static(b"\x1f\x9d\x90"),
        }])
        .await;
        let client = HttpClient::new(config(&server.url())).unwrap();
        let response = client.get("/").await.unwrap();
        let error = response.json::<serde_json::Value>().unwrap_err();
        assert!(
            error.to_string().contains("content-encoding: compress"),
            "{error}"
        );
    }
}

#[cfg(not(feature = "compression"))]
#[tokio::test]
async fn without_the_feature_a_gzip_body_is_an_error_naming_its_encoding() {
    let server = Server::replies(vec![gzipped("application/json", b"{}")]).await;
    let client = HttpClient::new(config(&server.url())).unwrap();
    let response = client.get("/").await.unwrap();
    assert!(server.seen()[0].headers.get("accept-encoding").is_none());
    for error in [
        response.json::<serde_json::Value>().unwrap_err(),
        response.text().unwrap_err(),
    ] {
        let message = error.to_string();
        assert!(message.contains("content-encoding: gzip"), "{message}");
        assert!(message.contains("`compression` feature"), "{message}");
    }
}
