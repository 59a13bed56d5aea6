//! JWT inspection and signature verification against the fixed JWKS: `jwt::header_of`,
//! `jwt::inspect`, then `jwt::verify_signature` with every candidate key. Input: the token.
#![no_main]

use certbound::tokens::jwks::Alg;
use certbound::tokens::jwt::{self, JwtRules};
use certbound_fuzz::{ISSUER, NOW, Profile, token_seeds, write_seeds};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: write_seeds("jwt", || token_seeds()
        .into_iter()
        .map(|(n, t)| (n, t.into_bytes()))
        .collect()),
    |data: &[u8]| {
        let Ok(token) = std::str::from_utf8(data) else {
            return;
        };
        let header = jwt::header_of(token);
        // Strict (all algorithms, typ enforced, audience required) and Narrow (two
        // algorithms, typ lax, no audience).
        for profile in [Profile::Strict, Profile::Narrow] {
            let s = profile.settings();
            let Some(bearer) = s.bearer.as_ref() else { continue };
            let rules = JwtRules {
                issuer: &bearer.issuer,
                algorithms: &bearer.algorithms,
                typ_strict: bearer.typ_strict,
                audience_required: &s.audience_required,
                leeway: s.leeway,
            };
            if let Ok(u) = jwt::inspect(token, &rules, NOW) {
                let h = header.as_ref().expect("inspected a token header_of refuses");
                assert_eq!(&u.header, h);
                assert_eq!(u.alg.name(), h.alg, "alg read two ways");
                assert!(bearer.algorithms.contains(&u.alg), "alg {} not allowed", h.alg);
                assert!(!h.crit, "crit passed inspection");
                assert_eq!(u.claims.str("iss"), Some(ISSUER));
                assert!(u.claims.time("exp").ok().flatten().is_some(), "no exp");
            }
        }
        // Signature checks whatever inspection said: jwt-simple parses what certbound refused.
        let Some(h) = header else { return };
        let Some(alg) = Alg::from_name(&h.alg) else { return };
        let s = Profile::Strict.settings();
        let Some(bearer) = s.bearer.as_ref() else { return };
        let rules = JwtRules {
            issuer: &bearer.issuer,
            algorithms: &bearer.algorithms,
            typ_strict: bearer.typ_strict,
            audience_required: &s.audience_required,
            leeway: s.leeway,
        };
        for key in bearer.inline_keys.candidates(h.kid.as_deref(), alg) {
            let _ = jwt::verify_signature(token, key, &rules, NOW);
        }
    }
);
