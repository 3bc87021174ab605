//! The gateway path canonicalizer (SPEC §11): never panics; what it accepts is a fixed
//! point with no dot or empty segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokengate_core::path::{canonical_tail, route_form};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let raw = format!("/{text}");
    if let Ok(canonical) = canonical_tail(&raw) {
        let again = canonical_tail(&canonical).expect("a canonical tail is accepted again");
        assert_eq!(again, canonical, "canonicalization is idempotent");
        let segments: Vec<&str> = canonical.trim_start_matches('/').split('/').collect();
        for (i, segment) in segments.iter().enumerate() {
            let name = tokengate_core::path::segment_name(segment);
            assert!(name != "." && name != "..", "{raw:?} -> {canonical:?}");
            assert!(!name.is_empty() || (i + 1 == segments.len() && segment.is_empty()), "{raw:?} -> {canonical:?}");
        }
        let _ = route_form(&canonical);
    }
});
