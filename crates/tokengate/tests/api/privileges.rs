//! Identities and privileges (SPEC §12), through the real server: role caps on every
//! credential a member creates, ids of other accounts, cross-account token answers,
//! rotation and quota rules, login throttles behind a proxy, files and bad input.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokengate_core::token::{self, Prefix};

use crate::dashboard::{PASSWORD, Visitor, age_sessions, csrf_of, enrollment_of, member};
use crate::helpers::{StoreKind, TestApp};
use crate::on_both_stores;

on_both_stores!(
    other_accounts_tokens_are_answered_as_unknown,
    only_live_unrotated_tokens_rotate_once,
    quotas_hold_under_concurrent_creation,
);

async fn count(app: &TestApp, path: &str) -> usize {
    let (s, list) = app.admin(Method::GET, path, None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    list["items"].as_array().unwrap().len()
}

/// Every create, rotate and revoke form tried above a role's rights is refused and
/// changes nothing in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_caps_apply_to_every_credential() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("Roles").await;
    let owner_id = member(&app, &acc, "owner@example.com", "owner").await;
    member(&app, &acc, "admin@example.com", "admin").await;
    let dev_id = member(&app, &acc, "dev@example.com", "developer").await;
    member(&app, &acc, "viewer@example.com", "viewer").await;
    let tokens = format!("/v1/accounts/{acc}/tokens");
    let clients = format!("/v1/accounts/{acc}/oauth-clients");
    let owners_token = app
        .create_token(
            &acc,
            json!({"name": "o", "kind": "personal", "member_id": owner_id, "scopes": ["*"], "expires_in_seconds": 3600}),
        )
        .await;
    let owners_token = owners_token["id"].as_str().unwrap().to_string();

    let (dev, _) = Visitor::login(&app, "dev@example.com", PASSWORD).await;
    let (viewer, _) = Visitor::login(&app, "viewer@example.com", PASSWORD).await;
    let (admin, _) = Visitor::login(&app, "admin@example.com", PASSWORD).await;
    let before = (count(&app, &tokens).await, count(&app, &clients).await);
    let refused = [
        (&dev, "/dashboard/tokens", vec![("kind", "api_key"), ("name", "k"), ("scopes", "*")], 422),
        (&dev, "/dashboard/tokens", vec![("kind", "api_key"), ("name", "k"), ("scopes", "members:write")], 422),
        (
            &dev,
            "/dashboard/tokens",
            vec![("kind", "personal"), ("name", "p"), ("scopes", "tokens:verify"), ("expires_days", "7")],
            422,
        ),
        (&dev, "/dashboard/oauth-clients", vec![("name", "c"), ("scopes", "*")], 422),
        (&dev, "/dashboard/oauth-clients", vec![("name", "c"), ("scopes", "messages:send security_token:write")], 422),
        (&viewer, "/dashboard/tokens", vec![("kind", "api_key"), ("name", "k"), ("scopes", "messages:read")], 403),
        (
            &viewer,
            "/dashboard/tokens",
            vec![("kind", "personal"), ("name", "p"), ("scopes", "messages:send"), ("expires_days", "7")],
            422,
        ),
        (&viewer, "/dashboard/oauth-clients", vec![("name", "c"), ("scopes", "messages:read")], 403),
    ];
    for (who, path, fields, status) in &refused {
        let mut form = vec![("csrf", who.csrf.as_str())];
        form.extend(fields.iter().copied());
        let (s, html) = who.post(path, &form).await;
        assert_eq!(s.as_u16(), *status, "{path} {fields:?}: {html}");
        if *status == 422 {
            assert!(html.contains("cannot grant the scope"), "a clear message: {html}");
        }
    }
    assert_eq!((count(&app, &tokens).await, count(&app, &clients).await), before, "nothing was created");

    // The owner's personal token: not the developer's to revoke or rotate.
    let revoke = format!("/dashboard/tokens/{owners_token}/revoke");
    let rotate = format!("/dashboard/tokens/{owners_token}/rotate");
    assert_eq!(dev.post(&revoke, &[("csrf", &dev.csrf)]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(dev.post(&rotate, &[("csrf", &dev.csrf), ("grace_seconds", "0")]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(viewer.post(&revoke, &[("csrf", &viewer.csrf)]).await.0, StatusCode::FORBIDDEN);
    let (_, token) = app.admin(Method::GET, &format!("/v1/tokens/{owners_token}"), None).await;
    assert!(token["revoked_at"].is_null(), "{token}");
    assert_eq!(count(&app, &tokens).await, before.0, "no successor either");

    // An API key of the account with `*`: a developer may manage API keys, but rotating
    // this one would hand it a `*` secret, so it is refused and nothing is made.
    let wide = app.create_token(&acc, json!({"name": "w", "kind": "api_key", "scopes": ["*"]})).await;
    let wide = wide["id"].as_str().unwrap().to_string();
    let (s, html) =
        dev.post(&format!("/dashboard/tokens/{wide}/rotate"), &[("csrf", &dev.csrf), ("grace_seconds", "0")]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(html.contains("cannot grant the scope"), "a clear message: {html}");
    assert!(!html.contains("tgk_"), "no secret shown: {html}");
    let (_, token) = app.admin(Method::GET, &format!("/v1/tokens/{wide}"), None).await;
    assert!(token["revoked_at"].is_null(), "{token}");
    assert_eq!(count(&app, &tokens).await, before.0 + 1, "no successor of the wide key");
    // A key within the developer's role rotates.
    let narrow = app.create_token(&acc, json!({"name": "n", "kind": "api_key", "scopes": ["messages:send"]})).await;
    let narrow = narrow["id"].as_str().unwrap().to_string();
    let (s, html) =
        dev.post(&format!("/dashboard/tokens/{narrow}/rotate"), &[("csrf", &dev.csrf), ("grace_seconds", "0")]).await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("tgk_"), "the new secret is shown once: {html}");

    // What the roles do allow still works: a developer's own capped credentials, and an
    // admin acting on the owner's personal token.
    let form = [("csrf", dev.csrf.as_str()), ("kind", "api_key"), ("name", "ci"), ("scopes", "messages:send")];
    assert_eq!(dev.post("/dashboard/tokens", &form).await.0, StatusCode::OK);
    let form = [("csrf", dev.csrf.as_str()), ("name", "svc"), ("scopes", "messages:*")];
    assert_eq!(dev.post("/dashboard/oauth-clients", &form).await.0, StatusCode::OK);
    let form = [
        ("csrf", viewer.csrf.as_str()),
        ("kind", "personal"),
        ("name", "r"),
        ("scopes", "messages:read"),
        ("expires_days", "7"),
    ];
    assert_eq!(viewer.post("/dashboard/tokens", &form).await.0, StatusCode::OK);
    let devs = app
        .create_token(
            &acc,
            json!({"name": "d", "kind": "personal", "member_id": dev_id, "scopes": ["messages:send"], "expires_in_seconds": 3600}),
        )
        .await;
    let own = format!("/dashboard/tokens/{}/revoke", devs["id"].as_str().unwrap());
    assert_eq!(dev.post(&own, &[("csrf", &dev.csrf)]).await.0, StatusCode::OK, "its own personal token");
    assert_eq!(admin.post(&revoke, &[("csrf", &admin.csrf)]).await.0, StatusCode::OK);
    let (_, token) = app.admin(Method::GET, &format!("/v1/tokens/{owners_token}"), None).await;
    assert!(token["revoked_at"].is_string());
}

/// A member of account A reaches no object of account B through any dashboard route
/// that takes an id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_cannot_reach_another_accounts_ids() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let a = app.create_account("A").await;
    let b = app.create_account("B").await;
    member(&app, &a, "owner-a@example.com", "owner").await;
    let b_member = member(&app, &b, "dev-b@example.com", "developer").await;
    let b_token = app.create_token(&b, json!({"name": "k", "kind": "api_key", "scopes": ["messages:send"]})).await;
    let b_token = b_token["id"].as_str().unwrap().to_string();
    let (s, client) = app
        .admin(Method::POST, &format!("/v1/accounts/{b}/oauth-clients"), Some(json!({"name": "c", "scopes": ["x:y"]})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let b_client = client["client_id"].as_str().unwrap().to_string();
    let body = json!({"url": "https://hooks.example.com/b", "events": ["token.created"]});
    let (s, hook) = app.admin(Method::POST, &format!("/v1/accounts/{b}/webhooks"), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let b_hook = hook["id"].as_str().unwrap().to_string();
    let (owner_a, _) = Visitor::login(&app, "owner-a@example.com", PASSWORD).await;

    for route in tokengate::dashboard::ROUTES_WITH_IDS {
        let id = if route.contains("/tokens/") {
            &b_token
        } else if route.contains("/members/") {
            &b_member
        } else if route.contains("/webhooks/") {
            &b_hook
        } else {
            &b_client
        };
        let path = route.replace("{id}", id);
        let (s, _) = owner_a.post(&path, &[("csrf", &owner_a.csrf), ("grace_seconds", "0")]).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(owner_a.get(&format!("/dashboard/usage?token={b_token}")).await.0, StatusCode::NOT_FOUND);
    // B is untouched.
    let (_, token) = app.admin(Method::GET, &format!("/v1/tokens/{b_token}"), None).await;
    assert!(token["revoked_at"].is_null());
    assert_eq!(count(&app, &format!("/v1/accounts/{b}/tokens")).await, 1, "not rotated");
    assert_eq!(count(&app, &format!("/v1/accounts/{b}/members")).await, 1);
    assert_eq!(count(&app, &format!("/v1/accounts/{b}/oauth-clients")).await, 1);
    assert_eq!(count(&app, &format!("/v1/accounts/{b}/webhooks")).await, 1);
}

/// Another account's tokens, whatever their state, are answered byte for byte like a
/// token nobody issued: at the gateway, `/v1/verify` and `/oauth/introspect`.
async fn other_accounts_tokens_are_answered_as_unknown(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let a = app.create_account("A").await;
    let b = app.create_account("B").await;
    let inst = app.ruled_instance(&a).await;
    let verifier = app.create_token(&a, json!({"name": "v", "kind": "api_key", "scopes": ["tokens:verify"]})).await;
    let verifier = verifier["token"].as_str().unwrap().to_string();
    let (_, client) = app
        .admin(Method::POST, &format!("/v1/accounts/{a}/oauth-clients"), Some(json!({"name": "c", "scopes": ["x:y"]})))
        .await;
    let (client_id, client_secret) =
        (client["client_id"].as_str().unwrap().to_string(), client["client_secret"].as_str().unwrap().to_string());

    let key = |scopes: Value, expires: Option<u64>| {
        let mut body = json!({"name": "b", "kind": "api_key", "scopes": scopes});
        if let Some(s) = expires {
            body["expires_in_seconds"] = json!(s);
        }
        app.create_token(&b, body)
    };
    let live = key(json!(["*"]), None).await;
    let revoked = key(json!(["*"]), None).await;
    app.admin(Method::DELETE, &format!("/v1/tokens/{}", revoked["id"].as_str().unwrap()), None).await;
    let expired = key(json!(["*"]), Some(1)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let unknown = {
        use secrecy::ExposeSecret;
        token::generate(Prefix::ApiKey).expose_secret().to_string()
    };

    let gateway = |t: String| {
        let (id, itoken) = &inst;
        let req = app.http.get(app.url(&format!("/instances/{id}/token/{itoken}/status"))).bearer_auth(t);
        async move {
            let res = req.send().await.unwrap();
            let challenge = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
            (res.status(), challenge, res.text().await.unwrap())
        }
    };
    let verify = |t: String| {
        let req = app.http.post(app.url("/v1/verify")).bearer_auth(&verifier).json(&json!({"token": t}));
        async move {
            let res = req.send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    let introspect = |t: String| {
        let req = app
            .http
            .post(app.url("/oauth/introspect"))
            .basic_auth(&client_id, Some(&client_secret))
            .form(&[("token", t)]);
        async move {
            let res = req.send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    let baseline = (gateway(unknown.clone()).await, verify(unknown.clone()).await, introspect(unknown.clone()).await);
    assert_eq!(baseline.0.0, StatusCode::UNAUTHORIZED);
    assert_eq!(baseline.1.1, r#"{"valid":false,"reason":"not_found"}"#);
    assert_eq!(baseline.2.1, r#"{"active":false}"#);
    for (what, t) in [("live", &live), ("revoked", &revoked), ("expired", &expired)] {
        let t = t["token"].as_str().unwrap().to_string();
        let answers = (gateway(t.clone()).await, verify(t.clone()).await, introspect(t.clone()).await);
        assert_eq!(answers, baseline, "another account's {what} token");
    }
    // The same revoked token is reported as revoked to its own account's verifier.
    let own = app.create_token(&b, json!({"name": "v", "kind": "api_key", "scopes": ["tokens:verify"]})).await;
    let res = app
        .http
        .post(app.url("/v1/verify"))
        .bearer_auth(own["token"].as_str().unwrap())
        .json(&json!({"token": revoked["token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["reason"], "revoked");
}

/// Revoked, expired and already-rotated tokens do not rotate; two rotations at once
/// give exactly one successor.
async fn only_live_unrotated_tokens_rotate_once(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Rotate").await;
    let rotate = async |id: &str| {
        app.admin(Method::POST, &format!("/v1/tokens/{id}/rotate"), Some(json!({"grace_seconds": 60}))).await
    };
    let key = || {
        app.create_token(&acc, json!({"name": "k", "kind": "api_key", "scopes": ["a:b"], "expires_in_seconds": 3600}))
    };

    let revoked = key().await;
    let revoked = revoked["id"].as_str().unwrap();
    app.admin(Method::DELETE, &format!("/v1/tokens/{revoked}"), None).await;
    assert_eq!(rotate(revoked).await.0, StatusCode::CONFLICT);

    let expired = app
        .create_token(&acc, json!({"name": "e", "kind": "api_key", "scopes": ["a:b"], "expires_in_seconds": 1}))
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(rotate(expired["id"].as_str().unwrap()).await.0, StatusCode::CONFLICT);

    let once = key().await;
    let once = once["id"].as_str().unwrap();
    assert_eq!(rotate(once).await.0, StatusCode::OK);
    assert_eq!(rotate(once).await.0, StatusCode::CONFLICT, "it has a successor already");

    // Non-object bodies are refused, and rotate nothing.
    let fresh = key().await;
    let fresh = fresh["id"].as_str().unwrap();
    for body in [json!([]), json!(1), json!("x")] {
        let (s, _) = app.admin(Method::POST, &format!("/v1/tokens/{fresh}/rotate"), Some(body)).await;
        assert!(s == StatusCode::UNPROCESSABLE_ENTITY || s == StatusCode::BAD_REQUEST, "{s}");
    }

    let before = count(&app, &format!("/v1/accounts/{acc}/tokens")).await;
    let (x, y) = tokio::join!(rotate(fresh), rotate(fresh));
    let mut statuses = [x.0, y.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    assert_eq!(count(&app, &format!("/v1/accounts/{acc}/tokens")).await, before + 1, "exactly one successor");
}

/// Creations past a quota are refused with `quota_exceeded`, exactly at the limit,
/// even when they race.
async fn quotas_hold_under_concurrent_creation(kind: StoreKind) {
    let database_url = match kind {
        StoreKind::Sqlite => None,
        StoreKind::Postgres => Some(crate::helpers::fresh_postgres_database().await),
    };
    let app = TestApp::spawn_with(database_url, |c| {
        c.max_tokens_per_account = 5;
        c.max_instances_per_account = 3;
        c.max_oauth_clients_per_account = 2;
    })
    .await;
    let acc = app.create_account("Quota").await;
    let upstream = app.upstream.url();
    let cases = [
        (format!("/v1/accounts/{acc}/tokens"), json!({"name": "k", "kind": "api_key", "scopes": ["a:b"]}), 5, 12),
        (format!("/v1/accounts/{acc}/instances"), json!({"name": "i", "upstream_url": upstream}), 3, 8),
        (format!("/v1/accounts/{acc}/oauth-clients"), json!({"name": "c", "scopes": ["a:b"]}), 2, 6),
    ];
    for (path, body, limit, tries) in cases {
        let calls = (0..tries).map(|_| app.admin(Method::POST, &path, Some(body.clone())));
        let results = futures_util::future::join_all(calls).await;
        let created = results.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
        assert_eq!(created, limit, "{path}");
        for (s, b) in results.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
            assert_eq!((*s, b["code"].as_str()), (StatusCode::CONFLICT, Some("quota_exceeded")), "{b}");
        }
        assert_eq!(count(&app, &path).await, limit);
    }
    // Through the dashboard, the same refusal and status.
    member(&app, &acc, "quota@example.com", "owner").await;
    let (owner, _) = Visitor::login(&app, "quota@example.com", PASSWORD).await;
    let form = [("csrf", owner.csrf.as_str()), ("kind", "api_key"), ("name", "k"), ("scopes", "a:b")];
    let (s, html) = owner.post("/dashboard/tokens", &form).await;
    assert_eq!(s, StatusCode::CONFLICT, "{html}");
    assert!(html.contains("quota"), "{html}");
    // A revoked token frees its place.
    let (_, list) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/tokens"), None).await;
    let first = list["items"][0]["id"].as_str().unwrap();
    app.admin(Method::DELETE, &format!("/v1/tokens/{first}"), None).await;
    let body = json!({"name": "k", "kind": "api_key", "scopes": ["a:b"]});
    assert_eq!(app.admin(Method::POST, &format!("/v1/accounts/{acc}/tokens"), Some(body)).await.0, StatusCode::CREATED);
}

/// Behind a trusted proxy the throttle counts clients, not the proxy; one-time-code
/// failures survive a right password; pending logins end; 2FA is not turned off
/// without a code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_throttles_and_the_one_time_code_step() {
    let app = TestApp::spawn_with(None, |c| c.trusted_proxies = vec!["127.0.0.0/8".into()]).await;
    let acc = app.create_account("Login").await;
    member(&app, &acc, "ana@example.com", "admin").await;
    for i in 0..25 {
        let who = format!("nobody{i}@example.com");
        let (_, s) = Visitor::login_from(&app, &who, "wrong", Some(&format!("198.51.100.{}", i % 5))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (_, s) = Visitor::login_from(&app, "ana@example.com", PASSWORD, Some("203.0.113.50")).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "other clients' failures do not lock a new address");
    // The audit log names the client, not the proxy.
    let (ana, _) = Visitor::login_from(&app, "ana@example.com", PASSWORD, Some("203.0.113.51")).await;
    assert_eq!(ana.post("/dashboard/security/configure", &[("csrf", &ana.csrf)]).await.0, StatusCode::OK);
    let (_, audit) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/audit?limit=1"), None).await;
    assert_eq!(audit["items"][0]["ip"], "203.0.113.51");

    // Two-factor login on for ana.
    let (_, html) = ana.get("/dashboard/2fa").await;
    let (secret, totp) = enrollment_of(&html, "ana@example.com");
    let code = totp.generate_current().unwrap();
    let (s, _) = ana.post("/dashboard/2fa/enable", &[("csrf", &ana.csrf), ("secret", &secret), ("code", &code)]).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let wrong = if code == "000000" { "111111" } else { "000000" };

    // Turning it off needs a current code.
    let (s, _) = ana.post("/dashboard/2fa/disable", &[("csrf", &ana.csrf)]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = ana.post("/dashboard/2fa/disable", &[("csrf", &ana.csrf), ("code", wrong)]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(ana.get("/dashboard/2fa").await.1.contains("twofa-disable"), "still on");

    // A pending login ends after 5 wrong codes: the right one then finds no login.
    let otp_step = async |v: &Visitor<'_>, code: &str| {
        let (_, form) = v.get("/login/otp").await;
        if !form.contains("name=\"csrf\"") {
            return StatusCode::SEE_OTHER;
        }
        v.post("/login/otp", &[("csrf", &csrf_of(&form)), ("code", code)]).await.0
    };
    let (pending, _) = Visitor::login_from(&app, "ana@example.com", PASSWORD, Some("203.0.113.60")).await;
    for _ in 0..5 {
        assert_eq!(otp_step(&pending, wrong).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(otp_step(&pending, &totp.generate_current().unwrap()).await, StatusCode::SEE_OTHER);
    assert_ne!(pending.get("/dashboard/security").await.0, StatusCode::OK, "that login is over");

    // And after 5 minutes.
    let (late, _) = Visitor::login_from(&app, "ana@example.com", PASSWORD, Some("203.0.113.61")).await;
    age_sessions(&app, "created_at", 6).await;
    assert_eq!(otp_step(&late, &totp.generate_current().unwrap()).await, StatusCode::SEE_OTHER);
    assert_ne!(late.get("/dashboard/security").await.0, StatusCode::OK);

    // 5 + 2 wrong codes so far; 3 more in a new login reach 10: locked, whatever
    // passwords come between, and the right code is refused.
    for round in 0..3 {
        let (v, s) =
            Visitor::login_from(&app, "ana@example.com", PASSWORD, Some(&format!("203.0.113.{}", 70 + round))).await;
        assert_eq!(s, StatusCode::SEE_OTHER, "the password step still works");
        let status = otp_step(&v, wrong).await;
        assert!(status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS);
    }
    let (v, _) = Visitor::login_from(&app, "ana@example.com", PASSWORD, Some("203.0.113.80")).await;
    assert_eq!(otp_step(&v, &totp.generate_current().unwrap()).await, StatusCode::TOO_MANY_REQUESTS);
}

/// Guesses sent all at once cannot outrun the throttles: each attempt is counted before
/// it is checked, so exactly the free ones are checked (401) and the rest refused (429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_are_counted_before_they_are_checked() {
    let app = TestApp::spawn_with(None, |c| c.trusted_proxies = vec!["127.0.0.0/8".into()]).await;
    let acc = app.create_account("Race").await;
    member(&app, &acc, "ana@example.com", "admin").await;
    member(&app, &acc, "bo@example.com", "admin").await;

    // Passwords: 15 wrong ones for one email, each from its own address, at once.
    let guesses = (0..15).map(|i| {
        let from = format!("198.51.100.{i}");
        let app = &app;
        async move { Visitor::login_from(app, "bo@example.com", "wrong", Some(&from)).await.1 }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (5, 10), "{statuses:?}");

    // One-time codes: 6 pending logins of one member, 5 wrong codes each, all at once:
    // 10 are checked, then the member's code step is locked.
    let (ana, _) = Visitor::login_from(&app, "ana@example.com", PASSWORD, Some("203.0.113.1")).await;
    let (_, html) = ana.get("/dashboard/2fa").await;
    let (secret, totp) = enrollment_of(&html, "ana@example.com");
    let code = totp.generate_current().unwrap();
    let (s, _) = ana.post("/dashboard/2fa/enable", &[("csrf", &ana.csrf), ("secret", &secret), ("code", &code)]).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mut pending = Vec::new();
    for i in 0..6 {
        let (v, s) =
            Visitor::login_from(&app, "ana@example.com", PASSWORD, Some(&format!("203.0.113.{}", 10 + i))).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (_, form) = v.get("/login/otp").await;
        pending.push((v, csrf_of(&form)));
    }
    let guesses = pending.iter().flat_map(|(v, csrf)| {
        (0..5).map(move |_| async move { v.post("/login/otp", &[("csrf", csrf), ("code", wrong)]).await.0 })
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, refused), (10, 20), "{statuses:?}");

    // One pending login, 8 wrong codes at once: it ends after 5 (those past it are
    // not checked), and the right code then finds no login.
    let bo_like = app.create_account("Race2").await;
    member(&app, &bo_like, "cy@example.com", "admin").await;
    let (cy, _) = Visitor::login_from(&app, "cy@example.com", PASSWORD, Some("203.0.113.90")).await;
    let (_, html) = cy.get("/dashboard/2fa").await;
    let (secret, totp) = enrollment_of(&html, "cy@example.com");
    let code = totp.generate_current().unwrap();
    let (s, _) = cy.post("/dashboard/2fa/enable", &[("csrf", &cy.csrf), ("secret", &secret), ("code", &code)]).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (v, _) = Visitor::login_from(&app, "cy@example.com", PASSWORD, Some("203.0.113.91")).await;
    let (_, form) = v.get("/login/otp").await;
    let csrf = csrf_of(&form);
    let form = [("csrf", csrf.as_str()), ("code", wrong)];
    let guesses = (0..8).map(|_| v.post("/login/otp", &form));
    let statuses = futures_util::future::join_all(guesses).await;
    assert!(statuses.iter().all(|(s, _)| *s == StatusCode::UNAUTHORIZED || s.is_redirection()), "{statuses:?}");
    let (_, form) = v.get("/login/otp").await;
    assert!(!form.contains("name=\"csrf\""), "the pending login is over");
}

/// On PostgreSQL the throttle is the deployment's: failures on one node lock the
/// email on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_throttles_are_shared_by_nodes() {
    let a = TestApp::spawn(StoreKind::Postgres).await;
    let b = a.second_node().await;
    let acc = a.create_account("Shared").await;
    member(&a, &acc, "ana@example.com", "admin").await;
    for _ in 0..5 {
        assert_eq!(Visitor::login(&a, "ana@example.com", "wrong").await.1, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(Visitor::login(&b, "ana@example.com", PASSWORD).await.1, StatusCode::TOO_MANY_REQUESTS);
}

/// Every JSON endpoint of the OpenAPI document refuses a body that is not an object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_object_json_bodies_are_refused_everywhere() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("Bodies").await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut tried = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            // GitHub's leak reports are a JSON array by contract, and signed: the
            // signature is checked first (see leaks.rs).
            if op["requestBody"]["content"].get("application/json").is_none() || path == "/v1/leaks/github" {
                continue;
            }
            let concrete =
                path.replace("{acc}", &acc)
                    .replace("{account_id}", &acc)
                    .replace("{app_id}", "1")
                    .split('/')
                    .map(|seg| {
                        if seg.starts_with('{') { tokengate_core::TokenId::new().to_string() } else { seg.to_string() }
                    })
                    .collect::<Vec<_>>()
                    .join("/");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for body in ["[]", "1", "\"x\"", "null", "[{\"name\":\"a\"}]"] {
                let res = app
                    .http
                    .request(method.clone(), app.url(&concrete))
                    .bearer_auth(&app.admin_token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = res.status();
                assert!(
                    status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
                    "{method} {path} with {body}: {status} {}",
                    res.text().await.unwrap()
                );
            }
            tried += 1;
        }
    }
    assert!(tried >= 15, "the document lists the JSON endpoints ({tried})");
    assert_eq!(count(&app, "/v1/accounts").await, 1, "nothing was created");
}
