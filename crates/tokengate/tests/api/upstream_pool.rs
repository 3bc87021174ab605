//! The gateway's own upstream connections (`gateway::upstream`): kept alive and reused,
//! never reused once the upstream has closed them, aborted with their client, and
//! over TLS to an upstream whose CA is `upstream_ca_file`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::helpers::TestApp;

/// A bare HTTP/1.1 upstream: counts the connections it accepts, answers every request
/// `200 ok` (keep-alive), and closes a connection after `idle_close` without a request.
/// Reports each request body it could not read in full (`aborted`).
struct CountingUpstream {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    aborted: mpsc::UnboundedReceiver<usize>,
}

impl CountingUpstream {
    async fn start(idle_close: Duration) -> CountingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let (aborted_tx, aborted) = mpsc::unbounded_channel();
        let counter = Arc::clone(&accepts);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, idle_close, aborted_tx.clone()));
            }
        });
        CountingUpstream { addr, accepts, aborted }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

/// Serves one connection: head, then `content-length` bytes of body, then the answer.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    idle_close: Duration,
    aborted: mpsc::UnboundedSender<usize>,
) {
    let mut buf = Vec::new();
    loop {
        // The head (a request may arrive in pieces).
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout(idle_close, stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                // Idle for too long, closed or failed: close.
                _ => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        buf.drain(..head_end);
        while buf.len() < length {
            let mut chunk = [0u8; 64 * 1024];
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => {
                    let _ = aborted.send(buf.len());
                    return;
                }
            }
        }
        buf.drain(..length);
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn instance_on(app: &TestApp, upstream_url: &str) -> String {
    let acc = app.create_account("Pool").await;
    let (status, inst) = app
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/instances"),
            Some(json!({"name": "p", "upstream_url": upstream_url})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inst}");
    app.url(&format!("/instances/{}/token/{}/x", inst["id"].as_str().unwrap(), inst["token"].as_str().unwrap()))
}

/// On the plain lane and on hyper (`plain_lane = false`) alike. (A client connection
/// that has made admin calls is hyper's; this kept-alive client makes none.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_kept_alive_and_reused() {
    for plain_lane in [true, false] {
        let app = TestApp::spawn_with(None, |c| {
            c.workers = Some(1);
            c.plain_lane = plain_lane;
        })
        .await;
        let upstream = CountingUpstream::start(Duration::from_secs(30)).await;
        let url = instance_on(&app, &upstream.url()).await;
        let kept = reqwest::Client::builder().no_proxy().build().unwrap();
        // One after the other, on new client connections and on one kept-alive one.
        for n in 0..20 {
            let res = if n % 2 == 0 {
                reqwest::Client::builder().no_proxy().build().unwrap().get(&url).send().await.unwrap()
            } else {
                kept.post(&url).body("some body").send().await.unwrap()
            };
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.text().await.unwrap(), "ok");
        }
        assert_eq!(upstream.accepts(), 1, "lane {plain_lane}: 20 sequential requests need one upstream connection");
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_upstream_closed_is_not_reused() {
    let app = TestApp::spawn_with(None, |c| c.workers = Some(1)).await;
    // The upstream closes a connection 100 ms after its last answer (its keep-alive
    // timeout), without saying so in the answer.
    let upstream = CountingUpstream::start(Duration::from_millis(100)).await;
    let url = instance_on(&app, &upstream.url()).await;
    for round in 1..=3 {
        let res = app.http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "round {round}: no 502 from a closed connection");
        assert_eq!(res.text().await.unwrap(), "ok");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(upstream.accepts(), 3, "each round needed a new connection");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_body_aborts_the_upstream_request() {
    let app = TestApp::spawn_with(None, |c| c.workers = Some(1)).await;
    let mut upstream = CountingUpstream::start(Duration::from_secs(30)).await;
    let url = instance_on(&app, &upstream.url()).await;
    let path = url.split_once(&app.addr.to_string()).unwrap().1.to_string();
    let mut client = TcpStream::connect(app.addr).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n");
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(&[b'a'; 10_000]).await.unwrap();
    // The upstream has started receiving the body before the client goes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(client);
    let received = tokio::time::timeout(Duration::from_secs(10), upstream.aborted.recv())
        .await
        .expect("the upstream connection is closed with the client's")
        .unwrap();
    assert!(received < 1_000_000, "{received}");
    // The next request gets a connection that works.
    let res = app.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}

/// An `https://` upstream with a certificate from a CA only `upstream_ca_file` knows:
/// served, its connection reused; without that file the same upstream is refused (502).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_through_rustls_with_an_own_ca() {
    use tokio_rustls::rustls;
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_file, made.cert.pem()).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepts);
    let (aborted_tx, _aborted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, aborted, counter) = (acceptor.clone(), aborted_tx.clone(), Arc::clone(&counter));
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(stream).await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    serve(stream, Duration::from_secs(30), aborted).await;
                }
            });
        }
    });
    let upstream_url = format!("https://localhost:{port}");

    let app = TestApp::spawn_with(None, |c| {
        c.workers = Some(1);
        c.upstream_ca_file = Some(ca_file.clone());
    })
    .await;
    let url = instance_on(&app, &upstream_url).await;
    for _ in 0..5 {
        let res = app.http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.text().await.unwrap(), "ok");
    }
    assert_eq!(accepts.load(Ordering::SeqCst), 1, "one TLS connection for five requests");
    app.stop().await;

    let untrusting = TestApp::spawn_with(None, |c| c.workers = Some(1)).await;
    let url = instance_on(&untrusting, &upstream_url).await;
    let res = untrusting.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(res.text().await.unwrap(), r#"{"error":"upstream unavailable"}"#);
    assert_eq!(accepts.load(Ordering::SeqCst), 1, "the handshake failed: nothing served");
    untrusting.stop().await;
}

/// A missing or empty `upstream_ca_file` stops the start with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_upstream_ca_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    for path in [dir.path().join("missing.pem"), empty] {
        let mut config = crate::helpers::base_config(dir.path(), None);
        config.upstream_ca_file = Some(path.clone());
        let error = match tokengate::server::Application::build(config).await {
            Ok(_) => panic!("started with {}", path.display()),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains("upstream_ca_file"), "{error}");
    }
}
