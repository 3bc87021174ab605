//! Trusted identity providers (SSO): a real IdP on a loopback port serving its JWKS,
//! the RFC 8725 attack suite against the gateway, and the IdP being down.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokengate::master_key::MasterKey;
use tokengate::oauth::keys::{self, Signer, SigningAlg};
use tokengate_core::Timestamp;

use crate::helpers::{StoreKind, TestApp};

/// How the IdP's JWKS endpoint behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serve,
    /// Accepts the request and never answers (until released).
    Hang,
    Fail,
}

struct IdpState {
    jwks: Mutex<Value>,
    mode: Mutex<Mode>,
    fetches: AtomicUsize,
    /// JWKS requests being answered right now.
    pending: AtomicUsize,
    release: tokio::sync::Notify,
    attacker_fetches: AtomicUsize,
    attacker_jwks: Mutex<Value>,
}

/// A real identity provider: `/jwks` (its keys) and `/attacker-jwks` (keys nobody should trust).
struct Idp {
    url: String,
    state: Arc<IdpState>,
}

struct Pending<'a>(&'a AtomicUsize);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Idp {
    async fn start(keys: &[&Signer]) -> Idp {
        let state = Arc::new(IdpState {
            jwks: Mutex::new(Value::Null),
            mode: Mutex::new(Mode::Serve),
            fetches: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            release: tokio::sync::Notify::new(),
            attacker_fetches: AtomicUsize::new(0),
            attacker_jwks: Mutex::new(json!({"keys": []})),
        });
        let jwks_state = Arc::clone(&state);
        let attacker_state = Arc::clone(&state);
        let app = axum::Router::new()
            .route(
                "/jwks",
                axum::routing::get(move || {
                    let s = Arc::clone(&jwks_state);
                    async move {
                        s.fetches.fetch_add(1, Ordering::SeqCst);
                        s.pending.fetch_add(1, Ordering::SeqCst);
                        let _done = Pending(&s.pending);
                        let mode = *s.mode.lock().unwrap();
                        if mode == Mode::Hang {
                            s.release.notified().await;
                        }
                        if *s.mode.lock().unwrap() != Mode::Serve {
                            return (http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({})));
                        }
                        let body = s.jwks.lock().unwrap().clone();
                        (http::StatusCode::OK, axum::Json(body))
                    }
                }),
            )
            .route(
                "/attacker-jwks",
                axum::routing::get(move || {
                    let s = Arc::clone(&attacker_state);
                    async move {
                        s.attacker_fetches.fetch_add(1, Ordering::SeqCst);
                        axum::Json(s.attacker_jwks.lock().unwrap().clone())
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let idp = Idp { url, state };
        idp.publish(keys);
        idp
    }

    fn publish(&self, keys: &[&Signer]) {
        *self.state.jwks.lock().unwrap() = jwks(keys);
    }

    fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
        if mode != Mode::Hang {
            self.state.release.notify_waiters();
        }
    }

    fn issuer(&self) -> String {
        format!("{}/", self.url)
    }
}

fn master() -> MasterKey {
    MasterKey::from_hex(&"24".repeat(32)).unwrap()
}

fn key(alg: SigningAlg) -> Signer {
    let m = master();
    let record = keys::generate(alg, &m, Timestamp::now()).unwrap();
    keys::open(&record, &m).unwrap().0
}

fn jwks(keys: &[&Signer]) -> Value {
    let m = master();
    let _ = &m;
    let keys: Vec<Value> = keys.iter().map(|k| public_jwk(k)).collect();
    json!({ "keys": keys })
}

/// The public JWK of a signer, as an IdP publishes it.
fn public_jwk(signer: &Signer) -> Value {
    let mut jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(signer.encoding_key(), signer.alg.algorithm()).unwrap(),
    )
    .unwrap();
    jwk["kid"] = json!(signer.kid);
    jwk["use"] = json!("sig");
    jwk
}

fn now() -> i64 {
    Timestamp::now().as_millis() / 1000
}

/// Signs `claims` with `signer`, letting the test shape the header.
fn sign(signer: &Signer, claims: &Value, shape: impl FnOnce(&mut Header)) -> String {
    let mut header = Header::new(signer.alg.algorithm());
    header.typ = Some("JWT".into());
    header.kid = Some(signer.kid.clone());
    shape(&mut header);
    jsonwebtoken::encode(&header, claims, signer.encoding_key()).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn trust(app: &TestApp, account: &str, idp: &Idp, audience: &str, scopes_claim: Option<&str>) {
    let mut body = json!({"issuer": idp.issuer(), "jwks_uri": format!("{}/jwks", idp.url), "audience": audience});
    if let Some(claim) = scopes_claim {
        body["scopes_claim"] = json!(claim);
    }
    let (s, b) = app.admin(Method::POST, &format!("/v1/accounts/{account}/trusted-issuers"), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

async fn status(app: &TestApp, inst: &(String, String), token: &str) -> StatusCode {
    app.bearer(inst, Method::POST, "/send-text", Some(token)).await.status()
}

/// Waits until a token is accepted: JWKS fetches run in the background. The 20 s
/// bound only keeps a broken build from hanging; it measures nothing (a fetch on
/// loopback takes milliseconds).
async fn until_accepted(app: &TestApp, inst: &(String, String), token: &str) {
    for _ in 0..400 {
        if status(app, inst, token).await == StatusCode::OK {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the token was never accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_issuer_tokens_and_the_attack_suite() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let idp_key = key(SigningAlg::RS256);
    let attacker = key(SigningAlg::RS256);
    let idp = Idp::start(&[&idp_key]).await;
    *idp.state.attacker_jwks.lock().unwrap() = jwks(&[&attacker]);

    let acc = app.create_account("SSO").await;
    let inst = app.ruled_instance(&acc).await;
    trust(&app, &acc, &idp, "api-a", None).await;
    let other = app.create_account("Other").await;
    let other_inst = app.ruled_instance(&other).await;
    trust(&app, &other, &idp, "api-b", Some("permissions")).await;

    let claims = |aud: &str| {
        json!({"iss": idp.issuer(), "sub": "user-7", "aud": aud, "exp": now() + 600, "iat": now(),
               "scope": "messages:send profile", "permissions": ["messages:send"]})
    };
    let valid = sign(&idp_key, &claims("api-a"), |_| {});
    until_accepted(&app, &inst, &valid).await;
    let seen = app.upstream.last();
    assert_eq!(seen.headers["x-tokengate-subject"], "user-7");
    assert_eq!(seen.headers["x-tokengate-scopes"], "messages:send profile");
    // An array scopes claim, on the other account.
    let for_b = sign(&idp_key, &claims("api-b"), |_| {});
    until_accepted(&app, &other_inst, &for_b).await;
    // Within the 60 s leeway is still fine.
    let just_expired = sign(
        &idp_key,
        &json!({"iss": idp.issuer(), "sub": "u", "aud": "api-a", "exp": now() - 30, "scope": "messages:send"}),
        |_| {},
    );
    assert_eq!(status(&app, &inst, &just_expired).await, StatusCode::OK);

    let mut attacks: Vec<(&str, String)> = Vec::new();
    let header_none = b64(json!({"alg": "none", "typ": "JWT", "kid": idp_key.kid}).to_string().as_bytes());
    let payload = b64(claims("api-a").to_string().as_bytes());
    attacks.push(("alg none", format!("{header_none}.{payload}.")));
    // HS256 keyed with the IdP's public key (the classic algorithm confusion).
    let public = public_jwk(&idp_key);
    for secret in [public.to_string(), public["n"].as_str().unwrap().to_string()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(idp_key.kid.clone());
        let forged =
            jsonwebtoken::encode(&header, &claims("api-a"), &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()))
                .unwrap();
        attacks.push(("HS256 with the public key", forged));
    }
    let mut c = claims("api-a");
    c["exp"] = json!(now() - 90);
    attacks.push(("expired beyond the leeway", sign(&idp_key, &c, |_| {})));
    let mut c = claims("api-a");
    c["nbf"] = json!(now() + 300);
    attacks.push(("nbf in the future", sign(&idp_key, &c, |_| {})));
    let mut c = claims("api-a");
    c["iss"] = json!(format!("{}/other", idp.url));
    attacks.push(("wrong iss", sign(&idp_key, &c, |_| {})));
    let mut c = claims("api-a");
    c["iss"] = json!(idp.url.clone());
    attacks.push(("iss without its trailing slash", sign(&idp_key, &c, |_| {})));
    attacks.push(("wrong aud", sign(&idp_key, &claims("api-x"), |_| {})));
    let mut c = claims("api-a");
    c.as_object_mut().unwrap().remove("aud");
    attacks.push(("no aud", sign(&idp_key, &c, |_| {})));
    let mut c = claims("api-a");
    c.as_object_mut().unwrap().remove("exp");
    attacks.push(("no exp", sign(&idp_key, &c, |_| {})));
    let parts: Vec<&str> = valid.split('.').collect();
    let mut c = claims("api-a");
    c["scope"] = json!("* messages:send");
    attacks.push(("tampered payload", format!("{}.{}.{}", parts[0], b64(c.to_string().as_bytes()), parts[2])));
    attacks.push(("unknown kid", sign(&attacker, &claims("api-a"), |_| {})));
    attacks.push((
        "attacker key under the IdP's kid",
        sign(&attacker, &claims("api-a"), |h| h.kid = Some(idp_key.kid.clone())),
    ));
    let jku = format!("{}/attacker-jwks", idp.url);
    attacks.push(("jku to the attacker's JWKS", sign(&attacker, &claims("api-a"), |h| h.jku = Some(jku.clone()))));
    attacks.push(("x5u to the attacker", sign(&attacker, &claims("api-a"), |h| h.x5u = Some(jku.clone()))));
    let embedded: jsonwebtoken::jwk::Jwk = serde_json::from_value(public_jwk(&attacker)).unwrap();
    attacks.push(("embedded jwk", sign(&attacker, &claims("api-a"), |h| h.jwk = Some(embedded.clone()))));
    let mut c = claims("api-a");
    c["padding"] = json!("x".repeat(9000));
    attacks.push(("oversized", sign(&idp_key, &c, |_| {})));
    attacks.push(("another account's token", for_b.clone()));
    attacks.push(("not a JWT", "abc.def".to_string()));

    for (name, token) in &attacks {
        let res = app.bearer(&inst, Method::POST, "/send-text", Some(token)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{name}");
        let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_string();
        assert!(challenge.contains("invalid_token"), "{name}: {challenge}");
    }
    // The account's own token is refused on the other account, too.
    assert_eq!(status(&app, &other_inst, &valid).await, StatusCode::UNAUTHORIZED);
    // The attacker's JWKS was never fetched: header-named keys are ignored.
    assert_eq!(idp.state.attacker_fetches.load(Ordering::SeqCst), 0);

    // Missing scope: 403, not 401.
    let mut c = claims("api-a");
    c["scope"] = json!("profile");
    let res = app.bearer(&inst, Method::POST, "/send-text", Some(&sign(&idp_key, &c, |_| {}))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Removing the issuer ends its tokens.
    let (_, list) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/trusted-issuers"), None).await;
    let id = list["items"][0]["id"].as_str().unwrap().to_string();
    let (s, _) = app.admin(Method::DELETE, &format!("/v1/accounts/{acc}/trusted-issuers/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(status(&app, &inst, &valid).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_issuer_validation() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("SSO").await;
    let path = format!("/v1/accounts/{acc}/trusted-issuers");
    let ok = json!({"issuer": "https://idp.example/", "jwks_uri": "https://idp.example/jwks", "audience": "api"});
    let (s, created) = app.admin(Method::POST, &path, Some(ok.clone())).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(created["scopes_claim"], "scope");
    assert_eq!(app.admin(Method::POST, &path, Some(ok)).await.0, StatusCode::CONFLICT);
    for bad in [
        json!({"issuer": "https://a/", "jwks_uri": "http://idp.example/jwks", "audience": "api"}),
        json!({"issuer": "https://a/", "jwks_uri": "http://10.1.2.3/jwks", "audience": "api"}),
        json!({"issuer": "https://a/", "jwks_uri": "ftp://idp.example/jwks", "audience": "api"}),
        json!({"issuer": "", "jwks_uri": "https://idp.example/jwks", "audience": "api"}),
        json!({"issuer": "https://a/", "jwks_uri": "https://idp.example/jwks", "audience": ""}),
        json!({"issuer": "https://a/", "jwks_uri": "https://idp.example/jwks"}),
    ] {
        assert_eq!(
            app.admin(Method::POST, &path, Some(bad.clone())).await.0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}"
        );
    }
    let unknown = format!("/v1/accounts/{}/trusted-issuers", tokengate_core::AccountId::new());
    let body = json!({"issuer": "https://b/", "jwks_uri": "https://idp.example/jwks", "audience": "api"});
    assert_eq!(app.admin(Method::POST, &unknown, Some(body)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.admin(Method::DELETE, &format!("{path}/nope"), None).await.0, StatusCode::NOT_FOUND);
}

/// The egress policy guards JWKS fetches too: a literal denied address is refused when
/// the issuer is added, and a name resolving into a denied range is never fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_issuer_whose_jwks_host_is_denied_is_never_fetched() {
    let app = TestApp::spawn_with(None, |c| {
        c.egress_deny = vec!["127.0.0.1/32".into(), "::1/128".into()];
        c.jwks_kid_refresh_seconds = 0;
    })
    .await;
    let signer = key(SigningAlg::EdDSA);
    let idp = Idp::start(&[&signer]).await;
    let acc = app.create_account("SSO egress").await;
    // Never reached (every token is refused); on an address the policy allows.
    let rules = json!([{"methods": ["POST"], "path": "/send-*", "scopes": ["messages:send"]}]);
    let body = json!({"name": "i", "upstream_url": "http://127.0.0.3:9", "rules": rules});
    let (s, i) = app.admin(Method::POST, &format!("/v1/accounts/{acc}/instances"), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{i}");
    let inst = (i["id"].as_str().unwrap().to_string(), i["token"].as_str().unwrap().to_string());
    let path = format!("/v1/accounts/{acc}/trusted-issuers");
    let literal = json!({"issuer": idp.issuer(), "jwks_uri": format!("{}/jwks", idp.url), "audience": "api"});
    let (s, b) = app.admin(Method::POST, &path, Some(literal)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let port = idp.url.rsplit(':').next().unwrap();
    let named = json!({"issuer": idp.issuer(), "jwks_uri": format!("http://localhost:{port}/jwks"), "audience": "api"});
    let (s, b) = app.admin(Method::POST, &path, Some(named)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let claims = json!({"iss": idp.issuer(), "sub": "u", "aud": "api", "exp": now() + 600, "scope": "messages:send"});
    let token = sign(&signer, &claims, |_| {});
    // Every refused token asks for a refresh (interval 0); none may reach the IdP.
    for _ in 0..20 {
        assert_eq!(status(&app, &inst, &token).await, StatusCode::UNAUTHORIZED);
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(idp.state.fetches.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_refresh_on_unknown_kid() {
    // Every unknown kid may trigger a fetch here (the interval has its own unit test).
    let app = TestApp::spawn_with(None, |c| c.jwks_kid_refresh_seconds = 0).await;
    let first = key(SigningAlg::EdDSA);
    let second = key(SigningAlg::ES256);
    let idp = Idp::start(&[&first]).await;
    let acc = app.create_account("SSO").await;
    let inst = app.ruled_instance(&acc).await;
    trust(&app, &acc, &idp, "api", None).await;
    let claims = json!({"iss": idp.issuer(), "sub": "u", "aud": "api", "exp": now() + 600, "scope": "messages:send"});
    until_accepted(&app, &inst, &sign(&first, &claims, |_| {})).await;

    // The IdP rotates in a new key: the first token naming it is refused at once and
    // makes the gateway fetch the JWKS again; then the new key is accepted.
    idp.publish(&[&first, &second]);
    let fetched = idp.state.fetches.load(Ordering::SeqCst);
    let token = sign(&second, &claims, |_| {});
    assert_eq!(status(&app, &inst, &token).await, StatusCode::UNAUTHORIZED);
    until_accepted(&app, &inst, &token).await;
    assert!(idp.state.fetches.load(Ordering::SeqCst) > fetched);

    // The IdP withdraws the first key: once the gateway has fetched the JWKS again, a
    // token of that key is refused although its verification was cached.
    let old = sign(&first, &claims, |_| {});
    assert_eq!(status(&app, &inst, &old).await, StatusCode::OK);
    idp.publish(&[&second]);
    let third = key(SigningAlg::EdDSA);
    let fetched = idp.state.fetches.load(Ordering::SeqCst);
    assert_eq!(status(&app, &inst, &sign(&third, &claims, |_| {})).await, StatusCode::UNAUTHORIZED);
    // Hang guard (20 s), not a speed check.
    for _ in 0..1000 {
        if idp.state.fetches.load(Ordering::SeqCst) > fetched
            && status(&app, &inst, &old).await == StatusCode::UNAUTHORIZED
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status(&app, &inst, &old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&app, &inst, &token).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_down_cached_keys_keep_working() {
    // Every unknown kid may trigger a fetch here (the interval has its own unit test).
    let app = TestApp::spawn_with(None, |c| c.jwks_kid_refresh_seconds = 0).await;
    let known = key(SigningAlg::EdDSA);
    let unknown = key(SigningAlg::EdDSA);
    let idp = Idp::start(&[&known]).await;
    let acc = app.create_account("SSO").await;
    let inst = app.ruled_instance(&acc).await;
    trust(&app, &acc, &idp, "api", None).await;
    let claims = json!({"iss": idp.issuer(), "sub": "u", "aud": "api", "exp": now() + 600, "scope": "messages:send"});
    let good = sign(&known, &claims, |_| {});
    until_accepted(&app, &inst, &good).await;

    // The IdP stops answering. A token with an unknown kid is refused while the fetch it
    // triggered is still hanging: the request did not wait for it.
    idp.set_mode(Mode::Hang);
    assert_eq!(status(&app, &inst, &sign(&unknown, &claims, |_| {})).await, StatusCode::UNAUTHORIZED);
    // Hang guards (20 s), not speed checks: the condition is awaited, not timed.
    for _ in 0..1000 {
        if idp.state.pending.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(idp.state.pending.load(Ordering::SeqCst), 1, "the refresh is in flight");
    // Known keys keep working meanwhile, and after the fetch fails.
    assert_eq!(status(&app, &inst, &good).await, StatusCode::OK);
    idp.set_mode(Mode::Fail);
    // Hang guards (20 s), not speed checks: the condition is awaited, not timed.
    for _ in 0..1000 {
        if idp.state.pending.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status(&app, &inst, &good).await, StatusCode::OK);
}
