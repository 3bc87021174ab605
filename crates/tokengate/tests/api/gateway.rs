//! Forwarding through the gateway: the Z-API corpus, streaming, headers, upstream
//! failures and the limits.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{StoreKind, TestApp};
use crate::on_both_stores;

on_both_stores!(zapi_corpus_is_forwarded_unchanged);

/// Replays the corpus of Z-API-style requests (`corpus.rs`) through an instance with an
/// active token: method, path and query, body bytes and content type arrive unchanged.
async fn zapi_corpus_is_forwarded_unchanged(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acc = app.create_account("Z").await;
    let (id, inst_token) = app.create_instance(&acc).await;
    let client_token = app.generate_security_token(&acc).await;
    app.activate(&acc).await;

    let corpus = crate::corpus::zapi_corpus();
    assert!(corpus.len() >= 178, "{}", corpus.len());
    for req in corpus {
        let name = &req.name;
        let method = Method::from_bytes(req.method.as_bytes()).unwrap();
        let url = app.url(&format!("/instances/{id}/token/{inst_token}{}", req.path_and_query));
        let mut builder = app.http.request(method.clone(), url);
        for (k, v) in &req.headers {
            builder = builder.header(*k, v);
        }
        builder = builder.header("Client-Token", &client_token);
        if let Some(ct) = &req.content_type {
            builder = builder.header("Content-Type", ct);
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let res = builder.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{name}");
        let seen = app.upstream.last();
        assert_eq!(seen.method, method.as_str(), "{name}");
        assert_eq!(seen.path_and_query, req.path_and_query, "{name}");
        assert_eq!(seen.body, req.body.clone().unwrap_or_default(), "{name}");
        if let Some(ct) = &req.content_type {
            assert_eq!(seen.headers.get("content-type").unwrap().to_str().unwrap(), ct, "{name}");
        }
        assert!(seen.headers.get("client-token").is_none(), "{name}: Client-Token forwarded");
        assert_eq!(seen.headers.get("x-tokengate-account").unwrap().to_str().unwrap(), acc, "{name}");
        for (k, v) in &req.headers {
            assert_eq!(seen.headers.get(*k).unwrap().to_str().unwrap(), v, "{name}: {k} passes untouched");
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_rewritten_as_a_proxy_should() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("H").await;
    let inst = app.create_instance(&acc).await;
    let (id, token) = &inst;
    let res = app
        .http
        .get(app.url(&format!("/instances/{id}/token/{token}/a/b%20c?x=1&y=%2F")))
        .header("X-Forwarded-For", "198.51.100.1")
        .header("X-Tokengate-Account", "spoofed")
        .header("X-Tokengate-Token-Id", "spoofed")
        .header("Connection", "keep-alive, X-Drop-Me")
        .header("X-Drop-Me", "1")
        .header("X-Keep-Me", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), r#"{"ok":true}"#);
    let seen = app.upstream.last();
    assert_eq!(seen.path_and_query, "/a/b%20c?x=1&y=%2F");
    let h = |n: &str| seen.headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h("x-forwarded-for").as_deref(), Some("127.0.0.1"), "an untrusted client's XFF is replaced");
    assert_eq!(h("x-tokengate-account"), Some(acc.clone()));
    assert_eq!(h("x-tokengate-token-id"), None);
    assert_eq!(h("x-drop-me"), None, "headers named by Connection are hop-by-hop");
    assert_eq!(h("x-keep-me").as_deref(), Some("2"));
    assert_eq!(h("host").as_deref(), Some(app.upstream.addr.to_string().as_str()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_forwarded_for_is_used_for_the_allowlist() {
    let app = TestApp::spawn_with(None, |c| c.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    let acc = app.create_account("P").await;
    let inst = app.create_instance(&acc).await;
    let (s, _) = app
        .admin(Method::PUT, &format!("/v1/accounts/{acc}/ip-allowlist"), Some(json!({"cidrs": ["203.0.113.0/24"]})))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.call(&inst, "/x", &[("X-Forwarded-For", "203.0.113.9")]).await.0, StatusCode::OK);
    assert_eq!(app.upstream.last().headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(
        app.call(&inst, "/x", &[("X-Forwarded-For", "198.51.100.2")]).await,
        (StatusCode::FORBIDDEN, r#"{"error":"198.51.100.2 not allowed"}"#.into())
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_streamed_and_limited() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("B").await;
    let (id, token) = app.create_instance(&acc).await;
    let url = app.url(&format!("/instances/{id}/token/{token}/upload"));

    let big: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
    let res = app.http.post(&url).body(big.clone()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.upstream.last().body.as_ref(), big.as_slice());

    // Chunked (no Content-Length), within the limit: streamed through.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..10).map(|i| Ok(vec![i as u8; 10_000])).collect();
    let res =
        app.http.post(&url).body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.upstream.last().body.len(), 100_000);

    // Over the limit (1 MiB here), declared: refused before anything is sent upstream.
    let before = app.upstream.count();
    // Only the headers are sent: the answer comes without the body (a client that keeps
    // writing a body the server will not read may see its connection reset instead).
    let target = format!("/instances/{id}/token/{token}/upload");
    let mut raw = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!("POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", 1024 * 1024 + 1);
    tokio::io::AsyncWriteExt::write_all(&mut raw, head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n =
        tokio::time::timeout(std::time::Duration::from_secs(10), tokio::io::AsyncReadExt::read(&mut raw, &mut answer))
            .await
            .expect("an answer before the body")
            .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#"{"error":"request body too large"}"#), "{answer}");
    // Over the limit, chunked: cut off while streaming.
    // The client is still sending as the answer comes: the server reads and drops the
    // rest before it closes, so the 413 is not lost to a reset.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..20).map(|_| Ok(vec![b'y'; 100_000])).collect();
    let res = app.http.post(&url).body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))).send().await;
    assert_eq!(res.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.upstream.count(), before, "the upstream never completed an oversized request");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_502_and_504() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("U").await;
    let inst = app.create_instance(&acc).await;
    // 504: the upstream answers /slow after 5 s; the configured timeout is 2 s.
    assert_eq!(
        app.call(&inst, "/slow", &[]).await,
        (StatusCode::GATEWAY_TIMEOUT, r#"{"error":"upstream timeout"}"#.into())
    );

    // 502: point the instance at a port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let (s, _) =
        app.admin(Method::PATCH, &format!("/v1/instances/{}", inst.0), Some(json!({"upstream_url": dead_url}))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        app.call(&inst, "/x", &[]).await,
        (StatusCode::BAD_GATEWAY, r#"{"error":"upstream unavailable"}"#.into())
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_instances_and_bad_instance_tokens_are_404() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("N").await;
    let (id, token) = app.create_instance(&acc).await;
    let other = app.create_instance(&acc).await;
    let mut broken = token.clone().into_bytes();
    broken[10] = if broken[10] == b'A' { b'B' } else { b'A' };
    let broken = String::from_utf8(broken).unwrap();
    let not_found = (StatusCode::NOT_FOUND, r#"{"error":"instance not found"}"#.to_string());
    for (i, t) in [
        (id.as_str(), broken.as_str()),
        (id.as_str(), other.1.as_str()),
        (id.as_str(), "tgi_short"),
        ("not-a-uuid", token.as_str()),
        (other.0.as_str(), token.as_str()),
        ("018f0000-0000-7000-8000-000000000000", token.as_str()),
    ] {
        assert_eq!(app.call(&(i.to_string(), t.to_string()), "/x", &[]).await, not_found, "{i} {t}");
    }
    assert_eq!(app.upstream.count(), 0);
    // A deleted instance stops at once.
    assert_eq!(app.call(&(id.clone(), token.clone()), "/x", &[]).await.0, StatusCode::OK);
    let (s, _) = app.admin(Method::DELETE, &format!("/v1/instances/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(app.call(&(id, token), "/x", &[]).await, not_found);
    app.stop().await;
}
