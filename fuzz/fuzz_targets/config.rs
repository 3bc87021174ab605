//! The configuration loader on arbitrary TOML: an error or a validated configuration,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = tokengate::config::Config::from_toml(text) {
        let _ = config.redacted_toml();
        let _ = config.egress_policy();
    }
});
