//! The account security token's lifecycle through the real gateway (issue 2's story).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{CLIENT_TOKEN_NOT_ALLOWED, NULL_NOT_ALLOWED, StoreKind, TestApp};
use crate::on_both_stores;

on_both_stores!(lifecycle, rotation_grace_period, ip_allowlist, audit_and_usage);

async fn lifecycle(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Acme").await;
    let inst = app.create_instance(&acc).await;

    // No token yet: everything passes, nothing is counted for readiness.
    assert_eq!(app.security_token(&acc).await["status"], "none");
    assert_eq!(app.call(&inst, "/status", &[]).await.0, StatusCode::OK);

    // "Configure now": disabled, requests pass and are counted by what they carry.
    let token = app.generate_security_token(&acc).await;
    assert!(token.starts_with("tgc_") && token.len() == 40, "{token}");
    assert_eq!(app.call(&inst, "/status", &[("Client-Token", &token)]).await.0, StatusCode::OK);
    assert_eq!(app.call(&inst, "/status", &[("client-token", &token)]).await.0, StatusCode::OK);
    assert_eq!(app.call(&inst, "/status", &[]).await.0, StatusCode::OK);
    assert_eq!(app.call(&inst, "/status", &[("Client-Token", "tgc_wrong")]).await.0, StatusCode::OK);
    let status = app.wait_readiness(&acc, (2, 1, 1)).await;
    assert_eq!(status["status"], "disabled");
    assert_eq!(status["readiness"]["safe_to_activate"], false);
    // The token is never shown again.
    assert!(!status.to_string().contains(&token));

    // Activate: enforced with the exact contract answers.
    let activated = app.activate(&acc).await;
    assert_eq!(activated["readiness"]["missing"], 1);
    assert_eq!(app.call(&inst, "/status", &[]).await, (StatusCode::FORBIDDEN, NULL_NOT_ALLOWED.to_string()));
    let other = app.generate_security_token_conflict(&acc).await;
    assert_eq!(other, StatusCode::CONFLICT);
    for wrong in ["tgc_wrong", "", "not even close", &token.to_lowercase()] {
        assert_eq!(
            app.call(&inst, "/status", &[("Client-Token", wrong)]).await,
            (StatusCode::FORBIDDEN, CLIENT_TOKEN_NOT_ALLOWED.to_string()),
            "{wrong:?}"
        );
    }
    let before = app.upstream.count();
    assert_eq!(app.call(&inst, "/status", &[("CLIENT-TOKEN", &token)]).await.0, StatusCode::OK);
    assert_eq!(app.call(&inst, "/status", &[("client-token", &token)]).await.0, StatusCode::OK);
    assert_eq!(app.upstream.count(), before + 2, "rejected requests never reach the upstream");
    assert!(app.upstream.last().headers.get("client-token").is_none(), "Client-Token is never forwarded");

    // Deactivate: passes again; activate again: enforced again.
    let (s, body) = app.admin(Method::POST, &format!("/v1/accounts/{acc}/security-token/deactivate"), None).await;
    assert_eq!((s, body["status"].as_str()), (StatusCode::OK, Some("disabled")));
    assert_eq!(app.call(&inst, "/status", &[]).await.0, StatusCode::OK);
    app.activate(&acc).await;
    assert_eq!(app.call(&inst, "/status", &[]).await.0, StatusCode::FORBIDDEN);

    // Delete: back to "none", nothing enforced.
    let (s, _) = app.admin(Method::DELETE, &format!("/v1/accounts/{acc}/security-token"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.security_token(&acc).await["status"], "none");
    assert_eq!(app.call(&inst, "/status", &[]).await.0, StatusCode::OK);
    let (s, _) = app.admin(Method::POST, &format!("/v1/accounts/{acc}/security-token/activate"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing to activate");
    app.stop().await;
}

async fn rotation_grace_period(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Rotating").await;
    let inst = app.create_instance(&acc).await;
    let old = app.generate_security_token(&acc).await;
    app.activate(&acc).await;

    let (s, body) = app
        .admin(Method::POST, &format!("/v1/accounts/{acc}/security-token/rotate"), Some(json!({"grace_seconds": 2})))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let new = body["token"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(body["status"], "active");
    let until = body["previous_valid_until"].as_str().expect("a grace deadline").to_string();
    assert_eq!(app.security_token(&acc).await["previous_valid_until"], until.as_str());

    // Inside the grace period both work.
    assert_eq!(app.call(&inst, "/x", &[("Client-Token", &old)]).await.0, StatusCode::OK);
    assert_eq!(app.call(&inst, "/x", &[("Client-Token", &new)]).await.0, StatusCode::OK);
    // After it, only the new one.
    let deadline = tokengate_core::Timestamp::parse(&until).unwrap();
    while tokengate_core::Timestamp::now() <= deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.call(&inst, "/x", &[("Client-Token", &old)]).await,
        (StatusCode::FORBIDDEN, CLIENT_TOKEN_NOT_ALLOWED.to_string())
    );
    assert_eq!(app.call(&inst, "/x", &[("Client-Token", &new)]).await.0, StatusCode::OK);

    // Only the token replaced at the last rotation is kept: two rotations drop the first.
    let (_, r1) = app
        .admin(Method::POST, &format!("/v1/accounts/{acc}/security-token/rotate"), Some(json!({"grace_seconds": 600})))
        .await;
    let (_, r2) = app
        .admin(Method::POST, &format!("/v1/accounts/{acc}/security-token/rotate"), Some(json!({"grace_seconds": 600})))
        .await;
    let (t1, t2) = (r1["token"].as_str().unwrap(), r2["token"].as_str().unwrap());
    assert_eq!(app.call(&inst, "/x", &[("Client-Token", &new)]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.call(&inst, "/x", &[("Client-Token", t1)]).await.0, StatusCode::OK);
    assert_eq!(app.call(&inst, "/x", &[("Client-Token", t2)]).await.0, StatusCode::OK);

    // grace_seconds 0: the replaced token stops at once; bounds are checked.
    let (_, r3) = app
        .admin(Method::POST, &format!("/v1/accounts/{acc}/security-token/rotate"), Some(json!({"grace_seconds": 0})))
        .await;
    assert_eq!(app.call(&inst, "/x", &[("Client-Token", t2)]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.call(&inst, "/x", &[("Client-Token", r3["token"].as_str().unwrap())]).await.0, StatusCode::OK);
    for bad in
        [json!({"grace_seconds": -1}), json!({"grace_seconds": "10"}), json!({"grace_seconds": 3_153_600_001u64})]
    {
        let (s, body) = app.admin(Method::POST, &format!("/v1/accounts/{acc}/security-token/rotate"), Some(bad)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["error"].is_string());
    }
    app.stop().await;
}

async fn ip_allowlist(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Restricted").await;
    let inst = app.create_instance(&acc).await;
    let path = format!("/v1/accounts/{acc}/ip-allowlist");

    let (s, body) = app.admin(Method::PUT, &path, Some(json!({"cidrs": ["203.0.113.0/24", "2001:db8::/32"]}))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["cidrs"], json!(["203.0.113.0/24", "2001:db8::/32"]));
    assert_eq!(
        app.call(&inst, "/x", &[]).await,
        (StatusCode::FORBIDDEN, r#"{"error":"127.0.0.1 not allowed"}"#.into())
    );
    // X-Forwarded-For from an untrusted peer is not believed.
    assert_eq!(app.call(&inst, "/x", &[("X-Forwarded-For", "203.0.113.9")]).await.0, StatusCode::FORBIDDEN);

    let (s, _) = app.admin(Method::PUT, &path, Some(json!({"cidrs": ["127.0.0.0/8", "::1/128"]}))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.call(&inst, "/x", &[]).await.0, StatusCode::OK);

    let (s, body) = app.admin(Method::PUT, &path, Some(json!({"cidrs": ["10.0.0.0/33"]}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(app.call(&inst, "/x", &[]).await.0, StatusCode::OK, "a refused update changes nothing");

    let (s, _) = app.admin(Method::PUT, &path, Some(json!({"cidrs": ["192.0.2.1"]}))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.call(&inst, "/x", &[]).await.0, StatusCode::FORBIDDEN);
    let (s, _) = app.admin(Method::PUT, &path, Some(json!({"cidrs": []}))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.call(&inst, "/x", &[]).await.0, StatusCode::OK, "an empty list turns the allowlist off");
    app.stop().await;
}

async fn audit_and_usage(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Audited").await;
    let (inst_id, inst_token) = app.create_instance(&acc).await;
    let inst = (inst_id.clone(), inst_token);
    let token = app.generate_security_token(&acc).await;
    app.activate(&acc).await;
    for _ in 0..3 {
        assert_eq!(app.call(&inst, "/a", &[("Client-Token", &token)]).await.0, StatusCode::OK);
    }
    for _ in 0..2 {
        assert_eq!(app.call(&inst, "/a", &[]).await.0, StatusCode::FORBIDDEN);
    }
    assert_eq!(app.call(&inst, "/a", &[("Client-Token", "tgc_bad")]).await.0, StatusCode::FORBIDDEN);

    let (s, audit) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/audit?limit=50"), None).await;
    assert_eq!(s, StatusCode::OK);
    let items = audit["items"].as_array().unwrap();
    let actions: Vec<(&str, &str)> =
        items.iter().map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap())).collect();
    assert!(actions.contains(&("instance.created", inst_id.as_str())), "{actions:?}");
    assert!(actions.contains(&("security_token.generated", acc.as_str())), "{actions:?}");
    assert!(actions.contains(&("security_token.activated", acc.as_str())), "{actions:?}");
    assert_eq!(actions.first().map(|a| a.0), Some("security_token.activated"), "newest first");
    assert!(items.iter().all(|e| e["actor"].as_str().unwrap().starts_with("admin:") && e["at"].is_string()));
    assert!(!audit.to_string().contains(&token));

    // Usage: 3 forwarded, 2 missing, 1 invalid, within the flush interval.
    let mut last = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, usage) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/usage?bucket_seconds=60"), None).await;
        let sum = |f: &str| usage["buckets"].as_array().unwrap().iter().map(|b| b[f].as_u64().unwrap()).sum::<u64>();
        if (sum("allowed"), sum("rejected")) == (3, 3) {
            let reasons = usage["buckets"].as_array().unwrap().iter().fold(serde_json::Map::new(), |mut m, b| {
                for (k, v) in b["by_reason"].as_object().unwrap() {
                    let n = m.get(k).and_then(|x| x.as_u64()).unwrap_or(0) + v.as_u64().unwrap();
                    m.insert(k.clone(), n.into());
                }
                m
            });
            assert_eq!(reasons.get("client_token_missing"), Some(&json!(2)));
            assert_eq!(reasons.get("client_token_invalid"), Some(&json!(1)));
            assert_eq!(reasons.get("forwarded"), Some(&json!(3)));
            app.stop().await;
            return;
        }
        last = usage;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("usage never matched the requests sent: {last}");
}

impl TestApp {
    async fn generate_security_token_conflict(&self, account: &str) -> StatusCode {
        self.admin(Method::POST, &format!("/v1/accounts/{account}/security-token"), None).await.0
    }
}
