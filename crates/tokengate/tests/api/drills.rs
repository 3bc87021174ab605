//! Fault drills on a PostgreSQL server of the test's own, stopped and started by the
//! test: the store goes away under two serving nodes, and comes back.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// A PostgreSQL cluster this test owns (its own data directory and port).
struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
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

    fn create() -> Cluster {
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

    fn start(&self) {
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

    fn stop(&self) {
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

    fn url(&self) -> String {
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

async fn eventually<F: AsyncFn() -> bool>(what: &str, f: F) {
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
    assert_eq!(send(&a, &key).await, StatusCode::UNAUTHORIZED);
    eventually("node B refuses the revoked key", async || send(&b, &key).await == StatusCode::UNAUTHORIZED).await;
    // Nothing acknowledged was lost: the account created before the outage is there.
    assert_eq!(a.admin(Method::GET, &format!("/v1/accounts/{account}"), None).await.0, StatusCode::OK);
    a.stop().await;
    b.stop().await;
}
