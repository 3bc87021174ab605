//! The hardened edge (SPEC §11), through the real server: path canonicalization against
//! an upstream that normalises paths as lenient frameworks do, spoofed headers, the
//! `X-Forwarded-For` walk, loops, the egress policy, and connection deadlines.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{StoreKind, TestApp};
use crate::on_both_stores;

on_both_stores!(bypass_attempts_never_reach_the_protected_route, a_self_pointing_instance_is_a_loop);

/// Bounds every wait on the server so a broken build fails instead of hanging; none of
/// them measures anything.
const HANG_GUARD: Duration = Duration::from_secs(20);

/// An upstream that routes like lenient frameworks: decodes everything (twice if it
/// can), reads `\` as `/`, cuts `;` parameters, drops empty segments and resolves dot
/// segments. It records the route each request reached.
struct NormalisingUpstream {
    addr: SocketAddr,
    routes: Arc<Mutex<Vec<String>>>,
}

impl NormalisingUpstream {
    async fn start() -> NormalisingUpstream {
        let routes = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&routes);
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let record = Arc::clone(&record);
            async move {
                record.lock().unwrap().push(route_of(req.uri().path()));
                axum::Json(json!({"ok": true}))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        NormalisingUpstream { addr, routes }
    }

    fn routes(&self) -> Vec<String> {
        self.routes.lock().unwrap().clone()
    }
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && let (Some(h), Some(l)) = (s.get(i + 1).and_then(|&b| hex(b)), s.get(i + 2).and_then(|&b| hex(b)))
        {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

fn route_of(path: &str) -> String {
    let twice = percent_decode(&percent_decode(path.as_bytes()));
    let text = String::from_utf8_lossy(&twice).replace('\\', "/");
    let mut route: Vec<&str> = Vec::new();
    for segment in text.split('/') {
        match segment.split(';').next().unwrap_or_default() {
            "" | "." => {}
            ".." => {
                route.pop();
            }
            name => route.push(name),
        }
    }
    format!("/{}", route.join("/"))
}

/// One HTTP/1.1 exchange over a fresh socket, the request written byte for byte (no
/// client library normalises the path). Returns the status and the body.
async fn raw_exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(HANG_GUARD, socket.read_to_end(&mut answer)).await.expect("hang guard").unwrap();
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn post(target: &str, bearer: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {bearer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

/// The tails tried against `POST /send-*` (needs `messages:send`) with a key that holds
/// only `instance:read` (which `/*` asks for).
const BYPASS_ATTEMPTS: &[&str] = &[
    "/%73end-text",
    "/send%2dtext",
    "/%73%65%6e%64-text",
    "/a/../send-text",
    "/./send-text",
    "/a/./../send-text",
    "/a/%2e%2e/send-text",
    "/a/%2E%2E/send-text",
    "/a/.%2e/send-text",
    "/a/%2e./send-text",
    "/a/..;/send-text",
    "/a/..;x=1/send-text",
    "/a/..%3b/send-text",
    "/a%2f..%2fsend-text",
    "/a%2F..%2Fsend-text",
    "/a/%252e%252e/send-text",
    "/a/%25%32%65%25%32%65/send-text",
    "/a/%%32%65%%32%65/send-text",
    "/a\\..\\send-text",
    "/a%5c..%5csend-text",
    "/a%5C..%5Csend-text",
    "/a/%00/../send-text",
    "/send-text%00",
    "/a/..%00/send-text",
    "/send-text%0d%0aX-Injected:%20yes",
    "/a/%c0%ae%c0%ae/send-text",
    "/a/%e0%80%ae%e0%80%ae/send-text",
    "/%u002e%u002e/send-text",
    "//send-text",
    "/a//../send-text",
    "/;x/send-text",
    "/;/send-text",
    "/send-text;x=1",
    "/send-text%3bx=1",
    "/send-text/",
    "/a/%2e%2e%2fsend-text",
    "/%2fsend-text",
    "/send-text%2f",
    "/a/..%2f..%2fsend-text",
];

/// Bypass attempts on every canonicalization rule: each is refused, or forwarded to a
/// route that is not the protected one. (On the build before SPEC §11, `%73end-text`,
/// `a/../send-text` and others were forwarded and routed to `/send-text`.)
async fn bypass_attempts_never_reach_the_protected_route(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let upstream = NormalisingUpstream::start().await;
    let acc = app.create_account("Bypass").await;
    let rules = json!([
        {"methods": ["POST"], "path": "/send-*", "scopes": ["messages:send"]},
        {"methods": ["*"], "path": "/*", "scopes": ["instance:read"]}
    ]);
    let body = json!({"name": "n", "upstream_url": format!("http://{}", upstream.addr), "rules": rules});
    let (s, inst) = app.admin(Method::POST, &format!("/v1/accounts/{acc}/instances"), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{inst}");
    let base = format!("/instances/{}/token/{}", inst["id"].as_str().unwrap(), inst["token"].as_str().unwrap());
    let reader = app.create_token(&acc, json!({"name": "r", "kind": "api_key", "scopes": ["instance:read"]})).await;
    let reader = reader["token"].as_str().unwrap();
    let sender = app.create_token(&acc, json!({"name": "s", "kind": "api_key", "scopes": ["messages:send"]})).await;
    let sender = sender["token"].as_str().unwrap();

    // The controls: the protected route is reachable with its scope, and an
    // unprotected one with the reader's.
    assert_eq!(raw_exchange(app.addr, &post(&format!("{base}/send-text"), sender)).await.0, 200);
    assert_eq!(raw_exchange(app.addr, &post(&format!("{base}/status"), reader)).await.0, 200);
    assert_eq!(upstream.routes(), ["/send-text", "/status"]);

    let mut refused = Vec::new();
    let mut forwarded = Vec::new();
    for attempt in BYPASS_ATTEMPTS {
        let before = upstream.routes().len();
        let (status, body) = raw_exchange(app.addr, &post(&format!("{base}{attempt}"), reader)).await;
        let reached: Vec<String> = upstream.routes().into_iter().skip(before).collect();
        assert!(
            reached.iter().all(|r| !r.starts_with("/send-")),
            "{attempt} reached {reached:?} without messages:send ({status} {body})"
        );
        if reached.is_empty() {
            assert!((400..500).contains(&status), "{attempt}: refused with a 4xx, got {status} {body}");
            if status == 400 {
                let error: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                assert!(error["error"].is_string() || body.is_empty(), "{attempt}: {body}");
            }
            refused.push(*attempt);
        } else {
            forwarded.push((*attempt, reached));
        }
    }
    assert!(BYPASS_ATTEMPTS.len() >= 25);
    // Only the overlong UTF-8 spellings of '.' pass: they are kept escaped (they are
    // not unreserved characters), and no conforming decoder reads them as '.'.
    let passed: Vec<&str> = forwarded.iter().map(|(a, _)| *a).collect();
    assert_eq!(passed, ["/a/%c0%ae%c0%ae/send-text", "/a/%e0%80%ae%e0%80%ae/send-text"]);
    assert_eq!(refused.len() + forwarded.len(), BYPASS_ATTEMPTS.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_path_cannot_be_escaped_and_escapes_are_canonical() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("Base").await;
    let body = json!({"name": "t42", "upstream_url": format!("{}/tenants/42", app.upstream.url())});
    let (s, inst) = app.admin(Method::POST, &format!("/v1/accounts/{acc}/instances"), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{inst}");
    let base = format!("/instances/{}/token/{}", inst["id"].as_str().unwrap(), inst["token"].as_str().unwrap());
    let get = |tail: &str| format!("GET {base}{tail} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");

    for escape in ["/../43/export", "/%2e%2e/43/export", "/x/../../43/export", "/..;/43/export", "/%2F..%2F43"] {
        let (status, body) = raw_exchange(app.addr, &get(escape)).await;
        assert_eq!(status, 400, "{escape}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert!(error["error"].as_str().unwrap().starts_with("request path contains"), "{body}");
    }
    assert_eq!(app.upstream.count(), 0, "nothing reached the upstream");

    let (status, _) = raw_exchange(app.addr, &get("/export/%7Ebob/a%20b%2a%c3%a9;v=1?q=%2e%2e&r=%2F")).await;
    assert_eq!(status, 200);
    assert_eq!(app.upstream.last().path_and_query, "/tenants/42/export/~bob/a%20b%2A%C3%A9;v=1?q=%2e%2e&r=%2F");
}

/// Headers a client could forge: none reaches the upstream, in any spelling; tokengate's
/// own arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_headers_never_reach_the_upstream() {
    let forged: &[(&str, &str)] = &[
        ("Client_Token", "forged"),
        ("X_Tokengate_Account", "victim"),
        ("x-tokengate-account", "victim"),
        ("X-TOKENGATE-TOKEN-ID", "victim-token"),
        ("X-Tokengate_Scopes", "*"),
        ("X-Tokengate-Whatever", "x"),
        ("X_Forwarded_For", "198.51.100.66"),
        ("Forwarded", "for=198.51.100.66"),
        ("X-Real-IP", "198.51.100.66"),
        ("X_Real_IP", "198.51.100.66"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"),
        ("Via", "1.0 upstream-proxy"),
    ];
    let send = |app: &TestApp, inst: &(String, String)| {
        let (id, token) = inst;
        let mut req = app.http.get(app.url(&format!("/instances/{id}/token/{token}/x")));
        for (k, v) in forged {
            req = req.header(*k, *v);
        }
        req.send()
    };

    // From an untrusted peer.
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("Spoof").await;
    let inst = app.create_instance(&acc).await;
    assert_eq!(send(&app, &inst).await.unwrap().status(), StatusCode::OK);
    let seen = app.upstream.last().headers;
    let names: Vec<String> = seen.keys().map(|k| k.as_str().to_string()).collect();
    for gone in
        ["client_token", "x_tokengate_account", "x-tokengate-token-id", "x-tokengate_scopes", "x-tokengate-whatever"]
    {
        assert!(!names.contains(&gone.to_string()), "{gone} reached the upstream: {names:?}");
    }
    for gone in ["x_forwarded_for", "forwarded", "x-real-ip", "x_real_ip", "x-forwarded-host", "x-forwarded-port"] {
        assert!(!names.contains(&gone.to_string()), "{gone} reached the upstream: {names:?}");
    }
    assert_eq!(seen.get_all("x-tokengate-account").iter().collect::<Vec<_>>(), [acc.as_str()]);
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    let via: Vec<&str> = seen.get_all("via").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(via.len(), 2, "{via:?}");
    assert_eq!(via[0], "1.0 upstream-proxy");
    assert!(via[1].starts_with("1.1 tokengate-") && via[1].len() > "1.1 tokengate-".len(), "{via:?}");

    // From a trusted proxy, its forwarding headers pass (spelled right).
    let app = TestApp::spawn_with(None, |c| c.trusted_proxies = vec!["127.0.0.0/8".into()]).await;
    let acc = app.create_account("Proxied").await;
    let inst = app.create_instance(&acc).await;
    assert_eq!(send(&app, &inst).await.unwrap().status(), StatusCode::OK);
    let seen = app.upstream.last().headers;
    assert_eq!(seen["forwarded"], "for=198.51.100.66");
    assert_eq!(seen["x-real-ip"], "198.51.100.66");
    assert_eq!(seen["x-forwarded-host"], "evil.example");
    assert_eq!(seen["x-forwarded-proto"], "https", "a trusted proxy's scheme stands");
    for gone in ["client_token", "x_tokengate_account", "x_forwarded_for", "x_real_ip"] {
        assert!(!seen.contains_key(gone), "{gone}");
    }
    assert_eq!(seen.get_all("x-tokengate-account").iter().collect::<Vec<_>>(), [acc.as_str()]);
}

/// SPEC §11's walk behind a trusted proxy, against an account allowlist and a token
/// allowlist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarded_for_walk_decides_ip_allowlists() {
    let app = TestApp::spawn_with(None, |c| c.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    let acc = app.create_account("Walk").await;
    let inst = app.create_instance(&acc).await;
    let (s, _) = app
        .admin(Method::PUT, &format!("/v1/accounts/{acc}/ip-allowlist"), Some(json!({"cidrs": ["203.0.113.9"]})))
        .await;
    assert_eq!(s, StatusCode::OK);
    let cases = [
        ("203.0.113.9", 200, r#"{"ok":true}"#),
        ("203.0.113.9:5555", 200, r#"{"ok":true}"#),
        ("127.0.0.1, 203.0.113.9", 200, r#"{"ok":true}"#),
        ("203.0.113.9, 198.51.100.7:51234", 403, r#"{"error":"198.51.100.7 not allowed"}"#),
        ("203.0.113.9, garbage", 403, r#"{"error":"unknown not allowed"}"#),
        ("203.0.113.9, ", 403, r#"{"error":"unknown not allowed"}"#),
        ("[2001:db8::1]:443", 403, r#"{"error":"2001:db8::1 not allowed"}"#),
    ];
    for (xff, status, body) in cases {
        let (s, b) = app.call(&inst, "/x", &[("X-Forwarded-For", xff)]).await;
        assert_eq!((s.as_u16(), b.as_str()), (status, body), "X-Forwarded-For: {xff}");
    }
    assert_eq!(app.upstream.last().headers["x-forwarded-for"], "127.0.0.1, 203.0.113.9, 127.0.0.1");
    let (s, b) = app.call(&inst, "/x", &[]).await;
    assert_eq!((s.as_u16(), b.as_str()), (403, r#"{"error":"127.0.0.1 not allowed"}"#));

    // A token allowlist refuses an unknown client too.
    let acc = app.create_account("Walk tokens").await;
    let inst = app.ruled_instance(&acc).await;
    let key = app
        .create_token(
            &acc,
            json!({"name": "k", "kind": "api_key", "scopes": ["instance:read"], "ip_allowlist": ["203.0.113.0/24"]}),
        )
        .await;
    let key = key["token"].as_str().unwrap();
    let get = |xff: &'static str| {
        let (id, t) = &inst;
        app.http
            .get(app.url(&format!("/instances/{id}/token/{t}/status")))
            .bearer_auth(key)
            .header("X-Forwarded-For", xff)
            .send()
    };
    assert_eq!(get("203.0.113.5").await.unwrap().status(), StatusCode::OK);
    let res = get("203.0.113.5, junk").await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.text().await.unwrap(), r#"{"error":"unknown not allowed"}"#);

    // Without a trusted proxy the header is not believed at all.
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("No proxy").await;
    let inst = app.create_instance(&acc).await;
    app.admin(Method::PUT, &format!("/v1/accounts/{acc}/ip-allowlist"), Some(json!({"cidrs": ["203.0.113.9"]}))).await;
    let (s, b) = app.call(&inst, "/x", &[("X-Forwarded-For", "203.0.113.9")]).await;
    assert_eq!((s.as_u16(), b.as_str()), (403, r#"{"error":"127.0.0.1 not allowed"}"#));
}

/// An instance pointed at the gateway itself is answered 508 at the first hop back.
async fn a_self_pointing_instance_is_a_loop(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Loop").await;
    let inst = app.create_instance(&acc).await;
    let (id, token) = &inst;
    let own = format!("http://{}/instances/{id}/token/{token}", app.addr);
    let (s, b) = app.admin(Method::PATCH, &format!("/v1/instances/{id}"), Some(json!({"upstream_url": own}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app.call(&inst, "/send-text", &[]).await;
    assert_eq!((s.as_u16(), b.as_str()), (508, r#"{"error":"loop detected"}"#));
    // Pointed at the server's root, the second hop lands on another route: still a loop.
    let root = format!("http://{}", app.addr);
    let (s, _) = app.admin(Method::PATCH, &format!("/v1/instances/{id}"), Some(json!({"upstream_url": root}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = app.call(&inst, "/v1/accounts", &[]).await;
    assert_eq!((s.as_u16(), b.as_str()), (508, r#"{"error":"loop detected"}"#));
    assert_eq!(app.upstream.count(), 0);

    // Two nodes of one PostgreSQL store are one deployment: one Via id.
    if kind == StoreKind::Postgres {
        let (s, _) = app
            .admin(Method::PATCH, &format!("/v1/instances/{id}"), Some(json!({"upstream_url": app.upstream.url()})))
            .await;
        assert_eq!(s, StatusCode::OK);
        let b_node = app.second_node().await;
        assert_eq!(app.call(&inst, "/a", &[]).await.0, StatusCode::OK);
        let via_a = app.upstream.last().headers["via"].clone();
        assert_eq!(b_node.call(&inst, "/b", &[]).await.0, StatusCode::OK);
        let via_b = app.upstream.last().headers["via"].clone();
        assert_eq!(via_a, via_b);
        // And a request carrying it is refused by the other node.
        let (s, _) = b_node.call(&inst, "/c", &[("Via", via_a.to_str().unwrap())]).await;
        assert_eq!(s.as_u16(), 508);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_literal_upstreams_are_refused_at_create_and_patch() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("Egress").await;
    let path = format!("/v1/accounts/{acc}/instances");
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0:8080",
        "http://[fe80::1]/",
        "http://100.100.100.200/",
        "http://224.0.0.1/",
        "http://[::]/",
        // Other spellings of the metadata address that resolvers read as it.
        "http://2852039166/",
        "http://0xA9FEA9FE/",
        "http://0251.0376.0251.0376/",
        "http://169.254.169.254./",
        "http://169.254.43518/",
    ] {
        let (s, b) = app.admin(Method::POST, &path, Some(json!({"name": "m", "upstream_url": url}))).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {b}");
        assert!(b["error"].as_str().unwrap().contains("egress"), "{b}");
    }
    let (id, _) = app.create_instance(&acc).await;
    let patch = json!({"upstream_url": "http://169.254.169.254/latest/meta-data"});
    let (s, _) = app.admin(Method::PATCH, &format!("/v1/instances/{id}"), Some(patch)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, list) = app.admin(Method::GET, &path, None).await;
    assert_eq!(list["items"][0]["upstream_url"], app.upstream.url(), "unchanged");
}

/// A host name is judged by the addresses it resolves to, when connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolving_into_denied_ranges_are_refused_at_connect() {
    let app = TestApp::spawn_with(None, |c| c.egress_deny = vec!["127.0.0.0/8".into(), "::1/128".into()]).await;
    let acc = app.create_account("Rebind").await;
    let path = format!("/v1/accounts/{acc}/instances");
    let literal = json!({"name": "l", "upstream_url": app.upstream.url()});
    assert_eq!(app.admin(Method::POST, &path, Some(literal)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    let named = json!({"name": "n", "upstream_url": format!("http://localhost:{}", app.upstream.addr.port())});
    let (s, inst) = app.admin(Method::POST, &path, Some(named)).await;
    assert_eq!(s, StatusCode::CREATED, "a name is accepted; its addresses are checked when connecting");
    let inst = (inst["id"].as_str().unwrap().to_string(), inst["token"].as_str().unwrap().to_string());
    let (s, b) = app.call(&inst, "/x", &[]).await;
    assert_eq!((s.as_u16(), b.as_str()), (502, r#"{"error":"upstream address not allowed"}"#));
    assert_eq!(app.upstream.count(), 0);

    // egress_allow wins over the deny list.
    let app = TestApp::spawn_with(None, |c| {
        c.egress_deny = vec!["127.0.0.0/8".into()];
        c.egress_allow = vec!["127.0.0.1/32".into()];
    })
    .await;
    let acc = app.create_account("Allowed").await;
    let inst = app.create_instance(&acc).await;
    assert_eq!(app.call(&inst, "/x", &[]).await.0, StatusCode::OK);
}

/// A body that trickles (or stops) is answered 408 and its connection closed, on the
/// gateway and on the admin API; nothing half-received reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_408_and_closed() {
    let app = TestApp::spawn_with(None, |c| {
        c.body_read_timeout_seconds = 1;
        c.idle_timeout_seconds = 30;
        // Shorter than the body timeout: the store deadline only starts once the body
        // is read, so a slow client still gets the 408.
        c.store_timeout_millis = 200;
    })
    .await;
    let acc = app.create_account("Slow body").await;
    let (id, token) = app.create_instance(&acc).await;
    for target in [format!("/instances/{id}/token/{token}/send-text"), "/v1/accounts".to_string()] {
        let mut socket = TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"na",
            app.admin_token
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        // Read until the server closes: the connection must not stay open.
        tokio::time::timeout(HANG_GUARD, socket.read_to_end(&mut answer)).await.expect("closed").unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{target}: {text}");
        assert!(text.ends_with(r#"{"error":"request body timeout"}"#), "{text}");
    }
    assert_eq!(app.upstream.count(), 0);
    let (_, accounts) = app.admin(Method::GET, "/v1/accounts", None).await;
    assert_eq!(accounts["items"].as_array().unwrap().len(), 1, "the half-sent account was not created");
}

/// Slow headers, idle keep-alives and silent connections are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_connections_are_closed() {
    let app = TestApp::spawn_with(None, |c| {
        c.header_read_timeout_seconds = 1;
        c.idle_timeout_seconds = 1;
    })
    .await;
    // Headers that never finish.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n").await.unwrap();
    let mut sink = Vec::new();
    tokio::time::timeout(HANG_GUARD, slow.read_to_end(&mut sink)).await.expect("slow headers closed").unwrap();
    assert!(!String::from_utf8_lossy(&sink).contains("200 OK"));

    // A keep-alive connection after its answer.
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(HANG_GUARD, idle.read_to_end(&mut answer)).await.expect("idle keep-alive closed").unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "answered first, then closed");

    // A connection that never says anything.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let mut nothing = Vec::new();
    tokio::time::timeout(HANG_GUARD, silent.read_to_end(&mut nothing)).await.expect("silent closed").unwrap();
    assert!(nothing.is_empty());
}

/// An HTTP/2 connection (prior knowledge, no TLS) whose first request head never
/// completes is closed after the header timeout, not kept for the idle timeout: hyper's
/// header deadline is HTTP/1's only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_without_a_whole_request_is_closed() {
    let app = TestApp::spawn_with(None, |c| {
        c.header_read_timeout_seconds = 1;
        c.idle_timeout_seconds = 3600;
    })
    .await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    // The preface, an empty SETTINGS frame, then the first 9 bytes of a HEADERS frame
    // (length 64, END_HEADERS, stream 1) whose block never comes.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    hello.extend_from_slice(&[0, 0, 64, 0x1, 0x4, 0, 0, 0, 1]);
    slow.write_all(&hello).await.unwrap();
    // The server's SETTINGS (and its ACK of ours), then, past the header timeout, the end.
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(HANG_GUARD, async {
        let mut buf = [0u8; 4096];
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the half-sent HTTP/2 request kept its connection open");
    assert_eq!(seen.get(3), Some(&0x4), "the server spoke HTTP/2 first (a SETTINGS frame)");
}

/// Past max_connections new sockets are closed at once; open ones keep working, and new
/// ones are served again once some close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_caps_sockets_and_recovers() {
    let app = TestApp::spawn_with(None, |c| c.max_connections = 4).await;
    let get = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(get).await.unwrap();
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(HANG_GUARD, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        open.push(s);
    }
    for _ in 0..3 {
        let mut extra = TcpStream::connect(app.addr).await.unwrap();
        let _ = extra.write_all(get).await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(HANG_GUARD, extra.read_to_end(&mut answer)).await.expect("closed at once");
        assert!(read.is_err() || answer.is_empty(), "a connection past the cap was served");
    }
    // The open ones still work.
    let first = &mut open[0];
    first.write_all(get).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(HANG_GUARD, first.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Closing two frees their places.
    open.truncate(2);
    let mut served = false;
    for _ in 0..200 {
        if app.http.get(app.url("/healthz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "new connections are served again");
}

/// An upstream that counts how many requests it holds at once.
struct CountingUpstream {
    addr: SocketAddr,
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl CountingUpstream {
    async fn start() -> CountingUpstream {
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, p) = (Arc::clone(&now), Arc::clone(&peak));
        let app = axum::Router::new().fallback(move || {
            let (n, p) = (Arc::clone(&n), Arc::clone(&p));
            async move {
                let current = n.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(current, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        CountingUpstream { addr, now, peak }
    }
}

/// One HTTP/2 connection opening 150 streams at once gets at most 100 in flight; all
/// are answered and the server goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_gets_at_most_100_streams() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let upstream = CountingUpstream::start().await;
    let acc = app.create_account("H2").await;
    let body = json!({"name": "h2", "upstream_url": format!("http://{}", upstream.addr)});
    let (_, inst) = app.admin(Method::POST, &format!("/v1/accounts/{acc}/instances"), Some(body)).await;
    let path = format!("/instances/{}/token/{}/x", inst["id"].as_str().unwrap(), inst["token"].as_str().unwrap());

    let socket = TcpStream::connect(app.addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(socket),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut calls = Vec::new();
    for _ in 0..150 {
        let mut sender = sender.clone();
        let uri = format!("http://{}{path}", app.addr);
        calls.push(tokio::spawn(async move {
            let req = http::Request::get(uri).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
            sender.send_request(req).await.map(|r| r.status())
        }));
    }
    for call in calls {
        let status = tokio::time::timeout(HANG_GUARD, call).await.expect("hang guard").unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    let peak = upstream.peak.load(Ordering::SeqCst);
    assert!(peak <= 100 && peak > 1, "peak of concurrent streams: {peak}");
    assert_eq!(upstream.now.load(Ordering::SeqCst), 0);
    assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
}

/// With several workers (each its own listener, runtime and upstream pool), a change
/// made through the admin API is enforced on connections of every worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_worker() {
    let app = TestApp::spawn_with(None, |c| c.workers = Some(3)).await;
    let acc = app.create_account("Workers").await;
    let (id, token) = app.create_instance(&acc).await;
    let url = app.url(&format!("/instances/{id}/token/{token}/x"));
    // A fresh connection per request: the kernel spreads them over the workers.
    let fresh = || reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap();
    for _ in 0..12 {
        assert_eq!(fresh().get(&url).send().await.unwrap().status(), StatusCode::OK);
    }
    app.generate_security_token(&acc).await;
    app.activate(&acc).await;
    for _ in 0..30 {
        let res = fresh().get(&url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(res.text().await.unwrap(), crate::helpers::NULL_NOT_ALLOWED);
    }
}
