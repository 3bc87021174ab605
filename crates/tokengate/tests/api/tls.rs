//! TLS termination (SPEC §14) by the real binary: `serve --tls-cert --tls-key` with a
//! certificate made in the test (rcgen); TLS 1.2 and 1.3, ALPN, `https` upstream,
//! `Secure` cookies, and a certificate swapped on SIGHUP without dropping connections.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use reqwest::{Method, StatusCode};
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::helpers::Upstream;
use crate::process::Server;

/// A self-signed certificate for `localhost`: (certificate PEM, key PEM, DER).
fn certificate() -> (String, String, CertificateDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (made.cert.pem(), made.signing_key.serialize_pem(), made.cert.der().clone())
}

fn client_config(
    trusted: &[&CertificateDer<'static>],
    version: &'static rustls::SupportedProtocolVersion,
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

async fn handshake(
    addr: &str,
    config: ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_versions_alpn_and_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (pem, key, first) = certificate();
    std::fs::write(&cert_file, pem).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let data = dir.path().join("data");
    let args = ["--tls-cert", cert_file.to_str().unwrap(), "--tls-key", key_file.to_str().unwrap()];
    let server = Server::start(&data, None, &args);

    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let tls = handshake(&server.addr, client_config(&[&first], version)).await.unwrap();
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.protocol_version(), Some(version.version));
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    }
    let mut http11_only = client_config(&[&first], &rustls::version::TLS13);
    http11_only.alpn_protocols = vec![b"http/1.1".to_vec()];

    // HTTP/2 by ALPN really is HTTP/2.
    let h2 = handshake(&server.addr, client_config(&[&first], &rustls::version::TLS13)).await.unwrap();
    let (mut h2_sender, h2_conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(h2)).await.unwrap();
    tokio::spawn(h2_conn);
    let h2_req = http::Request::get("https://localhost/healthz").body(Empty::<Bytes>::new()).unwrap();
    let h2_res = h2_sender.send_request(h2_req).await.unwrap();
    assert_eq!((h2_res.status(), h2_res.version()), (StatusCode::OK, http::Version::HTTP_2));

    // An HTTP/1.1 connection opened before the swap, kept open across it.
    let old = handshake(&server.addr, http11_only.clone()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(old)).await.unwrap();
    tokio::spawn(conn);
    let healthz = || http::Request::get("/healthz").header("host", "localhost").body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(sender.send_request(healthz()).await.unwrap().status(), StatusCode::OK);

    // Through reqwest (h2): the gateway forwards with X-Forwarded-Proto: https, and the
    // dashboard's cookies are Secure.
    let upstream = Upstream::start().await;
    let port: u16 = server.addr.rsplit(':').next().unwrap().parse().unwrap();
    let http = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_der(first.as_ref()).unwrap()])
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let admin = |method: Method, path: &str, body: serde_json::Value| {
        http.request(method, format!("{base}{path}")).bearer_auth(&server.admin_token).json(&body).send()
    };
    let account: serde_json::Value =
        admin(Method::POST, "/v1/accounts", json!({"name": "tls"})).await.unwrap().json().await.unwrap();
    let account = account["id"].as_str().unwrap();
    let instance: serde_json::Value = admin(
        Method::POST,
        &format!("/v1/accounts/{account}/instances"),
        json!({"name": "i", "upstream_url": upstream.url()}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let path = format!(
        "/instances/{}/token/{}/send-text",
        instance["id"].as_str().unwrap(),
        instance["token"].as_str().unwrap()
    );
    let res = http.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(upstream.last().headers["x-forwarded-proto"], "https");
    let login = http.get(format!("{base}/")).send().await.unwrap();
    let cookies: Vec<_> =
        login.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    assert!(!cookies.is_empty() && cookies.iter().all(|c| c.contains("; Secure")), "{cookies:?}");

    // Swap the certificate and send SIGHUP: new connections get the new one.
    let (pem, key, second) = certificate();
    std::fs::write(&cert_file, pem).unwrap();
    std::fs::write(&key_file, key).unwrap();
    server.signal("-HUP");
    let mut swapped = false;
    for _ in 0..100 {
        let tls = handshake(&server.addr, client_config(&[&first, &second], &rustls::version::TLS13)).await.unwrap();
        if tls.get_ref().1.peer_certificates().and_then(|c| c.first()) == Some(&second) {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(swapped, "the new certificate was never served: {}", server.log());
    assert!(handshake(&server.addr, client_config(&[&first], &rustls::version::TLS13)).await.is_err());
    // The connection from before still works, and the server is still up.
    let res = sender.send_request(healthz()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.into_body().collect().await.unwrap().to_bytes().is_empty());

    // A broken file on reload keeps the certificate in use.
    std::fs::write(&key_file, "not a key").unwrap();
    server.signal("-HUP");
    for _ in 0..200 {
        if server.log().contains("TLS reload failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(server.log().contains("TLS reload failed"), "{}", server.log());
    let tls = handshake(&server.addr, client_config(&[&second], &rustls::version::TLS13)).await.unwrap();
    assert_eq!(tls.get_ref().1.peer_certificates().and_then(|c| c.first()), Some(&second));
}
