//! JWT inspection and signature verification against the fixed JWKS: `jwt::header_of`,
//! `jwt::inspect`, then `jwt::verify_signature` with every candidate key. Input: the token.
//!
//! Asserted: what inspection accepts has the header `header_of` reads, an allowed alg, no
//! `crit`, the issuer, an accepted audience and the payload as decoded here (the lifetime is
//! `tokens::facts::Lifetime`'s, checked by the decider); a signature jwt-simple accepts
//! verifies here too with a key of the IdP.
#![no_main]

use certbound::tokens::jwks::Alg;
use certbound::tokens::jwt::{self, JwtRules};
use certbound_fuzz::{ISSUER, NOW, Profile, idp_signed, payload_claims, token_seeds, write_seeds};
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
            let (Some(bearer), Some(keys)) = (&s.bearer, &s.keys) else { continue };
            let rules = JwtRules {
                issuer: &bearer.issuer,
                algorithms: &keys.algorithms,
                typ_strict: bearer.typ_strict,
                audience_required: &s.audience_required,
                leeway: s.leeway,
                max_age: None,
            };
            if let Ok(u) = jwt::inspect(token, &rules) {
                let h = header.as_ref().expect("inspected a token header_of refuses");
                assert_eq!(&u.header, h);
                assert_eq!(u.alg.name(), h.alg, "alg read two ways");
                assert!(keys.algorithms.contains(&u.alg), "alg {} not allowed", h.alg);
                assert!(!h.crit, "crit passed inspection");
                assert_eq!(u.claims.str("iss"), Some(ISSUER));
                assert_eq!(Some(&u.claims), payload_claims(token).as_ref(), "payload read two ways");
                if !s.audience_required.is_empty() {
                    assert!(
                        u.claims.audiences().iter().any(|a| s.audience_required.iter().any(|r| r == a)),
                        "audience {:?} passed inspection",
                        u.claims.get("aud")
                    );
                }
            }
        }
        // Signature checks whatever inspection said: jwt-simple parses what certbound refused.
        let Some(h) = header else { return };
        let Some(alg) = Alg::from_name(&h.alg) else { return };
        let s = Profile::Strict.settings();
        let (Some(bearer), Some(keys)) = (&s.bearer, &s.keys) else { return };
        let rules = JwtRules {
            issuer: &bearer.issuer,
            algorithms: &keys.algorithms,
            typ_strict: bearer.typ_strict,
            audience_required: &s.audience_required,
            leeway: s.leeway,
            max_age: None,
        };
        for key in keys.inline.candidates(h.kid.as_deref(), alg) {
            if jwt::verify_signature(token, key, &rules, NOW).is_ok() {
                assert!(idp_signed(token), "a signature the IdP's keys do not verify: {token}");
            }
        }
    }
);
