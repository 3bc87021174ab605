//! The real binary: `init`, `serve`, the CLI, crash safety (SIGKILL), graceful
//! shutdown (SIGTERM), and that no secret reaches a log line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{NULL_NOT_ALLOWED, StoreKind, Upstream, binary, fresh_postgres_database};
use crate::on_both_stores;

on_both_stores!(acknowledged_writes_survive_sigkill);

/// A `tokengate serve` process, its captured log, and an HTTP client for it.
pub struct Server {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<String>>,
    http: reqwest::Client,
    pub admin_token: String,
    events: std::sync::mpsc::Receiver<(String, String)>,
    data_dir: std::path::PathBuf,
}

impl Server {
    /// Starts `tokengate serve` and waits until it is ready.
    pub fn start(data_dir: &Path, database_url: Option<&str>, extra: &[&str]) -> Server {
        let mut server = Self::spawn(data_dir, database_url, extra);
        server.wait_for("tokengate ready");
        server
    }

    /// Starts `tokengate serve` on a store it cannot reach yet: returns once it says
    /// it is waiting (and already answers on its address).
    pub fn start_waiting(data_dir: &Path, database_url: &str, extra: &[&str]) -> Server {
        let mut server = Self::spawn(data_dir, Some(database_url), extra);
        server.wait_for("waiting for the store");
        server
    }

    /// Waits (up to a minute) for the log line `message`; takes its `listen` address
    /// and, once there is one, the admin token.
    pub fn wait_for(&mut self, message: &str) {
        loop {
            match self.events.recv_timeout(Duration::from_secs(60)) {
                Ok((m, listen)) if m == message => {
                    self.addr = listen;
                    break;
                }
                Ok(_) => {}
                Err(_) => panic!("server never said {message:?}: {}", self.log.lock().unwrap()),
            }
        }
        self.admin_token = std::fs::read_to_string(self.data_dir.join("admin-token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
    }

    fn spawn(data_dir: &Path, database_url: Option<&str>, extra: &[&str]) -> Server {
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, events) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && (v["message"] == "tokengate ready" || v["message"] == "waiting for the store")
                {
                    let message = v["message"].as_str().unwrap_or_default().to_string();
                    let _ = tx.send((message, v["listen"].as_str().unwrap_or_default().to_string()));
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Server {
            child,
            addr: String::new(),
            log,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            admin_token: String::new(),
            events,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(&self.admin_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let mut req = self.http.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.text().await.unwrap())
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap();
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn init_prints_the_admin_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary()).args(["init", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = printed["admin_token"].as_str().unwrap();
    assert!(token.starts_with("tga_") && token.len() == 40);
    assert_eq!(printed.as_object().unwrap().len(), 1);

    let again = Command::new(binary()).args(["init", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(!again.status.success());
    assert!(!String::from_utf8_lossy(&again.stdout).contains("tga_"));
    assert!(!String::from_utf8_lossy(&again.stderr).contains(token));
}

/// `TOKENGATE_*` values of text settings are read as text, whatever they look like.
#[test]
fn numeric_looking_string_settings_stay_strings() {
    let dir = tempfile::tempdir().unwrap();
    let digits = "0123456789".repeat(7)[..64].to_string();
    let out = Command::new(binary())
        .args(["serve", "--print-config"])
        .current_dir(dir.path())
        .env("TOKENGATE_DATA_DIR", "2024")
        .env("TOKENGATE_MASTER_KEY", &digits)
        .env("TOKENGATE_LOG_LEVEL", "7")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.contains("data_dir = \"2024\""), "{shown}");
    assert!(!shown.contains(&digits));
}

/// The data directory and store files are the server's alone, and a master key others
/// can read is refused (like ssh with a private key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_private_and_open_master_keys_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let server = Server::start(&dir, None, &[]);
    assert_eq!(server.admin(Method::GET, "/v1/accounts", None).await.0, StatusCode::OK);
    assert_eq!(mode(&dir), 0o700);
    for file in ["tokengate.db", "tokengate.db-wal", "tokengate.db-shm", "admin-token", "master-key"] {
        let path = dir.join(file);
        assert!(path.exists(), "{file}");
        assert_eq!(mode(&path), 0o600, "{file}");
    }
    drop(server);

    let key = dir.join("master-key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env_remove("TOKENGATE_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&key.display().to_string()) && err.contains("chmod 600"), "{err}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server = Server::start(&dir, None, &[]);
    assert_eq!(server.admin(Method::GET, "/v1/accounts", None).await.0, StatusCode::OK);
}

#[test]
fn print_config_applies_layers_and_redacts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tg.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:7000\"\nlog_level = \"warn\"\n").unwrap();
    let out = Command::new(binary())
        .args(["serve", "--print-config", "--config"])
        .arg(&file)
        .args(["--database-url", "postgres://tg:s3cret-pw@db.internal/tg"])
        .env("TOKENGATE_LOG_LEVEL", "debug")
        .env("TOKENGATE_MASTER_KEY", "ab".repeat(32))
        .env("TOKENGATE_LISTEN", "127.0.0.1:7001")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(shown.contains("listen = \"127.0.0.1:7001\""), "env over file: {shown}");
    assert!(shown.contains("log_level = \"debug\""), "{shown}");
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    assert!(shown.contains("REDACTED"));
    assert!(!shown.contains(&"ab".repeat(32)), "the master key is never printed");
}

/// List settings read from the environment as a plain comma-separated list, or as a
/// TOML array; a bad entry is still refused.
#[test]
fn list_settings_read_comma_separated_environment_values() {
    let print = |vars: &[(&str, &str)]| {
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--print-config"]).env("TOKENGATE_MASTER_KEY", "ab".repeat(32));
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = print(&[
        ("TOKENGATE_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.0.0/16"),
        ("TOKENGATE_EGRESS_ALLOW", "169.254.169.254/32"),
        ("TOKENGATE_WEBHOOK_RETRY_SECONDS", "5,60"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Compared without whitespace: TOML prints longer arrays one item a line.
    let compact = |out: std::process::Output| String::from_utf8(out.stdout).unwrap().replace(char::is_whitespace, "");
    let shown = compact(out);
    assert!(shown.contains(r#"trusted_proxies=["10.0.0.0/8","192.168.0.0/16""#), "{shown}");
    assert!(shown.contains(r#"egress_allow=["169.254.169.254/32"]"#), "{shown}");
    assert!(shown.contains("webhook_retry_seconds=[5,60"), "{shown}");
    let out = print(&[("TOKENGATE_TRUSTED_PROXIES", r#"["127.0.0.1/32"]"#)]);
    assert!(compact(out).contains(r#"trusted_proxies=["127.0.0.1/32"]"#));
    let out = print(&[("TOKENGATE_TRUSTED_PROXIES", "10.0.0.0/8,not-a-cidr")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-a-cidr"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// SIGKILL right after acknowledged writes; everything acknowledged is there after restart.
async fn acknowledged_writes_survive_sigkill(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let db = match kind {
        StoreKind::Sqlite => None,
        StoreKind::Postgres => Some(fresh_postgres_database().await),
    };
    let upstream = Upstream::start().await;
    let server = Server::start(dir.path(), db.as_deref(), &[]);
    let (_, acc) = server.admin(Method::POST, "/v1/accounts", Some(json!({"name": "Durable"}))).await;
    let acc = acc["id"].as_str().unwrap().to_string();
    let mut instances = Vec::new();
    for i in 0..5 {
        let (s, inst) = server
            .admin(
                Method::POST,
                &format!("/v1/accounts/{acc}/instances"),
                Some(json!({"name": format!("i{i}"), "upstream_url": upstream.url()})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        instances.push((inst["id"].as_str().unwrap().to_string(), inst["token"].as_str().unwrap().to_string()));
    }
    let (_, generated) = server.admin(Method::POST, &format!("/v1/accounts/{acc}/security-token"), None).await;
    let first = generated["token"].as_str().unwrap().to_string();
    let (s, _) = server.admin(Method::POST, &format!("/v1/accounts/{acc}/security-token/activate"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, rotated) = server
        .admin(Method::POST, &format!("/v1/accounts/{acc}/security-token/rotate"), Some(json!({"grace_seconds": 3600})))
        .await;
    assert_eq!(s, StatusCode::OK);
    let second = rotated["token"].as_str().unwrap().to_string();
    server.signal("-KILL");
    drop(server);

    let server = Server::start(dir.path(), db.as_deref(), &[]);
    let (_, listed) = server.admin(Method::GET, &format!("/v1/accounts/{acc}/instances"), None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 5);
    let (_, status) = server.admin(Method::GET, &format!("/v1/accounts/{acc}/security-token"), None).await;
    assert_eq!(status["status"], "active");
    assert!(status["previous_valid_until"].is_string());
    for (id, token) in &instances {
        let path = format!("/instances/{id}/token/{token}/x");
        assert_eq!(server.get(&path, &[]).await, (StatusCode::FORBIDDEN, NULL_NOT_ALLOWED.to_string()));
        assert_eq!(server.get(&path, &[("Client-Token", &second)]).await.0, StatusCode::OK);
        assert_eq!(server.get(&path, &[("Client-Token", &first)]).await.0, StatusCode::OK, "inside the grace period");
    }
    let (_, audit) = server.admin(Method::GET, &format!("/v1/accounts/{acc}/audit"), None).await;
    let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "instance.created").count(), 5);
    assert!(actions.contains(&"security_token.rotated"));
}

/// A whole scenario with bad input, then a search of the captured log for every secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_and_sigterm_drains() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start().await;
    let server = Server::start(dir.path(), None, &[]);
    let mut secrets = vec![server.admin_token.clone()];
    assert!(server.log().contains("admin-token"), "the log names the admin token file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("admin-token")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (_, acc) = server.admin(Method::POST, "/v1/accounts", Some(json!({"name": "Quiet"}))).await;
    let acc = acc["id"].as_str().unwrap().to_string();
    let (_, inst) = server
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/instances"),
            Some(json!({"name": "q", "upstream_url": upstream.url()})),
        )
        .await;
    let (id, itoken) = (inst["id"].as_str().unwrap().to_string(), inst["token"].as_str().unwrap().to_string());
    secrets.push(itoken.clone());
    let (_, generated) = server.admin(Method::POST, &format!("/v1/accounts/{acc}/security-token"), None).await;
    let ct = generated["token"].as_str().unwrap().to_string();
    secrets.push(ct.clone());
    server.admin(Method::POST, &format!("/v1/accounts/{acc}/security-token/activate"), None).await;
    let (_, rotated) = server
        .admin(Method::POST, &format!("/v1/accounts/{acc}/security-token/rotate"), Some(json!({"grace_seconds": 60})))
        .await;
    secrets.push(rotated["token"].as_str().unwrap().to_string());
    server
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/members"),
            Some(json!({"email": "x@y.z", "password": "pw-that-must-not-leak", "role": "viewer"})),
        )
        .await;
    secrets.push("pw-that-must-not-leak".into());
    let (_, key) = server
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/tokens"),
            Some(json!({"name": "k", "kind": "api_key", "scopes": ["*"]})),
        )
        .await;
    let key = key["token"].as_str().unwrap().to_string();
    secrets.push(key.clone());
    let rules = json!([{"path": "/*", "scopes": ["messages:send"]}]);
    let (_, ruled) = server
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/instances"),
            Some(json!({"name": "r", "upstream_url": upstream.url(), "rules": rules})),
        )
        .await;
    secrets.push(ruled["token"].as_str().unwrap().to_string());
    let ruled_path =
        format!("/instances/{}/token/{}/send", ruled["id"].as_str().unwrap(), ruled["token"].as_str().unwrap());
    let bearer = format!("Bearer {key}");
    assert_eq!(server.get(&ruled_path, &[("Client-Token", &ct), ("Authorization", &bearer)]).await.0, StatusCode::OK);
    server.get(&ruled_path, &[("Client-Token", &ct), ("Authorization", "Bearer tgk_guess")]).await;
    server.admin(Method::POST, "/v1/verify", Some(json!({"token": key}))).await;
    let room_secret = "fedcba9876543210fedcba9876543210";
    secrets.push(room_secret.to_string());
    server
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/room-apps"),
            Some(json!({"app_id": 5, "server_secret": room_secret})),
        )
        .await;
    let (_, room) = server
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/room-apps/5/tokens"),
            Some(
                json!({"user_id": "u", "privileges": {"login_room": true, "publish_stream": false}, "ttl_seconds": 60}),
            ),
        )
        .await;
    secrets.push(room["token"].as_str().unwrap().to_string());
    secrets.push(std::fs::read_to_string(dir.path().join("master-key")).unwrap().trim().to_string());
    // OAuth: a client secret, an access token used at the gateway, a failed request, a revocation.
    let (_, client) = server
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/oauth-clients"),
            Some(json!({"name": "c", "scopes": ["messages:send"]})),
        )
        .await;
    let (client_id, client_secret) =
        (client["client_id"].as_str().unwrap().to_string(), client["client_secret"].as_str().unwrap().to_string());
    secrets.push(client_secret.clone());
    let grant = [("grant_type", "client_credentials")];
    let issued: Value = server
        .http
        .post(server.url("/oauth/token"))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&grant)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = issued["access_token"].as_str().unwrap().to_string();
    secrets.push(access.clone());
    let jwt_bearer = format!("Bearer {access}");
    assert_eq!(
        server.get(&ruled_path, &[("Client-Token", &ct), ("Authorization", &jwt_bearer)]).await.0,
        StatusCode::OK
    );
    server
        .http
        .post(server.url("/oauth/token"))
        .basic_auth(&client_id, Some("tgs_wrong"))
        .form(&grant)
        .send()
        .await
        .unwrap();
    let revoke = [("token", access.as_str())];
    server
        .http
        .post(server.url("/oauth/revoke"))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&revoke)
        .send()
        .await
        .unwrap();
    assert_eq!(
        server.get(&ruled_path, &[("Client-Token", &ct), ("Authorization", &jwt_bearer)]).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A dashboard login: the session id must not reach the log either.
    let (_, member) = server
        .admin(
            Method::POST,
            &format!("/v1/accounts/{acc}/members"),
            Some(json!({"email": "log@example.com", "password": "correct horse battery", "role": "owner"})),
        )
        .await;
    assert!(member["id"].is_string(), "{member}");
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login_page = no_redirect.get(server.url("/")).send().await.unwrap();
    let login_cookie = login_page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let html = login_page.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = html[at..].split('"').next().unwrap().to_string();
    let logged_in = no_redirect
        .post(server.url("/login"))
        .header("cookie", &login_cookie)
        .form(&[("csrf", csrf.as_str()), ("email", "log@example.com"), ("password", "correct horse battery")])
        .send()
        .await
        .unwrap();
    let session = logged_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("tg_session="))
        .expect("a session cookie");
    secrets.push(session.split(';').next().unwrap().trim_start_matches("tg_session=").to_string());
    secrets.push("correct horse battery".to_string());
    let gw = format!("/instances/{id}/token/{itoken}");
    server.get(&format!("{gw}/ok"), &[("Client-Token", &ct)]).await;
    server.get(&format!("{gw}/missing"), &[]).await;
    server.get(&format!("{gw}/wrong"), &[("Client-Token", "tgc_guess")]).await;
    server.get(&format!("/instances/{id}/token/tgi_wrong/x"), &[]).await;
    server.admin(Method::POST, "/v1/accounts", Some(json!({"name": 42}))).await;
    // Upstream down: the error is logged, without the URL's token.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    server.admin(Method::PATCH, &format!("/v1/instances/{id}"), Some(json!({"upstream_url": dead_url}))).await;
    assert_eq!(server.get(&format!("{gw}/x"), &[("Client-Token", &ct)]).await.0, StatusCode::BAD_GATEWAY);
    server.admin(Method::PATCH, &format!("/v1/instances/{id}"), Some(json!({"upstream_url": upstream.url()}))).await;

    // SIGTERM with a request in flight: it completes, then the process exits cleanly.
    let slow = {
        let http = server.http.clone();
        let url = server.url(&format!("{gw}/slow"));
        let ct = ct.clone();
        tokio::spawn(async move { http.get(url).header("Client-Token", ct).send().await.map(|r| r.status()) })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal("-TERM");
    assert_eq!(slow.await.unwrap().unwrap(), StatusCode::OK, "in-flight request finished during shutdown");
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    std::thread::sleep(Duration::from_millis(100));
    let log = server.log();
    assert!(log.contains("stopped"), "{log}");
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
    }
    // Any tokengate-shaped secret at all?
    for prefix in ["tga_", "tgc_", "tgi_", "tgk_", "tgp_", "tgs_"] {
        for (i, _) in log.match_indices(prefix) {
            let candidate: String = log[i..].chars().take(40).collect();
            assert!(
                candidate.len() < 40 || !candidate.chars().skip(4).all(|c| c.is_ascii_alphanumeric()),
                "token-like string in the log: {candidate}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_the_security_token_flow() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start().await;
    let server = Server::start(dir.path(), None, &[]);
    let cli = |args: &[&str]| {
        let out = Command::new(binary())
            .args(args)
            .args(["--json", "--url", &server.url("")])
            .env("TOKENGATE_ADMIN_TOKEN", &server.admin_token)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let acc = cli(&["accounts", "create", "--name", "From CLI"]);
    let acc = acc["id"].as_str().unwrap();
    let inst = cli(&["instances", "create", "--account", acc, "--name", "cli", "--upstream-url", &upstream.url()]);
    let (id, token) = (inst["id"].as_str().unwrap(), inst["token"].as_str().unwrap());
    let generated = cli(&["security-token", "generate", "--account", acc]);
    assert_eq!(generated["status"], "disabled");
    let ct = generated["token"].as_str().unwrap();
    let status = cli(&["security-token", "status", "--account", acc]);
    assert_eq!(status["status"], "disabled");
    assert!(status.get("token").is_none());
    assert_eq!(cli(&["security-token", "activate", "--account", acc])["status"], "active");
    let path = format!("/instances/{id}/token/{token}/x");
    assert_eq!(server.get(&path, &[]).await, (StatusCode::FORBIDDEN, NULL_NOT_ALLOWED.to_string()));
    assert_eq!(server.get(&path, &[("Client-Token", ct)]).await.0, StatusCode::OK);
    let rotated = cli(&["security-token", "rotate", "--account", acc, "--grace-seconds", "0"]);
    assert_ne!(rotated["token"], ct);
    assert_eq!(cli(&["security-token", "deactivate", "--account", acc])["status"], "disabled");
    let listed = cli(&["instances", "list", "--account", acc]);
    assert_eq!(listed[0]["id"], id);

    // Tokens: create, list, verify (from stdin), rotate, revoke.
    let token = cli(&[
        "tokens",
        "create",
        "--account",
        acc,
        "--name",
        "cli-key",
        "--scope",
        "messages:send",
        "--scope",
        "tokens:verify",
        "--rate-limit",
        "100/60",
    ]);
    let (tid, secret) = (token["id"].as_str().unwrap().to_string(), token["token"].as_str().unwrap().to_string());
    assert_eq!(token["rate_limit"], json!({"limit": 100, "window_seconds": 60}));
    let listed = cli(&["tokens", "list", "--account", acc]);
    assert!(!listed.to_string().contains(&secret));
    assert_eq!(cli(&["tokens", "show", &tid])["name"], "cli-key");
    let verify = |token: &str| {
        let mut child = Command::new(binary())
            .args(["tokens", "verify", "--scope", "messages:send", "--json", "--url", &server.url("")])
            .env("TOKENGATE_ADMIN_TOKEN", &server.admin_token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(format!("{token}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(verify(&secret)["valid"], true);
    let rotated = cli(&["tokens", "rotate", &tid, "--grace-seconds", "0"]);
    assert_eq!(verify(&secret)["reason"], "revoked");
    let new_id = rotated["id"].as_str().unwrap();
    cli(&["tokens", "revoke", new_id]);
    assert_eq!(verify(rotated["token"].as_str().unwrap())["reason"], "revoked");

    // Room apps and tokens: the secret and the token travel through stdin.
    let piped = |args: &[&str], input: &str| {
        let mut child = Command::new(binary())
            .args(args)
            .args(["--json", "--url", &server.url("")])
            .env("TOKENGATE_ADMIN_TOKEN", &server.admin_token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(format!("{input}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}");
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let room_secret = "0123456789abcdef0123456789abcdef";
    assert_eq!(piped(&["room-apps", "create", "--account", acc, "--app-id", "77"], room_secret)["app_id"], 77);
    let issued = cli(&[
        "room-tokens",
        "issue",
        "--account",
        acc,
        "--app-id",
        "77",
        "--user-id",
        "bob",
        "--room-id",
        "r1",
        "--login-room",
        "--mode",
        "cbc",
    ]);
    let room_token = issued["token"].as_str().unwrap();
    let verified =
        piped(&["room-tokens", "verify", "--app-id", "77", "--room-id", "r1", "--privilege", "login_room"], room_token);
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["user_id"], "bob");
    let denied = piped(&["room-tokens", "verify", "--app-id", "77", "--privilege", "publish_stream"], room_token);
    assert_eq!(denied["reason"], "privilege_denied");

    // OAuth clients, signing keys and trusted issuers.
    let created = cli(&["oauth-clients", "create", "--account", acc, "--name", "partner", "--scope", "messages:send"]);
    let client_id = created["client_id"].as_str().unwrap();
    assert!(created["client_secret"].as_str().unwrap().starts_with("tgs_"));
    let listed = cli(&["oauth-clients", "list", "--account", acc]);
    assert_eq!(listed[0]["client_id"], client_id);
    assert!(!listed.to_string().contains("tgs_"));
    let rotated = cli(&["signing-keys", "rotate", "--alg", "ES256"]);
    assert_eq!(rotated["alg"], "ES256");
    let jwks: Value = server.http.get(server.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == rotated["kid"]));
    let issuer = cli(&[
        "trusted-issuers",
        "create",
        "--account",
        acc,
        "--issuer",
        "https://idp.example/",
        "--jwks-uri",
        "https://idp.example/jwks",
        "--audience",
        "api",
    ]);
    assert_eq!(cli(&["trusted-issuers", "list", "--account", acc])[0]["id"], issuer["id"]);
    cli(&["trusted-issuers", "delete", "--account", acc, "--id", issuer["id"].as_str().unwrap()]);
    cli(&["oauth-clients", "delete", "--account", acc, "--client-id", client_id]);
    assert_eq!(cli(&["oauth-clients", "list", "--account", acc]), json!([]));

    // Human-readable output and a clear error without a token.
    let out = Command::new(binary())
        .args(["accounts", "list", "--url", &server.url("")])
        .env_remove("TOKENGATE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin token"));
}

/// Every admin route of the OpenAPI document has a CLI command, and the command exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_has_a_cli_command() {
    let app = crate::helpers::TestApp::spawn(StoreKind::Sqlite).await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let covered = tokengate::admin_commands::ROUTES;
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Protocol endpoints for other programs, not operators.
        if path.starts_with("/oauth/") || path == "/v1/leaks/github" {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            let command = covered
                .iter()
                .find(|(m, p, _)| m == method && p == path)
                .map(|(_, _, c)| *c)
                .unwrap_or_else(|| panic!("no CLI command for {method} {path}"));
            let out = Command::new(binary()).args(command.split(' ')).arg("--help").output().unwrap();
            assert!(out.status.success(), "`tokengate {command} --help`: {}", String::from_utf8_lossy(&out.stderr));
            seen += 1;
        }
    }
    assert!(seen >= 45, "{seen} routes checked");
    // And one of the new commands end to end.
    let account = app.create_account("cli").await;
    let out = Command::new(binary())
        .args([
            "webhooks",
            "create",
            "--account",
            &account,
            "--endpoint",
            "https://hooks.example.com/x",
            "--event",
            "token.created",
            "--json",
        ])
        .env("TOKENGATE_URL", app.url(""))
        .env("TOKENGATE_ADMIN_TOKEN", &app.admin_token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let out = Command::new(binary())
        .args(["reports", "audit", "--account", &account, "--json"])
        .env("TOKENGATE_URL", app.url(""))
        .env("TOKENGATE_ADMIN_TOKEN", &app.admin_token)
        .output()
        .unwrap();
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(audit["items"].as_array().unwrap().iter().any(|e| e["action"] == "webhook.created"), "{audit}");
}

/// `tokengate completions SHELL` prints a completion script that knows the commands.
#[test]
fn shell_completions_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(binary()).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["security-token", "trusted-issuers", "rotate"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let bad = Command::new(binary()).args(["completions", "cmd.exe"]).output().unwrap();
    assert!(!bad.status.success());
}
