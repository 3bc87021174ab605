//! Leak reports (SPEC §15): `POST /v1/leaks` and GitHub's signed partner format.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{StoreKind, TestApp};
use crate::on_both_stores;

on_both_stores!(leaked_secrets_are_revoked_disabled_or_marked);

impl TestApp {
    async fn report_leak(&self, tokens: &[&str]) -> (StatusCode, String) {
        let body = json!({"tokens": tokens, "url": "https://github.com/acme/app/blob/main/.env", "source": "test"});
        let res = self.http.post(self.url("/v1/leaks")).json(&body).send().await.unwrap();
        (res.status(), res.text().await.unwrap())
    }
}

/// Polls until `f` holds (a hang guard, not a timing assertion).
async fn eventually<F: AsyncFn() -> bool>(what: &str, f: F) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never happened: {what}");
}

async fn leaked_secrets_are_revoked_disabled_or_marked(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    // A second node on PostgreSQL: the revocation must reach it too.
    let other = match kind {
        StoreKind::Postgres => Some(app.second_node().await),
        StoreKind::Sqlite => None,
    };
    let account = app.create_account("leaky").await;
    let instance = app.ruled_instance(&account).await;
    let key = app.create_token(&account, json!({"name": "k", "kind": "api_key", "scopes": ["messages:send"]})).await;
    let (key, key_id) = (key["token"].as_str().unwrap().to_string(), key["id"].as_str().unwrap().to_string());
    let kept = app.create_token(&account, json!({"name": "kept", "kind": "api_key", "scopes": ["*"]})).await;
    let kept = kept["token"].as_str().unwrap().to_string();
    let client_token = app.generate_security_token(&account).await;
    app.activate(&account).await;
    let client = app.oauth_client(&account, &["messages:send"]).await;
    let ok = |status: StatusCode| status == StatusCode::OK;
    let send = async |node: &TestApp, token: &str| {
        node.bearer(&instance, Method::POST, "/send-text", Some(token)).await.status()
    };
    let with_ct = async |node: &TestApp, token: &str| {
        let (id, itoken) = &instance;
        let res = node
            .http
            .post(node.url(&format!("/instances/{id}/token/{itoken}/send-text")))
            .header("Client-Token", &client_token)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        res.status()
    };
    assert!(ok(with_ct(&app, &key).await));
    if let Some(b) = &other {
        eventually("node B knows the key", async || ok(with_ct(b, &key).await)).await;
    }

    // Real, fake (valid checksum, unknown), broken checksum, and plain garbage: the same
    // answer, byte for byte.
    let fake = tokengate_core::token::generate(tokengate_core::token::Prefix::ApiKey);
    let fake = secrecy::ExposeSecret::expose_secret(&fake).to_string();
    let mut broken = key.clone();
    broken.replace_range(5..6, if &key[5..6] == "a" { "b" } else { "a" });
    let answers = [
        app.report_leak(&[&key]).await,
        app.report_leak(&[&fake]).await,
        app.report_leak(&[&broken]).await,
        app.report_leak(&["hello"]).await,
        app.report_leak(&[&key]).await, // already revoked by now, or about to be
    ];
    for answer in &answers {
        assert_eq!(answer, &(StatusCode::ACCEPTED, r#"{"received":1}"#.to_string()));
    }

    // The key is refused by the gateway and /v1/verify, on every node.
    eventually("the gateway refuses the leaked key", async || with_ct(&app, &key).await == StatusCode::UNAUTHORIZED)
        .await;
    let (_, verdict) = app.verify(&app.admin_token, json!({"token": key})).await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["reason"], "revoked");
    if let Some(b) = &other {
        eventually("node B refuses the leaked key", async || with_ct(b, &key).await == StatusCode::UNAUTHORIZED).await;
    }
    assert!(ok(with_ct(&app, &kept).await), "an unreported key keeps working");
    let (_, token) = app.admin(Method::GET, &format!("/v1/tokens/{key_id}"), None).await;
    assert!(token["leaked_at"].is_string() && token["revoked_at"].is_string(), "{token}");

    // A Client-Token is marked, not revoked: the account keeps working.
    app.report_leak(&[&client_token]).await;
    eventually("the Client-Token is marked leaked", async || {
        app.security_token(&account).await["leaked_at"].is_string()
    })
    .await;
    assert!(ok(with_ct(&app, &kept).await));
    assert_eq!(send(&app, &kept).await, StatusCode::FORBIDDEN, "still required");
    // Rotated with a grace period, the leaked one still works: the mark stays shown.
    let rotate = format!("/v1/accounts/{account}/security-token/rotate");
    let (s, _) = app.admin(Method::POST, &rotate, Some(json!({"grace_seconds": 3600}))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(ok(with_ct(&app, &kept).await), "the leaked token is in its grace period");
    let view = app.security_token(&account).await;
    assert!(view["leaked_at"].is_string() && view["previous_valid_until"].is_string(), "{view}");
    // So is the instance token.
    app.report_leak(&[&instance.1]).await;
    eventually("the instance token is marked leaked", async || {
        app.admin(Method::GET, &format!("/v1/instances/{}", instance.0), None).await.1["leaked_at"].is_string()
    })
    .await;
    assert!(ok(with_ct(&app, &kept).await));

    // An OAuth client secret: the client is disabled and issues nothing more.
    assert_eq!(app.token_request(&client, &[("grant_type", "client_credentials")]).await.status(), StatusCode::OK);
    app.report_leak(&[&client.1]).await;
    eventually("the OAuth client is disabled", async || {
        app.token_request(&client, &[("grant_type", "client_credentials")]).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;

    // The audit log says who reported what, and where it was found.
    let (_, audit) = app.admin(Method::GET, &format!("/v1/accounts/{account}/audit"), None).await;
    let leaked: Vec<&Value> =
        audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == "token.leaked").collect();
    assert_eq!(leaked.len(), 4, "key, Client-Token, instance token, OAuth client: {audit}");
    assert!(leaked.iter().all(|e| e["actor"] == "leak-report"));
    assert!(leaked.iter().any(|e| e["target"] == key_id.as_str()));
    assert_eq!(leaked[0]["detail"]["url"], "https://github.com/acme/app/blob/main/.env");
    if let Some(b) = other {
        b.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leak_reports_are_limited_and_bad_ones_refused() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let post = |body: Vec<u8>, content_type: &'static str| {
        app.http.post(app.url("/v1/leaks")).header("content-type", content_type).body(body).send()
    };
    let big = serde_json::to_vec(&json!({"tokens": ["x".repeat(70 * 1024)]})).unwrap();
    assert_eq!(post(big, "application/json").await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(post(b"tokens=x".to_vec(), "text/plain").await.unwrap().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(post(b"{".to_vec(), "application/json").await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(post(b"[]".to_vec(), "application/json").await.unwrap().status(), StatusCode::UNPROCESSABLE_ENTITY);
    let none = serde_json::to_vec(&json!({"tokens": []})).unwrap();
    assert_eq!(post(none, "application/json").await.unwrap().status(), StatusCode::UNPROCESSABLE_ENTITY);
    let many = serde_json::to_vec(&json!({"tokens": vec!["t"; 101]})).unwrap();
    assert_eq!(post(many, "application/json").await.unwrap().status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Ten a minute per address, bad ones included: four more pass, the eleventh waits.
    for _ in 0..4 {
        assert_eq!(app.report_leak(&["x"]).await.0, StatusCode::ACCEPTED);
    }
    let res = app.http.post(app.url("/v1/leaks")).json(&json!({"tokens": ["x"]})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // The GitHub endpoint shares the limit.
    let res = app
        .http
        .post(app.url("/v1/leaks/github"))
        .header("Github-Public-Key-Identifier", "k")
        .header("Github-Public-Key-Signature", "c2ln")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // GitHub reports with a bad signature count as well (each costs a verification):
    // the eleventh waits. One without the signature headers costs nothing and is
    // refused as such, limit or not.
    let fresh = TestApp::spawn(StoreKind::Sqlite).await;
    let badly_signed = || {
        fresh
            .http
            .post(fresh.url("/v1/leaks/github"))
            .header("Github-Public-Key-Identifier", "k")
            .header("Github-Public-Key-Signature", "c2ln")
            .body("[]")
    };
    for _ in 0..10 {
        assert_eq!(badly_signed().send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(badly_signed().send().await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(fresh.report_leak(&["x"]).await.0, StatusCode::TOO_MANY_REQUESTS);
    let unsigned = fresh.http.post(fresh.url("/v1/leaks/github")).body("[]").send().await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
}

/// GitHub's partner format, with a key pair made here and its public key served here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_reports_are_verified_labelled_and_acted_on() {
    let made = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &made.serialize_der()).unwrap();
    let keys = json!({"public_keys": [
        {"key_identifier": "key-1", "key": made.public_key_pem(), "is_current": true}
    ]});
    let keys_server = axum::Router::new().route("/keys", axum::routing::get(move || async move { axum::Json(keys) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let keys_url = format!("http://{}/keys", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, keys_server).await });
    let app = TestApp::spawn_with(None, |c| c.leak_github_keys_url = keys_url).await;
    let account = app.create_account("gh").await;
    let key = app.create_token(&account, json!({"name": "k", "kind": "api_key", "scopes": ["*"]})).await;
    let (key, key_id) = (key["token"].as_str().unwrap().to_string(), key["id"].as_str().unwrap().to_string());

    let body = serde_json::to_vec(&json!([
        {"token": key, "type": "tokengate_api_key", "url": "https://github.com/a/b", "source": "commit"},
        {"token": "tgk_notarealtoken", "type": "tokengate_api_key", "url": "https://github.com/a/b", "source": "commit"}
    ]))
    .unwrap();
    let sign = |bytes: &[u8]| {
        let sig = signer.sign(&SystemRandom::new(), bytes).unwrap();
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
    };
    let send = |body: Vec<u8>, key_id: Option<&str>, signature: Option<String>| {
        let mut req = app.http.post(app.url("/v1/leaks/github")).header("content-type", "application/json").body(body);
        if let Some(k) = key_id {
            req = req.header("Github-Public-Key-Identifier", k);
        }
        if let Some(s) = signature {
            req = req.header("Github-Public-Key-Signature", s);
        }
        req.send()
    };
    // Refused, and nothing revoked: a signature over other bytes, an unknown key id,
    // missing headers.
    let mut tampered = body.clone();
    tampered.push(b' ');
    for (key_id, signature) in [
        (Some("key-1"), Some(sign(&tampered))),
        (Some("key-2"), Some(sign(&body))),
        (None, Some(sign(&body))),
        (Some("key-1"), None),
        (Some("key-1"), Some("bm90IGEgc2lnbmF0dXJl".to_string())),
    ] {
        let res = send(body.clone(), key_id, signature).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{key_id:?}");
    }
    let (_, token) = app.admin(Method::GET, &format!("/v1/tokens/{key_id}"), None).await;
    assert!(token["revoked_at"].is_null(), "nothing revoked by a refused report");

    let res = send(body.clone(), Some("key-1"), Some(sign(&body))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let labels: Value = res.json().await.unwrap();
    assert_eq!(
        labels,
        json!([
            {"token_raw": key, "token_type": "tokengate_api_key", "label": "true_positive"},
            {"token_raw": "tgk_notarealtoken", "token_type": "tokengate_api_key", "label": "false_positive"}
        ])
    );
    let (_, token) = app.admin(Method::GET, &format!("/v1/tokens/{key_id}"), None).await;
    assert!(token["revoked_at"].is_string() && token["leaked_at"].is_string(), "{token}");
}
