//! Webhooks (SPEC §15): a receiver here checks every Standard Webhooks signature with
//! its own HMAC; retries, restarts and, on PostgreSQL, exactly-once across two nodes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, fresh_postgres_database};

/// One delivery as received: its id, its verified payload.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    payload: Value,
}

/// A webhook receiver on loopback that fails the first `fail_first` requests with a 500
/// and refuses (panics the test) any request whose signature does not verify.
struct Receiver {
    addr: SocketAddr,
    secret: Arc<Mutex<String>>,
    received: Arc<Mutex<Vec<Received>>>,
    bad_signatures: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(fail_first: usize, port: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let secret = Arc::new(Mutex::new(String::new()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let bad_signatures = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let (s, r, b) = (Arc::clone(&secret), Arc::clone(&received), Arc::clone(&bad_signatures));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: http::HeaderMap, body: String| {
                let (s, r, b, calls) = (Arc::clone(&s), Arc::clone(&r), Arc::clone(&b), Arc::clone(&calls));
                async move {
                    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                    let (id, ts, sig) =
                        (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
                    let key = s.lock().unwrap().clone();
                    if !verify(&key, &id, &ts, &body, &sig) {
                        b.fetch_add(1, Ordering::SeqCst);
                        return StatusCode::UNAUTHORIZED;
                    }
                    if calls.fetch_add(1, Ordering::SeqCst) < fail_first {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    r.lock().unwrap().push(Received { id, payload: serde_json::from_str(&body).unwrap() });
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, secret, received, bad_signatures, task }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// The receiver's side of Standard Webhooks, written from the specification: the key is
/// the base64 after `whsec_`, the content `id.timestamp.body`, any `v1,` entry may match.
fn verify(secret: &str, id: &str, timestamp: &str, body: &str, signatures: &str) -> bool {
    let Some(key) =
        secret.strip_prefix("whsec_").and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
    else {
        return false;
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let expected = aws_lc_rs::hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(expected.as_ref());
    !id.is_empty() && signatures.split(' ').any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

async fn eventually<F: AsyncFn() -> bool>(what: &str, f: F) {
    for _ in 0..400 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never happened: {what}");
}

impl TestApp {
    async fn webhook(&self, account: &str, url: &str, events: &[&str]) -> (StatusCode, Value) {
        self.admin(
            Method::POST,
            &format!("/v1/accounts/{account}/webhooks"),
            Some(json!({"url": url, "events": events})),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_signed_retried_and_logged() {
    let receiver = Receiver::start(2, 0).await;
    let app = TestApp::spawn_with(None, |c| c.webhook_retry_seconds = vec![1, 1, 1]).await;
    let account = app.create_account("hooked").await;
    let (status, hook) = app.webhook(&account, &receiver.url(), &["token.created", "token.revoked"]).await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    *receiver.secret.lock().unwrap() = secret;
    let hook_id = hook["id"].as_str().unwrap().to_string();
    let (_, listed) = app.admin(Method::GET, &format!("/v1/accounts/{account}/webhooks"), None).await;
    assert!(listed["items"][0].get("secret").is_none(), "the secret is shown once");

    let token = app.create_token(&account, json!({"name": "k", "kind": "api_key", "scopes": ["*"]})).await;
    let token_id = token["id"].as_str().unwrap().to_string();
    // Two 500s, then delivered on the third attempt.
    eventually("token.created is delivered", async || receiver.received().len() == 1).await;
    let got = &receiver.received()[0];
    assert_eq!(got.payload["type"], "token.created");
    assert_eq!(got.payload["data"]["id"], token_id.as_str());
    assert!(got.payload["timestamp"].is_string());
    // The receiver has the event before its 204 reaches the sender, which logs the
    // attempt only then.
    let deliveries = format!("/v1/webhooks/{hook_id}/deliveries");
    eventually("the third attempt is logged", async || {
        app.admin(Method::GET, &deliveries, None).await.1["items"].as_array().is_some_and(|items| items.len() == 3)
    })
    .await;
    let (_, log) = app.admin(Method::GET, &deliveries, None).await;
    let statuses: Vec<u64> = log["items"].as_array().unwrap().iter().map(|d| d["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [204, 500, 500], "newest first: {log}");
    let ids: Vec<&str> = log["items"].as_array().unwrap().iter().map(|d| d["message_id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| *id == got.id), "a retry keeps its webhook-id");

    // Revocation raises token.revoked; an event nobody subscribed to raises nothing.
    app.admin(Method::DELETE, &format!("/v1/tokens/{token_id}"), None).await;
    eventually("token.revoked is delivered", async || receiver.received().len() == 2).await;
    assert_eq!(receiver.received()[1].payload["type"], "token.revoked");
    app.generate_security_token(&account).await;
    app.activate(&account).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 2);
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);

    // Bad webhooks are refused: a denied address, an unknown event, no events.
    for (url, events) in [
        ("http://169.254.169.254/latest", vec!["token.created"]),
        ("http://[fe80::1]/x", vec!["token.created"]),
        (receiver.url().as_str(), vec!["token.deleted"]),
        (receiver.url().as_str(), vec![]),
        ("ftp://example.com/x", vec!["token.created"]),
        ("http://127.0.0.1:9/a\u{0}b", vec!["token.created"]),
        ("http://127.0.0.1:9/a\nb", vec!["token.created"]),
    ] {
        let (status, body) = app.webhook(&account, url, &events).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url} {events:?}: {body}");
    }
    // The events are answered as asked for, each once.
    let (status, other) =
        app.webhook(&account, &receiver.url(), &["token.revoked", "token.created", "token.revoked"]).await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    assert_eq!(other["events"], json!(["token.revoked", "token.created"]));
    let (_, fetched) = app.admin(Method::GET, &format!("/v1/webhooks/{}", other["id"].as_str().unwrap()), None).await;
    assert_eq!(fetched["events"], json!(["token.revoked", "token.created"]));
    assert_eq!(app.admin(Method::DELETE, &format!("/v1/webhooks/{hook_id}"), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.admin(Method::GET, &format!("/v1/webhooks/{hook_id}"), None).await.0, StatusCode::NOT_FOUND);
    receiver.task.abort();
}

/// An event raised while the receiver is down survives the server's restart, and with
/// two nodes on one PostgreSQL store every event is delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_survives_restarts_and_delivers_once_across_nodes() {
    let url = fresh_postgres_database().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let receiver_url = format!("http://127.0.0.1:{port}/hook");
    // Nodes sharing a store share the master key (it seals the webhook secrets).
    let fast = |c: &mut tokengate::config::Config| {
        c.webhook_retry_seconds = vec![1, 1, 1, 1, 1, 1, 1, 1];
        c.master_key = Some("42".repeat(32).into());
    };
    let a = TestApp::spawn_with(Some(url.clone()), fast).await;
    let account = a.create_account("outbox").await;
    let (_, hook) = a.webhook(&account, &receiver_url, &["token.created"]).await;
    let secret = hook["secret"].as_str().unwrap().to_string();
    // Nobody listens: the event waits in the outbox while node A stops.
    let first = a.create_token(&account, json!({"name": "while-down", "kind": "api_key", "scopes": ["*"]})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin_token = a.admin_token.clone();
    a.stop().await;

    let receiver = Receiver::start(0, port).await;
    *receiver.secret.lock().unwrap() = secret;
    let mut b = TestApp::spawn_with(Some(url.clone()), fast).await;
    b.admin_token = admin_token.clone();
    let mut c = TestApp::spawn_with(Some(url), fast).await;
    c.admin_token = admin_token;
    eventually("the event raised before the restart arrives", async || {
        receiver.received().iter().any(|r| r.payload["data"]["id"] == first["id"])
    })
    .await;
    for i in 0..20 {
        let node = if i % 2 == 0 { &b } else { &c };
        node.create_token(&account, json!({"name": format!("t{i}"), "kind": "api_key", "scopes": ["*"]})).await;
    }
    eventually("all 21 events arrive", async || receiver.received().len() >= 21).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in receiver.received() {
        *counts.entry(r.id).or_default() += 1;
    }
    assert_eq!(counts.len(), 21);
    assert!(counts.values().all(|n| *n == 1), "each event once: {counts:?}");
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    b.stop().await;
    c.stop().await;
    receiver.task.abort();
}

/// `token.expiring` is raised once per token, within 7 days of its expiry, and only for
/// tokens that expire in that window; a token already in its window when the first
/// `token.expiring` webhook is made (the account had only others) is still announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiring_is_raised_once() {
    let receiver = Receiver::start(0, 0).await;
    let other = Receiver::start(0, 0).await;
    let app = TestApp::spawn_with(None, |c| c.webhook_expiring_check_seconds = 1).await;
    let account = app.create_account("expiring").await;
    let (s, created_hook) = app.webhook(&account, &other.url(), &["token.created"]).await;
    assert_eq!(s, StatusCode::CREATED);
    *other.secret.lock().unwrap() = created_hook["secret"].as_str().unwrap().to_string();
    let soon = app
        .create_token(&account, json!({"name": "soon", "kind": "api_key", "scopes": ["*"], "expires_in_seconds": 3600}))
        .await;
    // Several checks run while no webhook wants token.expiring.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, hook) = app.webhook(&account, &receiver.url(), &["token.expiring"]).await;
    *receiver.secret.lock().unwrap() = hook["secret"].as_str().unwrap().to_string();
    app.create_token(
        &account,
        json!({"name": "later", "kind": "api_key", "scopes": ["*"], "expires_in_seconds": 30 * 86_400}),
    )
    .await;
    app.create_token(&account, json!({"name": "never", "kind": "api_key", "scopes": ["*"]})).await;
    eventually("token.expiring arrives", async || !receiver.received().is_empty()).await;
    // Several more checks run; nothing is raised twice.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let got = receiver.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].payload["type"], "token.expiring");
    assert_eq!(got[0].payload["data"]["id"], soon["id"]);
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    let others: Vec<_> = other.received().iter().map(|d| d.payload["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(others, ["token.created", "token.created", "token.created"], "the other webhook got no token.expiring");
    receiver.task.abort();
    other.task.abort();
}
