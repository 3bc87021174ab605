//! The dashboard (issue 6) in a real headless Chromium driven over WebDriver
//! (chromedriver + fantoccini), plus HTTP-level checks of its session, CSRF and role rules.
//! Screenshots of the main pages are written to `target/screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{NULL_NOT_ALLOWED, StoreKind, TestApp};

pub const PASSWORD: &str = "correct horse battery";

/// A headless Chromium session; the driver process ends when this is dropped.
struct Browser {
    client: Client,
    driver: std::process::Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start(accept_language: &str) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/test.sh installs it)");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", format!("--lang={accept_language}")],
                "prefs": { "intl.accept_languages": accept_language }
            }),
        );
        let client = ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        Browser { client, driver }
    }

    async fn text(&self, css: &str) -> String {
        let found = self.client.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css(css)).await;
        match found {
            Ok(element) => element.text().await.unwrap(),
            Err(e) => panic!("{css}: {e}; page: {}", self.client.source().await.unwrap_or_default()),
        }
    }

    /// Clicks a link or submit button and waits until the page it was on is gone: every
    /// click in the dashboard navigates, and a check made before the next page arrives
    /// would read the old one (an element it waits for may be there already).
    async fn click(&self, css: &str) {
        let old_page = self.client.find(Locator::Css("html")).await.unwrap();
        let found = self.client.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css(css)).await;
        match found {
            Ok(element) => element.click().await.unwrap(),
            Err(e) => panic!("{css}: {e}; page: {}", self.client.source().await.unwrap_or_default()),
        }
        for _ in 0..300 {
            if old_page.text().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css}: the click did not leave the page");
    }

    async fn fill(&self, css: &str, value: &str) {
        let field = self.client.wait().for_element(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    async fn login(&self, app: &TestApp, email: &str) {
        self.client.goto(&app.url("/")).await.unwrap();
        self.fill("#email", email).await;
        self.fill("#password", PASSWORD).await;
        self.click("#login-submit").await;
        self.client.wait().for_element(Locator::Css("#token-status")).await.unwrap();
    }

    async fn screenshot(&self, name: &str) {
        // Every label on the page came from the catalog.
        let source = self.client.source().await.unwrap();
        assert!(!source.contains("Unknown localization"), "{name}: a missing message");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), self.client.screenshot().await.unwrap()).unwrap();
    }

    /// Nothing token-like in the URL, `localStorage` or `sessionStorage`.
    async fn assert_no_token_exposed(&self) {
        let url = self.client.current_url().await.unwrap().to_string();
        for prefix in ["tgc_", "tgk_", "tgp_", "tgs_", "tga_"] {
            assert!(!url.contains(prefix), "a token in the URL: {url}");
        }
        let storage = self
            .client
            .execute(
                "const dump = s => Array.from({length: s.length}, (_, i) => s.key(i) + '=' + s.getItem(s.key(i)));\
                 return JSON.stringify({local: dump(localStorage), session: dump(sessionStorage)});",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(storage.as_str().unwrap(), r#"{"local":[],"session":[]}"#);
    }
}

/// Adds a member; returns its id.
pub async fn member(app: &TestApp, account: &str, email: &str, role: &str) -> String {
    let body = json!({"email": email, "password": PASSWORD, "role": role});
    let (s, b) = app.admin(Method::POST, &format!("/v1/accounts/{account}/members"), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_tab_flow_in_a_real_browser() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("Acme").await;
    let inst = app.create_instance(&acc).await;
    member(&app, &acc, "owner@example.com", "owner").await;
    let browser = Browser::start("en-US,en").await;

    // Logged out: the login form, in English.
    browser.client.goto(&app.url("/dashboard/security")).await.unwrap();
    browser.client.wait().for_element(Locator::Css("#login-form")).await.unwrap();
    browser.screenshot("login").await;
    browser.fill("#email", "owner@example.com").await;
    browser.fill("#password", "wrong password").await;
    browser.click("#login-submit").await;
    assert_eq!(browser.text("#login-error").await, "Wrong email or password.");
    browser.login(&app, "owner@example.com").await;
    assert_eq!(browser.text("#token-status").await, "Not configured");
    assert_eq!(browser.text(".who").await, "Signed in as owner@example.com (owner)");

    // The session cookie's flags.
    let cookies = browser.client.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name() == "tg_session").expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.same_site(), Some(cookie::SameSite::Strict));

    // Configure now: the token, once, with a copy button.
    browser.click("#configure-now").await;
    let token = browser.text("#new-token").await;
    assert!(token.starts_with("tgc_") && token.len() == 40, "{token}");
    assert!(browser.text("#shown-once").await.contains("it will not be shown again"));
    assert_eq!(browser.text("#token-status").await, "Disabled");
    browser.client.find(Locator::Css("#copy-token")).await.unwrap();
    browser.screenshot("security-configured").await;
    browser.assert_no_token_exposed().await;
    // Reloading never shows it again.
    browser.client.goto(&app.url("/dashboard/security")).await.unwrap();
    assert!(!browser.client.source().await.unwrap().contains(&token));

    // Traffic before activation: one app already sends the token, one does not.
    assert_eq!(app.call(&inst, "/x", &[("Client-Token", &token)]).await.0, StatusCode::OK);
    assert_eq!(app.call(&inst, "/x", &[]).await.0, StatusCode::OK);
    app.wait_readiness(&acc, (1, 1, 0)).await;
    browser.client.goto(&app.url("/dashboard/security")).await.unwrap();
    assert_eq!(browser.text("#count-valid").await, "1");
    assert_eq!(browser.text("#count-missing").await, "1");
    browser.client.find(Locator::Css("#readiness svg")).await.unwrap();
    browser.screenshot("security-readiness").await;

    // Activate Token: recent requests lacked it, so it asks to confirm first.
    browser.click("#activate-token").await;
    browser.client.wait().for_element(Locator::Css("#confirm-panel")).await.unwrap();
    assert_eq!(browser.text("#token-status").await, "Disabled");
    browser.click("#confirm-activate").await;
    browser.client.wait().for_element(Locator::Css("#notice")).await.unwrap();
    assert_eq!(browser.text("#token-status").await, "Active");
    browser.screenshot("security-active").await;
    assert_eq!(app.call(&inst, "/x", &[]).await, (StatusCode::FORBIDDEN, NULL_NOT_ALLOWED.to_string()));
    assert_eq!(app.call(&inst, "/x", &[("Client-Token", &token)]).await.0, StatusCode::OK);

    // API tokens: create (shown once), then revoke.
    browser.client.goto(&app.url("/dashboard/tokens")).await.unwrap();
    browser.fill("#token-name", "backend").await;
    browser.fill("#token-scopes", "messages:send instance:read").await;
    browser.click("#token-create").await;
    let key = browser.text("#new-token").await;
    assert!(key.starts_with("tgk_"), "{key}");
    browser.screenshot("tokens").await;
    browser.assert_no_token_exposed().await;
    let (_, v) = app.verify(&app.admin_token, json!({"token": key})).await;
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["scopes"], json!(["messages:send", "instance:read"]));
    browser.click("#tokens button.revoke").await;
    browser.client.wait().for_element(Locator::Css("#notice")).await.unwrap();
    let (_, v) = app.verify(&app.admin_token, json!({"token": key})).await;
    assert_eq!(v["reason"], "revoked", "{v}");

    // OAuth clients: create (client id and secret shown once), then use and delete.
    browser.client.goto(&app.url("/dashboard/oauth-clients")).await.unwrap();
    browser.fill("#oauth-name", "partner").await;
    browser.fill("#oauth-scopes", "messages:send").await;
    browser.click("#oauth-create").await;
    let client_id = browser.text("#new-client-id").await;
    let client_secret = browser.text("#new-token").await;
    assert!(client_secret.starts_with("tgs_"), "{client_secret}");
    let grant = [("grant_type", "client_credentials")];
    let res = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&grant)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    browser.click("#oauth-clients button.delete-client").await;
    browser.client.wait().for_element(Locator::Css("#oauth-clients")).await.unwrap();
    let res = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&grant)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Webhooks: add one (secret shown once), see its deliveries, delete it.
    browser.client.goto(&app.url("/dashboard/webhooks")).await.unwrap();
    browser.fill("#webhook-url", &format!("{}/hook", app.upstream.url())).await;
    browser.click("#webhook-create").await;
    let secret = browser.text("#new-token").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    app.create_token(&acc, json!({"name": "hooked", "kind": "api_key", "scopes": ["messages:send"]})).await;
    let mut deliveries = String::new();
    for _ in 0..100 {
        browser.client.goto(&app.url("/dashboard/webhooks")).await.unwrap();
        deliveries = browser.text("#webhooks").await;
        if deliveries.contains("token.created") && deliveries.contains("200") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(deliveries.contains("token.created") && deliveries.contains("200"), "{deliveries}");
    assert!(!deliveries.contains(&secret), "the secret is shown once");
    browser.screenshot("webhooks").await;
    let seen = app.upstream.last();
    assert_eq!(seen.path_and_query, "/hook");
    assert!(seen.headers["webhook-signature"].to_str().unwrap().starts_with("v1,"));
    browser.click("#webhooks button.delete-webhook").await;
    browser.client.wait().for_element(Locator::Css("#webhooks")).await.unwrap();
    assert!(!browser.text("#webhooks").await.contains("/hook"));

    // The other pages render, with the charts and the audit trail.
    for (path, shot, marker) in [
        ("/dashboard/usage", "usage", "#usage-allowed"),
        ("/dashboard/audit", "audit", "#audit"),
        ("/dashboard/instances", "instances", "#instances"),
        ("/dashboard/oauth-clients", "oauth-clients", "#oauth-clients"),
    ] {
        browser.client.goto(&app.url(path)).await.unwrap();
        browser.client.wait().for_element(Locator::Css(marker)).await.unwrap();
        browser.screenshot(shot).await;
    }
    browser.client.goto(&app.url("/dashboard/audit")).await.unwrap();
    let audit = browser.text("#audit").await;
    assert!(audit.contains("security_token.activated") && audit.contains("token.revoked"), "{audit}");
    browser.assert_no_token_exposed().await;

    // A form whose CSRF field was removed is refused, and nothing changes.
    browser.client.goto(&app.url("/dashboard/security")).await.unwrap();
    browser
        .client
        .execute("document.querySelector('#deactivate-token').form.querySelector('input[name=csrf]').remove();", vec![])
        .await
        .unwrap();
    browser.click("#deactivate-token").await;
    assert_eq!(browser.text("#error-message").await, "The form expired. Reload the page and try again.");
    assert_eq!(app.security_token(&acc).await["status"], "active");

    // Log out: the session is gone, the pages want a login again.
    browser.client.goto(&app.url("/dashboard/security")).await.unwrap();
    browser.click("#logout").await;
    browser.client.wait().for_element(Locator::Css("#login-form")).await.unwrap();
    browser.client.goto(&app.url("/dashboard/tokens")).await.unwrap();
    browser.client.wait().for_element(Locator::Css("#login-form")).await.unwrap();

    // A viewer sees the Security tab without its buttons; forcing the action is refused.
    member(&app, &acc, "viewer@example.com", "viewer").await;
    browser.login(&app, "viewer@example.com").await;
    assert_eq!(browser.text("#token-status").await, "Active");
    assert!(browser.client.find(Locator::Css("#deactivate-token")).await.is_err());
    assert!(browser.client.find(Locator::Css("#configure-now")).await.is_err());
    browser
        .client
        .execute(
            "const f = document.createElement('form'); f.method = 'post'; f.action = '/dashboard/security/deactivate';\
             const c = document.querySelector('input[name=csrf]').cloneNode(); f.appendChild(c);\
             document.body.appendChild(f); f.submit();",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(browser.text("#error-message").await, "Your role does not allow this.");
    assert_eq!(app.security_token(&acc).await["status"], "active");
    browser.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portuguese_from_accept_language_in_a_real_browser() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("Acme").await;
    member(&app, &acc, "ana@example.com", "admin").await;
    let browser = Browser::start("pt-BR,pt").await;
    browser.client.goto(&app.url("/")).await.unwrap();
    assert_eq!(browser.text("#login-submit").await, "Entrar");
    browser.login(&app, "ana@example.com").await;
    assert_eq!(browser.text("#tab-security").await, "Segurança");
    assert_eq!(browser.text("#security-token h2").await, "Token de Segurança da Conta");
    assert_eq!(browser.text("#configure-now").await, "Configurar Agora");
    browser.click("#configure-now").await;
    assert_eq!(browser.text("#activate-token").await, "Ativar Token");
    browser.click("#activate-token").await;
    assert_eq!(browser.text("#confirm-activate").await, "Confirmar");
    browser.screenshot("security-pt-BR").await;
    // The switch is remembered: English from now on, whatever the browser asks for.
    browser.click("#lang-switch").await;
    assert_eq!(browser.text("#tab-security").await, "Security");
    browser.client.goto(&app.url("/dashboard/tokens")).await.unwrap();
    assert_eq!(browser.text("#tab-tokens").await, "API tokens");
    browser.client.clone().close().await.unwrap();
}

/// Moves every session's `column` back by `minutes`, in the SQLite store itself.
pub async fn age_sessions(app: &TestApp, column: &str, minutes: i64) {
    use sqlx::Connection;
    let url = format!("sqlite://{}", app.data_dir().join("tokengate.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let sql = format!("UPDATE sessions SET {column} = {column} - {}", minutes * 60_000);
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
}

/// A plain HTTP client with the session's cookies, for what a browser would not do.
pub struct Visitor<'a> {
    app: &'a TestApp,
    pub http: reqwest::Client,
    pub cookies: String,
    pub csrf: String,
}

pub fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

fn set_cookies(res: &reqwest::Response) -> Vec<String> {
    res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

impl<'a> Visitor<'a> {
    pub async fn login(app: &'a TestApp, email: &str, password: &str) -> (Visitor<'a>, StatusCode) {
        Self::login_from(app, email, password, None).await
    }

    /// A login through a proxy that says the client is `forwarded_for`.
    pub async fn login_from(
        app: &'a TestApp,
        email: &str,
        password: &str,
        forwarded_for: Option<&str>,
    ) -> (Visitor<'a>, StatusCode) {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(xff) = forwarded_for {
            headers.insert("x-forwarded-for", xff.parse().unwrap());
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .default_headers(headers)
            .build()
            .unwrap();
        let res = http.get(app.url("/")).send().await.unwrap();
        let login_cookie = set_cookies(&res)[0].split(';').next().unwrap().to_string();
        assert!(set_cookies(&res)[0].contains("HttpOnly; SameSite=Strict"));
        let csrf = csrf_of(&res.text().await.unwrap());
        let res = http
            .post(app.url("/login"))
            .header("cookie", &login_cookie)
            .form(&[("csrf", csrf.as_str()), ("email", email), ("password", password)])
            .send()
            .await
            .unwrap();
        let status = res.status();
        let session = set_cookies(&res).into_iter().find(|c| c.starts_with("tg_session=")).unwrap_or_default();
        let cookies = session.split(';').next().unwrap_or_default().to_string();
        let mut visitor = Visitor { app, http, cookies, csrf: String::new() };
        if status == StatusCode::SEE_OTHER {
            let (page_status, html) = visitor.get("/dashboard/security").await;
            if page_status == StatusCode::OK {
                visitor.csrf = csrf_of(&html);
            }
        }
        (visitor, status)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let res = self.http.get(self.app.url(path)).header("cookie", &self.cookies).send().await.unwrap();
        (res.status(), res.text().await.unwrap())
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let res = self.http.post(self.app.url(path)).header("cookie", &self.cookies).form(form).send().await.unwrap();
        (res.status(), res.text().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_roles_and_headers() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("Acme").await;
    member(&app, &acc, "owner@example.com", "owner").await;
    member(&app, &acc, "viewer@example.com", "viewer").await;

    let (owner, status) = Visitor::login(&app, "owner@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let res = owner.http.get(app.url("/dashboard/security")).header("cookie", &owner.cookies).send().await.unwrap();
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(!res.text().await.unwrap().contains("<script>"), "no inline script");

    // A form posted without its CSRF token, or with another one, is refused and changes nothing.
    assert_eq!(owner.post("/dashboard/security/configure", &[]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(owner.post("/dashboard/security/configure", &[("csrf", "forged")]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(app.security_token(&acc).await["status"], "none");
    let (s, html) = owner.post("/dashboard/security/configure", &[("csrf", &owner.csrf)]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("tgc_"));
    assert_eq!(app.security_token(&acc).await["status"], "disabled");

    // A viewer sees the tab but cannot activate (no button, and the action is refused).
    let (viewer, _) = Visitor::login(&app, "viewer@example.com", PASSWORD).await;
    let (s, html) = viewer.get("/dashboard/security").await;
    assert_eq!(s, StatusCode::OK);
    assert!(!html.contains("id=\"activate-token\"") && !html.contains("id=\"configure-now\""));
    let (s, _) = viewer.post("/dashboard/security/activate", &[("csrf", &viewer.csrf), ("confirm", "1")]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        viewer.post("/dashboard/tokens", &[("csrf", &viewer.csrf), ("name", "x"), ("scopes", "a:b")]).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.security_token(&acc).await["status"], "disabled");

    // Owners add members and instances from the dashboard; the instance token is shown once.
    let form =
        [("csrf", owner.csrf.as_str()), ("email", "dev@example.com"), ("password", PASSWORD), ("role", "developer")];
    assert_eq!(owner.post("/dashboard/members", &form).await.0, StatusCode::OK);
    let (dev, status) = Visitor::login(&app, "dev@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let form = [("csrf", dev.csrf.as_str()), ("email", "x@example.com"), ("password", PASSWORD), ("role", "viewer")];
    assert_eq!(dev.post("/dashboard/members", &form).await.0, StatusCode::FORBIDDEN, "a developer manages no members");
    let form = [("csrf", dev.csrf.as_str()), ("name", "ci"), ("scopes", "messages:send")];
    let (s, html) = dev.post("/dashboard/tokens", &form).await;
    assert_eq!(s, StatusCode::OK, "a developer manages tokens");
    assert!(html.contains("tgk_"));
    let upstream = app.upstream.url();
    let form = [("csrf", owner.csrf.as_str()), ("name", "shop"), ("upstream_url", upstream.as_str())];
    let (s, html) = owner.post("/dashboard/instances", &form).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("tgi_") && html.contains(">shop<"));

    // Bad input: a clear message, in the visitor's language.
    let form = [("csrf", owner.csrf.as_str()), ("name", "x"), ("scopes", "not a scope!")];
    let (s, html) = owner.post("/dashboard/tokens", &form).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("List 1 to 100 scopes"), "{html}");
    let res = owner
        .http
        .post(app.url("/dashboard/tokens"))
        .header("cookie", format!("{}; lang=pt-BR", owner.cookies))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("Informe de 1 a 100 escopos"));

    // The language switch only goes back to a path of this site.
    for (back, expected) in [
        ("/dashboard/tokens", "/dashboard/tokens"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/%0d%0aSet-Cookie:%20x=1", "/"),
    ] {
        let res = owner.http.get(app.url(&format!("/lang?to=pt-BR&back={back}"))).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{back}");
        assert_eq!(res.headers()["location"], expected, "{back}");
        assert!(res.headers()["set-cookie"].to_str().unwrap().starts_with("lang=pt-BR;"));
    }

    // Accept-Language: pt-BR without a session: the login form in Portuguese.
    let res = app.http.get(app.url("/")).header("accept-language", "pt-BR,pt;q=0.9").send().await.unwrap();
    let html = res.text().await.unwrap();
    assert!(html.contains("lang=\"pt-BR\"") && html.contains(">Entrar<"), "{html}");

    // Removing the member ends its sessions.
    let (_, members) = app.admin(Method::GET, &format!("/v1/accounts/{acc}/members"), None).await;
    let viewer_id =
        members["items"].as_array().unwrap().iter().find(|m| m["email"] == "viewer@example.com").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
    let (s, _) = app.admin(Method::DELETE, &format!("/v1/members/{viewer_id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(viewer.get("/dashboard/security").await.0, StatusCode::SEE_OTHER);

    // Sessions end after 30 idle minutes and after 12 hours whatever the activity: age the
    // stored session (the clock is the store's record, not the cookie's Max-Age).
    for (column, minutes) in [("last_seen_at", 31), ("created_at", 12 * 60 + 1)] {
        let (fresh, _) = Visitor::login(&app, "owner@example.com", PASSWORD).await;
        assert_eq!(fresh.get("/dashboard/security").await.0, StatusCode::OK);
        age_sessions(&app, column, minutes).await;
        assert_eq!(fresh.get("/dashboard/security").await.0, StatusCode::SEE_OTHER, "{column}");
    }

    // Logging out ends the session on the server, not only in the browser.
    let old_cookie = owner.cookies.clone();
    assert_eq!(owner.post("/logout", &[("csrf", &owner.csrf)]).await.0, StatusCode::SEE_OTHER);
    let res = owner.http.get(app.url("/dashboard/security")).header("cookie", &old_cookie).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    // Unknown emails and wrong passwords get the same answer; repeated failures lock the email.
    let (unknown, unknown_status) = Visitor::login(&app, "nobody@example.com", PASSWORD).await;
    let (wrong, wrong_status) = Visitor::login(&app, "owner@example.com", "not it at all").await;
    assert_eq!((unknown_status, wrong_status), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert!(unknown.cookies.is_empty() && wrong.cookies.is_empty(), "no session either way");
    for _ in 0..4 {
        Visitor::login(&app, "owner@example.com", "still wrong").await;
    }
    let (_, status) = Visitor::login(&app, "owner@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "locked even with the right password");
}

/// The key the enrollment page shows, and an authenticator for it.
pub fn enrollment_of(html: &str, email: &str) -> (String, totp_rs::TOTP) {
    let at = html.find("id=\"twofa-secret\">").unwrap() + 18;
    let secret = html[at..].split('<').next().unwrap().to_string();
    let bytes = totp_rs::Secret::Encoded(secret.clone()).to_bytes().unwrap();
    let totp =
        totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, Some("tokengate".into()), email.into()).unwrap();
    (secret, totp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_factor_login_with_totp() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    let acc = app.create_account("Acme").await;
    member(&app, &acc, "ana@example.com", "admin").await;
    let (ana, _) = Visitor::login(&app, "ana@example.com", PASSWORD).await;
    let (_, html) = ana.get("/dashboard/2fa").await;
    assert!(html.contains("<svg"), "a QR code");
    let (secret, totp) = enrollment_of(&html, "ana@example.com");
    let (s, _) =
        ana.post("/dashboard/2fa/enable", &[("csrf", &ana.csrf), ("secret", &secret), ("code", "000000")]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let code = totp.generate_current().unwrap();
    let (s, _) = ana.post("/dashboard/2fa/enable", &[("csrf", &ana.csrf), ("secret", &secret), ("code", &code)]).await;
    assert_eq!(s, StatusCode::SEE_OTHER);

    // Now a login stops at the code step: no page until the code is given.
    let (second, status) = Visitor::login(&app, "ana@example.com", PASSWORD).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let res = second.http.get(app.url("/dashboard/security")).header("cookie", &second.cookies).send().await.unwrap();
    assert_eq!(res.headers()["location"], "/login/otp");
    let (_, form) = second.get("/login/otp").await;
    let csrf = csrf_of(&form);
    assert_eq!(second.post("/login/otp", &[("csrf", &csrf), ("code", "123456")]).await.0, StatusCode::UNAUTHORIZED);
    let code = totp.generate_current().unwrap();
    assert_eq!(second.post("/login/otp", &[("csrf", &csrf), ("code", &code)]).await.0, StatusCode::SEE_OTHER);
    assert_eq!(second.get("/dashboard/security").await.0, StatusCode::OK);

    // The same code never works twice.
    let (third, _) = Visitor::login(&app, "ana@example.com", PASSWORD).await;
    let (_, form) = third.get("/login/otp").await;
    let csrf = csrf_of(&form);
    assert_eq!(third.post("/login/otp", &[("csrf", &csrf), ("code", &code)]).await.0, StatusCode::UNAUTHORIZED);
}
