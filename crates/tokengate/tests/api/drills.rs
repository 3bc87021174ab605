//! Fault drills on a PostgreSQL server of the test's own, stopped and started by the
//! test: the store goes away under two serving nodes, and comes back.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// A PostgreSQL cluster this test owns (its own data directory and port).
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

impl Cluster {
    fn as_postgres(&self, args: &[&str]) {
        let status = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}");
    }

    pub fn create() -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("PostgreSQL is installed (scripts/test.sh installs it)");
        let dir = std::env::temp_dir().join(format!("tokengate-drill-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        Command::new("chown").args(["postgres:postgres", dir.to_str().unwrap()]).status().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Cluster { bin, dir, port };
        let data = cluster.dir.join("data");
        cluster.as_postgres(&[
            cluster.bin.join("initdb").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        cluster.start();
        cluster
    }

    pub fn start(&self) {
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.display());
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        self.as_postgres(&[
            self.bin.join("pg_ctl").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &opts,
            "-w",
            "start",
        ]);
    }

    pub fn stop(&self) {
        let data = self.dir.join("data");
        self.as_postgres(&[
            self.bin.join("pg_ctl").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-m",
            "fast",
            "-w",
            "stop",
        ]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos().into()
}

pub async fn eventually<F: AsyncFn() -> bool>(what: &str, f: F) {
    for _ in 0..600 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

/// PostgreSQL stops under two nodes: the gateway keeps enforcing what it has, admin
/// writes and `/readyz` say `store_unavailable`, `/healthz` stays up; PostgreSQL comes
/// back: writes work again and a revocation made right then reaches the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_goes_away_and_comes_back() {
    let cluster = Cluster::create();
    let shared_key = |c: &mut tokengate::config::Config| c.master_key = Some("24".repeat(32).into());
    let a = TestApp::spawn_with(Some(cluster.url()), shared_key).await;
    let mut b = TestApp::spawn_with(Some(cluster.url()), shared_key).await;
    b.admin_token = a.admin_token.clone();
    let account = a.create_account("drill").await;
    let instance = a.ruled_instance(&account).await;
    let key = a.create_token(&account, json!({"name": "k", "kind": "api_key", "scopes": ["messages:send"]})).await;
    let key = key["token"].as_str().unwrap().to_string();
    let send = async |node: &TestApp, token: &str| {
        node.bearer(&instance, Method::POST, "/send-text", Some(token)).await.status()
    };
    eventually("node B knows the key", async || send(&b, &key).await == StatusCode::OK).await;

    cluster.stop();
    for node in [&a, &b] {
        assert_eq!(send(node, &key).await, StatusCode::OK, "the last state is enforced");
        assert_eq!(send(node, "tgk_000000000000000000000000000000000000").await, StatusCode::UNAUTHORIZED);
        let health = node.http.get(node.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        let ready = node.http.get(node.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["code"], "store_unavailable");
    }
    let (status, body) = a.admin(Method::POST, "/v1/accounts", Some(json!({"name": "while down"}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body, json!({"error": "store unavailable, try again", "code": "store_unavailable"}));

    cluster.start();
    eventually("admin writes work again", async || {
        a.admin(Method::POST, "/v1/accounts", Some(json!({"name": "after"}))).await.0 == StatusCode::CREATED
    })
    .await;
    eventually("node A is ready again", async || {
        a.http.get(a.url("/readyz")).send().await.unwrap().status() == StatusCode::OK
    })
    .await;
    // A revocation acknowledged right after the outage is enforced by the other node.
    let (_, listed) = a.admin(Method::GET, &format!("/v1/accounts/{account}/tokens"), None).await;
    let id = listed["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(a.admin(Method::DELETE, &format!("/v1/tokens/{id}"), None).await.0, StatusCode::NO_CONTENT);
    let acknowledged = std::time::Instant::now();
    assert_eq!(send(&a, &key).await, StatusCode::UNAUTHORIZED);
    eventually("node B refuses the revoked key", async || send(&b, &key).await == StatusCode::UNAUTHORIZED).await;
    // Measured, not asserted (SPEC §5's 1 s is a benchmark figure): shown with --no-capture.
    eprintln!("revocation after the outage enforced on node B {:?} after its acknowledgement", acknowledged.elapsed());
    // Nothing acknowledged was lost: the account created before the outage is there.
    assert_eq!(a.admin(Method::GET, &format!("/v1/accounts/{account}"), None).await.0, StatusCode::OK);
    a.stop().await;
    b.stop().await;
}

/// A TCP proxy in front of PostgreSQL that the test can cut (every connection closed,
/// new ones refused) or stall (connections held open, nothing forwarded).
pub struct StoreProxy {
    pub port: u16,
    mode: tokio::sync::watch::Sender<ProxyMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Pass,
    Cut,
    Stall,
}

impl StoreProxy {
    pub async fn start(target_port: u16) -> StoreProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, watch) = tokio::sync::watch::channel(ProxyMode::Pass);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let current = *watch.borrow();
                    match current {
                        ProxyMode::Cut => return,
                        // Held open, never answered, until the proxy passes again.
                        ProxyMode::Stall => {
                            let _ = watch.wait_for(|m| *m != ProxyMode::Stall).await;
                            return;
                        }
                        ProxyMode::Pass => {}
                    }
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await else { return };
                    relay(client, server, watch).await;
                });
            }
        });
        StoreProxy { port, mode }
    }

    pub fn set(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

/// Copies both ways while the mode is `Pass`; stops copying (holding both sockets)
/// on `Stall` until it passes again; drops both on `Cut`.
async fn relay(
    mut client: tokio::net::TcpStream,
    mut server: tokio::net::TcpStream,
    mut mode: tokio::sync::watch::Receiver<ProxyMode>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut a, mut b) = ([0u8; 8192], [0u8; 8192]);
    loop {
        if *mode.borrow() == ProxyMode::Stall
            && mode.wait_for(|m| *m != ProxyMode::Stall).await.map(|m| *m == ProxyMode::Cut).unwrap_or(true)
        {
            return;
        }
        if *mode.borrow() == ProxyMode::Cut {
            return;
        }
        tokio::select! {
            n = client.read(&mut a) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if server.write_all(&a[..n]).await.is_err() { return },
            },
            n = server.read(&mut b) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if client.write_all(&b[..n]).await.is_err() { return },
            },
            _ = mode.changed() => {}
        }
    }
}

/// PostgreSQL restarted in the middle of a run of admin writes: every acknowledged
/// write is there afterwards with its audit entry, every refused one is absent, and
/// refusals are `503 store_unavailable` (never a 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_across_a_store_restart_are_all_or_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let cluster = Cluster::create();
    let a = TestApp::spawn_with(Some(cluster.url()), |_| {}).await;
    let account = a.create_account("writes").await;
    let (stop, acknowledged) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let refusals = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (http, token) = (a.http.clone(), a.admin_token.clone());
        let url = a.url(&format!("/v1/accounts/{account}/tokens"));
        let (stop, acknowledged, refusals) = (Arc::clone(&stop), Arc::clone(&acknowledged), Arc::clone(&refusals));
        tokio::spawn(async move {
            let mut results = Vec::new();
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("w{n}");
                let body = json!({"name": name, "kind": "api_key", "scopes": ["messages:send"]});
                let response = http.post(&url).bearer_auth(&token).json(&body).send().await.unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                if status == StatusCode::CREATED {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
                    assert_eq!(body["code"], "store_unavailable");
                    refusals.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                results.push((name, status));
            }
            results
        })
    };
    eventually("writes are acknowledged", async || acknowledged.load(Ordering::Relaxed) >= 10).await;
    cluster.stop();
    // Down until a write has met it (a fixed pause may see none on a loaded machine).
    eventually("a write meets the stopped store", async || refusals.load(Ordering::Relaxed) >= 1).await;
    cluster.start();
    let before = acknowledged.load(Ordering::Relaxed);
    eventually("writes are acknowledged again", async || acknowledged.load(Ordering::Relaxed) >= before + 10).await;
    stop.store(true, Ordering::Relaxed);
    let results = writer.await.unwrap();
    let refused: Vec<&String> = results.iter().filter(|(_, s)| *s != StatusCode::CREATED).map(|(n, _)| n).collect();
    assert!(!refused.is_empty(), "some writes met the stopped store");

    let (_, listed) = a.admin(Method::GET, &format!("/v1/accounts/{account}/tokens"), None).await;
    let present: std::collections::HashSet<&str> =
        listed["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    for (name, status) in &results {
        assert_eq!(present.contains(name.as_str()), *status == StatusCode::CREATED, "{name}: answered {status}");
    }
    let (_, audit) = a.admin(Method::GET, &format!("/v1/accounts/{account}/audit?limit=1000"), None).await;
    let created = audit["items"].as_array().unwrap().iter().filter(|e| e["action"] == "token.created").count();
    assert_eq!(created, present.len(), "one audit entry per token, none without");
    a.stop().await;
}

/// A node SIGKILLed under load: the other answers every request right throughout;
/// the restarted node has every change acknowledged while it was gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load() {
    use crate::process::Server;
    let cluster = Cluster::create();
    let a = TestApp::spawn_with(Some(cluster.url()), |_| {}).await;
    let account = a.create_account("kill").await;
    let instance = a.ruled_instance(&account).await;
    let mk = async |name: &str| {
        let body = json!({"name": name, "kind": "api_key", "scopes": ["messages:send"]});
        let t = a.create_token(&account, body).await;
        (t["id"].as_str().unwrap().to_string(), t["token"].as_str().unwrap().to_string())
    };
    let (_, kept) = mk("kept").await;
    let (doomed_id, doomed) = mk("doomed").await;
    let dir = tempfile::tempdir().unwrap();
    let b = Server::start(dir.path(), Some(&cluster.url()), &[]);
    let path = format!("/instances/{}/token/{}/send-text", instance.0, instance.1);
    let send = async |base: &str, key: &str| {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        client.post(format!("{base}{path}")).bearer_auth(key).send().await.unwrap().status()
    };
    assert_eq!(send(&format!("http://{}", b.addr), &kept).await, StatusCode::OK);

    let load = {
        let (http, url, kept) = (a.http.clone(), a.url(&path), kept.clone());
        tokio::spawn(async move {
            let mut answered = 0;
            for i in 0..300 {
                let (key, want) = if i % 3 == 0 {
                    ("tgk_000000000000000000000000000000000000", StatusCode::UNAUTHORIZED)
                } else {
                    (kept.as_str(), StatusCode::OK)
                };
                let status = http.post(&url).bearer_auth(key).send().await.unwrap().status();
                assert_eq!(status, want, "request {i} to the surviving node");
                answered += 1;
            }
            answered
        })
    };
    b.signal("-KILL");
    drop(b);
    // Changes acknowledged while B is gone.
    assert_eq!(a.admin(Method::DELETE, &format!("/v1/tokens/{doomed_id}"), None).await.0, StatusCode::NO_CONTENT);
    let (_, fresh) = mk("fresh").await;
    assert_eq!(load.await.unwrap(), 300);

    let b = Server::start(dir.path(), Some(&cluster.url()), &[]);
    let base = format!("http://{}", b.addr);
    assert_eq!(send(&base, &doomed).await, StatusCode::UNAUTHORIZED, "revoked while it was down");
    assert_eq!(send(&base, &fresh).await, StatusCode::OK, "created while it was down");
    assert_eq!(send(&base, &kept).await, StatusCode::OK);
    a.stop().await;
}

/// A node started while PostgreSQL is down waits for it, saying so on `/readyz`
/// (`/healthz` is up), and becomes ready by itself once the store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_while_the_store_is_down_waits_for_it() {
    use crate::process::Server;
    let cluster = Cluster::create();
    cluster.stop();
    let dir = tempfile::tempdir().unwrap();
    let mut node = Server::start_waiting(dir.path(), &cluster.url(), &[]);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let health = http.get(node.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    for path in ["/readyz", "/v1/accounts"] {
        let ready = http.get(node.url(path)).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["code"], "store_unavailable", "{path}");
    }
    cluster.start();
    node.wait_for("tokengate ready");
    let ready = http.get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let (status, body) = node.admin(Method::POST, "/v1/accounts", Some(json!({"name": "late"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// The store connection dropped, then stalled, by a TCP proxy (PostgreSQL itself keeps
/// running): the gateway serves from memory, admin writes and `/readyz` answer 503
/// (the stall within `store_timeout_millis`), and everything recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_connection_dropped_and_stalled() {
    let cluster = Cluster::create();
    let proxy = StoreProxy::start(cluster.port).await;
    let a = TestApp::spawn_with(Some(proxy.url()), |_| {}).await;
    let account = a.create_account("proxy").await;
    let instance = a.ruled_instance(&account).await;
    let key = a.create_token(&account, json!({"name": "k", "kind": "api_key", "scopes": ["messages:send"]})).await;
    let key = key["token"].as_str().unwrap().to_string();
    for mode in [ProxyMode::Cut, ProxyMode::Stall] {
        proxy.set(mode);
        let sent = a.bearer(&instance, Method::POST, "/send-text", Some(&key)).await;
        assert_eq!(sent.status(), StatusCode::OK, "{mode:?}: served from memory");
        let (status, body) = a.admin(Method::POST, "/v1/accounts", Some(json!({"name": "during"}))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{mode:?}: {body}");
        assert_eq!(body["code"], "store_unavailable");
        let ready = a.http.get(a.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE, "{mode:?}");
        let health = a.http.get(a.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK, "{mode:?}");
        proxy.set(ProxyMode::Pass);
        eventually("admin writes work again", async || {
            a.admin(Method::POST, "/v1/accounts", Some(json!({"name": "after"}))).await.0 == StatusCode::CREATED
        })
        .await;
    }
    let (_, accounts) = a.admin(Method::GET, "/v1/accounts", None).await;
    let names: Vec<&str> = accounts["items"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert!(!names.contains(&"during"), "a refused write is not there: {names:?}");
    a.stop().await;
}

/// The usage buffer while the store is down: rows past `usage_buffer_rows` are not
/// kept, and `tokengate_usage_dropped_total` counts exactly the requests they would
/// have counted; the rows kept reach the store once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_buffer_is_bounded_and_counts_what_it_drops() {
    let cluster = Cluster::create();
    let a = TestApp::spawn_with(Some(cluster.url()), |c| c.usage_buffer_rows = 3).await;
    let account = a.create_account("buffer").await;
    let instance = a.ruled_instance(&account).await;
    let mut keys = Vec::new();
    for name in ["k1", "k2", "k3"] {
        let t = a.create_token(&account, json!({"name": name, "kind": "api_key", "scopes": ["messages:send"]})).await;
        keys.push((t["id"].as_str().unwrap().to_string(), t["token"].as_str().unwrap().to_string()));
    }
    // Rows are per minute: keep the whole run inside one.
    let second = tokengate_core::Timestamp::now().as_secs() % 60;
    if second > 50 {
        tokio::time::sleep(Duration::from_secs(u64::try_from(61 - second).unwrap())).await;
    }
    cluster.stop();
    let send = async |key: &str| a.bearer(&instance, Method::POST, "/send-text", Some(key)).await.status();
    // k1: the account's row and k1's row; k2: its own row (the third and last).
    assert_eq!(send(&keys[0].1).await, StatusCode::OK);
    assert_eq!(send(&keys[1].1).await, StatusCode::OK);
    // Past the bound: 5 requests of k3 and 4 rejections (a new account row) are dropped.
    for _ in 0..5 {
        assert_eq!(send(&keys[2].1).await, StatusCode::OK);
    }
    for _ in 0..4 {
        assert_eq!(send("tgk_000000000000000000000000000000000000").await, StatusCode::UNAUTHORIZED);
    }
    let metrics = a.http.get(a.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let dropped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tokengate_usage_dropped_total "))
        .unwrap_or_else(|| panic!("no dropped counter: {metrics}"));
    assert_eq!(dropped.trim(), "9");

    cluster.start();
    let usage_of = async |id: &str| {
        let (_, usage) = a.admin(Method::GET, &format!("/v1/tokens/{id}/usage?bucket_seconds=60"), None).await;
        usage["buckets"].as_array().map(|b| b.iter().map(|b| b["allowed"].as_u64().unwrap_or(0)).sum::<u64>())
    };
    eventually("the buffered rows reach the store", async || usage_of(&keys[1].0).await == Some(1)).await;
    assert_eq!(usage_of(&keys[0].0).await, Some(1));
    assert_eq!(usage_of(&keys[2].0).await, Some(0), "k3's requests were dropped, not half-counted");
    a.stop().await;
}
