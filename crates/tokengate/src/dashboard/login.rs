//! Logging in and out: the login form, argon2id verification off the async threads with
//! the same work for unknown emails, the login throttle, the optional TOTP step (RFC 6238,
//! a code is accepted once), the language switch, and two-factor enrollment.

use std::sync::OnceLock;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, StatusCode, header};
use rand::RngExt;
use serde::Deserialize;
use tokengate_core::Timestamp;
use totp_rs::{Algorithm, Secret, TOTP};

use super::DashState;
use super::error::DashError;
use super::i18n::Lang;
use super::pages::Page;
use super::session::{
    ABSOLUTE_TIMEOUT_SECONDS, ADDRESS_FREE_FAILURES, CsrfForm, EMAIL_FREE_FAILURES, LANG_COOKIE, LOGIN_COOKIE,
    OTP_FREE_FAILURES, PENDING_LOGIN_SECONDS, PENDING_MAX_FAILURES, SESSION_COOKIE, SessionUser, ThrottleKeys,
    checked_form, cookie, has_csrf, random_token, same_secret, session_digest, set_cookie,
};
use crate::store::{SessionStore, StoreError, ThrottleStore};

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    page: Page,
    error: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "otp.html")]
pub struct OtpPage {
    page: Page,
    error: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "twofa.html")]
pub struct TwoFaPage {
    page: Page,
    enabled: bool,
    secret: String,
    qr_svg: String,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginForm {
    csrf: String,
    email: String,
    password: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    csrf: String,
    code: String,
    secret: String,
}

/// The login form, with a fresh login CSRF cookie; a member with a session goes on to
/// the Security tab.
pub async fn home(State(state): State<DashState>, headers: HeaderMap) -> Response {
    let lang = Lang::from_request(&headers);
    if let Some(digest) = session_digest(&headers)
        && let Ok(Some(session)) = state.services.store.session(digest).await
        && !session.mfa_pending
    {
        return Redirect::to("/dashboard/security").into_response();
    }
    login_page(&state, lang, None, StatusCode::OK)
}

fn login_page(state: &DashState, lang: Lang, error: Option<String>, status: StatusCode) -> Response {
    let csrf = random_token();
    let page = LoginPage { page: Page::anonymous(lang, "/", csrf.clone()), error };
    let cookie = set_cookie(LOGIN_COOKIE, &csrf, 3600, state.secure_cookies);
    (status, [(header::SET_COOKIE, cookie)], page).into_response()
}

/// A hash to verify against when the email is unknown, so that an unknown email costs
/// the same argon2 work as a wrong password and cannot be told apart by timing.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        use argon2::PasswordHasher;
        let random: [u8; 16] = rand::rng().random();
        argon2::Argon2::default()
            .hash_password(hex::encode(random).as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Computes the dummy hash ahead of the first login (on the blocking pool), so that not
/// even the first unknown email answers at a different speed.
pub fn warm_up() {
    let _ = dummy_hash();
}

async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        use argon2::{PasswordHash, PasswordVerifier};
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| dummy_hash().to_string());
        let ok = PasswordHash::new(&hash)
            .map(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        ok && known
    })
    .await
    .unwrap_or(false)
}

pub async fn login(
    State(state): State<DashState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let lang = Lang::from_request(&headers);
    let Ok(Form(form)) = form else {
        return login_page(&state, lang, Some(lang.t("login-failed")), StatusCode::BAD_REQUEST);
    };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&form.csrf, &expected) {
        return login_page(&state, lang, Some(lang.t("error-csrf")), StatusCode::FORBIDDEN);
    }
    let email = form.email.trim().to_lowercase();
    let ip = crate::gateway::PeerAddr::ip_of(&extensions);
    let keys = ThrottleKeys::new(&email, ip);
    let store = &state.services.store;
    let now = Timestamp::now();
    let locked = login_page(&state, lang, Some(lang.t("login-locked")), StatusCode::TOO_MANY_REQUESTS);
    match store.throttle_locked(&[&keys.address], now).await {
        Ok(false) => {}
        Ok(true) => return locked,
        Err(e) => return DashError::store(e, lang).into_response(),
    }
    // The attempt is counted against the email before the password is checked, so that
    // concurrent guesses cannot all pass the lock check; a right password resets it.
    match store.throttle_attempt(&keys.email, EMAIL_FREE_FAILURES, now).await {
        Ok(Some(_)) => {}
        Ok(None) => return locked,
        Err(e) => return DashError::store(e, lang).into_response(),
    }
    let record = match store.login_record(&email).await {
        Ok(record) => record,
        Err(e) => return DashError::store(e, lang).into_response(),
    };
    let ok = verify_password(form.password, record.as_ref().map(|r| r.password_hash.clone())).await;
    let Some(record) = record.filter(|_| ok) else {
        if let Err(e) = store.throttle_failed(&keys.address, ADDRESS_FREE_FAILURES, now).await {
            return DashError::store(e, lang).into_response();
        }
        tracing::info!(ip = ?ip, "dashboard login failed");
        return login_page(&state, lang, Some(lang.t("login-failed")), StatusCode::UNAUTHORIZED);
    };
    // A right password clears the password count only: the one-time-code count of
    // the member stands (SPEC §12).
    if let Err(e) = store.throttle_reset(&keys.email).await {
        return DashError::store(e, lang).into_response();
    }
    let session_id = random_token();
    let second_factor = record.totp_sealed.is_some();
    let created = state
        .services
        .store
        .create_session(
            tokengate_core::Digest::of(session_id.as_bytes()),
            record.member.id,
            &random_token(),
            second_factor,
            Timestamp::now(),
        )
        .await;
    if let Err(e) = created {
        return DashError::store(e, lang).into_response();
    }
    tracing::info!(member = %record.member.id, "dashboard login");
    let next = if second_factor { "/login/otp" } else { "/dashboard/security" };
    // Two cookies: `AppendHeaders`, as a plain header array would keep only the last.
    let cookies = axum::response::AppendHeaders([
        (header::SET_COOKIE, set_cookie(SESSION_COOKIE, &session_id, ABSOLUTE_TIMEOUT_SECONDS, state.secure_cookies)),
        (header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0, state.secure_cookies)),
    ]);
    (cookies, Redirect::to(next)).into_response()
}

/// The session waiting for its second factor, with the member's TOTP. A pending login
/// older than [`PENDING_LOGIN_SECONDS`] is over (and deleted).
async fn pending(
    state: &DashState,
    headers: &HeaderMap,
) -> Option<(tokengate_core::Digest, crate::store::SessionRecord, TOTP, String)> {
    let digest = session_digest(headers)?;
    let session = state.services.store.session(digest).await.ok()??;
    if !session.mfa_pending {
        return None;
    }
    if session.created_at.plus_secs(PENDING_LOGIN_SECONDS) <= Timestamp::now() {
        let _ = state.services.store.delete_session(digest).await;
        return None;
    }
    let record = state.services.store.login_record(&session.member.email).await.ok()??;
    let sealed = record.totp_sealed?;
    let secret = state.services.master_key.open(&sealed, &totp_context(&session.member)).ok()?;
    let totp = totp(secret.to_vec(), &session.member.email)?;
    let csrf = session.csrf.clone();
    Some((digest, session, totp, csrf))
}

/// Whether a one-time code may be checked: the client address is not locked, and the
/// attempt is counted against the member (across logins) *before* the code is checked,
/// unless the member's code step is locked. Concurrent guesses are each counted first,
/// so they cannot outrun the lock; a right code resets the count.
async fn code_attempt(state: &DashState, member: tokengate_core::MemberId, address: &str) -> Result<bool, StoreError> {
    let store = &state.services.store;
    let now = Timestamp::now();
    if store.throttle_locked(&[address], now).await? {
        return Ok(false);
    }
    Ok(store.throttle_attempt(&ThrottleKeys::otp(member), OTP_FREE_FAILURES, now).await?.is_some())
}

/// A wrong one-time code (already counted against the member): counted against the
/// client address too.
async fn wrong_code(state: &DashState, address: &str) -> Result<(), StoreError> {
    state.services.store.throttle_failed(address, ADDRESS_FREE_FAILURES, Timestamp::now()).await
}

fn totp_context(member: &crate::store::Member) -> String {
    format!("totp:{}", member.id)
}

fn totp(secret: Vec<u8>, email: &str) -> Option<TOTP> {
    let account = email.replace(':', "_");
    TOTP::new(Algorithm::SHA1, 6, 1, 30, secret, Some("tokengate".into()), account).ok()
}

/// The time step whose code this is (now, or one step either side), compared in
/// constant time.
fn matching_step(totp: &TOTP, code: &str, now_secs: u64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 {
        return None;
    }
    [now_secs.saturating_sub(30), now_secs, now_secs + 30]
        .into_iter()
        .find(|t| same_secret(&totp.generate(*t), &code))
        .and_then(|t| i64::try_from(t / 30).ok())
}

fn now_secs() -> u64 {
    u64::try_from(Timestamp::now().as_millis() / 1000).unwrap_or(0)
}

pub async fn otp_form(State(state): State<DashState>, headers: HeaderMap) -> Response {
    let lang = Lang::from_request(&headers);
    match pending(&state, &headers).await {
        Some((_, _, _, csrf)) => {
            OtpPage { page: Page::anonymous(lang, "/login/otp", csrf), error: None }.into_response()
        }
        None => Redirect::to("/").into_response(),
    }
}

pub async fn otp(
    State(state): State<DashState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    let lang = Lang::from_request(&headers);
    let Some((digest, session, totp, csrf)) = pending(&state, &headers).await else {
        return Redirect::to("/").into_response();
    };
    let Ok(Form(form)) = form else { return DashError::Csrf(lang).into_response() };
    if !same_secret(&form.csrf, &csrf) {
        return DashError::Csrf(lang).into_response();
    }
    let ip = crate::gateway::PeerAddr::ip_of(&extensions);
    let keys = ThrottleKeys::new(&session.member.email, ip);
    let member = session.member.id;
    let failed = |status: StatusCode| {
        let page =
            OtpPage { page: Page::anonymous(lang, "/login/otp", csrf.clone()), error: Some(lang.t("otp-failed")) };
        (status, page).into_response()
    };
    let store = &state.services.store;
    match code_attempt(&state, member, &keys.address).await {
        Ok(true) => {}
        Ok(false) => return failed(StatusCode::TOO_MANY_REQUESTS),
        Err(e) => return DashError::store(e, lang).into_response(),
    }
    // The pending login's count, also before the check: past its limit it is over.
    let attempts = match store.mfa_attempt(digest).await {
        Ok(n) => n,
        Err(e) => return DashError::store(e, lang).into_response(),
    };
    if attempts > PENDING_MAX_FAILURES {
        return match store.delete_session(digest).await {
            Ok(()) => failed(StatusCode::UNAUTHORIZED),
            Err(e) => DashError::store(e, lang).into_response(),
        };
    }
    let accepted = match matching_step(&totp, &form.code, now_secs()) {
        Some(step) => store.complete_mfa(digest, member, step).await,
        None => Err(StoreError::Conflict("wrong code")),
    };
    match accepted {
        Ok(()) => match store.throttle_reset(&ThrottleKeys::otp(member)).await {
            Ok(()) => Redirect::to("/dashboard/security").into_response(),
            Err(e) => DashError::store(e, lang).into_response(),
        },
        // A wrong code, or a right one already used (a replay).
        Err(StoreError::Conflict(_)) => {
            let counted = async {
                wrong_code(&state, &keys.address).await?;
                if attempts >= PENDING_MAX_FAILURES {
                    store.delete_session(digest).await?;
                }
                Ok::<_, StoreError>(())
            };
            match counted.await {
                Ok(()) => failed(StatusCode::UNAUTHORIZED),
                Err(e) => DashError::store(e, lang).into_response(),
            }
        }
        Err(e) => DashError::store(e, lang).into_response(),
    }
}

pub async fn logout(
    State(state): State<DashState>,
    user: SessionUser,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, DashError> {
    checked_form(form, &user)?;
    state.services.store.delete_session(user.digest).await.map_err(|e| DashError::store(e, user.lang))?;
    let cookie = set_cookie(SESSION_COOKIE, "", 0, state.secure_cookies);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response())
}

has_csrf!(CodeForm);

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LangQuery {
    to: String,
    back: String,
}

/// The language switch: remembered in a cookie for a year, then back to the page.
pub async fn switch_language(State(state): State<DashState>, Query(q): Query<LangQuery>) -> Response {
    let lang = Lang::parse(&q.to).unwrap_or(Lang::En);
    // Only a path of this site, in plain visible ASCII: no open redirect, and nothing
    // that could not be a header value.
    let local = q.back.starts_with('/') && !q.back.starts_with("//") && !q.back.contains('\\');
    let back =
        if local && q.back.len() <= 512 && q.back.bytes().all(|b| b.is_ascii_graphic()) { q.back } else { "/".into() };
    let cookie = set_cookie(LANG_COOKIE, lang.tag(), 365 * 24 * 3600, state.secure_cookies);
    ([(header::SET_COOKIE, cookie)], Redirect::to(&back)).into_response()
}

fn qr_svg(url: &str) -> String {
    use qrcode::render::svg;
    match qrcode::QrCode::with_error_correction_level(url.as_bytes(), qrcode::EcLevel::M) {
        Ok(code) => {
            let xml = code.render::<svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build();
            xml.split_once("?>").map_or(xml.clone(), |(_, s)| s.to_string())
        }
        Err(_) => String::new(),
    }
}

async fn totp_enabled(state: &DashState, user: &SessionUser) -> Result<bool, DashError> {
    let record =
        state.services.store.login_record(&user.member.email).await.map_err(|e| DashError::store(e, user.lang))?;
    Ok(record.is_some_and(|r| r.totp_sealed.is_some()))
}

fn enrollment(user: &SessionUser, secret_b32: Option<String>, error: Option<String>) -> TwoFaPage {
    let secret_b32 = secret_b32.unwrap_or_else(|| {
        let raw: [u8; 20] = rand::rng().random();
        Secret::Raw(raw.to_vec()).to_encoded().to_string()
    });
    let url = Secret::Encoded(secret_b32.clone())
        .to_bytes()
        .ok()
        .and_then(|bytes| totp(bytes, &user.member.email))
        .map(|t| t.get_url())
        .unwrap_or_default();
    TwoFaPage {
        page: Page::for_user(user, "2fa", "/dashboard/2fa"),
        enabled: false,
        secret: secret_b32,
        qr_svg: qr_svg(&url),
        error,
    }
}

fn enabled_page(user: &SessionUser, error: Option<String>) -> TwoFaPage {
    TwoFaPage {
        page: Page::for_user(user, "2fa", "/dashboard/2fa"),
        enabled: true,
        secret: String::new(),
        qr_svg: String::new(),
        error,
    }
}

pub async fn twofa(State(state): State<DashState>, user: SessionUser) -> Result<Response, DashError> {
    if totp_enabled(&state, &user).await? {
        return Ok(enabled_page(&user, None).into_response());
    }
    Ok(enrollment(&user, None, None).into_response())
}

pub async fn enable_twofa(
    State(state): State<DashState>,
    user: SessionUser,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Result<Response, DashError> {
    let form = checked_form(form, &user)?;
    let secret = Secret::Encoded(form.secret.clone()).to_bytes().ok().filter(|s| s.len() >= 16);
    let Some((secret, totp)) = secret.and_then(|s| totp(s.clone(), &user.member.email).map(|t| (s, t))) else {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, enrollment(&user, None, Some(user.lang.t("twofa-bad-code"))))
            .into_response());
    };
    if matching_step(&totp, &form.code, now_secs()).is_none() {
        let page = enrollment(&user, Some(form.secret), Some(user.lang.t("twofa-bad-code")));
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let sealed = state.services.master_key.seal(&secret, &totp_context(&user.member));
    let audit = user.actor().audit(Some(user.member.account_id), "member.totp_enabled", user.member.id);
    state
        .services
        .store
        .set_totp(user.member.id, Some(&sealed), user.digest, &audit)
        .await
        .map_err(|e| DashError::store(e, user.lang))?;
    Ok(Redirect::to("/dashboard/2fa").into_response())
}

/// Turning two-factor login off asks for a current code (SPEC §12): a stolen session
/// alone cannot remove the second factor.
pub async fn disable_twofa(
    State(state): State<DashState>,
    user: SessionUser,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Result<Response, DashError> {
    let form = checked_form(form, &user)?;
    let lang = user.lang;
    let store = &state.services.store;
    let otp_key = ThrottleKeys::otp(user.member.id);
    let address = ThrottleKeys::new(&user.member.email, user.ip).address;
    if !code_attempt(&state, user.member.id, &address).await.map_err(|e| DashError::store(e, lang))? {
        return Ok((StatusCode::TOO_MANY_REQUESTS, enabled_page(&user, Some(lang.t("otp-failed")))).into_response());
    }
    let record = store.login_record(&user.member.email).await.map_err(|e| DashError::store(e, lang))?;
    let current = record
        .and_then(|r| r.totp_sealed)
        .and_then(|sealed| state.services.master_key.open(&sealed, &totp_context(&user.member)).ok())
        .and_then(|secret| totp(secret.to_vec(), &user.member.email))
        .and_then(|t| matching_step(&t, &form.code, now_secs()));
    if current.is_none() {
        wrong_code(&state, &address).await.map_err(|e| DashError::store(e, lang))?;
        return Ok((StatusCode::UNAUTHORIZED, enabled_page(&user, Some(lang.t("otp-failed")))).into_response());
    }
    store.throttle_reset(&otp_key).await.map_err(|e| DashError::store(e, lang))?;
    let audit = user.actor().audit(Some(user.member.account_id), "member.totp_disabled", user.member.id);
    store.set_totp(user.member.id, None, user.digest, &audit).await.map_err(|e| DashError::store(e, lang))?;
    Ok(Redirect::to("/dashboard/2fa").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_their_step_and_nothing_else() {
        let totp = totp(vec![7u8; 20], "ana@example.com").unwrap();
        let now = 1_700_000_000u64;
        let code = totp.generate(now);
        assert_eq!(matching_step(&totp, &code, now), Some((now / 30) as i64));
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(matching_step(&totp, &spaced, now), Some((now / 30) as i64));
        assert_eq!(matching_step(&totp, &totp.generate(now - 30), now), Some((now / 30 - 1) as i64));
        assert_eq!(matching_step(&totp, &totp.generate(now - 120), now), None);
        assert_eq!(matching_step(&totp, "12345", now), None);
    }
}
