//! Importing existing keys (SPEC §15): NDJSON lines with the plaintext or only the
//! SHA-256 of a key, used by the gateway like any API key.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{StoreKind, TestApp};
use crate::on_both_stores;

on_both_stores!(imported_keys_work_like_api_keys);

fn sha256_hex(text: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()))
}

impl TestApp {
    pub async fn import(&self, account: &str, ndjson: String) -> (StatusCode, Value) {
        let res = self
            .http
            .post(self.url(&format!("/v1/accounts/{account}/tokens/import")))
            .bearer_auth(&self.admin_token)
            .header("content-type", "application/x-ndjson")
            .body(ndjson)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

async fn imported_keys_work_like_api_keys(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let account = app.create_account("migrating").await;
    let instance = app.ruled_instance(&account).await;
    let in_a_year = time::OffsetDateTime::now_utc().unix_timestamp() + 365 * 86_400;
    let lines = [
        json!({"name": "kong-1", "key": "kong-key-aaaaaaaa-0001", "scopes": ["messages:send"], "external_id": "c-1"})
            .to_string(),
        json!({"name": "legacy", "sha256": sha256_hex("legacy.secret.with-dots.123")}).to_string(),
        json!({"name": "no key"}).to_string(),
        json!({"name": "kong-1 again", "key": "kong-key-aaaaaaaa-0001"}).to_string(),
        String::new(),
        json!({"name": "expiring", "key": "expiring-key-42", "expires_at": in_a_year}).to_string(),
        format!("{{\"name\": \"{}\"}}", "x".repeat(20_000)),
        json!({"name": "rfc3339", "key": "dated-key-777", "expires_at": "2999-01-01T00:00:00Z"}).to_string(),
        "not json".to_string(),
    ];
    let (status, summary) = app.import(&account, lines.join("\n")).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["imported"], 4, "{summary}");
    assert_eq!(summary["skipped"], 1, "the duplicate of line 1");
    let bad: Vec<u64> = summary["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(bad, [3, 7, 9], "{summary}");
    assert_eq!(summary["failed"], 3, "{summary}");

    // The same file again: nothing new.
    let (_, again) = app.import(&account, lines.join("\n")).await;
    assert_eq!((again["imported"].as_u64(), again["skipped"].as_u64()), (Some(0), Some(5)));

    // Accepted by the gateway with their scopes, found by digest (dots and all).
    let res = app.bearer(&instance, Method::POST, "/send-text", Some("kong-key-aaaaaaaa-0001")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let token_id = app.upstream.last().headers["x-tokengate-token-id"].to_str().unwrap().to_string();
    let res = app.bearer(&instance, Method::GET, "/status", Some("kong-key-aaaaaaaa-0001")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "instance:read is not among its scopes");
    let res = app.bearer(&instance, Method::GET, "/status", Some("legacy.secret.with-dots.123")).await;
    assert_eq!(res.status(), StatusCode::OK, "a digest-only import, scopes `*` by default");
    let res = app.bearer(&instance, Method::POST, "/send-text", Some("kong-key-aaaaaaaa-0002")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let (_, verdict) = app.verify(&app.admin_token, json!({"token": "kong-key-aaaaaaaa-0001"})).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    let (_, token) = app.admin(Method::GET, &format!("/v1/tokens/{token_id}"), None).await;
    assert_eq!(token["format"], "imported");
    assert_eq!(token["external_id"], "c-1");
    assert_eq!(token["name"], "kong-1");
    let (_, dated) = app.admin(Method::GET, &format!("/v1/accounts/{account}/tokens"), None).await;
    let dated = dated["items"].as_array().unwrap().iter().find(|t| t["name"] == "rfc3339").unwrap().clone();
    assert_eq!(dated["expires_at"], "2999-01-01T00:00:00Z");

    // Revocation works as for any key.
    assert_eq!(app.admin(Method::DELETE, &format!("/v1/tokens/{token_id}"), None).await.0, StatusCode::NO_CONTENT);
    let res = app.bearer(&instance, Method::POST, "/send-text", Some("kong-key-aaaaaaaa-0001")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A node that starts afterwards (a restart) loads them from the store.
    if kind == StoreKind::Postgres {
        let fresh = app.second_node().await;
        let res = fresh.bearer(&instance, Method::GET, "/status", Some("legacy.secret.with-dots.123")).await;
        assert_eq!(res.status(), StatusCode::OK);
        fresh.stop().await;
    }

    // Other content types and other accounts' ids are refused.
    let res = app
        .http
        .post(app.url(&format!("/v1/accounts/{account}/tokens/import")))
        .bearer_auth(&app.admin_token)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = app.import("00000000-0000-7000-8000-000000000000", lines[0].clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The quota of live tokens is kept line by line: the lines that fit are imported, the
/// ones past it reported by number (a line past it never stops those before it), and a
/// key that exists already is skipped, not counted against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_respect_the_token_quota() {
    let app = TestApp::spawn_with(None, |c| c.max_tokens_per_account = 3).await;
    let account = app.create_account("small").await;
    app.create_token(&account, json!({"name": "live", "kind": "api_key", "scopes": ["*"]})).await;
    let lines: Vec<String> =
        (0..5).map(|i| json!({"name": format!("k{i}"), "key": format!("quota-key-{i:04}")}).to_string()).collect();
    let (status, summary) = app.import(&account, lines.join("\n")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((summary["imported"].as_u64(), summary["skipped"].as_u64()), (Some(2), Some(0)), "{summary}");
    let lines_refused: Vec<u64> =
        summary["errors"].as_array().unwrap().iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines_refused, [3, 4, 5], "{summary}");
    assert!(summary["errors"][0]["error"].as_str().unwrap().contains("quota"));
    let (_, listed) = app.admin(Method::GET, &format!("/v1/accounts/{account}/tokens"), None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 3);
    // Full now: the keys already in are skipped, the new one is refused.
    let (_, again) = app.import(&account, lines[..3].join("\n")).await;
    assert_eq!((again["imported"].as_u64(), again["skipped"].as_u64()), (Some(0), Some(2)), "{again}");
    assert_eq!(again["errors"].as_array().unwrap().len(), 1, "{again}");
    assert_eq!(again["errors"][0]["line"], 3);
}

/// Past 1000 refused lines the answer names no more of them, but counts them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_line_is_counted() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let account = app.create_account("noisy").await;
    let mut lines = vec!["not json".to_string(); 1203];
    lines.push(json!({"name": "good", "key": "the-one-good-key"}).to_string());
    let (status, summary) = app.import(&account, lines.join("\n")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (summary["imported"].as_u64(), summary["failed"].as_u64()),
        (Some(1), Some(1203)),
        "{}",
        summary["failed"]
    );
    assert_eq!(summary["errors"].as_array().unwrap().len(), 1000);
    assert_eq!(summary["errors"][999]["line"], 1000);
}

/// The CLI on a Kong key-auth export (two pages, as `GET /key-auths` returns them) and
/// on CSV; not a terminal here, so plain counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_imports_kong_exports_and_csv() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let account = app.create_account("from-kong").await;
    let instance = app.ruled_instance(&account).await;
    let dir = tempfile::tempdir().unwrap();
    let kong = dir.path().join("key-auths.json");
    let page = |keys: &[(&str, &str)], next: Option<&str>| {
        let data: Vec<Value> = keys
            .iter()
            .map(|(id, key)| json!({"id": id, "key": key, "consumer": {"id": format!("consumer-{id}")}, "created_at": 1_700_000_000, "tags": null, "ttl": null}))
            .collect();
        json!({"data": data, "next": next}).to_string()
    };
    let export = format!(
        "{}\n{}\n",
        page(&[("a1", "kong-plaintext-key-0001"), ("a2", "kong-plaintext-key-0002")], Some("/key-auths?offset=x")),
        page(&[("a3", "kong-plaintext-key-0003"), ("a4", "bad")], None)
    );
    std::fs::write(&kong, export).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::helpers::binary())
            .args(["tokens", "import", "--account", &account])
            .args(args)
            .env("TOKENGATE_URL", app.url(""))
            .env("TOKENGATE_ADMIN_TOKEN", &app.admin_token)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let printed = run(&["--from", "kong", "--scope", "messages:send", kong.to_str().unwrap()]);
    assert!(printed.starts_with("3 imported, 0 already there, 1 refused"), "{printed}");
    assert!(printed.contains("line 4:"), "the bad key is reported at its place: {printed}");
    let res = app.bearer(&instance, Method::POST, "/send-text", Some("kong-plaintext-key-0003")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.bearer(&instance, Method::GET, "/status", Some("kong-plaintext-key-0003")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "--scope applied");
    let again: Value = serde_json::from_str(&run(&["--json", "--from", "kong", kong.to_str().unwrap()])).unwrap();
    assert_eq!((again["imported"].as_u64(), again["skipped"].as_u64()), (Some(0), Some(3)));

    let csv = dir.path().join("keys.csv");
    let digest = sha256_hex("csv-hashed-secret-9");
    std::fs::write(
        &csv,
        format!("name,sha256,scopes,expires_at\nhashed,{digest},instance:read,2999-01-01T00:00:00Z\nbroken,zz,,\n"),
    )
    .unwrap();
    let printed = run(&["--from", "csv", csv.to_str().unwrap()]);
    assert!(printed.starts_with("1 imported, 0 already there, 1 refused"), "{printed}");
    assert!(printed.contains("line 3:"), "{printed}");
    let res = app.bearer(&instance, Method::GET, "/status", Some("csv-hashed-secret-9")).await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// Lines split across the body's chunks at any byte are put back together, and a line
/// too long is reported at its number while the lines after it are imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_split_across_chunks() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let account = app.create_account("chunks").await;
    let mut text = String::new();
    for i in 0..20 {
        text.push_str(&json!({"name": format!("k{i}"), "key": format!("chunked-key-{i:04}")}).to_string());
        text.push('\n');
    }
    text.push_str(&format!("{{\"name\": \"{}\"}}\n", "y".repeat(40_000)));
    text.push_str(&json!({"name": "after", "key": "chunked-key-after"}).to_string());
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = text.as_bytes().chunks(7).map(|c| Ok(c.to_vec())).collect();
    let res = app
        .http
        .post(app.url(&format!("/v1/accounts/{account}/tokens/import")))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    let summary: Value = res.json().await.unwrap();
    assert_eq!(summary["imported"], 21, "{summary}");
    assert_eq!(summary["errors"], json!([{"line": 21, "error": "line longer than 16384 bytes"}]));
}
