//! The web dashboard (SPEC §9): server-rendered pages for account members — login with
//! optional two-factor codes, the Security tab's Account Security Token flow, API tokens,
//! instances, OAuth clients, usage charts, the audit log — in English and Brazilian
//! Portuguese. Works without JavaScript; the little there is only copies to the clipboard.

mod chart;
mod error;
pub mod i18n;
mod login;
mod pages;
pub mod session;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, header};

use crate::service::Services;

/// What the dashboard's handlers share.
#[derive(Clone)]
pub struct DashState {
    pub services: Services,
    /// Cookies get `Secure` when the server terminates TLS, the public URL is https or
    /// `cookie_secure` is set.
    pub secure_cookies: bool,
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Security headers on every dashboard answer; pages are never cached.
async fn headers(req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// The dashboard routes that act on an object by its id (the usage page takes one in
/// its query, `?token=`). Tests try every one with ids of another account.
pub const TOKEN_REVOKE: &str = "/dashboard/tokens/{id}/revoke";
pub const TOKEN_ROTATE: &str = "/dashboard/tokens/{id}/rotate";
pub const MEMBER_REMOVE: &str = "/dashboard/members/{id}/remove";
pub const OAUTH_CLIENT_DELETE: &str = "/dashboard/oauth-clients/{id}/delete";
pub const WEBHOOK_DELETE: &str = "/dashboard/webhooks/{id}/delete";
pub const ROUTES_WITH_IDS: [&str; 5] = [TOKEN_REVOKE, TOKEN_ROTATE, MEMBER_REMOVE, OAUTH_CLIENT_DELETE, WEBHOOK_DELETE];

pub fn router(services: Services) -> Router {
    let secure_cookies = services.config.cookie_secure
        || services.config.tls_cert.is_some()
        || services.config.public_url.as_deref().is_some_and(|u| u.starts_with("https://"));
    let state = DashState { services, secure_cookies };
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        drop(runtime.spawn_blocking(login::warm_up));
    }
    Router::new()
        .route("/", get(login::home))
        .route("/login", post(login::login))
        .route("/login/otp", get(login::otp_form).post(login::otp))
        .route("/logout", post(login::logout))
        .route("/lang", get(login::switch_language))
        .route("/dashboard", get(|| async { axum::response::Redirect::to("/dashboard/security") }))
        .route("/dashboard/security", get(pages::security))
        .route("/dashboard/security/configure", post(pages::configure))
        .route("/dashboard/security/activate", post(pages::activate))
        .route("/dashboard/security/deactivate", post(pages::deactivate))
        .route("/dashboard/security/rotate", post(pages::rotate))
        .route("/dashboard/tokens", get(pages::tokens).post(pages::create_token))
        .route(TOKEN_REVOKE, post(pages::revoke_token))
        .route(TOKEN_ROTATE, post(pages::rotate_token))
        .route("/dashboard/instances", get(pages::instances).post(pages::create_instance))
        .route("/dashboard/members", post(pages::create_member))
        .route(MEMBER_REMOVE, post(pages::delete_member))
        .route("/dashboard/oauth-clients", get(pages::oauth_clients).post(pages::create_oauth_client))
        .route(OAUTH_CLIENT_DELETE, post(pages::delete_oauth_client))
        .route("/dashboard/webhooks", get(pages::webhooks).post(pages::create_webhook))
        .route(WEBHOOK_DELETE, post(pages::delete_webhook))
        .route("/dashboard/usage", get(pages::usage))
        .route("/dashboard/audit", get(pages::audit))
        .route("/dashboard/2fa", get(login::twofa))
        .route("/dashboard/2fa/enable", post(login::enable_twofa))
        .route("/dashboard/2fa/disable", post(login::disable_twofa))
        .route(
            "/static/app.css",
            get(|| async { asset("text/css; charset=utf-8", include_str!("../../static/app.css")) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", include_str!("../../static/app.js")) }),
        )
        .layer(axum::middleware::from_fn(headers))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}
