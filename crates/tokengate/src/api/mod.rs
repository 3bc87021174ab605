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
pub use tokengate_proto::docs::{PrivilegesDoc, RuleDoc};
pub use tokengate_proto::errors::ErrorBody;

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

/// Declares, on every operation, the error statuses the shared layers answer: `401`
/// (admin authentication), `404` (ids in the path), `400`/`413`/`415`/`422` (bodies and
/// query strings), `503` (the store unreachable), each with the error body. What a
/// handler answers beyond these it declares itself. A JSON body whose fields are all
/// optional is marked optional: [`extract::ApiJson`] reads no body as `{}`.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, ResponseBuilder, content::ContentBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        let name = <ErrorBody as utoipa::ToSchema>::name().to_string();
        components.schemas.insert(name.clone(), <ErrorBody as utoipa::PartialSchema>::schema());
        // Object schemas without a required field: a body of one may be left out.
        let all_optional: std::collections::HashSet<String> = components
            .schemas
            .iter()
            .filter(|(_, schema)| {
                matches!(schema, RefOr::T(utoipa::openapi::schema::Schema::Object(o)) if o.required.is_empty())
            })
            .map(|(name, _)| format!("#/components/schemas/{name}"))
            .collect();
        let error = |description: &str| {
            let content =
                ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name(name.clone()))).build();
            RefOr::T(ResponseBuilder::new().description(description).content("application/json", content).build())
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations =
                [item.get.as_mut(), item.post.as_mut(), item.put.as_mut(), item.patch.as_mut(), item.delete.as_mut()];
            for op in operations.into_iter().flatten() {
                let mut add = |status: &str, description: &str| {
                    op.responses.responses.entry(status.to_string()).or_insert_with(|| error(description));
                };
                if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    add("401", "a valid admin token is required");
                }
                if path.contains('{') {
                    add("404", "not found (also: an id of the wrong shape)");
                }
                let has_query = op.parameters.as_ref().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        matches!(p, RefOr::T(p) if matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query))
                    })
                });
                if op.request_body.is_some() || has_query {
                    add("400", "malformed JSON or query string");
                    add("422", "a field is missing, of the wrong type, or out of range");
                }
                if let Some(RefOr::T(body)) = op.request_body.as_mut() {
                    let schema = match body.content.get("application/json") {
                        Some(RefOr::T(content)) => content.schema.as_ref(),
                        _ => None,
                    };
                    if matches!(schema, Some(RefOr::Ref(r)) if all_optional.contains(&r.ref_location)) {
                        body.required = Some(utoipa::openapi::Required::False);
                    }
                }
                if op.request_body.is_some() {
                    add("413", "request body too large");
                    add("415", "wrong content type");
                }
                add("503", "the store is unreachable; try again (code store_unavailable)");
            }
        }
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
    // The routes' operations exist only now: their shared error statuses are added here.
    let mut openapi = openapi;
    ErrorResponses.modify(&mut openapi);
    let mut document = serde_json::to_value(&openapi).unwrap_or_default();
    ops::no_nul_in_strings(&mut document);
    router
        .merge(ops::router(bytes::Bytes::from(document.to_string())))
        .route("/.well-known/oauth-authorization-server", axum::routing::get(oauth::metadata))
        .route("/.well-known/jwks.json", axum::routing::get(oauth::jwks))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn(unreadable_path))
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY))
        .with_state(services)
}

/// A path whose escapes do not decode to UTF-8 names nothing: `404` as for an unknown
/// id (axum's path extractor would answer a plain-text `400`).
async fn unreadable_path(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    if percent_encoding::percent_decode_str(req.uri().path()).decode_utf8().is_err() {
        return axum::response::IntoResponse::into_response(ops::not_found().await);
    }
    next.run(req).await
}

/// Puts every route of `router` (the API's and the dashboard's) under
/// [`store_deadline`].
pub fn with_store_deadline(router: Router, limit: std::time::Duration) -> Router {
    router.layer(axum::middleware::from_fn_with_state(limit, store_deadline))
}

/// An admin request still unanswered `store_timeout_millis` after its body was read —
/// in practice one waiting on a store that is unreachable or stalled — answers `503
/// store_unavailable` (its transaction, dropped uncommitted, rolls back). The clock
/// starts once the body has been read, so a slow client gets the body timeout's 408,
/// not this. Imports stream for as long as their body does and are left alone.
async fn store_deadline(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.uri().path().ends_with("/tokens/import") {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let (read, body_read) = tokio::sync::oneshot::channel();
    let empty = http_body::Body::is_end_stream(&body);
    let req =
        axum::extract::Request::from_parts(parts, axum::body::Body::new(ReadSignal { inner: body, read: Some(read) }));
    let handler = next.run(req);
    tokio::pin!(handler);
    let deadline = async {
        if !empty {
            // Also when the body is dropped unread or fails: the handler answers then.
            let _ = body_read.await;
        }
        tokio::time::sleep(limit).await;
    };
    tokio::select! {
        response = &mut handler => response,
        () = deadline => {
            let unavailable = crate::store::StoreError::Backend(sqlx::Error::PoolTimedOut);
            axum::response::IntoResponse::into_response(error::ApiError::from(crate::service::ServiceError::Store(
                unavailable,
            )))
        }
    }
}

/// A request body that says when it has been read to its end.
struct ReadSignal {
    inner: axum::body::Body,
    read: Option<tokio::sync::oneshot::Sender<()>>,
}

impl http_body::Body for ReadSignal {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if (matches!(polled, std::task::Poll::Ready(None)) || self.inner.is_end_stream())
            && let Some(read) = self.read.take()
        {
            let _ = read.send(());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
