//! The admin API: resources, bad input of every kind, and the operational endpoints.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{StoreKind, TestApp};
use crate::on_both_stores;

on_both_stores!(
    instances_and_members,
    bad_input_is_a_clear_4xx,
    concurrent_patches_of_different_fields_all_hold,
    a_removed_member_keeps_no_personal_token
);

/// Patches of different fields sent at once all hold: one naming the instance never
/// writes back the rules it read before another patch set them (which could drop an
/// instance's bearer check).
async fn concurrent_patches_of_different_fields_all_hold(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Patches").await;
    let (id, _) = app.create_instance(&acc).await;
    let rules = json!([{"methods": ["POST"], "path": "/send-*", "scopes": ["messages:send"]}]);
    let path = format!("/v1/instances/{id}");
    let patches = (0..24).map(|i| {
        let body = if i == 12 { json!({"rules": rules}) } else { json!({"name": format!("n{i}")}) };
        app.admin(Method::PATCH, &path, Some(body))
    });
    for (s, body) in futures_util::future::join_all(patches).await {
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let (_, now) = app.admin(Method::GET, &path, None).await;
    assert_eq!(now["rules"][0]["path"], "/send-*", "{now}");
    assert!(now["name"].as_str().unwrap().starts_with('n'), "{now}");
    // The answer to a patch is the instance as stored.
    let (_, answer) = app.admin(Method::PATCH, &path, Some(json!({"name": "last"}))).await;
    assert_eq!((answer["name"].as_str(), answer["rules"][0]["path"].as_str()), (Some("last"), Some("/send-*")));
}

/// Personal tokens created or rotated while their member is being removed: each either
/// is refused (the member is gone) or exists before the removal and is revoked with it,
/// never left working for a member who no longer exists (and no deadlock between the
/// two on PostgreSQL).
async fn a_removed_member_keeps_no_personal_token(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Leavers").await;
    let body = json!({"email": "leaver@example.com", "password": "correct horse battery", "role": "developer"});
    let (_, member) = app.admin(Method::POST, &format!("/v1/accounts/{acc}/members"), Some(body)).await;
    let member_id = member["id"].as_str().unwrap().to_string();
    let tokens_path = format!("/v1/accounts/{acc}/tokens");
    let pat = json!({"name": "p", "kind": "personal", "member_id": member_id,
                     "scopes": ["messages:send"], "expires_in_seconds": 3600});
    // Rotations of personal tokens made before, each once, race the removal as well.
    let mut existing = Vec::new();
    for _ in 0..4 {
        existing
            .push(app.admin(Method::POST, &tokens_path, Some(pat.clone())).await.1["id"].as_str().unwrap().to_string());
    }
    let creations = (0..12).map(|_| app.admin(Method::POST, &tokens_path, Some(pat.clone())));
    let rotate_paths: Vec<String> = existing.iter().map(|id| format!("/v1/tokens/{id}/rotate")).collect();
    let rotations = rotate_paths.iter().map(|path| app.admin(Method::POST, path, Some(json!({}))));
    let removal = async {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        app.admin(Method::DELETE, &format!("/v1/members/{member_id}"), None).await
    };
    let (mut created, rotated, (removed, _)) =
        tokio::join!(futures_util::future::join_all(creations), futures_util::future::join_all(rotations), removal);
    assert_eq!(removed, StatusCode::NO_CONTENT);
    for (s, token) in rotated {
        // A rotation answers like a creation (the new token), finds the member gone, or
        // finds the token already revoked with it (409).
        match s {
            StatusCode::OK => created.push((StatusCode::CREATED, token)),
            StatusCode::NOT_FOUND | StatusCode::CONFLICT => {}
            s => panic!("{s}: {token}"),
        }
    }
    let (_, audit) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/audit?limit=500"), None).await;
    let revoked: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "token.revoked" && e["detail"]["reason"] == "member_removed")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    for (s, token) in created {
        match s {
            StatusCode::CREATED => {
                let (_, v) = app.verify(&app.admin_token, json!({"token": token["token"]})).await;
                assert_eq!((v["valid"].as_bool(), v["reason"].as_str()), (Some(false), Some("revoked")), "{v}");
                // Each one is a revocation of its own (audited; webhooks hear token.revoked).
                assert!(revoked.contains(&token["id"].as_str().unwrap()), "{token} {revoked:?}");
            }
            s => assert_eq!(s, StatusCode::NOT_FOUND, "{token}"),
        }
    }
    let (s, _) = app.admin(Method::POST, &tokens_path, Some(pat)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn instances_and_members(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("  Acme Ltda  ").await;
    let (s, account) = app.admin(Method::GET, &format!("/v1/accounts/{acc}"), None).await;
    assert_eq!((s, account["name"].as_str()), (StatusCode::OK, Some("Acme Ltda")));
    let (_, list) = app.admin(Method::GET, "/v1/accounts", None).await;
    assert!(list["items"].as_array().unwrap().iter().any(|a| a["id"] == acc.as_str()));

    let (id, token) = app.create_instance(&acc).await;
    assert!(token.starts_with("tgi_") && token.len() == 40);
    let (s, listed) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/instances"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert!(!listed.to_string().contains(&token), "lists never carry secrets");
    assert!(listed["items"][0].get("token").is_none());
    let (s, one) = app.admin(Method::GET, &format!("/v1/instances/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(one.get("token").is_none());

    let (s, patched) = app.admin(Method::PATCH, &format!("/v1/instances/{id}"), Some(json!({"name": "renamed"}))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(patched["name"], "renamed");
    assert_eq!(patched["upstream_url"], app.upstream.url().as_str());

    let member = json!({"email": "Ana@Example.com", "password": "correct horse battery", "role": "developer"});
    let (s, created) = app.admin(Method::POST, &format!("/v1/accounts/{acc}/members"), Some(member.clone())).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["email"], "ana@example.com");
    assert_eq!(created["role"], "developer");
    assert!(!created.to_string().contains("correct horse"));
    let (s, _) = app.admin(Method::POST, &format!("/v1/accounts/{acc}/members"), Some(member)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, members) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/members"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(members["items"].as_array().unwrap().len(), 1);
    assert!(!members.to_string().contains("argon2"), "no password hash in lists");
    let mid = created["id"].as_str().unwrap();
    let (s, _) = app.admin(Method::DELETE, &format!("/v1/members/{mid}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.admin(Method::DELETE, &format!("/v1/members/{mid}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    for bad in [
        json!({"email": "nope", "password": "long enough pw", "role": "viewer"}),
        json!({"email": "a@b.c", "password": "short", "role": "viewer"}),
        json!({"email": "a@b.c", "password": "long enough pw", "role": "emperor"}),
    ] {
        let (s, body) = app.admin(Method::POST, &format!("/v1/accounts/{acc}/members"), Some(bad)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    app.stop().await;
}

async fn bad_input_is_a_clear_4xx(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Bad").await;
    let (inst, inst_token) = app.create_instance(&acc).await;
    let raw = |method: Method, path: &str, body: &'static [u8], content_type: &str| {
        let req = app
            .http
            .request(method, app.url(path))
            .bearer_auth(&app.admin_token)
            .header("Content-Type", content_type.to_string())
            .body(body);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            let body: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap_or(Value::Null);
            (status, body)
        }
    };
    let cases: Vec<(Method, String, &'static [u8], &str, u16)> = vec![
        (Method::POST, "/v1/accounts".into(), b"{\"name\": ", "application/json", 400),
        (Method::POST, "/v1/accounts".into(), b"{\"name\": \"x\",,}", "application/json", 400),
        (Method::POST, "/v1/accounts".into(), b"{\"name\": 5}", "application/json", 422),
        (Method::POST, "/v1/accounts".into(), b"{\"nome\": \"x\"}", "application/json", 422),
        (Method::POST, "/v1/accounts".into(), b"{\"name\": \"\"}", "application/json", 422),
        (Method::POST, "/v1/accounts".into(), b"{\"name\": \"x\"}", "text/plain", 415),
        (Method::POST, "/v1/accounts".into(), b"\xff\xfe{", "application/json", 400),
        (
            Method::POST,
            format!("/v1/accounts/{acc}/instances"),
            b"{\"name\":\"x\",\"upstream_url\":\"ftp://x\"}",
            "application/json",
            422,
        ),
        (
            Method::POST,
            format!("/v1/accounts/{acc}/instances"),
            b"{\"name\":\"x\",\"upstream_url\":\"http://u:p@x\"}",
            "application/json",
            422,
        ),
        (
            Method::POST,
            format!("/v1/accounts/{acc}/instances"),
            b"{\"name\":\"x\",\"upstream_url\":\"http://x\",\"rules\":[{\"path\":\"nope\"}]}",
            "application/json",
            422,
        ),
        (Method::POST, format!("/v1/accounts/{acc}/instances"), b"{\"name\":\"x\"}", "application/json", 422),
        (Method::PATCH, format!("/v1/instances/{inst}"), b"{\"upstream_url\": 7}", "application/json", 422),
        (
            Method::PUT,
            format!("/v1/accounts/{acc}/ip-allowlist"),
            b"{\"cidrs\": \"10.0.0.0/8\"}",
            "application/json",
            422,
        ),
        (Method::GET, "/v1/accounts/not-an-id".into(), b"", "application/json", 404),
        (Method::GET, "/v1/accounts/018f0000-0000-7000-8000-000000000000".into(), b"", "application/json", 404),
        (Method::GET, "/v1/instances/0".into(), b"", "application/json", 404),
        (Method::DELETE, "/v1/instances/018f0000-0000-7000-8000-000000000000".into(), b"", "application/json", 404),
        (
            Method::POST,
            "/v1/accounts/018f0000-0000-7000-8000-000000000000/security-token".into(),
            b"",
            "application/json",
            404,
        ),
        (
            Method::POST,
            "/v1/accounts/018f0000-0000-7000-8000-000000000000/security-token/rotate".into(),
            b"{}",
            "application/json",
            404,
        ),
        (Method::POST, format!("/v1/accounts/{acc}/security-token/rotate"), b"{}", "application/json", 404),
        (Method::GET, format!("/v1/accounts/{acc}/usage?bucket_seconds=7"), b"", "application/json", 422),
        (Method::GET, format!("/v1/accounts/{acc}/usage?since=yesterday"), b"", "application/json", 422),
        (Method::GET, format!("/v1/accounts/{acc}/audit?limit=0"), b"", "application/json", 422),
        (Method::GET, format!("/v1/accounts/{acc}/audit?limit=abc"), b"", "application/json", 422),
        // No store keeps a NUL in text (PostgreSQL refuses it): a 422, not a 503.
        (Method::POST, "/v1/accounts".into(), b"{\"name\":\"a\\u0000b\"}", "application/json", 422),
        (
            Method::POST,
            format!("/v1/accounts/{acc}/webhooks"),
            b"{\"url\":\"https://h.example/a\\u0000b\",\"events\":[\"token.created\"]}",
            "application/json",
            422,
        ),
        (
            Method::POST,
            format!("/v1/accounts/{acc}/trusted-issuers"),
            b"{\"issuer\":\"https://idp.example\",\"jwks_uri\":\"https://idp.example/k\\u0000\",\"audience\":\"a\"}",
            "application/json",
            422,
        ),
        // Instants RFC 3339 cannot write are refused (no overflow on the way).
        (Method::GET, format!("/v1/accounts/{acc}/usage?since=-9223372036854775"), b"", "application/json", 422),
        (Method::GET, format!("/v1/accounts/{acc}/usage?since=9223372036854775807"), b"", "application/json", 422),
        // A path id that is not even UTF-8 names nothing.
        (Method::GET, "/v1/tokens/%FF".into(), b"", "application/json", 404),
        (Method::GET, "/v1/accounts/%C3%28/instances".into(), b"", "application/json", 404),
        (Method::GET, "/v1/nothing-here".into(), b"", "application/json", 404),
        (Method::PUT, "/v1/accounts".into(), b"", "application/json", 405),
    ];
    for (method, path, body, ct, want) in cases {
        let (status, answer) = raw(method.clone(), &path, body, ct).await;
        assert_eq!(status.as_u16(), want, "{method} {path} {:?}: {answer}", String::from_utf8_lossy(body));
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {path}: {answer}");
    }
    // Empty query values are the defaults, as if absent.
    for path in [format!("/v1/accounts/{acc}/usage?since=&bucket_seconds="), format!("/v1/accounts/{acc}/audit?limit=")]
    {
        let (status, answer) = raw(Method::GET, &path, b"", "application/json").await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    }

    // Oversized admin body.
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(100_000));
    let res = app
        .http
        .post(app.url("/v1/accounts"))
        .bearer_auth(&app.admin_token)
        .header("Content-Type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Authentication: none, wrong, checksum-broken, non-UTF-8.
    let mut broken = app.admin_token.clone().into_bytes();
    broken[12] = if broken[12] == b'z' { b'y' } else { b'z' };
    for auth in [
        None,
        Some(b"Bearer nope".to_vec()),
        Some(format!("Bearer {}", String::from_utf8(broken).unwrap()).into_bytes()),
        Some(b"Bearer \xff\xfe".to_vec()),
    ] {
        let mut req = app.http.get(app.url("/v1/accounts"));
        if let Some(a) = auth {
            req = req.header("Authorization", reqwest::header::HeaderValue::from_bytes(&a).unwrap());
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers().contains_key("www-authenticate"));
    }

    // Gateway: non-UTF-8 Client-Token, oversized headers.
    app.generate_security_token(&acc).await;
    app.activate(&acc).await;
    let gw = app.url(&format!("/instances/{inst}/token/{inst_token}/x"));
    let res = app
        .http
        .get(&gw)
        .header("Client-Token", reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.text().await.unwrap(), r#"{"error":"Client-Token not allowed"}"#);
    let res = app.http.get(&gw).header("X-Big", "a".repeat(20_000)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(res.text().await.unwrap().contains("error"));

    // Nothing half-written: the refused creations left no instance behind.
    let (_, listed) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/instances"), None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_endpoints() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    for path in ["/healthz", "/readyz"] {
        assert_eq!(app.http.get(app.url(path)).send().await.unwrap().status(), StatusCode::OK, "{path}");
    }
    let openapi: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3.1"));
    // Every string field says that NUL is refused (a 422, see bad_input_is_a_clear_4xx):
    // by a pattern, or beside a pattern of its own.
    let schemas = openapi["components"]["schemas"].as_object().unwrap();
    let mut strings = 0;
    for (name, schema) in schemas {
        for (field, property) in schema["properties"].as_object().into_iter().flatten() {
            if property["type"] == "string" && property.get("enum").is_none() {
                strings += 1;
                let said = property["pattern"] == "^[^\\u0000]*$" || property["not"]["pattern"] == "\\u0000";
                assert!(said, "{name}.{field}: {property}");
            }
        }
    }
    assert!(strings > 20, "{strings}");
    for path in [
        "/v1/accounts",
        "/v1/accounts/{acc}/instances",
        "/v1/instances/{id}",
        "/v1/accounts/{acc}/security-token",
        "/v1/accounts/{acc}/security-token/activate",
        "/v1/accounts/{acc}/security-token/rotate",
        "/v1/accounts/{acc}/ip-allowlist",
        "/v1/accounts/{acc}/usage",
        "/v1/accounts/{acc}/audit",
        "/v1/members/{id}",
        "/v1/accounts/{acc}/tokens",
        "/v1/accounts/{acc}/oauth-clients",
        "/v1/signing-keys/rotate",
        "/v1/accounts/{acc}/trusted-issuers",
        "/oauth/token",
        "/oauth/introspect",
        "/oauth/revoke",
        "/v1/tokens/{id}/rotate",
        "/v1/verify",
        "/v1/accounts/{acc}/room-apps",
        "/v1/accounts/{acc}/room-apps/{app_id}/tokens",
        "/v1/room-tokens/verify",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }

    let acc = app.create_account("M").await;
    let inst = app.create_instance(&acc).await;
    app.call(&inst, "/x", &[]).await;
    app.call(&(inst.0.clone(), "tgi_bad".into()), "/x", &[]).await;
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tokengate_gateway_requests_total{outcome=\"forwarded\",reason=\"ok\"}"), "{metrics}");
    assert!(metrics.contains("reason=\"instance_not_found\""), "{metrics}");
    assert!(metrics.contains("tokengate_gateway_request_duration_seconds_bucket"), "{metrics}");
    app.stop().await;
}
