//! OAuth 2.0 (issue 4): the client-credentials flow end to end, introspection and
//! revocation, signing-key rotation, and an independent client and verifier (authlib and
//! PyJWT) driving the whole flow.

use std::process::{Command, Stdio};

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{StoreKind, TestApp};
use crate::on_both_stores;

on_both_stores!(client_credentials_flow, introspection_and_revocation);

impl TestApp {
    /// Creates an OAuth client; returns (client_id, client_secret).
    pub async fn oauth_client(&self, account: &str, scopes: &[&str]) -> (String, String) {
        let body = json!({"name": "partner", "scopes": scopes});
        let (s, c) = self.admin(Method::POST, &format!("/v1/accounts/{account}/oauth-clients"), Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{c}");
        (c["client_id"].as_str().unwrap().to_string(), c["client_secret"].as_str().unwrap().to_string())
    }

    pub async fn token_request(&self, client: &(String, String), form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(self.url("/oauth/token")).basic_auth(&client.0, Some(&client.1)).form(form).send().await.unwrap()
    }

    /// A fresh access token for the client, with the given scope (or all of its own).
    pub async fn access_token(&self, client: &(String, String), scope: Option<&str>) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let res = self.token_request(client, &form).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
    }

    /// `POST /oauth/{endpoint}` authenticated as the client; returns (status, JSON body).
    pub async fn oauth_call(&self, endpoint: &str, client: &(String, String), token: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .post(self.url(&format!("/oauth/{endpoint}")))
            .basic_auth(&client.0, Some(&client.1))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

/// The JSON of one part of a compact JWS (0 header, 1 claims).
pub fn jwt_part(token: &str, part: usize) -> Value {
    let segment = token.split('.').nth(part).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

async fn client_credentials_flow(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Partner").await;
    let inst = app.ruled_instance(&acc).await;
    let client = app.oauth_client(&acc, &["messages:send", "instance:read"]).await;
    assert!(client.1.starts_with("tgs_") && client.1.len() == 40);

    // Metadata and keys.
    let meta: Value =
        app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    let issuer = meta["issuer"].as_str().unwrap().to_string();
    assert_eq!(meta["token_endpoint"], format!("{issuer}/oauth/token"));
    assert_eq!(meta["grant_types_supported"], json!(["client_credentials"]));
    let res = app.http.get(app.url("/.well-known/jwks.json")).send().await.unwrap();
    assert!(res.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    let jwks: Value = res.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0]["alg"].as_str(), keys[0]["use"].as_str(), keys[0]["kty"].as_str()),
        (Some("EdDSA"), Some("sig"), Some("OKP"))
    );
    assert!(keys[0].get("d").is_none(), "no private part in the JWKS");

    // client_secret_basic, all of the client's scopes.
    let res = app.token_request(&client, &[("grant_type", "client_credentials")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "messages:send instance:read");
    let token = body["access_token"].as_str().unwrap();
    let header = jwt_part(token, 0);
    assert_eq!((header["typ"].as_str(), header["alg"].as_str()), (Some("at+jwt"), Some("EdDSA")));
    assert_eq!(header["kid"], keys[0]["kid"]);
    let claims = jwt_part(token, 1);
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["aud"], format!("urn:tokengate:account:{acc}"));
    assert_eq!(claims["sub"], client.0.as_str());
    assert_eq!(claims["client_id"], client.0.as_str());
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
    assert!(claims["jti"].is_string());

    // Through the gateway: the rule's scope is held; the upstream sees who called.
    let res = app.bearer(&inst, Method::POST, "/send-text", Some(token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let seen = app.upstream.last();
    assert_eq!(seen.headers["x-tokengate-token-id"], claims["jti"].as_str().unwrap());
    assert_eq!(seen.headers["x-tokengate-scopes"], "messages:send instance:read");
    assert_eq!(seen.headers["x-tokengate-subject"], client.0.as_str());
    assert!(seen.headers.get("authorization").is_none());
    // Auth schemes are case-insensitive (RFC 9110 §11.1), at the gateway and here.
    for scheme in ["bearer", "BEARER"] {
        let (id, secret) = &inst;
        let res = app
            .gateway
            .post(app.url(&format!("/instances/{id}/token/{secret}/send-text")))
            .header("Authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{scheme}");
    }
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", client.0, client.1));
    let res = app
        .http
        .post(app.url("/oauth/token"))
        .header("Authorization", format!("basic {basic}"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "a lower-case basic scheme");

    // Scope narrowing: a token for instance:read only cannot send.
    let narrow = app.access_token(&client, Some("instance:read")).await;
    assert_eq!(jwt_part(&narrow, 1)["scope"], "instance:read");
    let res = app.bearer(&inst, Method::POST, "/send-text", Some(&narrow)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    assert_eq!(app.bearer(&inst, Method::GET, "/status", Some(&narrow)).await.status(), StatusCode::OK);

    // client_secret_post works too.
    let res = app
        .http
        .post(app.url("/oauth/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", &client.0), ("client_secret", &client.1)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // RFC 6749 §5.2 errors.
    let error = |res: reqwest::Response| async move {
        let status = res.status();
        let challenge = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
        let store = res.headers().get("cache-control").map(|v| v.to_str().unwrap().to_string());
        let body: Value = res.json().await.unwrap();
        (status, body["error"].as_str().unwrap_or_default().to_string(), challenge, store)
    };
    let (s, e, challenge, store) =
        error(app.token_request(&client, &[("grant_type", "client_credentials"), ("scope", "groups:admin")]).await)
            .await;
    assert_eq!((s, e.as_str(), store.as_deref()), (StatusCode::BAD_REQUEST, "invalid_scope", Some("no-store")));
    assert!(challenge.is_none());
    let wrong = (client.0.clone(), {
        use secrecy::ExposeSecret;
        tokengate_core::token::generate(tokengate_core::Prefix::ClientSecret).expose_secret().to_string()
    });
    let (s, e, challenge, _) = error(app.token_request(&wrong, &[("grant_type", "client_credentials")]).await).await;
    assert_eq!((s, e.as_str()), (StatusCode::UNAUTHORIZED, "invalid_client"));
    assert!(challenge.unwrap().starts_with("Basic"));
    let (s, e, ..) = error(app.token_request(&client, &[("grant_type", "password")]).await).await;
    assert_eq!((s, e.as_str()), (StatusCode::BAD_REQUEST, "unsupported_grant_type"));
    let (s, e, ..) = error(app.token_request(&client, &[("scope", "instance:read")]).await).await;
    assert_eq!((s, e.as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    let both = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client.0, Some(&client.1))
        .form(&[("grant_type", "client_credentials"), ("client_id", &client.0), ("client_secret", &client.1)])
        .send()
        .await
        .unwrap();
    assert_eq!(error(both).await.1, "invalid_request");
    let json_body = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client.0, Some(&client.1))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error(json_body).await.1, "invalid_request");
    let repeated = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client.0, Some(&client.1))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(error(repeated).await.1, "invalid_request");

    // Another account's instance refuses the token (its audience is this account).
    let other = app.create_account("Other").await;
    let other_inst = app.ruled_instance(&other).await;
    let res = app.bearer(&other_inst, Method::POST, "/send-text", Some(token)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));

    // Deleting the client ends its tokens at once.
    let (s, _) = app.admin(Method::DELETE, &format!("/v1/accounts/{acc}/oauth-clients/{}", client.0), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(token)).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.token_request(&client, &[("grant_type", "client_credentials")]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (s, _) = app.admin(Method::DELETE, &format!("/v1/accounts/{acc}/oauth-clients/{}", client.0), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, audit) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/audit"), None).await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"oauth_client.created") && actions.contains(&"oauth_client.deleted"), "{actions:?}");

    // Secrets never appear in lists.
    let (_, list) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/oauth-clients"), None).await;
    assert!(!list.to_string().contains("tgs_"));
}

async fn introspection_and_revocation(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Partner").await;
    let inst = app.ruled_instance(&acc).await;
    let client = app.oauth_client(&acc, &["messages:send"]).await;
    let token = app.access_token(&client, None).await;

    let (s, info) = app.oauth_call("introspect", &client, &token).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(info["active"], true);
    assert_eq!(info["scope"], "messages:send");
    assert_eq!(info["client_id"], client.0.as_str());
    assert_eq!(info["kind"], "access_token");
    assert_eq!(info["jti"], jwt_part(&token, 1)["jti"]);

    // Another account's client learns nothing and cannot revoke it.
    let other = app.create_account("Other").await;
    let stranger = app.oauth_client(&other, &["messages:send"]).await;
    assert_eq!(app.oauth_call("introspect", &stranger, &token).await.1, json!({"active": false}));
    assert_eq!(app.oauth_call("revoke", &stranger, &token).await.0, StatusCode::OK);
    assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(&token)).await.status(), StatusCode::OK);

    // Bad client credentials: 401, whatever the token.
    let wrong = (client.0.clone(), stranger.1.clone());
    assert_eq!(app.oauth_call("introspect", &wrong, &token).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.oauth_call("revoke", &wrong, &token).await.0, StatusCode::UNAUTHORIZED);

    // Revocation: the JWT stops working at the gateway at once, and introspects inactive.
    assert_eq!(app.oauth_call("revoke", &client, &token).await.0, StatusCode::OK);
    let res = app.bearer(&inst, Method::POST, "/send-text", Some(&token)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.oauth_call("introspect", &client, &token).await.1, json!({"active": false}));
    // Revoking again, or something that is no token at all, is still 200.
    assert_eq!(app.oauth_call("revoke", &client, &token).await.0, StatusCode::OK);
    assert_eq!(app.oauth_call("revoke", &client, "not-a-token").await.0, StatusCode::OK);
    // A fresh token of the same client still works.
    let fresh = app.access_token(&client, None).await;
    assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(&fresh)).await.status(), StatusCode::OK);

    // API keys: introspected and revoked the same way; the admin token may do it too.
    let key = app.create_token(&acc, json!({"name": "k", "kind": "api_key", "scopes": ["messages:send"]})).await;
    let key_secret = key["token"].as_str().unwrap();
    let (_, info) = app.oauth_call("introspect", &client, key_secret).await;
    assert_eq!((info["active"].as_bool(), info["kind"].as_str()), (Some(true), Some("api_key")));
    assert_eq!(info["sub"], key["id"]);
    assert_eq!(app.oauth_call("introspect", &stranger, key_secret).await.1, json!({"active": false}));
    let res = app
        .http
        .post(app.url("/oauth/revoke"))
        .bearer_auth(&app.admin_token)
        .form(&[("token", key_secret)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.bearer(&inst, Method::POST, "/send-text", Some(key_secret)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (_, shown) = app.admin(Method::GET, &format!("/v1/tokens/{}", key["id"].as_str().unwrap()), None).await;
    assert!(shown["revoked_at"].is_string());

    let (_, audit) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/audit"), None).await;
    let entry = audit["items"].as_array().unwrap().iter().find(|e| e["action"] == "access_token.revoked").unwrap();
    assert_eq!(entry["target"], jwt_part(&token, 1)["jti"]);
    assert_eq!(entry["actor"], format!("oauth-client:{}", client.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_rotation_keeps_old_tokens_valid() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("Rotation").await;
    let inst = app.ruled_instance(&acc).await;
    let client = app.oauth_client(&acc, &["messages:send"]).await;
    let old = app.access_token(&client, None).await;
    let old_kid = jwt_part(&old, 0)["kid"].as_str().unwrap().to_string();

    let (s, rotated) = app.admin(Method::POST, "/v1/signing-keys/rotate", Some(json!({"alg": "ES256"}))).await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    assert_eq!(rotated["alg"], "ES256");
    let new_kid = rotated["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid);

    let jwks: Value = app.http.get(app.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()), "{kids:?}");

    let new = app.access_token(&client, None).await;
    assert_eq!(jwt_part(&new, 0)["kid"], new_kid.as_str());
    assert_eq!(jwt_part(&new, 0)["alg"], "ES256");
    for token in [&old, &new] {
        assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(token)).await.status(), StatusCode::OK);
        assert_eq!(app.oauth_call("introspect", &client, token).await.1["active"], true);
    }

    // RS256 on request; unknown algorithms are refused.
    let (s, rs) = app.admin(Method::POST, "/v1/signing-keys/rotate", Some(json!({"alg": "RS256"}))).await;
    assert_eq!((s, rs["alg"].as_str()), (StatusCode::OK, Some("RS256")));
    let rs_token = app.access_token(&client, None).await;
    assert_eq!(jwt_part(&rs_token, 0)["alg"], "RS256");
    assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(&rs_token)).await.status(), StatusCode::OK);
    for bad in [json!({"alg": "HS256"}), json!({"alg": "none"}), json!({"alg": 3})] {
        let (s, _) = app.admin(Method::POST, "/v1/signing-keys/rotate", Some(bad)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // All three keys still verify their tokens.
    assert_eq!(app.bearer(&inst, Method::POST, "/send-text", Some(&old)).await.status(), StatusCode::OK);
}

/// The whole flow driven by authlib (OAuth client) and PyJWT (verification from the JWKS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_oauth_client_and_jose_verifier() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("Python").await;
    let inst = app.ruled_instance(&acc).await;
    let client = app.oauth_client(&acc, &["messages:send", "instance:read"]).await;
    let input = json!({
        "base_url": app.url(""),
        "client_id": client.0,
        "client_secret": client.1,
        "audience": format!("urn:tokengate:account:{acc}"),
        "gateway_path": format!("/instances/{}/token/{}/send-text", inst.0, inst.1),
    });
    let python = std::env::var("TOKENGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/oauth_e2e.py");
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    }
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(seen["metadata_issuer"], app.url(""));
    assert_eq!(seen["token_type"], "Bearer");
    assert_eq!(seen["scope"], "messages:send");
    assert_eq!(seen["header"]["typ"], "at+jwt");
    assert_eq!(seen["header"]["alg"], "EdDSA");
    assert_eq!(seen["claims"]["client_id"], client.0.as_str());
    assert_eq!(seen["claims"]["scope"], "messages:send");
    assert_eq!(seen["gateway_before"], 200);
    assert_eq!(seen["introspect_before"]["active"], true);
    assert_eq!(seen["introspect_before"]["scope"], "messages:send");
    assert_eq!(seen["revoke_status"], 200);
    assert_eq!(seen["introspect_after"], json!({"active": false}));
    assert_eq!(seen["gateway_after"], 401);
    assert!(seen["gateway_after_www_authenticate"].as_str().unwrap().contains("invalid_token"));
    assert_eq!(seen["greedy_error"], "invalid_scope");
}

/// Every kind of secret the server issues is known to introspection, each seen only by
/// its own account's clients (admin tokens by the admin only); a client secret is
/// revoked by disabling its client, the other kinds that are not bearer tokens are left
/// to the admin API (`unsupported_token_type`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_secret_is_introspected() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("Kinds").await;
    let (inst, inst_token) = app.create_instance(&acc).await;
    let first = app.generate_security_token(&acc).await;
    let client = app.oauth_client(&acc, &["messages:send"]).await;
    let other = app.create_account("Other").await;
    let stranger = app.oauth_client(&other, &["messages:send"]).await;
    let as_admin = |token: String| {
        let req = app.http.post(app.url("/oauth/introspect")).bearer_auth(&app.admin_token).form(&[("token", token)]);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let seen = |info: &Value| {
        (info["active"].as_bool(), info["kind"].as_str().map(str::to_string), info["sub"].as_str().map(str::to_string))
    };
    let active = |kind: &str, sub: &str| (Some(true), Some(kind.to_string()), Some(sub.to_string()));

    let (_, info) = app.oauth_call("introspect", &client, &first).await;
    assert_eq!(seen(&info), active("client_token", &acc), "{info}");
    assert_eq!(info["account_id"], acc.as_str());
    let (_, info) = app.oauth_call("introspect", &client, &inst_token).await;
    assert_eq!(seen(&info), active("instance", &inst), "{info}");
    let (_, info) = app.oauth_call("introspect", &client, &client.1).await;
    assert_eq!(seen(&info), active("client_secret", &client.0), "{info}");
    assert_eq!(info["client_id"], client.0.as_str());
    for secret in [&first, &inst_token, &client.1, &app.admin_token] {
        assert_eq!(app.oauth_call("introspect", &stranger, secret).await.1, json!({"active": false}));
    }
    assert_eq!(app.oauth_call("introspect", &client, &app.admin_token).await.1, json!({"active": false}));
    let info = as_admin(app.admin_token.clone()).await;
    assert_eq!((info["active"].as_bool(), info["kind"].as_str()), (Some(true), Some("admin")), "{info}");
    assert!(info.get("account_id").is_none(), "{info}");
    assert_eq!(seen(&as_admin(inst_token.clone()).await), active("instance", &inst));

    // A rotated Client-Token is active until its grace period ends, and says when.
    let rotate = |grace: u64| {
        let path = format!("/v1/accounts/{acc}/security-token/rotate");
        let app = &app;
        async move { app.admin(Method::POST, &path, Some(json!({"grace_seconds": grace}))).await.1 }
    };
    let rotated = rotate(600).await;
    let second = rotated["token"].as_str().unwrap().to_string();
    let until = tokengate_core::Timestamp::parse(rotated["previous_valid_until"].as_str().unwrap()).unwrap();
    let (_, info) = app.oauth_call("introspect", &client, &first).await;
    assert_eq!(seen(&info), active("client_token", &acc), "{info}");
    assert_eq!(info["exp"], until.as_millis() / 1000);
    let (_, info) = app.oauth_call("introspect", &client, &second).await;
    assert_eq!((info["active"].as_bool(), info.get("exp")), (Some(true), None), "{info}");
    rotate(0).await;
    for gone in [&first, &second] {
        assert_eq!(app.oauth_call("introspect", &client, gone).await.1, json!({"active": false}));
    }

    // A changed character is inactive (as are, below, a deleted instance and client).
    let mut tampered = inst_token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    assert_eq!(app.oauth_call("introspect", &client, &tampered).await.1, json!({"active": false}));

    // Revocation refuses these kinds by their prefix, for any caller, and they keep working.
    for secret in [&inst_token, &first, &app.admin_token, &tampered] {
        for caller in [&client, &stranger] {
            let (s, body) = app.oauth_call("revoke", caller, secret).await;
            assert_eq!((s, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unsupported_token_type")));
        }
    }
    assert_eq!(seen(&as_admin(inst_token.clone()).await), active("instance", &inst));
    assert_eq!(app.admin(Method::GET, "/v1/accounts", None).await.0, StatusCode::OK);

    let (s, _) = app.admin(Method::DELETE, &format!("/v1/instances/{inst}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.oauth_call("introspect", &client, &inst_token).await.1, json!({"active": false}));
    let (s, _) = app.admin(Method::DELETE, &format!("/v1/accounts/{other}/oauth-clients/{}", stranger.0), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(as_admin(stranger.1.clone()).await, json!({"active": false}));

    // A client secret is revoked by disabling its client, as a leak report does: not by
    // another account's client, but by the client itself (or the admin).
    let neighbour = app.oauth_client(&other, &["messages:send"]).await;
    let issued = app.access_token(&client, None).await;
    assert_eq!(app.oauth_call("revoke", &neighbour, &client.1).await.0, StatusCode::OK);
    assert_eq!(app.access_token(&client, None).await.split('.').count(), 3, "still enabled");
    assert_eq!(app.oauth_call("revoke", &client, &client.1).await.0, StatusCode::OK);
    let grant = [("grant_type", "client_credentials")];
    assert_eq!(app.token_request(&client, &grant).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.oauth_call("introspect", &neighbour, &issued).await.1, json!({"active": false}));
    assert_eq!(as_admin(issued).await, json!({"active": false}), "its access tokens end with it");
    assert_eq!(as_admin(client.1.clone()).await, json!({"active": false}));
    let (_, clients) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/oauth-clients"), None).await;
    assert!(clients["items"][0]["disabled_at"].is_string(), "{clients}");
    assert_eq!(app.oauth_call("revoke", &client, &client.1).await.0, StatusCode::UNAUTHORIZED, "it is gone");
    assert_eq!(as_admin(stranger.1.clone()).await, json!({"active": false}));
}
