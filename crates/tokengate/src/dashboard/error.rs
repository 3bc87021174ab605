//! How dashboard failures are answered, in one place: a redirect to the login form (or
//! its second step), or an error page in the visitor's language with the right status.

use askama::Template;
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;

use super::i18n::Lang;
use super::pages::Page;
use crate::service::ServiceError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum DashError {
    LoginRequired,
    SecondFactorRequired,
    Forbidden(Lang),
    Csrf(Lang),
    Invalid(Lang, String),
    NotFound(Lang),
    Unavailable(Lang),
    /// The service's conflict or quota refusal, translated around its message.
    Conflict(Lang, String),
}

impl DashError {
    pub fn store(e: StoreError, lang: Lang) -> DashError {
        Self::service(e.into(), lang)
    }

    pub fn service(e: ServiceError, lang: Lang) -> DashError {
        match e {
            ServiceError::NotFound(_) | ServiceError::Store(StoreError::NotFound) => DashError::NotFound(lang),
            // The dashboard checks its forms first, with messages in the visitor's language;
            // what the service still refuses is shown inside a translated sentence.
            ServiceError::Invalid(m) => DashError::Invalid(lang, lang.t1("error-refused", "message", &m)),
            // The same statuses as the API: a conflict or a quota is a 409.
            ServiceError::Conflict(m) | ServiceError::QuotaExceeded(m) => {
                DashError::Conflict(lang, lang.t1("error-refused", "message", &m))
            }
            ServiceError::Store(e) => {
                tracing::error!(error = %e, "dashboard request failed");
                DashError::Unavailable(lang)
            }
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    page: Page,
    message: String,
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let (status, lang, message) = match self {
            DashError::LoginRequired => return Redirect::to("/").into_response(),
            DashError::SecondFactorRequired => return Redirect::to("/login/otp").into_response(),
            DashError::Forbidden(lang) => (StatusCode::FORBIDDEN, lang, lang.t("error-forbidden")),
            DashError::Csrf(lang) => (StatusCode::FORBIDDEN, lang, lang.t("error-csrf")),
            DashError::Invalid(lang, m) => (StatusCode::UNPROCESSABLE_ENTITY, lang, m),
            DashError::Conflict(lang, m) => (StatusCode::CONFLICT, lang, m),
            DashError::NotFound(lang) => (StatusCode::NOT_FOUND, lang, lang.t("no-items")),
            DashError::Unavailable(lang) => (StatusCode::SERVICE_UNAVAILABLE, lang, lang.t("error-title")),
        };
        let page = ErrorPage { page: Page::anonymous(lang, "/dashboard/security", String::new()), message };
        match page.render() {
            Ok(html) => (status, axum::response::Html(html)).into_response(),
            Err(_) => status.into_response(),
        }
    }
}
