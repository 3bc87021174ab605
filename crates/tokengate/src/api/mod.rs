//! The admin API (SPEC §5) and the operational endpoints (SPEC §3), with the OpenAPI
//! document generated from the handlers' annotations.
//!
//! Handlers are a few lines each: extract, authenticate, call [`crate::service`], map.

mod accounts;
pub mod error;
mod extract;
mod instances;
mod leaks;
mod oauth;
mod oauth_admin;
mod ops;
mod reports;
mod rooms;
mod security_token;
mod tokens;
mod webhooks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::Services;

/// Admin request bodies are small; anything bigger is refused with 413.
const MAX_ADMIN_BODY: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "tokengate admin API", description = "Accounts, instances and the account security token (Client-Token)."),
    modifiers(&AdminTokenScheme),
    tags(
        (name = "accounts"), (name = "members"), (name = "instances"),
        (name = "security-token", description = "The account security token (Client-Token)"),
        (name = "tokens", description = "API keys and personal access tokens"),
        (name = "room-tokens", description = "Room apps and token04 room tokens"),
        (name = "oauth", description = "OAuth 2.0: clients, token endpoint, introspection, revocation, signing keys, trusted issuers"),
        (name = "reports", description = "Usage and audit"),
        (name = "leaks", description = "Leaked-token reports (public, rate limited)"),
        (name = "webhooks", description = "Token events delivered to your endpoints (Standard Webhooks)"),
    )
)]
struct ApiDoc;

struct AdminTokenScheme;

impl Modify for AdminTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("tga_…").build()),
        );
        components.add_security_scheme(
            "client_secret_basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// The admin and operational routes.
pub fn router(services: Services) -> Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(accounts::create_account, accounts::list_accounts))
        .routes(routes!(accounts::get_account))
        .routes(routes!(accounts::create_member, accounts::list_members))
        .routes(routes!(accounts::delete_member))
        .routes(routes!(accounts::put_ip_allowlist))
        .routes(routes!(instances::create_instance, instances::list_instances))
        .routes(routes!(instances::get_instance, instances::patch_instance, instances::delete_instance))
        .routes(routes!(security_token::generate, security_token::status, security_token::delete))
        .routes(routes!(security_token::activate))
        .routes(routes!(security_token::deactivate))
        .routes(routes!(security_token::rotate))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::get_token, tokens::revoke_token))
        .routes(routes!(tokens::rotate_token))
        .routes(routes!(tokens::token_usage))
        .routes(routes!(tokens::verify))
        .routes(routes!(tokens::import_tokens))
        .routes(routes!(leaks::report))
        .routes(routes!(leaks::github))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(webhooks::get_webhook, webhooks::delete_webhook))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(rooms::create_room_app, rooms::list_room_apps))
        .routes(routes!(rooms::delete_room_app))
        .routes(routes!(rooms::issue_room_token))
        .routes(routes!(rooms::verify_room_token))
        .routes(routes!(oauth_admin::create_oauth_client, oauth_admin::list_oauth_clients))
        .routes(routes!(oauth_admin::delete_oauth_client))
        .routes(routes!(oauth_admin::rotate_signing_key))
        .routes(routes!(oauth_admin::create_trusted_issuer, oauth_admin::list_trusted_issuers))
        .routes(routes!(oauth_admin::delete_trusted_issuer))
        .routes(routes!(oauth::token))
        .routes(routes!(oauth::introspect))
        .routes(routes!(oauth::revoke))
        .routes(routes!(reports::usage))
        .routes(routes!(reports::audit))
        .split_for_parts();
    let openapi = std::sync::Arc::new(openapi);
    let dashboard = crate::dashboard::router(services.clone());
    router
        .merge(ops::router(openapi))
        .route("/.well-known/oauth-authorization-server", axum::routing::get(oauth::metadata))
        .route("/.well-known/jwks.json", axum::routing::get(oauth::jwks))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY))
        .with_state(services)
        .merge(dashboard)
}
