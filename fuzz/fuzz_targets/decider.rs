//! The whole decider on raw input: `decider::decide` with a fixed configuration (inline JWKS
//! of real keys), a fresh worker, no remote keys, `Phase::First`.
//!
//! Input: the first byte picks the profile (bits 0-1) and the presented certificate (bits
//! 2-3: none, A, B, A); the rest is the token.
//!
//! Asserted: an allowed JWT verifies with a key of the JWKS, every allowed request passes
//! `assert_allowed_ok` (binding per mode, issuer, lifetime, audience, scope), only opaque
//! tokens are introspected (never without a certificate in strict mode), and there is never a
//! wait for keys that nobody can fetch.
#![no_main]

use certbound::binding::PopMode;
use certbound::flow::decider::Step;
use certbound::tokens::jwks::Alg;
use certbound::tokens::jwt::{self, JwtRules};
use certbound_fuzz::{
    CertChoice, NOW, Profile, Source, assert_allowed_ok, decide, token_seeds, write_seeds,
};
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<(String, Vec<u8>)> {
    // Strict with certificate A: the valid tokens are allowed.
    let mut out: Vec<(String, Vec<u8>)> = token_seeds()
        .into_iter()
        .map(|(n, t)| {
            let mut b = vec![0b0100];
            b.extend_from_slice(t.as_bytes());
            (n, b)
        })
        .collect();
    for (name, sel, token) in [
        ("opaque-strict-a", 0b0100u8, "2YotnFZFEjr1zCsicMWpAA"),
        ("opaque-strict-none", 0b0000, "2YotnFZFEjr1zCsicMWpAA"),
        ("opaque-off", 0b0010, "mF_9.B5f-4.1JqM"),
    ] {
        let mut b = vec![sel];
        b.extend_from_slice(token.as_bytes());
        out.push((name.into(), b));
    }
    out
}

fuzz_target!(
    init: write_seeds("decider", seeds),
    |data: &[u8]| {
        let Some((&sel, rest)) = data.split_first() else { return };
        let profile = Profile::from_byte(sel & 0b11);
        let cert = [CertChoice::None, CertChoice::A, CertChoice::B, CertChoice::A]
            [usize::from(sel >> 2 & 0b11)];
        let token = String::from_utf8_lossy(rest);
        let presented = cert.thumbprint();
        let decision = decide(profile, &token, presented);
        let s = profile.settings();
        let header = jwt::header_of(&token);
        match &decision.step {
            Step::Allow(claims) => {
                let source = match (&s.bearer, &header) {
                    (Some(_), Some(_)) => Source::Jwt,
                    _ => Source::Introspection,
                };
                assert_eq!(source, Source::Jwt, "allowed without asking anyone: {token}");
                let bearer = s.bearer.as_ref().expect("bearer");
                let h = header.as_ref().expect("JWT");
                let alg = Alg::from_name(&h.alg).expect("allowed with an unknown alg");
                let rules = JwtRules {
                    issuer: &bearer.issuer,
                    algorithms: &bearer.algorithms,
                    typ_strict: bearer.typ_strict,
                    audience_required: &s.audience_required,
                    leeway: s.leeway,
                };
                assert!(
                    bearer
                        .inline_keys
                        .candidates(None, alg)
                        .any(|k| jwt::verify_signature(&token, k, &rules, NOW).is_ok()),
                    "allowed a JWT no key verifies: {token}"
                );
                assert_allowed_ok(profile, source, claims, presented.as_ref());
            }
            Step::Introspect(_) => {
                assert!(s.introspection.is_some());
                assert!(
                    s.bearer.is_none() || header.is_none(),
                    "a JWT sent to introspection: {token}"
                );
                assert!(
                    s.pop != PopMode::Strict || presented.is_some(),
                    "introspection asked without a certificate in strict mode"
                );
            }
            Step::NeedKeys => panic!("NeedKeys without a jwks_endpoint"),
            Step::Deny(_) => {}
        }
    }
);
