//! The configuration: `RawConfig::from_json` and `Settings::from_json` (what `on_configure`
//! gets). Input: the JSON.
//!
//! Asserted: a configuration accepted once is accepted again after a serialise/parse round
//! trip and reads back the same; what validation accepts lies within its documented bounds.
#![no_main]

use certbound::config::{RawConfig, Settings};
use certbound_fuzz::json_close;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = RawConfig::from_json(data);
    let settings = Settings::from_json(data);
    if let Ok(raw) = &raw {
        let again = serde_json::to_vec(raw).expect("a RawConfig serialises");
        let reread = RawConfig::from_json(&again).expect("a serialised RawConfig reads back");
        let (a, b) = (serde_json::to_value(&reread), serde_json::to_value(raw));
        assert!(
            &reread == raw || matches!((&a, &b), (Ok(a), Ok(b)) if json_close(a, b)),
            "round trip changed the configuration: {reread:?} != {raw:?}"
        );
        assert_eq!(
            Settings::validate(reread).is_ok(),
            settings.is_ok(),
            "validation differs after a round trip"
        );
    } else {
        assert!(settings.is_err());
    }
    if let Ok(s) = &settings {
        assert!(s.leeway <= 600);
        assert!((1..=1_000_000).contains(&s.cache_max_entries));
        assert!(s.http_timeout.as_millis() >= 1 && s.http_timeout.as_millis() <= 60_000);
        assert!(
            s.bearer.is_some() || s.introspection.is_some(),
            "no way to validate a token"
        );
        if let Some(b) = &s.bearer {
            assert!(!b.algorithms.is_empty());
            assert!(!b.issuer.is_empty());
            assert!(
                !b.inline_keys.is_empty() || b.jwks_endpoint.is_some(),
                "bearer without keys"
            );
            assert!(b.rediscovery_lifetime >= 1 && b.refresh_interval >= 10);
        }
        if let Some(i) = &s.introspection {
            assert!(!i.client_id.is_empty() && !i.client_secret.is_empty());
            assert!(i.cache_ttl <= 86_400);
        }
        for (claim, header) in &s.upstream_headers {
            assert!(!claim.is_empty());
            assert_eq!(header, &header.to_ascii_lowercase());
            assert!(certbound::config::is_header_name(header), "{header:?}");
        }
        assert!(!s.realm.is_empty() && !s.realm.contains(['"', '\\']));
    }
});
