//! The configuration: `RawConfig::from_json` and `Settings::from_json` (what `on_configure`
//! gets). Input: the JSON.
//!
//! Asserted: a configuration accepted once is accepted again after a serialise/parse round
//! trip and reads back exactly the same; what validation accepts lies within its documented
//! bounds (DPoP's included), and a key-less JWT configuration is warned about.
#![no_main]

use certbound::config::{RawConfig, Settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = RawConfig::from_json(data);
    let settings = Settings::from_json(data);
    if let Ok(raw) = &raw {
        let again = serde_json::to_vec(raw).expect("a RawConfig serialises");
        let reread = RawConfig::from_json(&again).expect("a serialised RawConfig reads back");
        assert_eq!(&reread, raw, "round trip changed the configuration");
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
            assert!(!b.issuer.is_empty());
            assert!(s.keys.is_some(), "bearer without key settings");
        }
        if let Some(k) = &s.keys {
            assert!(!k.algorithms.is_empty());
            assert!(k.rediscovery_lifetime >= 1 && k.refresh_interval >= 10);
            if k.inline.is_empty() && k.endpoint.is_none() {
                assert!(
                    s.warnings
                        .iter()
                        .any(|w| w.contains("every JWT will be refused")),
                    "no keys and no warning: {:?}",
                    s.warnings
                );
            }
        }
        assert!((1..=3_600).contains(&s.dpop.lifetime));
        assert!((16..=10_000_000).contains(&s.dpop.replay_entries));
        assert!(!s.dpop.algorithms.is_empty());
        if let Some(certbound::config::NonceSecret::Configured(key)) = &s.dpop.nonce {
            assert!(key.len() >= 32, "a nonce secret of {} bytes", key.len());
        }
        if let Some(external) = &s.dpop.external {
            assert_eq!(
                certbound::binding::dpop::normalize_htu(external).as_deref(),
                Some(format!("{external}/").as_str()),
                "dpop_external_url not normalised: {external}"
            );
        }
        if let Some(i) = &s.introspection {
            assert!(!i.client_id.is_empty() && !i.client_secret.is_empty());
            assert!(i.cache_ttl <= 86_400);
        }
        for (claim, header) in &s.upstream_headers {
            assert!(claim.as_ref().is_none_or(|c| !c.is_empty()));
            assert_eq!(header, &header.to_ascii_lowercase());
            assert!(certbound::config::is_header_name(header), "{header:?}");
        }
        assert!(!s.realm.is_empty() && !s.realm.contains(['"', '\\']));
    }
});
