//! Dashboard sessions: a random id in an `HttpOnly; SameSite=Strict` cookie (`Secure`
//! behind TLS), only its digest in the store; idle and absolute timeouts; a CSRF token
//! per session checked on every form; and the login throttle.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use base64::Engine;
use dashmap::DashMap;
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use rand::RngExt;
use tokengate_core::{Digest, Timestamp};

use super::DashState;
use super::error::DashError;
use super::i18n::Lang;
use crate::store::{Member, Role, SessionStore};

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
    pub fn can_manage_tokens(&self) -> bool {
        self.member.role != Role::Viewer
    }

    pub fn can_manage_security(&self) -> bool {
        matches!(self.member.role, Role::Owner | Role::Admin)
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
            ip: crate::server::PeerAddr::ip_of(&parts.extensions),
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

/// Back-off after failed logins, per email and per client address: from the fifth
/// failure (the twentieth for an address) a key is locked, for one minute doubling up to
/// an hour. Kept per node, in memory.
#[derive(Default)]
pub struct Throttle {
    failures: DashMap<String, (u32, Option<Instant>)>,
}

const EMAIL_FREE_FAILURES: u32 = 5;
const ADDRESS_FREE_FAILURES: u32 = 20;

impl Throttle {
    fn keys(email: &str, ip: Option<IpAddr>) -> [(String, u32); 2] {
        let ip = ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        [(format!("email:{email}"), EMAIL_FREE_FAILURES), (format!("ip:{ip}"), ADDRESS_FREE_FAILURES)]
    }

    pub fn locked(&self, email: &str, ip: Option<IpAddr>, now: Instant) -> bool {
        Self::keys(email, ip)
            .iter()
            .any(|(key, _)| self.failures.get(key).and_then(|e| e.1).is_some_and(|until| until > now))
    }

    pub fn failed(&self, email: &str, ip: Option<IpAddr>, now: Instant) {
        for (key, free) in Self::keys(email, ip) {
            let mut entry = self.failures.entry(key).or_insert((0, None));
            entry.0 = entry.0.saturating_add(1);
            if entry.0 >= free {
                let doublings = (entry.0 - free).min(6);
                entry.1 = Some(now + Duration::from_secs(60u64 << doublings));
            }
        }
        if self.failures.len() > 100_000 {
            self.failures.retain(|_, (_, until)| until.is_some_and(|u| u > now));
        }
    }

    pub fn succeeded(&self, email: &str) {
        self.failures.remove(&format!("email:{email}"));
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

    #[test]
    fn repeated_failures_lock_the_email_then_back_off() {
        let t = Throttle::default();
        let now = Instant::now();
        let ip: Option<IpAddr> = Some([10, 0, 0, 1].into());
        for _ in 0..4 {
            t.failed("ana@example.com", ip, now);
        }
        assert!(!t.locked("ana@example.com", ip, now));
        t.failed("ana@example.com", ip, now);
        assert!(t.locked("ana@example.com", ip, now));
        assert!(t.locked("ana@example.com", Some([10, 0, 0, 2].into()), now), "locked per email, from any address");
        assert!(!t.locked("bob@example.com", Some([10, 0, 0, 2].into()), now));
        assert!(!t.locked("ana@example.com", ip, now + Duration::from_secs(61)));
        t.failed("ana@example.com", ip, now + Duration::from_secs(61));
        assert!(t.locked("ana@example.com", ip, now + Duration::from_secs(61 + 119)), "doubled");
        t.succeeded("ana@example.com");
        assert!(!t.locked("ana@example.com", Some([10, 0, 0, 3].into()), now));
    }
}
