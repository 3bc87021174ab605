//! The dashboard's pages and form actions. Each handler: session (and role), CSRF for
//! forms, one call into [`crate::service`], a template. Secrets created here (the security
//! token, API tokens, OAuth client secrets) are rendered once in the page that answers the
//! form — never put in a URL, a redirect or a cookie.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokengate_core::{SecurityTokenStatus, Timestamp, TokenId, TokenKind};

use super::DashState;
use super::chart::{Series, stacked_bars};
use super::error::DashError;
use super::i18n::Lang;
use super::session::{CsrfForm, SessionUser, checked_form, has_csrf};
use crate::service::authz::{Action, Credential};
use crate::service::{NewOAuthClient, NewToken, UsageBucket, UsageQuery};
use crate::store::{ApiToken, AuditEntry, RateLimit, UsageKind, UsageStore};

/// What every page's frame needs: language, who is signed in, the CSRF token, the tab.
pub struct Page {
    pub lang: Lang,
    pub signed_in: bool,
    pub email: String,
    pub role: &'static str,
    pub csrf: String,
    pub tab: &'static str,
    /// This page's path, for the language switch to come back to.
    pub path: String,
    pub notice: Option<String>,
    pub can_manage_tokens: bool,
    pub can_manage_security: bool,
}

impl Page {
    pub fn anonymous(lang: Lang, path: &str, csrf: String) -> Page {
        Page {
            lang,
            signed_in: false,
            email: String::new(),
            role: "",
            csrf,
            tab: "",
            path: path.to_string(),
            notice: None,
            can_manage_tokens: false,
            can_manage_security: false,
        }
    }

    pub fn for_user(user: &SessionUser, tab: &'static str, path: &str) -> Page {
        Page {
            lang: user.lang,
            signed_in: true,
            email: user.member.email.clone(),
            role: user.member.role.as_str(),
            csrf: user.csrf.clone(),
            tab,
            path: path.to_string(),
            notice: None,
            can_manage_tokens: user.can_manage_tokens(),
            can_manage_security: user.can_manage_security(),
        }
    }

    pub fn t(&self, key: &str) -> String {
        self.lang.t(key)
    }

    pub fn signed_in_as(&self) -> String {
        self.lang.t_args("signed-in-as", &[("email", &self.email), ("role", self.role)])
    }
}

fn show(t: Option<Timestamp>, lang: Lang) -> String {
    t.map(|t| {
        let text = t.to_rfc3339();
        // 2026-11-22T10:00:00.000Z → 2026-11-22 10:00 UTC
        text.get(..16).map(|s| format!("{} UTC", s.replace('T', " "))).unwrap_or(text)
    })
    .unwrap_or_else(|| lang.t("never"))
}

// ---- Security tab ----

#[derive(Template, WebTemplate)]
#[template(path = "security.html")]
pub struct SecurityPage {
    page: Page,
    shown_once: Option<String>,
    status: &'static str,
    status_label: String,
    created_at: Option<String>,
    activated_at: Option<String>,
    previous_valid_until: Option<String>,
    confirm_activation: bool,
    readiness_window: String,
    with_valid_token: u64,
    missing: u64,
    invalid: u64,
    safe: bool,
    verdict: String,
    chart: String,
}

/// The hourly readiness counts of the last 24 hours, as stacked bars.
async fn readiness_chart(state: &DashState, user: &SessionUser) -> Result<String, DashError> {
    let lang = user.lang;
    let now = Timestamp::now().as_millis();
    let hour = 3_600_000;
    let first = now - now.rem_euclid(hour) - 23 * hour;
    let rows = state
        .services
        .store
        .usage(user.member.account_id, None, UsageKind::Readiness, Timestamp::from_millis(first))
        .await
        .map_err(|e| DashError::store(e, lang))?;
    let mut values = [vec![0u64; 24], vec![0u64; 24], vec![0u64; 24]];
    for row in rows {
        let Ok(i) = usize::try_from((row.bucket_start.as_millis() - first) / hour) else { continue };
        let series = match row.reason.as_ref() {
            "with_valid_token" => 0,
            "missing" => 1,
            _ => 2,
        };
        if let Some(v) = values.get_mut(series).and_then(|s| s.get_mut(i)) {
            *v += u64::try_from(row.count).unwrap_or(0);
        }
    }
    let labels = hour_labels(first);
    let [valid, missing, invalid] = values;
    let (l_valid, l_missing, l_invalid) =
        (lang.t("readiness-valid"), lang.t("readiness-missing"), lang.t("readiness-invalid"));
    Ok(stacked_bars(
        &lang.t("readiness-title"),
        &labels,
        &[
            Series { label: &l_valid, color: "#1a7f37", values: valid },
            Series { label: &l_missing, color: "#d4a72c", values: missing },
            Series { label: &l_invalid, color: "#cf222e", values: invalid },
        ],
        &lang.t("chart-requests"),
        &lang.t("chart-hour"),
    ))
}

fn hour_labels(first_ms: i64) -> Vec<String> {
    (0..24).map(|i| format!("{:02}h", ((first_ms / 3_600_000) + i).rem_euclid(24))).collect()
}

async fn security_page(
    state: &DashState,
    user: &SessionUser,
    shown_once: Option<String>,
    confirm_activation: bool,
    notice: Option<String>,
) -> Result<Response, DashError> {
    let lang = user.lang;
    let view = state.services.security_token(user.member.account_id).await.map_err(|e| DashError::service(e, lang))?;
    let (status, status_key) = match view.status {
        SecurityTokenStatus::None => ("none", "status-none"),
        SecurityTokenStatus::Disabled => ("disabled", "status-disabled"),
        SecurityTokenStatus::Active => ("active", "status-active"),
    };
    let r = &view.readiness;
    let verdict = if r.total == 0 {
        lang.t("readiness-empty")
    } else if r.safe_to_activate {
        lang.t("readiness-safe")
    } else {
        lang.t("readiness-unsafe")
    };
    let mut page = Page::for_user(user, "security", "/dashboard/security");
    page.notice = notice;
    let body = SecurityPage {
        page,
        shown_once,
        status,
        status_label: lang.t(status_key),
        created_at: view.created_at.map(|t| show(Some(t), lang)),
        activated_at: view.activated_at.map(|t| show(Some(t), lang)),
        previous_valid_until: view.previous_valid_until.map(|t| show(Some(t), lang)),
        confirm_activation,
        readiness_window: lang.t1("readiness-window", "hours", &(r.window_seconds / 3600).to_string()),
        with_valid_token: r.with_valid_token,
        missing: r.missing,
        invalid: r.invalid,
        safe: r.safe_to_activate,
        verdict,
        chart: readiness_chart(state, user).await?,
    };
    Ok(body.into_response())
}

pub async fn security(State(state): State<DashState>, user: SessionUser) -> Result<Response, DashError> {
    security_page(&state, &user, None, false, None).await
}

/// "Configure now": a new, disabled token, shown in this answer only.
pub async fn configure(
    State(state): State<DashState>,
    user: SessionUser,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, DashError> {
    checked_form(f, &user)?;
    user.authorize(&Action::ManageSecurityToken)?;
    let (secret, _) = state
        .services
        .generate_security_token(&user.actor(), user.member.account_id)
        .await
        .map_err(|e| DashError::service(e, user.lang))?;
    security_page(&state, &user, Some(secret.expose_secret().to_string()), false, None).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ActivateForm {
    csrf: String,
    confirm: String,
}

/// "Activate Token": when recent requests still lack the token, asks to confirm first.
pub async fn activate(
    State(state): State<DashState>,
    user: SessionUser,
    f: Result<Form<ActivateForm>, FormRejection>,
) -> Result<Response, DashError> {
    let f = checked_form(f, &user)?;
    user.authorize(&Action::ManageSecurityToken)?;
    let lang = user.lang;
    if f.confirm != "1" {
        let view =
            state.services.security_token(user.member.account_id).await.map_err(|e| DashError::service(e, lang))?;
        if !view.readiness.safe_to_activate {
            return security_page(&state, &user, None, true, None).await;
        }
    }
    state
        .services
        .set_security_token_active(&user.actor(), user.member.account_id, true)
        .await
        .map_err(|e| DashError::service(e, lang))?;
    security_page(&state, &user, None, false, Some(lang.t("activated"))).await
}

pub async fn deactivate(
    State(state): State<DashState>,
    user: SessionUser,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, DashError> {
    checked_form(f, &user)?;
    user.authorize(&Action::ManageSecurityToken)?;
    state
        .services
        .set_security_token_active(&user.actor(), user.member.account_id, false)
        .await
        .map_err(|e| DashError::service(e, user.lang))?;
    security_page(&state, &user, None, false, Some(user.lang.t("deactivated"))).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RotateForm {
    csrf: String,
    grace_seconds: String,
}

pub async fn rotate(
    State(state): State<DashState>,
    user: SessionUser,
    f: Result<Form<RotateForm>, FormRejection>,
) -> Result<Response, DashError> {
    let f = checked_form(f, &user)?;
    user.authorize(&Action::ManageSecurityToken)?;
    let grace = f
        .grace_seconds
        .trim()
        .parse::<u64>()
        .map_err(|_| DashError::Invalid(user.lang, user.lang.t("grace-seconds")))?;
    let (secret, _) = state
        .services
        .rotate_security_token(&user.actor(), user.member.account_id, grace)
        .await
        .map_err(|e| DashError::service(e, user.lang))?;
    security_page(&state, &user, Some(secret.expose_secret().to_string()), false, None).await
}

// ---- API tokens ----

pub struct TokenRow {
    id: String,
    name: String,
    kind: String,
    scopes: String,
    created_at: String,
    expires_at: String,
    last_used_at: String,
    revoked_at: String,
    live: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "tokens.html")]
pub struct TokensPage {
    page: Page,
    shown_once: Option<String>,
    rows: Vec<TokenRow>,
}

async fn tokens_page(
    state: &DashState,
    user: &SessionUser,
    shown_once: Option<String>,
    notice: Option<String>,
) -> Result<Response, DashError> {
    let lang = user.lang;
    let now = Timestamp::now();
    let tokens = state.services.list_tokens(user.member.account_id).await.map_err(|e| DashError::service(e, lang))?;
    let rows = tokens
        .into_iter()
        .rev()
        .map(|t| TokenRow {
            id: t.id.to_string(),
            live: t.revoked_at.is_none_or(|at| at > now) && t.expires_at.is_none_or(|at| at > now),
            name: t.name,
            kind: lang.t(&format!("kind-{}", t.kind.as_str())),
            scopes: t.scopes.join(" "),
            created_at: show(Some(t.created_at), lang),
            expires_at: show(t.expires_at, lang),
            last_used_at: show(t.last_used_at, lang),
            revoked_at: t.revoked_at.map(|at| show(Some(at), lang)).unwrap_or_default(),
        })
        .collect();
    let mut page = Page::for_user(user, "tokens", "/dashboard/tokens");
    page.notice = notice;
    Ok(TokensPage { page, shown_once, rows }.into_response())
}

pub async fn tokens(State(state): State<DashState>, user: SessionUser) -> Result<Response, DashError> {
    tokens_page(&state, &user, None, None).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TokenForm {
    csrf: String,
    name: String,
    kind: String,
    scopes: String,
    expires_days: String,
    ip_allowlist: String,
    rate_per_minute: String,
}

/// The dashboard's own checks of form fields, answered in the visitor's language before
/// the service sees the values (the service checks them again).
mod check {
    use super::{DashError, Lang};

    fn refuse(lang: Lang, key: &str) -> DashError {
        DashError::Invalid(lang, lang.t(key))
    }

    pub fn name(name: &str, lang: Lang) -> Result<(), DashError> {
        let n = name.trim().chars().count();
        if n == 0 || n > 200 || name.chars().any(char::is_control) { Err(refuse(lang, "error-name")) } else { Ok(()) }
    }

    pub fn scopes(scopes: &[String], lang: Lang) -> Result<(), DashError> {
        let ok = (1..=100).contains(&scopes.len())
            && scopes.iter().all(|s| tokengate_core::rules::validate_scope(s).is_ok());
        if ok { Ok(()) } else { Err(refuse(lang, "error-scopes")) }
    }

    pub fn cidrs(cidrs: &[String], lang: Lang) -> Result<(), DashError> {
        if cidrs.len() <= 100 && tokengate_core::IpAllowlist::parse(cidrs).is_ok() {
            Ok(())
        } else {
            Err(refuse(lang, "error-cidrs"))
        }
    }

    pub fn number(text: &str, range: std::ops::RangeInclusive<u64>, lang: Lang) -> Result<Option<u64>, DashError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse::<u64>().ok().filter(|n| range.contains(n)).map(Some).ok_or_else(|| refuse(lang, "error-number"))
    }

    pub fn grace(text: &str, lang: Lang) -> Result<u64, DashError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(0);
        }
        text.parse::<u64>().ok().filter(|n| *n <= 30 * 24 * 3600).ok_or_else(|| refuse(lang, "error-grace"))
    }

    pub fn upstream(url: &str, lang: Lang) -> Result<(), DashError> {
        crate::state::Upstream::parse(url.trim()).map(|_| ()).map_err(|_| refuse(lang, "error-upstream"))
    }

    pub fn email(email: &str, lang: Lang) -> Result<(), DashError> {
        let email = email.trim();
        let at = email.find('@').unwrap_or(0);
        if at == 0 || at + 1 >= email.len() || email.len() > 254 || email.contains(char::is_whitespace) {
            Err(refuse(lang, "error-email"))
        } else {
            Ok(())
        }
    }

    pub fn password(password: &str, lang: Lang) -> Result<(), DashError> {
        if (8..=1024).contains(&password.chars().count()) { Ok(()) } else { Err(refuse(lang, "error-password")) }
    }
}

fn words(text: &str) -> Vec<String> {
    text.split([' ', ',', '\n', '\t']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

pub async fn create_token(
    State(state): State<DashState>,
    user: SessionUser,
    f: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, DashError> {
    let f = checked_form(f, &user)?;
    let lang = user.lang;
    let kind = TokenKind::parse(&f.kind).unwrap_or(TokenKind::ApiKey);
    check::name(&f.name, lang)?;
    check::scopes(&words(&f.scopes), lang)?;
    check::cidrs(&words(&f.ip_allowlist), lang)?;
    let expires_days = check::number(&f.expires_days, 1..=3650, lang)?;
    let rate = check::number(&f.rate_per_minute, 1..=1_000_000, lang)?;
    let new = NewToken {
        name: f.name,
        kind,
        member_id: (kind == TokenKind::Personal).then_some(user.member.id),
        scopes: words(&f.scopes),
        expires_in_seconds: expires_days.map(|d| d.saturating_mul(86_400)),
        ip_allowlist: words(&f.ip_allowlist),
        rate_limit: rate.map(|limit| RateLimit { limit: u32::try_from(limit).unwrap_or(u32::MAX), window_seconds: 60 }),
        instance_ids: Vec::new(),
    };
    user.authorize(&Action::CreateCredential { kind: kind.into(), scopes: &new.scopes })?;
    let (_, secret) = state
        .services
        .create_token(&user.actor(), user.member.account_id, new)
        .await
        .map_err(|e| DashError::service(e, lang))?;
    tokens_page(&state, &user, Some(secret.expose_secret().to_string()), None).await
}

/// The token, when the member may rotate or revoke it (another account's is not found).
async fn manageable_token(state: &DashState, user: &SessionUser, id: &str) -> Result<ApiToken, DashError> {
    let id: TokenId = id.parse().map_err(|_| DashError::NotFound(user.lang))?;
    let token = state.services.token(id).await.map_err(|e| DashError::service(e, user.lang))?;
    user.authorize(&Action::ManageToken(&token))?;
    Ok(token)
}

pub async fn revoke_token(
    State(state): State<DashState>,
    user: SessionUser,
    Path(id): Path<String>,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, DashError> {
    checked_form(f, &user)?;
    let id = manageable_token(&state, &user, &id).await?.id;
    state.services.revoke_token(&user.actor(), id).await.map_err(|e| DashError::service(e, user.lang))?;
    tokens_page(&state, &user, None, Some(user.lang.t("token-revoked"))).await
}

pub async fn rotate_token(
    State(state): State<DashState>,
    user: SessionUser,
    Path(id): Path<String>,
    f: Result<Form<RotateForm>, FormRejection>,
) -> Result<Response, DashError> {
    let f = checked_form(f, &user)?;
    let token = manageable_token(&state, &user, &id).await?;
    // A rotation makes a new secret with the old one's scopes: the member must be
    // allowed to create that token (a developer cannot mint a `*` key from an owner's).
    user.authorize(&Action::CreateCredential { kind: token.kind.into(), scopes: &token.scopes })?;
    let (id, grace) = (token.id, check::grace(&f.grace_seconds, user.lang)?);
    let (_, secret) =
        state.services.rotate_token(&user.actor(), id, grace).await.map_err(|e| DashError::service(e, user.lang))?;
    tokens_page(&state, &user, Some(secret.expose_secret().to_string()), None).await
}

// ---- Instances, OAuth clients, usage, audit ----

#[derive(Template, WebTemplate)]
#[template(path = "instances.html")]
pub struct InstancesPage {
    page: Page,
    shown_once: Option<String>,
    rows: Vec<(String, String, String, usize)>,
    members: Vec<(String, String, String)>,
}

async fn instances_page(
    state: &DashState,
    user: &SessionUser,
    shown_once: Option<String>,
) -> Result<Response, DashError> {
    let lang = user.lang;
    let account = user.member.account_id;
    let list = state.services.list_instances(account).await.map_err(|e| DashError::service(e, lang))?;
    let rows = list.into_iter().map(|i| (i.name, i.id.to_string(), i.upstream_url, i.rules.len())).collect();
    let members = state.services.list_members(account).await.map_err(|e| DashError::service(e, lang))?;
    let members = members.into_iter().map(|m| (m.id.to_string(), m.email, m.role.as_str().to_string())).collect();
    let page = Page::for_user(user, "instances", "/dashboard/instances");
    Ok(InstancesPage { page, shown_once, rows, members }.into_response())
}

pub async fn instances(State(state): State<DashState>, user: SessionUser) -> Result<Response, DashError> {
    instances_page(&state, &user, None).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct InstanceForm {
    csrf: String,
    name: String,
    upstream_url: String,
}

/// Admins and owners add instances; the instance token is shown once.
pub async fn create_instance(
    State(state): State<DashState>,
    user: SessionUser,
    f: Result<Form<InstanceForm>, FormRejection>,
) -> Result<Response, DashError> {
    let f = checked_form(f, &user)?;
    user.authorize(&Action::ManageInstances)?;
    check::name(&f.name, user.lang)?;
    check::upstream(&f.upstream_url, user.lang)?;
    let new = crate::service::NewInstance {
        name: f.name,
        upstream_url: f.upstream_url.trim().to_string(),
        rules: Vec::new(),
    };
    let (_, token) = state
        .services
        .create_instance(&user.actor(), user.member.account_id, new)
        .await
        .map_err(|e| DashError::service(e, user.lang))?;
    instances_page(&state, &user, Some(token.expose_secret().to_string())).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct MemberForm {
    csrf: String,
    email: String,
    password: String,
    role: String,
}

/// Admins and owners add members; only an owner adds another owner.
pub async fn create_member(
    State(state): State<DashState>,
    user: SessionUser,
    f: Result<Form<MemberForm>, FormRejection>,
) -> Result<Response, DashError> {
    let f = checked_form(f, &user)?;
    user.authorize(&Action::AddMember(crate::store::Role::Viewer))?;
    check::email(&f.email, user.lang)?;
    check::password(&f.password, user.lang)?;
    let role =
        crate::store::Role::parse(&f.role).ok_or_else(|| DashError::Invalid(user.lang, user.lang.t("error-role")))?;
    user.authorize(&Action::AddMember(role))?;
    state
        .services
        .create_member(&user.actor(), user.member.account_id, &f.email, f.password.into(), role)
        .await
        .map_err(|e| DashError::service(e, user.lang))?;
    instances_page(&state, &user, None).await
}

/// Removing a member revokes its personal tokens and ends its sessions.
pub async fn delete_member(
    State(state): State<DashState>,
    user: SessionUser,
    Path(id): Path<String>,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, DashError> {
    checked_form(f, &user)?;
    let id: tokengate_core::MemberId = id.parse().map_err(|_| DashError::NotFound(user.lang))?;
    let members =
        state.services.list_members(user.member.account_id).await.map_err(|e| DashError::service(e, user.lang))?;
    let target = members.into_iter().find(|m| m.id == id).ok_or(DashError::NotFound(user.lang))?;
    user.authorize(&Action::RemoveMember(&target))?;
    state.services.delete_member(&user.actor(), id).await.map_err(|e| DashError::service(e, user.lang))?;
    instances_page(&state, &user, None).await
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_clients.html")]
pub struct OAuthClientsPage {
    page: Page,
    shown_once: Option<String>,
    new_client_id: Option<String>,
    rows: Vec<(String, String, String, String)>,
}

async fn oauth_page(
    state: &DashState,
    user: &SessionUser,
    created: Option<(String, String)>,
) -> Result<Response, DashError> {
    let lang = user.lang;
    let list =
        state.services.list_oauth_clients(user.member.account_id).await.map_err(|e| DashError::service(e, lang))?;
    let rows = list
        .into_iter()
        .map(|c| (c.name, c.client_id.to_string(), c.scopes.join(" "), show(Some(c.created_at), lang)))
        .collect();
    let (new_client_id, shown_once) = created.map_or((None, None), |(id, secret)| (Some(id), Some(secret)));
    let page = Page::for_user(user, "oauth", "/dashboard/oauth-clients");
    Ok(OAuthClientsPage { page, shown_once, new_client_id, rows }.into_response())
}

pub async fn oauth_clients(State(state): State<DashState>, user: SessionUser) -> Result<Response, DashError> {
    oauth_page(&state, &user, None).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ClientForm {
    csrf: String,
    name: String,
    scopes: String,
}

pub async fn create_oauth_client(
    State(state): State<DashState>,
    user: SessionUser,
    f: Result<Form<ClientForm>, FormRejection>,
) -> Result<Response, DashError> {
    let f = checked_form(f, &user)?;
    check::name(&f.name, user.lang)?;
    check::scopes(&words(&f.scopes), user.lang)?;
    let new = NewOAuthClient { name: f.name, scopes: words(&f.scopes) };
    user.authorize(&Action::CreateCredential { kind: Credential::OAuthClient, scopes: &new.scopes })?;
    let (client, secret) = state
        .services
        .create_oauth_client(&user.actor(), user.member.account_id, new)
        .await
        .map_err(|e| DashError::service(e, user.lang))?;
    oauth_page(&state, &user, Some((client.client_id.to_string(), secret.expose_secret().to_string()))).await
}

/// Deletes one of the account's OAuth clients; its access tokens stop working at once.
pub async fn delete_oauth_client(
    State(state): State<DashState>,
    user: SessionUser,
    Path(id): Path<String>,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, DashError> {
    checked_form(f, &user)?;
    user.authorize(&Action::ManageOAuthClient(user.member.account_id))?;
    let id: tokengate_core::ClientId = id.parse().map_err(|_| DashError::NotFound(user.lang))?;
    state
        .services
        .delete_oauth_client(&user.actor(), user.member.account_id, id)
        .await
        .map_err(|e| DashError::service(e, user.lang))?;
    oauth_page(&state, &user, None).await
}

#[derive(Template, WebTemplate)]
#[template(path = "webhooks.html")]
pub struct WebhooksPage {
    page: Page,
    shown_once: Option<String>,
    /// Every event, and whether the form ticks it by default.
    events: Vec<&'static str>,
    rows: Vec<WebhookRow>,
}

pub struct WebhookRow {
    id: String,
    url: String,
    events: String,
    created: String,
    /// Recent deliveries: (when, event, attempt, status or error).
    deliveries: Vec<(String, String, u32, String)>,
}

async fn webhooks_page(state: &DashState, user: &SessionUser, secret: Option<String>) -> Result<Response, DashError> {
    let lang = user.lang;
    let list = state.services.list_webhooks(user.member.account_id).await.map_err(|e| DashError::service(e, lang))?;
    let mut rows = Vec::with_capacity(list.len());
    for w in list {
        let deliveries = state.services.webhook_deliveries(&w.id).await.map_err(|e| DashError::service(e, lang))?;
        let deliveries = deliveries
            .into_iter()
            .take(5)
            .map(|d| {
                let outcome = match (d.status, d.error) {
                    (Some(status), None) => status.to_string(),
                    (Some(status), Some(_)) => status.to_string(),
                    (None, Some(error)) => error,
                    (None, None) => String::new(),
                };
                (show(Some(d.at), lang), d.event_type, d.attempt, outcome)
            })
            .collect();
        rows.push(WebhookRow {
            id: w.id,
            url: w.url,
            events: w.events.join(" "),
            created: show(Some(w.created_at), lang),
            deliveries,
        });
    }
    let page = Page::for_user(user, "webhooks", "/dashboard/webhooks");
    let events = crate::service::webhooks::WEBHOOK_EVENTS.to_vec();
    Ok(WebhooksPage { page, shown_once: secret, events, rows }.into_response())
}

pub async fn webhooks(State(state): State<DashState>, user: SessionUser) -> Result<Response, DashError> {
    webhooks_page(&state, &user, None).await
}

/// The form's fields: `url`, then one `events` field per ticked box.
pub async fn create_webhook(
    State(state): State<DashState>,
    user: SessionUser,
    body: axum::body::Bytes,
) -> Result<Response, DashError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    user.check_csrf(&field("csrf"))?;
    user.authorize(&Action::ManageWebhooks(user.member.account_id))?;
    let events = pairs.iter().filter(|(k, _)| k == "events").map(|(_, v)| v.clone()).collect();
    let new = crate::service::NewWebhook { url: field("url"), events };
    let (_, secret) = state
        .services
        .create_webhook(&user.actor(), user.member.account_id, new)
        .await
        .map_err(|e| DashError::service(e, user.lang))?;
    webhooks_page(&state, &user, Some(secret.expose_secret().to_string())).await
}

pub async fn delete_webhook(
    State(state): State<DashState>,
    user: SessionUser,
    Path(id): Path<String>,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, DashError> {
    checked_form(f, &user)?;
    let webhook = state.services.webhook(&id).await.map_err(|_| DashError::NotFound(user.lang))?;
    user.authorize(&Action::ManageWebhooks(webhook.account_id))?;
    state.services.delete_webhook(&user.actor(), &id).await.map_err(|e| DashError::service(e, user.lang))?;
    webhooks_page(&state, &user, None).await
}

#[derive(Template, WebTemplate)]
#[template(path = "usage.html")]
pub struct UsagePage {
    page: Page,
    heading: String,
    allowed: u64,
    rejected: u64,
    chart: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UsageParams {
    token: Option<String>,
}

pub async fn usage(
    State(state): State<DashState>,
    user: SessionUser,
    Query(params): Query<UsageParams>,
) -> Result<Response, DashError> {
    let lang = user.lang;
    let query = UsageQuery::default();
    let (heading, buckets): (String, Vec<UsageBucket>) = match params.token.as_deref() {
        Some(id) => {
            let id: TokenId = id.parse().map_err(|_| DashError::NotFound(lang))?;
            let token = state.services.token(id).await.map_err(|e| DashError::service(e, lang))?;
            if token.account_id != user.member.account_id {
                return Err(DashError::NotFound(lang));
            }
            let buckets = state.services.token_usage(id, &query).await.map_err(|e| DashError::service(e, lang))?;
            (lang.t1("usage-token", "name", &token.name), buckets)
        }
        None => {
            let buckets =
                state.services.usage(user.member.account_id, &query).await.map_err(|e| DashError::service(e, lang))?;
            (lang.t("usage-account"), buckets)
        }
    };
    let now = Timestamp::now().as_millis();
    let first = now - now.rem_euclid(3_600_000) - 23 * 3_600_000;
    let (mut allowed, mut rejected) = (vec![0u64; 24], vec![0u64; 24]);
    for b in &buckets {
        let Ok(i) = usize::try_from((b.start.as_millis() - first) / 3_600_000) else { continue };
        if let (Some(a), Some(r)) = (allowed.get_mut(i), rejected.get_mut(i)) {
            *a += b.allowed;
            *r += b.rejected;
        }
    }
    let (total_allowed, total_rejected) = (allowed.iter().sum(), rejected.iter().sum());
    let (l_allowed, l_rejected) = (lang.t("usage-allowed"), lang.t("usage-rejected"));
    let chart = stacked_bars(
        &heading,
        &hour_labels(first),
        &[
            Series { label: &l_allowed, color: "#1f6feb", values: allowed },
            Series { label: &l_rejected, color: "#cf222e", values: rejected },
        ],
        &lang.t("chart-requests"),
        &lang.t("chart-hour"),
    );
    let page = Page::for_user(&user, "usage", "/dashboard/usage");
    Ok(UsagePage { page, heading, allowed: total_allowed, rejected: total_rejected, chart }.into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
pub struct AuditPage {
    page: Page,
    rows: Vec<AuditRow>,
}

pub struct AuditRow {
    at: String,
    actor: String,
    action: String,
    target: String,
    ip: Option<String>,
}

pub async fn audit(State(state): State<DashState>, user: SessionUser) -> Result<Response, DashError> {
    let lang = user.lang;
    let entries: Vec<AuditEntry> =
        state.services.audit(user.member.account_id, Some("200")).await.map_err(|e| DashError::service(e, lang))?;
    let rows = entries
        .into_iter()
        .map(|e| AuditRow { at: show(Some(e.at), lang), actor: e.actor, action: e.action, target: e.target, ip: e.ip })
        .collect();
    Ok(AuditPage { page: Page::for_user(&user, "audit", "/dashboard/audit"), rows }.into_response())
}

has_csrf!(ActivateForm, RotateForm, TokenForm, ClientForm, InstanceForm, MemberForm);
