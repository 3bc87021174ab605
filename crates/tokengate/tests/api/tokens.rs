//! API keys and personal access tokens through the real gateway (issue 3's story).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokengate_core::token::{self, Prefix};

use crate::helpers::{StoreKind, TestApp};
use crate::on_both_stores;

on_both_stores!(
    scopes_rules_revocation_and_rotation,
    ip_allowlists_and_rate_limits,
    personal_tokens,
    verify_reasons,
    usage_and_last_used,
    long_durations_are_taken_up_to_a_century
);

impl TestApp {
    pub async fn create_token(&self, account: &str, body: Value) -> Value {
        let (s, token) = self.admin(Method::POST, &format!("/v1/accounts/{account}/tokens"), Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{token}");
        token
    }

    /// An instance whose rules require `messages:send` for `POST /send-*` and
    /// `instance:read` for `GET /*`.
    pub async fn ruled_instance(&self, account: &str) -> (String, String) {
        let rules = json!([
            {"methods": ["POST"], "path": "/send-*", "scopes": ["messages:send"]},
            {"methods": ["GET"], "path": "/*", "scopes": ["instance:read"]}
        ]);
        let body = json!({"name": "ruled", "upstream_url": self.upstream.url(), "rules": rules});
        let (s, i) = self.admin(Method::POST, &format!("/v1/accounts/{account}/instances"), Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{i}");
        (i["id"].as_str().unwrap().to_string(), i["token"].as_str().unwrap().to_string())
    }

    pub async fn bearer(
        &self,
        instance: &(String, String),
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::Response {
        let (id, itoken) = instance;
        let mut req = self.http.request(method, self.url(&format!("/instances/{id}/token/{itoken}{path}")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    pub async fn verify(&self, auth: &str, body: Value) -> (StatusCode, Value) {
        let res = self.http.post(self.url("/v1/verify")).bearer_auth(auth).json(&body).send().await.unwrap();
        let s = res.status();
        (s, res.json().await.unwrap_or(Value::Null))
    }
}

fn secret(token: &Value) -> String {
    token["token"].as_str().unwrap().to_string()
}

async fn scopes_rules_revocation_and_rotation(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Tokens").await;
    let inst = app.ruled_instance(&acc).await;
    let sender = app
        .create_token(
            &acc,
            json!({"name": "backend", "kind": "api_key", "scopes": ["messages:send"], "expires_in_seconds": 7776000}),
        )
        .await;
    let key = secret(&sender);
    assert!(key.starts_with("tgk_") && key.len() == 40);
    assert!(token::parse(key.as_bytes(), Prefix::ApiKey).is_ok(), "checksum of an issued key");
    assert_eq!(sender["kind"], "api_key");
    assert!(sender["expires_at"].is_string());
    let id = sender["id"].as_str().unwrap().to_string();

    // Shown once: never in lists or reads.
    let (_, list) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/tokens"), None).await;
    let (_, one) = app.admin(Method::GET, &format!("/v1/tokens/{id}"), None).await;
    assert!(!list.to_string().contains(&key) && !one.to_string().contains(&key));
    assert!(one.get("token").is_none() && one["last_used_at"].is_null() && one["revoked_at"].is_null());

    // Allowed: forwarded with our headers, without the Authorization we checked.
    let res = app.bearer(&inst, Method::POST, "/send-text", Some(&key)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let seen = app.upstream.last();
    assert_eq!(seen.headers["x-tokengate-token-id"], id.as_str());
    assert_eq!(seen.headers["x-tokengate-scopes"], "messages:send");
    assert!(seen.headers.get("authorization").is_none());

    // Lacking the rule's scope: 403 naming it.
    let res = app.bearer(&inst, Method::GET, "/status", Some(&key)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.headers()["www-authenticate"], r#"Bearer error="insufficient_scope", scope="instance:read""#);
    // No token, garbage, checksum-broken: 401 invalid_token. No rule: 403.
    let mut broken = key.clone().into_bytes();
    broken[8] = if broken[8] == b'a' { b'b' } else { b'a' };
    for t in [None, Some("nope"), Some(std::str::from_utf8(&broken).unwrap())] {
        let res = app.bearer(&inst, Method::POST, "/send-text", t).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{t:?}");
        assert_eq!(res.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
    }
    assert_eq!(app.bearer(&inst, Method::DELETE, "/chats", Some(&key)).await.status(), StatusCode::FORBIDDEN);

    // Wildcards.
    let all_messages =
        secret(&app.create_token(&acc, json!({"name": "m", "kind": "api_key", "scopes": ["messages:*"]})).await);
    assert_eq!(app.bearer(&inst, Method::POST, "/send-image", Some(&all_messages)).await.status(), StatusCode::OK);
    assert_eq!(app.bearer(&inst, Method::GET, "/status", Some(&all_messages)).await.status(), StatusCode::FORBIDDEN);
    let everything = secret(&app.create_token(&acc, json!({"name": "all", "kind": "api_key", "scopes": ["*"]})).await);
    assert_eq!(app.bearer(&inst, Method::GET, "/status", Some(&everything)).await.status(), StatusCode::OK);

    // Another account's token, or one limited to another instance: refused.
    let other_acc = app.create_account("Other").await;
    let foreign = secret(&app.create_token(&other_acc, json!({"name": "f", "kind": "api_key", "scopes": ["*"]})).await);
    assert_eq!(app.bearer(&inst, Method::GET, "/status", Some(&foreign)).await.status(), StatusCode::UNAUTHORIZED);
    let second = app.ruled_instance(&acc).await;
    let pinned = secret(
        &app.create_token(&acc, json!({"name": "p", "kind": "api_key", "scopes": ["*"], "instance_ids": [second.0]}))
            .await,
    );
    assert_eq!(app.bearer(&inst, Method::GET, "/status", Some(&pinned)).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.bearer(&second, Method::GET, "/status", Some(&pinned)).await.status(), StatusCode::OK);

    // Rotation with grace: both work inside it, only the new one after.
    let (s, rotated) =
        app.admin(Method::POST, &format!("/v1/tokens/{id}/rotate"), Some(json!({"grace_seconds": 2}))).await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let new_key = secret(&rotated);
    assert_ne!(rotated["id"], id.as_str());
    assert_eq!(rotated["scopes"], json!(["messages:send"]));
    assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(&key)).await.status(), StatusCode::OK);
    assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(&new_key)).await.status(), StatusCode::OK);
    let (_, old) = app.admin(Method::GET, &format!("/v1/tokens/{id}"), None).await;
    let until = tokengate_core::Timestamp::parse(old["revoked_at"].as_str().unwrap()).unwrap();
    while tokengate_core::Timestamp::now() <= until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(&key)).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(&new_key)).await.status(), StatusCode::OK);

    // Revocation: at once.
    let new_id = rotated["id"].as_str().unwrap();
    let (s, _) = app.admin(Method::DELETE, &format!("/v1/tokens/{new_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(&new_key)).await.status(), StatusCode::UNAUTHORIZED);
    let (s, _) = app.admin(Method::POST, &format!("/v1/tokens/{new_id}/rotate"), Some(json!({}))).await;
    assert_eq!(s, StatusCode::CONFLICT, "a revoked token cannot be rotated");

    // Expiry: a one-second token stops after its second.
    let short =
        app.create_token(&acc, json!({"name": "s", "kind": "api_key", "scopes": ["*"], "expires_in_seconds": 1})).await;
    let short_key = secret(&short);
    let expires = tokengate_core::Timestamp::parse(short["expires_at"].as_str().unwrap()).unwrap();
    if tokengate_core::Timestamp::now() < expires {
        // Usually still inside its second; on a very slow machine it may already be over.
        let status = app.bearer(&inst, Method::GET, "/status", Some(&short_key)).await.status();
        assert!(status == StatusCode::OK || tokengate_core::Timestamp::now() >= expires);
    }
    while tokengate_core::Timestamp::now() <= expires {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.bearer(&inst, Method::GET, "/status", Some(&short_key)).await.status(), StatusCode::UNAUTHORIZED);

    // Audit.
    let (_, audit) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/audit?limit=100"), None).await;
    let actions: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap().to_string(), e["target"].as_str().unwrap().to_string()))
        .collect();
    for want in [("token.created", id.as_str()), ("token.rotated", id.as_str()), ("token.revoked", new_id)] {
        assert!(actions.iter().any(|(a, t)| a == want.0 && t == want.1), "{want:?} in {actions:?}");
    }
    app.stop().await;
}

async fn ip_allowlists_and_rate_limits(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Limits").await;
    let inst = app.ruled_instance(&acc).await;
    let elsewhere = secret(
        &app.create_token(
            &acc,
            json!({"name": "dc", "kind": "api_key", "scopes": ["*"], "ip_allowlist": ["10.0.0.0/8", "2001:db8::/32"]}),
        )
        .await,
    );
    let res = app.bearer(&inst, Method::GET, "/status", Some(&elsewhere)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let here = secret(
        &app.create_token(
            &acc,
            json!({"name": "lo", "kind": "api_key", "scopes": ["*"], "ip_allowlist": ["127.0.0.1/32", "::1/128"]}),
        )
        .await,
    );
    assert_eq!(app.bearer(&inst, Method::GET, "/status", Some(&here)).await.status(), StatusCode::OK);
    // X-Forwarded-For from an untrusted peer does not help.
    let (id, itoken) = &inst;
    let res = app
        .http
        .get(app.url(&format!("/instances/{id}/token/{itoken}/status")))
        .bearer_auth(&elsewhere)
        .header("X-Forwarded-For", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (s, body) = app
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/tokens"),
            Some(json!({"name": "x", "kind": "api_key", "scopes": ["*"], "ip_allowlist": ["10.0.0.0/33"]})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Two requests a minute: the third is 429 with Retry-After.
    let limited = secret(
        &app.create_token(
            &acc,
            json!({"name": "rl", "kind": "api_key", "scopes": ["*"], "rate_limit": {"limit": 2, "window_seconds": 60}}),
        )
        .await,
    );
    for _ in 0..2 {
        assert_eq!(app.bearer(&inst, Method::GET, "/status", Some(&limited)).await.status(), StatusCode::OK);
    }
    let res = app.bearer(&inst, Method::GET, "/status", Some(&limited)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    // One node (SQLite): GCRA, a request every 30 s. On PostgreSQL the limit is the
    // deployment's, in fixed windows: the rest of the current minute.
    let most = match kind {
        StoreKind::Sqlite => 30,
        StoreKind::Postgres => 60,
    };
    assert!((1..=most).contains(&retry), "retry after {retry} s, at most {most}");
    for bad in
        [json!({"limit": 0, "window_seconds": 60}), json!({"limit": 5, "window_seconds": 0}), json!({"limit": 5})]
    {
        let (s, body) = app
            .admin(
                Method::POST,
                &format!("/v1/accounts/{acc}/tokens"),
                Some(json!({"name": "x", "kind": "api_key", "scopes": ["*"], "rate_limit": bad})),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    app.stop().await;
}

async fn personal_tokens(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("People").await;
    let inst = app.ruled_instance(&acc).await;
    let (s, dev) = app
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/members"),
            Some(json!({"email": "dev@acme.test", "password": "a long password", "role": "developer"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, viewer) = app
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/members"),
            Some(json!({"email": "v@acme.test", "password": "a long password", "role": "viewer"})),
        )
        .await;
    let dev_id = dev["id"].as_str().unwrap();
    let personal = |member: &str, scopes: Value, expires: Option<u64>| {
        let mut body = json!({"name": "script", "kind": "personal", "member_id": member, "scopes": scopes});
        if let Some(e) = expires {
            body["expires_in_seconds"] = e.into();
        }
        body
    };
    for (body, why) in [
        (personal(dev_id, json!(["*"]), Some(3600)), "a developer cannot hold *"),
        (personal(dev_id, json!(["members:write"]), Some(3600)), "nor account administration"),
        (personal(viewer["id"].as_str().unwrap(), json!(["messages:send"]), Some(3600)), "a viewer only reads"),
        (personal(dev_id, json!(["messages:send"]), None), "expiry is required"),
        (personal(dev_id, json!(["messages:send"]), Some(90 * 86400 + 1)), "capped at 90 days"),
        (
            json!({"name": "x", "kind": "personal", "scopes": ["messages:send"], "expires_in_seconds": 60}),
            "member_id is required",
        ),
    ] {
        let (s, body) = app.admin(Method::POST, &format!("/v1/accounts/{acc}/tokens"), Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{why}: {body}");
    }
    let (s, _) = app
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/tokens"),
            Some(personal("018f0000-0000-7000-8000-000000000000", json!(["a:read"]), Some(60))),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let token =
        app.create_token(&acc, personal(dev_id, json!(["messages:send", "instance:read"]), Some(7 * 86400))).await;
    let pat = secret(&token);
    assert!(pat.starts_with("tgp_"));
    assert_eq!(token["member_id"], dev_id);
    let viewer_pat = secret(
        &app.create_token(&acc, personal(viewer["id"].as_str().unwrap(), json!(["instance:read"]), Some(3600))).await,
    );
    assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(&pat)).await.status(), StatusCode::OK);
    assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(&viewer_pat)).await.status(), StatusCode::FORBIDDEN);

    // Removing the member revokes its personal tokens at once.
    let (s, _) = app.admin(Method::DELETE, &format!("/v1/members/{dev_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(&pat)).await.status(), StatusCode::UNAUTHORIZED);
    let (_, after) = app.admin(Method::GET, &format!("/v1/tokens/{}", token["id"].as_str().unwrap()), None).await;
    assert!(after["revoked_at"].is_string());
    assert_eq!(
        app.bearer(&inst, Method::GET, "/status", Some(&viewer_pat)).await.status(),
        StatusCode::OK,
        "other members keep theirs"
    );
    app.stop().await;
}

async fn verify_reasons(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Verify").await;
    let admin = app.admin_token.clone();
    let good = app
        .create_token(
            &acc,
            json!({"name": "g", "kind": "api_key", "scopes": ["messages:*"], "ip_allowlist": ["10.0.0.0/8", "127.0.0.0/8"]}),
        )
        .await;
    let key = secret(&good);
    let (s, v) = app.verify(&admin, json!({"token": key, "required_scopes": ["messages:send"]})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["token_id"], good["id"]);
    assert_eq!(v["account_id"], acc.as_str());
    assert_eq!(v["kind"], "api_key");
    assert_eq!(v["scopes"], json!(["messages:*"]));
    assert!(v.get("reason").is_none());

    let reason = |v: &Value| v["reason"].as_str().unwrap_or("").to_string();
    let unknown = token::generate(Prefix::ApiKey);
    let cases = [
        (json!({"token": ""}), "malformed"),
        (json!({"token": "hello"}), "malformed"),
        // The last character changed (to one it is not): the checksum no longer matches.
        (json!({"token": format!("{}{}", &key[..39], if key.ends_with('x') { 'y' } else { 'x' })}), "malformed"),
        (json!({"token": secrecy::ExposeSecret::expose_secret(&unknown)}), "not_found"),
        (json!({"token": key, "required_scopes": ["groups:write"]}), "insufficient_scope"),
        (json!({"token": key, "ip": "192.0.2.1"}), "ip_not_allowed"),
    ];
    for (body, want) in cases {
        let (s, v) = app.verify(&admin, body.clone()).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!((v["valid"].as_bool(), reason(&v)), (Some(false), want.to_string()), "{body}");
    }
    let (_, v) = app.verify(&admin, json!({"token": key, "ip": "10.9.9.9"})).await;
    assert_eq!(v["valid"], true);
    // Without `ip`, the caller's own address is the one checked.
    let elsewhere = app
        .create_token(&acc, json!({"name": "x", "kind": "api_key", "scopes": ["*"], "ip_allowlist": ["10.0.0.0/8"]}))
        .await;
    let (_, v) = app.verify(&admin, json!({"token": secret(&elsewhere)})).await;
    assert_eq!((v["valid"].as_bool(), reason(&v)), (Some(false), "ip_not_allowed".to_string()), "{v}");
    let (_, v) = app.verify(&admin, json!({"token": secret(&elsewhere), "ip": "10.1.2.3"})).await;
    assert_eq!(v["valid"], true, "{v}");

    let short = secret(
        &app.create_token(&acc, json!({"name": "e", "kind": "api_key", "scopes": ["*"], "expires_in_seconds": 1}))
            .await,
    );
    let revoked = app.create_token(&acc, json!({"name": "r", "kind": "api_key", "scopes": ["*"]})).await;
    app.admin(Method::DELETE, &format!("/v1/tokens/{}", revoked["id"].as_str().unwrap()), None).await;
    let (_, v) = app.verify(&admin, json!({"token": secret(&revoked)})).await;
    assert_eq!(reason(&v), "revoked");
    let limited = secret(&app.create_token(&acc, json!({"name": "l", "kind": "api_key", "scopes": ["*"], "rate_limit": {"limit": 1, "window_seconds": 3600}})).await);
    assert_eq!(app.verify(&admin, json!({"token": limited})).await.1["valid"], true);
    assert_eq!(reason(&app.verify(&admin, json!({"token": limited})).await.1), "rate_limited");
    let mut v = Value::Null;
    for _ in 0..40 {
        v = app.verify(&admin, json!({"token": short})).await.1;
        if reason(&v) == "expired" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reason(&v), "expired");

    // An API key with tokens:verify sees its own account only; without it, no access.
    let verifier =
        secret(&app.create_token(&acc, json!({"name": "v", "kind": "api_key", "scopes": ["tokens:verify"]})).await);
    assert_eq!(app.verify(&verifier, json!({"token": key})).await.1["valid"], true);
    let other = app.create_account("Elsewhere").await;
    let foreign = secret(&app.create_token(&other, json!({"name": "f", "kind": "api_key", "scopes": ["*"]})).await);
    assert_eq!(reason(&app.verify(&verifier, json!({"token": foreign})).await.1), "not_found");
    let (s, _) = app.verify(&key, json!({"token": foreign})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app.verify("tga_nope", json!({"token": key})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

async fn usage_and_last_used(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Usage").await;
    let inst = app.ruled_instance(&acc).await;
    let token = app.create_token(&acc, json!({"name": "u", "kind": "api_key", "scopes": ["messages:send"]})).await;
    let (key, id) = (secret(&token), token["id"].as_str().unwrap().to_string());
    for _ in 0..4 {
        assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(&key)).await.status(), StatusCode::OK);
    }
    for _ in 0..3 {
        assert_eq!(app.bearer(&inst, Method::GET, "/status", Some(&key)).await.status(), StatusCode::FORBIDDEN);
    }
    let other = secret(&app.create_token(&acc, json!({"name": "o", "kind": "api_key", "scopes": ["*"]})).await);
    assert_eq!(app.bearer(&inst, Method::GET, "/status", Some(&other)).await.status(), StatusCode::OK);

    let mut last = Value::Null;
    for _ in 0..100 {
        let (_, usage) = app.admin(Method::GET, &format!("/v1/tokens/{id}/usage?bucket_seconds=60"), None).await;
        let (_, t) = app.admin(Method::GET, &format!("/v1/tokens/{id}"), None).await;
        let sum = |f: &str| usage["buckets"].as_array().unwrap().iter().map(|b| b[f].as_u64().unwrap()).sum::<u64>();
        // The other token's request may land in a later flush: both are waited for.
        let (_, acc_usage) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/usage?bucket_seconds=60"), None).await;
        let acc_allowed: u64 =
            acc_usage["buckets"].as_array().unwrap().iter().map(|b| b["allowed"].as_u64().unwrap()).sum();
        if (sum("allowed"), sum("rejected")) == (4, 3) && t["last_used_at"].is_string() && acc_allowed >= 5 {
            let reasons = &usage["buckets"][0]["by_reason"];
            assert_eq!(reasons["insufficient_scope"], 3, "{usage}");
            assert_eq!(acc_allowed, 5, "the account counts every token's requests");
            app.stop().await;
            return;
        }
        last = usage;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("token usage never matched: {last}");
}

/// Durations with no cap in the contract (a rate-limit window, an API key's lifetime, a
/// grace period) are taken up to 100 years; past that, a clear 422.
async fn long_durations_are_taken_up_to_a_century(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Long").await;
    let inst = app.ruled_instance(&acc).await;
    let century: u64 = 100 * 365 * 24 * 3600;
    let weekly = app
        .create_token(
            &acc,
            json!({"name": "w", "kind": "api_key", "scopes": ["*"], "rate_limit": {"limit": 2, "window_seconds": 604_800},
                "expires_in_seconds": 20 * 365 * 24 * 3600}),
        )
        .await;
    let key = secret(&weekly);
    for want in [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
        assert_eq!(app.bearer(&inst, Method::GET, "/status", Some(&key)).await.status(), want);
    }
    let expires = tokengate_core::Timestamp::parse(weekly["expires_at"].as_str().unwrap()).unwrap();
    assert!(expires.as_secs() - tokengate_core::Timestamp::now().as_secs() > 19 * 365 * 24 * 3600);
    let tokens = format!("/v1/accounts/{acc}/tokens");
    for (body, want) in [
        (json!({"name": "c", "kind": "api_key", "scopes": ["*"], "expires_in_seconds": century}), StatusCode::CREATED),
        (
            json!({"name": "c", "kind": "api_key", "scopes": ["*"], "expires_in_seconds": century + 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"name": "c", "kind": "api_key", "scopes": ["*"], "rate_limit": {"limit": 1, "window_seconds": century + 1}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (s, answer) = app.admin(Method::POST, &tokens, Some(body.clone())).await;
        assert_eq!(s, want, "{body}: {answer}");
        if s == StatusCode::CREATED {
            assert!(!answer["expires_at"].as_str().unwrap().is_empty(), "{answer}");
        }
    }
    // A year of grace for a rotation, of the key and of the Client-Token.
    let id = weekly["id"].as_str().unwrap();
    let (s, rotated) =
        app.admin(Method::POST, &format!("/v1/tokens/{id}/rotate"), Some(json!({"grace_seconds": 31_536_000}))).await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let (_, old) = app.admin(Method::GET, &format!("/v1/tokens/{id}"), None).await;
    let until = tokengate_core::Timestamp::parse(old["revoked_at"].as_str().unwrap()).unwrap();
    assert!(until.as_secs() - tokengate_core::Timestamp::now().as_secs() > 364 * 24 * 3600, "{old}");
    app.generate_security_token(&acc).await;
    app.activate(&acc).await;
    let (s, answer) = app
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/security-token/rotate"),
            Some(json!({"grace_seconds": 31_536_000})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{answer}");
    let (s, answer) = app
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/security-token/rotate"),
            Some(json!({"grace_seconds": century + 1})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
}
