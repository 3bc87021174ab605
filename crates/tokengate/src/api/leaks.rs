//! Leak reports (SPEC §15): `POST /v1/leaks` from anyone, `POST /v1/leaks/github` from
//! GitHub's secret scanning (signed). Both limited per client address, together.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use http::StatusCode;

use super::error::{ApiError, ApiResult};
use super::extract::ApiJson;
use crate::gateway::PeerAddr;
use crate::service::Services;
use crate::service::github::{GithubLabel, GithubMatch, SignatureError};
use crate::service::leaks::LeakReport;
pub use tokengate_proto::leaks::LeakReceived;

/// The largest GitHub report read.
const MAX_GITHUB_BODY: usize = 1024 * 1024;
/// Matches per GitHub report.
const MAX_GITHUB_MATCHES: usize = 1000;

/// The reporter's address (resolved through `trusted_proxies`), counted against
/// the limit of both leak endpoints.
fn admit(services: &Services, req: &Request) -> ApiResult<Option<std::net::IpAddr>> {
    let peer = req.extensions().get::<PeerAddr>();
    let ip = peer.map(|p| p.client.known().unwrap_or_else(|| p.peer.ip()));
    if let Some(ip) = ip {
        services.leak_limiter.check(ip).map_err(|retry_after_seconds| ApiError::RateLimited { retry_after_seconds })?;
    }
    Ok(ip)
}

#[utoipa::path(post, path = "/v1/leaks", tag = "leaks", request_body = LeakReport,
    responses((status = 202, body = LeakReceived, description = "the same answer whatever the strings are"),
        (status = 400), (status = 413), (status = 415), (status = 422), (status = 429)))]
pub async fn report(State(s): State<Services>, req: Request) -> ApiResult<(StatusCode, Json<LeakReceived>)> {
    let reporter = admit(&s, &req)?;
    let ApiJson(report) = ApiJson::<LeakReport>::from_request(req, &s).await?;
    crate::service::leaks::validate(&report)?;
    let received = report.tokens.len();
    // Acted on after answering: the answer and its timing say nothing about the strings.
    let services = s.clone();
    tokio::spawn(async move {
        services.act_on_leaks(&report.tokens, report.url.as_deref(), report.source.as_deref(), reporter).await;
    });
    Ok((StatusCode::ACCEPTED, Json(LeakReceived { received })))
}

#[utoipa::path(post, path = "/v1/leaks/github", tag = "leaks", request_body = Vec<GithubMatch>,
    params(("Github-Public-Key-Identifier" = String, Header), ("Github-Public-Key-Signature" = String, Header)),
    responses((status = 200, body = Vec<GithubLabel>), (status = 400), (status = 401), (status = 413),
        (status = 422), (status = 429)))]
pub async fn github(State(s): State<Services>, req: Request) -> ApiResult<Json<Vec<GithubLabel>>> {
    // A report without the signature headers is refused before anything is read or
    // verified (it costs nothing); every other one counts against the limit before its
    // signature is checked, a bad signature as much as a good one.
    let signed = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        (header("github-public-key-identifier"), header("github-public-key-signature"))
    };
    let (Some(key_id), Some(signature)) = signed else {
        return Err(ApiError::BadSignature("GitHub-Public-Key-Identifier and -Signature are required"));
    };
    let reporter = admit(&s, &req)?;
    let body = axum::body::to_bytes(req.into_body(), MAX_GITHUB_BODY).await.map_err(|_| ApiError::TooLarge)?;
    s.github_keys.verify(&body, &key_id, &signature).await.map_err(|e| match e {
        SignatureError::UnknownKey => ApiError::BadSignature("unknown public key identifier"),
        SignatureError::Invalid => ApiError::BadSignature("invalid signature"),
    })?;
    let matches: Vec<GithubMatch> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::Unprocessable(format!("expected GitHub's array of matches: {e}")))?;
    if matches.len() > MAX_GITHUB_MATCHES {
        return Err(ApiError::Unprocessable(format!("at most {MAX_GITHUB_MATCHES} matches a report")));
    }
    let mut labels = Vec::with_capacity(matches.len());
    for m in matches {
        let found =
            s.act_on_leaks(std::slice::from_ref(&m.token), m.url.as_deref(), m.source.as_deref(), reporter).await;
        let label = if found.first().copied().unwrap_or(false) { "true_positive" } else { "false_positive" };
        labels.push(GithubLabel { token_raw: m.token, token_type: m.token_type, label: label.into() });
    }
    Ok(Json(labels))
}
