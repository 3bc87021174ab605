//! The dashboard's message catalogs (Fluent files under `locales/`, embedded at build
//! time) and the choice of language: the remembered switch (a `lang` cookie), else the
//! browser's `Accept-Language`, else English.

use std::borrow::Cow;
use std::collections::HashMap;

use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{LanguageIdentifier, Loader, langid, static_loader};
use http::HeaderMap;

static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "en",
        // No invisible bidi marks around arguments: they would end up in the HTML.
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

/// The languages the dashboard speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    PtBr,
}

static EN: LanguageIdentifier = langid!("en");
static PT_BR: LanguageIdentifier = langid!("pt-BR");

impl Lang {
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::PtBr => "pt-BR",
        }
    }

    pub fn parse(tag: &str) -> Option<Lang> {
        let tag = tag.trim().to_ascii_lowercase();
        if tag == "pt" || tag.starts_with("pt-") {
            Some(Lang::PtBr)
        } else if tag == "en" || tag.starts_with("en-") {
            Some(Lang::En)
        } else {
            None
        }
    }

    /// The other language, for the switch.
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::PtBr,
            Lang::PtBr => Lang::En,
        }
    }

    fn id(self) -> &'static LanguageIdentifier {
        match self {
            Lang::En => &EN,
            Lang::PtBr => &PT_BR,
        }
    }

    /// The remembered choice, else the first supported language the browser asks for
    /// (in its order of preference), else English.
    pub fn from_request(headers: &HeaderMap) -> Lang {
        if let Some(lang) = super::session::cookie(headers, super::session::LANG_COOKIE).and_then(|v| Lang::parse(&v)) {
            return lang;
        }
        let mut asked: Vec<(f32, Lang)> = headers
            .get_all(http::header::ACCEPT_LANGUAGE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|item| {
                let mut parts = item.split(';');
                let lang = Lang::parse(parts.next()?)?;
                let q =
                    parts.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
                Some((q, lang))
            })
            .collect();
        // Stable: equal weights keep the browser's order.
        asked.sort_by(|a, b| b.0.total_cmp(&a.0));
        asked.first().map_or(Lang::En, |(_, lang)| *lang)
    }

    pub fn t(self, key: &str) -> String {
        LOCALES.lookup(self.id(), key)
    }

    pub fn t1(self, key: &str, name: &'static str, value: &str) -> String {
        self.t_args(key, &[(name, value)])
    }

    /// A message with arguments; every argument the message uses must be given.
    pub fn t_args(self, key: &str, values: &[(&'static str, &str)]) -> String {
        let args: HashMap<Cow<'static, str>, FluentValue<'_>> =
            values.iter().map(|(name, value)| (Cow::Borrowed(*name), FluentValue::from(value.to_string()))).collect();
        LOCALES.lookup_with_args(self.id(), key, &args)
    }

    /// Whether a message exists and formats with the arguments the catalogs use (for
    /// the catalog test).
    pub fn has(self, key: &str) -> bool {
        let args: HashMap<Cow<'static, str>, FluentValue<'_>> = ["email", "role", "hours", "name", "message", "scope"]
            .into_iter()
            .map(|name| (Cow::Borrowed(name), FluentValue::from("x")))
            .collect();
        LOCALES.try_lookup_with_args(self.id(), key, &args).is_some_and(|text| !text.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portuguese_labels_of_the_security_tab() {
        assert_eq!(Lang::PtBr.t("nav-security"), "Segurança");
        assert_eq!(Lang::PtBr.t("security-token-title"), "Token de Segurança da Conta");
        assert_eq!(Lang::PtBr.t("configure-now"), "Configurar Agora");
        assert_eq!(Lang::PtBr.t("activate-token"), "Ativar Token");
        assert_eq!(Lang::PtBr.t("confirm"), "Confirmar");
        assert_eq!(Lang::En.t("configure-now"), "Configure now");
        assert_eq!(Lang::En.t1("usage-token", "name", "ci"), "Requests with token ci");
        let who = [("email", "ana@example.com"), ("role", "admin")];
        assert_eq!(Lang::PtBr.t_args("signed-in-as", &who), "Conectado como ana@example.com (admin)");
    }

    #[test]
    fn every_english_message_is_translated() {
        let catalog = include_str!("../../locales/en/main.ftl");
        let keys = |text: &'static str| -> Vec<&'static str> {
            text.lines().filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim())).collect()
        };
        let english = keys(catalog);
        assert_eq!(english, keys(include_str!("../../locales/pt-BR/main.ftl")), "the same messages, in the same order");
        for key in english {
            assert!(Lang::PtBr.has(key) && Lang::En.has(key), "{key} does not format");
        }
    }

    #[test]
    fn accept_language_negotiation() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::from_request(&h), Lang::En);
        h.insert(http::header::ACCEPT_LANGUAGE, "pt-BR,pt;q=0.9,en;q=0.8".parse().unwrap());
        assert_eq!(Lang::from_request(&h), Lang::PtBr);
        h.insert(http::header::ACCEPT_LANGUAGE, "fr-FR, en;q=0.5, pt;q=0.7".parse().unwrap());
        assert_eq!(Lang::from_request(&h), Lang::PtBr);
        h.insert(http::header::COOKIE, "lang=en".parse().unwrap());
        assert_eq!(Lang::from_request(&h), Lang::En, "the remembered switch wins");
    }
}
