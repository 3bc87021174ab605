//! JWT header and claims parsing under the RFC 8725 verifier, the unverified issuer
//! peek, and JWKS parsing (an IdP's JWKS is input we do not control).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tokengate::oauth::jwks::parse_key_set;
use tokengate::oauth::jwt::{self, Expect};

/// An Ed25519 public key (RFC 8037's example) and an RSA-less, HS-less key set.
const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1","use":"sig"}]}"#;

fuzz_target!(|data: &[u8]| {
    static KEYS: OnceLock<std::collections::HashMap<String, tokengate::oauth::keys::VerifyKey>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| parse_key_set(JWKS.as_bytes()).expect("the fixed JWKS parses"));
    let expect = Expect { issuer: "https://idp.example/", audience: Some("api"), typ: None };
    assert!(jwt::verify::<serde_json::Value>(data, keys, &expect).is_err(), "nothing unsigned verifies");
    let _ = jwt::peek_issuer(data);
    let _ = parse_key_set(data);
});
