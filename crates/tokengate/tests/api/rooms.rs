//! Room apps and token04 room tokens through the admin API (issue 5's story), with an
//! independent decoder (Python's `cryptography`) checking what tokengate issues.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{StoreKind, TestApp};
use crate::on_both_stores;

on_both_stores!(room_apps_issue_and_verify);

const SECRET: &str = "fa94dd0f974cf2e293728a526b028271";
const VECTOR: &str = "04AAAAAGVT/xAADDAxMjM0NTY3ODlhYgB9Cyp4BFmXo9vH6W6l6qsgemNorDRlqgACz7VEZ9ATqvGMPGkJqxXGWRcJ1E92POo0XybiZWFtVJrzsyoqmO0N62uR382QgEuGBOrLjU6XqXTiuCmr7kpgOKL4yFl1OVUPLGoGhy7UI6LxzPoT9LQl5GnWcYsyNtJcdwaJFxAB";

/// Decodes with the Python script; the interpreter must have `cryptography`
/// (`scripts/test.sh` provides one in a virtual environment).
fn python_decode(secret: &str, token: &str) -> Value {
    let python = std::env::var("TOKENGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/token04.py");
    let mut child = Command::new(&python)
        .args([script, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "independent decoder failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn room_apps_issue_and_verify(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Rooms").await;
    let apps = format!("/v1/accounts/{acc}/room-apps");

    for (body, want) in [
        (json!({"app_id": 0, "server_secret": SECRET}), 422),
        (json!({"app_id": 4_294_967_296u64, "server_secret": SECRET}), 422),
        (json!({"app_id": 1234567890, "server_secret": "too-short"}), 422),
        (json!({"app_id": 1234567890, "server_secret": format!("{SECRET}x")}), 422),
        (json!({"app_id": "1234567890", "server_secret": SECRET}), 422),
    ] {
        let (s, b) = app.admin(Method::POST, &apps, Some(body.clone())).await;
        assert_eq!(s.as_u16(), want, "{body}: {b}");
    }
    let (s, created) =
        app.admin(Method::POST, &apps, Some(json!({"app_id": 1234567890, "server_secret": SECRET}))).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["app_id"], 1234567890);
    assert!(!created.to_string().contains(SECRET));
    let (s, _) = app.admin(Method::POST, &apps, Some(json!({"app_id": 1234567890, "server_secret": SECRET}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, listed) = app.admin(Method::GET, &apps, None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(SECRET), "the secret is never returned");

    // The SPEC §7 vector: decodes with this secret, and is long expired.
    let verify = |body: Value| app.admin(Method::POST, "/v1/room-tokens/verify", Some(body));
    let (s, v) = verify(json!({"app_id": 1234567890, "token": VECTOR})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((v["valid"].as_bool(), v["reason"].as_str()), (Some(false), Some("expired")), "{v}");
    assert_eq!(python_decode(SECRET, VECTOR)["claims"]["user_id"], "user1");

    // Issue in both layouts; an independent implementation decodes what we issue.
    let issue_path = format!("{apps}/1234567890/tokens");
    let issue = |body: Value| app.admin(Method::POST, &issue_path, Some(body));
    for mode in ["gcm", "cbc"] {
        let (s, issued) = issue(json!({"user_id": "ana", "room_id": "room1",
            "privileges": {"login_room": true, "publish_stream": false}, "ttl_seconds": 3600, "mode": mode}))
        .await;
        assert_eq!(s, StatusCode::CREATED, "{issued}");
        let token = issued["token"].as_str().unwrap();
        assert!(token.starts_with("04"));
        let decoded = python_decode(SECRET, token);
        assert_eq!(decoded["mode"], mode);
        let claims = &decoded["claims"];
        assert_eq!(claims["app_id"], 1234567890);
        assert_eq!(claims["user_id"], "ana");
        assert_eq!(claims["expire"].as_i64().unwrap() - claims["ctime"].as_i64().unwrap(), 3600);
        assert_eq!(decoded["expire"], claims["expire"]);
        assert_eq!(claims["payload"], r#"{"room_id":"room1","privilege":{"1":1,"2":0},"stream_id_list":null}"#);

        let (_, v) =
            verify(json!({"app_id": 1234567890, "token": token, "room_id": "room1", "privilege": "login_room"})).await;
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["user_id"], "ana");
        assert_eq!(v["room_id"], "room1");
        assert_eq!(v["privileges"], json!({"login_room": true, "publish_stream": false}));
        assert!(v["expires_at"].is_string());
        let reason = |v: &Value| v["reason"].as_str().unwrap_or("").to_string();
        assert_eq!(
            reason(&verify(json!({"app_id": 1234567890, "token": token, "room_id": "room2"})).await.1),
            "room_mismatch"
        );
        assert_eq!(
            reason(&verify(json!({"app_id": 1234567890, "token": token, "privilege": "publish_stream"})).await.1),
            "privilege_denied"
        );
        assert_eq!(reason(&verify(json!({"app_id": 42, "token": token})).await.1), "wrong_app", "there is no app 42");
        let mut flipped = token.as_bytes().to_vec();
        let i = flipped.len() / 2;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        let r = reason(&verify(json!({"app_id": 1234567890, "token": flipped})).await.1);
        assert_eq!(r, "malformed", "{mode}: tampered with");
        assert_eq!(reason(&verify(json!({"app_id": 1234567890, "token": "04AAAA"})).await.1), "malformed");
    }

    // Another app of the account, with its own secret: the first app's token is not its.
    let other_secret = "0123456789abcdef0123456789abcdef";
    let (s, _) = app.admin(Method::POST, &apps, Some(json!({"app_id": 333, "server_secret": other_secret}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, first) =
        issue(json!({"user_id": "u", "privileges": {"login_room": true, "publish_stream": true}, "ttl_seconds": 60}))
            .await;
    let (_, v) = verify(json!({"app_id": 333, "token": first["token"]})).await;
    assert_eq!(v["reason"], "wrong_app", "{v}");

    // Two apps sharing one secret: a token of one opens with the other's secret, and is
    // refused as the wrong app.
    let (s, _) = app.admin(Method::POST, &apps, Some(json!({"app_id": 222, "server_secret": SECRET}))).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, for_first) =
        issue(json!({"user_id": "u", "privileges": {"login_room": true, "publish_stream": true}, "ttl_seconds": 60}))
            .await;
    let (_, v) = verify(json!({"app_id": 222, "token": for_first["token"]})).await;
    assert_eq!(v["reason"], "wrong_app", "{v}");

    // Bounds and unknowns.
    for (body, want) in [
        (json!({"user_id": "", "privileges": {"login_room": true, "publish_stream": true}, "ttl_seconds": 60}), 422),
        (json!({"user_id": "u", "privileges": {"login_room": true, "publish_stream": true}, "ttl_seconds": 0}), 422),
        (
            json!({"user_id": "u", "privileges": {"login_room": true, "publish_stream": true}, "ttl_seconds": 86401}),
            422,
        ),
        (
            json!({"user_id": "u", "privileges": {"login_room": true, "publish_stream": true}, "ttl_seconds": 60, "mode": "ecb"}),
            422,
        ),
    ] {
        let (s, b) = issue(body.clone()).await;
        assert_eq!(s.as_u16(), want, "{body}: {b}");
    }
    let (s, _) = app
        .admin(
            Method::POST,
            &format!("{apps}/999/tokens"),
            Some(
                json!({"user_id": "u", "privileges": {"login_room": true, "publish_stream": true}, "ttl_seconds": 60}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let valid = json!({"user_id": "u", "privileges": {"login_room": true, "publish_stream": true}, "ttl_seconds": 60});
    let (s, _) = app.admin(Method::POST, &format!("{apps}/0/tokens"), Some(valid)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Expiry: a one-second token.
    let (_, short) =
        issue(json!({"user_id": "u", "privileges": {"login_room": true, "publish_stream": true}, "ttl_seconds": 1}))
            .await;
    let mut last = Value::Null;
    for _ in 0..40 {
        last = verify(json!({"app_id": 1234567890, "token": short["token"]})).await.1;
        if last["reason"] == "expired" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["reason"], "expired");

    // Audit, and the secret is sealed at rest (not in the SQLite file in the clear).
    let (_, audit) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/audit"), None).await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"room_app.created") && actions.contains(&"room_token.issued"), "{actions:?}");
    if kind == StoreKind::Sqlite {
        let dir = app.data_dir();
        for file in ["tokengate.db", "tokengate.db-wal"] {
            if let Ok(bytes) = std::fs::read(dir.join(file)) {
                assert!(
                    !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                    "{file} holds the secret in the clear"
                );
            }
        }
    }
    let (s, _) = app.admin(Method::DELETE, &format!("{apps}/1234567890"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.admin(Method::DELETE, &format!("{apps}/1234567890"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}
