//! The plain lane (`gateway::lane`) against hyper's path: the same upstream request
//! from both, pipelined requests and a hand-over to hyper on one connection, every
//! response framing passed on whole, bodies in pieces, and which requests are sent
//! again after a reused upstream connection closed unanswered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{Seen, TestApp};

const HANG_GUARD: Duration = Duration::from_secs(10);

/// An instance on `upstream_url` with `rules`; its gateway base path.
async fn instance(app: &TestApp, account: &str, upstream_url: &str, rules: Value) -> String {
    let (status, inst) = app
        .admin(
            Method::POST,
            &format!("/v1/accounts/{account}/instances"),
            Some(json!({"name": "lane", "upstream_url": upstream_url, "rules": rules})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inst}");
    format!("/instances/{}/token/{}", inst["id"].as_str().unwrap(), inst["token"].as_str().unwrap())
}

/// Writes `request` on a fresh socket and reads until the server closes.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(HANG_GUARD, socket.read_to_end(&mut answer)).await.expect("hang guard").unwrap();
    answer
}

/// Splits answers framed by `content-length` into (status, body) pairs.
fn answers(mut raw: &[u8]) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or_else(|| panic!("an answer without content-length: {head}"));
        let body = &raw[end + 4..end + 4 + length];
        out.push((status, String::from_utf8_lossy(body).into_owned()));
        raw = &raw[end + 4 + length..];
    }
    assert!(raw.is_empty(), "trailing bytes: {}", String::from_utf8_lossy(raw));
    out
}

/// What the upstream received, comparable across paths: method, target, body, and
/// every header name (sorted) with its values in order.
fn seen_as_text(seen: &Seen) -> String {
    let mut names: Vec<&str> = seen.headers.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    let mut text = format!("{} {}\n", seen.method, seen.path_and_query);
    for name in names {
        let values: Vec<_> = seen.headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes())).collect();
        text.push_str(&format!("{name}: {}\n", values.join(" | ")));
    }
    text.push_str(&String::from_utf8_lossy(&seen.body));
    text
}

/// The lane writes the upstream head from the client's header lines, hyper's path
/// rebuilds it from a `HeaderMap`: the upstream must see the same request either way,
/// spoofed and hop-by-hop headers gone, forwarding and identity headers added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lane_and_hyper_forward_the_same_request() {
    let mut seen = Vec::new();
    for plain_lane in [true, false] {
        let app = TestApp::spawn_with(None, |c| c.plain_lane = plain_lane).await;
        let acc = app.create_account("Same").await;
        let upstream = format!("{}/base", app.upstream.url());
        let open = instance(&app, &acc, &upstream, json!([])).await;
        let guarded = instance(&app, &acc, &upstream, json!([{"path": "/*", "scopes": ["messages:send"]}])).await;
        let key = app.create_token(&acc, json!({"name": "k", "kind": "api_key", "scopes": ["messages:send"]})).await;
        let key = key["token"].as_str().unwrap();
        let headers = "Host: gw\r\nContent-Type: application/json\r\nX-Custom: one\r\nx-custom: two\r\n\
            Client_Token: spoof\r\nX-Tokengate-Account: spoof\r\nX_Forwarded_For: 1.2.3.4\r\n\
            X-Forwarded-For: 9.9.9.9\r\nX-Real-IP: 1.1.1.1\r\nForwarded: for=1.1.1.1\r\nKeep-Alive: timeout=5\r\n\
            Proxy-Authorization: Basic eA==\r\nTE: trailers\r\nVia: 1.0 someone\r\nConnection: keep-alive, close\r\n\
            Transfer_Encoding: chunked\r\nContent_Length: 99\r\n\
            Content-Length: 11\r\n";
        let requests = [
            format!(
                "POST {open}/send-text?a=1&b=%2F HTTP/1.1\r\n{headers}Authorization: Basic YQ==\r\n\r\n{{\"a\":\"b\"}}xx"
            ),
            format!("PUT {guarded}/x/%7Ebob HTTP/1.1\r\n{headers}Authorization: Bearer {key}\r\n\r\n{{\"a\":\"b\"}}xx"),
        ];
        let mut texts = Vec::new();
        for request in requests {
            let answer = answers(&exchange(app.addr, request.as_bytes()).await);
            assert_eq!(answer, [(200, r#"{"ok":true}"#.to_string())], "lane {plain_lane}");
            texts.push(seen_as_text(&app.upstream.last()));
        }
        // The addresses and ids differ between the two servers; the rest must not.
        let (account, port) = (acc.clone(), app.upstream.addr.port().to_string());
        seen.push(texts.into_iter().map(|t| t.replace(&account, "ACCOUNT").replace(&port, "PORT")).collect::<Vec<_>>());
        app.stop().await;
    }
    let (lane, hyper) = (&seen[0], &seen[1]);
    for (l, h) in lane.iter().zip(hyper) {
        // Token ids and deployment ids (in our Via entry) differ between the servers.
        let strip = |t: &str| {
            t.lines()
                .filter(|l| !l.starts_with("x-tokengate-token-id"))
                .map(|l| if l.starts_with("via: ") { l.split(" | ").next().unwrap_or(l) } else { l })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(l), strip(h), "lane:\n{l}\nhyper:\n{h}");
    }
    let open = &lane[0];
    assert!(open.starts_with("POST /base/send-text?a=1&b=%2F\n"), "{open}");
    for gone in
        ["client_token", "x_forwarded_for", "x-real-ip", "forwarded:", "keep-alive", "proxy-authorization", "te:"]
    {
        assert!(!open.lines().any(|l| l.starts_with(gone)), "{gone} passed: {open}");
    }
    for kept in [
        "x-custom: one | two",
        "x-forwarded-for: 127.0.0.1",
        "x-forwarded-proto: http",
        "x-tokengate-account: ACCOUNT",
        "authorization: Basic YQ==",
        "host: 127.0.0.1:PORT",
        "content-length: 11",
    ] {
        assert!(open.lines().any(|l| l == kept), "{kept} missing: {open}");
    }
    assert!(open.lines().any(|l| l.starts_with("via: 1.0 someone | ")), "{open}");
    assert!(open.ends_with("{\"a\":\"b\"}xx"));
    let guarded = &lane[1];
    assert!(guarded.starts_with("PUT /base/x/~bob\n"), "{guarded}");
    assert!(!guarded.contains("authorization:"), "the checked bearer token is not passed on: {guarded}");
    assert!(guarded.contains("x-tokengate-scopes: messages:send") && guarded.contains("x-tokengate-token-id: "));
}

/// Requests written back to back are answered in order, a refused one in the middle
/// included; a request the lane does not carry (here the health check) hands the
/// connection to hyper, which answers it and the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_and_a_hand_over_to_hyper() {
    let app = TestApp::spawn_with(None, |_| {}).await;
    let acc = app.create_account("Pipelined").await;
    let base = instance(&app, &acc, &app.upstream.url(), json!([])).await;
    let wrong = base.rsplit_once('/').map(|(b, _)| format!("{b}/tgi_wrong")).unwrap();
    let batch = format!(
        "GET {base}/a HTTP/1.1\r\nHost: gw\r\n\r\n\
         POST {wrong}/b HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc\
         POST {base}/c HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nxyz\
         GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n\
         GET {base}/d HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    );
    let got = answers(&exchange(app.addr, batch.as_bytes()).await);
    let statuses: Vec<u16> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 404, 200, 200, 200], "{got:?}");
    assert_eq!(got[1].1, r#"{"error":"instance not found"}"#);
    let routes: Vec<String> = app.upstream.seen.lock().unwrap().iter().map(|s| s.path_and_query.clone()).collect();
    assert_eq!(routes, ["/a", "/c", "/d"]);
    assert_eq!(app.upstream.last().body.len(), 0);
    assert_eq!(&app.upstream.seen.lock().unwrap()[1].body[..], b"xyz");
}

/// A raw upstream for framing cases, by path: `/chunked` (with a trailer), `/close`
/// (no length: until the connection closes), `/big` (1 MiB by length), `/gzip-te` (a
/// transfer coding the lane does not carry), `/hints` (two 103s, then 200), `/continues`
/// (twenty 100s, then 200), `/hang-up` (closes without answering), `/lookalikes`
/// (underscore spellings of framing headers, and its length twice), `/early` (`413`
/// after the head, closed without reading the body, as a size limit in front of an
/// application does).
async fn framing_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = read_head(&mut stream, &mut buf).await else { return };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    buf.drain(..end);
                    let path = head.split(' ').nth(1).unwrap_or_default().to_string();
                    let answer: Vec<u8> = match path.as_str() {
                        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-sum: 1\r\n\r\n".to_vec(),
                        "/close" => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end".to_vec(),
                        "/big" => {
                            let mut a = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_vec();
                            a.extend(std::iter::repeat_n(b'z', 1 << 20));
                            a
                        }
                        "/lookalikes" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer_Encoding: chunked\r\nContent-Length: 2\r\nContent_Length: 40\r\nKeep_Alive: timeout=1\r\nX_Own: kept\r\n\r\nok".to_vec(),
                        "/early" => b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large".to_vec(),
                        "/gzip-te" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".to_vec(),
                        "/hints" => b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
                        "/continues" => {
                            let mut a = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(20);
                            a.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                            a
                        }
                        _ => return,
                    };
                    if stream.write_all(&answer).await.is_err() || path == "/close" || path == "/early" {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_framing_passes_whole() {
    let app = TestApp::spawn_with(None, |_| {}).await;
    let acc = app.create_account("Framing").await;
    let upstream = framing_upstream().await;
    let base = instance(&app, &acc, &format!("http://{upstream}"), json!([])).await;
    // One kept-alive client connection (on the lane: it never carries an admin call).
    let client = &app.gateway;
    for _ in 0..2 {
        let res = client.get(app.url(&format!("{base}/chunked"))).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.text().await.unwrap(), "hello world");
        let res = client.get(app.url(&format!("{base}/big"))).send().await.unwrap();
        assert_eq!(res.headers()["content-length"], "1048576");
        let body = res.bytes().await.unwrap();
        assert!(body.len() == 1 << 20 && body.iter().all(|b| *b == b'z'));
    }
    let res = client.get(app.url(&format!("{base}/close"))).send().await.unwrap();
    assert_eq!(res.headers()["connection"], "close");
    assert_eq!(res.text().await.unwrap(), "until the end");
    // Informational answers are skipped, a few of them.
    let res = client.get(app.url(&format!("{base}/hints"))).send().await.unwrap();
    assert_eq!((res.status(), res.text().await.unwrap().as_str()), (StatusCode::OK, "ok"));
    for refused in ["/gzip-te", "/hang-up", "/continues"] {
        let res = client.get(app.url(&format!("{base}{refused}"))).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY, "{refused}");
        assert_eq!(res.text().await.unwrap(), r#"{"error":"upstream unavailable"}"#);
    }
    // The chunked framing and its trailer reach the client as the upstream sent them.
    let raw =
        exchange(app.addr, format!("GET {base}/chunked HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").as_bytes())
            .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.to_ascii_lowercase().contains("transfer-encoding: chunked\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-sum: 1\r\n\r\n"), "{text}");
}

/// Underscore spellings of framing and hop-by-hop headers in a response never reach
/// the client (a proxy in front that reads `_` as `-` would frame by them), on either
/// path; an equal length sent twice reaches it once; other underscore names pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_framing_lookalikes_never_reach_the_client() {
    let upstream = framing_upstream().await;
    for plain_lane in [true, false] {
        let app = TestApp::spawn_with(None, |c| c.plain_lane = plain_lane).await;
        let acc = app.create_account("Lookalikes").await;
        let base = instance(&app, &acc, &format!("http://{upstream}"), json!([])).await;
        let request = format!("GET {base}/lookalikes HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        let raw = exchange(app.addr, request.as_bytes()).await;
        let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("http/1.1 200 "), "lane {plain_lane}: {text}");
        assert_eq!(body, "ok", "lane {plain_lane}");
        let lines: Vec<&str> = head.lines().skip(1).collect();
        assert_eq!(lines.iter().filter(|l| l.starts_with("content-length:")).count(), 1, "lane {plain_lane}: {head}");
        for gone in ["transfer_encoding", "content_length", "keep_alive", "transfer-encoding"] {
            assert!(!lines.iter().any(|l| l.starts_with(gone)), "lane {plain_lane}: {gone} in {head}");
        }
        assert!(lines.contains(&"x_own: kept"), "lane {plain_lane}: {head}");
    }
}

/// An upstream's early answer to a body still being sent reaches the client (the
/// client connection then closes: the rest of its body was never read). The client
/// writes and reads at once, as an HTTP client that watches for an early answer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_during_the_upload_reaches_the_client() {
    let upstream = framing_upstream().await;
    let app = TestApp::spawn_with(None, |_| {}).await;
    let acc = app.create_account("Early").await;
    let base = instance(&app, &acc, &format!("http://{upstream}"), json!([])).await;
    for size in [64usize << 10, 1 << 20, 64 << 10, 1 << 20, 64 << 10, 1 << 20] {
        let head =
            format!("POST {base}/early HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: {size}\r\n\r\n");
        let mut request = head.into_bytes();
        request.extend(std::iter::repeat_n(b'b', size));
        let mut socket = TcpStream::connect(app.addr).await.unwrap();
        let (mut rd, mut wr) = socket.split();
        let (_, answer) = tokio::join!(wr.write_all(&request), async {
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(HANG_GUARD, rd.read_to_end(&mut answer)).await.expect("hang guard");
            answer
        });
        assert_eq!(answers(&answer), [(413, "too large".to_string())], "{size} bytes");
    }
}

/// A refused request whose body was not read gets its answer even when the client
/// writes the whole body before it reads (as most HTTP clients do): the server stops
/// sending, reads and drops the rest of the body, then closes. Closing with the body
/// unread would reset the connection and the client would lose the answer. Both paths:
/// a declared length past the limit, a refusal before the body (an unknown instance),
/// and a chunked body past the limit (hyper's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_is_answered_to_a_client_that_writes_first() {
    for plain_lane in [true, false] {
        let app = TestApp::spawn_with(None, |c| c.plain_lane = plain_lane).await;
        let acc = app.create_account("Linger").await;
        let base = instance(&app, &acc, &app.upstream.url(), json!([])).await;
        let body = vec![b'z'; 6 << 20];
        let declared = |target: &str, size: usize| {
            let mut r = format!("POST {target} HTTP/1.1\r\nHost: gw\r\nContent-Length: {size}\r\n\r\n").into_bytes();
            r.extend_from_slice(&body[..size]);
            r
        };
        let mut chunked =
            format!("POST {base}/c HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
        for piece in body.chunks(64 << 10) {
            chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            chunked.extend_from_slice(piece);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let cases = [
            (declared(&format!("{base}/big"), 6 << 20), 413, r#"{"error":"request body too large"}"#),
            (declared("/instances/nope/token/nope/x", 512 << 10), 404, r#"{"error":"instance not found"}"#),
            (chunked, 413, r#"{"error":"request body too large"}"#),
        ];
        for (case, (request, status, error)) in cases.into_iter().enumerate() {
            let mut socket = TcpStream::connect(app.addr).await.unwrap();
            tokio::time::timeout(HANG_GUARD, socket.write_all(&request))
                .await
                .expect("hang guard")
                .unwrap_or_else(|e| panic!("lane {plain_lane}, case {case}: the upload broke off: {e}"));
            let mut answer = Vec::new();
            tokio::time::timeout(HANG_GUARD, socket.read_to_end(&mut answer))
                .await
                .expect("hang guard")
                .unwrap_or_else(|e| panic!("lane {plain_lane}, case {case}: the answer was lost: {e}"));
            assert_eq!(answers(&answer), [(status, error.to_string())], "lane {plain_lane}, case {case}");
        }
        assert_eq!(app.upstream.count(), 0, "lane {plain_lane}: nothing reached the upstream");
        app.stop().await;
    }
}

/// A body that arrives in pieces reaches the upstream whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_in_pieces_arrives_whole() {
    let app = TestApp::spawn_with(None, |_| {}).await;
    let acc = app.create_account("Pieces").await;
    let base = instance(&app, &acc, &app.upstream.url(), json!([])).await;
    let mut socket = TcpStream::connect(app.addr).await.unwrap();
    let head = format!("POST {base}/p HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: 10\r\n\r\nhel");
    socket.write_all(head.as_bytes()).await.unwrap();
    for piece in ["lo", "wor", "ld"] {
        tokio::time::sleep(Duration::from_millis(50)).await;
        socket.write_all(piece.as_bytes()).await.unwrap();
    }
    let mut answer = Vec::new();
    tokio::time::timeout(HANG_GUARD, socket.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert_eq!(answers(&answer), [(200, r#"{"ok":true}"#.to_string())]);
    assert_eq!(&app.upstream.last().body[..], b"helloworld");
}

/// An upstream that answers the first request of each connection and hangs up on the
/// second without a word: what a keep-alive connection closed at the very moment it
/// is reused looks like. Counts connections.
async fn one_answer_per_connection() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepts);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let Some(end) = read_head(&mut stream, &mut buf).await else { return };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < end + length {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                buf.drain(..end + length);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                // The next request is read, then the connection is closed unanswered.
                let _ = read_head(&mut stream, &mut buf).await;
            });
        }
    });
    (addr, accepts)
}

/// Sent again on a new connection: only an idempotent request whose reused
/// connection closed before any answer. A POST is not sent twice: it is answered 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_requests_are_sent_again() {
    let app = TestApp::spawn_with(None, |c| c.workers = Some(1)).await;
    let acc = app.create_account("Retry").await;
    let (upstream, accepts) = one_answer_per_connection().await;
    let base = instance(&app, &acc, &format!("http://{upstream}"), json!([])).await;
    let url = app.url(&format!("{base}/r"));
    let fresh = || reqwest::Client::builder().no_proxy().build().unwrap();
    assert_eq!(fresh().get(&url).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
    // Reuses the connection, which hangs up: sent again on a second one.
    let res = fresh().get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "ok");
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
    // Reuses the second, which hangs up: a POST is not repeated.
    let res = fresh().post(&url).body("once").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(accepts.load(Ordering::SeqCst), 2, "the POST was not sent on another connection");
}

/// A client that pipelines requests and never reads the answers loses its connection
/// (and its place under `max_connections`) once nothing of an answer has been taken
/// for `idle_timeout`: new connections are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_loses_its_connection() {
    let app = TestApp::spawn_with(None, |c| {
        c.max_connections = 1;
        c.idle_timeout_seconds = 1;
        c.workers = Some(1);
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(app.addr).await.unwrap();
    // Cheap refusals (no such instance): ~30 MB of answers, far more than the socket
    // buffers on both sides hold.
    let one = b"GET /instances/nope/token/nope/x HTTP/1.1\r\nHost: gw\r\n\r\n";
    let batch = one.repeat(200_000);
    let writer = tokio::spawn(async move {
        let _ = stuck.write_all(&batch).await;
        // Held open, never read.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stuck);
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut served = false;
    for _ in 0..20 {
        let mut probe = TcpStream::connect(app.addr).await.unwrap();
        let _ = probe.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(500), probe.read_to_end(&mut answer)).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    writer.abort();
    assert!(served, "the connection that never reads still holds the only place");
}
