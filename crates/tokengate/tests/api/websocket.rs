//! WebSocket through the gateway (SPEC §14), with a real WebSocket client and server
//! (tokio-tungstenite) on both ends.

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::helpers::{NULL_NOT_ALLOWED, TestApp};

/// A WebSocket upstream: greets, echoes text, closes on `"bye"`, and records the
/// handshake headers it received.
async fn echo_server() -> (std::net::SocketAddr, Arc<Mutex<Vec<HeaderMap>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                #[allow(clippy::result_large_err)] // tungstenite's callback signature
                let callback = |req: &tungstenite::handshake::server::Request, res| {
                    record.lock().unwrap().push(req.headers().clone());
                    Ok(res)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
                let _ = ws.send(Message::text("hello from upstream")).await;
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        Message::Text(t) if t.as_str() == "bye" => {
                            let _ = ws.close(None).await;
                        }
                        Message::Text(t) => {
                            let _ = ws.send(Message::text(format!("echo: {t}"))).await;
                        }
                        Message::Binary(b) => {
                            let _ = ws.send(Message::binary(b)).await;
                        }
                        // Polling on after a close sends the reply and ends the stream.
                        _ => {}
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_relayed_both_ways_after_the_checks() {
    let app = TestApp::spawn(crate::helpers::StoreKind::Sqlite).await;
    let (ws_addr, handshakes) = echo_server().await;
    let account = app.create_account("ws").await;
    let body = json!({"name": "ws", "upstream_url": format!("http://{ws_addr}/rooms")});
    let (s, instance) = app.admin(Method::POST, &format!("/v1/accounts/{account}/instances"), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{instance}");
    let client_token = app.generate_security_token(&account).await;
    app.activate(&account).await;
    let url = format!(
        "ws://{}/instances/{}/token/{}/live?room=7",
        app.addr,
        instance["id"].as_str().unwrap(),
        instance["token"].as_str().unwrap()
    );

    // Refused: the handshake gets the gateway's JSON answer, nothing reaches the upstream.
    let refused = tokio_tungstenite::connect_async(url.as_str()).await.unwrap_err();
    match refused {
        tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert_eq!(response.body().as_deref(), Some(NULL_NOT_ALLOWED.as_bytes()));
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
    assert!(handshakes.lock().unwrap().is_empty());

    // Accepted: relayed both ways; the client closes.
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("client-token", client_token.parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request.clone()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello from upstream"));
    for i in 0..50 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(format!("echo: m{i}")));
    }
    let big = vec![7u8; 256 * 1024];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    ws.close(None).await.unwrap();
    // The close handshake completes through the relay.
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => break,
            Ok(_) => {}
            Err(e) => panic!("closing: {e}"),
        }
    }
    {
        let seen = handshakes.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].get("client-token").is_none(), "the Client-Token is not forwarded");
        assert_eq!(seen[0]["x-tokengate-account"], account.as_str());
        assert!(seen[0]["upgrade"].to_str().unwrap().eq_ignore_ascii_case("websocket"));
    }

    // The upstream closes: the client sees the close.
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello from upstream"));
    ws.send(Message::text("bye")).await.unwrap();
    let closed = loop {
        match ws.next().await {
            Some(Ok(Message::Close(_))) | None => break true,
            Some(Ok(_)) => {}
            Some(Err(_)) => break true,
        }
    };
    assert!(closed);

    // Usage: once per connection (2 with the token, 1 without), not once per message.
    app.wait_readiness(&account, (2, 1, 0)).await;
}

/// A relayed WebSocket keeps its place under `max_connections` (hyper hands the
/// connection over on upgrade; the relay holds the place until it ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_counts_against_max_connections() {
    let app = TestApp::spawn_with(None, |c| {
        c.max_connections = 1;
        c.workers = Some(1);
        // The admin client's pooled connection gives its place back soon after setup.
        c.idle_timeout_seconds = 1;
    })
    .await;
    let (ws_addr, _) = echo_server().await;
    let account = app.create_account("ws-cap").await;
    let body = json!({"name": "ws", "upstream_url": format!("http://{ws_addr}")});
    let (_, instance) = app.admin(Method::POST, &format!("/v1/accounts/{account}/instances"), Some(body)).await;
    let url = format!(
        "ws://{}/instances/{}/token/{}/live",
        app.addr,
        instance["id"].as_str().unwrap(),
        instance["token"].as_str().unwrap()
    );
    let fresh = || reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().unwrap();
    let mut ws = None;
    for _ in 0..200 {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await {
            ws = Some(socket);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut ws = ws.expect("the WebSocket connects once the place is free");
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello from upstream"));
    // While it is relayed, a new connection is closed at once.
    let refused = fresh().get(app.url("/healthz")).send().await;
    assert!(refused.is_err(), "a second connection past max_connections: {refused:?}");
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    let mut served = false;
    for _ in 0..200 {
        if fresh().get(app.url("/healthz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(served, "the place comes back when the relay ends");
}
