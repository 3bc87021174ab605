//! `/decide` (SPEC §13) behind a real nginx (`auth_request`) and a real Caddy
//! (`forward_auth`), both from Debian's packages, and the requests Traefik and Envoy
//! send, as their documentation describes them. The proxy configurations here are the
//! ones `docs/forward-auth.md` gives.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{NULL_NOT_ALLOWED, TestApp};

/// A port free right now on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A proxy process, killed when dropped.
struct Proxy {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    async fn wait_listening(self) -> Proxy {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return self;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the proxy never listened on {}", self.port);
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn find(binary: &str, fallback: &str) -> String {
    if Path::new(fallback).exists() { fallback.to_string() } else { binary.to_string() }
}

/// nginx with `auth_request` to `/decide?profile=nginx`, copying tokengate's headers
/// upstream and keeping the Client-Token and the checked Authorization from it.
async fn start_nginx(tokengate: u16, upstream: u16) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = format!(
        r#"
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream tokengate {{ server 127.0.0.1:{tokengate}; }}
    upstream api {{ server 127.0.0.1:{upstream}; }}
    server {{
        listen 127.0.0.1:{port};
        location /instances/ {{
            auth_request /_tokengate;
            auth_request_set $tg_account $upstream_http_x_tokengate_account;
            auth_request_set $tg_token_id $upstream_http_x_tokengate_token_id;
            auth_request_set $tg_scopes $upstream_http_x_tokengate_scopes;
            proxy_set_header X-Tokengate-Account $tg_account;
            proxy_set_header X-Tokengate-Token-Id $tg_token_id;
            proxy_set_header X-Tokengate-Scopes $tg_scopes;
            proxy_set_header Client-Token "";
            proxy_set_header Authorization "";
            proxy_pass http://api;
        }}
        location = /_tokengate {{
            internal;
            proxy_pass http://tokengate/decide?profile=nginx;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-Uri "";
            proxy_set_header X-Forwarded-Method "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"#,
        dir = dir.path().display()
    );
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, conf).unwrap();
    let child = Command::new(find("nginx", "/usr/sbin/nginx"))
        .args(["-e", &dir.path().join("stderr.log").display().to_string(), "-c", &file.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx is installed (scripts/test.sh installs it)");
    Proxy { child, port, _dir: dir }.wait_listening().await
}

/// Caddy with `forward_auth` to `/decide`, copying tokengate's headers upstream.
async fn start_caddy(tokengate: u16, upstream: u16) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = format!(
        r#"{{
    admin off
    auto_https off
}}
http://127.0.0.1:{port} {{
    forward_auth 127.0.0.1:{tokengate} {{
        uri /decide
        copy_headers X-Tokengate-Account X-Tokengate-Token-Id X-Tokengate-Scopes X-Tokengate-Subject
    }}
    reverse_proxy 127.0.0.1:{upstream} {{
        header_up -Client-Token
        header_up -Authorization
    }}
}}
"#
    );
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, conf).unwrap();
    let child = Command::new(find("caddy", "/usr/bin/caddy"))
        .args(["run", "--adapter", "caddyfile", "--config", &file.display().to_string()])
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("caddy is installed (scripts/test.sh installs it)");
    Proxy { child, port, _dir: dir }.wait_listening().await
}

/// An account with an active Client-Token, a rule-protected instance and two API keys
/// (one rate-limited to 2 a minute).
struct Scene {
    app: TestApp,
    account: String,
    instance: (String, String),
    client_token: String,
    key: String,
    key_id: String,
    limited: String,
    reader: String,
}

async fn scene() -> Scene {
    let app = TestApp::spawn_with(None, |c| c.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    let account = app.create_account("fwd").await;
    let instance = app.ruled_instance(&account).await;
    let client_token = app.generate_security_token(&account).await;
    app.activate(&account).await;
    let key = app.create_token(&account, json!({"name": "k", "kind": "api_key", "scopes": ["messages:send"]})).await;
    let reader = app.create_token(&account, json!({"name": "r", "kind": "api_key", "scopes": ["instance:read"]})).await;
    let limited = app
        .create_token(
            &account,
            json!({"name": "l", "kind": "api_key", "scopes": ["*"], "rate_limit": {"limit": 2, "window_seconds": 60}}),
        )
        .await;
    Scene {
        account,
        instance,
        client_token,
        key: key["token"].as_str().unwrap().into(),
        key_id: key["id"].as_str().unwrap().into(),
        limited: limited["token"].as_str().unwrap().into(),
        reader: reader["token"].as_str().unwrap().into(),
        app,
    }
}

impl Scene {
    fn path(&self, tail: &str) -> String {
        format!("/instances/{}/token/{}{tail}", self.instance.0, self.instance.1)
    }

    /// A request through a proxy in front of the upstream.
    async fn through(&self, proxy: &Proxy, tail: &str, client_token: bool, bearer: Option<&str>) -> reqwest::Response {
        let mut req = self.app.http.post(proxy.url(&self.path(tail))).body("{}");
        if client_token {
            req = req.header("Client-Token", &self.client_token);
        }
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send().await.unwrap()
    }
}

/// What every proxy must get right, whatever its conventions: refusals by the gateway's
/// rules, allowed requests reaching the upstream with tokengate's headers and without
/// the secrets.
async fn the_gateway_rules_hold_through(s: &Scene, proxy: &Proxy, nginx: bool) {
    let before = s.app.upstream.count();
    let missing = s.through(proxy, "/send-text", false, Some(&s.key)).await;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    if !nginx {
        assert_eq!(missing.text().await.unwrap(), NULL_NOT_ALLOWED, "Caddy passes the gateway's body");
    }
    let no_bearer = s.through(proxy, "/send-text", true, None).await;
    assert_eq!(no_bearer.status(), StatusCode::UNAUTHORIZED);
    let wrong_scope = s.through(proxy, "/send-text", true, Some(&s.reader)).await;
    assert_eq!(wrong_scope.status(), StatusCode::FORBIDDEN);
    // The client cannot choose what is decided: its own X-Forwarded-Uri naming a request
    // that would pass, on a request that must not.
    let wrong_instance = format!("/instances/{}/token/tgi_nope/send-text", s.instance.0);
    let smuggled = s
        .app
        .http
        .post(proxy.url(&wrong_instance))
        .header("X-Forwarded-Uri", s.path("/send-text"))
        .header("X-Forwarded-Method", "POST")
        .header("X-Original-URI", s.path("/send-text"))
        .header("Client-Token", &s.client_token)
        .bearer_auth(&s.key)
        .send()
        .await
        .unwrap();
    assert_ne!(smuggled.status(), StatusCode::OK, "the proxy's own view of the request is decided");
    assert_eq!(s.app.upstream.count(), before, "no refused request reached the upstream");

    let ok = s.through(proxy, "/send-text?to=55", true, Some(&s.key)).await;
    assert_eq!(ok.status(), StatusCode::OK, "{}", ok.text().await.unwrap());
    let seen = s.app.upstream.last();
    assert_eq!(seen.path_and_query, format!("{}?to=55", s.path("/send-text")));
    assert_eq!(seen.headers["x-tokengate-account"], s.account.as_str());
    assert_eq!(seen.headers["x-tokengate-token-id"], s.key_id.as_str());
    assert_eq!(seen.headers["x-tokengate-scopes"], "messages:send");
    assert!(seen.headers.get("client-token").is_none());
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.body.as_ref(), b"{}", "the body goes to the upstream, not to /decide");

    // The rate limit is the gateway's: 2 a minute, across proxies and direct calls.
    for _ in 0..2 {
        assert_eq!(s.through(proxy, "/send-text", true, Some(&s.limited)).await.status(), StatusCode::OK);
    }
    let limited = s.through(proxy, "/send-text", true, Some(&s.limited)).await;
    let unknown_path = format!("/instances/{}/token/tgi_nope/send-text", s.instance.0);
    let unknown = s.app.http.post(proxy.url(&unknown_path)).send().await.unwrap();
    if nginx {
        // nginx's profile: 429 and 404 come as 403 (nginx would make them 500).
        assert_eq!(limited.status(), StatusCode::FORBIDDEN);
        assert_eq!(unknown.status(), StatusCode::FORBIDDEN);
    } else {
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(limited.headers().contains_key("retry-after"));
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(unknown.text().await.unwrap(), r#"{"error":"instance not found"}"#);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request() {
    let s = scene().await;
    let nginx = start_nginx(s.app.addr.port(), s.app.upstream.addr.port()).await;
    the_gateway_rules_hold_through(&s, &nginx, true).await;
    // Usage is counted as for a proxied request: the Client-Token readiness saw one
    // request without it and the rest with it (2 + 1 + 1 + 3 + the unknown instance,
    // which belongs to no account).
    s.app.wait_readiness(&s.account, (6, 1, 0)).await;
    let (_, token) = s.app.admin(Method::GET, &format!("/v1/tokens/{}", s.key_id), None).await;
    assert!(token["last_used_at"].is_string(), "{token}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth() {
    let s = scene().await;
    let caddy = start_caddy(s.app.addr.port(), s.app.upstream.addr.port()).await;
    the_gateway_rules_hold_through(&s, &caddy, false).await;
}

/// Traefik's ForwardAuth: the original request in X-Forwarded-Method/-Uri/-Host/-Proto,
/// the client's headers copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_and_envoy_requests() {
    let s = scene().await;
    let traefik = |uri: String, method: &str| {
        s.app
            .http
            .get(s.app.url("/decide"))
            .header("X-Forwarded-Method", method)
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "api.example.com")
            .header("X-Forwarded-Uri", uri)
            .header("X-Forwarded-For", "198.51.100.20")
            .header("Client-Token", &s.client_token)
    };
    let allowed = traefik(s.path("/send-text?x=1"), "POST").bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["x-tokengate-account"], s.account.as_str());
    assert_eq!(allowed.headers()["x-tokengate-token-id"], s.key_id.as_str());
    assert!(allowed.headers().get("client-token").is_none());
    assert!(allowed.headers().get("authorization").is_none());
    assert!(allowed.text().await.unwrap().is_empty(), "an allow has an empty body");
    // The forwarded method counts: GET /send-text needs instance:read, not messages:send.
    let get = traefik(s.path("/send-text"), "GET").bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::FORBIDDEN);
    assert!(get.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    // The original path is canonicalized and checked like a proxied one.
    let dotted = traefik(s.path("/x/../send-text"), "POST").bearer_auth(&s.key).send().await.unwrap();
    assert_eq!(dotted.status(), StatusCode::BAD_REQUEST);
    let shapeless = traefik("/v1/accounts".into(), "GET").send().await.unwrap();
    assert_eq!(shapeless.status(), StatusCode::NOT_FOUND);
    assert_eq!(shapeless.text().await.unwrap(), r#"{"error":"instance not found"}"#);

    // Envoy's ext_authz HTTP service with `path_prefix: /decide`: the original method,
    // path and headers on a request to /decide + the path; a body is ignored.
    let envoy = s
        .app
        .http
        .post(s.app.url(&format!("/decide{}", s.path("/send-text"))))
        .header("Client-Token", &s.client_token)
        .bearer_auth(&s.key)
        .body("ignored")
        .send()
        .await
        .unwrap();
    assert_eq!(envoy.status(), StatusCode::OK);
    let envoy_missing = s.app.http.post(s.app.url(&format!("/decide{}", s.path("/send-text")))).send().await.unwrap();
    assert_eq!(envoy_missing.status(), StatusCode::FORBIDDEN);
    assert_eq!(envoy_missing.text().await.unwrap(), NULL_NOT_ALLOWED);
    // nginx's X-Original-* convention, with the profile: statuses nginx would turn into
    // a 500 come as 403 with the real one beside it, the body unchanged.
    let nginx = s
        .app
        .http
        .get(s.app.url("/decide?profile=nginx"))
        .header("X-Original-URI", format!("/instances/{}/token/tgi_wrong/send-text", s.instance.0))
        .send()
        .await
        .unwrap();
    assert_eq!(nginx.status(), StatusCode::FORBIDDEN);
    assert_eq!(nginx.headers()["x-tokengate-status"], "404");
    assert_eq!(nginx.text().await.unwrap(), r#"{"error":"instance not found"}"#);
    assert_eq!(s.app.upstream.count(), 0, "/decide forwards nothing");
}

/// Forwarding headers are believed only from trusted proxies: from anyone else,
/// `/decide` says so and decides nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decide_answers_only_trusted_proxies() {
    let app = TestApp::spawn_with(None, |c| c.trusted_proxies = vec!["10.0.0.0/8".into()]).await;
    let account = app.create_account("untrusted").await;
    let instance = app.create_instance(&account).await;
    let path = format!("/instances/{}/token/{}/x", instance.0, instance.1);
    for req in [
        app.http.get(app.url("/decide")).header("X-Forwarded-Uri", &path),
        app.http.get(app.url(&format!("/decide{path}"))),
    ] {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(res.text().await.unwrap(), r#"{"error":"not a trusted proxy"}"#);
    }
    // The same request through the gateway itself is allowed (no Client-Token yet).
    assert_eq!(app.call(&instance, "/x", &[]).await.0, StatusCode::OK);
    // A loop from an untrusted peer is still "not a trusted proxy".
    let via = app.upstream.last().headers["via"].to_str().unwrap().to_string();
    let res = app.http.get(app.url("/decide?profile=nginx")).header("X-Forwarded-Uri", &path).header("Via", &via);
    let res = res.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.text().await.unwrap(), r#"{"error":"not a trusted proxy"}"#);
}

/// The edge's own refusals (a loop, an unreadable original URI) come in nginx's profile
/// too: nginx would turn a 508 or a 400 into a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_decide_follows_the_nginx_profile() {
    let s = scene().await;
    // A request forwarded by the gateway itself shows this deployment's `Via`.
    let plain = s.app.create_instance(&s.account).await;
    let (status, _) = s.app.call(&plain, "/x", &[("Client-Token", &s.client_token)]).await;
    assert_eq!(status, StatusCode::OK);
    let via = s.app.upstream.last().headers["via"].to_str().unwrap().to_string();
    let decide = |profile: &str, method: &str| {
        s.app
            .http
            .get(s.app.url(&format!("/decide{profile}")))
            .header("X-Original-URI", s.path("/send-text"))
            .header("X-Original-Method", method)
            .header("Client-Token", &s.client_token)
            .bearer_auth(&s.key)
    };
    assert_eq!(decide("", "POST").send().await.unwrap().status(), StatusCode::OK);
    let looped = decide("?profile=nginx", "POST").header("Via", &via).send().await.unwrap();
    assert_eq!(looped.status(), StatusCode::FORBIDDEN);
    assert_eq!(looped.headers()["x-tokengate-status"], "508");
    assert_eq!(looped.text().await.unwrap(), r#"{"error":"loop detected"}"#);
    let looped = decide("", "POST").header("Via", &via).send().await.unwrap();
    assert_eq!(looped.status(), StatusCode::LOOP_DETECTED);
    let bad = decide("?profile=nginx", "P(ST").send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::FORBIDDEN);
    assert_eq!(bad.headers()["x-tokengate-status"], "400");
    assert_eq!(decide("", "P(ST").send().await.unwrap().status(), StatusCode::BAD_REQUEST);
}
