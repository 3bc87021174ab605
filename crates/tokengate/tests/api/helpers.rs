//! The test harness: the real server on port 0 against a real store (SQLite in a
//! temporary directory, or a fresh database on a real PostgreSQL server) in front of a
//! real upstream HTTP server on port 0 that records what it receives.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Request;
use http::HeaderMap;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokengate::config::Config;
use tokengate::server::Application;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A real upstream: answers `200 {"ok":true}` (or sleeps on `/slow`) and records requests.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |req: Request| {
            let record = Arc::clone(&record);
            async move {
                let (parts, body) = req.into_parts();
                // An aborted body (the gateway cut it off) is not a received request.
                let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
                    return (http::StatusCode::BAD_REQUEST, axum::Json(json!({"ok": false})));
                };
                let path_and_query = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
                if parts.uri.path() == "/slow" {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                record.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    path_and_query,
                    headers: parts.headers,
                    body,
                });
                (http::StatusCode::OK, axum::Json(json!({"ok": true})))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Upstream { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("the upstream received no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// The PostgreSQL server the tests use: `TOKENGATE_TEST_DATABASE_URL` (set by
/// `scripts/test.sh`), or else a throwaway cluster started here from Debian's binaries.
pub fn postgres_admin_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TOKENGATE_TEST_DATABASE_URL") {
            return url;
        }
        start_throwaway_postgres()
    })
}

fn start_throwaway_postgres() -> String {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).find(|p| p.join("initdb").exists()))
        .expect("PostgreSQL is not installed: run scripts/test.sh, or set TOKENGATE_TEST_DATABASE_URL");
    let dir = std::env::temp_dir().join(format!("tokengate-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let as_postgres = |args: &[&str]| {
        let status =
            std::process::Command::new("runuser").args(["-u", "postgres", "--"]).args(args).status().expect("runuser");
        assert!(status.success(), "{args:?} failed");
    };
    std::process::Command::new("chown").args(["postgres:postgres", dir.to_str().unwrap()]).status().unwrap();
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    as_postgres(&[bin.join("initdb").to_str().unwrap(), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"]);
    let opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", dir.display());
    as_postgres(&[
        bin.join("pg_ctl").to_str().unwrap(),
        "-D",
        data,
        "-o",
        &opts,
        "-l",
        &format!("{}/log", dir.display()),
        "-w",
        "start",
    ]);
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// A fresh, empty database on the test PostgreSQL server.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let name = format!("tg_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect to the test PostgreSQL server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{name}")
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub admin_token: String,
    pub http: reqwest::Client,
    /// For gateway calls only: its connections never carry an admin request, so they
    /// stay on the plain lane (a connection that has is hyper's from then on).
    pub gateway: reqwest::Client,
    pub upstream: Upstream,
    /// Held so the store directory lives as long as the server.
    _data_dir: tempfile::TempDir,
    pub database_url: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

pub fn base_config(data_dir: &Path, database_url: Option<String>) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        database_url,
        listen: "127.0.0.1:0".parse().unwrap(),
        usage_flush_millis: 100,
        upstream_timeout_seconds: 2,
        max_body_bytes: 1024 * 1024,
        ..Config::default()
    }
}

impl TestApp {
    pub async fn spawn(kind: StoreKind) -> TestApp {
        let database_url = match kind {
            StoreKind::Sqlite => None,
            StoreKind::Postgres => Some(fresh_postgres_database().await),
        };
        Self::spawn_with(database_url, |_| {}).await
    }

    /// A server on the given store (another node when the URL is shared).
    pub async fn spawn_with(database_url: Option<String>, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = base_config(data_dir.path(), database_url.clone());
        tweak(&mut config);
        let upstream = Upstream::start().await;
        let app = Application::build(config).await.expect("the server starts");
        let addr: SocketAddr = format!("127.0.0.1:{}", app.port()).parse().unwrap();
        // A second node on an initialized PostgreSQL store writes no admin-token file.
        let admin_token =
            std::fs::read_to_string(data_dir.path().join("admin-token")).unwrap_or_default().trim().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestApp {
            addr,
            admin_token,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            gateway: reqwest::Client::builder().no_proxy().build().unwrap(),
            upstream,
            _data_dir: data_dir,
            database_url,
            stop: Some(stop),
            done: Some(done),
        }
    }

    /// A second node on the same PostgreSQL store, sharing the first node's admin token.
    pub async fn second_node(&self) -> TestApp {
        let mut node = Self::spawn_with(self.database_url.clone(), |_| {}).await;
        node.admin_token = self.admin_token.clone();
        node
    }

    /// Graceful stop: in-flight requests finish, counters are flushed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await.unwrap();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        self._data_dir.path()
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(&self.admin_token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The typed client (`tokengate-client`) for this server, with the admin token.
    pub fn client(&self) -> tokengate_client::AdminClient {
        // On this app's HTTP client: its one keep-alive connection, as `admin` uses.
        tokengate_client::AdminClient::with_http(self.http.clone(), &self.url(""), self.admin_token.clone().into())
    }

    pub async fn create_account(&self, name: &str) -> String {
        let body = tokengate_proto::accounts::CreateAccount { name: name.to_string() };
        self.client().create_account(&body).await.unwrap().id.to_string()
    }

    /// Creates an instance in front of this app's upstream; returns (id, instance token).
    pub async fn create_instance(&self, account: &str) -> (String, String) {
        let body = tokengate_proto::instances::NewInstance {
            name: "main".into(),
            upstream_url: self.upstream.url(),
            rules: Vec::new(),
        };
        let created = self.client().create_instance(account, &body).await.unwrap();
        (created.instance.id.to_string(), created.token)
    }

    pub async fn generate_security_token(&self, account: &str) -> String {
        let generated = self.client().generate_security_token(account).await.unwrap();
        assert_eq!(generated.status, tokengate_core::SecurityTokenStatus::Disabled);
        generated.token
    }

    pub async fn activate(&self, account: &str) -> Value {
        let (status, body) =
            self.admin(reqwest::Method::POST, &format!("/v1/accounts/{account}/security-token/activate"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "active");
        body
    }

    pub async fn security_token(&self, account: &str) -> Value {
        let (status, body) =
            self.admin(reqwest::Method::GET, &format!("/v1/accounts/{account}/security-token"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// A gateway request to `path` of the instance with extra headers.
    pub async fn call(
        &self,
        instance: &(String, String),
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let (id, token) = instance;
        let mut req = self.gateway.get(self.url(&format!("/instances/{id}/token/{token}{path}")));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.text().await.unwrap())
    }

    /// Waits until the account's readiness matches (counters are flushed in the background).
    pub async fn wait_readiness(&self, account: &str, want: (u64, u64, u64)) -> Value {
        let mut last = Value::Null;
        for _ in 0..100 {
            last = self.security_token(account).await;
            let r = &last["readiness"];
            let got = (
                r["with_valid_token"].as_u64().unwrap_or(0),
                r["missing"].as_u64().unwrap_or(0),
                r["invalid"].as_u64().unwrap_or(0),
            );
            if got == want {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("readiness never reached {want:?}: {last}");
    }
}

pub const NULL_NOT_ALLOWED: &str = r#"{"error":"null not allowed"}"#;
pub const CLIENT_TOKEN_NOT_ALLOWED: &str = r#"{"error":"Client-Token not allowed"}"#;

/// The `tokengate` binary built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tokengate"))
}
