//! Dashboard sessions: a random id in an `HttpOnly; SameSite=Strict` cookie (`Secure`
//! behind TLS), only its digest in the store; idle and absolute timeouts; a CSRF token
//! per session checked on every form; and the login throttle.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use base64::Engine;
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use rand::RngExt;
use tokengate_core::{Digest, Timestamp};

use super::DashState;
use super::error::DashError;
use super::i18n::Lang;
use crate::service::authz::{Action, Credential, MemberCaller, Refusal};
use crate::store::{Member, SessionStore};

pub const SESSION_COOKIE: &str = "tg_session";
pub const LOGIN_COOKIE: &str = "tg_login";
pub const LANG_COOKIE: &str = "lang";
/// A session unused this long ends.
pub const IDLE_TIMEOUT_SECONDS: i64 = 30 * 60;
/// No session lives longer than this.
pub const ABSOLUTE_TIMEOUT_SECONDS: i64 = 12 * 3600;

/// A random value for a cookie or a CSRF field: 256 bits, base64url.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of one cookie of the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` value: always `HttpOnly; SameSite=Strict; Path=/`.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}");
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Two strings compared in constant time (through their digests).
pub fn same_secret(a: &str, b: &str) -> bool {
    Digest::of(a.as_bytes()).ct_eq(&Digest::of(b.as_bytes()))
}

/// A logged-in member, from a live session. Pages take this; without a session they
/// redirect to the login form.
pub struct SessionUser {
    pub member: Member,
    pub csrf: String,
    pub lang: Lang,
    /// The digest of the session id (to end this session).
    pub digest: Digest,
    pub ip: Option<IpAddr>,
}

impl SessionUser {
    /// The member as the one authorization rule sees it ([`crate::service::authz`]).
    pub fn caller(&self) -> MemberCaller {
        MemberCaller::new(&self.member)
    }

    /// Whether the member may do this (for showing or hiding forms).
    pub fn may(&self, action: &Action<'_>) -> bool {
        self.caller().may(action)
    }

    /// Refuses, in the member's language, what the member may not do.
    pub fn authorize(&self, action: &Action<'_>) -> Result<(), DashError> {
        self.caller().authorize(action).map_err(|refusal| match refusal {
            Refusal::Forbidden => DashError::Forbidden(self.lang),
            Refusal::NotFound => DashError::NotFound(self.lang),
            Refusal::ScopeAboveRole { role, scope } => DashError::Invalid(
                self.lang,
                self.lang.t_args("error-scope-role", &[("role", role), ("scope", &scope)]),
            ),
        })
    }

    pub fn can_manage_tokens(&self) -> bool {
        self.may(&Action::CreateCredential { kind: Credential::ApiKey, scopes: &[] })
    }

    pub fn can_manage_security(&self) -> bool {
        self.may(&Action::ManageSecurityToken)
    }

    /// Checks a form's CSRF field against the session's token.
    pub fn check_csrf(&self, presented: &str) -> Result<(), DashError> {
        if same_secret(presented, &self.csrf) { Ok(()) } else { Err(DashError::Csrf(self.lang)) }
    }

    pub fn actor(&self) -> crate::service::Actor {
        crate::service::Actor { name: format!("member:{}", self.member.id), ip: self.ip.map(|ip| ip.to_string()) }
    }
}

/// The digest of the session cookie's value, when there is one.
pub fn session_digest(headers: &HeaderMap) -> Option<Digest> {
    cookie(headers, SESSION_COOKIE).filter(|v| v.len() <= 64).map(|v| Digest::of(v.as_bytes()))
}

impl FromRequestParts<DashState> for SessionUser {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut Parts, state: &DashState) -> Result<Self, Self::Rejection> {
        let lang = Lang::from_request(&parts.headers);
        let digest = session_digest(&parts.headers).ok_or(DashError::LoginRequired)?;
        let store = &state.services.store;
        let session =
            store.session(digest).await.map_err(|e| DashError::store(e, lang))?.ok_or(DashError::LoginRequired)?;
        let now = Timestamp::now();
        let idle = now.as_millis() - session.last_seen_at.as_millis() > IDLE_TIMEOUT_SECONDS * 1000;
        let too_old = now.as_millis() - session.created_at.as_millis() > ABSOLUTE_TIMEOUT_SECONDS * 1000;
        if idle || too_old {
            let _ = store.delete_session(digest).await;
            return Err(DashError::LoginRequired);
        }
        if session.mfa_pending {
            return Err(DashError::SecondFactorRequired);
        }
        // Writes at most once a minute per session.
        if now.as_millis() - session.last_seen_at.as_millis() > 60_000 {
            let _ = store.touch_session(digest, now).await;
        }
        Ok(SessionUser {
            member: session.member,
            csrf: session.csrf,
            lang,
            digest,
            ip: crate::gateway::PeerAddr::ip_of(&parts.extensions),
        })
    }
}

/// A form with nothing but its CSRF token.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    csrf: String,
}

/// Forms that carry the session's CSRF token.
pub trait HasCsrf {
    fn csrf(&self) -> &str;
}

macro_rules! has_csrf {
    ($($t:ty),*) => {$(impl $crate::dashboard::session::HasCsrf for $t { fn csrf(&self) -> &str { &self.csrf } })*};
}
pub(crate) use has_csrf;

has_csrf!(CsrfForm);

/// A posted form whose CSRF field matches the session's; anything else is refused
/// (403) before the form's content is looked at.
pub fn checked_form<T: HasCsrf>(
    form: Result<axum::Form<T>, axum::extract::rejection::FormRejection>,
    user: &SessionUser,
) -> Result<T, DashError> {
    let Ok(axum::Form(form)) = form else { return Err(DashError::Csrf(user.lang)) };
    user.check_csrf(form.csrf())?;
    Ok(form)
}

/// Free failures before a lock: wrong passwords per email, any failure per client
/// address, wrong one-time codes per member (across logins: a correct password does
/// not reset it).
pub const EMAIL_FREE_FAILURES: u32 = 5;
pub const ADDRESS_FREE_FAILURES: u32 = 20;
pub const OTP_FREE_FAILURES: u32 = 10;
/// A login waiting for its one-time code ends after this many wrong codes, or after
/// [`PENDING_LOGIN_SECONDS`].
pub const PENDING_MAX_FAILURES: u32 = 5;
pub const PENDING_LOGIN_SECONDS: i64 = 5 * 60;

/// The login throttle's keys. The address is the client's as resolved through
/// `trusted_proxies` (never the proxy's own).
pub struct ThrottleKeys {
    pub email: String,
    pub address: String,
}

impl ThrottleKeys {
    pub fn new(email: &str, ip: Option<IpAddr>) -> ThrottleKeys {
        let address = ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        ThrottleKeys { email: format!("email:{email}"), address: format!("ip:{address}") }
    }

    pub fn otp(member: tokengate_core::MemberId) -> String {
        format!("otp:{member}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_and_strict() {
        let v = set_cookie(SESSION_COOKIE, "abc", 60, true);
        assert_eq!(v, "tg_session=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure");
        assert!(!set_cookie(SESSION_COOKIE, "abc", 60, false).to_str().unwrap().contains("Secure"));
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, "a=1; tg_session=xyz; lang=pt-BR".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "missing"), None);
    }

    #[tokio::test]
    async fn repeated_failures_lock_the_key_then_back_off() {
        use crate::store::{SqlStore, ThrottleStore};
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_sqlite(dir.path()).await.unwrap();
        let ana = ThrottleKeys::new("ana@example.com", Some([10, 0, 0, 1].into()));
        let now = Timestamp::from_millis(1_000_000);
        for _ in 0..EMAIL_FREE_FAILURES - 1 {
            store.throttle_failed(&ana.email, EMAIL_FREE_FAILURES, now).await.unwrap();
        }
        assert!(!store.throttle_locked(&[&ana.email], now).await.unwrap());
        store.throttle_failed(&ana.email, EMAIL_FREE_FAILURES, now).await.unwrap();
        assert!(store.throttle_locked(&[&ana.email], now).await.unwrap());
        let from_elsewhere = ThrottleKeys::new("ana@example.com", Some([10, 0, 0, 2].into()));
        assert!(store.throttle_locked(&[&from_elsewhere.email, &from_elsewhere.address], now).await.unwrap());
        let bob = ThrottleKeys::new("bob@example.com", Some([10, 0, 0, 2].into()));
        assert!(!store.throttle_locked(&[&bob.email, &bob.address], now).await.unwrap());
        let later = now.plus_secs(61);
        assert!(!store.throttle_locked(&[&ana.email], later).await.unwrap(), "one minute");
        store.throttle_failed(&ana.email, EMAIL_FREE_FAILURES, later).await.unwrap();
        assert!(store.throttle_locked(&[&ana.email], later.plus_secs(119)).await.unwrap(), "then two");
        store.throttle_reset(&ana.email).await.unwrap();
        assert!(!store.throttle_locked(&[&ana.email], later).await.unwrap());
    }
}
