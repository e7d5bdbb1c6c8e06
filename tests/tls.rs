//! HTTPS through rustls against a loopback server with a certificate made in the
//! test.
#![cfg(feature = "rustls")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use stache_resilience::{ErrorKind, HttpClient, HttpClientConfig};
use test_support::server::{Loopback, http1};

struct TlsServer {
    url: String,
    cert_pem: String,
    hits: Arc<AtomicUsize>,
    _server: Loopback,
}

async fn tls_server() -> TlsServer {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert_der: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let server = Loopback::start(move |tcp| {
        let (acceptor, counter) = (acceptor.clone(), counter.clone());
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |_req| {
                counter.fetch_add(1, Ordering::SeqCst);
                async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(br#"{"secure":true}"#),
                    )))
                }
            });
            http1(tls, svc).await;
        }
    })
    .await;
    TlsServer {
        url: format!("https://{}", server.addr),
        cert_pem: certified.cert.pem(),
        hits,
        _server: server,
    }
}

#[tokio::test]
async fn https_works_with_an_extra_root_certificate() {
    let server = tls_server().await;
    let mut config = HttpClientConfig::new(&server.url);
    config.extra_root_certificates = vec![server.cert_pem.clone().into_bytes()];
    let client = HttpClient::new(config).unwrap();
    let response = client.get("/secure").await.unwrap();
    let value: serde_json::Value = response.json().unwrap();
    assert_eq!(value["secure"], true);
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_connect_error() {
    let server = tls_server().await;
    let mut config = HttpClientConfig::new(&server.url);
    config.max_retries = 1;
    config.retry_base_delay = Duration::from_millis(1);
    config.retry_max_delay = Duration::from_millis(2);
    let client = HttpClient::new(config).unwrap();
    let err = client.get("/secure").await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(client.stats().attempts, 2, "a failed handshake is retried");
    assert_eq!(
        server.hits.load(Ordering::SeqCst),
        0,
        "no request got through"
    );
    assert!(
        format!("{err:?}").to_lowercase().contains("certificate"),
        "the cause is kept: {err:?}"
    );
}

#[test]
fn a_root_certificate_that_does_not_parse_is_a_config_error() {
    let mut config = HttpClientConfig::new("https://127.0.0.1:1");
    config.extra_root_certificates = vec![b"-----BEGIN CERTIFICATE-----\nnot base64\n".to_vec()];
    let err = HttpClient::new(config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("extra_root_certificates"), "{err}");
}
